# clusterd: the daemon — registration, leader election, reconcile, migration orchestration
# and local VMMs, on the cluster records and the etcd client.
MODULES       += clusterd
clusterd_DEPS := cluster etcd ha net store common
clusterd_SRCS := clusterd/config.c clusterd/state.c clusterd/store.c clusterd/peer.c clusterd/quorum.c clusterd/hostcpu.c clusterd/images.c clusterd/vmm.c clusterd/fence.c clusterd/restore.c \
                 clusterd/reconcile.c clusterd/migration.c clusterd/mig_steps.c clusterd/pc_recover.c clusterd/trust.c clusterd/backup.c clusterd/restart.c \
                 clusterd/leader.c \
                 clusterd/daemon.c
