#!/bin/sh
# Instructions per operation of the event-loop lock, counted by callgrind.
#
#   bench/callgrind.sh [BENCH_ENGINE] [-n OPS] [-v]
#
# BENCH_ENGINE defaults to build/bench/bench_engine. For each operation the
# bench is run once under `valgrind --tool=callgrind`, collecting only inside
# that operation's measured function (--toggle-collect=op_...).
#
#   instr/op    instructions executed inside that function and everything it
#               calls, divided by the operations it did
#   library/op  the same without the function's own instructions (the
#               benchmark's loop, argument set-up and return-value checks):
#               the library's calls plus the grant callbacks (2 instructions)
#
# -v also lists, per operation, the instructions spent in each function.
set -eu

bench=build/bench/bench_engine
ops=25600
verbose=0
while [ $# -gt 0 ]; do
    case $1 in
    -n) ops=$2; shift 2 ;;
    -v) verbose=1; shift ;;
    -*) echo "usage: $0 [BENCH_ENGINE] [-n OPS] [-v]" >&2; exit 2 ;;
    *) bench=$1; shift ;;
    esac
done
[ -x "$bench" ] || { echo "$0: no benchmark at $bench (build it first)" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "$0: valgrind not found" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# "<function> <operations>" for every measured function.
"$bench" -c -n "$ops" -r 1 >"$tmp/ops"

printf '%-18s %10s %12s %9s %11s\n' function operations instructions "instr/op" "library/op"
while read -r fn count; do
    out=$tmp/$fn.out
    valgrind --tool=callgrind --callgrind-out-file="$out" --toggle-collect="$fn" \
        "$bench" -c -n "$ops" -r 1 >/dev/null 2>"$tmp/$fn.log" || {
        cat "$tmp/$fn.log" >&2
        exit 1
    }
    # Instructions per function (self cost), per operation.
    callgrind_annotate --auto=no "$out" 2>/dev/null |
        awk -v n="$count" '/file:function/ { on = 1; next }
            on && /^[ 0-9,]+\(/ {
                ir = $1; gsub(",", "", ir); fn = $NF
                if ($NF ~ /^\[/) fn = $(NF - 1)
                sub(/.*\//, "", fn)
                printf "%.1f %s\n", ir / n, fn }' >"$tmp/$fn.self"
    total=$(awk '/^(summary|totals):/ { print $2; exit }' "$out")
    [ "${total:-0}" -gt 0 ] || { echo "$0: nothing collected in $fn" >&2; exit 1; }
    own=$(awk -v fn="$fn" '$2 ~ (":" fn "$") { print $1 }' "$tmp/$fn.self")
    awk -v fn="$fn" -v t="$total" -v n="$count" -v own="${own:-0}" \
        'BEGIN { printf "%-18s %10d %12d %9.1f %11.1f\n", fn, n, t, t / n, t / n - own }'
    [ "$verbose" = 0 ] || awk '{ printf "    %8.1f  %s\n", $1, $2 }' "$tmp/$fn.self"
done <"$tmp/ops"
