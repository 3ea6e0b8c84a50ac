"""Issue 11: generated notebooks and edits (notebook_gen.py) through the "cellar" kernelspec
(cellar-kernel in front of ipykernel), with faults injected at random steps:

- ``between``: kill -9 of the child ipykernel between cells;
- ``mid_cell``: kill -9 of the child while a node body runs inside ``%cellar run`` (``_log``
  sleeps while the file ``slow`` exists): that cell must get the ``KernelDied`` error reply;
- ``restart``: a kernel restart through jupyter_client (``restart_kernel``), then
  ``%cellar restore``.

After a crash the proxy replays the session's definition cells; after a restart
``%cellar restore`` re-defines them. Then, as a user would, the cells whose names the kernel
lacks (the ones that compute, which neither replays) are run again, in notebook order, in the
kernel and in the oracle's replica. Every global the recovery brought back must hold the value
it had before the fault. The next ``%cellar run`` must give values equal to a fresh computation
in the same kernel, and the bodies that run (counted from calls.log) must be exactly those the
oracle (test_random_notebooks.Session: a key never computed in this store) expects: after
``between`` and ``restart`` nothing the oracle had computed runs again; after ``mid_cell`` the
nodes of the killed run that had not finished must run, and the ones that had finished may run
again (they may or may not have been committed), nothing else.

A session stops at its first failure and prints the seed, the fault schedule, every step and
fault before it, the notebook, and every cell the kernel was sent, so that it can be replayed:
``CELLAR_FAULTS_SEEDS=7 CELLAR_FAULTS_FEATURES=closures pytest test_random_faults.py``.
``CELLAR_FAULTS_STEPS`` (default 12) sets the steps per seed; at least one fault of each kind
is injected when there are three steps or more, and the other steps get one with probability
``CELLAR_FAULTS_RATE`` (default 0.25).
"""

from __future__ import annotations

import ast
import os
import random
import signal
import textwrap
import time
import warnings
from collections import Counter

import pytest

from journal_client import CellarKernel, journal, wait_for
from notebook_gen import FEATURE_SETS, Step
from test_random_notebooks import Session

STEPS = int(os.environ.get("CELLAR_FAULTS_STEPS", "12"))
RATE = float(os.environ.get("CELLAR_FAULTS_RATE", "0.25"))
# 1: the known bug below (a superseded definition replayed) fails the session instead of a
# warning and a re-run of that cell.
STRICT = os.environ.get("CELLAR_FAULTS_STRICT") == "1"
KINDS = ("between", "mid_cell", "restart")


def _features(name: str) -> tuple:
    """A feature set without the in-cell run (its cells are magics: a recovery replays none
    of them, and the oracle would have to model which half came back)."""
    return tuple(f for f in FEATURE_SETS[name] if f not in ("edit_and_run", "unicode"))


if os.environ.get("CELLAR_FAULTS_SEEDS"):
    CASES = [(os.environ.get("CELLAR_FAULTS_FEATURES", "mixed"), int(s))
             for s in os.environ["CELLAR_FAULTS_SEEDS"].split(",")]
else:
    CASES = [("mixed", 1), ("closures", 2), ("data_functions", 3), ("core", 4)]

# A canonical text of a global's value, the same in this process and in the kernel (set
# iteration order depends on the process's string hashing).
CANON = textwrap.dedent(
    """\
    def _canon(v):
        if isinstance(v, (set, frozenset)):
            return repr(sorted(map(repr, v)))
        return repr(v)
    """
)
_local = {}
exec(CANON, _local)
canon = _local["_canon"]


def helper(workdir) -> str:
    """journal_client.helper's side-effect helper (its paths are literals, so the cell is a
    definition that recovery replays), which sleeps after logging while `slow` exists."""
    return textwrap.dedent(f"""\
        LOG = {str(workdir / "calls.log")!r}
        SLOW = {str(workdir / "slow")!r}
        def _log(name):
            with open(LOG, "a") as f:
                f.write(name + "\\n")
            import os, time
            while os.path.exists(SLOW):
                time.sleep(0.05)
        """)


def replays(k: CellarKernel) -> int:
    """How many crash recoveries the proxy has finished replaying into a new kernel."""
    log = k.proxy_log()
    return log.count("into the new kernel") + log.count("the new one gets none")


@pytest.mark.parametrize("features,seed", CASES, ids=[f"{n}-seed{s}" for n, s in CASES])
def test_random_faults(tmp_path, features, seed):
    k = CellarKernel(tmp_path)
    try:
        s = FaultSession(k, seed, _features(features))
        failure = s.run(STEPS)
        if failure is not None:
            pytest.fail(s.text(failure, features), pytrace=False)
    finally:
        k.stop()


class FaultSession(Session):
    """test_random_notebooks.Session on the cellar kernel, with faults at random steps."""

    def __init__(self, kernel: CellarKernel, seed: int, features):
        super().__init__(kernel, seed, features)
        self.slow = kernel.dir / "slow"
        self.known: list = []  # the known bug, each time it showed (a warning, not a failure)
        frng = random.Random(f"faults-{seed}")  # apart from the generator's: same notebooks
        self.schedule: dict[int, str] = {}
        kinds = list(KINDS)
        frng.shuffle(kinds)
        for i, kind in zip(frng.sample(range(1, STEPS + 1), min(3, STEPS)), kinds):
            self.schedule[i] = kind
        for i in range(1, STEPS + 1):
            if i not in self.schedule and frng.random() < RATE:
                self.schedule[i] = frng.choice(KINDS)

    def text(self, failure, features: str) -> str:
        plan = ", ".join(f"step {i}: {kind}" for i, kind in sorted(self.schedule.items()))
        return (f"fault schedule: {plan}\n"
                f"replay: CELLAR_FAULTS_SEEDS={self.seed} CELLAR_FAULTS_FEATURES={features} "
                f"CELLAR_FAULTS_STEPS={STEPS} CELLAR_FAULTS_RATE={RATE} "
                f"pytest tests/integration/test_random_faults.py\n"
                + failure.text()
                + f"\n--- cellar-kernel's stderr (last 3000 characters):\n{self.k.proxy_log()[-3000:]}")

    # -- the kernel's first cells: the literal helper, so that recovery brings it back --------
    def _setup(self) -> None:
        self.k.ok("%load_ext cellar\n", cell_id="load")
        self.k.ok(helper(self.k.dir), cell_id="helper")
        self.script.append("# --- cells load (%load_ext cellar) and helper (literal LOG and SLOW, _log)")

    # -- the loop ----------------------------------------------------------------------------
    def run(self, steps: int):
        f = self.start()
        for i in range(1, steps + 1):
            if f is not None:
                return f
            kind = self.schedule.get(i)
            if kind == "mid_cell":
                f = self._step_killed_mid_run(i)
                continue
            f = self.step(i)
            if f is None and kind == "between":
                f = self._fault_between(i)
            elif f is None and kind == "restart":
                f = self._fault_restart(i)
        return f

    # -- faults --------------------------------------------------------------------------------
    def _kill_child(self) -> tuple[int, int]:
        """kill -9 of the child ipykernel; returns (its pid, recoveries before)."""
        pid = self.k.child_pid()
        self.k.take_calls()
        before = replays(self.k)
        os.kill(pid, signal.SIGKILL)
        return pid, before

    def _await_recovery(self, pid: int, before: int) -> list:
        problems = []
        if not wait_for(lambda: replays(self.k) > before, timeout=60):
            return [f"no replay into a new kernel within 60 s after kill -9 of {pid}"]
        log = self.k.proxy_log()
        if "the new one gets none" in log.split("into the new kernel")[-1]:
            problems.append("the proxy gave the new kernel no definitions")
        if "a replayed cell failed in the new kernel" in log:
            problems.append("a replayed cell failed in the new kernel (see cellar-kernel's stderr)")
        new = self.k.child_pid()
        if new == pid:
            problems.append(f"the child's pid is still {pid} after kill -9")
        return problems

    def _recover(self) -> list:
        """After a replay or a restore: every global that came back must hold the value it
        had before the fault; then the cells that define a name the kernel lacks are run
        again in notebook order, in the kernel and in the replica."""
        m = self.model
        names = list(m.defs)
        r = self.k.run(CANON + f"print(repr({{n: _canon(globals()[n]) for n in {names!r} if n in globals()}}))")
        self.k.take_calls()
        if r.status != "ok":
            return [f"reading the kernel's names after recovery failed:\n{r.error_text}"]
        present = ast.literal_eval(r.stdout.strip().splitlines()[-1])
        problems, superseded = [], []
        for n, got in present.items():
            if m.defs[n].kind == "global":
                want = canon(self.replica.ns[n])
                if got != want:
                    cid = m.cell_of(n).cid
                    text = (f"recovery brought back {n} = {got}, but before the fault it was {want} "
                            f"(cell {cid}: {m.render(m.defs[n]).strip()})")
                    if not STRICT and self._superseded(cid):
                        superseded.append(cid)
                        self.known.append(text)
                        warnings.warn(f"seed {self.seed}: known bug (test_replay_skips_a_superseded_"
                                      f"definition): {text}", stacklevel=1)
                    else:
                        problems.append(text)
        missing = [c.cid for c in m.cells if set(c.names) - set(present) or c.cid in superseded]
        self.script.append(f"# --- recovery done; the test re-runs the cells defining a missing name: {missing}")
        for cid in missing:
            problems += self._exec(cid)
        return problems

    def _superseded(self, cid: str) -> bool:
        """The known bug: the cell's last version (as the journal has it) is not a definition
        but an earlier one was, and recovery replayed that one."""
        m = self.model
        src = m.cell_source(m.cell(cid))
        cells = [c for c in journal(self.k.store) if c["cell_id"] == cid and c["outcome"] == "ok"]
        last = [c for c in cells if c["code"] == src]
        return bool(last) and not last[-1]["definition"] and any(c["definition"] for c in cells)

    def _fault_between(self, i: int):
        pid, before = self._kill_child()
        self.script.append(f"# --- kill -9 of the child ipykernel (pid {pid}) between cells")
        problems = self._await_recovery(pid, before)
        problems += self._recover()
        return self._run_and_check(i, Step(f"FAULT kill -9 of the child between cells, crash recovery, "
                                           f"re-run of the cells it does not replay", []),
                                   problems, self._targets())

    def _fault_restart(self, i: int):
        self.k.restart()
        self.script.append("# --- restart the kernel (jupyter_client restart_kernel)")
        r = self._send("%cellar restore\n", None)
        problems = []
        if r.status != "ok" or ", 0 failed" not in r.stdout:
            problems.append(f"%cellar restore failed or a restored cell failed:\n{r.stdout}\n{r.error_text}")
        problems += self._recover()
        return self._run_and_check(i, Step("FAULT restart through jupyter_client, %cellar restore, "
                                           "re-run of the cells it does not restore", []),
                                   problems, self._targets())

    def _step_killed_mid_run(self, i: int):
        """An edit of a node's body, then `%cellar run` of every node, killed (kill -9 of the
        child) while the first body that runs sleeps in `_log`; then recovery and the run
        again. Falls back to a step and a kill between cells when nothing would run."""
        m, k = self.model, self.k
        st = self.gen._step(m, "node_body")
        self.replica.model = m
        targets = m.nodes()
        problems = []
        for cid in st.cells:
            problems += self._exec(cid)
        _, keys = self.replica.evaluate(targets)
        expected = {m.defs[n].name for n, key in keys.items() if key not in self.seen.get(n, set())}
        if not expected or problems:
            st.what += " (nothing would run: no kill in this run; a kill between cells after it)"
            f = self._run_and_check(i, st, problems, targets)
            return f if f is not None else self._fault_between(i)
        defined = k.take_calls()
        if defined:
            problems.append(f"executing the cells ran bodies: {dict(defined)}")
        self.slow.write_text("")
        child = k.child_pid()
        before = replays(k)
        line = self._run_line(targets)
        self.script.append(f"# --- cell without cellId (killed while a body sleeps)\n{line}")
        msg = k.kc.session.msg("execute_request", {
            "code": line, "silent": False, "store_history": True,
            "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})
        k.kc.shell_channel.send(msg)
        try:
            if not wait_for(lambda: k.log.exists() and k.log.read_text().strip(), timeout=60):
                problems.append("no body started within 60 s of the run")
            os.kill(child, signal.SIGKILL)
        finally:
            self.slow.unlink()
        deadline = time.monotonic() + 60
        reply = None
        while time.monotonic() < deadline:
            r = k.kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
            if r["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
                reply = r["content"]
                break
        order = k.calls()
        k.take_calls()
        if reply is None:
            problems.append("the killed run got no reply within 60 s")
        elif reply.get("status") != "error" or reply.get("ename") != "KernelDied" \
                or "killed by signal 9" not in reply.get("evalue", ""):
            problems.append(f"the killed run's reply is not the KernelDied error: {reply}")
        problems += self._await_recovery(child, before)
        problems += self._recover()
        # The body that slept (the last one logged) did not finish; those before it did and
        # may have been committed: they may run again or load. Every other body of the killed
        # run must run, and nothing else.
        sleeper = order[-1] if order else None
        unknown = set(order[:-1])
        for n, key in keys.items():
            if m.defs[n].name in unknown:
                self.seen.setdefault(n, set()).add(key)
        st.what += (f"; then {line} killed by kill -9 of the child while {sleeper} ran "
                    f"(bodies that had run, in order: {order}), crash recovery, re-run of the cells "
                    f"it does not replay; may run again: {sorted(unknown)}")
        return self._run_and_check(i, st, problems, targets, allowed=unknown)


# --- the bug these faults found --------------------------------------------------------------

@pytest.mark.xfail(strict=True, reason="known bug: crash recovery and %cellar restore replay a "
                   "definition cell that a later version of the same cell (a call: not replayed) "
                   "superseded, so the kernel gets back a value the notebook had overwritten")
@pytest.mark.parametrize("fault", ["kill -9", "restart + %cellar restore"])
def test_replay_skips_a_superseded_definition(tmp_path, fault):
    k = CellarKernel(tmp_path)
    try:
        k.ok(helper(tmp_path), cell_id="helper")
        k.ok('T = (1, "t")', cell_id="t")
        k.ok('def n():\n    _log("n")\n    return T[0]\n', cell_id="n")
        assert k.cellar_run("n").ok().report.status("n") == "computed"
        k.ok('T = tuple([5, "t"])', cell_id="t")  # the same cell, edited: now a call
        assert k.cellar_run("n").ok().report.status("n") == "computed"
        assert k.eval("_v") == 5
        assert k.take_calls() == Counter({"n": 2})
        if fault == "kill -9":
            before = replays(k)
            os.kill(k.child_pid(), signal.SIGKILL)
            assert wait_for(lambda: replays(k) > before, timeout=60), k.proxy_log()
        else:
            k.restart()
            k.ok("%cellar restore")
        # T is either gone (its cell computes: the user runs it again) or what it was; the
        # replay must not bring back T = (1, "t"), which the notebook no longer says anywhere.
        r = k.run("print(repr(T))")
        assert r.status == "error" or r.stdout.strip() == "(5, 't')", r.stdout
    finally:
        k.stop()
