#!/bin/sh
# Run every test tier and end with one plain "N passed, N failed" line.
# Unit tests run from the sanitizer build; KVM tests drive build/bin/ programs.
set -u
results=$(mktemp)
trap 'rm -f "$results"' EXIT
export CME_TEST_RESULTS="$results"
export CME_BUILD=build
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:allocator_may_return_null=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
status=0

echo "== unit tests (AddressSanitizer + UndefinedBehaviorSanitizer) =="
build/san/tests/unit-tests || status=1
echo
echo "== KVM integration tests =="
build/tests/kvm-tests || status=1
echo
echo "== end-to-end cluster tests (etcd, cme-clusterd, cmectl, KVM) =="
build/tests/e2e-tests || status=1
echo

# A runner that crashed wrote no results line: count it as one failure.
for r in unit kvm e2e; do
	grep -q "^$r " "$results" || { echo "runner $r did not finish"; echo "$r 1 1 0" >>"$results"; status=1; }
done
awk '{ run += $2; failed += $3; skipped += $4 }
     END { printf "%d skipped\n", skipped; printf "%d passed, %d failed\n", run - failed - skipped, failed }' "$results"
exit $status
