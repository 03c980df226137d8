#!/usr/bin/env bash
# The model check of the thread front end's protocol: tests/model/fifolock_mt.pml,
# a Promela model of src/mt.c, verified exhaustively with spin.
#
# For each configuration below this generates the verifier (spin -a), compiles
# it (-DCOLLAPSE: lossless compression of the stored states, so still an
# exhaustive search) and runs it:
#     safety    assertions and invalid end states (pan built with -DSAFETY)
#     liveness  the model's LTL formula under weak fairness (pan -a -f)
# and prints one line per configuration: states stored, search depth, seconds.
# A configuration passes only if pan printed "errors: 0" and searched the
# whole state space (no "max search depth too small", no memory limit hit).
#
# Then each deliberate bug of the model (fifolock_mt.pml, -D<NAME>) must be
# found: pan must report an error. The line shows what caught it: the failed
# assertion's comment in the model, an invalid end state (a thread waits for
# ever) or an acceptance cycle (the liveness formula fails).
#
# usage: tests/model/run_spin.sh [--configs | --config NAME | --mutants | --list]
#        (default: the configurations, then the mutants; --config: that one
#        configuration only; --list: the configurations' names, one a line)
# env:   MODEL_DIR  where to build (default: a temporary directory, removed
#                   unless something failed, so its trails can be replayed)
#        CC (default gcc), SPIN (default spin), MEMLIM (MB per pan run,
#        default 8192)
# Exit 77 (skipped) if spin is not installed.
# Closes with "N passed, N failed" (a configuration passes when it verifies,
# a mutant when it is caught); exit status 0 only if nothing failed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
model=$here/fifolock_mt.pml
what=all only=
case "${1:-}" in
'') ;;
--configs) what=configs ;;
--config)
    what=configs only=${2:-}
    [ -n "$only" ] || { echo "usage: $0 --config NAME" >&2; exit 2; }
    ;;
--mutants) what=mutants ;;
--list) what=list ;;
-h | --help)
    sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
*)
    echo "usage: $0 [--configs | --config NAME | --mutants | --list]" >&2
    exit 2
    ;;
esac

# Configurations: name | kind | spin -D flags | pan options. The flags are
# described at the top of fifolock_mt.pml (NO_YIELD: the waits never yield,
# which keeps the largest configurations small). Safety runs stop at depth
# 100000 (their longest run is a few hundred steps); liveness runs loop for
# ever (FOREVER), so their depth-first search goes millions of steps deep.
configs=(
    # Mutexes; each request blocking or timed, chosen per round.
    "mutex|safety|-DMODES_MUTEX -DNO_YIELD|-m100000"
    # Readers/writers, every request timed and every futex wait liable to
    # return spuriously: the largest set of behaviours, for the assertions.
    "rw-timed-spurious|safety|-DMODES_RW -DTIMED_THREADS=7 -DSPURIOUS -DNO_YIELD|-m100000 -w26"
    # Readers/writers, thread 0 blocking, threads 1 and 2 timed, waits that
    # yield (YIELDING) or not: thread 0 never waits for ever, whatever the
    # others' timeouts do.
    "rw-one-blocking|safety|-DMODES_RW -DTIMED_THREADS=6|-m100000 -w26"
    # Readers/writers, all blocking: nobody waits for ever.
    "rw-blocking|safety|-DMODES_RW -DTIMED_THREADS=0|-m100000"
    # Mutex, read and write mixed (their predicates ignore each other);
    # thread 2 timed.
    "all-modes|safety|-DMODES_ALL -DTIMED_THREADS=4 -DNO_YIELD|-m100000 -w25"
    # Liveness: threads loop for ever; a granted request is returned (LTL
    # `woken`, for thread 0, which is blocking) under weak fairness.
    "mutex-live|liveness|-DMODES_MUTEX -DFOREVER -DTIMED_THREADS=6|-m20000000 -w24"
    "rw-live|liveness|-DMODES_RW -DFOREVER -DTIMED_THREADS=6 -DNO_YIELD|-m40000000 -w25"
)

# Mutants: name | kind | spin -D flags (the mutant's own flag included).
rw="-DMODES_RW"
mutants=(
    "WAKE_BEFORE_GRANT|safety|$rw -DWAKE_BEFORE_GRANT"
    "DROP_WAKEUP|safety|$rw -DDROP_WAKEUP"
    "DROP_WAKEUP (liveness)|liveness|-DMODES_MUTEX -DFOREVER -DTIMED_THREADS=6 -DDROP_WAKEUP"
    "SKIP_GRANT_AFTER_CANCEL|safety|$rw -DSKIP_GRANT_AFTER_CANCEL"
    "FAST_PAST_WAITER|safety|$rw -DFAST_PAST_WAITER"
    "GRANT_PAST_WAITER|safety|$rw -DGRANT_PAST_WAITER"
    "NO_LINGER|safety|$rw -DNO_LINGER"
    "READ_NEXT_LATE|safety|$rw -DREAD_NEXT_LATE"
    "CANCEL_IGNORES_GRANT|safety|$rw -DCANCEL_IGNORES_GRANT"
    "LOST_L_WAKE|safety|$rw -DLOST_L_WAKE"
    "G2_WAITING_ONLY|safety|$rw -DG2_WAITING_ONLY"
    "NUDGE_NO_WAKE|safety|$rw -DNUDGE_NO_WAKE"
)

if [ "$what" = list ]; then
    for c in "${configs[@]}"; do echo "${c%%|*}"; done
    exit 0
fi

spin=${SPIN:-spin}
cc=${CC:-gcc}
memlim=${MEMLIM:-8192}

if ! command -v "$spin" >/dev/null 2>&1; then
    # A missing tool skips the check (exit 77, CTest's skip code); .ci/run installs it.
    echo "skipped: spin is not installed (Debian: apt-get install spin)"
    exit 77
fi
if ! command -v "$cc" >/dev/null 2>&1; then
    echo "run_spin.sh: no C compiler ($cc) to build spin's verifier" >&2
    exit 1
fi

if [ -n "${MODEL_DIR:-}" ]; then
    work=$MODEL_DIR keep=1
    mkdir -p "$work"
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/fifolock-model.XXXXXX") keep=0
fi
cp "$model" "$work/"

passed=0 failed=0

# build DIR KIND FLAGS: spin -a and cc in DIR; 0 on success.
build() {
    local dir=$1 kind=$2 flags=$3 ccflags
    mkdir -p "$dir"
    cp "$work/fifolock_mt.pml" "$dir/"
    if [ "$kind" = safety ]; then
        ccflags="-DSAFETY -DNOCLAIM"
    else
        ccflags=""
    fi
    # shellcheck disable=SC2086
    (cd "$dir" && "$spin" -a $flags fifolock_mt.pml >spin.log 2>&1 &&
        "$cc" -O2 -w -DCOLLAPSE -DMEMLIM="$memlim" $ccflags -o pan pan.c >cc.log 2>&1)
}

# run_pan DIR KIND PANOPTS: runs the verifier, output in DIR/pan.out.
run_pan() {
    local dir=$1 kind=$2 opts=$3
    [ "$kind" = liveness ] && opts="-a -f $opts"
    # shellcheck disable=SC2086
    (cd "$dir" && ./pan $opts >pan.out 2>&1)
}

# summary FILE: "N states, depth D, T s"
summary() {
    local states depth secs
    states=$(sed -n -E 's/^ *([0-9.e+]+) states, stored.*/\1/p' "$1" | head -n 1)
    depth=$(sed -n -E 's/.*depth reached ([0-9]+).*/\1/p' "$1" | head -n 1)
    secs=$(sed -n -E 's/^pan: elapsed time ([0-9.e+]+) seconds.*/\1/p' "$1" | head -n 1)
    printf '%s states, depth %s, %s s' "${states:-?}" "${depth:-?}" "${secs:-?}"
}

# incomplete FILE: prints why the search did not cover the whole space.
incomplete() {
    grep -m 1 -E 'max search depth too small|out of memory|reached -DMEMLIM bound|VECTORSZ' "$1"
}

check_config() {
    local name=$1 kind=$2 flags=$3 opts=$4 dir=$work/config-$1 errs why
    if ! build "$dir" "$kind" "$flags"; then
        printf 'FAIL  %-20s does not build: see %s\n' "$name" "$dir"
        failed=$((failed + 1))
        return
    fi
    run_pan "$dir" "$kind" "$opts"
    errs=$(sed -n -E 's/.*errors: ([0-9]+).*/\1/p' "$dir/pan.out" | head -n 1)
    why=$(incomplete "$dir/pan.out")
    if [ "$errs" = 0 ] && [ -z "$why" ]; then
        printf 'ok    %-20s %-8s %s\n' "$name" "$kind" "$(summary "$dir/pan.out")"
        passed=$((passed + 1))
    else
        printf 'FAIL  %-20s %-8s %s: %s\n' "$name" "$kind" "$(summary "$dir/pan.out")" \
            "${why:-errors: ${errs:-none reported}}"
        grep -m 3 -E '^pan:[0-9]+:' "$dir/pan.out" | sed 's/^/      /'
        echo "      replay: cd $dir && $spin -t -p $flags fifolock_mt.pml"
        failed=$((failed + 1))
    fi
}

# caught_by DIR FLAGS: what found the error, from pan's report and the trail.
caught_by() {
    local dir=$1 flags=$2 first line src
    first=$(grep -m 1 -E '^pan:[0-9]+:' "$dir/pan.out" | sed -E 's/^pan:[0-9]+: //; s/ \(at depth [0-9]+\)//')
    case "$first" in
    "assertion violated"*)
        # shellcheck disable=SC2086
        line=$(cd "$dir" && "$spin" -t $flags fifolock_mt.pml 2>&1 |
            sed -n -E 's/^spin: fifolock_mt\.pml:([0-9]+), Error: assertion violated.*/\1/p' | head -n 1)
        src=$(sed -n "${line:-0}p" "$work/fifolock_mt.pml" | sed -n -E 's:.*/\* *(.*[^ ]) *\*/.*:\1:p')
        printf 'assertion, line %s: %s' "${line:-?}" "${src:-$first}"
        ;;
    "invalid end state"*) printf 'invalid end state: a thread waits for ever' ;;
    "acceptance cycle"*) printf 'acceptance cycle: the liveness formula fails' ;;
    *) printf '%s' "${first:-?}" ;;
    esac
}

check_mutant() {
    local name=$1 kind=$2 flags=$3 dir errs opts=-m100000
    dir=$work/mutant-$(tr -c 'A-Za-z0-9_\n' '_' <<<"$name")
    [ "$kind" = liveness ] && opts=-m10000000
    if ! build "$dir" "$kind" "$flags"; then
        printf 'MISSED  %-24s does not build: see %s\n' "$name" "$dir"
        failed=$((failed + 1))
        return
    fi
    run_pan "$dir" "$kind" "$opts"
    errs=$(sed -n -E 's/.*errors: ([0-9]+).*/\1/p' "$dir/pan.out" | head -n 1)
    if [ -n "$errs" ] && [ "$errs" != 0 ]; then
        printf 'caught  %-24s %s (%s)\n' "$name" "$(caught_by "$dir" "$flags")" \
            "$(summary "$dir/pan.out")"
        passed=$((passed + 1))
    else
        printf 'MISSED  %-24s pan found no error (%s)\n' "$name" "$(summary "$dir/pan.out")"
        failed=$((failed + 1))
    fi
}

start=$SECONDS
echo "model check: $model with $("$spin" -V | head -n 1), in $work"
if [ "$what" != mutants ]; then
    echo "configurations (3 threads, COLLAPSE, exhaustive):"
    for c in "${configs[@]}"; do
        IFS='|' read -r name kind flags opts <<<"$c"
        [ -z "$only" ] || [ "$name" = "$only" ] || continue
        check_config "$name" "$kind" "$flags" "$opts"
    done
    if [ -n "$only" ] && [ $((passed + failed)) -eq 0 ]; then
        echo "no configuration named '$only' (--list shows them)"
        failed=1
    fi
fi
if [ "$what" != configs ]; then
    echo "deliberate bugs in the model (each must be caught):"
    for m in "${mutants[@]}"; do
        IFS='|' read -r name kind flags <<<"$m"
        check_mutant "$name" "$kind" "$flags"
    done
fi
echo "model check took $((SECONDS - start)) s"
if [ "$failed" -eq 0 ] && [ "$keep" -eq 0 ]; then
    rm -rf "$work"
elif [ "$failed" -ne 0 ]; then
    echo "kept $work (pan.out, trails) for replay"
fi
echo "${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
