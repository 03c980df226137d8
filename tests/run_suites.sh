#!/usr/bin/env bash
# Runs CTest in each build directory given as "label:dir", shows each
# summary, and closes with one line for all of them: "N passed, N failed".
set -u
ctest=$1 jobs=$2
shift 2
passed=0 failed=0 status=0
for spec in "$@"; do
    label=${spec%%:*} dir=${spec#*:}
    echo "==> $label ($dir)"
    log=$(mktemp)
    (cd "$dir" && "$ctest" --output-on-failure -j "$jobs") 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1)
    rm -f "$log"
    if [ -z "$line" ]; then
        echo "$label: no CTest summary"
        failed=$((failed + 1)) status=1
        continue
    fi
    nfail=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
    ntotal=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\2/' <<<"$line")
    passed=$((passed + ntotal - nfail)) failed=$((failed + nfail))
    [ "$rc" -eq 0 ] || status=1
done
echo
echo "${passed} passed, ${failed} failed"
exit $status
