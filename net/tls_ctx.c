/* TLS contexts: our certificate, key and CA from a --tls-dir, checked before any peer sees
 * them; TLS 1.3 only, the peer always verified, no session resumption. */
#include "net_priv.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

/* OpenSSL's most specific reason for the last failure, for one-line messages. */
const char *net_tls_reason(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	return r ? r : "unknown error";
}

static void ignore_sigpipe(void)
{
	struct sigaction sa;

	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
		signal(SIGPIPE, SIG_IGN);
}

/* Copy the subject CN of x into buf, printable ASCII only (it ends up in logs). */
void net_tls_cert_cn(X509 *x, char *buf, size_t len)
{
	buf[0] = '\0';
	if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf, (int)len) < 0)
		buf[0] = '\0';
	for (char *p = buf; *p; p++)
		if (*p < 0x20 || *p > 0x7e)
			*p = '?';
}

/* OpenSSL decides; this only remembers who the peer claimed to be, for the messages. */
static int verify_cb(int ok, X509_STORE_CTX *xs)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct tls_conn *c = ssl ? SSL_get_app_data(ssl) : NULL;
	X509 *leaf = X509_STORE_CTX_get0_cert(xs);

	if (c && leaf && !c->seen_cn[0])
		net_tls_cert_cn(leaf, c->seen_cn, sizeof(c->seen_cn));
	return ok;
}

/* Our own certificate must chain to our CA and suit our role; say so now rather than
 * letting every peer refuse us later with a vaguer alert. */
static int check_own_cert(SSL_CTX *s, bool server, const char *crt, const char *ca, char *err,
			  size_t errlen)
{
	X509_STORE_CTX *xs = X509_STORE_CTX_new();
	X509 *x = SSL_CTX_get0_certificate(s);
	STACK_OF(X509) *chain = NULL; /* intermediates from tls.crt, if any */
	int rc = 0;

	SSL_CTX_get0_chain_certs(s, &chain);
	if (!xs || !x || !X509_STORE_CTX_init(xs, SSL_CTX_get_cert_store(s), x, chain))
		rc = net_errf(err, errlen, -ENOMEM, "cannot check %s: %s", crt, net_tls_reason());
	else if (!X509_STORE_CTX_set_purpose(xs, server ? X509_PURPOSE_SSL_SERVER
							: X509_PURPOSE_SSL_CLIENT) ||
		 X509_verify_cert(xs) != 1)
		rc = net_errf(err, errlen, -EINVAL, "%s does not verify against %s as a TLS %s: %s",
			      crt, ca, server ? "server" : "client",
			      X509_verify_cert_error_string(X509_STORE_CTX_get_error(xs)));
	X509_STORE_CTX_free(xs);
	return rc;
}

static int ctx_load(SSL_CTX *s, const char *dir, bool server, char *err, size_t errlen)
{
	char ca[4096], crt[4096], key[4096];
	STACK_OF(X509_NAME) * names;

	snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
	snprintf(crt, sizeof(crt), "%s/tls.crt", dir);
	snprintf(key, sizeof(key), "%s/tls.key", dir);
	if (access(ca, R_OK) < 0 || access(crt, R_OK) < 0 || access(key, R_OK) < 0)
		return net_errf(err, errlen, -errno, "cannot read %s/{ca.crt,tls.crt,tls.key}: %s",
				dir, strerror(errno));
	if (SSL_CTX_use_certificate_chain_file(s, crt) != 1)
		return net_errf(err, errlen, -EINVAL, "cannot load %s: %s", crt, net_tls_reason());
	if (SSL_CTX_use_PrivateKey_file(s, key, SSL_FILETYPE_PEM) != 1)
		return net_errf(err, errlen, -EINVAL, "cannot load %s: %s", key, net_tls_reason());
	if (SSL_CTX_check_private_key(s) != 1)
		return net_errf(err, errlen, -EINVAL, "%s does not match %s", key, crt);
	if (SSL_CTX_load_verify_locations(s, ca, NULL) != 1)
		return net_errf(err, errlen, -EINVAL, "cannot load %s: %s", ca, net_tls_reason());
	if (server) {
		names = SSL_load_client_CA_file(ca);
		if (!names)
			return net_errf(err, errlen, -EINVAL, "no CA name in %s", ca);
		SSL_CTX_set_client_CA_list(s, names);
	}
	return check_own_cert(s, server, crt, ca, err, errlen);
}

/* net_tls_ctx_preload: the contexts of one folder, loaded while its files could be read
 * (before a jailed VMM drops to its user), handed out again by reference. */
static struct {
	char dir[4096];
	struct tls_ctx *ctx[2]; /* client, server */
} preloaded;

static int ctx_load_new(const char *tls_dir, bool server, struct tls_ctx **out, char *err,
			size_t errlen);

int net_tls_ctx_preload(const char *tls_dir, char *err, size_t errlen)
{
	int rc;

	if (strlen(tls_dir) >= sizeof(preloaded.dir))
		return net_errf(err, errlen, -ENAMETOOLONG, "%s: path too long", tls_dir);
	rc = ctx_load_new(tls_dir, false, &preloaded.ctx[0], err, errlen);
	if (!rc)
		rc = ctx_load_new(tls_dir, true, &preloaded.ctx[1], err, errlen);
	if (rc) {
		net_tls_ctx_free(preloaded.ctx[0]);
		preloaded.ctx[0] = NULL;
		return rc;
	}
	snprintf(preloaded.dir, sizeof(preloaded.dir), "%s", tls_dir);
	return 0;
}

int net_tls_ctx_new(const char *tls_dir, bool server, struct tls_ctx **out, char *err,
		    size_t errlen)
{
	const struct tls_ctx *pre = preloaded.ctx[server];
	struct tls_ctx *ctx;

	if (!pre || strcmp(tls_dir, preloaded.dir))
		return ctx_load_new(tls_dir, server, out, err, errlen);
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return net_errf(err, errlen, -ENOMEM, "out of memory");
	*ctx = *pre;
	SSL_CTX_up_ref(ctx->ssl);
	*out = ctx;
	return 0;
}

static int ctx_load_new(const char *tls_dir, bool server, struct tls_ctx **out, char *err,
			size_t errlen)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct tls_ctx *ctx;
	int rc;

	pthread_once(&once, ignore_sigpipe);
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return net_errf(err, errlen, -ENOMEM, "out of memory");
	ctx->server = server;
	ctx->ssl = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (!ctx->ssl) {
		rc = net_errf(err, errlen, -ENOMEM, "SSL_CTX_new: %s", net_tls_reason());
		goto out_free;
	}
	if (!SSL_CTX_set_min_proto_version(ctx->ssl, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx->ssl, TLS1_3_VERSION)) {
		rc = net_errf(err, errlen, -ENOTSUP, "this OpenSSL has no TLS 1.3");
		goto out_ctx;
	}
	rc = ctx_load(ctx->ssl, tls_dir, server, err, errlen);
	if (rc < 0)
		goto out_ctx;
	SSL_CTX_set_verify(ctx->ssl,
			   SSL_VERIFY_PEER | (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
			   verify_cb);
	/* One connection per migration: no resumption, so every peer shows its certificate. */
	SSL_CTX_set_session_cache_mode(ctx->ssl, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx->ssl, 0);
	*out = ctx;
	return 0;
out_ctx:
	SSL_CTX_free(ctx->ssl);
out_free:
	free(ctx);
	ERR_clear_error();
	return rc;
}

void net_tls_ctx_free(struct tls_ctx *ctx)
{
	if (!ctx)
		return;
	SSL_CTX_free(ctx->ssl);
	free(ctx);
}
