"""cellar in a real Notebook 7, driven through Debian's chromium (browser_lab.py).

The same checks as test_browser_lab.py, through Notebook 7's own UI: the tree page's New
menu offers "Python 3 (cellar)" and the notebook it opens (in a new tab) runs cellar,
`%cellar run` rendering its report and `%cellar graph` an inline SVG; in the light and
dark themes (Settings → Theme) every text of the reports and of the graph has a WCAG
contrast of at least 4.5 against what is painted behind it, and each node's status
border at least 3, from computed colours; an edited cell reruns only its node; after
Kernel → Restart Kernel… and Run All every node loads from the store; with
`%cellar auto on`, running an edited node's cell reruns the target; a two-second run
shows its progress line, which the report then replaces; a `kill -9` of the ipykernel
behind cellar-kernel while a cell's node sleeps ends that cell with the KernelDied error
(its text on screen, its name in the saved notebook), the indicator returns to idle with
no dialog, and `%cellar run` then loads every earlier node. Bodies are counted through the
side-effect log (calls.log beside the notebook). Screenshots of each step go to the
test's tmp_path (or $CELLAR_BROWSER_SCREENS/<test>).
"""

from __future__ import annotations

import os
import signal
import time

import nbformat
import pytest

from browser_lab import (chromium_browser, page_for_test, _PROMPTS_DONE, _WATCH_PROMPTS, KERNEL_DISPLAY,
                         NotebookPage, NotebookServer, chromium_missing_reason, write_notebook)
from conftest import calls, count_lines
from journal_client import helper
# The notebooks and thresholds of the JupyterLab tests, so that both frontends are held to the same.
from test_browser_lab import (_WATCH_KERNEL, ALL_STATUSES, CELLS, DEF_B, DEF_C, RUN, THEME_CELLS, WCAG_AA,
                              WCAG_NON_TEXT, below_wcag, notebook_child_kernel)

_missing = chromium_missing_reason()
pytestmark = pytest.mark.skipif(_missing is not None, reason=f"browser tests need chromium: {_missing}")

ALL_COMPUTED = {"a": "computed", "b": "computed", "c": "computed"}


@pytest.fixture(scope="module")
def nbserver(tmp_path_factory):
    server = NotebookServer(tmp_path_factory.mktemp("notebook"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(nbserver):  # after the server, so that its pages close before the server stops
    yield from chromium_browser()


@pytest.fixture
def ui(request, nbserver, browser, tmp_path):
    """A fresh page (own browser context) on the server; this test's notebooks go in
    root/<test name>/, so each test has its own calls.log and .cellar store."""
    yield from page_for_test(request, nbserver, browser, tmp_path, NotebookPage, prefix="notebook7-")


def open_new(ui, name: str, cells: list[str]) -> None:
    write_notebook(ui.dir / name, cells)
    ui.open_notebook(f"{ui.rel}/{name}")


def test_new_menu_offers_the_cellar_kernel_and_a_notebook_runs_on_it(ui):
    ui.open_tree(ui.rel)
    items = ui.new_menu_items()
    ui.screenshot("new-menu")
    assert KERNEL_DISPLAY in items, items
    ui.new_notebook()
    assert "/notebooks/" in ui.page.url, ui.page.url
    assert (ui.dir / "Untitled.ipynb").exists(), "the notebook is made in the browsed directory"

    for i, code in enumerate(CELLS[:5] + ["%cellar run c\n", "%cellar graph\n"]):
        ui.type_and_run(i, code)  # Shift+Enter on the last cell adds the next one
    ui.screenshot("ran")
    assert not ui.errors(), ui.describe()
    rep = ui.report(RUN)
    assert rep["title"].startswith("cellar run: 3 nodes, 3 computed"), rep
    assert rep["status"] == ALL_COMPUTED, rep
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


def test_report_and_graph_are_legible_in_light_and_dark_themes(ui):
    open_new(ui, "themes.ipynb", THEME_CELLS)
    ui.run_all()
    assert set(ui.report(RUN)["status"].values()) == {"computed"}, ui.describe()
    ui.cell(len(THEME_CELLS) - 1).locator("svg.cellar-graph").wait_for()
    backgrounds = {}
    for theme in ("JupyterLab Dark", "JupyterLab Light"):
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


def test_an_edited_cell_reruns_only_its_node(ui):
    open_new(ui, "chain.ipynb", CELLS)
    ui.run_all()
    assert ui.report(RUN)["status"] == ALL_COMPUTED, ui.describe()
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


def test_restart_from_the_kernel_menu_then_results_load_from_the_store(ui):
    open_new(ui, "chain.ipynb", CELLS)
    ui.run_all()
    assert ui.report(RUN)["status"] == ALL_COMPUTED, ui.describe()
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


def test_auto_on_reruns_the_target_in_the_edited_cell(ui):
    open_new(ui, "auto.ipynb", CELLS[:RUN] + ["%cellar auto on\n%cellar run c\n"])
    ui.run_all()
    assert ui.report(RUN)["status"] == ALL_COMPUTED, ui.describe()
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


SLOW = 'import time\n\ndef slow(c):\n    _log("slow")\n    time.sleep(2)\n    return c * 2\n'


def test_progress_line_shows_while_a_long_run_runs_then_the_report_replaces_it(ui):
    # First a run of the chain alone, so that the watched run has nodes done before slow.
    open_new(ui, "slow.ipynb", CELLS[:RUN] + ["%cellar run c\n", SLOW, "%cellar run slow\n"])
    for i in range(RUN + 2):  # up to slow's definition: slow not run yet
        ui.run_cell(i)
    assert ui.report(RUN)["status"] == ALL_COMPUTED, ui.describe()
    log = ui.dir / "calls.log"
    log.write_text("")

    target = RUN + 2
    out = ui.cell(target).locator(".jp-OutputArea")
    prompt = ui.cell(target).locator(".jp-InputArea-prompt")
    prompt.evaluate_all(_WATCH_PROMPTS)
    ui.cell(target).locator(".cm-content").click()
    ui.page.keyboard.press("Shift+Enter")
    seen = ""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the line appears after 0.5 s of the 2 s body
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
    rep = ui.report(target)
    assert rep["status"] == {"a": "in memory", "b": "in memory", "c": "in memory", "slow": "computed"}, rep
    assert "nodes done" not in out.inner_text(), "the report must take the line's place"
    assert ui.result_text(target) == str(21 * 2)
    assert count_lines(log) == calls("slow")


SLEEPER = 'import time\n\ndef sleepy(c):\n    _log("sleepy")\n    time.sleep(30)\n    return c\n'


def test_kill_9_of_the_kernel_mid_cell_shows_kernel_died_then_results_load(ui, nbserver):
    # The helper with its log's path a literal, so that it is a definition cell and is
    # replayed into the new kernel (as in test_browser_lab's kill -9 test).
    path = f"{ui.rel}/kill.ipynb"
    cells = [CELLS[0], helper(ui.dir)] + CELLS[2:] + [SLEEPER, "%cellar run sleepy\n"]
    open_new(ui, "kill.ipynb", cells)
    target = len(cells) - 1
    for i in range(target):  # everything but the 30 s run
        ui.run_cell(i)
    assert ui.report(RUN)["status"] == ALL_COMPUTED, ui.describe()
    log = ui.dir / "calls.log"
    log.write_text("")
    proxy, child = notebook_child_kernel(nbserver, path)
    replayed = "replayed 6 definition cells"  # %load_ext, the helper, a, b, c, sleepy's
    replays_before = nbserver.log_path.read_text(errors="replace").count(replayed)

    ui.notebook.evaluate(_WATCH_KERNEL)
    prompt = ui.cell(target).locator(".jp-InputArea-prompt")
    prompt.evaluate_all(_WATCH_PROMPTS)
    ui.cell(target).locator(".cm-content").click()
    ui.page.keyboard.press("Shift+Enter")
    deadline = time.monotonic() + 30
    while count_lines(log) != calls("sleepy"):  # sleepy's body has started: kill it there
        assert time.monotonic() < deadline, f"sleepy did not start:\n{ui.describe()}"
        time.sleep(0.05)
    while ui.kernel_status() != "busy":  # the toolbar may lag the kernel's busy status
        assert time.monotonic() < deadline, f"kernel not shown busy: {ui.kernel_status()!r}"
        time.sleep(0.05)
    ui.screenshot("running")
    killed_at = time.monotonic()
    os.kill(child, signal.SIGKILL)

    # The running cell ends, well before sleepy's 30 s, with the KernelDied error.
    while not prompt.evaluate_all(_PROMPTS_DONE):
        assert time.monotonic() < killed_at + 25, f"the killed cell did not end:\n{ui.describe()}"
        time.sleep(0.1)
    ui.wait_kernel_idle(timeout=30)
    ui.screenshot("after-kill")
    # On screen, the cell's error output (rendered as stderr) gives the error's text: the
    # frontend shows an error output's traceback, whose one line cellar-kernel makes
    # "KernelDied: EVALUE" (the name in red, as IPython's last line).
    shown = ui.cell(target).locator(
        '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]').inner_text()
    assert shown.startswith("KernelDied: "), shown
    assert "killed by signal 9" in shown and "while running this cell" in shown, shown
    assert "restored this session's definitions (6 cells of" in shown, shown
    # Saved (Ctrl+S), the notebook holds it as an error output named KernelDied.
    ui.cell(target).locator(".cm-content").click()
    ui.page.keyboard.press("Control+s")
    deadline = time.monotonic() + 30
    while not (died := [o for o in nbformat.read(str(ui.dir / "kill.ipynb"), as_version=4).cells[target].outputs
                        if o.output_type == "error"]):
        assert time.monotonic() < deadline, "the notebook was not saved with the cell's error"
        time.sleep(0.2)
    assert [o.ename for o in died] == ["KernelDied"], died
    assert died[0].traceback == ["\x1b[0;31mKernelDied\x1b[0m: " + died[0].evalue], died
    assert shown.strip() == "KernelDied: " + died[0].evalue, (shown, died)
    assert nbserver.log_path.read_text(errors="replace").count(replayed) == replays_before + 1, nbserver.log()
    assert "was killed by signal 9" in nbserver.log_path.read_text(errors="replace")
    new_proxy, new_child = notebook_child_kernel(nbserver, path)
    assert (new_proxy, new_child != child) == (proxy, True), "the same proxy, a new ipykernel"
    assert count_lines(log) == calls("sleepy"), "the killed cell is not run again"
    log.write_text("")

    # The tab carries on: `%cellar run c` loads the earlier nodes, no body reruns, and
    # nothing was asked of the user (no dialog, Notebook 7's "Kernel Restarting" included).
    ui.run_cell(RUN)
    ui.screenshot("run-after-kill")
    rep = ui.report(RUN)
    assert rep["status"] == {"a": "loaded", "b": "loaded", "c": "loaded"}, rep
    assert ui.result_text(RUN) == "21"
    assert count_lines(log) == calls()
    prompt_after = ui.cell(RUN).locator(".jp-InputArea-prompt").inner_text().strip()
    assert prompt_after == "[1]:", f"a new ipykernel counts from 1: {prompt_after!r}"
    assert notebook_child_kernel(nbserver, path) == (proxy, new_child)
    seen = ui.page.evaluate("window.cellarSeen")
    assert seen["dialogs"] == [], seen
    assert ui.page.locator(".jp-Dialog").count() == 0
    print(f"kernel statuses shown after the kill: {seen['statuses']}")
