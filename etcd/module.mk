# etcd: the etcd v3 client (the gRPC gateway's JSON over HTTP with libcurl): KV, txn,
# leases, watch, endpoint failover, TLS.
MODULES   += etcd
etcd_DEPS := common
etcd_SRCS := etcd/etcd.c etcd/etcd_json.c etcd/etcd_kv.c etcd/etcd_txn.c etcd/etcd_lease.c \
             etcd/etcd_watch.c
