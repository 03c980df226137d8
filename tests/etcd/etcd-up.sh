#!/usr/bin/env bash
# Starts a real etcd for the tests, on loopback, with free ports and a
# temporary data dir, and waits until it serves clients.
#
#   etcd-up.sh DIR [--members N] [--tls] [--auth] [--auth-token-ttl SECONDS]
#
# Writes DIR/endpoints (the client URLs, comma-separated), DIR/member<i>.url,
# DIR/member<i>.pid and DIR/member<i>.sh (starts that member again), and, with --tls, the certificates in DIR/tls (made
# by openssl now: a CA, the server's, a client's, and a client's from another
# CA). With --auth, users root/rootpw, alice/alicepw (read-write on
# fifolock/) and bob/bobpw (no permission), and auth enabled. A watchdog stops the members when the process
# that started this script (the test) is gone, however it ended.
# Exit status: 0, 77 when etcd is not installed (the test skips), 1 on failure.
set -u
dir=$1; shift
members=1 tls=0 auth=0 token_ttl=
while (($#)); do
    case $1 in
    --members) members=$2; shift ;;
    --tls) tls=1 ;;
    --auth) auth=1 ;;
    --auth-token-ttl) token_ttl=$2; shift ;;
    *) echo "etcd-up.sh: unknown option $1" >&2; exit 1 ;;
    esac
    shift
done
ETCD=${ETCD:-etcd}
command -v "$ETCD" >/dev/null 2>&1 || { echo "etcd not installed" >&2; exit 77; }
owner=${ETCD_OWNER_PID:-$PPID}
mkdir -p "$dir" || exit 1

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 40000))
        port_free "$p" && ! grep -qx "$p" "$dir/ports" 2>/dev/null && { echo "$p" >>"$dir/ports"; echo "$p"; return; }
    done
}

scheme=http
if ((tls)); then
    scheme=https
    t=$dir/tls; mkdir -p "$t"
    (
        cd "$t" || exit 1
        cat >ext.cnf <<'CNF'
[srv]
subjectAltName = IP:127.0.0.1, DNS:localhost
extendedKeyUsage = serverAuth, clientAuth
[cli]
extendedKeyUsage = clientAuth
CNF
        for ca in ca other-ca; do
            openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$ca" \
                -keyout $ca-key.pem -out $ca.pem
        done
        mk() { # name ca ext cn
            openssl req -newkey rsa:2048 -nodes -subj "/CN=$4" -keyout $1-key.pem -out $1.csr
            openssl x509 -req -in $1.csr -CA $2.pem -CAkey $2-key.pem -CAcreateserial \
                -days 2 -extfile ext.cnf -extensions $3 -out $1.pem
        }
        mk server ca srv server
        mk client ca cli client
        mk other-client other-ca cli client
    ) >"$dir/openssl.log" 2>&1 || { echo "openssl failed, see $dir/openssl.log" >&2; exit 1; }
fi

# Picks free ports and starts the members; 0 once all serve, 2 if a port
# was taken meanwhile (the caller tries again with other ports), 1 else.
start_members() {
    names=() peers=() clients=()
    for ((i = 0; i < members; i++)); do
        names+=("m$i")
        peers+=("http://127.0.0.1:$(pick_port)")
        clients+=("$scheme://127.0.0.1:$(pick_port)")
    done
    cluster=
    for ((i = 0; i < members; i++)); do cluster+="${cluster:+,}${names[i]}=${peers[i]}"; done

    for ((i = 0; i < members; i++)); do
        args=(--name "${names[i]}" --data-dir "$dir/data$i"
            --listen-client-urls "${clients[i]}" --advertise-client-urls "${clients[i]}"
            --listen-peer-urls "${peers[i]}" --initial-advertise-peer-urls "${peers[i]}"
            --initial-cluster "$cluster" --initial-cluster-state new
            --initial-cluster-token "fifolock-test-$$"
            --heartbeat-interval 50 --election-timeout 500
            --logger zap --log-outputs stderr)
        [ -n "$token_ttl" ] && args+=(--auth-token-ttl "$token_ttl")
        if ((tls)); then
            args+=(--cert-file "$dir/tls/server.pem" --key-file "$dir/tls/server-key.pem"
                --trusted-ca-file "$dir/tls/ca.pem" --client-cert-auth)
        fi
        # member<i>.sh starts the member again, on the same data dir and ports
        # (etcd_restart() in harness.h): a restart after a kill or an outage.
        { printf 'exec'; printf ' %q' "$ETCD" "${args[@]}"; printf ' >>%q 2>&1\n' "$dir/member$i.log"; } \
            >"$dir/member$i.sh"
        : >"$dir/member$i.log"
        bash "$dir/member$i.sh" &
        echo $! >"$dir/member$i.pid"
        disown # its death by a test's kill -9 is no news to print
        echo "${clients[i]}" >"$dir/member$i.url"
    done
    (IFS=,; echo "${clients[*]}") >"$dir/endpoints"

    for ((i = 0; i < members; i++)); do
        # Up to 30 s: a member of a cluster serves only once a quorum is up,
        # and a loaded machine (sanitizer builds beside) starts them slowly.
        for ((w = 0; w < 600; w++)); do
            grep -q '"msg":"serving client traffic' "$dir/member$i.log" && break
            kill -0 "$(cat "$dir/member$i.pid")" 2>/dev/null || break
            # a member that lost its port to another program never comes
            grep -q 'address already in use' "$dir"/member*.log && break
            sleep 0.05
        done
        if ! grep -q '"msg":"serving client traffic' "$dir/member$i.log"; then
            # Any member's port taken between the pick and the bind (by
            # another test's etcd, say): member i then waits for a quorum
            # that never comes. All of them again, on other ports.
            if grep -q 'address already in use' "$dir"/member*.log; then
                # another test took a port between the pick and the bind: again
                for f in "$dir"/member*.pid; do kill -9 "$(cat "$f")" 2>/dev/null; done
                sleep 0.2
                rm -rf "$dir"/data*
                return 2
            fi
            echo "etcd member $i did not start; its log:" >&2
            tail -20 "$dir/member$i.log" >&2
            for ((k = 0; k < members; k++)); do
                ((k == i)) && continue
                kill -0 "$(cat "$dir/member$k.pid")" 2>/dev/null && continue
                echo "member $k is gone; the end of its log:" >&2
                tail -5 "$dir/member$k.log" >&2
            done
            return 1
        fi
    done
    return 0
}


for attempt in 1 2 3 4 5; do
    start_members
    rc=$?
    [ "$rc" -eq 2 ] || break
done
[ "$rc" -eq 0 ] || exit 1

# The watchdog: when the test is gone (killed at its timeout, crashed), so
# are its members and its directory.
(
    trap '' HUP
    while kill -0 "$owner" 2>/dev/null && [ -e "$dir/member0.pid" ]; do sleep 1; done
    if [ -e "$dir/member0.pid" ]; then
        for f in "$dir"/member*.pid; do [ -e "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done
        sleep 0.5
        rm -rf "$dir"
    fi
) </dev/null >/dev/null 2>&1 &
echo $! >"$dir/watchdog.pid"

if ((auth)); then
    ctl=(etcdctl --endpoints "$(cat "$dir/endpoints")")
    ETCDCTL_API=3
    export ETCDCTL_API
    {
        "${ctl[@]}" user add root --new-user-password=rootpw &&
            "${ctl[@]}" user add alice --new-user-password=alicepw &&
            "${ctl[@]}" role add locker &&
            "${ctl[@]}" role grant-permission locker --prefix=true readwrite fifolock/ &&
            "${ctl[@]}" user grant-role alice locker &&
            "${ctl[@]}" user add bob --new-user-password=bobpw &&
            "${ctl[@]}" auth enable
    } >"$dir/auth.log" 2>&1 || { echo "enabling auth failed:" >&2; cat "$dir/auth.log" >&2; exit 1; }
fi
exit 0
