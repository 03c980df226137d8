#!/usr/bin/env bash
# Runs CTest in each build directory given as "title:dir", shows each
# summary, and closes with one line for all of them: "N passed, N failed,
# N skipped". Each skipped test is named with its reason: the last line it
# printed (a test skips, with exit status 77, only when a tool it needs is
# missing: etcd, spin, Debian's Python wheels).
#
# usage: run_suites.sh [--label LABEL] [--no-skips] CTEST JOBS TITLE:DIR...
#   --label LABEL   only the tests with that label (make test: quick)
#   --no-skips      a skipped test fails the run (make check: CI installs
#                   every tool, so nothing may skip there)
set -u
label= no_skips=0
while (($#)); do
    case $1 in
    --label) label=$2; shift 2 ;;
    --no-skips) no_skips=1; shift ;;
    *) break ;;
    esac
done
ctest=$1 jobs=$2
shift 2
filter=()
[ -n "$label" ] && filter=(-L "^${label}\$")
passed=0 failed=0 skipped=0 status=0 start=$SECONDS
for spec in "$@"; do
    title=${spec%%:*} dir=${spec#*:}
    echo "==> $title ($dir)"
    log=$(mktemp)
    (cd "$dir" && "$ctest" --output-on-failure -j "$jobs" "${filter[@]}") 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1)
    if [ -z "$line" ]; then
        rm -f "$log"
        echo "$title: no CTest summary"
        failed=$((failed + 1)) status=1
        continue
    fi
    nfail=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
    ntotal=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\2/' <<<"$line")
    # CTest counts a skipped test as passed; its output is in LastTest.log.
    nskip=0
    for name in $(sed -n -E 's/^[[:space:]]*[0-9]+ - ([^ ]+) \(Skipped\)[[:space:]]*$/\1/p' "$log"); do
        why=$(awk -v t="$name" '
            $0 ~ "^[0-9]+/[0-9]+ Test: " t "$" { on = 1; out = 0; next }
            on && /^Output:/ { out = 1; getline; next }
            on && out && /^<end of output>/ { exit }
            on && out && NF { last = $0 }
            END { print last }' "$dir/Testing/Temporary/LastTest.log" 2>/dev/null)
        echo "skipped: $name: ${why:-no reason printed}"
        nskip=$((nskip + 1))
    done
    rm -f "$log"
    passed=$((passed + ntotal - nfail - nskip)) failed=$((failed + nfail))
    skipped=$((skipped + nskip))
    [ "$rc" -eq 0 ] || status=1
done
echo
echo "${passed} passed, ${failed} failed, ${skipped} skipped ($((SECONDS - start)) s)"
if ((no_skips && skipped)); then
    echo "every test must run here: install what the skipped ones need (.ci/run does)"
    status=1
fi
exit $status
