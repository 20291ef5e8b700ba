# cluster: the cluster records in etcd (JSON encode/decode with checks), the whole cluster
# as one consistent read (and as ha's plain structs), the event log. Shared by cme-clusterd
# and cmectl.
MODULES      += cluster
cluster_DEPS := etcd ha common
cluster_SRCS := cluster/records.c cluster/view.c cluster/events.c
