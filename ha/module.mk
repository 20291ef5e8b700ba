# ha: see README.md in this folder. Nothing is built here yet.
MODULES += ha
ha_DEPS :=
ha_SRCS :=
