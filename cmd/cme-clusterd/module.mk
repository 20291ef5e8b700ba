# cme-clusterd: the per-host cluster daemon (thin main over the clusterd library).
PROGS             += cme-clusterd
cme-clusterd_DEPS := clusterd cluster etcd ha net store common
cme-clusterd_SRCS := cmd/cme-clusterd/main.c
