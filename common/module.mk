# common: logging, errors, time, sizes, I/O and JSON-line helpers. No dependencies.
MODULES     += common
common_DEPS :=
common_SRCS := common/log.c common/util.c common/io.c common/jsonl.c
