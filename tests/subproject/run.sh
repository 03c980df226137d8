#!/usr/bin/env bash
# Builds tests/subproject (a project that does add_subdirectory(fifolock))
# and checks that fifolock added no tests to it, kept its -Werror to itself,
# and that the program runs.  usage: run.sh SOURCE_DIR WORK_DIR CMAKE CC
set -u
src=$1 work=$2 cmake=$3 cc=$4
rm -rf "$work" && mkdir -p "$work"
if ! CC=$cc "$cmake" -S "$src/tests/subproject" -B "$work" -DFIFOLOCK_SOURCE_DIR="$src" \
    -DCMAKE_C_FLAGS=-Wall >"$work/log" 2>&1 || ! "$cmake" --build "$work" >>"$work/log" 2>&1; then
    cat "$work/log"
    echo "FAIL: the consumer does not build (was fifolock's -Werror applied to it?)"
    exit 1
fi
n=$(cd "$work" && ctest -N | sed -n 's/^Total Tests: //p')
if [ "$n" != 0 ]; then
    echo "FAIL: fifolock added $n tests to the consumer"
    exit 1
fi
for dir in examples bench tests tools; do
    if [ -d "$work/fifolock/$dir" ]; then
        echo "FAIL: fifolock built its $dir in the consumer"
        exit 1
    fi
done
"$work/consumer" || { echo "FAIL: the consumer does not run"; exit 1; }
echo "1 passed, 0 failed"
