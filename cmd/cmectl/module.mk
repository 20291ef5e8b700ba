# cmectl: the operator's command line (etcd only; never talks to a VMM directly).
PROGS        += cmectl
cmectl_DEPS  := cluster etcd ha store common
cmectl_SRCS  := cmd/cmectl/main.c cmd/cmectl/args.c cmd/cmectl/ctl.c cmd/cmectl/output.c \
                cmd/cmectl/wait.c cmd/cmectl/mig_fmt.c cmd/cmectl/node.c \
                cmd/cmectl/node_drain.c cmd/cmectl/vm.c cmd/cmectl/vm_create.c \
                cmd/cmectl/vm_state.c cmd/cmectl/vm_migrate.c cmd/cmectl/console.c \
                cmd/cmectl/events.c cmd/cmectl/status.c cmd/cmectl/image.c cmd/cmectl/trust.c cmd/cmectl/backup.c cmd/cmectl/vm_backup.c
