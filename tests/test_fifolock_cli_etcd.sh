#!/usr/bin/env bash
# The fifolock command line with --etcd, against a real single-member etcd on
# loopback (tests/etcd/etcd-up.sh): exclusion and FIFO order of several tool
# processes, FIFOLOCK_TOKEN, exit statuses, --timeout (exit 1, no entry left),
# SIGINT and SIGTERM while waiting (exit 130, 143, no entry left), an
# unreachable endpoint, a lock lost while the command runs (its key
# deleted, its lease revoked: the command gets SIGTERM, the tool exits 3 and
# says why), etcd paused longer than the TTL (a waiter queues again and
# runs its command; a holder is told, exit 3), the upgradable mode, a clear
# message for each refusal (wrong password, certificate, CA, scheme, --user
# to an etcd without auth), and --user with auth and --cacert/--cert/
# --key with TLS (about 25 s in all).
# usage: test_fifolock_cli_etcd.sh PATH-TO-fifolock ETCD-SCRIPTS-DIR
# Exit status 77 (skipped) when etcd is not installed.
set -u
tool=$1 scripts=$2
dir=$(mktemp -d "${TMPDIR:-/tmp}/fifolock-cli-etcd.XXXXXX")
passed=0 failed=0
cleanup() {
    kill $(jobs -p) 2>/dev/null
    [ -d "$dir/etcd" ] && bash "$scripts/etcd-down.sh" "$dir/etcd"
    [ -d "$dir/auth" ] && bash "$scripts/etcd-down.sh" "$dir/auth"
    [ -d "$dir/tls" ] && bash "$scripts/etcd-down.sh" "$dir/tls"
    rm -rf "$dir"
}
trap cleanup EXIT

bash "$scripts/etcd-up.sh" "$dir/etcd"
rc=$?
if [ $rc = 77 ]; then
    echo "etcd is not installed: skipped"
    exit 77
fi
[ $rc = 0 ] || { echo "could not start etcd" >&2; exit 1; }
ep=$(cat "$dir/etcd/endpoints")
export ETCDCTL_API=3
ctl() { etcdctl --endpoints "$ep" --dial-timeout 3s "$@"; }

check() { # check NAME EXPECTED ACTUAL
    if [ "$2" = "$3" ]; then
        passed=$((passed + 1))
    else
        echo "FAIL $1: expected '$2', got '$3'" >&2
        failed=$((failed + 1))
    fi
}
check_match() { # check_match NAME PATTERN ACTUAL (a grep -E pattern)
    if printf '%s' "$3" | grep -Eq -- "$2"; then
        passed=$((passed + 1))
    else
        echo "FAIL $1: expected to match '$2', got '$3'" >&2
        failed=$((failed + 1))
    fi
}
# Waits until FILE exists (up to 10 s).
wait_for() {
    for _ in $(seq 1000); do [ -e "$1" ] && return 0; sleep 0.01; done
    echo "gave up waiting for $1" >&2
    return 1
}
# The number of entries in the queue of lock $1.
entries() { ctl get --prefix "fifolock/$1/" --keys-only | grep -c .; }
# Waits until lock $1 has $2 entries (up to 10 s).
wait_entries() {
    for _ in $(seq 200); do [ "$(entries "$1")" = "$2" ] && return 0; sleep 0.05; done
    echo "FAIL gave up waiting for $2 entries of $1 (has $(entries "$1"))" >&2
    failed=$((failed + 1)) # the checks that follow would prove nothing
    return 1
}
fl() { "$tool" --etcd "$ep" "$@"; }

# ---- exit statuses, the token, usage errors ----
fl L true
check "status of a command that succeeds" 0 $?
fl L sh -c 'exit 7'
check "status of a command that fails is passed through" 7 $?
fl L sh -c 'kill -TERM $$'
check "status of a command killed by a signal" 143 $?
fl L /nonexistent/command 2>/dev/null
check "status of a command not found" 127 $?
fl --mode nonsense L true 2>/dev/null
check "unknown mode is a usage error" 2 $?
fl --mode semaphore:0 L true 2>/dev/null
check "semaphore of 0 is a usage error" 2 $?
"$tool" --cacert /dev/null "$dir/f" true 2>/dev/null
check "--cacert without --etcd is a usage error" 2 $?
t1=$(fl L sh -c 'echo $FIFOLOCK_TOKEN')
t2=$(fl --mode write L sh -c 'echo $FIFOLOCK_TOKEN')
t3=$(FIFOLOCK_TOKEN=1 fl --mode read L sh -c 'echo $FIFOLOCK_TOKEN')
check "FIFOLOCK_TOKEN grows with grant order" 1 $((t1 > 0 && t2 > t1 && t3 > t2))
check "nothing is left in etcd after a run" 0 "$(entries L)"

# ---- exclusion and FIFO of several processes ----
# A holder keeps the lock until told; five tool processes queue one after
# another; each appends "i<" and, after a pause, "i>" to a log under the
# lock. Exclusion: no two overlap; FIFO: they run in the order they queued.
fl Q sh -c "touch $dir/q0; while [ ! -e $dir/go ]; do sleep 0.02; done" &
wait_for "$dir/q0"
pids=()
for i in 1 2 3 4 5; do
    fl Q sh -c "echo \$FIFOLOCK_TOKEN >>$dir/tokens; printf '$i<' >>$dir/log; sleep 0.1; printf '$i>' >>$dir/log" &
    pids+=($!)
    wait_entries Q $((i + 1))
done
touch "$dir/go"
st=0
for p in "${pids[@]}"; do wait "$p" || st=$?; done
wait
check "all queued processes succeed" 0 "$st"
check "exclusion and FIFO order of five processes" "1<1>2<2>3<3>4<4>5<5>" "$(cat "$dir/log")"
check "tokens grow in grant order" "$(sort -n "$dir/tokens" | tr '\n' ' ')" "$(tr '\n' ' ' <"$dir/tokens")"
check "nothing is left in etcd after the queue drained" 0 "$(entries Q)"

# ---- --timeout ----
fl T sh -c "touch $dir/t0; while [ ! -e $dir/t-go ]; do sleep 0.02; done" &
holder=$!
wait_for "$dir/t0"
err=$(fl --timeout 0.5 T true 2>&1)
check "timeout exits 1" 1 $?
check "timeout says so" "fifolock: timed out waiting for T" "$err"
check "a timed-out request leaves no entry" 1 "$(entries T)"
err=$(fl --timeout 0 T true 2>&1)
check "--timeout 0 does not wait" 1 $?
check "--timeout 0 leaves no entry" 1 "$(entries T)"
touch "$dir/t-go"
wait "$holder"
check "the holder's status after others timed out" 0 $?

# ---- SIGINT, SIGTERM while waiting: withdrawn at once, exit 128 + N ----
# Waiters with a 60 s TTL: an entry left behind would hold up the one queued
# behind it for a minute. A script's background jobs ignore SIGINT (and the
# tool keeps an ignored signal ignored): env gives it back its default.
fl W sh -c "touch $dir/w0; while [ ! -e $dir/w-go ]; do sleep 0.02; done" &
holder=$!
wait_for "$dir/w0"
env --default-signal=INT "$tool" --etcd "$ep" --ttl 60 W true &
first=$!
wait_entries W 2
fl --ttl 60 --timeout 20 W sh -c "touch $dir/w-second" &
second=$!
wait_entries W 3
sleep 0.3 # both watches are open
kill -INT "$first"
wait "$first"
check "SIGINT while waiting exits 130" 130 $?
check "SIGINT while waiting leaves no entry" 2 "$(entries W)"
"$tool" --etcd "$ep" --ttl 60 W true &
third=$!
wait_entries W 3
sleep 0.3
kill -TERM "$third"
wait "$third"
check "SIGTERM while waiting exits 143" 143 $?
check "SIGTERM while waiting leaves no entry" 2 "$(entries W)"
start=$(date +%s%N)
touch "$dir/w-go"
wait "$holder"
wait "$second"
rc=$?
elapsed=$((($(date +%s%N) - start) / 1000000))
check "the one queued behind the interrupted waiters gets the lock" 0 $rc
check "... well before the TTL, ms < 3000" 1 $((elapsed < 3000))
check "nothing is left after the signals" 0 "$(entries W)"

# ---- an endpoint nobody serves ----
start=$(date +%s%N)
err=$("$tool" --etcd http://127.0.0.1:9 --timeout 1 T true 2>&1)
rc=$?
elapsed=$((($(date +%s%N) - start) / 1000000))
check "an unreachable endpoint exits 2" 2 $rc
check_match "an unreachable endpoint is named" "^fifolock: cannot reach etcd at http://127.0.0.1:9: " "$err"
check "an unreachable endpoint fails within the timeout (+1 s), ms < 2000" 1 $((elapsed < 2000))

# ---- the lock lost while the command runs ----
# The command records SIGTERM and exits 9; the tool says why and exits 3.
lost_cmd="trap 'touch $dir/term-\$N; exit 9' TERM; touch $dir/held-\$N; sleep 20 & wait"
N=del fl X sh -c "export N=del; $lost_cmd" 2>"$dir/err-del" &
holder=$!
wait_for "$dir/held-del"
ctl del --prefix fifolock/X/ >/dev/null
wait "$holder"
check "a deleted key: the tool exits 3" 3 $?
check "a deleted key: the command got SIGTERM" 1 "$([ -e "$dir/term-del" ] && echo 1)"
check_match "a deleted key: the tool says why" "lost the lock X while the command ran: its entry is gone" "$(cat "$dir/err-del")"

fl X sh -c "export N=revoke; $lost_cmd" 2>"$dir/err-revoke" &
holder=$!
wait_for "$dir/held-revoke"
key=$(ctl get --prefix fifolock/X/ --keys-only | grep .)
lease=${key##*/}
lease=${lease%%-*}
ctl lease revoke "$lease" >/dev/null
wait "$holder"
check "a revoked lease: the tool exits 3" 3 $?
check "a revoked lease: the command got SIGTERM" 1 "$([ -e "$dir/term-revoke" ] && echo 1)"
check_match "a revoked lease: the tool says why" "lost the lock X while the command ran" "$(cat "$dir/err-revoke")"
fl --timeout 5 X true
check "the lock is free after a loss" 0 $?

# ---- the tool killed while its command runs ----
# Nobody keeps the lease alive after the tool's SIGKILL: the command must die
# with the tool (at once, not after the TTL), so that no second holder runs.
"$tool" --etcd "$ep" K sh -c "echo \$\$ >$dir/k-pid; touch $dir/k0; exec sleep 20" &
holder=$!
wait_for "$dir/k0"
cmd=$(cat "$dir/k-pid")
kill -9 "$holder"
wait "$holder" 2>/dev/null
# Gone, or a zombie nobody reaped yet (state Z after the command's name).
gone() { ! grep -q '^[0-9]* ([^)]*) [^Z]' "/proc/$1/stat" 2>/dev/null; }
for _ in $(seq 100); do gone "$cmd" && break; sleep 0.01; done
check "a killed tool's command dies with it" 1 "$(gone "$cmd" && echo 1)"

# ---- etcd away longer than a TTL ----
# etcd paused 3.5 s. A waiter with --ttl 2 and time left on --timeout held
# nothing: its lease runs out, it queues again and runs its command once the
# holder (a long lease) is done, exit 0 (it used to exit 2, "the lock was
# lost"). A holder with --ttl 2 is told: SIGTERM to its command, exit 3.
fl --ttl 60 O sh -c "touch $dir/o0; while [ ! -e $dir/o-go ]; do sleep 0.02; done" &
holder=$!
wait_for "$dir/o0"
fl --ttl 2 --timeout 40 O sh -c "touch $dir/o-waiter" 2>"$dir/err-outage-w" &
waiter=$!
wait_entries O 2
N=outage fl --ttl 2 P sh -c "export N=outage; $lost_cmd" 2>"$dir/err-outage-h" &
short_holder=$!
wait_for "$dir/held-outage"
sleep 0.3 # the waiter's watch is open
etcd_pid=$(cat "$dir/etcd/member0.pid")
kill -STOP "$etcd_pid"
sleep 3.5
kill -CONT "$etcd_pid"
touch "$dir/o-go"
wait "$holder"
check "a holder with a long lease outlives the outage" 0 $?
wait "$waiter"
check "a waiter outlives an outage longer than its TTL" 0 $?
check "... and runs its command" 1 "$([ -e "$dir/o-waiter" ] && echo 1)"
[ -s "$dir/err-outage-w" ] && cat "$dir/err-outage-w" >&2
wait "$short_holder"
check "a holder whose lease ran out in the outage: the tool exits 3" 3 $?
check "... and its command got SIGTERM" 1 "$([ -e "$dir/term-outage" ] && echo 1)"
check "nothing is left after the outage" 0 "$(entries O)"

# ---- upgradable ----
fl --mode upgradable U sh -c "touch $dir/u0; while [ ! -e $dir/u-go ]; do sleep 0.02; done" &
holder=$!
wait_for "$dir/u0"
fl --mode read --timeout 5 U true
check "a reader shares with an upgradable holder" 0 $?
fl --mode upgradable --timeout 0.3 U true 2>/dev/null
check "a second upgradable waits" 1 $?
fl --mode write --timeout 0.3 U true 2>/dev/null
check "a writer waits for an upgradable holder" 1 $?
touch "$dir/u-go"
wait "$holder"
fl --mode read U sh -c "touch $dir/u1; while [ ! -e $dir/u-go2 ]; do sleep 0.02; done" &
holder=$!
wait_for "$dir/u1"
fl --mode upgradable --timeout 5 U true
check "an upgradable joins a reader" 0 $?
touch "$dir/u-go2"
wait "$holder"

# ---- clear refusals from the plain etcd ----
err=$("$tool" --etcd "$ep" --user alice:alicepw --timeout 10 A true 2>&1)
check "--user to an etcd without auth exits 2" 2 $?
check_match "--user to an etcd without auth says so" "^fifolock: cannot open a session on etcd at .*does not have authentication enabled" "$err"
err=$("$tool" --etcd "https://${ep#http://}" --timeout 10 A true 2>&1)
check "https:// to a plain etcd exits 2" 2 $?
check_match "https:// to a plain etcd says so" "speaks plain HTTP, not TLS" "$err"

# ---- auth (--user) and TLS (--cacert, --cert, --key), as etcdctl spells them ----
# Two more members (etcd-up.sh makes one or the other): users alice/alicepw
# (may use fifolock/), and a CA with a client certificate.
if bash "$scripts/etcd-up.sh" "$dir/auth" --auth 2>"$dir/auth.err"; then
    aep=$(cat "$dir/auth/endpoints")
    out=$(FIFOLOCK_ETCD_PASSWORD=alicepw "$tool" --etcd "$aep" --user alice --timeout 10 A sh -c 'echo $FIFOLOCK_TOKEN')
    check "--user NAME with FIFOLOCK_ETCD_PASSWORD" 0 $?
    check_match "--user: the command ran with a token" "^[0-9]+$" "$out"
    "$tool" --etcd "$aep" --user alice:alicepw --timeout 10 A true
    check "--user NAME:PASSWORD" 0 $?
    err=$(FIFOLOCK_ETCD_PASSWORD=wrong "$tool" --etcd "$aep" --user alice --timeout 10 A true 2>&1)
    check "a wrong password exits 2" 2 $?
    check_match "a wrong password is named" "^fifolock: cannot open a session on etcd at .*rejected the user name or password" "$err"
    err=$("$tool" --etcd "$aep" --timeout 10 A true 2>&1)
    check "no user on an etcd with auth exits 2" 2 $?
else
    echo "FAIL could not start an etcd with auth:" >&2
    cat "$dir/auth.err" >&2
    failed=$((failed + 1))
fi
if bash "$scripts/etcd-up.sh" "$dir/tls" --tls 2>"$dir/tls.err"; then
    tep=$(cat "$dir/tls/endpoints")
    t=$dir/tls/tls
    "$tool" --etcd "$tep" --cacert "$t/ca.pem" --cert "$t/client.pem" --key "$t/client-key.pem" --timeout 10 S true
    check "TLS with --cacert, --cert, --key" 0 $?
    err=$("$tool" --etcd "$tep" --cacert "$t/ca.pem" --timeout 10 S true 2>&1)
    check "TLS without a client certificate exits 2" 2 $?
    check_match "TLS without a client certificate says so" "^fifolock: cannot open a session on etcd at .*refused the client" "$err"
    err=$("$tool" --etcd "$tep" --cacert "$t/other-ca.pem" --cert "$t/client.pem" --key "$t/client-key.pem" --timeout 10 S true 2>&1)
    check "a server certificate from another CA exits 2" 2 $?
    check_match "a server certificate from another CA says so" "certificate is not trusted.*other-ca.pem" "$err"
    err=$("$tool" --etcd "http://${tep#https://}" --cacert "$t/ca.pem" --cert "$t/client.pem" --key "$t/client-key.pem" --timeout 10 S true 2>&1)
    check "http:// to a TLS etcd exits 2" 2 $?
    check_match "http:// to a TLS etcd says so" "speaks TLS, not plain HTTP" "$err"
else
    echo "FAIL could not start an etcd with TLS:" >&2
    cat "$dir/tls.err" >&2
    failed=$((failed + 1))
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
