/* The protobuf messages a peer or a file gives us, decoded on their budget (proto.h):
 * every migration record, the VM state and the VM's CPU configuration. */
#include "fuzz.h"
#include "migration.pb-c.h"
#include "proto.h"
#include "vmstate.pb-c.h"

#define TRY(type, name, data, size)                                                                \
	do {                                                                                       \
		type *m_ = PB_UNPACK(name##__unpack, size, data);                                  \
		if (m_)                                                                            \
			name##__free_unpacked(m_, NULL);                                           \
	} while (0)

int fuzz_proto(const uint8_t *data, size_t size)
{
	if (!size)
		return 0;
	switch (data[0] % 10) {
	case 0: TRY(Cme__MigHello, cme__mig_hello, data + 1, size - 1); break;
	case 1: TRY(Cme__MigWelcome, cme__mig_welcome, data + 1, size - 1); break;
	case 2: TRY(Cme__MigChannelHello, cme__mig_channel_hello, data + 1, size - 1); break;
	case 3: TRY(Cme__MigRoundEnd, cme__mig_round_end, data + 1, size - 1); break;
	case 4: TRY(Cme__MigSwitchover, cme__mig_switchover, data + 1, size - 1); break;
	case 5: TRY(Cme__MigReady, cme__mig_ready, data + 1, size - 1); break;
	case 6: TRY(Cme__MigAck, cme__mig_ack, data + 1, size - 1); break;
	case 7: TRY(Cme__MigAbort, cme__mig_abort, data + 1, size - 1); break;
	case 8: TRY(Cme__VmConfig, cme__vm_config, data + 1, size - 1); break;
	default: TRY(Cme__VmState, cme__vm_state, data + 1, size - 1); break;
	}
	return 0;
}
