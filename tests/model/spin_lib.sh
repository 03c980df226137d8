# The common part of the spin model checks (tests/model/run_spin.sh,
# tests/model/run_spin_shm.sh, tests/etcd/run_spin.sh), sourced by each:
# build a model's verifier, run it, judge and print the outcome.
#
# The caller sets `model` (the .pml file) and may set `opt` (pan's -O level,
# default 2) and `memlim` (MB per pan run, default 8192), then:
#   spin_init TMPNAME                  spin and cc found (else exit 77 / 1),
#                                      work directory made
#   spin_config NAME KIND FLAGS OPTS   passes if pan says "errors: 0" and
#                                      searched the whole state space
#   spin_mutant NAME KIND FLAGS OPTS   passes if pan finds an error, and says
#                                      what caught it
#   spin_done                          "N passed, N failed"; status 0 only if
#                                      nothing failed
# KIND is `safety` (assertions and invalid end states; pan built with
# -DSAFETY) or `liveness` (the model's LTL formula under weak fairness: pan
# -a -f). FLAGS go to spin -a, OPTS to pan. Verifiers are built with
# -DCOLLAPSE: lossless compression of the stored states, so the search stays
# exhaustive.
# env: MODEL_DIR (where to build; kept. Default: a temporary directory,
# removed unless something failed, so that its trails can be replayed),
# CC (gcc), SPIN (spin), MEMLIM.

spin_init() {
    spin=${SPIN:-spin}
    cc=${CC:-gcc}
    opt=${opt:-2}
    memlim=${MEMLIM:-${memlim:-8192}}
    if ! command -v "$spin" >/dev/null 2>&1; then
        # A missing tool skips the check (exit 77, CTest's skip code); .ci/run installs it.
        echo "skipped: spin is not installed (Debian: apt-get install spin)"
        exit 77
    fi
    if ! command -v "$cc" >/dev/null 2>&1; then
        echo "$(basename "$0"): no C compiler ($cc) to build spin's verifier" >&2
        exit 1
    fi
    if [ -n "${MODEL_DIR:-}" ]; then
        work=$MODEL_DIR keep=1
        mkdir -p "$work"
    else
        work=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX") keep=0
    fi
    passed=0 failed=0 spin_start=$SECONDS
    echo "model check: $model with $("$spin" -V | head -n 1), in $work"
}

# spin_build DIR KIND FLAGS: spin -a and cc in DIR; 0 on success.
spin_build() {
    local dir=$1 kind=$2 flags=$3 ccflags=""
    mkdir -p "$dir"
    cp "$model" "$dir/"
    [ "$kind" = safety ] && ccflags="-DSAFETY -DNOCLAIM"
    # shellcheck disable=SC2086
    (cd "$dir" && "$spin" -a $flags "$(basename "$model")" >spin.log 2>&1 &&
        "$cc" -O"$opt" -w -DCOLLAPSE -DMEMLIM="$memlim" $ccflags -o pan pan.c >cc.log 2>&1)
}

# spin_run DIR KIND OPTS: runs the verifier; its output in DIR/pan.out.
spin_run() {
    local dir=$1 kind=$2 opts=$3
    [ "$kind" = liveness ] && opts="-a -f $opts"
    # shellcheck disable=SC2086
    (cd "$dir" && ./pan $opts >pan.out 2>&1)
}

# spin_errors FILE: the number of errors pan reported ("" if none said).
spin_errors() {
    sed -n -E 's/.*errors: ([0-9]+).*/\1/p' "$1" | head -n 1
}

# spin_summary FILE: "N states, depth D, T s"
spin_summary() {
    local states depth secs
    states=$(sed -n -E 's/^ *([0-9.e+]+) states, stored.*/\1/p' "$1" | head -n 1)
    depth=$(sed -n -E 's/.*depth reached ([0-9]+).*/\1/p' "$1" | head -n 1)
    secs=$(sed -n -E 's/^pan: elapsed time ([0-9.e+]+) seconds.*/\1/p' "$1" | head -n 1)
    printf '%s states, depth %s, %s s' "${states:-?}" "${depth:-?}" "${secs:-?}"
}

# spin_incomplete FILE: why the search did not cover the whole space, if so.
spin_incomplete() {
    grep -m 1 -E 'max search depth too small|out of memory|reached -DMEMLIM bound|VECTORSZ' "$1"
}

# spin_caught_by DIR FLAGS: what found the error, from pan's report and the
# trail: a failed assertion is named by the comment on its line of the model.
spin_caught_by() {
    local dir=$1 flags=$2 first line src name
    name=$(basename "$model")
    first=$(grep -m 1 -E '^pan:[0-9]+:' "$dir/pan.out" | sed -E 's/^pan:[0-9]+: //; s/ \(at depth [0-9]+\)//')
    case "$first" in
    "assertion violated"*)
        # shellcheck disable=SC2086
        line=$(cd "$dir" && "$spin" -t $flags "$name" 2>&1 |
            sed -n -E "s/^spin: ${name//./\\.}:([0-9]+), Error: assertion violated.*/\\1/p" | head -n 1)
        src=$(sed -n "${line:-0}p" "$model" | sed -n -E 's:.*/\* *(.*[^ ]) *\*/.*:\1:p')
        printf 'assertion, line %s: %s' "${line:-?}" "${src:-$first}"
        ;;
    "invalid end state"*) printf 'invalid end state: a process waits for ever' ;;
    "acceptance cycle"*) printf 'acceptance cycle: the liveness formula fails' ;;
    *) printf '%s' "${first:-?}" ;;
    esac
}

spin_config() {
    local name=$1 kind=$2 flags=$3 opts=$4 dir=$work/config-$1 errs why
    if ! spin_build "$dir" "$kind" "$flags"; then
        printf 'FAIL  %-22s does not build: see %s\n' "$name" "$dir"
        failed=$((failed + 1))
        return
    fi
    spin_run "$dir" "$kind" "$opts"
    errs=$(spin_errors "$dir/pan.out")
    why=$(spin_incomplete "$dir/pan.out")
    if [ "$errs" = 0 ] && [ -z "$why" ]; then
        printf 'ok    %-22s %-8s %s\n' "$name" "$kind" "$(spin_summary "$dir/pan.out")"
        passed=$((passed + 1))
    else
        printf 'FAIL  %-22s %-8s %s: %s\n' "$name" "$kind" "$(spin_summary "$dir/pan.out")" \
            "${why:-errors: ${errs:-none reported}}"
        grep -m 3 -E '^pan:[0-9]+:' "$dir/pan.out" | sed 's/^/      /'
        echo "      replay: cd $dir && $spin -t -p $flags $(basename "$model")"
        failed=$((failed + 1))
    fi
}

spin_mutant() {
    local name=$1 kind=$2 flags=$3 opts=$4 dir errs
    dir=$work/mutant-$(tr -c 'A-Za-z0-9_\n' '_' <<<"$name")
    if ! spin_build "$dir" "$kind" "$flags"; then
        printf 'MISSED  %-24s does not build: see %s\n' "$name" "$dir"
        failed=$((failed + 1))
        return
    fi
    spin_run "$dir" "$kind" "$opts"
    errs=$(spin_errors "$dir/pan.out")
    if [ -n "$errs" ] && [ "$errs" != 0 ]; then
        printf 'caught  %-24s %s (%s)\n' "$name" "$(spin_caught_by "$dir" "$flags")" \
            "$(spin_summary "$dir/pan.out")"
        passed=$((passed + 1))
    else
        printf 'MISSED  %-24s pan found no error (%s)\n' "$name" "$(spin_summary "$dir/pan.out")"
        failed=$((failed + 1))
    fi
}

spin_done() {
    echo "model check took $((SECONDS - spin_start)) s"
    if [ "$failed" -eq 0 ] && [ "$keep" -eq 0 ]; then
        rm -rf "$work"
    elif [ "$failed" -ne 0 ]; then
        echo "kept $work (pan.out, trails) for replay"
    fi
    echo "${passed} passed, ${failed} failed"
    [ "$failed" -eq 0 ]
}
