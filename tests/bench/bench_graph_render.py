"""`%cellar graph` of 200 nodes: time to render, against `%cellar status` of the
same graph and an empty cell's round trip, all measured in the same kernels.

    .venv/bin/python tests/bench/bench_graph_render.py [--reps 3] [--calls 10]

The graph: 20 layers of 10 nodes, each reading two nodes of the layer before,
the first layer reading one input (`seed`, a global): 200 nodes, 1 input, 390
edges.  Per repetition, in a fresh kernel: define the nodes (one cell, with a
cellId), run the last layer once (so the graph shows what that run did), then
time inside the kernel (perf_counter):

- the first `%cellar graph` of the process (it also starts graphviz: plugins,
  fonts);
- the median of --calls further `%cellar graph` calls (collect statuses, read
  the last run, lay out with dot, publish SVG + HTML + text);
- the median of --calls `%cellar status` calls (the same planning, as a table);

and, from the client, the median round trip of an empty cell.  Each graph is
checked to hold one node element per node and input.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

LAYERS, WIDTH = 20, 10


def defs():
    out = []
    for layer in range(LAYERS):
        for i in range(WIDTH):
            params = ("seed" if layer == 0 else
                      "n%d_%d, n%d_%d" % (layer - 1, i, layer - 1, (i + 3) % WIDTH))
            out.append("def n%d_%d(%s):\n    return 1\n" % (layer, i, params))
    return "\n".join(out)


TIME = """
import time, json, statistics
_svg = []
_pub = get_ipython().display_pub.publish
def _keep(data, *a, **k):
    if 'image/svg+xml' in data:
        _svg.append(data['image/svg+xml'])
    return _pub(data, *a, **k)
get_ipython().display_pub.publish = _keep
def _time(line, n):
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        get_ipython().run_line_magic('cellar', line)
        ts.append(time.perf_counter() - t0)
    return ts
_first = _time('graph', 1)[0]
_graph = statistics.median(_time('graph', %(calls)d))
_status = statistics.median(_time('status', %(calls)d))
get_ipython().display_pub.publish = _pub
_nodes = _svg[-1].count('class="node')
print('@@BENCH ' + json.dumps({'first': _first, 'graph': _graph, 'status': _status,
                               'nodes': _nodes, 'svg_bytes': len(_svg[-1])}))
"""


def one(tmp, calls):
    store = os.path.join(tmp, "store")
    shutil.rmtree(store, ignore_errors=True)
    with bl.Kernel(tmp, store) as k:
        bl.load_cellar(k)
        k.execute(defs(), cell_id=bl.new_cell_id())
        k.execute("seed = 1")
        k.execute("_ = %%cellar run %s" % " ".join("n%d_%d" % (LAYERS - 1, i) for i in range(WIDTH)))
        fig = k.figures(TIME % {"calls": calls})
        if fig["nodes"] != LAYERS * WIDTH + 1:
            raise bl.CellError("the graph has %d node elements" % fig["nodes"])
        fig["round_trip"] = bl.median(k.round_trip(30))
        return fig


def run(reps=3, calls=10):
    tmp = tempfile.mkdtemp(prefix="cellar-bench-graph-render-")
    try:
        figs = [one(tmp, calls) for _ in range(reps)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    keys = ("first", "graph", "status", "round_trip")
    med = {key: bl.median([f[key] for f in figs]) for key in keys}
    med["svg_bytes"] = figs[-1]["svg_bytes"]
    med["graph_vs_status"] = med["graph"] / med["status"]
    med["graph_vs_round_trip"] = med["graph"] / med["round_trip"]
    return med


def report(m):
    print("%%cellar graph, %d nodes: %.1f ms (first in the process %.1f ms), SVG %d kB"
          % (LAYERS * WIDTH, m["graph"] * 1e3, m["first"] * 1e3, m["svg_bytes"] // 1000))
    print("  vs %%cellar status of the same graph %.1f ms: %.1fx"
          % (m["status"] * 1e3, m["graph_vs_status"]))
    print("  vs an empty cell's round trip %.2f ms: %.1fx"
          % (m["round_trip"] * 1e3, m["graph_vs_round_trip"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--json")
    a = ap.parse_args()
    m = run(a.reps, a.calls)
    report(m)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(m, f, indent=2)


if __name__ == "__main__":
    main()
