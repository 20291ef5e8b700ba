/* The handshake, driven to a deadline, and why it failed in words an operator can act on:
 * which certificate was refused and for what, or that the peer is not TLS 1.3 at all. */
#include "net_priv.h"

#include <errno.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

static int verify_failure(struct tls_conn *c, long v, char *err, size_t errlen)
{
	const char *cn = c->seen_cn[0] ? c->seen_cn : "?";

	switch (v) {
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_CERT_SIGNATURE_FAILURE:
		return net_errf(err, errlen, -EACCES,
				"certificate not signed by the cluster CA (CN=%s)", cn);
	case X509_V_ERR_HOSTNAME_MISMATCH:
	case X509_V_ERR_IP_ADDRESS_MISMATCH:
		return net_errf(err, errlen, -EACCES, "certificate is for %s, not %s", cn,
				c->expect ? c->expect : "?");
	case X509_V_ERR_CERT_HAS_EXPIRED:
		return net_errf(err, errlen, -EACCES, "certificate expired (CN=%s)", cn);
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return net_errf(err, errlen, -EACCES,
				"certificate not yet valid, clock skew? (CN=%s)", cn);
	case X509_V_ERR_INVALID_PURPOSE:
		return net_errf(err, errlen, -EACCES, "certificate of %s is not for a TLS %s", cn,
				c->server ? "client" : "server (an operator certificate?)");
	default:
		return net_errf(err, errlen, -EACCES, "certificate refused (CN=%s): %s", cn,
				X509_verify_cert_error_string(v));
	}
}

static int alert_failure(int alert, char *err, size_t errlen)
{
	const char *what = SSL_alert_desc_string_long(alert);

	switch (alert) {
	case SSL_AD_UNKNOWN_CA:
	case SSL_AD_BAD_CERTIFICATE:
	case SSL_AD_UNSUPPORTED_CERTIFICATE:
	case SSL_AD_CERTIFICATE_EXPIRED:
	case SSL_AD_CERTIFICATE_UNKNOWN:
	case SSL_AD_CERTIFICATE_REQUIRED:
	case SSL_AD_ACCESS_DENIED:
		return net_errf(err, errlen, -EACCES, "peer refused our certificate (alert: %s)",
				what);
	case SSL_AD_PROTOCOL_VERSION:
		return net_errf(err, errlen, -EPROTO, "peer does not speak TLS 1.3");
	default:
		return net_errf(err, errlen, -EPROTO, "peer aborted the handshake (alert: %s)",
				what);
	}
}

/* Why the handshake (or the wait for the acceptance byte) failed, as -errno and a line. */
static int handshake_failure(struct tls_conn *c, int sslerr, int saved_errno, char *err,
			     size_t errlen)
{
	unsigned long e = ERR_peek_last_error();
	int reason = ERR_GET_LIB(e) == ERR_LIB_SSL ? ERR_GET_REASON(e) : 0;
	long v = SSL_get_verify_result(c->ssl);

	c->broken = true;
	if (v != X509_V_OK)
		return verify_failure(c, v, err, errlen);
	if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
		return net_errf(err, errlen, -EACCES, "peer sent no certificate");
	if (reason > SSL_AD_REASON_OFFSET)
		return alert_failure(reason - SSL_AD_REASON_OFFSET, err, errlen);
	if (reason == SSL_R_UNSUPPORTED_PROTOCOL || reason == SSL_R_NO_PROTOCOLS_AVAILABLE)
		return net_errf(err, errlen, -EPROTO, "peer does not speak TLS 1.3");
	if (reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_HTTP_REQUEST ||
	    reason == SSL_R_PACKET_LENGTH_TOO_LONG || reason == SSL_R_UNKNOWN_PROTOCOL)
		return net_errf(err, errlen, -EPROTO, "not a TLS %s (plain TCP?)",
				c->server ? "client" : "server");
	if (reason == SSL_R_UNEXPECTED_EOF_WHILE_READING || sslerr == SSL_ERROR_ZERO_RETURN ||
	    (sslerr == SSL_ERROR_SYSCALL &&
	     (saved_errno == 0 || saved_errno == ECONNRESET || saved_errno == EPIPE)))
		return net_errf(err, errlen, -EPIPE,
				"peer closed the connection during the handshake");
	if (sslerr == SSL_ERROR_SYSCALL && saved_errno)
		return net_errf(err, errlen, -saved_errno, "handshake: %s", strerror(saved_errno));
	return net_errf(err, errlen, -EPROTO, "TLS handshake failed: %s", net_tls_reason());
}

/* Run fn (SSL_do_handshake, or a 1-byte read/write) until done or the deadline passes. */
int net_tls_step(struct tls_conn *c, uint64_t deadline, int (*fn)(struct tls_conn *), char *err,
		 size_t errlen)
{
	for (;;) {
		int left = net_ms_left(deadline), r, e, saved;

		if (left == 0 || net_sock_timeout(c->fd, left < 0 ? 0 : left) < 0) {
			c->broken = true;
			return net_errf(err, errlen, -ETIMEDOUT, "TLS handshake timed out");
		}
		ERR_clear_error();
		errno = 0;
		r = fn(c);
		saved = errno;
		if (r == 1)
			break;
		e = SSL_get_error(c->ssl, r);
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
			return handshake_failure(c, e, saved, err, errlen);
	}
	/* The verified leaf, rather than whatever the callback saw first. */
	if (SSL_get0_peer_certificate(c->ssl))
		net_tls_cert_cn(SSL_get0_peer_certificate(c->ssl), c->seen_cn, sizeof(c->seen_cn));
	return net_sock_timeout(c->fd, 0);
}
