# CME — the only build entry point. One non-recursive build of the whole tree into build/.
# Each module lists its sources and dependencies in its module.mk; each is compiled with
# the include paths of its own dependencies only, so a forbidden include fails to build.
#
#   make            deps, programs and test guests
#   make test       format and layering checks, unit tests (ASan+UBSan build), then the KVM
#                   integration and end-to-end tests
#   make bench      benchmarks, JSON lines on stdout
#   make demo       the narrated end-to-end showcase
#   make SAN=1      build everything with AddressSanitizer + UndefinedBehaviorSanitizer
#   make check-all  make test, then the KVM and end-to-end tiers again on sanitized programs
#   make fuzz       libFuzzer on every parser, FUZZ_SECONDS each (default 60; clang)

B       := build
ifeq ($(FUZZ),1)
O       := $(B)/fuzz
CC      := clang
SANFLAGS := -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer \
	    -Wno-gnu-variable-sized-type-not-at-end
else ifeq ($(SAN),1)
O       := $(B)/san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
O       := $(B)
SANFLAGS :=
endif

CC      ?= gcc
PKGS    := libcurl libprotobuf-c openssl libsodium libxxhash jansson cunit libseccomp
WARN    := -Wall -Wextra -Wstrict-prototypes -Wmissing-prototypes -Wshadow -Werror
CFLAGS  := -std=c11 -D_GNU_SOURCE -O2 -g $(WARN) -MMD -MP $(SANFLAGS)
LDFLAGS := $(SANFLAGS) -pthread

.PHONY: all deps programs guests test check-all fuzz fuzz-bin unit-test kvm-test bench demo soak clean format \
	format-check \
	check-layers print-layers
.DEFAULT_GOAL := all
# Keep generated sources (protobuf-c) between runs.
.SECONDARY:

all: deps
	@$(MAKE) --no-print-directory programs guests

deps:
	@sh mk/deps.sh

# ---- modules -------------------------------------------------------------------------
GEN := $(O)/gen
MODULES :=
include common/module.mk store/module.mk net/module.mk proto/module.mk hypervisor/module.mk
include migrate/module.mk backup/module.mk ha/module.mk etcd/module.mk cluster/module.mk clusterd/module.mk

# mod_objs(module): object files of a module
mod_objs = $(patsubst %.c,$(O)/obj/%.o,$($(1)_SRCS)) $($(1)_GENOBJS)
# mod_incs(module): -I flags for the module and its dependencies
mod_incs = $(foreach m,$(1) $($(1)_DEPS),-I$(m) $($(m)_EXTRA_INC))
# mod_libs(module): archives for the module and its dependencies, in link order
mod_libs = $(foreach m,$(1) $($(1)_DEPS),$(O)/lib/lib$(m).a)

define module_rules
$(1)_OBJS := $$(call mod_objs,$(1))
$$(patsubst %.c,$(O)/obj/%.o,$$($(1)_SRCS)): MOD_INC := $$(call mod_incs,$(1))
$(O)/lib/lib$(1).a: $$($(1)_OBJS)
	@mkdir -p $$(@D)
	@rm -f $$@
	@echo "  AR      $$@"
	@ar rcs $$@ $$^
endef
$(foreach m,$(MODULES),$(eval $(call module_rules,$(m))))

# Generated protobuf headers exist before anything is compiled (order-only).
$(O)/obj/%.o: %.c | $(proto_GENH)
	@mkdir -p $(@D)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS) $(MOD_INC) -c $< -o $@

# ---- programs ------------------------------------------------------------------------
PROGS :=
include cmd/cme-vmm/module.mk cmd/cme-clusterd/module.mk $(wildcard cmd/cmectl/module.mk)

define prog_rules
$(1)_OBJS := $$(patsubst %.c,$(O)/obj/%.o,$$($(1)_SRCS))
$$($(1)_OBJS): MOD_INC := -Icmd/$(1) $$(foreach m,$$($(1)_DEPS),-I$$(m) $$($$(m)_EXTRA_INC))
$(O)/bin/$(1): $$($(1)_OBJS) $$(foreach m,$$($(1)_DEPS),$(O)/lib/lib$$(m).a)
	@mkdir -p $$(@D)
	@echo "  LD      $$@"
	@$(CC) $(LDFLAGS) -o $$@ $$($(1)_OBJS) $$(call link_libs,$$($(1)_DEPS)) $$(LDLIBS)
endef
# Static archives in link order: a program's DEPS list users before what they use.
link_libs = $(foreach m,$(1),$(O)/lib/lib$(m).a)
LDLIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm
$(foreach p,$(PROGS),$(eval $(call prog_rules,$(p))))

programs: $(foreach p,$(PROGS),$(O)/bin/$(p))

# ---- guests --------------------------------------------------------------------------
GUESTS :=
include tests/guest/guest.mk
include tests/guest/linux/linux.mk
guests: $(GUESTS)

# ---- tests and benchmarks ------------------------------------------------------------
include tests/tests.mk
include bench/bench.mk

test: deps
	@$(MAKE) --no-print-directory format-check
	@$(MAKE) --no-print-directory SAN=1 unit-bin
	@$(MAKE) --no-print-directory programs guests kvm-bin e2e-bin
	@$(MAKE) --no-print-directory check-layers
	@sh tests/run.sh

# The KVM and end-to-end tiers on programs built with ASan+UBSan (slower than make test,
# and not in CI's time budget): a memory error in a VMM or daemon fails its test.
check-all: test
	@$(MAKE) --no-print-directory SAN=1 programs kvm-bin e2e-bin
	@ln -sfn ../guest build/san/guest
	@CME_BUILD=build/san CME_TIERS="kvm e2e" sh tests/run.sh

# ---- fuzzing -------------------------------------------------------------------------
# Each fuzz/fuzz_NAME.c linked with libFuzzer (clang, from Debian: installed here, not by
# make deps), the modules built with clang's coverage and ASan+UBSan into build/fuzz/.
FUZZ_TARGETS := records linux request proto config snapshot handlers stream store etcd
FUZZ_SECONDS ?= 60
FUZZ_INC := -Ifuzz -Icommon -Iproto -I$(GEN)/proto -Ihypervisor -Icmd/cme-vmm -Icluster \
	    -Iclusterd -Ietcd -Iha -Inet -Imigrate -Istore -Ibackup
fuzz: deps
	@sh mk/deps.sh clang
	@$(MAKE) --no-print-directory FUZZ=1 fuzz-bin
	@sh fuzz/run.sh $(B)/fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-bin: $(patsubst %,$(O)/fuzzers/%,$(FUZZ_TARGETS))
FUZZ_OBJS := $(O)/obj/cmd/cme-vmm/api_proto.o $(VMM_API_OBJS) $(O)/obj/tests/unit/unit_vm.o
$(O)/fuzzers/%: fuzz/fuzz_%.c fuzz/libfuzzer.c $(FUZZ_OBJS) \
		$(call link_libs,clusterd cluster etcd ha migrate backup store net hypervisor proto common) \
		| $(proto_GENH)
	@mkdir -p $(@D)
	@echo "  FUZZ    $@"
	@$(CC) $(CFLAGS) -fsanitize=fuzzer $(FUZZ_INC) -Itests/unit -DFUZZ_FN=fuzz_$* -o $@ \
		fuzz/fuzz_$*.c fuzz/libfuzzer.c $(FUZZ_OBJS) \
		$(call link_libs,clusterd cluster etcd ha migrate backup store net hypervisor proto common) \
		$(LDLIBS)
$(O)/obj/cmd/cme-vmm/api_proto.o: MOD_INC := -Icmd/cme-vmm -Imigrate -Inet -Ihypervisor \
	-Iproto -I$(GEN)/proto -Icommon

# The HA soak (up to 5 minutes of random faults; not part of make test).
soak: deps
	@$(MAKE) --no-print-directory programs guests e2e-bin
	@CME_BUILD=build CME_SOAK=1 CME_TEST_SUITE=soak build/tests/e2e-tests

demo: deps
	@$(MAKE) --no-print-directory programs guests
	@sh deploy/demo.sh

# make bench also installs QEMU (bench only): its migration is the comparison it prints.
bench: deps
	@sh mk/deps.sh qemu-system-x86
	@$(MAKE) --no-print-directory programs guests bench-bin
	@sh bench/run.sh

FMT_SRCS = $(shell git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.[ch]' -not -path './build/*')
format:
	clang-format -i $(FMT_SRCS)
format-check:
	@if command -v clang-format >/dev/null; then \
		clang-format --dry-run --Werror $(FMT_SRCS) && echo "format: clean"; \
	else echo "format: clang-format not installed, check skipped"; fi

# Layering: no include of another module's private header or by a path, no circle
# between the files of a module (checked on the objects of `make programs`), no C file
# over 1,000 lines.
print-layers:
	@$(foreach m,$(MODULES),echo "$(m) $($(m)_DEPS)";)
	@$(foreach p,$(PROGS),echo "cmd/$(p) $($(p)_DEPS)";)
check-layers: programs
	@$(MAKE) --no-print-directory -s print-layers | sh mk/check-includes.sh
	@sh mk/check-cycles.sh $(O)/obj
	@sh mk/check-sizes.sh

clean:
	rm -rf $(B)

-include $(shell find $(B) -name '*.d' 2>/dev/null)
