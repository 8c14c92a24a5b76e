"""The wheel that ``scripts/wheel.sh`` builds (its path in ``FRAMECACHE_WHEEL``, as
``scripts/test-python.sh`` sets it) installs with plain pip into a fresh virtualenv whose
PATH has no Rust toolchain and no C compiler, imports, and loads a timeline; and the suite
around this test runs against that installed wheel, not a build in the source tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

import framecache
from conftest import ci

# The commands pip and the check below may run, linked into a bin directory of their own:
# no cc, gcc, ld, rustc or cargo.
BASIC_TOOLS = ["sh", "env", "ls", "cat", "uname", "mkdir", "rm", "cp", "mv", "ln", "grep", "sed"]
TOOLCHAIN = ["cc", "gcc", "c++", "clang", "ld", "rustc", "cargo", "rustup", "maturin"]


def built_wheel() -> Path:
    wheel = os.environ.get("FRAMECACHE_WHEEL")
    if not wheel:
        if ci():
            pytest.fail("CI is set but FRAMECACHE_WHEEL is not: run scripts/test-python.sh")
        pytest.skip("no wheel given (scripts/test-python.sh builds one)")
    return Path(wheel)


def test_the_suite_runs_against_the_installed_wheel():
    built_wheel()
    package = Path(framecache.__file__).resolve().parent
    assert package.parent.name == "site-packages", package
    assert framecache.JPEG_ENCODER == "libjpeg-turbo"


def test_the_wheel_is_one_abi3_manylinux_wheel_with_libjpeg_inside():
    wheel = built_wheel()
    assert wheel.name.startswith("framecache-"), wheel.name
    assert "-cp311-abi3-manylinux" in wheel.name, wheel.name
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    natives = [n for n in names if n.startswith("framecache/_native") and n.endswith(".so")]
    assert natives == ["framecache/_native.abi3.so"], natives
    # libjpeg-turbo inside (auditwheel's repair: a renamed copy the extension's RPATH finds),
    # and nothing else from outside the manylinux policy.
    bundled = [n for n in names if ".libs/" in n]
    assert len(bundled) == 1 and bundled[0].startswith("framecache.libs/libjpeg-"), bundled
    assert "framecache/py.typed" in names and "framecache/_native.pyi" in names


# Names and messages of the Rust crate's test hooks (feature `test-hooks`): the lock gate,
# fault injection, the in-memory origin, the fuzz entry points, counters of work in flight.
HOOK_NAMES = ("gate", "fault", "fuzz", "in_flight", "memory_origin")
HOOK_STRINGS = (b"lock gate: never released", b"injected read fault ratio")


def test_the_installed_module_has_no_test_hook():
    """The wheel is built without the crate's test hooks: none is reachable from Python,
    and none is compiled into the extension."""
    native = framecache._native
    hooks = [n for n in dir(native) if any(h in n.lower() for h in HOOK_NAMES)]
    assert hooks == [], hooks
    with pytest.raises(framecache.InvalidInputError, match="backend"):
        framecache.FrameCache(backend="memory")
    data = Path(native.__file__).read_bytes()
    assert [s for s in HOOK_STRINGS if s in data] == []


def test_the_wheel_installs_and_loads_without_a_toolchain(tmp_path):
    wheel = built_wheel()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in BASIC_TOOLS:
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    base_python = Path(sys._base_executable if hasattr(sys, "_base_executable") else sys.executable)
    (bin_dir / "python3").symlink_to(base_python.resolve())
    env = {
        "PATH": str(bin_dir),
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "LANG": "C.UTF-8",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    for name in ("PIP_INDEX_URL", "PIP_FIND_LINKS", "PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        if name in os.environ:
            env[name] = os.environ[name]

    def run(*args: str) -> str:
        proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{args}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout

    venv = tmp_path / "venv"
    run(str(bin_dir / "python3"), "-m", "venv", str(venv))
    env["PATH"] = f"{venv / 'bin'}:{bin_dir}"
    env["VIRTUAL_ENV"] = str(venv)
    python = str(venv / "bin" / "python")
    no_toolchain = run(python, "-c", f"import shutil; print([t for t in {TOOLCHAIN!r} if shutil.which(t)])")
    assert no_toolchain.strip() == "[]", no_toolchain
    run(python, "-m", "pip", "install", "-q", str(wheel))

    script = textwrap.dedent(
        f"""
        import os, numpy as np, framecache
        from framecache import FrameCache, frames
        assert "site-packages" in framecache.__file__, framecache.__file__
        assert framecache.JPEG_ENCODER == "libjpeg-turbo", framecache.JPEG_ENCODER
        root = {str(tmp_path / "origin")!r}
        os.makedirs(root)
        fc = FrameCache(backend="fs", root=root, cache_dir={str(tmp_path / "disk")!r})
        made = [framecache.synthetic_frame(i, width=64, height=48) for i in range(5)]
        fc.cache_frames("tl-wheel", made)
        loaded = FrameCache(backend="fs", root=root, cache_dir={str(tmp_path / "disk2")!r}).load_frames("tl-wheel")
        assert [f.sequence for f in loaded] == list(range(5))
        assert loaded[3].image.shape == (48, 64, 3)
        assert np.abs(loaded[3].image.astype(int) - made[3].image.astype(int)).mean() < 8
        print("loaded", len(loaded))
        """
    )
    assert run(python, "-c", script).strip() == "loaded 5"
