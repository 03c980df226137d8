#!/usr/bin/env bash
# The model check of the etcd lock's protocol: tests/etcd/lock.pml, verified
# exhaustively with spin in each configuration (assertions and invalid end
# states), then each deliberate bug of the model must be found.
#
# usage: tests/etcd/run_spin.sh     env: as tests/model/spin_lib.sh says
# The state spaces are small (tens of thousands of states): pan is built
# without optimisation, which takes a fraction of the time.
# Prints one line per run and "N passed, N failed"; exit 0 only if nothing
# failed, 77 (skipped) if spin is not installed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
model=$here/lock.pml
opt=0
# shellcheck source=../model/spin_lib.sh
. "$here/../model/spin_lib.sh"

spin_init fifolock-etcd-model
for conf in CONF_A CONF_B CONF_C CONF_D CONF_E CONF_F; do
    spin_config "$conf" safety "-D$conf" -m100000
done
for m in "NO_MARK CONF_A" "PRED_ONLY CONF_B" "SKIP_WAITING CONF_C" "STALE_GRANT CONF_D" \
    "HOLD_LOST_LEASE CONF_C" "NOPUT_W1 CONF_E" "IGNORE_CLAIM CONF_E" \
    "SWITCH_COUNTS_SELF CONF_F" "CLAIM_STALE_READ CONF_E"; do
    set -- $m
    spin_mutant "$1" safety "-D$1 -D$2" -m100000
done
spin_done
