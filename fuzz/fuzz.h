/* Fuzz targets: each is int fuzz_NAME(const uint8_t *data, size_t size), returning 0.
 * `make fuzz` links each with libFuzzer (libfuzzer.c: LLVMFuzzerTestOneInput calls it);
 * `make test` replays the seed corpus (fuzz/corpus/NAME/) through the same functions in
 * the sanitizer build of the unit tests. Every crash found is fixed and its input added
 * to the corpus. */
#ifndef CME_FUZZ_H
#define CME_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int fuzz_records(const uint8_t *data, size_t size);
int fuzz_linux(const uint8_t *data, size_t size);
int fuzz_request(const uint8_t *data, size_t size);
int fuzz_proto(const uint8_t *data, size_t size);
int fuzz_config(const uint8_t *data, size_t size);
int fuzz_snapshot(const uint8_t *data, size_t size);
int fuzz_handlers(const uint8_t *data, size_t size);
int fuzz_stream(const uint8_t *data, size_t size);
int fuzz_store(const uint8_t *data, size_t size);
int fuzz_etcd(const uint8_t *data, size_t size);

#endif
