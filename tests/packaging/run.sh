#!/usr/bin/env bash
# The Python package installs the three ways the README gives, on a copy of
# the tree, offline: the build requirements (setuptools, wheel) come from
# Debian's wheel files in /usr/share/python-wheels (python3-setuptools-whl,
# python3-wheel-whl), standing in for the package index.
#
#   1. pip wheel / pip install .         isolated build (setuptools' backend)
#   2. pip install --no-build-isolation . into a venv that has setuptools, wheel
#   3. pip install --no-build-isolation -e .  editable, imported from elsewhere
#
# Each installed package is imported from another directory and runs a lock.
# The isolated builds run on Debian's own /usr/bin/python3 where there is
# one: Debian's setuptools wheel is patched for Debian's Python (elsewhere it
# asks for an install_layout option that only Debian's distutils has).
# Exit 77 (skipped) when the wheel files or venv support are missing.
# usage: run.sh PYTHON
set -u
py=${1:-python3}
iso_py=$py
if [ -x /usr/bin/python3 ] && /usr/bin/python3 -m pip --version >/dev/null 2>&1; then
    iso_py=/usr/bin/python3
fi
root=$(cd "$(dirname "$0")/../.." && pwd)
wheels=/usr/share/python-wheels
if ! ls "$wheels"/setuptools-*.whl "$wheels"/wheel-*.whl >/dev/null 2>&1; then
    echo "skipped: no setuptools and wheel wheels in $wheels (apt-get install python3-setuptools-whl python3-wheel-whl)"
    exit 77
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/fifolock-packaging.XXXXXX")
trap 'rm -rf "$work"' EXIT
src=$work/src
mkdir -p "$src"
(cd "$root" && tar -cf - --exclude=./.git --exclude='./build*' --exclude=./python/build .) |
    (cd "$src" && tar -xf -)
find "$src/python" -name '*.so' -delete
offline=(--no-index --find-links "$wheels" --disable-pip-version-check -q)
passed=0 failed=0

check() { # check NAME PYTHON [PYTHONPATH]: import from elsewhere and use a lock
    local name=$1 python=$2 path=${3:-} out
    if out=$(cd / && PYTHONPATH=$path "$python" - 2>&1 <<'PY'
import asyncio, fifolock
from fifolock import FifoLock, Write, Read
async def main():
    lock = FifoLock()
    async with lock(Write):
        assert lock.holds[Write] == 1
    async with lock(Read):
        pass
asyncio.run(main())
print(fifolock.__file__)
PY
    ); then
        echo "ok      $name: $(tail -n 1 <<<"$out")"
        passed=$((passed + 1))
    else
        echo "FAILED  $name: $out"
        failed=$((failed + 1))
    fi
}

step() { # step NAME COMMAND...: run, count a failure with its output
    local name=$1 log=$work/log
    shift
    if ! "$@" >"$log" 2>&1; then
        echo "FAILED  $name:"
        tail -n 20 "$log"
        failed=$((failed + 1))
        return 1
    fi
}

# 1. isolated builds
if step "pip wheel" "$iso_py" -m pip wheel "${offline[@]}" --no-deps -w "$work/wheels" "$src"; then
    if ls "$work"/wheels/fifolock_c-*.whl >/dev/null 2>&1; then
        echo "ok      pip wheel: $(basename "$work"/wheels/fifolock_c-*.whl)"
        passed=$((passed + 1))
    else
        echo "FAILED  pip wheel: no fifolock_c wheel in $work/wheels"
        failed=$((failed + 1))
    fi
fi
step "pip install ." "$iso_py" -m pip install "${offline[@]}" --target "$work/site" "$src" &&
    check "pip install ." "$iso_py" "$work/site"

# 2 and 3. a venv with the build requirements, as a user's offline machine has them
if ! "$py" -m venv "$work/venv" >"$work/log" 2>&1; then
    echo "skipped: $py -m venv does not work here"
    cat "$work/log"
    exit 77
fi
vpy=$work/venv/bin/python
step "venv" "$vpy" -m pip install "${offline[@]}" setuptools wheel &&
    step "pip install --no-build-isolation ." "$vpy" -m pip install -q --no-build-isolation "$src" &&
    check "pip install --no-build-isolation ." "$vpy"
step "uninstall" "$vpy" -m pip uninstall -q -y fifolock-c
if step "pip install -e ." "$vpy" -m pip install -q --no-build-isolation -e "$src"; then
    check "pip install -e ." "$vpy"
    where=$(cd / && "$vpy" -c 'import fifolock; print(fifolock.__file__)' 2>&1)
    case $where in
    "$src"/python/fifolock/*) echo "ok      editable: imports the source tree"; passed=$((passed + 1)) ;;
    *) echo "FAILED  editable: imports $where, not $src/python/fifolock"; failed=$((failed + 1)) ;;
    esac
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
