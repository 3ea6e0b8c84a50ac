"""Crash recovery and `%cellar restore` under the cellar kernel, through real jupyter_client
clients on the installed "cellar" kernelspec.  Node bodies and computing cells record that
they ran in calls.log (journal_client.helper), so "nothing reran" is a side effect counted,
not a report trusted.  With the journal capped (CELLAR_JOURNAL_MAX_CELLS), a crash still
replays the session's definitions and a new kernel still restores them."""

from __future__ import annotations

import os
import queue
import signal
import time
from collections import Counter

import pytest

from conftest import Kernel
from journal_client import CellarKernel, helper, journal, wait_for, wait_journal

NODES = """\
import math
def a():
    _log("a")
    return 2

def b(a):
    _log("b")
    return a * THRESHOLD_SCALE

class Box:
    size = 3
    def grow(self, n):
        return n * self.size

def c(b):
    _log("c")
    return Box().grow(b) + math.floor(0.5)
"""
LITERALS = "THRESHOLD_SCALE = 10\nNAMES = ['x', 'y']\n"
COMPUTES = "_log('computed')\nTOTAL = len(NAMES)\n"


@pytest.fixture
def cellar_kernel(tmp_path):
    started = []

    def make(workdir=None, **kw) -> CellarKernel:
        k = CellarKernel(workdir or tmp_path, **kw)
        started.append(k)
        return k

    yield make
    for k in started:
        k.stop()


def define(k: Kernel) -> None:
    k.ok(helper(k.dir), cell_id="helper")
    k.ok(LITERALS, cell_id="literals")
    k.ok(NODES, cell_id="nodes")
    k.ok(COMPUTES, cell_id="computes")
    assert k.cellar_run("c").ok().report.status("c") == "computed"
    assert k.eval("_v") == 60
    assert k.take_calls() == Counter({"a": 1, "b": 1, "c": 1, "computed": 1})


def test_kill_9_mid_cell_restores_the_definitions(cellar_kernel):
    k = cellar_kernel()
    define(k)
    child = k.child_pid()
    msg = k.kc.session.msg("execute_request", {
        "code": "import time; time.sleep(60)", "silent": False, "store_history": True,
        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})
    k.kc.shell_channel.send(msg)
    time.sleep(1.0)
    os.kill(child, signal.SIGKILL)
    while True:
        reply = k.kc.get_shell_msg(timeout=30)
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            break
    content = reply["content"]
    assert content["status"] == "error" and content["ename"] == "KernelDied"
    assert "killed by signal 9" in content["evalue"]
    assert "restored this session's definitions (3 cells" in content["evalue"]
    assert wait_for(lambda: "replayed 3 definition cells" in k.proxy_log())

    # Frontends saw none of the replay: no input, output or reply of those cells.
    seen = []
    while True:
        try:
            seen.append(k.kc.get_iopub_msg(timeout=0.5))
        except queue.Empty:
            break
    ours = [m for m in seen if m["parent_header"].get("msg_id") != msg["header"]["msg_id"]]
    # (The new child's own start-up messages have no parent; a replayed cell's would.)
    assert all(not m["parent_header"] and m["msg_type"] != "execute_input" for m in ours), \
        [(m["msg_type"], m["parent_header"], m["content"]) for m in ours]
    assert any(m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
               for m in ours)

    new_child = k.child_pid()
    assert new_child != child
    # The nodes are back and load from the store: no body reran, and the computing cell
    # was not replayed (calls.log would say "computed").
    r = k.cellar_run("c").ok()
    assert r.report.with_status("loaded") == {"c"} or r.report.status("c") == "loaded"
    assert k.eval("_v") == 60
    assert k.take_calls() == Counter()
    assert k.eval("THRESHOLD_SCALE") == 10 and k.eval("NAMES") == ["x", "y"]
    assert k.eval("Box().grow(2)") == 6
    assert k.error("TOTAL") == "NameError"
    log = k.proxy_log()
    assert "not replaying cell [4]: line 1 calls a function (`_log('computed')`)" in log, log
    # The died cell is in the journal as an error.
    cells = wait_journal(k.store, 9)
    died = [c for c in cells if c["code"] == "import time; time.sleep(60)"]
    assert died and died[0]["outcome"] == "error" and died[0]["ename"] == "KernelDied"


def restore_timed(k: Kernel) -> tuple[float, str]:
    r = k.ok("import time as _t\n_t0 = _t.perf_counter()\n"
             "get_ipython().run_line_magic('cellar', 'restore')\n"
             "print('took', _t.perf_counter() - _t0)\n")
    took = float(r.stdout.rsplit("took", 1)[1])
    return took, r.stdout


def test_restore_after_a_restart(cellar_kernel):
    k = cellar_kernel()
    define(k)
    assert k.run("1/0", cell_id="broken").status == "error"
    k.restart()
    assert k.error("c") == "NameError"
    out = k.ok("%cellar restore").stdout
    assert "restored" in out and "skipped" in out
    assert "calls a function" in out  # the computing cell, and why
    assert "with an error (ZeroDivisionError)" in out
    assert "%cellar run c" in out  # listed as skipped: a magic
    assert "3 restored, 4 skipped, 0 failed; nodes: a, b, c" in out, out
    r = k.cellar_run("c").ok()
    assert r.report.status("c") == "loaded"
    assert k.eval("_v") == 60 and k.eval("THRESHOLD_SCALE") == 10
    assert k.take_calls() == Counter()
    assert k.error("TOTAL") == "NameError"
    # Restart again: the session before held only the restore; it restores the one before.
    k.restart()
    out = k.ok("%cellar restore").stdout
    assert "restoring" in out and "nodes: a, b, c" in out, out
    assert k.cellar_run("c").ok().report.status("c") == "loaded"
    assert k.take_calls() == Counter()
    # A crash now replays that %cellar restore cell, which restores the same again.
    os.kill(k.child_pid(), signal.SIGKILL)
    assert wait_for(lambda: "replayed 1 definition cell into" in k.proxy_log(), timeout=30)
    assert k.cellar_run("c").ok().report.status("c") == "loaded"
    assert k.eval("_v") == 60
    assert k.take_calls() == Counter()


BIG = """\
def payload():
    _log("payload")
    return b"x" * SIZE
"""


# 256 MiB by default; the 1 GiB with CELLAR_IT_HUGE=1.
LARGE = (1 << 30) if os.environ.get("CELLAR_IT_HUGE") == "1" else (256 << 20)


@pytest.mark.large
def test_restore_takes_no_longer_with_large_results(cellar_kernel, tmp_path):
    timings = {}
    for name, size in (("small", 1024), ("large", LARGE)):
        work = tmp_path / name
        work.mkdir()
        k = cellar_kernel(work)
        k.ok(helper(work))
        k.ok(f"SIZE = {size}")
        k.ok(BIG)
        k.cellar_run("payload").ok()
        k.ok("del _v")
        assert k.take_calls() == Counter({"payload": 1})
        k.stop()
        # The next morning, in a plain ipykernel with %load_ext (no cellar kernel).
        plain = Kernel(work)
        try:
            plain.ok("%load_ext cellar")
            timings[name], out = min((restore_timed(plain) for _ in range(2)),
                                     key=lambda t: t[0])
            assert "nodes: payload" in out
            # The kernel's peak RSS (VmHWM: of this program, where ru_maxrss would count
            # the forking parent's) stays far below the large result: it was never loaded.
            hwm = plain.eval("[int(ln.split()[1]) for ln in open('/proc/self/status') "
                             "if ln.startswith('VmHWM')][0]")
            assert hwm < 200 * 1024, (name, hwm, out)  # KiB
            r = plain.cellar_run("payload").ok()
            assert r.report.status("payload") == "loaded"
            assert plain.eval("len(_v)") == size
            assert plain.take_calls() == Counter()
        finally:
            plain.stop()
    assert timings["large"] < max(3 * timings["small"], timings["small"] + 0.05), timings


def test_a_replayed_cell_that_kills_the_kernel_is_not_replayed_again(cellar_kernel, tmp_path):
    # boom.py kills its process on import once tmp/armed exists: harmless the first time.
    (tmp_path / "boom.py").write_text(
        "import os, signal\n"
        f"if os.path.exists({str(tmp_path / 'armed')!r}):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n")
    k = cellar_kernel()
    k.ok("import boom\nN = 1\n")
    (tmp_path / "armed").write_text("")
    child = k.child_pid()
    os.kill(child, signal.SIGKILL)
    assert wait_for(lambda: "the new one gets none" in k.proxy_log(), timeout=30), k.proxy_log()
    # The third kernel starts bare and serves: the proxy did not give up.
    assert k.error("N") == "NameError"
    assert k.eval("1 + 1") == 2
    assert k.proxy_log().count("replayed 1 definition cell") == 0


def test_a_capped_journal_still_recovers_and_restores_the_definitions(cellar_kernel):
    # A cap of 12 cells; the session's 3 definition cells come first and 30 computing
    # cells after them push them far past it.
    k = cellar_kernel(extra_env={"CELLAR_JOURNAL_MAX_CELLS": "12"})
    define(k)
    for i in range(30):
        k.ok(f"_ = len(NAMES) + {i}", cell_id=f"filler-{i}")
    assert wait_for(lambda: any(c["code"] == "_ = len(NAMES) + 29" for c in journal(k.store)))
    cells = journal(k.store)
    codes = [c["code"] for c in cells]
    assert len(cells) <= 12, codes
    # The definitions stay, oldest first; the oldest computing cells went.
    assert [c["cell_id"] for c in cells[:3]] == ["helper", "literals", "nodes"], codes
    assert COMPUTES not in codes and "_ = len(NAMES) + 0" not in codes
    assert codes[-1] == "_ = len(NAMES) + 29"
    newest = journal(k.store, "--limit", "2")
    assert [c["code"] for c in newest] == ["_ = len(NAMES) + 28", "_ = len(NAMES) + 29"]

    # A crash replays the session's definitions (the proxy keeps them in memory too).
    os.kill(k.child_pid(), signal.SIGKILL)
    assert wait_for(lambda: "replayed 3 definition cells" in k.proxy_log(), timeout=30), \
        k.proxy_log()
    assert k.cellar_run("c").ok().report.status("c") == "loaded"
    assert k.eval("_v") == 60
    assert k.take_calls() == Counter()

    # A new kernel restores them from the pruned journal: nothing computed again.
    k.restart()
    assert k.error("c") == "NameError"
    out = k.ok("%cellar restore").stdout
    assert "3 restored" in out and "nodes: a, b, c" in out, out
    assert k.cellar_run("c").ok().report.status("c") == "loaded"
    assert k.eval("_v") == 60 and k.eval("THRESHOLD_SCALE") == 10
    assert k.take_calls() == Counter()
    assert len(journal(k.store)) <= 12


DATACLASSES = """\
from dataclasses import dataclass, field
from typing import Optional, TypeVar
T = TypeVar("T", bound="Cfg")
Maybe = Optional[int]

@dataclass(frozen=True)
class Cfg:
    x: int = field(default=3)
    tags: list = field(default_factory=list)
    limit: Maybe = None
"""
# A near miss: field() whose default is computed by a call with a side effect.
NEAR_MISS = """\
@dataclass
class Bad:
    y: int = field(default=_log("bad") or 1)
"""


def test_restore_replays_dataclass_fields_but_not_a_computed_default(cellar_kernel):
    k = cellar_kernel()
    k.ok(helper(k.dir), cell_id="helper")
    k.ok(DATACLASSES, cell_id="dataclasses")
    k.ok(NEAR_MISS, cell_id="near-miss")
    assert k.take_calls() == Counter({"bad": 1})
    k.restart()
    out = k.ok("%cellar restore").stdout
    assert "2 restored, 1 skipped, 0 failed" in out, out
    assert "assigns the result of a call" in out, out
    assert k.eval("(Cfg().x, Cfg().tags, Cfg().limit, T.__name__)") == (3, [], None, "T")
    assert k.error("Bad") == "NameError"
    assert k.take_calls() == Counter()  # the near miss's _log("bad") did not run again
