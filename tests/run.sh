#!/bin/sh
# Run every test tier and end with one plain "N passed, N failed" line.
# Unit tests run from the sanitizer build; KVM tests drive build/bin/ programs (CME_BUILD:
# another build, e.g. build/san for make check-all; CME_TIERS: which tiers, default all).
set -u
results=$(mktemp)
trap 'rm -f "$results"' EXIT
export CME_TEST_RESULTS="$results"
export CME_BUILD="${CME_BUILD:-build}"
tiers="${CME_TIERS:-unit kvm e2e}"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:allocator_may_return_null=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
status=0

case " $tiers " in *" unit "*)
	echo "== unit tests (AddressSanitizer + UndefinedBehaviorSanitizer) =="
	build/san/tests/unit-tests || status=1
	echo ;;
esac
case " $tiers " in *" kvm "*)
	echo "== KVM integration tests ($CME_BUILD) =="
	"$CME_BUILD/tests/kvm-tests" || status=1
	echo ;;
esac
case " $tiers " in *" e2e "*)
	echo "== end-to-end cluster tests (etcd, cme-clusterd, cmectl, KVM; $CME_BUILD) =="
	"$CME_BUILD/tests/e2e-tests" || status=1
	echo ;;
esac

# A runner that crashed wrote no results line: count it as one failure.
for r in $tiers; do
	grep -q "^$r " "$results" || { echo "runner $r did not finish"; echo "$r 1 1 0" >>"$results"; status=1; }
done
awk '{ run += $2; failed += $3; skipped += $4 }
     END { printf "%d skipped\n", skipped; printf "%d passed, %d failed\n", run - failed - skipped, failed }' "$results"
exit $status
