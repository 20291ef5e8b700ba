# clusterd: see README.md in this folder. Nothing is built here yet.
MODULES += clusterd
clusterd_DEPS :=
clusterd_SRCS :=
