"""Issue 12, `%cellar graph [TARGET ...]`: the graph as inline SVG, through real kernels.

The SVG is parsed as XML; the nodes and edges expected are computed in the same kernel
from the functions' signatures, and statuses are checked after a run, an edit and a
failure, with bodies counted through calls.log (drawing the graph runs none).
"""

import textwrap
import time
import xml.etree.ElementTree as ET

from conftest import CHAIN_DEFS, calls

SVG = "{http://www.w3.org/2000/svg}"

DIAMOND_DEFS = textwrap.dedent(
    """\
    def top():
        _log("top")
        return 1

    def left(top):
        _log("left")
        return top + 1

    def right(top):
        _log("right")
        return top + 2

    def bottom(left, right):
        _log("bottom")
        return left * right

    def scaled(c, factor):
        _log("scaled")
        return c * factor
    """
)
NODES = ("a", "b", "c", "top", "left", "right", "bottom", "scaled")

# The expected graph, computed in the kernel from what the functions declare.
EXPECTED = (
    "(sorted({n for n in %r}), "
    "sorted({n for f in %r for n in __import__('inspect').signature(globals()[f]).parameters} "
    "- set(%r)), "
    "sorted({p + '->' + f for f in %r "
    "for p in __import__('inspect').signature(globals()[f]).parameters}))"
)


def expected(kernel, nodes=NODES):
    n, inputs, edges = kernel.eval(EXPECTED % (nodes, nodes, nodes, nodes))
    return set(n), set(inputs), set(edges)


class Graph:
    """One `%cellar graph` display, parsed."""

    def __init__(self, data):
        assert "image/svg+xml" in data, f"no SVG in {list(data)}"
        self.svg_text = data["image/svg+xml"]
        self.html = data.get("text/html", "")
        self.text = data.get("text/plain", "")
        self.root = ET.fromstring(self.svg_text)
        self.nodes, self.edges, self.tips = {}, set(), {}
        for g in self.root.iter(SVG + "g"):
            cls = (g.get("class") or "").split()
            title = g.find(SVG + "title")
            if cls[:1] == ["node"]:
                assert title.text not in self.nodes, f"two node elements for {title.text}"
                self.nodes[title.text] = cls[1:]
                a = g.find(f"{SVG}g/{SVG}a")
                self.tips[title.text] = a.get("{http://www.w3.org/1999/xlink}title") if a is not None else ""
            elif cls == ["edge"]:
                self.edges.add(title.text)

    def status(self, name):
        cls = self.nodes[name]
        return cls[-1]

    def inputs(self):
        return {n for n, cls in self.nodes.items() if "input" in cls}


def graph(kernel, args=""):
    res = kernel.ok(f"%cellar graph {args}")
    shown = [d for d in res.displays if "image/svg+xml" in d]
    assert len(shown) == 1, f"expected one graph display:\n{res.describe()}"
    return Graph(shown[0])


def define(kernel):
    kernel.ok(CHAIN_DEFS, cell_id="chain")
    kernel.ok(DIAMOND_DEFS, cell_id="diamond")


def test_one_element_per_node_and_input_and_one_per_dependency(kernel):
    define(kernel)
    nodes, inputs, edges = expected(kernel)
    g = graph(kernel)
    assert set(g.nodes) == nodes | inputs
    assert g.inputs() == inputs == {"factor"}
    assert g.edges == edges
    # Inputs are drawn apart: dashed ellipses, where nodes are boxes.
    for grp in g.root.iter(SVG + "g"):
        cls = (grp.get("class") or "").split()
        if cls[:1] == ["node"]:
            shape = grp.find(f".//{SVG}ellipse")
            assert (shape is not None) == ("input" in cls), (cls, ET.tostring(grp))
    # Three forms: the SVG itself, the same SVG inline in HTML (theme variables reach
    # it there), and a text listing of every edge.
    assert g.svg_text.startswith('<svg class="cellar-graph"')
    assert g.svg_text.replace("<svg ", '<svg style="max-width:none" ', 1) in g.html
    assert "var(--jp-ui-font-color1" in g.svg_text
    for e in edges:
        frm, to = e.split("->")
        assert any(ln.startswith(frm + " [") and f"-> {to} [" in ln
                   for ln in g.text.splitlines()), (e, g.text)
    assert kernel.take_calls() == calls(), "drawing the graph must run no body"


def test_statuses_after_run_edit_and_failure(kernel):
    define(kernel)
    g = graph(kernel)
    assert {n: g.status(n) for n in NODES if n != "scaled"} == {n: "needs-run" for n in NODES if n != "scaled"}
    assert g.status("scaled") == "needs-input" and g.status("factor") == "missing"
    assert "factor" in g.tips["scaled"], g.tips

    kernel.ok("factor = 3")
    g = graph(kernel)
    assert g.status("factor") == "global" and g.status("scaled") == "needs-run"

    kernel.cellar_run("c").ok()
    assert kernel.take_calls() == calls("a", "b", "c")
    g = graph(kernel)
    assert [g.status(n) for n in ("a", "b", "c")] == ["computed"] * 3
    assert {g.status(n) for n in ("top", "left", "right", "bottom", "scaled")} == {"needs-run"}

    kernel.cellar_run("c").ok()
    assert [graph(kernel).status(n) for n in ("a", "b", "c")] == ["in-memory"] * 3

    # An edit: b and what depends on it need a run; a keeps what the last run did.
    kernel.ok(CHAIN_DEFS.replace("a * 10", "a * 100"), cell_id="chain")
    g = graph(kernel)
    assert (g.status("a"), g.status("b"), g.status("c")) == ("in-memory", "needs-run", "needs-run")

    # A failure: bottom failed, the rest of the diamond computed.
    kernel.ok(DIAMOND_DEFS.replace('_log("bottom")', 'raise ValueError("boom")'), cell_id="diamond")
    kernel.run("%cellar run bottom")
    assert kernel.take_calls() == calls("top", "left", "right")
    g = graph(kernel)
    assert g.status("bottom") == "failed"
    assert "boom" in g.tips["bottom"], g.tips
    assert {g.status(n) for n in ("top", "left", "right")} == {"computed"}
    # The chain was not in that run: its statuses are for the current code alone.
    assert (g.status("a"), g.status("c")) == ("up-to-date", "needs-run")

    # Fixed and rerun: computed.
    kernel.ok(DIAMOND_DEFS, cell_id="diamond")
    kernel.cellar_run("bottom").ok()
    assert kernel.take_calls() == calls("bottom")
    g = graph(kernel)
    assert g.status("bottom") == "computed"
    assert {g.status(n) for n in ("top", "left", "right")} == {"in-memory"}


def test_after_a_restart_results_in_the_store_are_up_to_date(kernel):
    define(kernel)
    kernel.cellar_run("bottom").ok()
    kernel.restart()
    kernel.setup()
    define(kernel)
    g = graph(kernel)
    assert {g.status(n) for n in ("top", "left", "right", "bottom")} == {"up-to-date"}
    assert g.status("a") == "needs-run"
    assert kernel.take_calls() == calls("top", "left", "right", "bottom")


def test_targets_draw_their_ancestors_only(kernel):
    define(kernel)
    nodes, inputs, edges = expected(kernel, ("a", "b", "c", "scaled"))
    g = graph(kernel, "scaled --input factor=2")
    assert set(g.nodes) == nodes | inputs
    assert g.edges == edges
    assert g.status("factor") == "given"
    g = graph(kernel, "left")
    assert set(g.nodes) == {"top", "left"}
    res = kernel.run("%cellar graph nosuch")
    assert res.status == "error" and "unknown node 'nosuch'" in res.error_text


def test_two_hundred_nodes_render_readably_within_a_bound(kernel):
    # 20 layers of 10; each node reads two of the layer before.
    defs = []
    for layer in range(20):
        for i in range(10):
            params = ("seed" if layer == 0 else
                      f"n{layer - 1}_{i}, n{layer - 1}_{(i + 3) % 10}")
            defs.append(f"def n{layer}_{i}({params}):\n    return 1\n")
    kernel.ok("\n".join(defs), cell_id="many")
    t0 = time.perf_counter()
    res = kernel.ok("%cellar graph")
    took = time.perf_counter() - t0
    shown = [d for d in res.displays if "image/svg+xml" in d]
    g = Graph(shown[0])
    assert len(g.nodes) == 201 and len(g.edges) == 10 + 19 * 20
    assert took < 10.0, f"%cellar graph of 200 nodes took {took:.2f} s"
    # Full-size text, no scaling down: the HTML scrolls instead.
    texts = [t for t in g.root.iter(SVG + "text") if t.get("font-size") == "12.00"]
    assert len(texts) == 201
    assert "scale(1 1)" in g.root.find(SVG + "g").get("transform")
    # The HTML scrolls, and lifts the max-width:100% that notebook frontends give
    # inline SVG, which would shrink 200 nodes to illegible text.
    assert "overflow:auto" in g.html and '<svg style="max-width:none"' in g.html


def test_a_cycle_is_drawn_with_its_nodes_marked(kernel):
    kernel.ok("def p(q):\n    return 1\n\ndef q(p):\n    return 2\n\ndef r(q):\n    return 3\n")
    nodes, inputs, edges = expected(kernel, ("p", "q", "r"))
    g = graph(kernel)
    assert set(g.nodes) == nodes and g.edges == edges
    assert (g.status("p"), g.status("q"), g.status("r")) == ("in-cycle", "in-cycle", "needs-run")
    assert "cycle" in g.tips["p"] and "cycle: " in g.text


def test_no_nodes(kernel):
    res = kernel.ok("%cellar graph")
    assert res.displays and "no nodes" in res.displays[-1]["text/plain"]


def test_behaviours_are_marked_and_explained(kernel):
    """A node whose behaviour is not default shows it in its label ([recompute],
    [disable], [ignore]) and as a class before its status; the legend under the graph
    explains the marks shown, and only those; default nodes carry no mark."""
    kernel.ok("""
        import cellar

        @cellar.node(behavior="ignore")
        def client():
            _log("client")
            return object()

        @cellar.node(behavior="recompute")
        def prices(client):
            _log("prices")
            return 3

        def summary(prices):
            _log("summary")
            return prices * 2

        def plain():
            return 1
        """, cell_id="nodes")
    g = graph(kernel)
    marks = {"client": "ignore", "prices": "recompute"}
    labels = {}
    for grp in g.root.iter(SVG + "g"):
        cls = (grp.get("class") or "").split()
        if cls[:1] == ["node"]:
            name = grp.find(SVG + "title").text
            labels[name] = [t.text for t in grp.iter(SVG + "text")]
    for name in ("client", "prices", "summary", "plain"):
        mark = marks.get(name)
        if mark:
            assert f"[{mark}]" in labels[name], (name, labels[name])
            assert f"mark-{mark}" in g.nodes[name], g.nodes[name]
            assert f"behavior: {mark}" in g.tips[name], g.tips[name]
        else:
            assert not any(t and t.startswith("[") for t in labels[name]), labels[name]
            assert not any(c.startswith("mark-") for c in g.nodes[name]), g.nodes[name]
        assert g.status(name) in ("needs-run", "up-to-date"), g.nodes[name]
    assert g.svg_text.count(">[ignore]<") == 1 and g.svg_text.count(">[recompute]<") == 1
    assert "[disable]" not in g.svg_text
    # The legend: in the HTML after the SVG and in the text, for the marks shown.
    legend = g.html[g.html.index("</svg>"):]
    assert "cellar-graph-legend" in legend, g.html
    assert "<code>[recompute]</code>" in legend and "<code>[ignore]</code>" in legend
    assert "[disable]" not in legend
    assert "client [needs run, ignore] -> prices [needs run, recompute]" in g.text, g.text
    assert any(ln.startswith("[recompute] recompute: computed in every run")
               for ln in g.text.splitlines()), g.text
    assert "[disable]" not in g.text

    # The default behaviour marks every node that names none; a run changes nothing.
    kernel.ok("%cellar default-behavior disable")
    g = graph(kernel, "summary")
    assert "mark-disable" in g.nodes["summary"] and "mark-ignore" in g.nodes["client"]
    assert "<code>[disable]</code>" in g.html and "[plain]" not in g.html
    kernel.ok("%cellar default-behavior default")
    g = graph(kernel)
    assert not any(c.startswith("mark-") for c in g.nodes["summary"])
    assert "cellar-graph-legend" in g.html

    # A graph without marked nodes has no legend.
    kernel.ok("cellar.node(client, behavior='default')\ncellar.node(prices, behavior='default')")
    g = graph(kernel)
    assert not any(c.startswith("mark-") for cls in g.nodes.values() for c in cls), g.nodes
    assert "cellar-graph-legend" not in g.html and "[" not in g.svg_text.split("</style>")[1]
    assert kernel.take_calls() == calls(), "drawing the graph runs no body"
