# backup: live backups of a running VM into a store, and restore from one.
MODULES     += backup
backup_DEPS := store hypervisor proto common
backup_SRCS := backup/lazy.c backup/restore.c backup/backup.c
