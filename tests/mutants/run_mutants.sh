#!/usr/bin/env bash
# The mutation check: proves the tests catch real bugs.
#
# Each mutant is a deliberate bug, kept beside this script as NAME.patch (a
# diff against src/; the library's sources hold none of them). For each one
# this copies the tree, applies the patch to the copy, builds the library and
# the tests there, runs the C tests (not valgrind, Python,
# install or example tests; every test capped at CTEST_TIMEOUT seconds so a
# deadlock fails fast), and prints
#
#     caught  NAME  (failed tests: ...)      some test failed: good
#     MISSED  NAME                           every test passed: the tests are blind to it
#     MISSED  NAME  (does not apply ...)     the patch no longer fits src/
#     MISSED  NAME  (does not build ...)     the mutant itself is broken
#
# then "N passed, N failed" (passed = caught). An unmutated baseline is built
# and tested first and must pass, or nothing is checked. Exit status: 0 when
# every mutant is caught.
#
# A patch that no longer applies (src/ changed under it) fails the check:
# refresh it (patch -p1 --fuzz=3 on a copy, fix what was rejected, diff again).
#
# usage: tests/mutants/run_mutants.sh [NAME...]        (default: all of them)
# env:   CC (default cc)  JOBS (default nproc)  CTEST_TIMEOUT (default 30)
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
cap=${CTEST_TIMEOUT:-30}
# not `mutant_patches_apply` either: in a mutant's tree its own patch no
# longer applies, so it would fail for every mutant and catch them all
exclude='valgrind|python|install|example|bench|mutant|model'
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

# build SRC DIR LOG [cmake args...]: configure and build; 0 on success.
build() {
    local srcdir=$1 dir=$2 log=$3
    shift 3
    rm -rf "$dir"
    cmake -S "$srcdir" -B "$dir" -DFIFOLOCK_DEBUG=OFF -DFIFOLOCK_EXAMPLES=OFF \
        -DFIFOLOCK_BENCH=OFF -DFIFOLOCK_VALGRIND=OFF -DFIFOLOCK_PYTHON_TESTS=OFF \
        -DFIFOLOCK_MUTATION_CHECK=OFF -DFIFOLOCK_CXX_TESTS=OFF -DFIFOLOCK_SANITIZE="${FIFOLOCK_SANITIZE:-}" "$@" >"$log" 2>&1 &&
        cmake --build "$dir" -j "$jobs" >>"$log" 2>&1
}

# cap_timeouts DIR: no test may run longer than $cap seconds. A TIMEOUT
# property overrides `ctest --timeout`, so the generated files are edited.
cap_timeouts() {
    find "$1" -name CTestTestfile.cmake -exec \
        perl -pi -e 's/TIMEOUT "(\d+(?:\.\d+)?)"/"TIMEOUT \"" . ($1 > '"$cap"' ? '"$cap"' : $1) . "\""/ge' {} +
}

# run_tests DIR LOG: runs the tests; sets $failed to "name, name [reason]".
# Returns 0 when all pass, 1 when some fail, 2 when no test ran.
run_tests() {
    local dir=$1 log=$2 rc
    cap_timeouts "$dir"
    (cd "$dir" && ctest -j "$jobs" --timeout "$cap" -E "$exclude" -LE "$exclude" \
        --output-on-failure) >>"$log" 2>&1
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

echo "mutation check: ${#mutants[@]} mutants, builds in $work"
if ! build "$root" "$work/baseline" "$work/baseline.log"; then
    echo "baseline does not build: see $work/baseline.log"
    echo "0 passed, 1 failed"
    exit 1
fi
if ! run_tests "$work/baseline" "$work/baseline.log"; then
    echo "baseline fails without any mutant (${failed}): see $work/baseline.log"
    echo "0 passed, 1 failed"
    exit 1
fi
echo "baseline  passes ($(grep -Eo '[0-9]+ tests? failed out of [0-9]+' "$work/baseline.log" | tail -n 1))"
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
    if ! build "$tree" "$work/$name" "$log"; then
        echo "MISSED  $name  (does not build: see $log)"
        missed=$((missed + 1))
        continue
    fi
    run_tests "$work/$name" "$log"
    case $? in
    0)
        echo "MISSED  $name  (every test passed; $((SECONDS - t0))s)"
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
