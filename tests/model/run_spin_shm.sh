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
# env:   as tests/model/spin_lib.sh says (MEMLIM default 4096 here).
# Closes with "N passed, N failed"; exit status 0 only if nothing failed,
# 77 (skipped) if spin is not installed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
model=$here/fifolock_shm.pml
opt=1 memlim=4096
# shellcheck source=spin_lib.sh
. "$here/spin_lib.sh"
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
# name | kind | spin -D flags | pan options
configs=(
    # Two processes, two rounds each, one death.
    "2p-2r-death|safety|-DNP=2 -DROUNDS=2 -DDEATHS=1 -DTICK|-m100000"
    # Two deaths: a report given to a grant whose owner dies stays pending.
    "2p-2r-2deaths|safety|-DNP=2 -DROUNDS=2 -DDEATHS=2 -DTICK|-m100000"
    # No deaths and no tick: a lost wakeup is a waiter asleep for ever.
    "3p-no-tick|safety|-DNP=3 -DROUNDS=1 -DDEATHS=0|-m100000"
    # Liveness: with a death, every living process finishes.
    "2p-live|liveness|-DNP=2 -DROUNDS=1 -DDEATHS=1 -DTICK|-m1000000"
    # Conversions (process 0 turns its reads into writes): exclusion, the
    # conversion ahead of every waiter, a death at any step (X1 then the
    # CAS included); with three and no deaths, nobody waits for ever.
    "2p-2r-convert-death|safety|-DNP=2 -DROUNDS=2 -DDEATHS=1 -DTICK -DCONVERT|-m100000"
    "3p-convert|safety|-DNP=3 -DROUNDS=1 -DDEATHS=0 -DCONVERT|-m100000"
    # A death during a waiting conversion blocks nobody.
    "2p-convert-live|liveness|-DNP=2 -DROUNDS=1 -DDEATHS=1 -DTICK -DCONVERT|-m1000000"
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
    "REPORT_ONCE|safety|-DNP=2 -DROUNDS=2 -DDEATHS=1 -DTICK -DREPORT_ONCE"
    "READER_REPAIRS|safety|-DNP=2 -DROUNDS=2 -DDEATHS=1 -DTICK -DREADER_REPAIRS"
    "CONV_BY_SEQ|safety|-DNP=3 -DROUNDS=1 -DDEATHS=0 -DCONVERT -DCONV_BY_SEQ"
    "CONV_LETS_PAST|safety|-DNP=3 -DROUNDS=1 -DDEATHS=0 -DCONVERT -DCONV_LETS_PAST"
    "REPAIR_SKIPS_SWITCH|liveness|-DNP=2 -DROUNDS=1 -DDEATHS=1 -DTICK -DCONVERT -DREPAIR_SKIPS_SWITCH"
)

spin_init fifolock-model-shm
if [ "$what" != mutants ]; then
    for c in "${configs[@]}"; do
        IFS='|' read -r name kind flags opts <<<"$c"
        spin_config "$name" "$kind" "$flags" "$opts"
    done
fi
if [ "$what" != configs ]; then
    for c in "${mutants[@]}"; do
        IFS='|' read -r name kind flags <<<"$c"
        spin_mutant "$name" "$kind" "$flags" -m1000000
    done
fi
spin_done
