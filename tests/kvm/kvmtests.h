/* Each KVM test file registers one suite. */
#ifndef CME_KVMTESTS_H
#define CME_KVMTESTS_H
void suite_cli(void);
void suite_guest(void);
void suite_control(void);
void suite_dirty(void);
void suite_digest(void);
void suite_snapshot(void);
void suite_linux(void);
void suite_migrate(void);
void suite_migrate_ext(void);
void suite_postcopy(void);
void suite_vmm_fence(void);
void suite_virtio(void);
void suite_resources(void);
void suite_balloon(void);
void suite_net(void);
void suite_cputemplate(void);
void suite_measured(void);
void suite_sandbox(void);
void suite_jail(void);
void suite_backup(void);
#endif
