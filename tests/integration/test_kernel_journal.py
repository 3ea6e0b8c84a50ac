"""The cellar kernel's session journal and the extension's silent activation, through the
"cellar" kernelspec as `pip install .` installed it: the cells a real jupyter_client sends
are listed by `cellar journal` with their outcomes, a store that cannot be written only
stops the journal, `%cellar run` works with no `%load_ext`, and `cellar journal --limit`
and `--prune` show the newest cells and cap the journal, keeping its definition cells."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from conftest import cellar_bin
from journal_client import CellarKernel, journal, wait_for, wait_journal


@pytest.fixture
def cellar_kernel(tmp_path):
    started = []

    def make(**kw) -> CellarKernel:
        k = CellarKernel(tmp_path, **kw)
        started.append(k)
        return k

    yield make
    for k in started:
        k.stop()


def replies(k: CellarKernel, msg_ids: list[str], timeout: float = 60) -> dict[str, dict]:
    """The execute_replies to `msg_ids`, by msg_id."""
    out: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    while len(out) < len(msg_ids):
        r = k.kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
        if r["parent_header"].get("msg_id") in msg_ids:
            out[r["parent_header"]["msg_id"]] = r["content"]
    return out


def test_cells_are_journaled_with_their_outcomes(cellar_kernel):
    k = cellar_kernel()
    session = k.session()
    start = time.time_ns()
    k.ok("x = 1", cell_id="cell-x")
    assert k.run("1/0", cell_id="cell-err").status == "error"
    # A failing cell with stop_on_error aborts the one queued behind it.
    failing = k.kc.execute("import time; time.sleep(0.5); raise ValueError('no')")
    aborted = k.kc.execute("y = 2")
    got = replies(k, [failing, aborted])
    assert got[failing]["status"] == "error" and got[aborted]["status"] == "aborted"
    # ipykernel aborts what arrives just after an error (stop_on_error); wait that out.
    assert wait_for(lambda: k.run("pass").status == "ok", timeout=10)
    k.ok("x = 1")  # the same code again: the same hash

    cells = [c for c in wait_journal(k.store, 7) if c["session"] == session]
    cells = [c for c in cells if c["code"] != "pass"]
    codes = [c["code"] for c in cells]
    assert codes == ["__import__('os').environ['CELLAR_KERNEL_SESSION']".join(
        ["print(repr(", "))"]), "x = 1", "1/0",
        "import time; time.sleep(0.5); raise ValueError('no')", "y = 2", "x = 1"]
    by = dict(zip(range(len(cells)), cells))
    assert [c["outcome"] for c in cells] == ["ok", "ok", "error", "error", "aborted", "ok"]
    assert by[2]["ename"] == "ZeroDivisionError" and by[3]["ename"] == "ValueError"
    assert by[1]["cell_id"] == "cell-x" and by[2]["cell_id"] == "cell-err"
    assert by[0]["cell_id"] == ""
    assert by[1]["code_hash"] == by[5]["code_hash"] != by[2]["code_hash"]
    assert len(by[1]["code_hash"]) == 32
    counts = [c["execution_count"] for c in cells if c["outcome"] != "aborted"]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)
    assert all(start - 10**9 < c["start_ns"] < time.time_ns() for c in cells)
    assert by[3]["duration_ns"] >= 0.5e9 > by[1]["duration_ns"] > 0
    assert not any(c["silent"] for c in cells)

    text = subprocess.run([cellar_bin(), "journal", "--dir", str(k.store)],
                          capture_output=True, text=True, check=True).stdout
    assert f"session {session}" in text
    assert "error (ZeroDivisionError)" in text and "aborted" in text and "cell-x" in text

    # After a restart the new proxy is a new session; --session picks one.
    k.restart()
    other = k.session()
    assert other != session
    k.ok("z = 3")
    assert wait_for(lambda: len(journal(k.store, "--session", other)) == 2)
    assert [c["code"] for c in journal(k.store, "--session", other)][1] == "z = 3"
    assert len([c for c in journal(k.store, "--session", session) if c["code"] != "pass"]) == 6


def test_the_extension_is_loaded_silently_and_records_runs_not_cells(cellar_kernel):
    k = cellar_kernel()
    first = k.ok("def a():\n    return 41 + 1\n", cell_id="def-a")
    assert first.stdout == "" and first.stderr == "" and not first.displays
    assert k.eval("'cellar' in get_ipython().extension_manager.loaded") is True
    r = k.cellar_run("a").ok()
    assert r.report.status("a") == "computed" and k.eval("_v") == 42
    assert "cellar: store" not in k.proxy_log()
    # One journal entry per cell, whoever else records: the run is in the store's runs.
    cells = wait_journal(k.store, 4)
    assert [c["code"] for c in cells].count("_v = %cellar run a") == 1
    log = subprocess.run([cellar_bin(), "log", "--dir", str(k.store), "--json"],
                         capture_output=True, text=True, check=True).stdout
    assert log.count('"a"') >= 1
    # A later %load_ext is harmless.
    assert k.ok("%load_ext cellar").status == "ok"


def test_a_store_that_cannot_be_written_only_stops_the_journal(cellar_kernel, tmp_path):
    k = cellar_kernel()
    k.ok("x = 1")
    assert wait_for(lambda: len(journal(k.store)) == 1)
    before = journal(k.store)
    k.stop()
    # Read-only for root too: a read-only bind mount over the store.
    store = str(k.store)
    if subprocess.run(["mount", "--bind", store, store], capture_output=True).returncode:
        pytest.skip("cannot bind-mount here")
    try:
        assert subprocess.run(["mount", "-o", "remount,ro,bind", store, store]).returncode == 0
        (tmp_path / "kernel.stderr").write_text("")
        k.start()
        for i in range(5):
            assert k.ok(f"print({i} * 2)").stdout == f"{i * 2}\n"
        assert k.run("1/0").status == "error"
        log = k.proxy_log()
        assert log.count("the journal is off") == 1, log
        assert "read-only" in log
        k.stop()
        assert journal(k.store) == before
    finally:
        subprocess.run(["umount", "-l", store])


def test_interrupted_cells_and_sigterm_of_the_proxy(cellar_kernel):
    import signal

    from proxy_client import proxy_pid, wait_gone

    k = cellar_kernel()
    k.ok("a = 1")
    child = k.child_pid()
    msg_id = k.kc.execute("import time; time.sleep(30)")
    time.sleep(1.0)
    k.km.interrupt_kernel()  # signal mode: SIGINT to the process group
    got = replies(k, [msg_id])
    assert got[msg_id]["status"] == "error" and got[msg_id]["ename"] == "KeyboardInterrupt"
    # ipykernel aborts what arrives just after an error (stop_on_error); wait that out.
    assert wait_for(lambda: k.run("pass").status == "ok", timeout=10)
    assert k.child_pid() == child  # the same kernel: the proxy survived, the child went on
    k.ok("b = 2")
    proxy = proxy_pid(k.km)
    os.kill(proxy, signal.SIGTERM)
    assert wait_gone([proxy, child], timeout=5) == []
    # Everything relayed before the signal is in the journal, written on the way out.
    cells = journal(k.store)
    rows = [(c["code"], c["outcome"], c["ename"]) for c in cells]
    assert ("import time; time.sleep(30)", "error", "KeyboardInterrupt") in rows
    assert rows[-2:] == [("print(repr(__import__('os').getpid()))", "ok", ""),
                         ("b = 2", "ok", "")]
    k.km = None  # already gone
    k.kc.stop_channels()
    k.kc = None


def test_a_full_store_only_stops_the_journal(cellar_kernel, tmp_path):
    store = tmp_path / "store"
    store.mkdir(mode=0o700)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(store)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        k = cellar_kernel()
        k.ok("x = 1")
        assert wait_for(lambda: len(journal(k.store)) == 1)
        # Fill the filesystem to its last page.
        fd = os.open(store / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
        for chunk in (1 << 16, 4096):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError:
                pass
        os.close(fd)
        for i in range(60):  # 240 KiB of journal: more than the pages LMDB had free
            assert k.ok(f"v{i} = {'x' * 4000!r}").status == "ok"
        assert wait_for(lambda: "the journal stopped" in k.proxy_log())
        assert k.ok("print('still relaying')").stdout == "still relaying\n"
        log = k.proxy_log()
        assert log.count("the journal stopped") == 1, log
        assert "full" in log.split("the journal stopped", 1)[1].splitlines()[0], log
        k.stop()
    finally:
        subprocess.run(["umount", "-l", str(store)])


def test_limit_and_prune_from_the_command_line(cellar_kernel):
    k = cellar_kernel()  # the default cap (10000 cells) is far away
    first = k.session()
    k.ok("import math\n", cell_id="imports")
    for i in range(9):
        k.ok(f"_ = len('{i}')", cell_id=f"c{i}")  # a call: computes
    k.stop()
    cells = wait_journal(k.store, 11)
    assert len(cells) == 11, cells
    newest = journal(k.store, "--limit", "3")
    assert [c["code"] for c in newest] == ["_ = len('6')", "_ = len('7')", "_ = len('8')"]
    only = journal(k.store, "--session", first, "--limit", "20")
    assert len(only) == 11
    # Each cell says whether recovery and restore would run it again, and why not.
    by_code = {c["code"]: c for c in cells}
    assert by_code["import math\n"]["definition"] is True
    assert by_code["import math\n"]["why_not"] is None
    assert by_code["_ = len('3')"]["definition"] is False
    assert by_code["_ = len('3')"]["why_not"] == \
        "line 1 assigns the result of a call (`_ = len('3')`)"
    # --prune with a cap of 4: down to 90% of it rounded up (4), the definition cell
    # kept (the session() cell computes and goes first).
    env = dict(os.environ, CELLAR_JOURNAL_MAX_CELLS="4")
    out = subprocess.run([cellar_bin(), "journal", "--dir", str(k.store), "--prune"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert "pruned 7 cells; the journal holds 4 " in out.stdout, out.stdout
    left = [c["code"] for c in journal(k.store)]
    assert left == ["import math\n", "_ = len('6')", "_ = len('7')", "_ = len('8')"], left
    # Within the cap: nothing more goes.
    out = subprocess.run([cellar_bin(), "journal", "--dir", str(k.store), "--prune",
                          "--json"], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert '"pruned": 0' in out.stdout and '"cells": 4' in out.stdout, out.stdout
    bad = subprocess.run([cellar_bin(), "journal", "--dir", str(k.store), "--prune",
                          "--limit", "2"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--prune takes no" in bad.stderr
