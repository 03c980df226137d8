#!/usr/bin/env bash
# Installs a build of fifolock into a scratch prefix and uses it as somebody
# else's project would. Registered by tests/install.cmake:
#
#   run.sh BUILD_DIR SOURCE_DIR WORK_DIR CC CMAKE LIBDIR INCLUDEDIR MANDIR
#
# Checks, in order (the first failure stops it, exit 1):
#   1. `cmake --install BUILD_DIR --prefix WORK_DIR/prefix` succeeds and puts
#      every public header, both libraries, fifolock.pc, the CMake package and
#      every man page of docs/man in their places;
#   2. the shared library's soname is libfifolock.so.1, the .so -> .so.1 links
#      hold, it exports only public names (fifolock_*, never fifolock__* nor
#      fifolock_xxx__*), and every name the headers declare FIFOLOCK_API;
#   3. pkg-config (PKG_CONFIG_PATH=prefix) points into the prefix, and
#      tests/install/consumer.c built with its flags (-Werror, -pedantic)
#      links the installed libfifolock.so.1 and runs; so does
#      tests/install/consumer.cpp (fifolock.hpp) where a C++ compiler exists
#      ($CXX, else c++);
#   4. a CMake project doing find_package(fifolock) (CMAKE_PREFIX_PATH)
#      finds the package in the prefix and builds the same program against
#      fifolock::fifolock (run through its rpath) and fifolock::fifolock_static;
#   5. the man pages render from the prefix: `man fifolock_cancel` reaches
#      fifolock(3) through its .so link (only where man is installed).
# Exits 77 (CTest: skipped) only when a tool it needs is missing.
set -u

if [ $# -ne 8 ]; then
    echo "usage: $0 BUILD_DIR SOURCE_DIR WORK_DIR CC CMAKE LIBDIR INCLUDEDIR MANDIR" >&2
    exit 2
fi
build=$1 src=$2 work=$3 cc=$4 cmake=$5 libdir=$6 includedir=$7 mandir=$8
prefix=$work/prefix

fail() {
    echo "FAIL: $*"
    exit 1
}
step() { echo "--- $*"; }

for tool in pkg-config nm objdump readelf "$cc" "$cmake"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "SKIP: $tool not found"
        exit 77
    fi
done

rm -rf "$work"
mkdir -p "$work" || fail "can't create $work"

with_mt=0
[ -f "$src/include/fifolock_mt.h" ] && with_mt=1

# ---- 1. install ---------------------------------------------------------------
step "cmake --install $build --prefix $prefix"
"$cmake" --install "$build" --prefix "$prefix" >"$work/install.log" 2>&1 ||
    { cat "$work/install.log"; fail "cmake --install failed"; }

lib=$prefix/$libdir
for h in "$src"/include/*.h "$src"/include/*.hpp; do
    [ -e "$h" ] || continue
    [ -f "$prefix/$includedir/$(basename "$h")" ] ||
        fail "public header $(basename "$h") not installed in $includedir"
done
for f in "$lib/libfifolock.a" "$lib/libfifolock.so" "$lib/libfifolock.so.1" \
         "$lib/pkgconfig/fifolock.pc" "$lib/cmake/fifolock/fifolockConfig.cmake" \
         "$lib/cmake/fifolock/fifolockConfigVersion.cmake"; do
    [ -e "$f" ] || fail "not installed: ${f#"$prefix"/}"
done
nman=0
if [ -d "$src/docs/man" ]; then
    for m in "$src"/docs/man/*.3; do
        [ -f "$prefix/$mandir/man3/$(basename "$m")" ] ||
            fail "man page $(basename "$m") not installed in $mandir/man3"
        nman=$((nman + 1))
    done
fi
echo "installed: headers, libfifolock.a, libfifolock.so, fifolock.pc, CMake package, $nman man pages"

# ---- 2. the shared library ------------------------------------------------------
step "shared library: soname and exported names"
so=$lib/libfifolock.so
soname=$(objdump -p "$so" | awk '$1 == "SONAME" { print $2 }')
[ "$soname" = "libfifolock.so.1" ] || fail "soname is '$soname', expected libfifolock.so.1"
[ "$(readlink "$so")" = "libfifolock.so.1" ] || fail "libfifolock.so does not link to libfifolock.so.1"
[ -f "$(readlink -f "$lib/libfifolock.so.1")" ] || fail "libfifolock.so.1 is a dangling link"

# (nm prints a version after the name, fifolock_init@@FIFOLOCK_1, and the
# version node itself as an absolute symbol: neither is a name of ours.)
nm -D --defined-only "$so" | awk '$2 != "A" { n = $NF; sub(/@.*/, "", n); print n }' |
    sort -u >"$work/exported" || fail "nm -D failed on $so"
# Every public name carries the version node of src/fifolock.map.
versions=$(objdump -T "$so" | awk '$NF ~ /^fifolock_/ { print $(NF - 1) }' | sort -u | tr '\n' ' ')
[ "$versions" = "FIFOLOCK_1 " ] ||
    fail "public names should all have the version FIFOLOCK_1 (src/fifolock.map), have: $versions"
# Names the linker itself defines in some toolchains are not the library's.
bad=$(grep -vxE '_init|_fini|_edata|_end|__bss_start' "$work/exported" |
      grep -vE '^fifolock_[a-z0-9_]+$' )
bad2=$(grep -E '^fifolock.*__' "$work/exported")
[ -z "$bad$bad2" ] || fail "exported but not public API:" $bad $bad2

# Every name the public headers declare FIFOLOCK_API must be exported.
grep -hv '^[[:space:]]*#' "$src"/include/*.h | tr '\n' ' ' |
    grep -oE 'FIFOLOCK_API [^;(]*' | awk '{ n = $NF; sub(/^\*+/, "", n); print n }' |
    grep -E '^fifolock_' | sort -u >"$work/declared"
[ -s "$work/declared" ] || fail "found no FIFOLOCK_API declarations in $src/include"
missing=$(comm -23 "$work/declared" "$work/exported")
[ -z "$missing" ] || fail "declared FIFOLOCK_API but not exported:" $missing
echo "soname libfifolock.so.1; exports $(wc -l <"$work/exported") names, all public;" \
     "all $(wc -l <"$work/declared") declared names present"

# ---- 3. pkg-config ------------------------------------------------------------
step "pkg-config consumer"
export PKG_CONFIG_PATH=$lib/pkgconfig
unset PKG_CONFIG_LIBDIR PKG_CONFIG_SYSROOT_DIR
pc_inc=$(pkg-config --variable=includedir fifolock) || fail "pkg-config does not find fifolock"
pc_lib=$(pkg-config --variable=libdir fifolock)
[ "$(readlink -f "$pc_inc")" = "$(readlink -f "$prefix/$includedir")" ] ||
    fail "fifolock.pc's includedir is $pc_inc, not in the prefix it was installed to"
[ "$(readlink -f "$pc_lib")" = "$(readlink -f "$lib")" ] ||
    fail "fifolock.pc's libdir is $pc_lib, not in the prefix it was installed to"
[ "$(pkg-config --modversion fifolock)" = \
  "$(awk '/define FIFOLOCK_VERSION_STRING/ { gsub(/"/, "", $3); print $3 }' "$src/include/fifolock.h")" ] ||
    fail "fifolock.pc's version differs from FIFOLOCK_VERSION_STRING"
# shellcheck disable=SC2046
"$cc" -std=c11 -Wall -Wextra -Wpedantic -Werror -DWITH_MT=$with_mt \
    -o "$work/consumer_pc" "$src/tests/install/consumer.c" \
    $(pkg-config --cflags --libs fifolock) -pthread >"$work/cc.log" 2>&1 ||
    { cat "$work/cc.log"; fail "the consumer does not build with pkg-config's flags"; }
readelf -d "$work/consumer_pc" | grep -q 'NEEDED.*\[libfifolock\.so\.1\]' ||
    fail "consumer_pc is not linked against libfifolock.so.1"
out=$(LD_LIBRARY_PATH=$lib "$work/consumer_pc" 2>&1) || { echo "$out"; fail "consumer_pc failed"; }
echo "$out"
# It must have loaded the installed library, not some other copy.
LD_LIBRARY_PATH=$lib LD_TRACE_LOADED_OBJECTS=1 "$work/consumer_pc" |
    grep -q "libfifolock.so.1 => $lib/libfifolock.so.1" ||
    fail "consumer_pc does not load $lib/libfifolock.so.1"

# The C++ header, where a C++ compiler exists: the same flags, C++17.
cxx=${CXX:-c++}
if [ -f "$src/include/fifolock.hpp" ] && command -v "$cxx" >/dev/null 2>&1; then
    step "pkg-config C++ consumer ($cxx)"
    # shellcheck disable=SC2046
    "$cxx" -std=c++17 -Wall -Wextra -Wpedantic -Werror -o "$work/consumer_cpp" \
        "$src/tests/install/consumer.cpp" $(pkg-config --cflags --libs fifolock) -pthread \
        >"$work/cxx.log" 2>&1 ||
        { cat "$work/cxx.log"; fail "the C++ consumer does not build with pkg-config's flags"; }
    out=$(LD_LIBRARY_PATH=$lib "$work/consumer_cpp" 2>&1) || { echo "$out"; fail "consumer_cpp failed"; }
    echo "$out"
fi

# ---- 4. CMake package ---------------------------------------------------------
step "find_package(fifolock) consumer"
"$cmake" -S "$src/tests/install" -B "$work/cmake-consumer" -DCMAKE_C_COMPILER="$cc" \
    -DCMAKE_PREFIX_PATH="$prefix" -DWITH_MT=$with_mt -DCMAKE_BUILD_TYPE=Release \
    >"$work/cmake.log" 2>&1 || { cat "$work/cmake.log"; fail "find_package(fifolock) project does not configure"; }
found=$(sed -n 's/^-- fifolock_DIR: //p' "$work/cmake.log")
[ "$(readlink -f "$found")" = "$(readlink -f "$lib/cmake/fifolock")" ] ||
    fail "find_package(fifolock) found '$found', not the package in $prefix"
"$cmake" --build "$work/cmake-consumer" >>"$work/cmake.log" 2>&1 ||
    { cat "$work/cmake.log"; fail "find_package(fifolock) project does not build"; }
for variant in shared static; do
    out=$(env -u LD_LIBRARY_PATH "$work/cmake-consumer/consumer_$variant" 2>&1) ||
        { echo "$out"; fail "consumer_$variant failed"; }
    echo "$variant: $out"
done
readelf -d "$work/cmake-consumer/consumer_shared" | grep -q 'NEEDED.*\[libfifolock\.so\.1\]' ||
    fail "consumer_shared is not linked against libfifolock.so.1"
if readelf -d "$work/cmake-consumer/consumer_static" | grep -q 'NEEDED.*libfifolock'; then
    fail "consumer_static depends on libfifolock.so"
fi

# ---- 4b. the etcd library, where it is installed ---------------------------------
etcd_so=$lib/libfifolock_etcd.so
if [ -e "$etcd_so" ]; then
    step "the etcd library: one copy of the core"
    readelf -d "$etcd_so" | grep -q 'NEEDED.*\[libfifolock\.so\.1\]' ||
        fail "libfifolock_etcd.so does not depend on libfifolock.so.1"
    own=$(nm -D --defined-only "$etcd_so" | awk '$2 != "A" { n = $NF; sub(/@.*/, "", n); print n }' |
          grep -vxE '_init|_fini|_edata|_end|__bss_start' | grep -v '^fifolock_etcd_')
    [ -z "$own" ] || fail "libfifolock_etcd.so defines names that are not its own:" $own
    [ -x "$work/cmake-consumer/consumer_etcd" ] ||
        fail "find_package(fifolock) offers no fifolock::fifolock_etcd"
    out=$(env -u LD_LIBRARY_PATH "$work/cmake-consumer/consumer_etcd" 2>&1) ||
        { echo "$out"; fail "consumer_etcd failed"; }
    echo "find_package: $out"
    # shellcheck disable=SC2046
    "$cc" -std=c11 -Wall -Wextra -Werror -o "$work/consumer_etcd_pc" \
        "$src/tests/install/consumer_etcd.c" $(pkg-config --cflags --libs fifolock_etcd) \
        >"$work/cc.log" 2>&1 || { cat "$work/cc.log"; fail "the etcd consumer does not build with pkg-config's flags"; }
    out=$(LD_LIBRARY_PATH=$lib "$work/consumer_etcd_pc" 2>&1) || { echo "$out"; fail "consumer_etcd_pc failed"; }
    echo "pkg-config: $out"
fi

# ---- 5. man pages ---------------------------------------------------------------
if [ "$nman" -gt 0 ] && command -v man >/dev/null 2>&1; then
    step "man pages from the prefix"
    for page in fifolock fifolock_cancel; do
        [ -f "$prefix/$mandir/man3/$page.3" ] || continue
        MANWIDTH=80 man -M "$prefix/$mandir" -P cat 3 "$page" 2>"$work/man.err" |
            grep -q "fifolock_cancel" || { cat "$work/man.err"; fail "man 3 $page does not render"; }
    done
    echo "man 3 fifolock and its links render"
fi

# ---- 6. the man pages' examples ---------------------------------------------------
# In EXAMPLES, the first .EX/.EE block is a program; a second one, if any, is
# what it prints. Each must build against the prefix and run (and print that).
if [ "$nman" -gt 0 ]; then
    step "man page examples"
    for m in "$src"/docs/man/*.3; do
        name=$(basename "$m" .3)
        awk -v out="$work/$name.example" '
            /^\.SH/ { in_ex = ($2 == "EXAMPLES") }
            in_ex && /^\.EX/ { block++; copy = 1; next }
            in_ex && /^\.EE/ { copy = 0; next }
            copy { print > (out "." block) }' "$m"
        [ -f "$work/$name.example.1" ] || continue
        sed -e 's/\\e/\\/g' -e 's/\\-/-/g' "$work/$name.example.1" >"$work/$name.example.c"
        # shellcheck disable=SC2046
        "$cc" -std=c11 -Wall -Wextra -Werror -pthread -o "$work/$name.example" \
            "$work/$name.example.c" $(pkg-config --cflags --libs fifolock) >"$work/cc.log" 2>&1 ||
            { cat "$work/cc.log"; fail "the example of $name(3) does not build"; }
        LD_LIBRARY_PATH=$lib "$work/$name.example" >"$work/$name.out" 2>&1 ||
            { cat "$work/$name.out"; fail "the example of $name(3) failed"; }
        if [ -f "$work/$name.example.2" ]; then
            sed -e 's/\\e/\\/g' -e 's/\\-/-/g' "$work/$name.example.2" >"$work/$name.expected"
            diff -u "$work/$name.expected" "$work/$name.out" ||
                fail "the example of $name(3) does not print what the page says"
        fi
        echo "$name(3): example builds and runs$([ -f "$work/$name.example.2" ] && echo ", prints what the page says")"
    done
fi

echo "install test passed"
exit 0
