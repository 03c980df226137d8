"""PEP 517 build backend of the fifolock package: setuptools, plus a wheel
writer of its own for interpreters that have setuptools but no `wheel`
package (setuptools before 70.1 needs `wheel` to make one). Then the
extension is built with `setup.py build` and packed into a wheel here.

pyproject.toml names this module (backend-path = ["python"]).
"""
import base64
import csv
import hashlib
import io
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile

from setuptools import build_meta as _setuptools

NAME = "fifolock"


def _have_wheel():
    try:
        import wheel  # noqa: F401
    except ImportError:
        return False
    return True


def get_requires_for_build_sdist(config_settings=None):
    return _setuptools.get_requires_for_build_sdist(config_settings)


def build_sdist(sdist_directory, config_settings=None):
    return _setuptools.build_sdist(sdist_directory, config_settings)


def get_requires_for_build_wheel(config_settings=None):
    if _have_wheel():
        return _setuptools.get_requires_for_build_wheel(config_settings)
    return []


if _have_wheel():
    prepare_metadata_for_build_wheel = _setuptools.prepare_metadata_for_build_wheel


def _tag():
    version = f"{sys.version_info[0]}{sys.version_info[1]}"
    platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return f"cp{version}", f"cp{version}{sys.abiflags}", platform


def _record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return [path, f"sha256={digest}", str(len(data))]


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    if _have_wheel():
        return _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)
    with tempfile.TemporaryDirectory() as tmp:
        lib = os.path.join(tmp, "lib")
        subprocess.run([sys.executable, "setup.py", "-q",
                        "egg_info", "--egg-base", tmp,
                        "build", "--build-base", tmp, "--build-lib", lib],
                       check=True)
        egg_info = [d for d in os.listdir(tmp) if d.endswith(".egg-info")][0]
        with open(os.path.join(tmp, egg_info, "PKG-INFO"), "rb") as f:
            metadata = f.read()
        version = next(line.split(b":", 1)[1].strip().decode()
                       for line in metadata.splitlines() if line.startswith(b"Version:"))
        python, abi, platform = _tag()
        tag = f"{python}-{abi}-{platform}"
        dist_info = f"{NAME}-{version}.dist-info"
        wheel_name = f"{NAME}-{version}-{tag}.whl"
        files = {}
        for root, _, names in os.walk(lib):
            for name in names:
                full = os.path.join(root, name)
                with open(full, "rb") as f:
                    files[os.path.relpath(full, lib).replace(os.sep, "/")] = f.read()
        files[f"{dist_info}/METADATA"] = metadata
        files[f"{dist_info}/WHEEL"] = (
            "Wheel-Version: 1.0\n"
            "Generator: fifolock _fifolock_build\n"
            "Root-Is-Purelib: false\n"
            f"Tag: {tag}\n").encode()
        files[f"{dist_info}/top_level.txt"] = f"{NAME}\n".encode()
        record = io.StringIO()
        writer = csv.writer(record, lineterminator="\n")
        for path, data in sorted(files.items()):
            writer.writerow(_record_line(path, data))
        writer.writerow([f"{dist_info}/RECORD", "", ""])
        files[f"{dist_info}/RECORD"] = record.getvalue().encode()
        os.makedirs(wheel_directory, exist_ok=True)
        partial = os.path.join(tmp, wheel_name)
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
            for path, data in files.items():
                zf.writestr(path, data)
        shutil.move(partial, os.path.join(wheel_directory, wheel_name))
    return wheel_name
