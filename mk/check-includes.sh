#!/bin/sh
# Layering of #include "...": a file of a module may include its own module's headers and
# the public header of a module it depends on (DIR/DIR.h; for proto, the generated
# NAME.pb-c.h), nothing else, and never a path ("../x.h", "dir/x.h"). Programs (cmd/NAME)
# follow the same rule with their own folder. Tests and benchmarks may include the private
# headers of the modules they test (white-box), but never a path either.
# Reads "DIR DEP..." lines (one per module or program, from `make print-layers`) on stdin;
# prints FILE:LINE: why, for each offence, and exits 1 when there is one.
set -eu
status=0
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
cat >"$tmp"

# check FILE DIR "DEPS": every quoted include of FILE against its module DIR's rule.
check() {
	grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$1" | while IFS= read -r hit; do
		line=${hit%%:*}
		inc=$(printf '%s\n' "$hit" | sed 's/^[^"]*"\([^"]*\)".*/\1/')
		why=""
		case "$inc" in
		*/*) why="includes \"$inc\" by a path: name the header alone (the build gives each module the include paths of its dependencies)" ;;
		*)
			if [ -n "$2" ] && [ -f "$2/$inc" ]; then
				:
			elif [ -z "$2" ]; then
				: # tests and benchmarks: any header on their include path
			else
				ok=""
				for d in $3; do
					base=${d##*/}
					if [ "$inc" = "$base.h" ] && [ -f "$d/$inc" ]; then ok=1; fi
					if [ "$d" = proto ] && [ -f "proto/${inc%.pb-c.h}.proto" ]; then ok=1; fi
				done
				if [ -z "$ok" ]; then
					owner=$(for f in $(git ls-files "*/$inc" 2>/dev/null || find . -name "$inc"); do dirname "$f"; done | head -1)
					if [ -n "$owner" ] && [ "$inc" = "${owner##*/}.h" ]; then
						why="includes \"$inc\", the public header of $owner/, which $2 does not depend on"
					elif [ -n "$owner" ]; then
						why="includes \"$inc\", private to $owner/ (only $owner/${owner##*/}.h is public, and only to modules that depend on $owner)"
					else
						why="includes \"$inc\", which is neither its module's own header nor the public header of a dependency"
					fi
				fi
			fi
			;;
		esac
		if [ -n "$why" ]; then
			echo "$1:$line: $why"
			echo bad >>"$tmp.bad"
		fi
	done
}

rm -f "$tmp.bad"
while read -r dir deps; do
	for f in "$dir"/*.c "$dir"/*.h; do
		[ -f "$f" ] && check "$f" "$dir" "$deps"
	done
done <"$tmp"
for f in $(find tests bench -name '*.[ch]' -not -path 'tests/guest/*' | sort); do
	check "$f" "" ""
done
if [ -f "$tmp.bad" ]; then
	rm -f "$tmp.bad"
	exit 1
fi
echo "check-includes: every module includes only its own headers and its dependencies' public ones"
exit $status
