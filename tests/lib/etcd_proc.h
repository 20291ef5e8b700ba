/* A real single-member etcd for tests: started in a fresh test_tmpdir() on free loopback
 * ports, killed and restarted by PID (never by name). */
#ifndef CME_TEST_ETCD_PROC_H
#define CME_TEST_ETCD_PROC_H

#include <stdbool.h>
#include <sys/types.h>

#define ETCD_BIN "/usr/bin/etcd"

struct etcd_proc {
	pid_t pid;	 /* 0 when not running */
	char dir[512];	 /* data dir (dir/data) and log (dir/etcd.log) */
	int client_port; /* may be changed between a stop and a restart */
	int peer_port;
	char url[64];	   /* http(s)://127.0.0.1:<client_port>, set by (re)start */
	char tls_dir[512]; /* HTTPS with client-certificate auth when set (a mkcerts.sh folder
			    * whose certificate names 127.0.0.1) */
	int metrics_port;  /* plain-HTTP /health when TLS is on */
	char also[20];	   /* plain HTTP only: an address it also listens on (same port) */
};

/* A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then closed).
 * Returns the port or -errno. */
int test_free_port(void);
/* Start etcd in a fresh test_tmpdir() on free client and peer ports, with 1 s progress
 * notifications, and wait (up to 10 s) until it has a leader. Returns 0 or -errno (the
 * log's tail is printed). A missing ETCD_BIN is an error, not a skip. */
int etcd_proc_start(struct etcd_proc *p);
/* The same (plain HTTP), listening on address also (e.g. a test's veth end) as well. */
int etcd_proc_start_also(struct etcd_proc *p, const char *also);
/* The same over HTTPS with client-certificate auth, tls_dir holding ca.crt, tls.crt and
 * tls.key for the server (a certs/mkcerts.sh folder for the name 127.0.0.1). */
int etcd_proc_start_tls(struct etcd_proc *p, const char *tls_dir);
/* Start the same etcd again (same data dir, peer port and p->client_port) after a kill
 * or stop, and wait until it has a leader. Returns 0 or -errno. */
int etcd_proc_restart(struct etcd_proc *p);
/* Send sig to the running etcd (e.g. SIGSTOP/SIGCONT); for SIGSTOP, return once it has
 * stopped. Returns 0 or -errno. */
int etcd_proc_signal(struct etcd_proc *p, int sig);
/* SIGKILL and reap (no-op when not running). */
void etcd_proc_kill(struct etcd_proc *p);
/* SIGTERM, wait up to 5 s, then SIGKILL; reap. No-op when not running. */
void etcd_proc_stop(struct etcd_proc *p);

#endif
