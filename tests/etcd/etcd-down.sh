#!/usr/bin/env bash
# Stops what etcd-up.sh DIR started, and removes DIR.
set -u
dir=$1
for f in "$dir"/member*.pid "$dir"/watchdog.pid; do
    [ -e "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null
done
for f in "$dir"/member*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    for ((w = 0; w < 100; w++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.02; done
done
rm -rf "$dir"
