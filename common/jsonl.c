/* Newline-delimited JSON messages over stream sockets. */
#include "common.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void linebuf_init(struct linebuf *lb, size_t max)
{
	memset(lb, 0, sizeof(*lb));
	lb->max = max;
}

void linebuf_free(struct linebuf *lb)
{
	free(lb->buf);
	memset(lb, 0, sizeof(*lb));
}

static int linebuf_reserve(struct linebuf *lb, size_t more)
{
	size_t cap = lb->cap ? lb->cap : 256;
	char *nb;

	while (cap < lb->len + more)
		cap *= 2;
	if (cap == lb->cap)
		return 0;
	nb = realloc(lb->buf, cap);
	if (!nb)
		return -ENOMEM;
	lb->buf = nb;
	lb->cap = cap;
	return 0;
}

ssize_t linebuf_fill(struct linebuf *lb, int fd)
{
	ssize_t n;

	/* A buffer already holding max bytes without a newline is an oversized line. */
	if (lb->len >= lb->max && !memchr(lb->buf, '\n', lb->len))
		return -EMSGSIZE;
	if (linebuf_reserve(lb, 4096) < 0)
		return -ENOMEM;
	do
		n = read(fd, lb->buf + lb->len, lb->cap - lb->len);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	lb->len += (size_t)n;
	if (lb->len > lb->max && !memchr(lb->buf, '\n', lb->len))
		return -EMSGSIZE;
	return n;
}

char *linebuf_take(struct linebuf *lb)
{
	char *nl = lb->len ? memchr(lb->buf, '\n', lb->len) : NULL;
	size_t n;
	char *line;

	if (!nl)
		return NULL;
	n = (size_t)(nl - lb->buf);
	line = strndup(lb->buf, n);
	memmove(lb->buf, nl + 1, lb->len - n - 1);
	lb->len -= n + 1;
	return line;
}

int jsonl_send(int fd, const struct json_t *obj)
{
	char *s = json_dumps((const json_t *)obj, JSON_COMPACT);
	size_t n;
	int err;

	if (!s)
		return -ENOMEM;
	n = strlen(s);
	s[n] = '\n'; /* json_dumps' NUL becomes the line end; length is n + 1 */
	err = write_all(fd, s, n + 1);
	free(s);
	return err;
}

int jsonl_recv(int fd, size_t max, struct json_t **out)
{
	struct linebuf lb;
	char *line = NULL;
	json_t *obj;
	ssize_t n;

	linebuf_init(&lb, max);
	while (!(line = linebuf_take(&lb))) {
		n = linebuf_fill(&lb, fd);
		if (n <= 0) {
			linebuf_free(&lb);
			return n == 0 ? -EPIPE : (int)n;
		}
	}
	linebuf_free(&lb);
	obj = json_loads(line, 0, NULL);
	free(line);
	if (!obj || !json_is_object(obj)) {
		json_decref(obj);
		return -EPROTO;
	}
	*out = (struct json_t *)obj;
	return 0;
}

struct json_t *jsonl_names(const char *list)
{
	json_t *a = json_array();

	for (const char *p = list; a && p && *p;) {
		size_t k = strcspn(p, ",");

		if (k)
			json_array_append_new(a, json_stringn(p, k));
		p += k + (p[k] == ',');
	}
	return a;
}
