#!/usr/bin/env bash
# Builds the engine's fuzz target with clang (libFuzzer + ASan + UBSan, with
# the engine's invariant checks) and fuzzes for SECONDS, starting from the
# seed corpus. New inputs go to BUILD/corpus; a crash is saved as
# BUILD/crash-* and can be replayed with `BUILD/fuzz_engine FILE`
# (FIFOLOCK_FUZZ_TRACE=1 prints every call it makes).
#
# usage: tests/fuzz/run_fuzz.sh [SECONDS [BUILD]]     (defaults: 60, build-fuzz)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
seconds=${1:-60}
build=${2:-$root/build-fuzz}
cc=${FUZZ_CC:-clang}

mkdir -p "$build/corpus"
"$cc" -std=c11 -g -O1 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
    -Wmissing-prototypes -DFIFOLOCK_DEBUG -I"$root/include" -I"$root/src" \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    "$root/tests/fuzz/fuzz_engine.c" "$root/src/engine.c" "$root/src/modes.c" \
    "$root/src/strerror.c" -o "$build/fuzz_engine"
echo "fuzzing for ${seconds}s (new inputs: $build/corpus)"
exec "$build/fuzz_engine" -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="$build/" "$build/corpus" "$root/tests/fuzz/corpus"
