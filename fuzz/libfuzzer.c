/* libFuzzer's entry, for the target named by FUZZ_FN (make fuzz: -DFUZZ_FN=fuzz_NAME). */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return FUZZ_FN(data, size);
}
