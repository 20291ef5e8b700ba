/* cmectl's etcd access: the client, the cluster view sorted by name, keys, events, and
 * the one-line errors every command prints. */
#include "cmectl.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static void say(const char *fmt, va_list ap)
{
	char msg[1024];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	fflush(stdout);
	fprintf(stderr, "cmectl: %s\n", msg);
}

int ctl_fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	say(fmt, ap);
	va_end(ap);
	return CTL_FAIL;
}

int ctl_usage(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "cmectl: %s (see cmectl --help)\n", msg);
	return CTL_USAGE;
}

int ctl_connect(struct ctl *c)
{
	struct etcd_cfg cfg = { .endpoints = c->endpoints };
	struct etcd_err err = { "" };

	if (c->etcd)
		return CTL_OK;
	if (c->tls_dir) {
		cfg.ca = c->ca;
		cfg.cert = c->cert;
		cfg.key = c->key;
	}
	if (etcd_open(&cfg, &c->etcd, &err))
		return ctl_fail("%s", err.msg);
	return CTL_OK;
}

void ctl_close(struct ctl *c)
{
	etcd_close(c->etcd);
	c->etcd = NULL;
}

static int node_cmp(const void *a, const void *b)
{
	return strcmp(((const struct cl_node_view *)a)->name,
		      ((const struct cl_node_view *)b)->name);
}

static int vm_cmp(const void *a, const void *b)
{
	return strcmp(((const struct cl_vm_view *)a)->name, ((const struct cl_vm_view *)b)->name);
}

int ctl_view(struct ctl *c, struct cl_view *v)
{
	struct etcd_err err = { "" };

	if (ctl_connect(c))
		return CTL_FAIL;
	if (cl_view_read(c->etcd, c->prefix, v, &err))
		return ctl_fail("%s", err.msg);
	/* Sorted once here, so every listing is in name order and ha's arrays match. */
	if (v->nnodes)
		qsort(v->nodes, v->nnodes, sizeof(*v->nodes), node_cmp);
	if (v->nvms)
		qsort(v->vms, v->nvms, sizeof(*v->vms), vm_cmp);
	return CTL_OK;
}

int ctl_view_ha(const struct cl_view *v, struct cl_ha *h)
{
	if (cl_view_ha(v, h))
		return ctl_fail("out of memory");
	return CTL_OK;
}

const char *ctl_key(const struct ctl *c, char *buf, const char *part, const char *name,
		    const char *leaf)
{
	/* Names are checked (< 64 bytes) and the prefix is at most 128: this always fits. */
	if (!cl_key(buf, CTL_KEY_MAX, c->prefix, part, name, leaf))
		buf[0] = 0;
	return buf;
}

void ctl_event(struct ctl *c, const char *vm, const char *kind, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cl_event_post(c->etcd, c->prefix, 0, NULL, vm, kind, "%s", msg);
}

long ctl_node_index(const struct cl_view *v, const char *name)
{
	for (size_t i = 0; i < v->nnodes; i++)
		if (!strcmp(v->nodes[i].name, name))
			return (long)i;
	return -1;
}

long ctl_vm_index(const struct cl_view *v, const char *name)
{
	for (size_t i = 0; i < v->nvms; i++)
		if (!strcmp(v->vms[i].name, name))
			return (long)i;
	return -1;
}

bool ctl_vm_exists(const struct cl_vm_view *vv)
{
	return vv && (vv->has_spec || vv->has_owner || vv->has_status || vv->has_mig);
}

const char *ctl_vm_state(const struct cl_vm_view *vv)
{
	if (!vv->has_spec)
		return "deleting";
	if (vv->has_status)
		return vv->status.state;
	if (!vv->spec.running)
		return "stopped";
	return NULL;
}

const char *ctl_node_refusal(const struct cl_node_view *nv)
{
	if (!nv->alive)
		return "down";
	if (!strcmp(nv->admin.state, "schedulable"))
		return NULL;
	if (!strcmp(nv->admin.state, "maintenance"))
		return "in maintenance";
	if (!strcmp(nv->admin.state, "draining"))
		return "draining";
	return "not schedulable";
}

/* Put key = val if its mod_revision is still mod_rev (0: absent). *swapped says whether it
 * did, *rev gets the store's revision after the txn. 0 or -errno (err). */
int ctl_put_if_mod(struct etcd *e, const char *key, int64_t mod_rev, const char *val, bool *swapped,
		   int64_t *rev, struct etcd_err *err)
{
	struct etcd_cmp cmp = {
		.key = key, .target = ETCD_CMP_MOD, .result = ETCD_CMP_EQUAL, .num = mod_rev
	};
	struct etcd_op put = { .type = ETCD_OP_PUT, .key = key, .val = val, .vlen = strlen(val) };
	struct etcd_txn t = { &cmp, 1, &put, 1, NULL, 0 };
	struct etcd_txn_resp resp;
	int rc = etcd_txn(e, &t, &resp, err);

	if (rc)
		return rc;
	*swapped = resp.succeeded;
	*rev = resp.header_rev;
	etcd_txn_resp_free(&resp);
	return 0;
}
