#!/usr/bin/env bash
# The model check of the etcd lock's protocol: tests/etcd/lock.pml, verified
# exhaustively with spin in each configuration (assertions and invalid end
# states), then each deliberate bug of the model must be found.
#
# usage: tests/etcd/run_spin.sh     env: SPIN (spin), CC (gcc), MODEL_DIR
# The state spaces are small (tens of thousands of states): pan is built
# without optimisation, which takes a fraction of the time.
# Prints one line per run and "N passed, N failed"; exit 0 only if nothing
# failed, 77 (skipped) if spin is not installed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
model=$here/lock.pml
spin=${SPIN:-spin}
cc=${CC:-gcc}
command -v "$spin" >/dev/null 2>&1 || { echo "spin not installed"; exit 77; }
dir=${MODEL_DIR:-$(mktemp -d)}
mkdir -p "$dir"
passed=0 failed=0

# run NAME FLAGS: 0 if pan found no error, 1 if it found one, 2 if it could not run.
run() {
    local d=$dir/$1
    rm -rf "$d" && mkdir -p "$d"
    (cd "$d" && "$spin" -a $2 "$model" >spin.log 2>&1 &&
        "$cc" -O0 -w -DSAFETY -DNOCLAIM -o pan pan.c >cc.log 2>&1) || return 2
    (cd "$d" && ./pan -m100000 >pan.out 2>&1)
    grep -q 'max search depth too small' "$d/pan.out" && return 2
    grep -q '^.*errors: 0$' "$d/pan.out" && return 0
    grep -q 'errors: [1-9]' "$d/pan.out" && return 1
    return 2
}

for conf in CONF_A CONF_B CONF_C CONF_D; do
    run "$conf" "-D$conf"
    case $? in
    0) echo "ok    $conf: $(sed -n 's/^ *\([0-9]*\) states, stored.*/\1 states/p' "$dir/$conf/pan.out")"
       passed=$((passed + 1)) ;;
    *) echo "FAIL  $conf: see $dir/$conf/pan.out"; failed=$((failed + 1)) ;;
    esac
done
for m in "NO_MARK CONF_A" "PRED_ONLY CONF_B" "SKIP_WAITING CONF_C" "STALE_GRANT CONF_D"; do
    set -- $m
    run "$1" "-D$1 -D$2"
    case $? in
    1) echo "ok    mutant $1 found: $(grep -m1 -oE 'assertion violated|invalid end state' "$dir/$1/pan.out")"
       passed=$((passed + 1)) ;;
    *) echo "FAIL  mutant $1 not found (in $2)"; failed=$((failed + 1)) ;;
    esac
done
echo "$passed passed, $failed failed"
[ -z "${MODEL_DIR:-}" ] && [ "$failed" = 0 ] && rm -rf "$dir"
[ "$failed" = 0 ]
