/* cmectl's output: aligned tables for people, JSON for scripts, times in UTC. */
#include "cmectl.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct table {
	size_t ncols;
	const char *const *headers;
	char **cells; /* row-major; NULL where a cell could not be allocated */
	size_t ncells, cap;
};

struct table *ctl_table_new(size_t ncols, const char *const *headers)
{
	struct table *t = calloc(1, sizeof(*t));

	if (t) {
		t->ncols = ncols;
		t->headers = headers;
	}
	return t;
}

void ctl_table_cell(struct table *t, const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;

	if (!t)
		return;
	if (t->ncells == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 64;
		char **n = realloc(t->cells, cap * sizeof(*n));

		if (!n)
			return;
		t->cells = n;
		t->cap = cap;
	}
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	t->cells[t->ncells++] = s;
}

void ctl_table_free(struct table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->ncells; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t);
}

static const char *cell(const struct table *t, size_t i)
{
	return t->cells[i] ? t->cells[i] : "?";
}

/* Display width in characters (UTF-8: continuation bytes take no column). */
static size_t width(const char *s)
{
	size_t w = 0;

	for (; *s; s++)
		w += ((unsigned char)*s & 0xc0) != 0x80;
	return w;
}

static void print_row(FILE *f, const struct table *t, const size_t *w, const char *const *row)
{
	for (size_t c = 0; c < t->ncols; c++) {
		if (c + 1 == t->ncols) {
			fprintf(f, "%s\n", row[c]);
			break;
		}
		fprintf(f, "%s%*s  ", row[c], (int)(w[c] - width(row[c])), "");
	}
}

void ctl_table_print(struct table *t, FILE *f)
{
	size_t *w = t ? calloc(t->ncols, sizeof(*w)) : NULL;
	const char *row[16];

	if (!w || t->ncols > ARRAY_SIZE(row))
		goto out;
	for (size_t c = 0; c < t->ncols; c++)
		w[c] = width(t->headers[c]);
	for (size_t i = 0; i < t->ncells; i++)
		if (width(cell(t, i)) > w[i % t->ncols])
			w[i % t->ncols] = width(cell(t, i));
	print_row(f, t, w, t->headers);
	for (size_t r = 0; r + t->ncols <= t->ncells; r += t->ncols) {
		for (size_t c = 0; c < t->ncols; c++)
			row[c] = cell(t, r + c);
		print_row(f, t, w, row);
	}
out:
	free(w);
	ctl_table_free(t);
}

void ctl_out_json(json_t *v)
{
	if (!v) {
		ctl_fail("out of memory");
		return;
	}
	json_dumpf(v, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	fputc('\n', stdout);
	fflush(stdout);
	json_decref(v);
}

void ctl_out_json_line(json_t *v)
{
	if (!v)
		return;
	json_dumpf(v, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
	fputc('\n', stdout);
	fflush(stdout);
	json_decref(v);
}

json_t *ctl_out_rec(char *txt)
{
	json_t *v;

	if (!txt)
		return json_null();
	v = json_loads(txt, 0, NULL);
	free(txt);
	return v ? v : json_null();
}

const char *ctl_out_time(uint64_t ms, char *buf)
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;

	size_t n;

	if (!ms || !gmtime_r(&s, &tm))
		return "-";
	n = strftime(buf, 24, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, 32 - n, ".%03uZ", (unsigned)(ms % 1000));
	return buf;
}

const char *ctl_out_dash(const char *s)
{
	return s && *s ? s : "-";
}
