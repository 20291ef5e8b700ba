#!/bin/sh
# host side: one QEMU boot per suite (the nested setup can hang; a boot is cheap)
cd /tmp/kvmlab
for s in "$@"; do
  case $s in e2e-*) bin=e2e-tests; suite=${s#e2e-}; per=1500 ;; *) bin=kvm-tests; suite=$s; per=600 ;; esac
  echo "=== $s $(date +%T)"
  timeout $((per + 120)) ./run.sh -r -t $((per + 100)) "cd /tmp/kvmlab/cur; CME_BUILD=/tmp/kvmlab/cur/build CME_TEST_SUITE=$suite timeout $per ./build/tests/$bin > /tmp/kvmlab/out-$s.log 2>&1; echo suite-rc=\$?" 2>&1 | grep -E "suite-rc|EXIT CODE|qemu rc"
  grep -E "Test:|FAIL|tests,|^ +[0-9]+\. |kill -9 to" /tmp/kvmlab/out-$s.log
done
echo "=== all done $(date +%T)"
