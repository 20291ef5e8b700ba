/* Token-bucket rate limits: see ratelimit_priv.h. */
#include "ratelimit_priv.h"

#include <errno.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define NS_PER_TOKEN 1000000000ll

void rl_bucket_init(struct rl_bucket *b, uint64_t rate, uint64_t now)
{
	b->rate = rate;
	b->size = (int64_t)(rate * RL_BURST_NS);
	b->credit = b->size;
	b->last_ns = now;
}

uint64_t rl_bucket_due(struct rl_bucket *b, uint64_t now, int64_t want)
{
	uint64_t dt = now > b->last_ns ? now - b->last_ns : 0, to_full;

	if (!b->rate)
		return 0;
	/* Filling up takes (size - credit) / rate ns: a longer gap just fills it, so the
	 * product below stays under size - credit + rate. */
	to_full = (uint64_t)(b->size - b->credit) / b->rate + 1;
	b->credit = dt >= to_full ? b->size : b->credit + (int64_t)(dt * b->rate);
	if (b->credit > b->size)
		b->credit = b->size;
	b->last_ns = now;
	if (want > b->size)
		want = b->size;
	return b->credit >= want ? 0 : ((uint64_t)(want - b->credit) + b->rate - 1) / b->rate;
}

void rl_bucket_take(struct rl_bucket *b, uint64_t tokens)
{
	if (b->rate)
		b->credit -= (int64_t)tokens * NS_PER_TOKEN;
}

int rl_init(struct ratelimit *rl, const struct vm_net_limit *lim, uint64_t now, bool timer)
{
	*rl = (struct ratelimit){ .timer_fd = -1 };
	rl_bucket_init(&rl->bytes, lim->bytes_per_s, now);
	rl_bucket_init(&rl->frames, lim->frames_per_s, now);
	if (!timer || (!lim->bytes_per_s && !lim->frames_per_s))
		return 0;
	rl->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	return rl->timer_fd < 0 ? -errno : 0;
}

void rl_destroy(struct ratelimit *rl)
{
	if (rl->timer_fd >= 0)
		close(rl->timer_fd);
	rl->timer_fd = -1;
}

/* What a wait should bring back: RL_QUANTUM_NS of the rate (the due time caps it at the
 * bucket's size). */
static int64_t quantum(const struct rl_bucket *b)
{
	return (int64_t)(b->rate * RL_QUANTUM_NS);
}

bool rl_ready(struct ratelimit *rl, uint64_t now)
{
	uint64_t wait;

	if (!rl_bucket_due(&rl->bytes, now, 0) && !rl_bucket_due(&rl->frames, now, 0)) {
		rl->waiting = false;
		return true;
	}
	wait = rl_bucket_due(&rl->bytes, now, quantum(&rl->bytes));
	if (rl_bucket_due(&rl->frames, now, quantum(&rl->frames)) > wait)
		wait = rl_bucket_due(&rl->frames, now, quantum(&rl->frames));
	rl->wake_ns = now + wait;
	return false;
}

void rl_charge(struct ratelimit *rl, uint64_t bytes)
{
	rl_bucket_take(&rl->bytes, bytes);
	rl_bucket_take(&rl->frames, 1);
}

void rl_wait(struct ratelimit *rl)
{
	struct itimerspec at = {
		.it_value = { .tv_sec = (time_t)(rl->wake_ns / 1000000000ull),
			      .tv_nsec = (long)(rl->wake_ns % 1000000000ull) },
	};

	if (!rl->waiting)
		rl->throttled++;
	rl->waiting = true;
	if (rl->timer_fd >= 0 && !at.it_value.tv_sec && !at.it_value.tv_nsec)
		at.it_value.tv_nsec = 1; /* 0 would disarm it */
	if (rl->timer_fd >= 0)
		timerfd_settime(rl->timer_fd, TFD_TIMER_ABSTIME, &at, NULL);
}

void rl_timer_ack(struct ratelimit *rl)
{
	uint64_t n;

	if (rl->timer_fd >= 0 && read(rl->timer_fd, &n, sizeof(n)) < 0)
		return; /* EAGAIN: it had not fired after all */
}
