/* The source migration's published state: its phase and the first reason it stopped. A
 * file of its own so that source.c, switchover.c and report.c all stand on it and none of
 * them on another for it. */
#include "mig_priv.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

const char *mig_phase_name(enum mig_phase ph)
{
	static const char *const names[] = {
		"setup",  "precopy",  "switchover",	 "commit",   "done",
		"failed", "in-doubt", "awaiting-commit", "postcopy", "postcopy-broken"
	};

	return ph <= MIG_POSTCOPY_BROKEN ? names[ph] : "unknown";
}

void mig_set_phase(struct migration *m, enum mig_phase ph)
{
	pthread_mutex_lock(&m->lock);
	m->prog.phase = ph;
	pthread_mutex_unlock(&m->lock);
}

void mig_get_progress(struct migration *m, struct mig_progress *out)
{
	pthread_mutex_lock(&m->lock);
	*out = m->prog;
	pthread_mutex_unlock(&m->lock);
}

/* Stop here with a reason: the phase says whether the guest runs here or is in doubt. */
int mig_fail(struct migration *m, enum mig_phase ph, int err, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&m->lock);
	if (!m->prog.error[0]) {
		va_start(ap, fmt);
		vsnprintf(m->prog.error, sizeof(m->prog.error), fmt, ap);
		va_end(ap);
		m->end_phase = ph;
	}
	pthread_mutex_unlock(&m->lock);
	return err ? err : -EIO;
}
