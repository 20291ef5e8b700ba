# cme-vmm: main, option parsing, control socket, ctl client. Data plane only.
PROGS        += cme-vmm
cme-vmm_DEPS := hypervisor proto common
cme-vmm_SRCS := cmd/cme-vmm/main.c cmd/cme-vmm/args.c cmd/cme-vmm/api.c \
                cmd/cme-vmm/api_server.c cmd/cme-vmm/ctl.c
