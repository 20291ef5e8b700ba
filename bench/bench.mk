# Benchmarks: JSON lines on stdout. They reuse the test harness's process helpers.
BENCH_SRCS := bench/bench.c bench/bench_migrate.c bench/bench_qemu.c bench/bench_cluster.c \
              bench/bench_guest.c bench/bench_net.c bench/bench_ha.c bench/bench_backup.c tests/e2e/e2e_cluster.c \
              $(HARNESS_SRCS)
BENCH_OBJS := $(patsubst %.c,$(O)/obj/%.o,$(BENCH_SRCS))
$(O)/obj/bench/bench.o $(O)/obj/bench/bench_migrate.o $(O)/obj/bench/bench_qemu.o \
$(O)/obj/bench/bench_cluster.o $(O)/obj/bench/bench_guest.o $(O)/obj/bench/bench_net.o \
$(O)/obj/bench/bench_ha.o $(O)/obj/bench/bench_backup.o: MOD_INC := $(TEST_INC) -Ibench -Itests/e2e

$(O)/bench/cme-bench: $(BENCH_OBJS) $(TEST_DATA_LIBS)
	@mkdir -p $(@D)
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(TEST_LIBS)

.PHONY: bench-bin
bench-bin: $(O)/bench/cme-bench

# Raw OpenSSL TLS 1.3 loopback throughput: the baseline for the migration transport. Its
# sockets are tuned by net's own net_sock_tune, so it links libnet.
$(O)/obj/bench/tlsbench.o: MOD_INC := $(call mod_incs,net)
$(O)/bench/tlsbench: $(O)/obj/bench/tlsbench.o $(call mod_libs,net)
	@mkdir -p $(@D)
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
bench-bin: $(O)/bench/tlsbench
