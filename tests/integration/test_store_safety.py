"""The store's safety rules, through real kernels and the real `cellar` binary: a store is
created 0700, and a store that group or others can write, or that another user owns, is
refused by `%load_ext cellar`, by `%cellar dir` and by `cellar ls`, with the reason (loading a
pickle runs code), and without being used or changed.

Tests run as root, so "another user" is uid 65534 (nobody) via chown.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import textwrap
from pathlib import Path

import pytest

from conftest import HELPER, Kernel, calls
from test_cli import CELLAR, cellar

pytestmark = pytest.mark.skipif(CELLAR is None, reason="no cellar binary")

NODE = textwrap.dedent(
    """\
    def answer():
        _log("answer")
        return 42
    """
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def snapshot(path: Path) -> dict[str, tuple[int, int]]:
    """Name -> (size, mtime_ns) of every file in a store dir: to show it was not written."""
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(path.iterdir())}


@pytest.fixture(scope="module")
def good_store(tmp_path_factory) -> Path:
    """A store in which a real kernel computed `answer` (then shut down)."""
    work = tmp_path_factory.mktemp("safety")
    k = Kernel(work)
    try:
        k.setup()
        k.ok(NODE, cell_id="nodes")
        k.cellar_run("answer").ok()
        assert k.take_calls() == calls("answer")
    finally:
        k.stop()
    assert mode(k.store) == 0o700
    return k.store


# ---- creation --------------------------------------------------------------------------

def test_new_store_dir_is_created_0700(kernel_factory, tmp_path):
    store = tmp_path / "deep" / "new" / "store"
    k = kernel_factory(cellar_dir=store)
    assert not store.exists()
    res = k.ok("%load_ext cellar")
    assert store.is_dir()
    assert mode(store) == 0o700, oct(mode(store))
    assert f"cellar: store {store}" in res.stdout
    # Whatever files LMDB made are private too.
    for p in store.iterdir():
        assert mode(p) & 0o077 == 0, (p, oct(mode(p)))


def test_default_store_is_dot_cellar_0700(kernel_factory, tmp_path):
    k = kernel_factory(cellar_dir=None)
    k.ok("%load_ext cellar")
    assert mode(tmp_path / ".cellar") == 0o700


# ---- refusing unsafe stores --------------------------------------------------------------

UNSAFE = {
    "dir-0777": ("dir", 0o777, "writable by"),
    "dir-0770": ("dir", 0o770, "writable by its group"),
    "dir-0702": ("dir", 0o702, "writable by others"),
    "data.mdb-0666": ("data.mdb", 0o666, "writable by"),
    "dir-owned-by-nobody": ("dir", "chown", "owned by uid 65534"),
    "data.mdb-owned-by-nobody": ("data.mdb", "chown", "owned by uid 65534"),
}


def make_unsafe(good: Path, dest: Path, what: str, how) -> Path:
    shutil.copytree(good, dest)
    target = dest if what == "dir" else dest / what
    if how == "chown":
        os.chown(target, 65534, 65534)
    else:
        os.chmod(target, how)
    return dest


def assert_explains(text: str, reason: str, path: Path):
    assert "refusing the cellar store" in text, text
    assert reason in text, text
    assert str(path) in text, text
    assert "loading a pickle runs code" in text, text


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
@pytest.mark.parametrize("case", list(UNSAFE))
def test_cli_refuses_unsafe_store(good_store, tmp_path, case):
    what, how, reason = UNSAFE[case]
    store = make_unsafe(good_store, tmp_path / "store", what, how)
    before = snapshot(store)
    for cmd in (["ls"], ["stats", "--json"], ["verify"], ["show", "answer"]):
        proc = cellar(*cmd, "--dir", store)
        # verify's status 2 means "the check could not run" (cellar --help)
        assert proc.returncode == (2 if cmd == ["verify"] else 1), \
            (cmd, proc.returncode, proc.stdout, proc.stderr)
        assert proc.stdout == ""
        assert_explains(proc.stderr, reason, store)
    assert snapshot(store) == before


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
@pytest.mark.parametrize("case", ["dir-0777", "dir-0770", "dir-owned-by-nobody"])
def test_load_ext_refuses_unsafe_store(good_store, kernel_factory, tmp_path, case):
    what, how, reason = UNSAFE[case]
    store = make_unsafe(good_store, tmp_path / "store", what, how)
    before = snapshot(store)
    k = kernel_factory(cellar_dir=store)
    res = k.run("%load_ext cellar")
    assert res.status == "error", res.describe()
    assert_explains(res.error_text, reason, store)
    assert "cellar: store" not in res.stdout
    # The store is not used: no store is open, so nothing can be loaded from it...
    k.ok(HELPER)
    k.ok("import cellar")
    assert k.eval("cellar.store_path()") is None
    # ...and nothing was written to it, nor were its permissions "fixed" behind our back.
    assert snapshot(store) == before
    if how == "chown":
        assert store.stat().st_uid == 65534
    else:
        assert mode(store) == how


def test_cellar_dir_refuses_unsafe_and_keeps_previous_store(good_store, kernel_factory,
                                                             tmp_path):
    # Built in this test's directory: `_log` reads the log path (cwd-dependent), so answer's
    # code version, hence its key, depends on the kernel's working directory.
    first = kernel_factory()
    first.setup()
    first.ok(NODE, cell_id="nodes")
    first.cellar_run("answer").ok()
    assert first.take_calls() == calls("answer")
    first.stop()
    store = first.store
    unsafe = tmp_path / "unsafe"
    unsafe.mkdir(mode=0o700)
    os.chmod(unsafe, 0o777)  # mkdir's mode is filtered by the umask
    k = kernel_factory(cellar_dir=store)
    k.setup()
    k.ok(NODE, cell_id="nodes")

    res = k.run(f"%cellar dir {unsafe}")
    assert res.status == "error", res.describe()
    assert_explains(res.error_text, "writable by", unsafe)
    assert list(unsafe.iterdir()) == [], "nothing is created in a refused store"
    assert mode(unsafe) == 0o777
    assert k.eval("__import__('cellar').store_path()") == str(store)

    # The previous store is still the one in use: answer loads from it, its body does not run.
    rep = k.cellar_run("answer").ok().report
    assert rep.status("answer") == "loaded"
    assert k.take_calls() == calls()
    assert k.eval("_v") == 42

    # Owned by someone else: refused the same way (when we can chown).
    if os.geteuid() == 0:
        other = tmp_path / "other"
        shutil.copytree(good_store, other)
        os.chown(other, 65534, 65534)
        res = k.run(f"%cellar dir {other}")
        assert res.status == "error", res.describe()
        assert_explains(res.error_text, "owned by uid 65534", other)
        k.ok("import cellar; cellar.forget_memory()")  # so that answer must come from a store
        rep = k.cellar_run("answer").ok().report
        assert rep.status("answer") == "loaded"
        assert k.take_calls() == calls()

    # A safe directory is accepted afterwards (the refusal left the extension usable).
    fresh = tmp_path / "fresh"
    res = k.ok(f"%cellar dir {fresh}")
    assert f"cellar: store {fresh}" in res.stdout
    assert mode(fresh) == 0o700
    k.ok("import cellar; cellar.forget_memory()")
    assert k.cellar_run("answer").ok().report.status("answer") == "computed"
    assert k.take_calls() == calls("answer")
