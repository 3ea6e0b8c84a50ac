"""A/B of the 1,000-node runs between two installed trees, kernels alternating.

The machine these benchmarks run on is shared, and its load changes within
minutes, so "before" and "after" timed in two separate bench_graph.py runs
differ by more than the change under test.  This script starts the kernels of
the two environments alternately (ABAB..., then BABA...), with bench_graph's
graphs and cells, and prints per side the median and the minimum, in µs per
node, of: the first run (fresh store), a second run in the same kernel (every
node in memory), and a fully cached run in a new kernel (after one output).

    # the "before" tree in its own environment, e.g.:
    git archive BASE | tar -x -C /tmp/base/src && cp -a .venv /tmp/base/venv
    (cd /tmp/base/src && /tmp/base/venv/bin/python -m pip install --no-deps .)
    .venv/bin/python tests/bench/bench_ab_graph.py --before /tmp/base/venv/bin/python \\
        --after .venv/bin/python [--reps 9]
"""

import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402
import bench_graph as bg  # noqa: E402


class Kernel(bl.Kernel):
    """A benchlib kernel run by another environment's interpreter."""

    def __init__(self, python, workdir, cellar_dir=None):
        real = sys.executable
        sys.executable = python  # benchlib starts kernels with sys.executable
        try:
            super().__init__(workdir, cellar_dir)
        finally:
            sys.executable = real


def one(python, g, tmp, tag):
    store = os.path.join(tmp, "store-" + tag)
    out = {}
    with Kernel(python, tmp, store) as k:
        bl.load_cellar(k)
        bg.define(k, g)
        f = k.figures(bg.TIME_RUN % g)
        bg.check(g, f, "first run")
        out["first"] = f["t"]
        f = k.figures(bg.TIME_RUN % g)
        bg.check(g, f, "in-memory run")
        out["memory"] = f["t"]
    with Kernel(python, tmp, store) as k:
        bl.load_cellar(k)
        bg.define(k, g)
        k.execute("1")
        f = k.figures(bg.TIME_RUN % g)
        bg.check(g, f, "cached run")
        bg.fully_cached(k, "cached run")
        out["cached"] = f["t"]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="python of the 'before' environment")
    ap.add_argument("--after", required=True, help="python of the 'after' environment")
    ap.add_argument("--reps", type=int, default=9)
    a = ap.parse_args()
    envs = {"before": a.before, "after": a.after}
    tmp = tempfile.mkdtemp(prefix="cellar-bench-ab-")
    for g in (bg.chain_graph(), bg.wide_graph()):
        res = {"before": [], "after": []}
        for i in range(a.reps):
            for side in (("before", "after") if i % 2 == 0 else ("after", "before")):
                res[side].append(one(envs[side], g, tmp, "%s-%s-%d" % (g["name"], side, i)))
        for key in ("cached", "memory", "first"):
            us = {s: [r[key] / bg.N * 1e6 for r in res[s]] for s in res}
            mb, ma = statistics.median(us["before"]), statistics.median(us["after"])
            nb, na = min(us["before"]), min(us["after"])
            print("%-5s %-6s median before %7.2f after %7.2f (x%.2f) | min before %7.2f "
                  "after %7.2f (x%.2f) us/node" % (g["name"], key, mb, ma, ma / mb, nb, na, na / nb))
            print("      samples before %s after %s" % (["%.2f" % x for x in us["before"]],
                                                        ["%.2f" % x for x in us["after"]]))


if __name__ == "__main__":
    main()
