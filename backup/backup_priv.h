/* Private to backup/. */
#ifndef CME_BACKUP_PRIV_H
#define CME_BACKUP_PRIV_H

#include "backup.h"
#include "store.h"

/* lazy.c: register vm's RAM (created, state not loaded yet) with userfaultfd and start
 * the threads that bring m's chunks from st in. *out takes st and m's areas over (m is
 * left empty). 0, or -errno with the reason in err (st and m stay the caller's). */
int lazy_begin(struct vm *vm, struct store *st, struct store_manifest *m, struct backup_lazy **out,
	       char *err, size_t len) CME_WUR;

/* The store's shared lock (store_lock), released once every chunk is in. */
void lazy_hold_lock(struct backup_lazy *lz, int fd);

#endif
