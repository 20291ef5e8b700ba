# Test runners. Unit tests link the modules they test (built with SAN=1 by `make test`);
# KVM tests drive the real programs and also use the hypervisor library in-process.
TEST_INC   := -Itests/lib -Itests/unit -Itests/kvm -Ifuzz -Icommon -Iproto -I$(GEN)/proto \
              -Ihypervisor -Icmd/cme-vmm -Inet -Imigrate -Iha -Ietcd -Icluster -Iclusterd \
              -Itests/guest/selfcheck -Istore -Ibackup
TEST_LIBS  := -lcunit
VMM_LIB_OBJS := $(O)/obj/cmd/cme-vmm/args.o $(O)/obj/cmd/cme-vmm/api_proto.o
# The control API's handlers (the handlers' fuzz target, replayed by the unit tests).
VMM_API_OBJS := $(patsubst %,$(O)/obj/cmd/cme-vmm/%.o,api api_server api_migrate api_fence \
                  api_balloon api_backup api_incoming keyfile jail cgroup)

HARNESS_SRCS := tests/lib/harness.c tests/lib/netns.c tests/lib/vmm_proc.c tests/lib/console_client.c \
                tests/lib/etcd_proc.c tests/lib/netpeer.c
FUZZ_SRCS    := $(filter-out fuzz/libfuzzer.c,$(wildcard fuzz/*.c))
UNIT_SRCS    := $(wildcard tests/unit/*.c) $(HARNESS_SRCS) $(FUZZ_SRCS)
KVM_SRCS     := $(wildcard tests/kvm/*.c) $(HARNESS_SRCS)
E2E_SRCS     := $(wildcard tests/e2e/*.c) $(HARNESS_SRCS)
UNIT_OBJS    := $(patsubst %.c,$(O)/obj/%.o,$(UNIT_SRCS))
KVM_OBJS     := $(patsubst %.c,$(O)/obj/%.o,$(KVM_SRCS))
E2E_OBJS     := $(patsubst %.c,$(O)/obj/%.o,$(E2E_SRCS))
TEST_DATA_LIBS := $(call link_libs,clusterd cluster etcd ha migrate backup store net hypervisor proto common)

$(sort $(UNIT_OBJS) $(KVM_OBJS) $(E2E_OBJS)): MOD_INC := $(TEST_INC) -Itests/e2e

$(O)/tests/unit-tests: $(UNIT_OBJS) $(VMM_LIB_OBJS) $(VMM_API_OBJS) $(TEST_DATA_LIBS)
	@mkdir -p $(@D)
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(TEST_LIBS)

$(O)/tests/kvm-tests: $(KVM_OBJS) $(VMM_LIB_OBJS) $(TEST_DATA_LIBS)
	@mkdir -p $(@D)
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(TEST_LIBS)

# End-to-end: drives etcd, cme-clusterd and cmectl as processes; links only the etcd
# client (to read records) besides the harness.
$(O)/tests/e2e-tests: $(E2E_OBJS) $(call link_libs,etcd common)
	@mkdir -p $(@D)
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(TEST_LIBS)

.PHONY: unit-bin kvm-bin e2e-bin
unit-bin: $(O)/tests/unit-tests
kvm-bin: $(O)/tests/kvm-tests
e2e-bin: $(O)/tests/e2e-tests
