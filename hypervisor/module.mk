# hypervisor: KVM VM/vCPU/memory, boot loaders, devices, run control.
MODULES         += hypervisor
hypervisor_DEPS := common proto
hypervisor_SRCS := hypervisor/gpa.c hypervisor/vm.c hypervisor/vcpu.c hypervisor/run.c hypervisor/fence.c hypervisor/end.c \
                   hypervisor/exits.c hypervisor/boot_flat.c hypervisor/uart.c hypervisor/console.c \
                   hypervisor/virtq.c hypervisor/virtio_mmio.c hypervisor/virtio_blk.c hypervisor/virtio_balloon.c hypervisor/virtio_net.c hypervisor/ratelimit.c hypervisor/devices.c hypervisor/dev_uart.c hypervisor/dev_power.c \
                   hypervisor/dev_state.c hypervisor/arena.c hypervisor/state.c hypervisor/state_vcpu.c \
                   hypervisor/cpu_template.c hypervisor/confidential.c hypervisor/sev.c hypervisor/state_cpuid.c hypervisor/snapshot.c \
                   hypervisor/boot_linux.c hypervisor/linux_parse.c hypervisor/acpi.c hypervisor/sandbox.c
