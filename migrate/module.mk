# migrate: TLS transport, stream framing, pre-copy source, destination, digest.
MODULES      += migrate
migrate_DEPS := hypervisor proto common
migrate_SRCS := migrate/sock.c migrate/tcp.c migrate/tls_ctx.c migrate/tls_handshake.c \
                migrate/tls_conn.c migrate/tls_io.c migrate/stream.c migrate/digest.c migrate/source.c \
                migrate/source_pages.c migrate/switchover.c migrate/report.c migrate/dest.c \
                migrate/dest_run.c migrate/dest_digest.c
