# store: the backup store — encrypted content-addressed chunks and manifests in a folder.
# Shared by both planes (cme-vmm writes and restores backups, cmectl lists, verifies,
# prunes and syncs them), like proto and common. Listed bottom-up.
MODULES    += store
store_DEPS := common
store_SRCS := store/store.c store/manifest.c store/catalog.c store/sync.c
