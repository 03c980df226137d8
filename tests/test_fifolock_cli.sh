#!/usr/bin/env bash
# The fifolock command line (tools/fifolock.c) on the shared-memory lock:
# exit statuses, FIFOLOCK_TOKEN, modes, --timeout, a dead holder, --etcd in
# a build without it, the upgradable mode.
# usage: test_fifolock_cli.sh PATH-TO-fifolock [etcd] ("etcd": built with --etcd)
set -u
tool=$1 built_etcd=${2-}
dir=$(mktemp -d "${TMPDIR:-/tmp}/fifolock-cli.XXXXXX")
lock=$dir/lock
passed=0 failed=0
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT

check() { # check NAME EXPECTED ACTUAL
    if [ "$2" = "$3" ]; then
        passed=$((passed + 1))
    else
        echo "FAIL $1: expected '$2', got '$3'" >&2
        failed=$((failed + 1))
    fi
}

# Waits until FILE exists (up to 5 s).
wait_for() {
    for _ in $(seq 500); do [ -e "$1" ] && return 0; sleep 0.01; done
    return 1
}

"$tool" "$lock" true
check "status of a command that succeeds" 0 $?
"$tool" "$lock" sh -c 'exit 7'
check "status of a command that fails" 7 $?
"$tool" "$lock" sh -c 'kill -TERM $$'
check "status of a command killed by a signal" 143 $?
"$tool" "$lock" /nonexistent/command 2>/dev/null
check "status of a command not found" 127 $?
"$tool" --mode nonsense "$lock" true 2>/dev/null
check "unknown mode is a usage error" 2 $?
"$tool" --mode semaphore:0 "$lock" true 2>/dev/null
check "semaphore of 0 is a usage error" 2 $?
"$tool" --timeout -1 "$lock" true 2>/dev/null
check "negative timeout is a usage error" 2 $?
"$tool" "$lock" 2>/dev/null
check "missing command is a usage error" 2 $?
if [ "$built_etcd" != etcd ]; then
    out=$("$tool" --etcd http://127.0.0.1:2379 "$lock" true 2>&1)
    check "--etcd without etcd support exits 2" 2 $?
    check "--etcd without etcd support says so" "fifolock: this build has no etcd support" "$out"
fi
"$tool" --user alice "$lock" true 2>/dev/null
check "--user without --etcd is a usage error" 2 $?
printf 'not a lock' >"$dir/foreign"
"$tool" "$dir/foreign" true 2>/dev/null
check "a foreign file is refused" 2 $?

t1=$("$tool" "$lock" sh -c 'echo $FIFOLOCK_TOKEN')
t2=$("$tool" --mode write "$lock" sh -c 'echo $FIFOLOCK_TOKEN')
check "FIFOLOCK_TOKEN grows with grant order" 1 $((t2 > t1))

# A writer holds: a reader times out with status 1 and a message.
"$tool" --mode write "$lock" sh -c "touch $dir/w1; sleep 3" &
holder=$!
wait_for "$dir/w1"
err=$("$tool" --mode read --timeout 0.2 "$lock" true 2>&1)
check "timeout exits 1" 1 $?
check "timeout says so" "fifolock: timed out waiting for $lock" "$err"
"$tool" --mode read --timeout 0 "$lock" true 2>/dev/null
check "--timeout 0 does not wait" 1 $?
kill "$holder" # SIGTERM: passed to the command; the lock is given back cleanly
wait "$holder"
check "SIGTERM reaches the command, whose status is returned" 143 $?
out=$("$tool" --timeout 1 "$lock" sh -c 'echo "${FIFOLOCK_OWNER_DEAD-unset}"')
check "after SIGTERM the lock was released, not lost" "unset" "$out"

# Two readers share; a semaphore of 2 takes two.
"$tool" --mode read "$lock" sh -c "echo \$\$ >$dir/r1pid; touch $dir/r1; exec sleep 3" &
holder=$!
wait_for "$dir/r1"
"$tool" --mode read --timeout 1 "$lock" true
check "two readers share" 0 $?
"$tool" --mode write --timeout 0.1 "$lock" true 2>/dev/null
check "a writer waits for the reader" 1 $?
kill -9 "$holder" "$(cat "$dir/r1pid")" # the tool and its command
wait "$holder" 2>/dev/null

# The reader above was killed (SIGKILL) holding: it wrote nothing, so
# nobody is told.
out=$("$tool" --mode write --timeout 2 "$lock" sh -c 'echo "${FIFOLOCK_OWNER_DEAD-unset}"' 2>/dev/null)
check "a dead reader leaves nothing to repair" "unset" "$out"

# A writer killed holding: every holder after it is told (three readers
# granted together, a writer that fails), until a writer's command told of
# it exits 0 (it repaired).
"$tool" --mode write "$lock" sh -c "echo \$\$ >$dir/w2pid; touch $dir/w2; exec sleep 3" &
holder=$!
wait_for "$dir/w2"
for i in 1 2 3; do
    "$tool" --mode read --timeout 3 "$lock" sh -c "echo \"\${FIFOLOCK_OWNER_DEAD-unset}\" >$dir/told$i; sleep 0.3" 2>/dev/null &
done
sleep 0.2
kill -9 "$holder" "$(cat "$dir/w2pid")"
wait
for i in 1 2 3; do
    check "reader $i granted after a dead writer is told" "$holder:write" "$(cat "$dir/told$i")"
done
out=$("$tool" --mode write --timeout 2 "$lock" sh -c 'echo "${FIFOLOCK_OWNER_DEAD-unset}"; exit 1' 2>/dev/null)
check "a writer that fails is told, and repairs nothing" "$holder:write" "$out"
out=$("$tool" --mode write --timeout 2 "$lock" sh -c 'echo "${FIFOLOCK_OWNER_DEAD-unset}"' 2>/dev/null)
check "a writer that exits 0 is told, and repairs" "$holder:write" "$out"
out=$("$tool" --mode write --timeout 2 "$lock" sh -c 'echo "${FIFOLOCK_OWNER_DEAD-unset}"')
check "nobody is told after the repair" "unset" "$out"

# FIFO: a writer waits behind a reader; a later reader queues behind it.
"$tool" --mode read "$lock" sh -c "touch $dir/r2; sleep 0.5" &
wait_for "$dir/r2"
("$tool" --mode write "$lock" sh -c "echo w >>$dir/order") &
sleep 0.2
("$tool" --mode read "$lock" sh -c "echo r >>$dir/order") &
wait
check "a later reader does not overtake a waiting writer" "wr" "$(tr -d '\n' <"$dir/order")"

# Upgradable: shares with readers, excludes writers and other upgradables.
"$tool" --mode upgradable "$lock" sh -c "touch $dir/u0; while [ ! -e $dir/u-go ]; do sleep 0.02; done" &
holder=$!
wait_for "$dir/u0"
"$tool" --mode read --timeout 2 "$lock" true
check "a reader shares with an upgradable holder" 0 $?
"$tool" --mode upgradable --timeout 0.2 "$lock" true 2>/dev/null
check "a second upgradable waits" 1 $?
"$tool" --mode write --timeout 0.2 "$lock" true 2>/dev/null
check "a writer waits for an upgradable holder" 1 $?
touch "$dir/u-go"
wait "$holder"
check "the upgradable holder's status" 0 $?
"$tool" --mode read "$lock" sh -c "touch $dir/u1; while [ ! -e $dir/u-go2 ]; do sleep 0.02; done" &
holder=$!
wait_for "$dir/u1"
"$tool" --mode upgradable --timeout 2 "$lock" true
check "an upgradable joins a reader" 0 $?
touch "$dir/u-go2"
wait "$holder"

# Each family is a family of its own, whatever the tools passed: a
# semaphore held does not block mutex, read or write.
"$tool" --mode semaphore:2 "$lock" sh -c "touch $dir/s0; while [ ! -e $dir/s-go ]; do sleep 0.02; done" &
holder=$!
wait_for "$dir/s0"
for m in mutex read write; do
    "$tool" --mode $m --timeout 1 "$lock" true 2>/dev/null
    check "a semaphore held does not block $m" 0 $?
done
"$tool" --mode semaphore:2 --timeout 1 "$lock" true
check "a second holder of semaphore:2" 0 $?
touch "$dir/s-go"
wait "$holder"

# The tool killed (SIGKILL) while its command runs: the command keeps the
# hold until it exits, through the descriptor it inherited; nobody else is
# granted meanwhile. Then the next holder is told of the death.
"$tool" --mode write "$lock" sh -c "touch $dir/k0; while [ ! -e $dir/k-go ]; do sleep 0.02; done; touch $dir/k1" &
holder=$!
wait_for "$dir/k0"
kill -9 "$holder"
wait "$holder" 2>/dev/null
"$tool" --mode read --timeout 0.3 "$lock" true 2>/dev/null
check "a killed tool's command keeps the hold" 1 $?
touch "$dir/k-go"
wait_for "$dir/k1"
out=$("$tool" --mode read --timeout 2 "$lock" sh -c 'echo "${FIFOLOCK_OWNER_DEAD-unset}"' 2>/dev/null)
check "the hold ends with the command, and its death is told" "$holder:write" "$out"

# Room: hundreds of commands on one file at once (the default is 4096
# handles); a file made with --capacity 2 says it is full, and how full.
pids=()
for i in $(seq 300); do
    "$tool" --mode read --timeout 20 "$dir/many" sleep 0.5 2>>"$dir/many-err" &
    pids+=($!)
done
bad=0
for pid in "${pids[@]}"; do wait "$pid" || bad=$((bad + 1)); done
check "300 commands at once on one file" "0 " "$bad $(grep -v '^$' "$dir/many-err" | head -1)"
"$tool" --capacity 2 "$dir/small" sh -c "touch $dir/c0; sleep 1" &
"$tool" --mode read --capacity 2 "$dir/small" sh -c "touch $dir/c1; sleep 1" 2>/dev/null &
wait_for "$dir/c0" && wait_for "$dir/c1"
err=$("$tool" --mode read "$dir/small" true 2>&1)
check "a full lock file exits 2" 2 $?
check "a full lock file says so" "fifolock: cannot open lock file $dir/small: lock file full: 2 handles" "$err"
wait
"$tool" --capacity 0 "$dir/x" true 2>/dev/null
check "--capacity 0 is a usage error" 2 $?

# Files: an existing empty file or a symbolic link is refused, not made a
# lock file; --file-mode sets a new file's mode.
: >"$dir/empty"
err=$("$tool" "$dir/empty" true 2>&1)
check "an empty file is refused" 2 $?
check "an empty file is refused, and says why" "fifolock: cannot open lock file $dir/empty: $dir/empty is not a fifolock lock file (an empty file: remove it, and a lock file is made)" "$err"
check "an empty file is left as it was" 0 "$(stat -c %s "$dir/empty")"
ln -s "$lock" "$dir/link"
"$tool" "$dir/link" true 2>/dev/null
check "a symbolic link is refused" 2 $?
(umask 022; "$tool" --file-mode 0600 "$dir/private" true)
check "--file-mode 0600" 600 "$(stat -c %a "$dir/private")"
(umask 022; "$tool" "$dir/public" true)
check "the default mode is 0666 less the umask" 644 "$(stat -c %a "$dir/public")"

# A user who may only read the lock file (0644) can delay nobody: its
# flock(LOCK_SH) or flock(LOCK_EX) does not block a --timeout 1, and its read
# locks on the liveness bytes make new opens fail at once, saying why.
reader=fifolock-ro
if [ "$(id -u)" != 0 ]; then
    echo "skipped the read-only user's checks: they need root (useradd, runuser)"
elif ! id "$reader" >/dev/null 2>&1 && ! useradd -M -r -s /bin/sh "$reader" 2>/dev/null; then
    echo "skipped the read-only user's checks: useradd $reader failed"
else
    chmod 755 "$dir"
    mkdir -m 1777 "$dir/ro" # where the reader leaves its markers
    as_reader() { runuser -u "$reader" -- "$@"; }
    as_reader flock -s "$dir/public" -c "touch $dir/ro/fs; sleep 1.5" &
    wait_for "$dir/ro/fs"
    start=$(date +%s%N)
    "$tool" --timeout 1 "$dir/public" true
    rc=$?
    elapsed=$((($(date +%s%N) - start) / 1000000))
    check "a reader's flock -s blocks nobody" 0 $rc
    check "... at once, ms < 1000" 1 $((elapsed < 1000))
    wait
    as_reader flock -x "$dir/public" -c "touch $dir/ro/fx; sleep 1.5" 2>/dev/null &
    wait_for "$dir/ro/fx"
    "$tool" --timeout 1 "$dir/public" true
    check "a reader's flock -x blocks nobody" 0 $?
    wait
    if command -v python3 >/dev/null; then
        # Read locks on every liveness byte (2^40 on): POSIX locks, as a
        # reader can take them; open then fails at once and says why.
        as_reader python3 -c "
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, 0, 1 << 40)
open(sys.argv[2], 'w').close()
time.sleep(1.5)" "$dir/public" "$dir/ro/rl" &
        wait_for "$dir/ro/rl"
        err=$("$tool" --timeout 1 "$dir/public" true 2>&1)
        check "a reader's byte locks: open fails" 2 $?
        check_grep() { case "$3" in *"$2"*) passed=$((passed + 1)) ;; *) echo "FAIL $1: '$3' lacks '$2'" >&2; failed=$((failed + 1)) ;; esac; }
        check_grep "... and says a reader holds the bytes" "read-locked by a process that may only read it" "$err"
        wait
        "$tool" --timeout 1 "$dir/public" true
        check "once the reader is gone, the file is usable" 0 $?
    else
        echo "skipped the reader's byte locks: no python3"
    fi
    as_reader cat "$dir/private" >/dev/null 2>&1
    check "--file-mode 0600 keeps the reader out" 1 $?
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
