"""Harness for the integration tests: real ipykernel kernels driven through jupyter_client.

Each test gets a ``Kernel`` started in its own temporary directory, with ``CELLAR_DIR``
pointing at ``<tmp>/store``. ``Kernel.run`` sends one execute_request (with
``metadata.cellId`` when asked, which ``KernelClient.execute`` cannot do) and collects
everything the kernel sent back for it. Node bodies record that they ran by appending
their name to ``<tmp>/calls.log`` through the private notebook helper ``_log``; tests
count those lines (``Kernel.take_calls``) instead of trusting the report.
"""

from __future__ import annotations

import ast
import os
import queue
import re
import shutil
import sys
import textwrap
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from jupyter_client import KernelManager

# One cell may not take longer than this; a hang fails the test instead of blocking.
REPO = Path(__file__).resolve().parents[2]


def cellar_bin() -> str | None:
    """The `cellar` command under test: $CELLAR_BIN, PATH, beside this interpreter, or a
    CMake build in build/."""
    candidates = [os.environ.get("CELLAR_BIN"), shutil.which("cellar"),
                  str(Path(sys.executable).parent / "cellar"),
                  str(REPO / "build" / "runtime" / "cellar")]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


CELL_TIMEOUT = float(os.environ.get("CELLAR_IT_CELL_TIMEOUT", "120"))
START_TIMEOUT = 60.0

STATUSES = ("computed", "loaded", "in memory", "failed", "skipped")

SUMMARY_RE = re.compile(
    r"^cellar run: (?P<nodes>\d+) nodes?, (?P<computed>\d+) computed, (?P<loaded>\d+) loaded, "
    r"(?P<in_memory>\d+) in memory, (?P<failed>\d+) failed, (?P<skipped>\d+) skipped"
)

# The first two cells of every test notebook: load the extension, then define the private
# side-effect helper that node bodies call (private, so not a node). They are separate cells
# on purpose: whether functions in the `%load_ext` cell itself become nodes is tested on its
# own (test_nodes_and_cells), instead of deciding the fate of every other test.
LOAD = "%load_ext cellar\n"
HELPER = textwrap.dedent(
    """\
    import os
    LOG = os.path.join(os.getcwd(), "calls.log")
    def _log(name):
        with open(LOG, "a") as f:
            f.write(name + "\\n")
    """
)
SETUP_CELLS = [("load", LOAD), ("helper", HELPER)]


# A three-node chain a -> b -> c, used by several tests: c == 21.
CHAIN_DEFS = textwrap.dedent(
    """\
    def a():
        _log("a")
        return 2

    def b(a):
        _log("b")
        return a * 10

    def c(b):
        _log("c")
        return b + 1
    """
)


@dataclass
class Report:
    """The text/plain report of one `%cellar run`, parsed."""

    text: str
    html: str | None
    summary: dict[str, int]
    rows: dict[str, dict[str, str]]

    def status(self, node: str) -> str:
        assert node in self.rows, f"no row for {node!r} in report:\n{self.text}"
        return self.rows[node]["status"]

    def with_status(self, status: str) -> set[str]:
        return {n for n, r in self.rows.items() if r["status"] == status}


def parse_report(text: str, html: str | None = None) -> Report:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    m = SUMMARY_RE.match(lines[0].strip())
    assert m, f"report summary line not as specified: {lines[0]!r}"
    summary = {k: int(v) for k, v in m.groupdict().items()}
    header = re.split(r"\s{2,}", lines[1].strip())
    assert header[:2] == ["node", "status"], f"report header not as specified: {lines[1]!r}"
    rows: dict[str, dict[str, str]] = {}
    for ln in lines[2:]:
        cols = re.split(r"\s{2,}", ln.strip())
        assert len(cols) >= 2, f"report row without columns: {ln!r}"
        assert cols[1] in STATUSES, f"unknown status {cols[1]!r} in row {ln!r}"
        rows[cols[0]] = {"status": cols[1], "time": cols[2] if len(cols) > 2 else "",
                         "size": cols[3] if len(cols) > 3 else ""}
    return Report(text=text, html=html, summary=summary, rows=rows)


@dataclass
class Result:
    """What one execute_request produced."""

    code: str
    status: str = ""
    stdout: str = ""
    stderr: str = ""
    displays: list[dict] = field(default_factory=list)  # display_data bundles, as last updated
    display_ids: list[str | None] = field(default_factory=list)  # transient display_id of each
    messages: list[dict] = field(default_factory=list)  # every iopub message (type, content)
    results: list[dict] = field(default_factory=list)  # execute_result bundles
    error: dict | None = None  # ename, evalue, traceback (of the last error)
    errors: list[dict] = field(default_factory=list)  # every error output, in order

    @property
    def reports(self) -> list[Report]:
        out = []
        for data in self.displays:
            text = data.get("text/plain", "")
            if text.startswith("cellar run:"):
                out.append(parse_report(text, data.get("text/html")))
        return out

    @property
    def report(self) -> Report:
        reps = self.reports
        assert len(reps) == 1, f"expected one cellar report, got {len(reps)}:\n{self.describe()}"
        return reps[0]

    @property
    def warnings(self) -> list[str]:
        return [ln for ln in self.stderr.splitlines() if ln.startswith("cellar: warning:")]

    @property
    def error_text(self) -> str:
        """ename, evalue and the traceback of each error output (a failing node's, then
        the cell's), ANSI colours removed, plus stderr."""
        if not self.errors:
            return self.stderr
        parts = [f"{e['ename']}: {e['evalue']}\n" + "\n".join(e.get("traceback", []))
                 for e in self.errors]
        return strip_ansi("\n".join(parts) + f"\n{self.stderr}")

    def describe(self) -> str:
        return (f"--- code:\n{self.code}\n--- status: {self.status}\n--- stdout:\n{self.stdout}"
                f"--- stderr:\n{self.stderr}--- displays: {self.displays}\n--- results: {self.results}"
                f"\n--- error: {self.error_text if self.error else None}")

    def ok(self) -> "Result":
        assert self.status == "ok", f"cell failed:\n{self.describe()}"
        return self


def strip_ansi(s: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", s)


class Kernel:
    """A real ipykernel, started with cwd = ``workdir`` and CELLAR_DIR = ``cellar_dir``."""

    def __init__(self, workdir: Path, cellar_dir: Path | None | str = "default",
                 extra_env: dict[str, str] | None = None):
        self.dir = Path(workdir)
        self.log = self.dir / "calls.log"
        if cellar_dir == "default":
            cellar_dir = self.dir / "store"
        self.store = Path(cellar_dir) if cellar_dir is not None else self.dir / ".cellar"
        env = dict(os.environ)
        env.pop("CELLAR_DIR", None)
        if cellar_dir is not None:
            env["CELLAR_DIR"] = str(cellar_dir)
        # Modules the tests write into workdir (e.g. tracked.py) must unpickle after a restart.
        env["PYTHONPATH"] = os.pathsep.join([str(self.dir)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env.update(extra_env or {})
        self.env = env
        self.km: KernelManager | None = None
        self.kc = None
        self.start()

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Start a new kernel process (after `stop`, or the first time)."""
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(cwd=str(self.dir), env=self.env)
        self._connect()

    def _connect(self) -> None:
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=START_TIMEOUT)
        self._drain_iopub()

    def restart(self) -> None:
        """Restart through KernelManager.restart_kernel, then a fresh, ready client."""
        self.kc.stop_channels()
        self.km.restart_kernel(now=False)
        self._connect()

    def stop(self) -> None:
        """Shut the kernel down cleanly (the store is closed by process exit)."""
        if self.kc is not None:
            self.kc.stop_channels()
            self.kc = None
        if self.km is not None:
            if self.km.has_kernel:
                self.km.shutdown_kernel(now=False)
            self.km = None

    def _drain_iopub(self) -> None:
        while True:
            try:
                self.kc.get_iopub_msg(timeout=0.2)
            except queue.Empty:
                return

    # -- execution -----------------------------------------------------------------------
    def run(self, code: str, cell_id: str | None = None, timeout: float = CELL_TIMEOUT) -> Result:
        """Execute one cell; collect its streams, displays, result, error and reply status."""
        code = textwrap.dedent(code)
        msg = self.kc.session.msg("execute_request", {
            "code": code, "silent": False, "store_history": True,
            "user_expressions": {}, "allow_stdin": False, "stop_on_error": True,
        })
        if cell_id is not None:
            msg["metadata"]["cellId"] = cell_id
        self.kc.shell_channel.send(msg)
        msg_id = msg["header"]["msg_id"]
        res = Result(code=code)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"cell did not finish within {timeout}s:\n{res.describe()}")
            try:
                m = self.kc.get_iopub_msg(timeout=min(left, 1.0))
            except queue.Empty:
                if not self.km.is_alive():
                    raise RuntimeError(f"kernel died while running:\n{res.describe()}")
                continue
            if m["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = m["msg_type"], m["content"]
            res.messages.append({"type": kind, "content": content})
            if kind == "stream":
                if content["name"] == "stdout":
                    res.stdout += content["text"]
                else:
                    res.stderr += content["text"]
            elif kind == "display_data":
                res.displays.append(content["data"])
                res.display_ids.append(content.get("transient", {}).get("display_id"))
            elif kind == "update_display_data":
                # As a frontend does: the display with that id takes the new content.
                did = content.get("transient", {}).get("display_id")
                for i, known in enumerate(res.display_ids):
                    if known is not None and known == did:
                        res.displays[i] = content["data"]
            elif kind == "execute_result":
                res.results.append(content["data"])
            elif kind == "error":
                res.error = {"ename": content["ename"], "evalue": content["evalue"],
                             "traceback": content["traceback"]}
                res.errors.append(res.error)
            elif kind == "status" and content["execution_state"] == "idle":
                break
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no execute_reply within {timeout}s:\n{res.describe()}")
            reply = self.kc.get_shell_msg(timeout=left)
            if reply["parent_header"].get("msg_id") == msg_id:
                res.status = reply["content"]["status"]
                return res

    def ok(self, code: str, cell_id: str | None = None, timeout: float = CELL_TIMEOUT) -> Result:
        """Run a cell that must succeed."""
        return self.run(code, cell_id, timeout).ok()

    def eval(self, expr: str):
        """The value of a Python-literal expression in the kernel (via repr + literal_eval)."""
        res = self.ok(f"print(repr({expr}))")
        return ast.literal_eval(res.stdout.strip())

    def cellar_run(self, args: str, cell_id: str | None = None) -> Result:
        """`_v = %cellar run ARGS`; the value stays in the kernel as `_v` (see `eval`)."""
        return self.run(f"_v = %cellar run {args}", cell_id)

    def setup(self, cell_ids: bool = True) -> Result:
        """Load cellar and define `_log` (the usual first cells); returns the load cell's result."""
        res = self.ok(LOAD, cell_id="load" if cell_ids else None)
        self.ok(HELPER, cell_id="helper" if cell_ids else None)
        return res

    # -- side effects --------------------------------------------------------------------
    def calls(self) -> list[str]:
        """The node bodies (and loads) recorded so far, in order."""
        if not self.log.exists():
            return []
        return [ln for ln in self.log.read_text().splitlines() if ln]

    def take_calls(self) -> Counter:
        """The recorded side effects since the last call, as a Counter; the log is emptied."""
        out = Counter(self.calls())
        if self.log.exists():
            self.log.write_text("")
        return out


def count_lines(path: Path) -> Counter:
    """Count the lines of a side-effect log file (missing file = nothing ran)."""
    path = Path(path)
    if not path.exists():
        return Counter()
    return Counter(ln for ln in path.read_text().splitlines() if ln)


def calls(*names: str) -> Counter:
    """Expected side effects: `calls("a", "b")` == each body ran once."""
    return Counter(names)


def pytest_configure(config):
    config.addinivalue_line("markers", "large: a test that moves a large (1 GiB) value; runs by default")


@pytest.fixture
def kernel_factory(tmp_path):
    """Start kernels in this test's tmp dir; all are shut down at teardown."""
    started: list[Kernel] = []

    def make(workdir: Path | None = None, **kw) -> Kernel:
        k = Kernel(workdir or tmp_path, **kw)
        started.append(k)
        return k

    yield make
    for k in started:
        try:
            k.stop()
        except Exception as exc:  # teardown must reach every kernel
            print(f"kernel shutdown failed: {exc!r}", file=sys.stderr)


@pytest.fixture
def kernel(kernel_factory) -> Kernel:
    """A kernel with cellar loaded and `_log` defined."""
    k = kernel_factory()
    k.setup()
    return k
