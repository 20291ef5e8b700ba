/* Guest memory encryption on this host: AMD SEV, SEV-ES, SEV-SNP (kvm_amd's parameters)
 * or Intel TDX (kvm_intel's). What the host offers is read from the modules' parameters,
 * where the kernel says whether it enabled each for KVM. */
#include "vm_priv.h"

#include <stdio.h>
#include <string.h>

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
