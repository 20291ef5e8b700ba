# ha: placement and drain planning over plain structs (see README.md). Depends on common
# only for its CPU feature lists.
MODULES += ha
ha_DEPS := common
ha_SRCS := ha/admin.c ha/usage.c ha/place.c ha/drain.c ha/restart.c ha/fence.c
