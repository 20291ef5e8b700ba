# migrate: TLS transport, stream framing, pre-copy source, destination, digest.
# Listed bottom-up: each file calls only files listed before it.
MODULES      += migrate
migrate_DEPS := hypervisor proto common
migrate_SRCS := migrate/sock.c migrate/tcp.c migrate/tls_ctx.c migrate/tls_handshake.c \
                migrate/tls_conn.c migrate/tls_io.c migrate/digest.c migrate/dest_digest.c \
                migrate/stream.c migrate/source_state.c migrate/report.c \
                migrate/source_pages.c migrate/switchover.c migrate/source.c \
                migrate/dest_state.c migrate/dest.c migrate/dest_run.c
