# migrate: stream framing, pre-copy source, destination, digest (over net's TLS).
# Listed bottom-up: each file calls only files listed before it.
MODULES      += migrate
migrate_DEPS := net hypervisor proto common
migrate_SRCS := migrate/digest.c migrate/dest_digest.c migrate/source_digest.c migrate/dest_place.c \
                migrate/stream.c migrate/source_state.c migrate/report.c \
                migrate/source_pages.c migrate/source_postcopy.c migrate/switchover.c migrate/source.c \
                migrate/dest_state.c migrate/dest_rx.c migrate/dest_accept.c migrate/dest_postcopy.c migrate/dest.c \
                migrate/dest_run.c
