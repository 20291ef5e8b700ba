/* KVM integration tests: real cme-vmm processes and real KVM. */
#include "harness.h"
#include "kvmtests.h"

int main(void)
{
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	suite_cli();
	suite_guest();
	suite_control();
	suite_dirty();
	suite_digest();
	suite_snapshot();
	suite_linux();
	suite_migrate();
	suite_migrate_ext();
	suite_postcopy();
	suite_vmm_fence();
	suite_virtio();
	suite_resources();
	suite_balloon();
	suite_net();
	suite_cputemplate();
	suite_measured();
	suite_sandbox();
	suite_jail();
	suite_backup();
	return test_main("kvm");
}
