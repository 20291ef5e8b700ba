# ha: placement and drain planning over plain structs (see README.md). No dependencies.
MODULES += ha
ha_DEPS :=
ha_SRCS := ha/admin.c ha/usage.c ha/place.c ha/drain.c ha/restart.c ha/fence.c
