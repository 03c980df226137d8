#!/usr/bin/env bash
# Runs a program against a real single-member etcd on loopback: starts it
# (etcd-up.sh, beside this script), runs PROGRAM ARG... ENDPOINTS, stops it.
#   with_etcd.sh PROGRAM [ARG...]
# Exit status: the program's, 77 when etcd is not installed (the test skips).
set -u
scripts=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d "${TMPDIR:-/tmp}/fifolock-with-etcd.XXXXXX")
cleanup() {
    bash "$scripts/etcd-down.sh" "$dir/etcd"
    rm -rf "$dir"
}
ETCD_OWNER_PID=$$ bash "$scripts/etcd-up.sh" "$dir/etcd"
rc=$?
if [ $rc = 77 ]; then
    rm -rf "$dir"
    echo "etcd is not installed: skipped"
    exit 77
fi
[ $rc = 0 ] || { echo "could not start etcd" >&2; rm -rf "$dir"; exit 1; }
trap cleanup EXIT
"$@" "$(cat "$dir/etcd/endpoints")"
