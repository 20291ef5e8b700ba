/* Each end-to-end test file registers one suite. */
#ifndef CME_E2E_H
#define CME_E2E_H
void suite_cluster(void);
void suite_migrate(void);
void suite_trust(void);
void suite_backup_cluster(void);
void suite_ha(void);
void suite_ha_quorum(void);
void suite_soak(void);
#endif
