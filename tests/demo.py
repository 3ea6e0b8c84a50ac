"""Demo: run notebooks/quickstart.ipynb headless twice, the second time in a new kernel.

The notebook is copied into a temporary directory (so the store `.cellar/` beside it starts
empty), executed with nbclient, then executed again with a fresh kernel, which is what a
kernel restart followed by "run all" does. Both runs' cellar reports (their text/plain form)
and wall times are printed. The second run must load every result and compute nothing:
no cell may report a `computed` node and no node body may run (the notebook's `_trace`
helper appends each running node to calls.log). Exits non-zero otherwise.

    python tests/demo.py [--keep]
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "quickstart.ipynb"
STATUS_RE = re.compile(r"\s{2,}(computed|loaded|in memory|failed|skipped)(\s{2,}|$)")


def execute(workdir: Path, timeout: int = 300) -> tuple[nbformat.NotebookNode, float]:
    """Execute the notebook copy in workdir with a new python3 kernel; the store is .cellar/."""
    nb = nbformat.read(workdir / NOTEBOOK.name, as_version=4)
    env = dict(os.environ)
    env.pop("CELLAR_DIR", None)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir)}})
    start = time.perf_counter()
    client.execute(env=env)
    return nb, time.perf_counter() - start


def reports(nb: nbformat.NotebookNode) -> list[str]:
    """The text/plain of every cellar run report in the executed notebook, in order."""
    out = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            text = output.get("data", {}).get("text/plain", "")
            if output.get("output_type") == "display_data" and text.startswith("cellar run:"):
                out.append(text)
    return out


def statuses(report: str) -> dict[str, str]:
    """{node: status} from one report's rows."""
    rows = {}
    for line in report.splitlines()[2:]:
        m = STATUS_RE.search(line)
        if m:
            rows[line.split()[0]] = m.group(1)
    return rows


def take_calls(workdir: Path) -> list[str]:
    log = workdir / "calls.log"
    if not log.exists():
        return []
    lines = [ln for ln in log.read_text().splitlines() if ln]
    log.unlink()
    return lines


def problems_of_second_run(reps: list[str], ran: list[str]) -> list[str]:
    problems = []
    if ran:
        problems.append(f"node bodies ran in the second run: {ran}")
    if not reps:
        problems.append("the second run shows no cellar report")
    for rep in reps:
        st = statuses(rep)
        if not st:
            problems.append(f"report without rows:\n{rep}")
        bad = {n: s for n, s in st.items() if s not in ("loaded", "in memory")}
        if bad:
            problems.append(f"nodes not loaded in the second run: {bad}")
    return problems


def main(argv: list[str]) -> int:
    keep = "--keep" in argv
    workdir = Path(tempfile.mkdtemp(prefix="cellar-demo-"))
    try:
        shutil.copy(NOTEBOOK, workdir / NOTEBOOK.name)
        runs = []
        for label in ("first run (fresh store)", "second run (new kernel, same store)"):
            nb, seconds = execute(workdir)
            runs.append((label, nb, seconds, take_calls(workdir)))
        for label, nb, seconds, ran in runs:
            print(f"=== {label}: {seconds:.2f} s wall, node bodies run: {len(ran)} {ran}")
            for rep in reports(nb):
                print(rep.rstrip())
                print()
        _, nb2, _, ran2 = runs[1]
        problems = problems_of_second_run(reports(nb2), ran2)
        if not reports(runs[0][1]) or not runs[0][3]:
            problems.append("the first run computed nothing: is the store really fresh?")
        for p in problems:
            print(f"FAIL: {p}", file=sys.stderr)
        if not problems:
            print("OK: the second run loaded every result and computed nothing.")
        return 1 if problems else 0
    finally:
        if keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
