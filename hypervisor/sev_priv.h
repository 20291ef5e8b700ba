/* Private to hypervisor/: launching an AMD SEV guest (README "Confidential VMs"). The
 * PSP's launch commands through KVM_MEMORY_ENCRYPT_OP, in the order KVM and the firmware
 * want them: INIT and LAUNCH_START before any vCPU exists, the guest's RAM registered
 * (pinned: never swapped), what the VMM loaded encrypted in place by LAUNCH_UPDATE_DATA,
 * then LAUNCH_MEASURE and LAUNCH_FINISH before the first guest instruction. The ioctl is
 * a parameter so that the unit tests can check the sequence without a SEV host. */
#ifndef CME_SEV_PRIV_H
#define CME_SEV_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The guest policy (SEV API, "Guest Policy"): what the firmware lets anyone do with the
 * guest's key. CME's: no debugging (DBG_DECRYPT refused), no key sharing with other
 * guests, and no SEND_START — the PSP itself refuses to export the guest (CME does not
 * migrate or snapshot confidential guests). */
#define SEV_POLICY_NODBG  0x01u
#define SEV_POLICY_NOKS	  0x02u
#define SEV_POLICY_ES	  0x04u
#define SEV_POLICY_NOSEND 0x08u
#define SEV_POLICY_CME	  (SEV_POLICY_NODBG | SEV_POLICY_NOKS | SEV_POLICY_NOSEND)

#define SEV_MEASURE_MAX 512 /* the launch measurement blob: 48 bytes on every SEV part */

struct sev_ops {
	/* ioctl(2): 0 (or a value) on success, -1 with errno on failure. */
	int (*ioctl)(int fd, unsigned long req, void *arg);
};

enum sev_stage { SEV_NEW, SEV_STARTED, SEV_FINISHED, SEV_FAILED };

struct sev_launch {
	const struct sev_ops *ops;
	int vm_fd, sev_fd;
	uint32_t policy, handle;
	unsigned c_bit; /* the guest page-table bit that marks private (encrypted) memory */
	enum sev_stage stage;
	uint64_t encrypted; /* bytes LAUNCH_UPDATE_DATA encrypted */
	uint8_t measure[SEV_MEASURE_MAX];
	uint32_t measure_len;
};

/* The C-bit position from CPUID 0x8000001f (eax: bit 1 is SEV; ebx[5:0] the position), or
 * -1 where the processor has no SEV. */
int sev_cbit_from_cpuid(uint32_t eax, uint32_t ebx);
/* This processor's C-bit, or -1 (not an AMD processor with SEV). */
int sev_host_cbit(void);
/* The firmware's name for a PSP status code ("POLICY_FAILURE"), "UNKNOWN" past the list. */
const char *sev_error_name(uint32_t code);

/* Fill s for the VM vm_fd (no vCPU created yet) with /dev/sev open as sev_fd, then INIT
 * and LAUNCH_START with policy. Returns 0, or -errno with the command and the firmware's
 * reason in err. */
int sev_begin(struct sev_launch *s, const struct sev_ops *ops, int vm_fd, int sev_fd,
	      unsigned c_bit, uint32_t policy, char *err, size_t len);
/* KVM_MEMORY_ENCRYPT_REG_REGION: RAM [hva, hva + size) may hold encrypted pages; KVM pins
 * it for the VM's life. */
int sev_register(struct sev_launch *s, void *hva, uint64_t size, char *err, size_t len);
/* LAUNCH_UPDATE_DATA: encrypt [hva, hva + size) in place with the guest's key (both
 * 16-byte aligned; 1 GiB per call). Only between begin and finish. */
int sev_encrypt(struct sev_launch *s, void *hva, uint64_t size, char *err, size_t len);
/* LAUNCH_MEASURE (its blob kept in s->measure) and LAUNCH_FINISH: the guest may run. */
int sev_finish(struct sev_launch *s, char *err, size_t len);

#endif
