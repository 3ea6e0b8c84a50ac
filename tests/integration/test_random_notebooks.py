"""Issue 9's generated-case check: random small notebooks and random edits through a real
kernel, against an oracle that knows what each edit must rerun (notebook_gen.py builds the
notebooks, the edits and the oracle; this file drives a kernel through them).

After every edit and every restart, each target's value must equal a fresh computation in the
same kernel (the plain functions called in dependency order, each consumer given a copy of
its inputs), and the bodies that ran (calls.log) must be exactly those whose key the oracle
has not seen computed in this store: anything more is a needless recompute, anything less a
stale result. One kernel per seed; each feature set is its own test id, so `-k classes` or
`-k closures` runs one of them. A session stops at its first failure (after it the store and
the oracle disagree about what was computed) and prints the seed, the notebook before and
after, the step, what differed and cellar's report, then a shrunk repro: the same trace
replayed in fresh kernels and stores with fewer steps and definitions, as long as the same
kind of problem shows.

`CELLAR_PROPTEST_STEPS` (default 15) sets the steps per case, `CELLAR_PROPTEST_SHRINK_SECONDS`
(default 30, 0: off) the time spent shrinking a failure; tests/bench/soak_random_notebooks.py
runs many more steps.
"""

from __future__ import annotations

import ast
import os
import re
import time
from collections import Counter
from dataclasses import dataclass

import pytest

from notebook_gen import (FEATURE_SETS, FEATURES, Model, Replica, Step, Generator, closure_of, prelude,
                          needs, without, nk)

STEPS = int(os.environ.get("CELLAR_PROPTEST_STEPS", "15"))
SEEDS = (1, 2, 3)
CASES = [(name, seed) for name in FEATURE_SETS for seed in SEEDS]


@pytest.mark.parametrize("features,seed", CASES, ids=[f"{n}-seed{s}" for n, s in CASES])
def test_random_notebook(kernel_factory, tmp_path, features, seed):
    k = kernel_factory()
    s = Session(k, seed, FEATURE_SETS[features])
    failure = s.run(STEPS)
    if failure is not None:
        failure.shrunk = shrink(kernel_factory, tmp_path, failure, s)
        pytest.fail(failure.text(), pytrace=False)


@dataclass
class Failure:
    """What differed at one step, with everything needed to replay it."""

    seed: int
    features: tuple
    step_no: int
    step: str
    problems: list
    executed: list  # (cell id, source) executed by the step
    listing: str  # the notebook after the step
    history: list  # the steps before, as descriptions
    targets: list
    report: str = ""
    shrunk: str = ""
    before: str = ""  # the notebook before the step
    script: list = None  # the cells the kernel was sent, in order

    def text(self) -> str:
        ex = "\n".join(f"# --- executed cell {cid}\n{src}" for cid, src in self.executed)
        hist = "\n".join(f"  {i}: {h}" for i, h in enumerate(self.history))
        out = (f"seed={self.seed} features={','.join(self.features)} step {self.step_no}: {self.step}\n"
               f"targets: {' '.join(self.targets)}\n"
               + "\n".join(f"PROBLEM: {p}" for p in self.problems)
               + f"\n--- steps before (each: what, then the run):\n{hist}\n"
               f"--- notebook before the step:\n{self.before}\n--- the step executed:\n{ex or '(no cell)'}\n"
               f"--- notebook after the step:\n{self.listing}\n--- cellar's report (diagnosis only):\n{self.report}")
        if self.script and len(self.script) <= 40:
            out += "\n--- every cell the kernel was sent, in order (value checks left out):\n"
            out += "\n".join(self.script)
        if self.shrunk:
            out += f"\n--- shrunk repro (fresh kernel and store):\n{self.shrunk}"
        return out


class Session:
    """One generated notebook driven through a real kernel, step by step, against the oracle.

    `kernel` is tests/integration/conftest.py's Kernel (run/ok/cellar_run/take_calls/restart/
    setup)."""

    def __init__(self, kernel, seed: int, features=FEATURES, model: Model | None = None, targets=None):
        self.k = kernel
        self.seed = seed
        self.features = tuple(features)
        self.gen = Generator(seed, features)
        self.model = self.gen.build() if model is None else model
        self.fixed_targets = targets  # a replay runs the failing step's targets
        self.replica = None
        self.seen: dict[str, set] = {}
        self.history: list = []
        self.trace: list = []  # (notebook after the step, step, targets), for shrinking
        self.script: list = []  # every cell sent to the kernel but the value checks

    # -- driving the kernel ------------------------------------------------------------------
    def _load_notebook(self, fresh_kernel: bool) -> list:
        """Setup cells, prelude, then every cell in notebook order, in kernel and replica."""
        if fresh_kernel:
            self._setup()
        self._send(prelude(self.features), "prelude").ok()
        self.replica = Replica(self.model, self.features)
        problems = []
        for c in self.model.cells:
            problems += self._exec(c.cid)
        return problems

    def _setup(self) -> None:
        self.k.setup()
        self.script.append("# --- conftest's setup cells: %load_ext cellar, then _log (cellIds load, helper)")

    def _send(self, code: str, cid: str | None):
        """One cell to the kernel, recorded for the repro script (the value check is not)."""
        shown = "# (notebook_gen.prelude(): imports, _poke, _num, _eq)\n" if code == prelude(self.features) else code
        self.script.append(f"# --- cell {cid}\n{shown}" if cid else f"# --- cell without cellId\n{shown}")
        return self.k.run(code, cell_id=cid)

    def _exec(self, cid: str) -> list:
        return self._exec_cell(cid, None)[1]

    def start(self) -> Failure | None:
        targets = self._targets()
        problems = self._load_notebook(fresh_kernel=True)
        return self._run_and_check(0, Step("first run of the whole notebook",
                                           [c.cid for c in self.model.cells]), problems, targets)

    def step(self, i: int) -> Failure | None:
        return self.apply(i, self.gen.step(self.model))

    def _targets(self) -> list:
        m = self.model
        if self.fixed_targets is not None:
            nodes = m.nodes()
            return [t for t in self.fixed_targets if t in nodes] or nodes
        return self.gen.targets(m)

    def _run_line(self, targets) -> str:
        return "_v = %cellar run " + " ".join(self.model.defs[t].name for t in targets)

    def apply(self, i: int, st: Step) -> Failure | None:
        """Execute a step's cells (or restart and re-run all), then run and check."""
        self.replica.model = self.model
        targets = self._targets()
        problems, res, allowed = [], None, set()
        if st.restart:
            self.k.restart()
            self.script.append("# --- restart the kernel")
            self._setup()
            problems = self._load_notebook(fresh_kernel=False)
        elif st.poke:
            allowed = self._poke(st)
        else:
            for j, cid in enumerate(st.cells):
                last = st.run_in_cell and j == len(st.cells) - 1
                r, p = self._exec_cell(cid, self._run_line(targets) if last else None)
                problems += p
                res = r if last else res
        return self._run_and_check(i, st, problems, targets, res, allowed)

    def _exec_cell(self, cid: str, run_line: str | None):
        cell = self.model.cell(cid)
        src = self.model.cell_source(cell) + (f"\n{run_line}\n" if run_line else "")
        res = self._send(src, cid)
        self.replica.exec_cell(cell)
        if res.status != "ok" and not run_line:
            return res, [f"cell {cid} failed in the kernel:\n{res.error_text}"]
        return res, []

    def _poke(self, st: Step) -> set:
        """Mutates one mutable value of the last run's targets in the kernel, through `_v`."""
        last = self.trace[-1][2] if self.trace else []
        mutable = [t for t in last if t in self.model.defs
                   and self.model.defs[t].x["shape"] in ("list", "dict", "set", "array", "frame")]
        if isinstance(st.poke, str):  # a replay pokes what the original step poked
            mutable = [t for t in mutable if t == st.poke]
        if not mutable:
            st.what += " (none of them is mutable: nothing happens)"
            return set()
        t = self.gen.rng.choice(mutable)
        name = self.model.defs[t].name
        ref = f"_v[{name!r}] if {name!r} in _v else _v[{t!r}]" if len(last) > 1 else "_v"
        self._send(f"_poke({ref})", "user").ok()
        if not isinstance(st.poke, str):
            st.what += f": {name}"
            st.poke = t
        return {name}  # reloading it or recomputing it are both allowed

    def _run_and_check(self, i: int, st: Step, problems: list, targets: list, res=None,
                       allowed=frozenset()) -> Failure | None:
        m, k = self.model, self.k
        if res is None:
            defined = k.take_calls()
            if defined:
                problems.append(f"executing the cells ran bodies: {dict(defined)}")
        _, keys = self.replica.evaluate(targets)
        expected = Counter(m.defs[n].name for n, key in keys.items() if key not in self.seen.get(n, set()))
        # A value that a body running now mutates may be recomputed for its later consumers
        # instead of reloaded: the design allows either once the change is seen.
        allowed = set(allowed) | {m.defs[nk(q)].name for n in keys if m.defs[n].name in expected
                                  for q in m.defs[n].x.get("pokes", ())}
        if res is None:
            res = self._send(self._run_line(targets), None)
        report = "\n".join(r.text for r in res.reports) if res.status == "ok" else res.error_text
        ran = k.take_calls()
        if res.status != "ok":
            problems.append(f"%cellar run failed:\n{res.error_text}")
        else:
            extra, missing = ran - expected, expected - ran
            for n in allowed:
                extra.pop(n, None)
            if extra:
                problems.append(f"ran but nothing it depends on changed (needless recompute): {sorted(extra)}")
            if missing:
                problems.append(f"did not run though its code or an input changed (stale): {sorted(missing)}")
            problems += self._check_values(targets)
        for n, key in keys.items():
            self.seen.setdefault(n, set()).add(key)
        executed = [(cid, m.cell_source(m.cell(cid))) for cid in st.cells] if not st.restart else []
        if st.run_in_cell and executed:
            executed[-1] = (executed[-1][0], executed[-1][1] + f"\n{self._run_line(targets)}\n")
        before = self.trace[-1][0].listing() if self.trace else "(empty)"
        self.history.append(f"{st.what}; then {self._run_line(targets)}")
        self.trace.append((m.copy(), st, list(targets)))
        if not problems:
            return None
        return Failure(self.seed, self.features, i, st.what, problems, executed, m.listing(),
                       self.history[:-1], [m.defs[t].name for t in targets], report, before=before,
                       script=list(self.script))

    def _check_values(self, targets) -> list:
        """Each target's value against the plain functions called in this kernel now (each
        consumer given a copy of its inputs, as if nothing had touched them)."""
        m = self.model
        lines = ["_fr = {}"]
        for n in m.closure_nodes(targets):
            args = ", ".join(f"{q}=copy.deepcopy(_fr[{nk(q)!r}])" if nk(q) in m.defs and m.defs[nk(q)].is_node
                             else f"{q}={q}" for q in m.defs[n].x["params"])
            lines.append(f"_fr[{n!r}] = {m.defs[n].name}({args})")
        names = {t: m.defs[t].name for t in targets}
        got = "_v" if len(targets) > 1 else f"{{{names[targets[0]]!r}: _v}}"
        lines.append(f"_vd = {got}")
        lines.append(f"_vd = {{t: _vd[t] if t in _vd else _vd[k] for k, t in {names!r}.items()}}")
        lines.append(f"print(repr([(t, repr(_vd[t]), repr(_fr[k])) for k, t in {names!r}.items() "
                     f"if not _eq(_vd[t], _fr[k])]))")
        res = self.k.run("\n".join(lines))
        self.k.take_calls()  # the fresh computation logs too; it is not cellar's doing
        if res.status != "ok":
            return [f"the fresh computation failed:\n{res.error_text}"]
        bad = ast.literal_eval(res.stdout.strip().splitlines()[-1])
        return [f"wrong value for {t}: cellar returned {a}, a fresh computation gives {b}" for t, a, b in bad]

    def run(self, steps: int) -> Failure | None:
        """The first run and `steps` steps; stops at the first failure (after it the store and
        the oracle no longer agree on what was computed)."""
        f = self.start()
        for i in range(1, steps + 1):
            if f is not None:
                return f
            f = self.step(i)
        return f


def _category(problems) -> set:
    return {p.split(":")[0].split(" for ")[0] for p in problems}


def replay(kernel, seed, features, trace, drop: set = frozenset()) -> Failure | None:
    """Replays a trace (notebook after each step, step, targets) without the definitions in
    `drop`, in `kernel` (fresh, on a fresh store); the first failure, or None."""
    m0, st0, t0 = trace[0]
    s = Session(kernel, seed, features, model=without(m0, drop), targets=t0)
    s.history = []
    f = s.start() if st0.cells or not st0.restart else None
    for i, (m, st, targets) in enumerate(trace[1:], 1):
        if f is not None:
            return f
        s.model, s.fixed_targets = without(m, drop), targets
        ids = {c.cid for c in s.model.cells}
        f = s.apply(i, Step(st.what, [c for c in st.cells if c in ids], st.restart, st.run_in_cell, st.poke))
    return f


def _merge(trace, gone: set) -> list:
    """The trace without the steps in `gone` (never the first or last): a dropped step's
    cells are executed by the next kept step, so kernel and replica still run the same cells."""
    out, pending = [], []
    for i, (m, st, t) in enumerate(trace):
        if i in gone:
            pending += st.cells
            continue
        cells = list(dict.fromkeys(pending + st.cells)) if not st.restart else st.cells
        out.append((m, Step(st.what, cells, st.restart, st.run_in_cell, st.poke), t))
        pending = []
    return out


def shrink(kernel_factory, tmp_path, failure: Failure, session: Session, budget: float | None = None) -> str:
    """Replays the failing trace in fresh kernels and stores with fewer steps and fewer
    definitions, keeping each cut whenever the same kind of problem still shows. Returns the
    smallest failing replay's text (empty if shrinking is off). `budget` seconds
    (CELLAR_PROPTEST_SHRINK_SECONDS, default 30; 0: off)."""
    if budget is None:
        budget = float(os.environ.get("CELLAR_PROPTEST_SHRINK_SECONDS", "30"))
    if budget <= 0 or not session.trace:
        return ""
    deadline = time.monotonic() + budget
    want = _category(failure.problems)
    attempt = [0]

    def fails(trace, drop) -> Failure | None:
        attempt[0] += 1
        wd = tmp_path / f"shrink{attempt[0]}"
        wd.mkdir()
        k = kernel_factory(wd)
        try:
            if not without(trace[-1][0], drop).nodes():
                return None
            f = replay(k, failure.seed, failure.features, trace, drop)
            return f if f is not None and _category(f.problems) & want else None
        finally:
            k.stop()

    trace, drop, best = session.trace, set(), None
    # 1. fewer steps: the last step alone after a first run of the notebook before it, then
    #    halves, quarters, ... of the steps before it.
    if len(trace) > 2:
        m_before = trace[-2][0]
        alone = [(m_before, Step("first run of the notebook before the step",
                                 [c.cid for c in m_before.cells]), trace[-2][2]), trace[-1]]
        f = fails(alone, drop)
        if f is not None:
            trace, best = alone, f
    chunk = max(1, (len(trace) - 2) // 2)
    while chunk >= 1 and len(trace) > 2 and time.monotonic() < deadline:
        i = 1
        while i < len(trace) - 1 and time.monotonic() < deadline:
            gone = set(range(i, min(i + chunk, len(trace) - 1)))
            cut = _merge(trace, gone)
            f = fails(cut, drop)
            if f is not None:
                trace, best = cut, f
            else:
                i += chunk
        chunk //= 2
    # 2. fewer definitions: all but what the culprits need, else the other nodes, then one
    #    at a time (nodes first).
    models = [m for m, _, _ in trace]
    everything = set().union(*(m.defs for m in models))
    is_node = {n for m in models for n, d in m.defs.items() if d.is_node}
    culprits = {nk(c) for c in re.findall(r"\\bn\\w*?\\d+\\b", " ".join(failure.problems))}
    named = {w.strip(",.:()") for _, st, _ in trace for w in st.what.split()} & everything
    keep = closure_of(models, culprits | named)
    for cut in (everything - keep, (everything - keep) & is_node):
        if culprits and cut and time.monotonic() < deadline:
            f = fails(trace, cut)
            if f is not None:
                best, drop = f, set(cut)
                break
    for n in sorted(everything - drop, key=lambda n: (n not in is_node, n), reverse=False):
        if time.monotonic() > deadline:
            break
        rest = everything - drop - {n}
        if n in culprits or n in named or any(n in needs(m.defs[o]) for m in models for o in rest
                                              if o in m.defs):
            continue
        f = fails(trace, drop | {n})
        if f is not None:
            best, drop = f, drop | {n}
    if best is None:
        return "(no replay in a fresh kernel with fewer steps or definitions shows it)"
    return (f"{len(trace)} steps, {len(everything - drop)} definitions, {attempt[0]} replays\n"
            + best.text())
