# migrate: see README.md in this folder. Nothing is built here yet.
MODULES += migrate
migrate_DEPS :=
migrate_SRCS :=
