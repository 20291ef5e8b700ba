#!/bin/sh
# No circle between the files of a module: file A "uses" file B when A's object refers to a
# global symbol that B's object defines. Inside every module (and every program under cmd/)
# these uses must form no cycle, so each module reads top-down. Prints every circle as
# "MODULE: a.c -> b.c (symbol) -> ... -> a.c" and exits 1 when there is one.
#   sh mk/check-cycles.sh OBJDIR     (OBJDIR: build/obj after `make programs`)
set -eu
objdir=${1:-build/obj}
[ -d "$objdir" ] || { echo "check-cycles: $objdir: no objects (build first)"; exit 2; }
status=0
for dir in "$objdir"/*/ "$objdir"/cmd/*/; do
	dir=${dir%/}
	case "$dir" in */tests | */bench | */cmd | */gen) continue ;; esac
	ls "$dir"/*.o >/dev/null 2>&1 || continue
	mod=${dir#"$objdir"/}
	# One line per symbol: "D file sym" (defined) or "U file sym" (used).
	for o in "$dir"/*.o; do
		f=$(basename "$o" .o).c
		nm -g --defined-only "$o" | awk -v f="$f" 'NF == 3 { print "D", f, $3 }'
		nm -u "$o" | awk -v f="$f" '{ print "U", f, $2 }'
	done | awk -v mod="$mod" '
	$1 == "D" { def[$3] = $2; files[$2] = 1; next }
	{ use[++n] = $2 " " $3 }
	END {
		for (i = 1; i <= n; i++) {
			split(use[i], u, " ")
			if ((u[2] in def) && def[u[2]] != u[1]) {
				e = u[1] SUBSEP def[u[2]]
				if (!(e in edge)) edge[e] = u[2]
				reach[e] = 1
			}
		}
		# Transitive closure (a module has a few dozen files at most).
		for (k in files) for (i in files) if ((i, k) in reach)
			for (j in files) if ((k, j) in reach) reach[i, j] = 1
		bad = 0
		for (a in files) {
			if (!((a, a) in reach) || (a in shown)) continue
			# Walk one circle from a: always to a file that leads back to a.
			line = mod ": " a; cur = a; steps = 0
			do {
				nxt = ""
				for (b in files) if (((cur, b) in edge) && (b == a || (b, a) in reach)) {
					if (nxt == "" || b == a) nxt = b
				}
				line = line " -> " nxt " (" edge[cur, nxt] ")"
				shown[nxt] = 1; cur = nxt
			} while (cur != a && ++steps < 64)
			print line; bad = 1
		}
		exit bad
	}' || status=1
done
[ $status -eq 0 ] && echo "check-cycles: no circle between the files of any module"
exit $status
