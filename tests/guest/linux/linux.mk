# tests/guest/linux/linux.mk — the Linux guest kit (DESIGN.md "Interfaces"), included by
# the top Makefile (run from the tree's root, B = build root). mkkit.sh builds all three
# outputs in one run and is idempotent, so one grouped rule owns them; it fetches Debian's
# cloud kernel through apt (cached in $(B)/guest/linux/cache) and builds the static
# workload with $(CC).

LINUX_KIT_DIR  := tests/guest/linux
LINUX_KIT_OUT  := $(B)/guest/linux
LINUX_KIT_SRCS := $(addprefix $(LINUX_KIT_DIR)/,mkkit.sh init selfcheck.c)
LINUX_KIT      := $(addprefix $(LINUX_KIT_OUT)/,vmlinuz vmlinux initrd.cpio.gz)

$(LINUX_KIT) &: $(LINUX_KIT_SRCS)
	@CC="$(CC)" sh $(LINUX_KIT_DIR)/mkkit.sh $(LINUX_KIT_OUT)

GUESTS += $(LINUX_KIT_OUT)/initrd.cpio.gz
