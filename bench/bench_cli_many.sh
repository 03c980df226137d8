#!/usr/bin/env bash
# Many processes on one lock file: N commands started at once, each
# `fifolock FILE true` (the shared-memory lock, mutex) against `flock FILE
# true` (flock(1)), alternated ROUNDS times; prints each round's wall time
# and the medians. What it shows is how the lock behaves when hundreds of
# processes wait at once (each waiter's periodic look for dead holders, the
# internal lock), not the cost of one handoff (bench_shm has that).
#
# usage: bench/bench_cli_many.sh FIFOLOCK_BINARY [N=500] [ROUNDS=3]
set -u
tool=$1 n=${2:-500} rounds=${3:-3}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
command -v flock >/dev/null || { echo "flock(1) not found"; exit 1; }

run() { # run NAME CMD...: N at once, wall seconds on stdout
    local t0 t1 i
    t0=$(date +%s.%N)
    for ((i = 0; i < n; i++)); do "$@" true & done
    wait
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc
}
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

echo "$n processes at once on one lock file, $rounds rounds; load: $(cut -d' ' -f1-3 /proc/loadavg)"
: >"$dir/f" ; : >"$dir/l"
for ((r = 1; r <= rounds; r++)); do
    rm -f "$dir/fifo.lock"
    a=$(run "$tool" "$dir/fifo.lock")
    b=$(run flock "$dir/flock.lock")
    echo "$a" >>"$dir/f"; echo "$b" >>"$dir/l"
    printf 'round %d: fifolock %.2f s, flock %.2f s\n' "$r" "$a" "$b"
done
printf 'median: fifolock %.2f s, flock %.2f s; load at end: %s\n' \
    "$(median <"$dir/f")" "$(median <"$dir/l")" "$(cut -d' ' -f1-3 /proc/loadavg)"
