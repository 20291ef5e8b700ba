# tests/guest/guest.mk — the test guests, included by the top Makefile (run from the tree's
# root, B = build root). selfcheck is a freestanding flat image (DESIGN.md "The test guest";
# tests/guest/selfcheck/README.md): no libc, and no SSE from the compiler, because its
# workload keeps a checksum in xmm0/xmm1 through inline asm and nothing else may touch the
# vector registers. Guests are never built with the sanitizers.

SELFCHECK_DIR  := tests/guest/selfcheck
SELFCHECK_OBJ  := $(B)/guest/obj/selfcheck
SELFCHECK_LDS  := $(SELFCHECK_DIR)/selfcheck.ld
SELFCHECK_OBJS := $(addprefix $(SELFCHECK_OBJ)/,entry.o ring0.o config.o lib.o vmmio.o vblk.o vballoon.o balloon.o vnet.o netload.o workload.o multiboot.o)

OBJCOPY ?= objcopy
GUEST_CFLAGS := -std=c11 -O2 -g -Wall -Wextra -Wstrict-prototypes -Wmissing-prototypes \
	-Wshadow -Werror -ffreestanding -fno-builtin -nostdlib -fno-pic -fno-pie \
	-fno-stack-protector -fcf-protection=none -fno-asynchronous-unwind-tables \
	-fno-tree-loop-distribute-patterns -mno-red-zone -mno-sse -mno-sse2 -mno-mmx \
	-mno-80387 -MMD -MP
GUEST_LDFLAGS := -nostdlib -static -no-pie -Wl,--build-id=none -Wl,-z,noexecstack \
	-Wl,--no-warn-rwx-segments -Wl,-T,$(SELFCHECK_LDS)

$(SELFCHECK_OBJ)/%.o: $(SELFCHECK_DIR)/%.c
	@mkdir -p $(@D)
	@echo "  CC      $<"
	@$(CC) $(GUEST_CFLAGS) -c $< -o $@

$(SELFCHECK_OBJ)/%.o: $(SELFCHECK_DIR)/%.S
	@mkdir -p $(@D)
	@echo "  AS      $<"
	@$(CC) $(GUEST_CFLAGS) -c $< -o $@

# The ELF is kept beside the image for objdump and gdb.
$(B)/guest/selfcheck.elf: $(SELFCHECK_OBJS) $(SELFCHECK_LDS)
	@echo "  LD      $@"
	@$(CC) $(GUEST_CFLAGS) $(GUEST_LDFLAGS) -o $@ $(SELFCHECK_OBJS)

$(B)/guest/selfcheck.bin: $(B)/guest/selfcheck.elf
	@echo "  OBJCOPY $@"
	@$(OBJCOPY) -O binary $< $@

GUESTS += $(B)/guest/selfcheck.bin
