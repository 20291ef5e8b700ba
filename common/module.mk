# common: logging, errors, time, sizes, I/O and JSON-line helpers, the CPU feature table.
# No dependencies.
MODULES     += common
common_DEPS :=
common_SRCS := common/log.c common/util.c common/io.c common/jsonl.c common/cpufeat.c common/measure.c common/bootsig.c common/keyfile.c common/proc.c
