/* Guest memory encryption on this host: AMD SEV, SEV-ES, SEV-SNP (kvm_amd's parameters)
 * or Intel TDX (kvm_intel's). What the host offers is read from the modules' parameters,
 * where the kernel says whether it enabled each for KVM. A confidential VM is launched
 * with SEV (sev.c) in vm_create's and vm_start's order. */
#include "sev_priv.h"
#include "vm_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define SUB "vm"

static bool param_on(const char *path)
{
	char v[8] = "";
	FILE *f = fopen(path, "r");

	if (!f)
		return false;
	if (!fgets(v, sizeof(v), f))
		v[0] = 0;
	fclose(f);
	return v[0] == 'Y' || v[0] == 'y' || v[0] == '1';
}

int vm_host_memory_encryption(char *buf, size_t len)
{
	static const struct {
		const char *name, *param;
	} techs[] = {
		{ "sev", "/sys/module/kvm_amd/parameters/sev" },
		{ "sev-es", "/sys/module/kvm_amd/parameters/sev_es" },
		{ "sev-snp", "/sys/module/kvm_amd/parameters/sev_snp" },
		{ "tdx", "/sys/module/kvm_intel/parameters/tdx" },
	};
	int n = 0;

	buf[0] = 0;
	for (size_t i = 0; i < sizeof(techs) / sizeof(techs[0]); i++) {
		if (!param_on(techs[i].param))
			continue;
		snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", n ? "," : "", techs[i].name);
		n++;
	}
	return n;
}

static int sev_ioctl(int fd, unsigned long req, void *arg)
{
	return ioctl(fd, req, arg);
}

static const struct sev_ops kvm_sev_ops = { .ioctl = sev_ioctl };

int vm_confidential_begin(struct vm *vm)
{
	char err[256];
	int cbit, fd, rc;

	if (!vm->cfg.confidential)
		return 0;
	cbit = sev_host_cbit();
	if (cbit < 0) {
		log_err(SUB,
			"vm=%s --confidential: this processor has no AMD SEV (CPUID "
			"0x8000001f); CME launches no other kind of confidential guest",
			vm->cfg.name);
		return -ENOTSUP;
	}
	fd = open("/dev/sev", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		log_err(SUB, "vm=%s --confidential: /dev/sev: %s", vm->cfg.name, strerror(errno));
		return rc;
	}
	vm->sev = calloc(1, sizeof(*vm->sev));
	if (!vm->sev) {
		close(fd);
		return -ENOMEM;
	}
	rc = sev_begin(vm->sev, &kvm_sev_ops, vm->vm_fd, fd, (unsigned)cbit, SEV_POLICY_CME, err,
		       sizeof(err));
	if (rc)
		log_err(SUB, "vm=%s --confidential: %s", vm->cfg.name, err);
	return rc;
}

int vm_confidential_register(struct vm *vm)
{
	char err[256];

	for (unsigned i = 0; vm->sev && i < vm->nr_slots; i++) {
		int rc = sev_register(vm->sev, vm->slots[i].hva, vm->slots[i].size, err,
				      sizeof(err));

		if (rc) {
			log_err(SUB, "vm=%s --confidential: %s", vm->cfg.name, err);
			return rc;
		}
	}
	return 0;
}

int vm_confidential_launch(struct vm *vm)
{
	uint64_t n = (vm->loaded_end + VM_PAGE_SIZE - 1) & ~(uint64_t)(VM_PAGE_SIZE - 1);
	char err[256];
	int rc;

	if (!vm->sev || vm->sev->stage == SEV_FINISHED)
		return 0;
	if (n == 0 || n > vm->slots[0].size) { /* nothing loaded: no guest to launch */
		log_err(SUB, "vm=%s --confidential: no loaded image to encrypt", vm->cfg.name);
		return -EINVAL;
	}
	rc = sev_encrypt(vm->sev, vm->slots[0].hva, n, err, sizeof(err));
	if (!rc)
		rc = sev_finish(vm->sev, err, sizeof(err));
	if (rc) {
		log_err(SUB, "vm=%s --confidential: %s", vm->cfg.name, err);
		return rc;
	}
	log_info(SUB,
		 "vm=%s launched with AMD SEV: policy 0x%x, C-bit %u, %llu KiB encrypted and "
		 "measured (%u-byte launch measurement)",
		 vm->cfg.name, vm->sev->policy, vm->sev->c_bit,
		 (unsigned long long)(vm->sev->encrypted >> 10), vm->sev->measure_len);
	return 0;
}

void vm_confidential_free(struct vm *vm)
{
	if (!vm->sev)
		return;
	if (vm->sev->sev_fd >= 0)
		close(vm->sev->sev_fd);
	free(vm->sev);
	vm->sev = NULL;
}

bool vm_get_confidential(struct vm *vm, struct vm_confidential *out)
{
	const struct sev_launch *s = vm->sev;

	if (!s || !out)
		return s != NULL;
	*out = (struct vm_confidential){ .technology = "sev",
					 .policy = s->policy,
					 .c_bit = s->c_bit,
					 .launched = s->stage == SEV_FINISHED,
					 .encrypted = s->encrypted,
					 .measurement_len = s->measure_len };
	memcpy(out->measurement, s->measure, s->measure_len);
	return true;
}
