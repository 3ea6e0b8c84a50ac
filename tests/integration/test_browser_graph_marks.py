"""`%cellar graph`'s behaviour marks in a real JupyterLab 4 (browser_lab.py, as
test_browser_lab.py): a node marked recompute, disable or ignore shows "[recompute]"
(...) in its label, and the legend under the graph explains it; in the light, dark and
dark high-contrast themes every such text has a WCAG contrast of at least 4.5 against
what is painted behind it, measured from computed colours."""

from __future__ import annotations


import pytest

import browser_lab
from browser_lab import chromium_browser, page_for_test, LabPage, LabServer, chromium_missing_reason, write_notebook
from conftest import HELPER

_missing = chromium_missing_reason()
pytestmark = pytest.mark.skipif(_missing is not None, reason=f"browser tests need chromium: {_missing}")

WCAG_AA = 4.5

NODES = '''import cellar

@cellar.node(behavior="ignore")
def client():
    return object()

@cellar.node(behavior="recompute")
def prices(client):
    return 3

@cellar.node(behavior="disable")
def stamp(prices):
    return prices + 1

def summary(stamp):
    return stamp * 2
'''
CELLS = ["%load_ext cellar\n", HELPER, NODES, "%cellar graph\n"]

# The legend's lines, measured as the report cells are (same colour arithmetic).
_TABLE = ".cellar-report td, ${scope} .cellar-report th"
assert _TABLE in browser_lab._CONTRAST
LEGEND_CONTRAST = browser_lab._CONTRAST.replace(
    _TABLE, ".cellar-graph-legend div, ${scope} .cellar-graph-legend code")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    server = LabServer(tmp_path_factory.mktemp("lab"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(lab):
    yield from chromium_browser()


@pytest.fixture
def ui(request, lab, browser, tmp_path):
    yield from page_for_test(request, lab, browser, tmp_path, LabPage)


def test_behaviour_marks_and_legend_are_legible_in_every_theme(ui):
    write_notebook(ui.dir / "marks.ipynb", CELLS)
    ui.open_notebook(f"{ui.rel}/marks.ipynb")
    ui.run_all()
    ui.cell(len(CELLS) - 1).locator("svg.cellar-graph").wait_for()
    scope = ".jp-NotebookPanel:not(.lm-mod-hidden)"
    for theme in ("JupyterLab Dark", "JupyterLab Dark High Contrast", "JupyterLab Light"):
        ui.set_theme(theme)
        ui.cell(len(CELLS) - 1).scroll_into_view_if_needed()
        ui.screenshot(f"{theme.replace(' ', '-').lower()}-graph")
        graph = [m for m in ui.contrasts() if m["what"] == "graph"]
        marks = {m["text"] for m in graph if m["text"].startswith("[")}
        assert marks == {"[recompute]", "[disable]", "[ignore]"}, graph
        legend = [m for m in ui.page.evaluate(LEGEND_CONTRAST, scope) if m["what"] == "report"]
        lines = [m["text"] for m in legend]
        assert any(t.startswith("[recompute] computed in every run") for t in lines), lines
        assert any(t.startswith("[disable]") for t in lines), lines
        assert any(t.startswith("[ignore]") for t in lines), lines
        bad = [m for m in graph + legend if m["ratio"] < WCAG_AA]
        assert not bad, f"{theme}: below WCAG contrast {WCAG_AA}: {bad}"
