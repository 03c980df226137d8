#!/usr/bin/env bash
# The model check of the shared-memory lock's protocol: tests/model/fifolock_shm.pml,
# a Promela model of src/shm.c in which processes die at any step, verified
# exhaustively with spin, as tests/model/run_spin.sh does for the thread lock.
#
# For each configuration below: spin -a, cc (-DCOLLAPSE: lossless), pan:
#     safety    assertions and invalid end states (pan built with -DSAFETY)
#     liveness  the LTL formula `live` (every process finishes or dies)
#               under weak fairness (pan -a -f)
# The largest configurations (three processes with deaths: 25 and 58 million
# states, minutes each) are left out of the default run; run them with
# BIG=1.
# A configuration passes only if pan printed "errors: 0" and searched the
# whole state space. Then each deliberate bug of the model must be found.
#
# The verifiers are compiled with -O1: as fast as -O2 here, in a third of
# the compile time, which is most of this script's.
#
# usage: tests/model/run_spin_shm.sh [--configs | --mutants]
# env:   MODEL_DIR (default: a temporary directory, kept if something failed),
#        CC (gcc), SPIN (spin), MEMLIM (MB per pan run, 4096)
# Closes with "N passed, N failed"; exit status 0 only if nothing failed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
model=$here/fifolock_shm.pml
what=all
case "${1:-}" in
'') ;;
--configs) what=configs ;;
--mutants) what=mutants ;;
*)
    echo "usage: $0 [--configs | --mutants]" >&2
    exit 2
    ;;
esac
spin=${SPIN:-spin}
cc=${CC:-gcc}
memlim=${MEMLIM:-4096}

if ! command -v "$spin" >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "spin is not installed: apt-get install -y spin"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq spin >/dev/null 2>&1 ||
            { apt-get update -qq && apt-get install -y -qq spin >/dev/null; }
    fi
    if ! command -v "$spin" >/dev/null 2>&1; then
        echo "run_spin_shm.sh: spin is not installed (Debian: apt-get install spin)" >&2
        exit 1
    fi
fi

if [ -n "${MODEL_DIR:-}" ]; then
    work=$MODEL_DIR keep=1
    mkdir -p "$work"
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/fifolock-model-shm.XXXXXX") keep=0
fi

# name | kind | spin -D flags | pan options
configs=(
    # Two processes, two rounds each, one death.
    "2p-2r-death|safety|-DNP=2 -DROUNDS=2 -DDEATHS=1 -DTICK|-m100000"
    # Two deaths: a report given to a grant whose owner dies goes on.
    "2p-2r-2deaths|safety|-DNP=2 -DROUNDS=2 -DDEATHS=2 -DTICK|-m100000"
    # No deaths and no tick: a lost wakeup is a waiter asleep for ever.
    "3p-no-tick|safety|-DNP=3 -DROUNDS=1 -DDEATHS=0|-m100000"
    # Liveness: with a death, every living process finishes.
    "2p-live|liveness|-DNP=2 -DROUNDS=1 -DDEATHS=1 -DTICK|-m1000000"
)
if [ -n "${BIG:-}" ]; then
    configs+=("3p-death|safety|-DNP=3 -DROUNDS=1 -DDEATHS=1 -DTICK|-m100000"
        "3p-2deaths|safety|-DNP=3 -DROUNDS=1 -DDEATHS=2 -DTICK|-m100000")
fi
mutants=(
    "NO_REAP|liveness|-DNP=2 -DROUNDS=1 -DDEATHS=1 -DTICK -DNO_REAP"
    "DROP_WAKE|safety|-DNP=2 -DROUNDS=2 -DDEATHS=0 -DDROP_WAKE"
    "GRANT_PAST_WAITER|safety|-DNP=3 -DROUNDS=1 -DDEATHS=0 -DGRANT_PAST_WAITER"
    "IDLE_WITH_QUEUE|safety|-DNP=2 -DROUNDS=2 -DDEATHS=0 -DIDLE_WITH_QUEUE"
    "REPAIR_DROPS_FAST|safety|-DNP=2 -DROUNDS=2 -DDEATHS=1 -DTICK -DREPAIR_DROPS_FAST"
    "REPORT_TWICE|safety|-DNP=2 -DROUNDS=2 -DDEATHS=2 -DTICK -DREPORT_TWICE"
)

passed=0 failed=0

build() { # DIR KIND FLAGS
    local dir=$1 kind=$2 flags=$3 ccflags=""
    mkdir -p "$dir"
    cp "$model" "$dir/"
    [ "$kind" = safety ] && ccflags="-DSAFETY -DNOCLAIM"
    # shellcheck disable=SC2086
    (cd "$dir" && "$spin" -a $flags fifolock_shm.pml >spin.log 2>&1 &&
        "$cc" -O1 -w -DCOLLAPSE -DMEMLIM="$memlim" $ccflags -o pan pan.c >cc.log 2>&1)
}

run_pan() { # DIR KIND OPTS
    local dir=$1 kind=$2 opts=$3
    [ "$kind" = liveness ] && opts="-a -f $opts"
    # shellcheck disable=SC2086
    (cd "$dir" && ./pan $opts >pan.out 2>&1)
}

summary() {
    local states depth secs
    states=$(sed -n -E 's/^ *([0-9.e+]+) states, stored.*/\1/p' "$1" | head -n 1)
    depth=$(sed -n -E 's/.*depth reached ([0-9]+).*/\1/p' "$1" | head -n 1)
    secs=$(sed -n -E 's/^pan: elapsed time ([0-9.e+]+) seconds.*/\1/p' "$1" | head -n 1)
    printf '%s states, depth %s, %s s' "${states:-?}" "${depth:-?}" "${secs:-?}"
}

if [ "$what" != mutants ]; then
    for c in "${configs[@]}"; do
        IFS='|' read -r name kind flags opts <<<"$c"
        dir=$work/config-$name
        if ! build "$dir" "$kind" "$flags"; then
            printf 'FAIL  %-18s does not build: see %s\n' "$name" "$dir"
            failed=$((failed + 1))
            continue
        fi
        run_pan "$dir" "$kind" "$opts"
        errs=$(sed -n -E 's/.*errors: ([0-9]+).*/\1/p' "$dir/pan.out" | head -n 1)
        why=$(grep -m 1 -E 'max search depth too small|out of memory|reached -DMEMLIM bound|VECTORSZ' "$dir/pan.out")
        if [ "$errs" = 0 ] && [ -z "$why" ]; then
            printf 'ok    %-18s %-8s %s\n' "$name" "$kind" "$(summary "$dir/pan.out")"
            passed=$((passed + 1))
        else
            printf 'FAIL  %-18s %-8s %s: %s\n' "$name" "$kind" "$(summary "$dir/pan.out")" \
                "${why:-errors: ${errs:-none reported}}"
            grep -m 3 -E '^pan:[0-9]+:' "$dir/pan.out" | sed 's/^/      /'
            echo "      replay: cd $dir && $spin -t -p $flags fifolock_shm.pml"
            failed=$((failed + 1)) keep=1
        fi
    done
fi
if [ "$what" != configs ]; then
    for c in "${mutants[@]}"; do
        IFS='|' read -r name kind flags <<<"$c"
        dir=$work/mutant-$name
        if ! build "$dir" "$kind" "$flags"; then
            printf 'FAIL  mutant %-18s does not build: see %s\n' "$name" "$dir"
            failed=$((failed + 1)) keep=1
            continue
        fi
        run_pan "$dir" "$kind" "-m1000000"
        errs=$(sed -n -E 's/.*errors: ([0-9]+).*/\1/p' "$dir/pan.out" | head -n 1)
        if [ -n "$errs" ] && [ "$errs" != 0 ]; then
            caught=$(grep -m 1 -oE 'assertion violated.*|invalid end state|acceptance cycle' "$dir/pan.out")
            printf 'ok    mutant %-18s caught: %s\n' "$name" "${caught:-error}"
            passed=$((passed + 1))
        else
            printf 'FAIL  mutant %-18s not caught\n' "$name"
            failed=$((failed + 1)) keep=1
        fi
    done
fi
echo "$passed passed, $failed failed"
[ "$keep" = 1 ] || rm -rf "$work"
[ "$failed" = 0 ]
