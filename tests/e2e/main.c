/* End-to-end tests: etcd, several cme-clusterd, cmectl and real KVM guests. */
#include "e2e.h"
#include "harness.h"

int main(void)
{
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	suite_cluster();
	suite_migrate();
	suite_trust();
	suite_backup_cluster();
	suite_ha();
	suite_ha_quorum();
	suite_soak();
	return test_main("e2e");
}
