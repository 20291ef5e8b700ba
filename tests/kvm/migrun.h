/* Shared by the live-migration tests: certificates, `cme-vmm incoming` destinations,
 * running a migration (the CLI or the control socket), the guest's heartbeats read across
 * the consoles of every process it ran in, and the network tricks of the fault tests (a
 * plain TCP listener, a network namespace whose link the test cuts). */
#ifndef CME_MIGRUN_H
#define CME_MIGRUN_H

#include <pthread.h>

#include "common.h"
#include "harness.h"
#include "netns.h"

#define MIG_MAX_CONSOLES 8

/* A fresh CA with a node certificate per name (NULL-terminated list) in a new temporary
 * directory, written to pki. Returns 0, or -1 after failing the test with mkcerts' output. */
int mig_certs(char *pki, size_t len, const char *const *names);
/* More node certificates from pki's existing CA. Returns 0 or -1 (test failed). */
int mig_certs_add(const char *pki, const char *const *names);
/* The --tls-dir of name in pki (pki/name), written to out. */
const char *net_tls_dir(char *out, size_t len, const char *pki, const char *name);

/* Start `cme-vmm incoming --listen HOST:0 --tls-dir DIR [extra...]` (console file and api
 * socket from vmm_start_verb unless extra has --console) and wait for the port it logs.
 * Returns the port, or -errno after printing its stderr (the process is killed). */
int mig_incoming(struct vmm_proc *p, const char *host, const char *tls_dir,
		 const char *const *extra);
/* The port a destination logged within timeout_ms; -ESRCH if it exited, -ETIMEDOUT. */
int mig_incoming_port(struct vmm_proc *p, const char *host, int timeout_ms);

/* One run of `cme-vmm migrate`. */
struct mig_run {
	int status;  /* exit status, or -errno (-ETIMEDOUT: killed after the timeout) */
	char *out;   /* stdout and stderr together */
	json_t *fin; /* the final JSON line, NULL if none */
};
/* Run `cme-vmm migrate --api SRC --to HOST:PORT --tls-dir DIR [extra...]` to its end. Free
 * r with mig_run_free. */
void mig_cli(struct mig_run *r, struct vmm_proc *src, const char *host, int port,
	     const char *tls_dir, const char *const *extra, int timeout_ms);
void mig_run_free(struct mig_run *r);
/* A field of the final line's "stats" (sub: NULL, or "downtime" for its phases); -1 when
 * missing. */
long long mig_stat(const json_t *fin, const char *sub, const char *key);
/* The final line's "error" ("" if none). */
const char *mig_error(const json_t *fin);

/* Start a migration through the control socket: "to", "tls_dir" and extra JSON members
 * (e.g. "\"max_bandwidth\":\"30M\"", or ""). True when the VMM accepted it. */
bool mig_ctl_start(struct vmm_proc *src, const char *to, const char *tls_dir, const char *extra);
/* Poll migrate-status until at least bytes were sent in pre-copy. False when the migration
 * ended first or timeout_ms passed. */
bool mig_ctl_wait_bytes(struct vmm_proc *src, uint64_t bytes, int timeout_ms);
/* Wait until the guest has written at least n pages in all (its heartbeats count them):
 * first touches are slow on PVM hosts (~30k pages/s per vCPU), and a working set only
 * partly touched would migrate fewer pages than the test means to move. Fatal after 60 s. */
void mig_wait_pages(struct vmm_proc *p, uint64_t n);
/* Poll migrate-status until its phase is phase. False when the migration ended first or
 * timeout_ms passed. */
bool mig_ctl_wait_phase(struct vmm_proc *src, const char *phase, int timeout_ms);
/* Poll migrate-status until the migration has ended; returns its last status (caller
 * decrefs), NULL on timeout. */
json_t *mig_ctl_wait_end(struct vmm_proc *src, int timeout_ms);

/* The guest's heartbeats read from consoles in the order it ran in them, as one stream (a
 * line the source began and the destination finished counts once). */
struct hb_chain {
	int total;
	int n[MIG_MAX_CONSOLES]; /* heartbeats starting in console i */
	struct heartbeat first[MIG_MAX_CONSOLES], last[MIG_MAX_CONSOLES]; /* of console i */
};
/* Assert: no CORRUPT/FAULT/ERROR anywhere, READY only in the first console, heartbeats
 * numbered without a gap or repeat across all of them, ticks never falling, guest ms always
 * rising, pages never falling. Fills c; returns the number of heartbeats. */
int mig_check_chain(const char *const *texts, int n, struct hb_chain *c);
/* The same over the console files of processes. */
int mig_check_consoles(struct vmm_proc *const *procs, int n, struct hb_chain *c);

/* After a successful migration: the source exits 0 with "ended: migrated". */
void mig_expect_source_migrated(struct vmm_proc *src);
/* After a failed one: the source says "running", prints three more heartbeats without a
 * gap, and its console is clean. */
void mig_expect_source_runs(struct vmm_proc *src);
/* A destination that must never have run the guest: no READY and no heartbeat. */
void mig_expect_no_guest(struct vmm_proc *dst);

/* A plain TCP server that accepts on HOST:0, reads whatever comes and never speaks TLS;
 * with talk, it answers the first bytes with a plain-text banner, as an SSH server would. */
struct tcp_sink {
	int fd, port;
	_Atomic int conn; /* the accepted connection, -1 before and after */
	bool talk, started;
	size_t got; /* bytes received */
	pthread_t thread;
};
int tcp_sink_start(struct tcp_sink *s, const char *host, bool talk) CME_WUR;
void tcp_sink_stop(struct tcp_sink *s);

/* A destination inside a new network namespace: a CA with certificates for src_name and
 * the namespace's address, `cme-vmm incoming` there (dst, which the caller must vmm_kill).
 * Fills tls_src (the source's --tls-dir) and to (HOST:PORT). Returns 1 when ready; 0 when
 * namespaces are not possible here (the test is skipped, nothing to remove); -1 when it
 * failed after the namespace was made (the caller removes it). */
int mig_netns_dest(struct netns *ns, struct vmm_proc *dst, const char *src_name, char tls_src[700],
		   char to[64]);
/* Start `cme-vmm incoming` inside the namespace, listening on ns_ip:0, and wait for its
 * port. The process is not one the harness kills: the caller must vmm_kill it. Returns the
 * port or -errno. */
int netns_incoming(struct vmm_proc *p, const struct netns *n, const char *tls_dir);

#endif
