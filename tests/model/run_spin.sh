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
# env:   as tests/model/spin_lib.sh says (MODEL_DIR, CC, SPIN, MEMLIM)
# Exit 77 (skipped) if spin is not installed.
# Closes with "N passed, N failed" (a configuration passes when it verifies,
# a mutant when it is caught); exit status 0 only if nothing failed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
model=$here/fifolock_mt.pml
# shellcheck source=spin_lib.sh
. "$here/spin_lib.sh"
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

spin_init fifolock-model
if [ "$what" != mutants ]; then
    echo "configurations (3 threads, COLLAPSE, exhaustive):"
    for c in "${configs[@]}"; do
        IFS='|' read -r name kind flags opts <<<"$c"
        [ -z "$only" ] || [ "$name" = "$only" ] || continue
        spin_config "$name" "$kind" "$flags" "$opts"
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
        opts=-m100000
        [ "$kind" = liveness ] && opts=-m10000000
        spin_mutant "$name" "$kind" "$flags" "$opts"
    done
fi
spin_done
