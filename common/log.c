/* Logging: one line per message on stderr, prefixed with program and subsystem. */
#include "common.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

static char log_prog[32] = "cme";
static enum log_level log_max = LOG_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void log_init(const char *prog, enum log_level max)
{
	snprintf(log_prog, sizeof(log_prog), "%s", prog);
	log_max = max;
}

void log_msg(enum log_level lvl, const char *subsys, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };
	char msg[1024];
	va_list ap;

	if (lvl > log_max)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* One fprintf per line under a lock, so lines from vCPU threads never interleave. */
	pthread_mutex_lock(&log_lock);
	if (lvl == LOG_INFO)
		fprintf(stderr, "%s: [%s] %s\n", log_prog, subsys, msg);
	else
		fprintf(stderr, "%s: [%s] %s: %s\n", log_prog, subsys, names[lvl], msg);
	pthread_mutex_unlock(&log_lock);
}
