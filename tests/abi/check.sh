#!/usr/bin/env bash
# The ABI check: compares a built library with the ABI of the last release,
# kept in abi/ as abidw's XML (Debian's abigail-tools), and fails on any
# change a program built against that release could notice: a removed or
# changed function or variable, a type whose layout or meaning changed.
# Added functions and variables are fine within a major version, and are
# counted. Types defined outside the public headers are not compared
# (abi/private-types.suppr).
#
#   check.sh LIBRARY BASELINE.abi INCLUDE_DIR
#
# A new release: build it and write its baseline with
#   abidw --headers-dir include --out-file abi/libNAME-X.Y.Z.abi libNAME.so.X.Y.Z
# Exit status: 0, 1 (an incompatible change, or abidiff failed), 77 (no abidiff).
set -u
lib=$1 baseline=$2 include=$3
command -v abidiff >/dev/null 2>&1 || { echo "skipped: abidiff not installed (apt-get install abigail-tools)"; exit 77; }
# The library as abidw sees it, without symbol versions: release 1.0 had
# none, and abidiff (2.2) compares no types between a symbol with a version
# and the same symbol without.
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
abidw --headers-dir "$include" "$lib" 2>&1 | sed -E "s/@@?FIFOLOCK_[0-9.]+//g; s/ version='FIFOLOCK_[0-9.]+'( is-default-version='(yes|no)')?//g" >"$tmp" ||
    { echo "FAIL: abidw could not read $lib"; exit 1; }
suppr=(--suppressions "$(dirname "$baseline")/private-types.suppr")
# A library's own allowances, with their reasons: abi/NAME-X.Y.Z.suppr.
[ -f "${baseline%.abi}.suppr" ] && suppr+=(--suppressions "${baseline%.abi}.suppr")
report=$(abidiff "${suppr[@]}" --no-added-syms "$baseline" "$tmp" 2>&1)
rc=$?
added=$(abidiff "${suppr[@]}" "$baseline" "$tmp" 2>&1 | grep -cE "^ +\[A\]")
# abidiff's status is a bit field: 1 error, 2 usage, 4 an ABI change, 8 an
# incompatible one.
if ((rc & 3)); then
    echo "$report"
    echo "FAIL: abidiff could not compare $lib with $baseline (status $rc)"
    exit 1
fi
if ((rc & 12)); then
    echo "$report"
    echo "FAIL: $(basename "$lib") changed the ABI of $(basename "$baseline" .abi)"
    exit 1
fi
echo "ok: $(basename "$lib") keeps the ABI of $(basename "$baseline" .abi) ($added added)"
