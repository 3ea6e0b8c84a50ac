"""Helpers for the tests of the cellar kernel's journal, crash recovery and %cellar restore:
conftest's ``Kernel`` started through the installed "cellar" kernelspec (cellar-kernel in
front of ipykernel, the extension loaded at start), and the journal read back through
``cellar journal --json``."""

from __future__ import annotations

import json
import subprocess
import textwrap
import time
from pathlib import Path

from jupyter_client import KernelManager

from conftest import Kernel, cellar_bin


class CellarKernel(Kernel):
    """A conftest Kernel on the "cellar" kernelspec; the proxy's stderr goes to
    ``<workdir>/kernel.stderr``."""

    def start(self) -> None:
        self.km = KernelManager(kernel_name="cellar")
        self.stderr_path = self.dir / "kernel.stderr"
        self.km.start_kernel(cwd=str(self.dir), env=self.env,
                             stderr=open(self.stderr_path, "ab"))  # noqa: SIM115
        self._connect()

    def proxy_log(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def child_pid(self) -> int:
        return self.eval("__import__('os').getpid()")

    def error(self, code: str) -> str:
        """Runs a cell that must fail and returns its ename, once ipykernel has stopped
        aborting what arrives just after an error (stop_on_error)."""
        r = self.run(code)
        assert r.status == "error" and r.error, r.describe()
        assert wait_for(lambda: self.run("pass").status == "ok", timeout=10)
        return r.error["ename"]

    def session(self) -> str:
        return self.eval("__import__('os').environ['CELLAR_KERNEL_SESSION']")


def helper(workdir: Path) -> str:
    """The side-effect helper, with the log's path a literal so that it is a definition
    cell (conftest's HELPER computes it with os.path.join, which is never replayed)."""
    return textwrap.dedent(f"""\
        LOG = {str(workdir / "calls.log")!r}
        def _log(name):
            with open(LOG, "a") as f:
                f.write(name + "\\n")
        """)


def journal(store: Path, *args: str) -> list[dict]:
    """The journal's cells, oldest first, through `cellar journal --json`."""
    out = subprocess.run([cellar_bin(), "journal", "--dir", str(store), "--json", *args],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["cells"]


def wait_journal(store: Path, n: int, *args: str, timeout: float = 15.0) -> list[dict]:
    """The journal once it holds at least `n` cells (it is written off the relay path)."""
    deadline = time.monotonic() + timeout
    while True:
        cells = journal(store, *args)
        if len(cells) >= n or time.monotonic() > deadline:
            return cells
        time.sleep(0.1)


def wait_for(predicate, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()
