#!/bin/sh
# Files stay small (STYLE.md): most under 500 lines, none over 1,000. Prints each C file
# over the limit as FILE: N lines, and exits 1 when there is one.
set -eu
limit=1000
bad=0
for f in $(git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.[ch]' -not -path './build/*'); do
	n=$(wc -l <"$f")
	if [ "$n" -gt "$limit" ]; then
		echo "$f: $n lines, over $limit: split it along its seams"
		bad=1
	fi
done
[ $bad -eq 0 ] && echo "check-sizes: no C file over $limit lines"
exit $bad
