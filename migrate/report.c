/* Progress and statistics as JSON, for the control socket and a following client. */
#include "mig_priv.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static json_t *stats_json(const struct mig_stats *s)
{
	json_t *down = json_pack(
		"{s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "pause_ms", (json_int_t)s->pause_ms,
		"last_pages_ms", (json_int_t)s->last_pages_ms, "state_ms", (json_int_t)s->state_ms,
		"digest_ms", (json_int_t)s->digest_ms, "commit_ms", (json_int_t)s->commit_ms,
		"decision_ms", (json_int_t)s->decision_ms, "resume_ms", (json_int_t)s->resume_ms);

	json_object_set_new(down, "digest_chunks", json_integer((json_int_t)s->digest_chunks));
	json_object_set_new(down, "drain_ms", json_integer((json_int_t)(s->drain_us / 1000)));
	json_object_set_new(down, "sent_ms", json_integer((json_int_t)s->sent_ms));
	json_object_set_new(down, "sent_us", json_integer((json_int_t)s->sent_us));
	if (s->postcopy_pages || s->postcopy_ms)
		json_object_set_new(down, "postcopy",
				    json_pack("{s:I,s:I,s:I,s:I,s:I}", "pages",
					      (json_int_t)s->postcopy_pages, "requested",
					      (json_int_t)s->postcopy_requested, "ms",
					      (json_int_t)s->postcopy_ms, "dropped_early",
					      (json_int_t)s->postcopy_early, "drop_early_ms",
					      (json_int_t)s->postcopy_early_ms));

	return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:f,s:i,s:o}", "setup_ms",
			 (json_int_t)s->setup_ms, "total_ms", (json_int_t)s->total_ms,
			 "downtime_ms", (json_int_t)s->downtime_ms, "rounds", (json_int_t)s->rounds,
			 "bytes", (json_int_t)s->bytes, "pages", (json_int_t)s->pages, "zero_pages",
			 (json_int_t)s->zero_pages, "dirty_rate", s->dirty_rate_mbps,
			 "throughput_mbps", s->throughput_mbps, "throttle_pct",
			 (int)s->throttle_pct, "downtime", down);
}

char *mig_progress_json(const struct mig_progress *p)
{
	json_t *o = json_pack("{s:s,s:i,s:I,s:f,s:I,s:i}", "phase", mig_phase_name(p->phase),
			      "round", (int)p->round, "pages_left", (json_int_t)p->pages_left,
			      "rate_mbps", p->rate_mbps, "bytes_sent", (json_int_t)p->bytes_sent,
			      "throttle_pct", (int)p->throttle_pct);
	char *s;

	json_object_set_new(o, "expected_downtime_ms",
			    p->expected_downtime_ms == UINT64_MAX
				    ? json_null()
				    : json_integer((json_int_t)p->expected_downtime_ms));
	if (p->error[0])
		json_object_set_new(o, "error", json_string(p->error));
	if (p->phase == MIG_DONE)
		json_object_set_new(o, "stats", stats_json(&p->stats));
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
}

/* One line to the follower; a follower that stopped reading costs at most its send
 * timeout (mig_follow), one that went away is ignored. */
void mig_report(struct migration *m)
{
	struct mig_progress p;
	bool end;
	char *s;
	json_t *line;
	int fd;

	pthread_mutex_lock(&m->lock);
	fd = m->follow_fd;
	p = m->prog;
	pthread_mutex_unlock(&m->lock);
	if (fd < 0)
		return;
	end = p.phase == MIG_DONE || p.phase == MIG_FAILED || p.phase == MIG_IN_DOUBT ||
	      p.phase == MIG_POSTCOPY_BROKEN;
	s = mig_progress_json(&p);
	line = json_loads(s, 0, NULL);
	free(s);
	json_object_set_new(line, "event", json_string(end ? "done" : "progress"));
	json_object_set_new(line, "ok", json_boolean(!end || p.phase == MIG_DONE));
	s = json_dumps(line, JSON_COMPACT);
	json_decref(line);
	if (s) {
		size_t n = strlen(s);

		s[n] = '\n';
		if (send(fd, s, n + 1, MSG_NOSIGNAL) < 0)
			log_debug("mig", "progress follower gone");
	}
	free(s);
}
