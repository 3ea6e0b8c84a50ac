"""cellar in a real JupyterLab 4, driven through Debian's chromium (browser_lab.py).

Through the UI as a user would: the launcher offers "Python 3 (cellar)" and a notebook
made there runs cellar; `%cellar run` renders its report and `%cellar graph` an inline
SVG; in JupyterLab's light, dark and dark high-contrast themes every text of the
reports and of the graph has a WCAG contrast of at least 4.5 against what is painted
behind it, and each node's status border at least 3, measured from computed colours
(and the fallbacks, for frontends without JupyterLab's variables); an edited cell reruns only its node; with
`%cellar auto on`, running an edited node's cell reruns the target there; after Kernel → Restart Kernel…
and Run All, the results load from the store; after `kill -9` of the ipykernel behind
cellar-kernel the same tab goes on, with no dialog, and `%cellar run` loads every node. Bodies are counted through the
side-effect log (calls.log beside the notebook), as in the other integration tests.
Screenshots of each step go to the test's tmp_path (or $CELLAR_BROWSER_SCREENS/<test>).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from browser_lab import (chromium_browser, page_for_test, _PROMPTS_DONE, _WATCH_PROMPTS,
                         KERNEL_DISPLAY, LabPage, LabServer, chromium_missing_reason,
                         contrasts, write_notebook)
from conftest import HELPER, calls, count_lines
from journal_client import helper

_missing = chromium_missing_reason()
pytestmark = pytest.mark.skipif(_missing is not None, reason=f"browser tests need chromium: {_missing}")

WCAG_AA = 4.5  # text (WCAG 2.1, 1.4.3)
WCAG_NON_TEXT = 3.0  # a graph node's status border (1.4.11)

# The chain a -> b -> c, one node per cell, so that editing one cell edits one node.
DEF_A = 'def a():\n    _log("a")\n    return 2\n'
DEF_B = 'def b(a):\n    _log("b")\n    return a * 10\n'
DEF_C = 'def c(b):\n    _log("c")\n    return b + 1\n'
CELLS = ["%load_ext cellar\n", HELPER, DEF_A, DEF_B, DEF_C, "%cellar run c\n"]
RUN = 5


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    server = LabServer(tmp_path_factory.mktemp("lab"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(lab):  # after the server, so that its pages close before the server stops
    yield from chromium_browser()


@pytest.fixture
def ui(request, lab, browser, tmp_path):
    """A fresh page (own browser context) on the lab; this test's notebooks go in
    root/<test name>/, so each test has its own calls.log and .cellar store."""
    yield from page_for_test(request, lab, browser, tmp_path, LabPage)


def fresh_chain_notebook(ui) -> None:
    write_notebook(ui.dir / "chain.ipynb", CELLS)
    ui.open_notebook(f"{ui.rel}/chain.ipynb")


def test_launcher_offers_the_cellar_kernel_and_a_notebook_runs_on_it(ui):
    ui.open_lab(ui.rel)
    card = ui.page.locator('.jp-LauncherCard[data-category="Notebook"]', has_text=KERNEL_DISPLAY)
    card.wait_for()
    ui.screenshot("launcher")
    card.click()
    ui.wait_for_notebook()
    assert KERNEL_DISPLAY in ui.notebook.locator(".jp-KernelName").inner_text()
    assert (ui.dir / "Untitled.ipynb").exists(), "the notebook is made in the browsed directory"

    for i, code in enumerate(CELLS[:5] + ["%cellar run c\n", "%cellar graph\n"]):
        ui.type_and_run(i, code)  # Shift+Enter on the last cell adds the next one
    ui.screenshot("ran")
    assert not ui.errors(), ui.describe()
    rep = ui.report(RUN)
    assert rep["title"].startswith("cellar run: 3 nodes, 3 computed"), rep
    assert rep["status"] == {"a": "computed", "b": "computed", "c": "computed"}, rep
    assert ui.result_text(RUN) == "21"
    assert count_lines(ui.dir / "calls.log") == calls("a", "b", "c")

    svg = ui.cell(6).locator("svg.cellar-graph")
    svg.wait_for()
    titles = svg.locator("g.node > title").evaluate_all("ts => ts.map(t => t.textContent)")
    assert sorted(titles) == ["a", "b", "c"], titles
    assert svg.locator("g.edge").count() == 2
    box = svg.bounding_box()
    assert box and box["width"] > 50 and box["height"] > 20, box
    svg.scroll_into_view_if_needed()
    ui.screenshot("graph")


# Every status a report can show, and a graph of them: after `run c` (computed), the
# memory dropped (loaded), a rerun (in memory), a failing node and its reader (failed,
# skipped; the RunError caught so that Run All goes on), `%cellar status` (up to date,
# needs run) and `%cellar graph`.
THEME_CELLS = CELLS + [
    "import cellar\ncellar.forget_memory()\n%cellar run b\n",
    "%cellar run c\n",
    'def boom(c):\n    raise ValueError("boom")\n\ndef after(boom):\n    return boom\n',
    "try:\n    %cellar run after\nexcept cellar.RunError:\n    pass\n",
    "%cellar status\n",
    "%cellar graph\n",
]
ALL_STATUSES = {"computed", "loaded", "in memory", "failed", "skipped", "up to date", "needs run"}


def below_wcag(measured: list[dict]) -> str:
    """The measurements below their WCAG minimum, one a line ("" when none)."""
    return "\n".join(
        f"  {m['what']} {m['text']!r}: {m['fg']} on {m['bg']} = {m['ratio']:.2f}" for m in measured
        if m["ratio"] < (WCAG_NON_TEXT if m["what"] == "border" else WCAG_AA))


def test_report_and_graph_are_legible_in_light_and_dark_themes(ui):
    write_notebook(ui.dir / "themes.ipynb", THEME_CELLS)
    ui.open_notebook(f"{ui.rel}/themes.ipynb")
    ui.run_all()
    assert set(ui.report(RUN)["status"].values()) == {"computed"}, ui.describe()
    graph = ui.cell(len(THEME_CELLS) - 1).locator("svg.cellar-graph")
    graph.wait_for()
    backgrounds = {}
    for theme in ("JupyterLab Dark", "JupyterLab Dark High Contrast", "JupyterLab Light"):
        ui.set_theme(theme)  # through the Settings menu
        for k in (RUN, 9, len(THEME_CELLS) - 1):
            ui.cell(k).scroll_into_view_if_needed()
            ui.screenshot(f"{theme.replace(' ', '-').lower()}-cell{k}")
        measured = ui.contrasts()
        shown = {m["text"] for m in measured if m["what"] == "report"}
        assert ALL_STATUSES <= shown, f"statuses not measured: {ALL_STATUSES - shown}\n{ui.describe()}"
        labels = {m["text"] for m in measured if m["what"] == "graph"}
        assert {"a", "b", "c", "boom", "after", "failed"} <= labels, labels
        bad = below_wcag(measured)
        assert not bad, f"{theme}: below WCAG contrast (text {WCAG_AA}, borders {WCAG_NON_TEXT}):\n{bad}"
        backgrounds[theme] = {m["bg"] for m in measured if m["text"] == "computed"}
    # The measurement saw two different themes under the same status cells.
    assert backgrounds["JupyterLab Dark"].isdisjoint(backgrounds["JupyterLab Light"]), backgrounds

    # Outside JupyterLab (nbconvert's HTML, VS Code) no --jp-* variable is set: the
    # fallbacks must be legible on a light page and on a dark one (VS Code's dark colours).
    html = ui.cellar_html()
    page = ui.page.context.new_page()
    for name, body in (("plain", "background:#fff;color:#000"),
                       ("vscode-dark", "background:#1e1e1e;color:#cccccc")):
        page.set_content(f'<body style="{body}">{html}</body>')
        page.screenshot(path=str(ui.shots / f"fallback-{name}.png"), full_page=True)
        measured = contrasts(page)
        assert ALL_STATUSES <= {m["text"] for m in measured}, measured
        bad = below_wcag(measured)
        assert not bad, f"fallback colours on a {name} page below WCAG contrast:\n{bad}"
    page.close()


def test_an_edited_cell_reruns_only_its_node(ui):
    fresh_chain_notebook(ui)
    ui.run_all()
    assert ui.report(RUN)["status"] == {"a": "computed", "b": "computed", "c": "computed"}
    log = ui.dir / "calls.log"
    log.write_text("")

    ui.set_cell(4, DEF_C.replace("b + 1", "b + 2"))
    ui.run_cell(4)
    ui.run_cell(RUN)
    ui.screenshot("edited")
    assert not ui.errors(), ui.describe()
    rep = ui.report(RUN)
    assert rep["status"] == {"a": "in memory", "b": "in memory", "c": "computed"}, rep
    assert ui.result_text(RUN) == "22"
    assert count_lines(log) == calls("c")


def test_auto_on_reruns_the_target_in_the_edited_cell(ui):
    cells = CELLS[:RUN] + ["%cellar auto on\n%cellar run c\n"]
    write_notebook(ui.dir / "auto.ipynb", cells)
    ui.open_notebook(f"{ui.rel}/auto.ipynb")
    ui.run_all()
    assert ui.report(RUN)["status"] == {"a": "computed", "b": "computed", "c": "computed"}
    log = ui.dir / "calls.log"
    log.write_text("")

    ui.set_cell(3, DEF_B.replace("a * 10", "a * 100"))
    ui.run_cell(3)
    ui.screenshot("auto-rerun")
    assert not ui.errors(), ui.describe()
    rep = ui.report(3)  # in the edited cell's own outputs
    assert rep["status"] == {"a": "in memory", "b": "computed", "c": "computed"}, rep
    assert count_lines(log) == calls("b", "c")
    assert "cellar auto: b changed; running c" in ui.outputs_text(3)


def test_restart_from_the_kernel_menu_then_results_load_from_the_store(ui):
    fresh_chain_notebook(ui)
    ui.run_all()
    assert ui.report(RUN)["status"] == {"a": "computed", "b": "computed", "c": "computed"}
    log = ui.dir / "calls.log"
    log.write_text("")

    ui.restart_kernel_from_menu(lambda: ui.screenshot("restart-dialog"))
    ui.run_all()
    ui.screenshot("after-restart")
    assert not ui.errors(), ui.describe()
    rep = ui.report(RUN)
    assert rep["status"] == {"a": "loaded", "b": "loaded", "c": "loaded"}, rep
    assert ui.result_text(RUN) == "21"
    assert count_lines(log) == calls()


# What the page shows while the kernel dies and comes back: every dialog that opens and
# every kernel status the toolbar passes through, recorded in the page itself.
_WATCH_KERNEL = """nb => {
    window.cellarSeen = {dialogs: [], statuses: []};
    const ind = nb.querySelector('.jp-Notebook-ExecutionIndicator');
    const note = () => {
        const s = ind && ind.getAttribute('data-status');
        const seen = window.cellarSeen.statuses;
        if (s && seen[seen.length - 1] !== s) seen.push(s);
    };
    new MutationObserver(note).observe(ind, {attributes: true});
    new MutationObserver(records => {
        for (const r of records)
            for (const n of r.addedNodes)
                if (n.nodeType === 1 && (n.matches('.jp-Dialog') || n.querySelector('.jp-Dialog')))
                    window.cellarSeen.dialogs.push(n.innerText);
    }).observe(document.body, {childList: true, subtree: true});
}"""


def _children(pid: int) -> list[int]:
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    out = []
    for t in tids:
        try:
            out += [int(c) for c in Path(f"/proc/{pid}/task/{t}/children").read_text().split()]
        except OSError:
            pass
    return out


def notebook_child_kernel(lab, notebook: str) -> tuple[int, int]:
    """(cellar-kernel's pid, its ipykernel's pid) for the notebook's kernel, found in the
    process table: the proxy whose command line names the session's connection file."""
    kid = next(s["kernel"]["id"] for s in lab.api("GET", "api/sessions") if s["path"].endswith(notebook))
    for pid in lab.own_processes():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if Path(cmd[0].decode()).name == "cellar-kernel" and any(f"kernel-{kid}.json".encode() in a for a in cmd):
            kids = [c for c in _children(pid) if b"ipykernel" in Path(f"/proc/{c}/cmdline").read_bytes()]
            if kids:
                return pid, kids[0]
    raise AssertionError(f"no cellar-kernel with an ipykernel child for kernel {kid}")


def test_kill_9_of_the_kernel_then_the_same_tab_goes_on_and_results_load(ui, lab):
    # The side-effect helper with its log's path a literal: a definition cell, replayed
    # (conftest's HELPER computes the path, and a cell that computes is never replayed).
    write_notebook(ui.dir / "chain.ipynb", [CELLS[0], helper(ui.dir)] + CELLS[2:])
    ui.open_notebook(f"{ui.rel}/chain.ipynb")
    ui.run_all()
    assert ui.report(RUN)["status"] == {"a": "computed", "b": "computed", "c": "computed"}, ui.describe()
    log = ui.dir / "calls.log"
    log.write_text("")
    proxy, child = notebook_child_kernel(lab, f"{ui.rel}/chain.ipynb")
    replays_before = lab.log_path.read_text(errors="replace").count("replayed 5 definition cells")
    ui.screenshot("before-kill")

    ui.notebook.evaluate(_WATCH_KERNEL)
    os.kill(child, signal.SIGKILL)
    deadline = time.monotonic() + 30
    new_child = None
    while time.monotonic() < deadline:
        kids = [c for c in _children(proxy) if c != child]
        text = lab.log_path.read_text(errors="replace")
        if kids and text.count("replayed 5 definition cells") > replays_before:
            new_child = kids[0]
            break
        time.sleep(0.1)
    assert new_child, f"no new kernel with the 5 definition cells replayed within 30 s:\n{lab.log()}"
    assert "was killed by signal 9" in lab.log_path.read_text(errors="replace")
    ui.wait_kernel_idle(timeout=30)
    ui.screenshot("after-kill")

    # The same tab carries on: the next `%cellar run` loads every node, no body reruns.
    ui.run_cell(RUN)
    ui.screenshot("run-after-kill")
    assert not ui.errors(), ui.describe()
    rep = ui.report(RUN)
    assert rep["status"] == {"a": "loaded", "b": "loaded", "c": "loaded"}, rep
    assert ui.result_text(RUN) == "21"
    assert count_lines(log) == calls()
    # ...through the same proxy (JupyterLab's kernel never died), and with nothing asked of
    # the user: no dialog (JupyterLab's "Kernel Restarting" one among them) opened.
    assert notebook_child_kernel(lab, f"{ui.rel}/chain.ipynb") == (proxy, new_child)
    seen = ui.page.evaluate("window.cellarSeen")
    assert seen["dialogs"] == [], seen
    assert ui.page.locator(".jp-Dialog").count() == 0
    print(f"kernel statuses shown after the kill: {seen['statuses']}")
SLOW = 'import time\n\ndef slow(c):\n    _log("slow")\n    time.sleep(3)\n    return c * 2\n'


def test_progress_line_shows_while_a_long_run_runs_then_the_report_replaces_it(ui):
    cells = CELLS[:RUN] + [SLOW, "%cellar run slow\n"]
    write_notebook(ui.dir / "slow.ipynb", cells)
    ui.open_notebook(f"{ui.rel}/slow.ipynb")
    ui.run_all()  # first run: the chain and slow computed (with a line, replaced)
    log = ui.dir / "calls.log"
    log.write_text("")
    ui.set_cell(RUN, SLOW.replace("c * 2", "c * 3"))
    ui.run_cell(RUN)

    out = ui.cell(RUN + 1).locator(".jp-OutputArea")
    prompt = ui.cell(RUN + 1).locator(".jp-InputArea-prompt")
    prompt.evaluate_all(_WATCH_PROMPTS)
    ui.cell(RUN + 1).locator(".cm-content").click()
    ui.page.keyboard.press("Shift+Enter")
    seen = ""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the line appears after 0.5 s of the 3 s body
        seen = out.inner_text()
        if "running slow" in seen:
            break
        time.sleep(0.05)
    ui.screenshot("progress-line")
    assert "nodes done, running slow" in seen, f"no progress line while the run ran:\n{seen}"
    while not prompt.evaluate_all(_PROMPTS_DONE):
        if time.monotonic() > deadline + 20:
            raise TimeoutError(ui.describe())
        time.sleep(0.1)
    ui.screenshot("progress-replaced")
    rep = ui.report(RUN + 1)
    assert rep["status"].get("slow") == "computed", rep
    assert "nodes done" not in out.inner_text(), "the report must take the line's place"
    assert ui.result_text(RUN + 1) == str(21 * 3)
    assert count_lines(log) == calls("slow")
