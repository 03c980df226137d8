#!/usr/bin/env bash
# make check runs everything, so everything it needs must be here: names
# each missing tool with the Debian package that has it, and fails. (make
# test needs none of the optional ones: a test whose tool is missing skips
# there, with its reason.) .ci/run installs them all.
set -u
missing=()
need_cmd() { command -v "$1" >/dev/null 2>&1 || missing+=("$1 ($2)"); }
need_pc() { pkg-config --exists "$1" 2>/dev/null || missing+=("$1 ($2)"); }
need_cmd clang clang
need_cmd clang++ clang
need_cmd g++ g++
need_cmd valgrind valgrind
need_cmd spin spin
need_cmd etcd etcd-server
need_cmd etcdctl etcd-client
need_cmd openssl openssl
need_cmd python3 python3
need_cmd pkg-config pkg-config
need_cmd x86_64-w64-mingw32-gcc-posix gcc-mingw-w64-x86-64
need_cmd x86_64-w64-mingw32-g++-posix g++-mingw-w64-x86-64
command -v wine64 >/dev/null 2>&1 || command -v wine >/dev/null 2>&1 || missing+=("wine (wine64)")
need_pc libuv libuv1-dev
need_pc libcurl libcurl4-openssl-dev
need_pc json-c libjson-c-dev
python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' ||
    missing+=("Python.h (python3-dev)")
ls /usr/share/python-wheels/setuptools-*.whl >/dev/null 2>&1 || missing+=("setuptools wheel (python3-setuptools-whl)")
ls /usr/share/python-wheels/wheel-*.whl >/dev/null 2>&1 || missing+=("wheel wheel (python3-wheel-whl)")
ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 ||
    missing+=("libFuzzer (libclang-rt-14-dev)")
if ((${#missing[@]})); then
    echo "make check runs every test; missing:"
    printf '  %s\n' "${missing[@]}"
    echo "(.ci/run installs them; make test runs without them)"
    exit 1
fi
