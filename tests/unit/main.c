/* Unit tests: pure logic, no KVM. Built with ASan + UBSan. */
#include "harness.h"
#include "unit.h"

int main(void)
{
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	suite_common();
	suite_args();
	suite_pagetables();
	suite_sev();
	suite_uart();
	suite_devices();
	suite_runctl();
	suite_api();
	suite_linux_parse();
	suite_tls();
	suite_etcd();
	suite_etcd_watch();
	suite_ha();
	suite_fence();
	suite_ha_restart();
	suite_records();
	suite_virtq();
	suite_ratelimit();
	suite_cpu();
	suite_fuzz();
	suite_stream();
	suite_store();
	return test_main("unit");
}
