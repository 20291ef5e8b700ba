# clusterd: the etcd client (gateway JSON over HTTP), then cluster records, registration,
# leader election, reconcile and migration orchestration on top of it.
MODULES       += clusterd
clusterd_DEPS := ha proto common
clusterd_SRCS := clusterd/etcd.c clusterd/etcd_json.c clusterd/etcd_kv.c clusterd/etcd_txn.c \
                 clusterd/etcd_lease.c clusterd/etcd_watch.c clusterd/records.c clusterd/view.c clusterd/events.c clusterd/config.c clusterd/vmm.c clusterd/daemon.c clusterd/reconcile.c clusterd/migration.c clusterd/mig_steps.c clusterd/leader.c
