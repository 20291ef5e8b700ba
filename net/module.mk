# net: the host-to-host transport, TCP with mutual TLS 1.3 (OpenSSL). Used by live
# migration and by the cluster daemons' peer channel. Listed bottom-up.
MODULES  += net
net_DEPS := common
net_SRCS := net/sock.c net/tcp.c net/tls_ctx.c net/tls_handshake.c net/tls_conn.c net/tls_io.c
