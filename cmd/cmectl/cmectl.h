/* cmectl's private header: the options every command shares, the command table, argument
 * parsing, etcd access with one-line errors, output (tables and JSON) and waiting.
 *
 * Commands return an exit status: CTL_OK (0), CTL_FAIL (1, after one line on stderr
 * naming the problem) or CTL_USAGE (2, the same for a bad command line). */
#ifndef CMECTL_H
#define CMECTL_H

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>

#include "cluster.h"
#include "etcd.h"

enum { CTL_OK = 0, CTL_FAIL = 1, CTL_USAGE = 2 };

#define CTL_DEFAULT_ETCD    "http://127.0.0.1:2379"
#define CTL_DEFAULT_PREFIX  "/cme"
#define CTL_DEFAULT_TIMEOUT 120
#define CTL_KEY_MAX	    512

/* Options shared by every command, then the etcd client (opened on first use). */
struct ctl {
	const char *endpoints;
	const char *tls_dir;
	const char *prefix;
	const char *output;  /* "table" or "json" as given */
	const char *timeout; /* seconds as given */
	bool json;
	unsigned timeout_s;
	char ca[PATH_MAX], cert[PATH_MAX], key[PATH_MAX];
	struct etcd *etcd;
};

/* One command: "node ls" is group "node", name "ls"; top-level commands have no group. */
struct ctl_cmd {
	const char *group;
	const char *name;
	int (*run)(struct ctl *c, int argc, char **argv);
	const char *args;    /* synopsis after the command words */
	const char *summary; /* one line for help */
};

/* ---- arguments (args.c) ------------------------------------------------------------- */

enum flag_kind { FL_BOOL, FL_STR };

/* A command's flag: "--name" (and an optional short "-x") setting *on or *str. */
struct flag {
	const char *name;
	const char *alias;
	enum flag_kind kind;
	bool *on;
	const char **str;
};

/* Defaults from the environment (CME_ETCD, CME_TLS_DIR, CME_PREFIX) into c. */
void ctl_args_defaults(struct ctl *c);
/* Take the global options at the front of argv (up to the first command word). Returns
 * how many arguments were used, or -1 after a usage error line. */
int ctl_args_globals(struct ctl *c, int argc, char **argv);
/* Parse a command's arguments: its flags and the global options in any order, and the
 * positional NAME when pos_name is not NULL (then exactly one is required, into *pos).
 * Validates the global options too. Returns CTL_OK or CTL_USAGE (line printed). */
int ctl_args_parse(struct ctl *c, const char *cmd, int argc, char **argv, const struct flag *flags,
		   const char *pos_name, const char **pos) CME_WUR;
/* The same with exactly n positional arguments, named pos_names[i], into pos[i]. */
int ctl_args_parse_n(struct ctl *c, const char *cmd, int argc, char **argv,
		     const struct flag *flags, const char *const *pos_names, const char **pos,
		     int n) CME_WUR;
/* Parse a flag's decimal value in [min, max]; CTL_USAGE with a line naming it. */
int ctl_args_uint(const char *cmd, const char *flag, const char *s, uint64_t min, uint64_t max,
		  uint64_t *out) CME_WUR;

/* ---- etcd and records (ctl.c) ------------------------------------------------------- */

/* Print "cmectl: <message>" on stderr and return CTL_FAIL / CTL_USAGE. */
int ctl_fail(const char *fmt, ...) CME_PRINTF(1, 2);
int ctl_usage(const char *fmt, ...) CME_PRINTF(1, 2);
/* Open the etcd client once (CTL_OK, or CTL_FAIL with the line printed). */
int ctl_connect(struct ctl *c) CME_WUR;
void ctl_close(struct ctl *c);
/* Read the whole cluster (nodes and VMs sorted by name) into *v, or CTL_FAIL with the
 * etcd error printed; the caller frees with cl_view_free. */
int ctl_view(struct ctl *c, struct cl_view *v) CME_WUR;
/* The view as ha structs (parallel arrays); CTL_FAIL when out of memory. */
int ctl_view_ha(const struct cl_view *v, struct cl_ha *h) CME_WUR;
/* "<prefix>/<part>[/<name>[/<leaf>]]" into buf (CTL_KEY_MAX bytes; names are short). */
/* Put key = val if its mod_revision is still mod_rev (0: absent). *swapped says whether it
 * did, *rev gets the store's revision after the txn. 0 or -errno (err). */
int ctl_put_if_mod(struct etcd *e, const char *key, int64_t mod_rev, const char *val, bool *swapped,
		   int64_t *rev, struct etcd_err *err);
const char *ctl_key(const struct ctl *c, char *buf, const char *part, const char *name,
		    const char *leaf);
/* Post an event by cmectl about vm (may be NULL); best effort. */
void ctl_event(struct ctl *c, const char *vm, const char *kind, const char *fmt, ...)
	CME_PRINTF(4, 5);
/* Index of the node / VM named name in v, or -1. */
long ctl_node_index(const struct cl_view *v, const char *name);
long ctl_vm_index(const struct cl_view *v, const char *name);
/* True when a VM record (of any kind) exists for vm in v. */
bool ctl_vm_exists(const struct cl_vm_view *vv);
/* The state cmectl shows for a VM: "deleting" when it has no spec (its VMM is stopping),
 * else its status state, else "stopped" when not wanted; NULL when nothing is known yet. */
const char *ctl_vm_state(const struct cl_vm_view *vv);
/* "draining", "in maintenance" or "down" for a node migrations may not target; NULL
 * when it is up and schedulable. */
const char *ctl_node_refusal(const struct cl_node_view *nv);

/* ---- output (output.c) -------------------------------------------------------------- */

struct table;
/* A table with ncols columns and the given headers; NULL when out of memory. */
struct table *ctl_table_new(size_t ncols, const char *const *headers);
/* Add one cell to the current row (a new row starts after ncols cells). */
void ctl_table_cell(struct table *t, const char *fmt, ...) CME_PRINTF(2, 3);
/* Print with columns aligned (two spaces apart; the last column unpadded) and free. */
void ctl_table_print(struct table *t, FILE *f);
void ctl_table_free(struct table *t);

/* Print v (indented, keys in insertion order) and a newline on stdout; consumes v. */
void ctl_out_json(json_t *v);
/* Print v compactly on one line (JSON lines) and flush; consumes v. */
void ctl_out_json_line(json_t *v);
/* A record's JSON text (from a cl_*_json encoder, consumed) as a json_t; json_null() for
 * NULL. */
json_t *ctl_out_rec(char *txt);
/* ms since the epoch as "2024-05-01T12:00:00.123Z" (buf of 32 bytes); "-" for 0. */
const char *ctl_out_time(uint64_t ms, char *buf);
/* s, or "-" when s is NULL or empty. */
const char *ctl_out_dash(const char *s);

/* ---- migration text (mig_fmt.c) ---------------------------------------------------- */

/* "total T ms (cluster C ms), downtime D ms, R rounds, B MiB at X Mbit/s[, post-copy N
 * pages (M asked for) in T ms]" from a done migration's statistics (fields missing from
 * them count as 0). */
void ctl_mig_summary(const struct cl_migration *m, char *buf, size_t len);
/* "round R  sent X MiB  left Y pages  rate Z Mbit/s  phase P" of a running migration. */
void ctl_mig_progress(const struct cl_migration *m, char *buf, size_t len);
/* A number field of a done migration's statistics (0 when missing). */
double ctl_mig_stat(const struct cl_migration *m, const char *field);

/* ---- waiting (wait.c) --------------------------------------------------------------- */

enum vm_want { WANT_RUNNING, WANT_STOPPED, WANT_GONE };

/* Read vms/<vm>/status: CTL_OK with *present and *st (and *mod_rev, may be NULL), or
 * CTL_FAIL (line printed). */
int ctl_read_status(struct ctl *c, const char *vm, struct cl_status *st, bool *present,
		    int64_t *mod_rev) CME_WUR;

/* Poll vms/<vm>/status until it reaches want, up to c->timeout_s. A failed or pending
 * status only counts when written after after_rev (the request's revision). On CTL_OK,
 * *st (may be NULL) holds the last status (zeroed when absent). CTL_FAIL: line printed. */
int ctl_wait_vm(struct ctl *c, const char *vm, enum vm_want want, int64_t after_rev,
		struct cl_status *st) CME_WUR;
/* Print the outcome of a successful ctl_wait_vm in the output mode. */
void ctl_wait_vm_report(const struct ctl *c, const char *vm, enum vm_want want,
			const struct cl_status *st);
/* etcd_watch on key (or the prefix) from rev until cb returns nonzero (returned), or
 * timeout_s seconds pass (0: no limit; *timed_out set, returns 0), or -errno (err). */
int ctl_wait_watch(struct ctl *c, const char *key, bool prefix, int64_t rev, etcd_watch_cb cb,
		   void *opaque, unsigned timeout_s, bool *timed_out, struct etcd_err *err) CME_WUR;

/* ---- commands ----------------------------------------------------------------------- */

int ctl_cmd_node_ls(struct ctl *c, int argc, char **argv);
int ctl_cmd_node_show(struct ctl *c, int argc, char **argv);
int ctl_cmd_node_drain(struct ctl *c, int argc, char **argv);
int ctl_cmd_node_maintenance(struct ctl *c, int argc, char **argv);
int ctl_cmd_node_undrain(struct ctl *c, int argc, char **argv);
int ctl_cmd_node_forget(struct ctl *c, int argc, char **argv);
int ctl_cmd_vm_create(struct ctl *c, int argc, char **argv);
int ctl_cmd_vm_ls(struct ctl *c, int argc, char **argv);
int ctl_cmd_vm_show(struct ctl *c, int argc, char **argv);
int ctl_cmd_vm_start(struct ctl *c, int argc, char **argv);
int ctl_cmd_vm_stop(struct ctl *c, int argc, char **argv);
int ctl_cmd_vm_delete(struct ctl *c, int argc, char **argv);
int ctl_cmd_vm_balloon(struct ctl *c, int argc, char **argv);
int ctl_cmd_vm_migrate(struct ctl *c, int argc, char **argv);
int ctl_cmd_vm_console(struct ctl *c, int argc, char **argv);
int ctl_cmd_events(struct ctl *c, int argc, char **argv);
int ctl_cmd_status(struct ctl *c, int argc, char **argv);
/* image.c: signed boot (keys, measurements, signatures); files only. */
int ctl_cmd_image_keygen(struct ctl *c, int argc, char **argv);
int ctl_cmd_image_measure(struct ctl *c, int argc, char **argv);
int ctl_cmd_image_sign(struct ctl *c, int argc, char **argv);
int ctl_cmd_image_verify(struct ctl *c, int argc, char **argv);
int ctl_cmd_trust_set(struct ctl *c, int argc, char **argv);
int ctl_cmd_trust_show(struct ctl *c, int argc, char **argv);
int ctl_cmd_backup_keygen(struct ctl *c, int argc, char **argv);
int ctl_cmd_vm_backup(struct ctl *c, int argc, char **argv);
int ctl_cmd_vm_restore(struct ctl *c, int argc, char **argv);
/* vm_state.c: spec.running = run by compare-and-swap (retried); *rev the write's revision,
 * 0 when the spec said so already. CTL_OK or CTL_FAIL (line printed). */
int ctl_vm_set_running(struct ctl *c, const char *vm, bool run, int64_t *rev);
int ctl_cmd_backup_schedule(struct ctl *c, int argc, char **argv);
int ctl_cmd_backup_init(struct ctl *c, int argc, char **argv);
int ctl_cmd_backup_ls(struct ctl *c, int argc, char **argv);
int ctl_cmd_backup_show(struct ctl *c, int argc, char **argv);
int ctl_cmd_backup_verify(struct ctl *c, int argc, char **argv);
int ctl_cmd_backup_prune(struct ctl *c, int argc, char **argv);
int ctl_cmd_backup_sync(struct ctl *c, int argc, char **argv);

/* Wait for node's drain (or maintenance) to empty it (node_drain.c). */
int ctl_drain_wait(struct ctl *c, const char *node, const char *state);

#endif
