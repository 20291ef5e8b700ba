# cme-vmm: main, option parsing, control socket, ctl and migrate clients. Data plane only.
PROGS        += cme-vmm
cme-vmm_DEPS := migrate backup store net hypervisor proto common
cme-vmm_SRCS := cmd/cme-vmm/main.c cmd/cme-vmm/args.c cmd/cme-vmm/api.c \
                cmd/cme-vmm/api_migrate.c cmd/cme-vmm/api_server.c cmd/cme-vmm/api_proto.c cmd/cme-vmm/api_fence.c \
                cmd/cme-vmm/api_balloon.c cmd/cme-vmm/api_backup.c \
                cmd/cme-vmm/ctl.c cmd/cme-vmm/cgroup.c cmd/cme-vmm/keyfile.c cmd/cme-vmm/jail.c \
                cmd/cme-vmm/migrate_cli.c cmd/cme-vmm/backup_cli.c cmd/cme-vmm/api_incoming.c
