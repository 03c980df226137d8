"""Builds the fifolock Python package: the engine (src/engine.c, src/modes.c,
src/strerror.c), the thread lock (src/mt.c on its waiting layer), and python/*.c
(the module fifolock_module.c, its front ends async_lock.c and thread_lock.c,
their shared.c), compiled into one extension, fifolock._fifolock.

    python3 -m pip install .                         # isolated build (fetches setuptools, wheel)
    python3 -m pip install --no-build-isolation .    # with the setuptools and wheel installed
    python3 -m pip install --no-build-isolation -e . # editable
    python3 setup.py build --build-lib DIR           # what the tests do

Set FIFOLOCK_WERROR=1 to build with the project's warnings as errors.
"""
import glob
import os
import sys

from setuptools import Extension, setup
from setuptools.command.egg_info import egg_info

# Not build/ (CMake's) and not the sources: python/build/, unless the
# command line says otherwise (the tests build in CMake's build tree).
BUILD_BASE = os.path.join("python", "build")


class EggInfo(egg_info):
    def finalize_options(self):
        if self.egg_base is None:
            self.egg_base = BUILD_BASE
        os.makedirs(self.egg_base, exist_ok=True)
        super().finalize_options()


cflags = ["-std=c11", "-fvisibility=hidden"]
if os.environ.get("FIFOLOCK_WERROR"):
    cflags += ["-Wall", "-Wextra", "-Werror", "-Wshadow", "-Wstrict-prototypes",
               "-Wmissing-prototypes"]

sources = [
    "python/fifolock_module.c",
    "python/async_lock.c",
    "python/shared.c",
    "python/cross_mode.c",
    "python/etcd_lock.c",
    "src/engine.c",
    "src/modes.c",
    "src/rule.c",
    "src/strerror.c",
]
macros = [("_GNU_SOURCE", None)]
# ThreadFifoLock, on the thread lock and its waiting layer (src/wait.h): the
# platform's own where there is one, else the portable parking table.
libraries = []
if sys.platform.startswith("linux"):
    wait_layer = "futex"
elif sys.platform == "win32":
    wait_layer = "win32"
    libraries.append("synchronization")
elif sys.platform == "darwin":
    wait_layer = "darwin"
elif sys.platform.startswith("freebsd"):
    wait_layer = "umtx"
else:
    wait_layer = "parking"
wait_layer = os.environ.get("FIFOLOCK_WAIT", wait_layer)
if wait_layer == "none":
    macros.append(("FIFOLOCK_NO_THREAD_LOCK", None))
else:
    sources += ["python/thread_lock.c", "src/mt.c", "src/wait_%s.c" % wait_layer]

# ProcessFifoLock, on the shared-memory lock (Linux only).
if sys.platform.startswith("linux"):
    sources += ["python/process_lock.c", "src/shm.c"]
    macros.append(("FIFOLOCK_PY_SHM", None))

# EtcdSession, on the etcd lock, where libcurl and json-c are found.
def pkg_config(*args):
    import subprocess
    try:
        out = subprocess.run(["pkg-config"] + list(args), check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.split()


include_dirs = ["include", "src"]
etcd_flags = None if os.environ.get("FIFOLOCK_ETCD") == "0" else \
    pkg_config("--cflags", "--libs", "libcurl", "json-c")
if etcd_flags is not None and sys.platform.startswith("linux"):
    sources += sorted(glob.glob("src/etcd/*.c"))  # relative, as the others
    macros.append(("FIFOLOCK_PY_ETCD", None))
    for flag in etcd_flags:
        if flag.startswith("-I"):
            include_dirs.append(flag[2:])
        elif flag.startswith("-l"):
            libraries.append(flag[2:])

extension = Extension(
    "fifolock._fifolock",
    sources=sources,
    include_dirs=include_dirs,
    define_macros=macros,
    libraries=libraries,
    extra_compile_args=cflags,
    depends=["include/fifolock.h", "include/fifolock_mt.h", "include/fifolock_shm.h",
             "include/fifolock_etcd.h", "src/internal.h", "src/mt_internal.h",
             "src/shm_internal.h", "src/wait.h", "python/module.h", "python/front_ends.h",
             "python/cross_mode.h"],
)


def header_version():
    """FIFOLOCK_VERSION_STRING of include/fifolock.h: the one place it is written."""
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "include", "fifolock.h"), encoding="utf-8") as f:
        for line in f:
            if line.startswith("#define FIFOLOCK_VERSION_STRING "):
                return line.split('"')[1]
    raise RuntimeError("include/fifolock.h: no FIFOLOCK_VERSION_STRING")


setup(
    version=header_version(),
    packages=["fifolock"],
    package_dir={"": "python"},
    package_data={"fifolock": ["py.typed", "*.pyi"]},
    ext_modules=[extension],
    options={"build": {"build_base": BUILD_BASE}},
    cmdclass={"egg_info": EggInfo},
)
