#!/usr/bin/env bash
# The mutation check: proves the tests catch real bugs.
#
# Each mutant is a deliberate bug, kept beside this script as NAME.patch (a
# diff against src/; the library's sources hold none of them). For each one
# this copies the tree, applies the patch to the copy, builds there only the
# test programs that can catch it, runs them (every test capped at
# CTEST_TIMEOUT seconds, so a mutant that deadlocks is caught in seconds),
# and prints
#
#     caught  NAME  (failed tests: ...)      some test failed: good
#     MISSED  NAME                           every test passed: the tests are blind to it
#     MISSED  NAME  (does not apply ...)     the patch no longer fits src/
#     MISSED  NAME  (does not build ...)     the mutant itself is broken
#
# then "N passed, N failed" (passed = caught). Which tests can catch a patch
# follows from the files it changes (labels_for below): a bug in
# src/engine.c is for the engine's tests (label engine), one in src/mt.c
# for the thread lock's (mt), and so on; the quick tier of those labels
# runs, without valgrind, Python, examples or benches. An unmutated baseline
# is built and tested first with the labels of every mutant and must pass,
# or nothing is checked. Exit status: 0 when every mutant is caught.
#
# A patch that no longer applies (src/ changed under it) fails the check:
# refresh it (patch -p1 --fuzz=3 on a copy, fix what was rejected, diff again).
#
# usage: tests/mutants/run_mutants.sh [NAME...]        (default: all of them)
# env:   CC (default cc)  JOBS (default nproc)  CTEST_TIMEOUT (default 10)
#        FIFOLOCK_SANITIZE (e.g. address,undefined; pass CC=clang with it)
#        MUTANTS_DIR (where to build; default a temporary directory, removed
#        when every mutant is caught)
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/tests/mutants
all=()
for p in "$here"/*.patch; do all+=("$(basename "$p" .patch)"); done
if (($#)); then mutants=("$@"); else mutants=("${all[@]}"); fi
jobs=${JOBS:-$(nproc)}
cap=${CTEST_TIMEOUT:-10}
# Not the slow tier, nor `mutant_patches_apply`: in a mutant's tree its own
# patch no longer applies, so it would fail for every mutant and catch them all.
exclude_labels='slow|python|example|bench'
exclude_names='mutant'

# labels_for PATCH: the CTest labels of the tests that can catch the bug, from
# the files the patch changes ("engine mt"); every C test's label if it
# changes a file this table does not know.
labels_for() {
    local f l labels=
    for f in $(sed -n 's|^+++ b/||p' "$1"); do
        case $f in
        src/engine.c | src/modes.c | src/rule.c | src/strerror.c | src/internal.h) l=engine ;;
        src/mt.c | src/mt_internal.h) l=mt ;;
        src/shm.c | src/shm_internal.h) l=shm ;;
        src/etcd/*) l=etcd ;;
        *) l="engine mt shm etcd cpp fuzz" ;;
        esac
        labels="$labels $l"
    done
    tr ' ' '\n' <<<"$labels" | sed '/^$/d' | sort -u | tr '\n' ' '
}
if [ -n "${MUTANTS_DIR:-}" ]; then
    work=$MUTANTS_DIR keep=1
    mkdir -p "$work"
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/fifolock-mutants.XXXXXX") keep=0
fi
start=$SECONDS

# copy_tree DEST: the source tree without build directories and .git.
copy_tree() {
    rm -rf "$1" && mkdir -p "$1" &&
        (cd "$root" && tar -cf - --exclude=./.git --exclude='./build*' --exclude=./docs .) |
        (cd "$1" && tar -xf -)
}

# build SRC DIR LOG LABELS: configure, then build the test programs of those
# labels (the targets tests_LABEL, tests/CMakeLists.txt); 0 on success.
build() {
    local srcdir=$1 dir=$2 log=$3 targets=() l
    for l in $4; do targets+=("tests_$l"); done
    rm -rf "$dir"
    cmake -S "$srcdir" -B "$dir" -DFIFOLOCK_DEBUG=OFF -DFIFOLOCK_EXAMPLES=OFF \
        -DFIFOLOCK_BENCH=OFF -DFIFOLOCK_VALGRIND=OFF -DFIFOLOCK_PYTHON_TESTS=OFF \
        -DFIFOLOCK_MUTATION_CHECK=OFF -DFIFOLOCK_MODEL_CHECK=OFF -DFIFOLOCK_CXX_TESTS=OFF \
        -DFIFOLOCK_SANITIZE="${FIFOLOCK_SANITIZE:-}" >"$log" 2>&1 &&
        cmake --build "$dir" -j "$jobs" --target "${targets[@]}" >>"$log" 2>&1
}

# cap_timeouts DIR: no test may run longer than $cap seconds. A TIMEOUT
# property overrides `ctest --timeout`, so the generated files are edited.
cap_timeouts() {
    find "$1" -name CTestTestfile.cmake -exec \
        perl -pi -e 's/TIMEOUT "(\d+(?:\.\d+)?)"/"TIMEOUT \"" . ($1 > '"$cap"' ? '"$cap"' : $1) . "\""/ge' {} +
}

# run_tests DIR LOG LABELS: runs the tests of those labels; sets $failed to
# "name, name [reason]". Returns 0 when all pass, 1 when some fail, 2 when no
# test ran.
run_tests() {
    local dir=$1 log=$2 re rc
    re="^($(tr ' ' '|' <<<"$3" | sed 's/|*$//'))\$"
    cap_timeouts "$dir"
    (cd "$dir" && ctest -j "$jobs" --timeout "$cap" -L "$re" -E "$exclude_names" \
        -LE "$exclude_labels" --output-on-failure) >>"$log" 2>&1
    rc=$?
    if grep -q 'No tests were found' "$log"; then
        failed="no test ran"
        return 2
    fi
    failed=$(sed -n '/The following tests FAILED:/,$p' "$log" |
        sed -n -E 's/^[[:space:]]*[0-9]+ - ([^ ]+) \((.*)\)[[:space:]]*$/\1 \2/p' |
        awk '{ n = $1; $1 = ""; sub(/^ /, ""); printf "%s%s%s", sep, n, ($0 == "Failed" ? "" : " [" $0 "]"); sep = ", " }')
    if [ "$rc" -ne 0 ] && [ -z "$failed" ]; then
        failed="ctest exit $rc, see $log"
    fi
    [ "$rc" -eq 0 ] || return 1
}

all_labels=
for name in "${mutants[@]}"; do
    [ -e "$here/$name.patch" ] && all_labels="$all_labels $(labels_for "$here/$name.patch")"
done
all_labels=$(tr ' ' '\n' <<<"$all_labels" | sed '/^$/d' | sort -u | tr '\n' ' ')

echo "mutation check: ${#mutants[@]} mutants, builds in $work"
if ! build "$root" "$work/baseline" "$work/baseline.log" "$all_labels"; then
    echo "baseline does not build: see $work/baseline.log"
    echo "0 passed, 1 failed"
    exit 1
fi
if ! run_tests "$work/baseline" "$work/baseline.log" "$all_labels"; then
    echo "baseline fails without any mutant (${failed}): see $work/baseline.log"
    echo "0 passed, 1 failed"
    exit 1
fi
echo "baseline  passes ($(grep -Eo '[0-9]+ tests? failed out of [0-9]+' "$work/baseline.log" | tail -n 1); labels: $all_labels)"
rm -rf "$work/baseline"

caught=0 missed=0
for name in "${mutants[@]}"; do
    t0=$SECONDS
    log=$work/$name.log
    tree=$work/$name-src
    if ! copy_tree "$tree" || ! (cd "$tree" && git apply "$here/$name.patch") >"$log" 2>&1; then
        echo "MISSED  $name  (does not apply: see $log)"
        missed=$((missed + 1))
        continue
    fi
    labels=$(labels_for "$here/$name.patch")
    if ! build "$tree" "$work/$name" "$log" "$labels"; then
        echo "MISSED  $name  (does not build: see $log)"
        missed=$((missed + 1))
        continue
    fi
    run_tests "$work/$name" "$log" "$labels"
    case $? in
    0)
        echo "MISSED  $name  (every test labelled ${labels% } passed; $((SECONDS - t0))s)"
        missed=$((missed + 1)) ;;
    1)
        echo "caught  $name  (failed tests: $failed; $((SECONDS - t0))s)"
        caught=$((caught + 1)) ;;
    *)
        echo "MISSED  $name  ($failed: see $log)"
        missed=$((missed + 1)) ;;
    esac
    rm -rf "${work:?}/$name" "$tree"
done

echo "total time: $((SECONDS - start))s"
if [ "$missed" -eq 0 ] && [ "$keep" -eq 0 ]; then
    rm -rf "$work"
elif [ "$missed" -ne 0 ]; then
    echo "logs: $work"
fi
echo "$caught passed, $missed failed"
[ "$missed" -eq 0 ]
