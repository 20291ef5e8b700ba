/* The destination's shared state: its phase (and the event that announces the end), the
 * first reason it failed, and the stop request. A file of its own so that dest.c and
 * dest_run.c both stand on it instead of on each other. */
#include "dest_priv.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#define SUB "incoming"

const char *mig_in_phase_name(enum mig_in_phase p)
{
	static const char *const names[] = { "listening", "receiving", "ready", "running",
					     "failed" };

	return p <= MIG_IN_FAILED ? names[p] : "unknown";
}

int mig_in_fail(struct mig_dest *c, int rc, const char *fmt, ...)
{
	va_list ap;

	if (!c->err[0]) {
		va_start(ap, fmt);
		vsnprintf(c->err, sizeof(c->err), fmt, ap);
		va_end(ap);
	}
	return rc ? rc : -EIO;
}

bool mig_in_stopping(struct mig_dest *c)
{
	bool stop;

	pthread_mutex_lock(&c->lock);
	stop = c->abort_asked || c->quit;
	pthread_mutex_unlock(&c->lock);
	return stop;
}

void mig_in_drain_wake(struct mig_dest *c)
{
	uint64_t v;

	if (read(c->wake_fd, &v, sizeof(v)) < 0)
		log_debug(SUB, "wake counter already read");
}

void mig_in_set_phase(struct mig_dest *c, enum mig_in_phase ph)
{
	uint64_t one = 1;

	pthread_mutex_lock(&c->lock);
	c->phase = ph;
	if ((ph == MIG_IN_RUNNING || ph == MIG_IN_FAILED) &&
	    write(c->event_fd, &one, sizeof(one)) < 0)
		log_debug(SUB, "event counter full");
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}
