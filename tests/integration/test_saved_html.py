"""Issue 12: cellar's report and graph in a saved notebook converted to HTML.

A notebook on the "cellar" kernelspec as installed (the one ``pip install .`` put in this
environment's ``share/jupyter/kernels``) is executed by nbclient: the chain a -> b -> c
with `%cellar run` (computed), the memory dropped and a rerun (loaded, in memory), a
failing node and its reader in a second run (failed, skipped; the cell fails, as it would
in a user's notebook), `%cellar status` (up to date, needs run) and `%cellar graph`. It is
saved with nbformat, read back and converted by nbconvert's HTMLExporter: the default
(``lab``) template in its light and dark themes, and the ``classic`` one, whose page
defines none of JupyterLab's ``--jp-*`` variables (cellar's fallback colours apply). Each
HTML file is opened in Debian's chromium (headless, through playwright; requests that
leave the file system, the templates' CDN scripts, are refused: a saved notebook is read
offline too) and checked from what chromium computed: every status text of the reports
and every node label of the graph has a WCAG contrast of at least 4.5 against what is
painted behind it, each node's status border at least 3 (browser_lab.contrasts, the
measurement of the JupyterLab and Notebook 7 tests); the graph is there as one inline SVG
with one box per node; and the failing node's traceback shows the node's own frame (its
function name, its source line) and none of cellar's. Bodies are counted through the
side-effect log, as in the other integration tests. Screenshots go to the test's tmp_path
(or $CELLAR_BROWSER_SCREENS/saved-html-<template>).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import nbformat
import pytest

from browser_lab import CHROMIUM, CHROMIUM_ARGS, KERNEL_NAME, chromium_missing_reason, contrasts, write_notebook
from conftest import calls, count_lines
from test_browser_lab import ALL_STATUSES, CELLS, RUN, WCAG_AA, WCAG_NON_TEXT, below_wcag

_missing = chromium_missing_reason()
pytestmark = pytest.mark.skipif(_missing is not None, reason=f"browser tests need chromium: {_missing}")

BOOM = ('def boom(c):\n    _log("boom")\n    raise ValueError("boom-1789 from the node")\n\n'
        'def after(boom):\n    _log("after")\n    return boom\n')
# CELLS (load, helper, a, b, c, `%cellar run c`), then the same steps as the theme test of
# test_browser_lab.py, but with the failing run left to fail (nbclient's allow_errors).
NOTEBOOK = CELLS + [
    "import cellar\ncellar.forget_memory()\n%cellar run b\n",
    "%cellar run c\n",
    BOOM,
    "%cellar run after\n",
    "%cellar status\n",
    "%cellar graph\n",
]
FAILING = 9
GRAPH = len(NOTEBOOK) - 1
NODES = ["a", "after", "b", "boom", "c"]

# (template, theme): the default template (lab) in both of its themes, and classic.
EXPORTS = [("lab", "light"), ("lab", "dark"), ("classic", None)]
# Where each template puts a cell's outputs.
OUTPUT = {"lab": ".jp-OutputArea-output", "classic": ".output_subarea"}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The notebook executed by nbclient on the cellar kernelspec and saved: (its path,
    the bodies that ran)."""
    from jupyter_client.kernelspec import KernelSpecManager
    from nbclient import NotebookClient

    spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    assert Path(spec.argv[0]).name == "cellar-kernel", spec.argv
    work = tmp_path_factory.mktemp("saved")
    path = write_notebook(work / "saved.ipynb", NOTEBOOK)
    nb = nbformat.read(str(path), as_version=4)
    # As a user's kernel: the store in .cellar/ beside the notebook, the kernelspec's
    # `python` this environment's.
    mp = pytest.MonkeyPatch()
    mp.delenv("CELLAR_DIR", raising=False)
    mp.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    try:
        NotebookClient(nb, kernel_name=KERNEL_NAME, timeout=120, allow_errors=True,
                       resources={"metadata": {"path": str(work)}}).execute()
    finally:
        mp.undo()
    nbformat.write(nb, str(path))
    return path, count_lines(work / "calls.log")


def test_the_executed_notebook_holds_what_the_html_is_checked_for(saved):
    path, ran = saved
    nb = nbformat.read(str(path), as_version=4)
    assert nb.metadata.kernelspec.name == KERNEL_NAME
    errors = {i: [o.ename for o in c.outputs if o.output_type == "error"] for i, c in enumerate(nb.cells)}
    assert {i: e for i, e in errors.items() if e} == {FAILING: ["ValueError", "RunError"]}, errors
    assert ran == calls("a", "b", "c", "boom"), "each body once; after never (its input failed)"
    graph = [o for o in nb.cells[GRAPH].outputs if o.output_type == "display_data"]
    assert len(graph) == 1 and {"text/html", "image/svg+xml"} <= set(graph[0].data), graph


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def export(nb_path: Path, out: Path, template: str, theme: str | None) -> Path:
    from nbconvert import HTMLExporter
    kw = {"template_name": template}
    if theme:
        if "theme" not in HTMLExporter.class_trait_names():
            pytest.skip(f"this nbconvert's HTMLExporter has no theme option ({theme} not available)")
        kw["theme"] = theme
    body, _ = HTMLExporter(**kw).from_notebook_node(nbformat.read(str(nb_path), as_version=4))
    out.write_text(body, encoding="utf-8")
    return out


@pytest.mark.parametrize("template,theme", EXPORTS, ids=[f"{t}-{th}" if th else t for t, th in EXPORTS])
def test_report_graph_and_traceback_render_in_the_exported_html(saved, browser, tmp_path, template, theme):
    name = f"{template}-{theme}" if theme else template
    screens = os.environ.get("CELLAR_BROWSER_SCREENS")
    shots = Path(screens) / f"saved-html-{name}" if screens else tmp_path / "screens"
    shots.mkdir(parents=True, exist_ok=True)
    html = export(saved[0], tmp_path / f"saved-{name}.html", template, theme)

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    refused: list[str] = []

    def offline(route):
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()
    context.route("**/*", offline)
    page = context.new_page()
    try:
        page.goto(html.as_uri(), wait_until="load")
        page.screenshot(path=str(shots / "page.png"), full_page=True)
        print(f"screenshots: {shots}; refused requests: {refused}")

        # The theme's variables reach the outputs (lab), or none is defined (classic).
        layout0 = page.evaluate("getComputedStyle(document.body).getPropertyValue('--jp-layout-color0').trim()")
        if template == "lab":
            assert layout0, "the lab template's page defines no --jp-layout-color0"
        else:
            assert not layout0, f"classic defines --jp-layout-color0 ({layout0}): the fallbacks go untested"

        # Legible: every status text and every node label, from computed colours.
        measured = contrasts(page)
        shown = {m["text"] for m in measured if m["what"] == "report"}
        assert ALL_STATUSES <= shown, f"statuses not measured: {ALL_STATUSES - shown}\n{measured}"
        labels = {m["text"] for m in measured if m["what"] == "graph"}
        assert set(NODES) | {"failed"} <= labels, labels
        bad = below_wcag(measured)
        assert not bad, f"{name}: below WCAG contrast (text {WCAG_AA}, borders {WCAG_NON_TEXT}):\n{bad}"
        # The page's own background is what the text was measured against: dark in the
        # dark theme, light otherwise.
        computed_bg = {m["bg"] for m in measured if m["text"] == "computed"}
        for bg in computed_bg:
            r = int(re.match(r"rgb\((\d+)", bg).group(1))
            assert (r < 100) if theme == "dark" else (r > 180), f"{name}: 'computed' on {bg}"

        # The graph: one inline SVG (the text/html bundle; not also the image/svg+xml
        # one), one box per node, drawn at a legible size.
        svgs = page.locator("svg.cellar-graph")
        assert svgs.count() == 1, f"{svgs.count()} cellar graphs in the page"
        svg = svgs.first
        svg.scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "graph.png"))
        nodes = svg.evaluate("""s => [...s.querySelectorAll('g.node')].map(n => ({
            title: n.querySelector('title').textContent,
            boxes: n.querySelectorAll('path, polygon').length,
            w: n.getBoundingClientRect().width, h: n.getBoundingClientRect().height}))""")
        assert sorted(n["title"] for n in nodes) == NODES, nodes
        assert all(n["boxes"] == 1 and n["w"] > 20 and n["h"] > 10 for n in nodes), nodes
        assert svg.locator("g.edge").count() == 4, "a->b, b->c, c->boom, boom->after"
        box = svg.bounding_box()
        assert box and box["width"] > 100 and box["height"] > 50, box

        # The failing node's traceback: IPython's rendering of its own frame, no cellar frame.
        out = OUTPUT[template]
        tbs = page.locator(out, has_text="Traceback (most recent call last)")
        assert tbs.count() == 1, [tbs.nth(k).inner_text() for k in range(tbs.count())]
        tb = tbs.first
        tb.scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "traceback.png"))
        text = tb.inner_text()
        assert re.search(r"Cell In\[\d+\], line 3, in boom\b", text), text
        assert 'raise ValueError("boom-1789 from the node")' in text, text
        assert text.strip().splitlines()[-1].strip() == "ValueError: boom-1789 from the node", text
        assert "cellar" not in text.lower() and "run_line_magic" not in text, f"a frame of cellar's:\n{text}"
        # ...and the RunError after it, one line naming the failed and the skipped node.
        run_error = page.locator(out, has_text="RunError").last.inner_text().strip()
        assert run_error.startswith("RunError: ") and "\n" not in run_error, run_error
        assert "boom failed" in run_error and "after skipped" in run_error, run_error
    finally:
        context.close()
