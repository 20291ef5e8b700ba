# clusterd: cluster records, registration, leader election, reconcile and migration
# orchestration on top of the etcd client.
MODULES       += clusterd
clusterd_DEPS := etcd ha common
clusterd_SRCS := clusterd/records.c clusterd/view.c clusterd/events.c clusterd/config.c \
                 clusterd/vmm.c clusterd/daemon.c clusterd/reconcile.c clusterd/migration.c \
                 clusterd/mig_steps.c clusterd/leader.c
