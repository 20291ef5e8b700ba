/* AMD SEV launch: the PSP commands KVM forwards (sev_priv.h). */
#include "sev_priv.h"

#include <cpuid.h>
#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>

/* LAUNCH_UPDATE_DATA's len is 32 bits, and the kernel keeps a run of contiguous pages in an
 * int: 1 GiB at a time. */
#define SEV_UPDATE_MAX (1ull << 30)

int sev_cbit_from_cpuid(uint32_t eax, uint32_t ebx)
{
	return eax & 0x2 ? (int)(ebx & 0x3f) : -1;
}

int sev_host_cbit(void)
{
	unsigned a, b, c, d;

	if (!__get_cpuid(0x80000000u, &a, &b, &c, &d) || a < 0x8000001fu)
		return -1;
	__cpuid(0x8000001fu, a, b, c, d);
	return sev_cbit_from_cpuid(a, b);
}

const char *sev_error_name(uint32_t code)
{
	static const char *const names[] = {
		"SUCCESS",
		"INVALID_PLATFORM_STATE",
		"INVALID_GUEST_STATE",
		"INVALID_CONFIG",
		"INVALID_LENGTH",
		"ALREADY_OWNED",
		"INVALID_CERTIFICATE",
		"POLICY_FAILURE",
		"INACTIVE",
		"INVALID_ADDRESS",
		"BAD_SIGNATURE",
		"BAD_MEASUREMENT",
		"ASID_OWNED",
		"INVALID_ASID",
		"WBINVD_REQUIRED",
		"DFFLUSH_REQUIRED",
		"INVALID_GUEST",
		"INVALID_COMMAND",
		"ACTIVE",
		"HWSEV_RET_PLATFORM",
		"HWSEV_RET_UNSAFE",
		"UNSUPPORTED",
		"INVALID_PARAM",
		"RESOURCE_LIMIT",
		"SECURE_DATA_INVALID",
	};

	return code < sizeof(names) / sizeof(names[0]) ? names[code] : "UNKNOWN";
}

/* One KVM_MEMORY_ENCRYPT_OP; on failure err names the command, errno and the firmware's
 * status. */
static int sev_cmd(struct sev_launch *s, uint32_t id, const char *what, void *data, char *err,
		   size_t len)
{
	struct kvm_sev_cmd cmd = { .id = id,
				   .data = (uint64_t)(uintptr_t)data,
				   .sev_fd = (uint32_t)s->sev_fd };

	if (s->ops->ioctl(s->vm_fd, KVM_MEMORY_ENCRYPT_OP, &cmd) >= 0)
		return 0;
	int e = errno ? errno : EIO;

	if (cmd.error) /* else KVM refused it before the firmware ran (no free ASID: EBUSY) */
		snprintf(err, len, "SEV %s: %s (firmware status %u %s)", what, strerror(e),
			 cmd.error, sev_error_name(cmd.error));
	else
		snprintf(err, len, "SEV %s: %s", what, strerror(e));
	s->stage = SEV_FAILED;
	return -e;
}

int sev_begin(struct sev_launch *s, const struct sev_ops *ops, int vm_fd, int sev_fd,
	      unsigned c_bit, uint32_t policy, char *err, size_t len)
{
	struct kvm_sev_launch_start start = { .policy = policy };
	int rc;

	*s = (struct sev_launch){
		.ops = ops, .vm_fd = vm_fd, .sev_fd = sev_fd, .policy = policy, .c_bit = c_bit
	};
	if (policy & SEV_POLICY_ES) /* its register state would need LAUNCH_UPDATE_VMSA */
		return snprintf(err, len, "SEV-ES policies are not launched by CME"), -ENOTSUP;
	rc = sev_cmd(s, KVM_SEV_INIT, "INIT", NULL, err, len);
	if (!rc)
		rc = sev_cmd(s, KVM_SEV_LAUNCH_START, "LAUNCH_START", &start, err, len);
	if (rc)
		return rc;
	s->handle = start.handle;
	s->stage = SEV_STARTED;
	return 0;
}

int sev_register(struct sev_launch *s, void *hva, uint64_t size, char *err, size_t len)
{
	struct kvm_enc_region r = { .addr = (uint64_t)(uintptr_t)hva, .size = size };

	if (s->stage != SEV_STARTED)
		return snprintf(err, len, "SEV: memory registered outside the launch"), -EINVAL;
	if (s->ops->ioctl(s->vm_fd, KVM_MEMORY_ENCRYPT_REG_REGION, &r) >= 0)
		return 0;
	int e = errno ? errno : EIO;

	snprintf(err, len, "SEV: registering %llu MiB of guest RAM: %s",
		 (unsigned long long)(size >> 20), strerror(e));
	s->stage = SEV_FAILED;
	return -e;
}

int sev_encrypt(struct sev_launch *s, void *hva, uint64_t size, char *err, size_t len)
{
	uint8_t *p = hva;

	if (s->stage != SEV_STARTED)
		return snprintf(err, len, "SEV: LAUNCH_UPDATE_DATA outside the launch"), -EINVAL;
	if (((uintptr_t)hva | size) & 15)
		return snprintf(err, len, "SEV: LAUNCH_UPDATE_DATA of an unaligned range"), -EINVAL;
	while (size) {
		uint64_t n = size < SEV_UPDATE_MAX ? size : SEV_UPDATE_MAX;
		struct kvm_sev_launch_update_data u = { .uaddr = (uint64_t)(uintptr_t)p,
							.len = (uint32_t)n };
		int rc = sev_cmd(s, KVM_SEV_LAUNCH_UPDATE_DATA, "LAUNCH_UPDATE_DATA", &u, err, len);

		if (rc)
			return rc;
		s->encrypted += n;
		p += n;
		size -= n;
	}
	return 0;
}

int sev_finish(struct sev_launch *s, char *err, size_t len)
{
	struct kvm_sev_launch_measure m = { 0 };
	char why[200] = "";
	int rc;

	if (s->stage != SEV_STARTED)
		return snprintf(err, len, "SEV: LAUNCH_FINISH outside the launch"), -EINVAL;
	/* The blob's length first (the firmware answers INVALID_LENGTH with it), as QEMU
	 * does: only the length is looked at. */
	(void)sev_cmd(s, KVM_SEV_LAUNCH_MEASURE, "LAUNCH_MEASURE", &m, why, sizeof(why));
	s->stage = SEV_STARTED;
	if (m.len == 0 || m.len > SEV_MEASURE_MAX) {
		s->stage = SEV_FAILED;
		return snprintf(err, len, "SEV LAUNCH_MEASURE: a blob of %u bytes%s%s", m.len,
				why[0] ? ": " : "", why),
		       -EPROTO;
	}
	m.uaddr = (uint64_t)(uintptr_t)s->measure;
	rc = sev_cmd(s, KVM_SEV_LAUNCH_MEASURE, "LAUNCH_MEASURE", &m, err, len);
	if (!rc)
		rc = sev_cmd(s, KVM_SEV_LAUNCH_FINISH, "LAUNCH_FINISH", NULL, err, len);
	if (rc)
		return rc;
	s->measure_len = m.len;
	s->stage = SEV_FINISHED;
	return 0;
}
