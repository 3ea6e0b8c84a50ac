"""Reactive mode's cost per cell: what `%cellar auto on` adds to an empty cell,
whose end re-keys the last run's targets (status planning of them and their
ancestors, fingerprinting each input again).

Two notebooks, each in a fresh kernel:

- strided: the target reads `VIEW = BASE[::2]`, 10 million int64 that are neither
  C- nor Fortran-contiguous (80 MB);
- unrelated: the target reads `ARR`, 10 million contiguous int64, and another node,
  not needed by the target, reads `LST`, a list of 10 million ints.

The figure is the median round trip of an empty cell (`pass`) with the mode on minus
the median with it off, in the same kernel (REPS cells each, alternating blocks).
`--before PY --after PY` runs the same notebooks with two interpreters (two builds),
kernels alternating, and prints after/before; with one `--python`, only that one.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

NOTEBOOKS = {
    "strided": [
        "import numpy as np\nBASE = np.arange(20_000_000)\nVIEW = BASE[::2]\n",
        "def total(VIEW):\n    return int(VIEW.sum())\n",
    ],
    "unrelated": [
        "import numpy as np\nARR = np.arange(10_000_000)\nLST = list(range(10_000_000))\n",
        "def total(ARR):\n    return int(ARR.sum())\n\ndef other(LST):\n    return len(LST)\n",
    ],
}


def cell_cost(python, cells, reps, workdir):
    k = bl.Kernel.__new__(bl.Kernel)
    # benchlib.Kernel with another interpreter: same setup, argv[0] replaced.
    from jupyter_client import KernelManager
    env = dict(os.environ, CELLAR_DIR=os.path.join(workdir, "store"), OMP_NUM_THREADS="1")
    k.km = KernelManager(kernel_name="python3")
    k.km.kernel_spec.argv[0] = python
    k.km.start_kernel(env=env, cwd=workdir)
    k.kc = k.km.client()
    k.kc.start_channels()
    k.kc.wait_for_ready(timeout=60)
    try:
        k.execute("%load_ext cellar")
        for i, c in enumerate(cells):
            k.execute(c, cell_id=f"cell{i}")
        k.execute("_v = %cellar run total")

        def block(n):
            ts = []
            for _ in range(n):
                t = time.perf_counter()
                k.execute("pass")
                ts.append(time.perf_counter() - t)
            return ts

        on, off = [], []
        for _ in range(3):
            off += block(reps)
            k.execute("%cellar auto on")
            k.execute("pass")  # the baseline is taken at the end of this cell
            on += block(reps)
            k.execute("%cellar auto off")
        return statistics.median(on) - statistics.median(off), statistics.median(off)
    finally:
        k.kc.stop_channels()
        k.km.shutdown_kernel(now=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--before")
    ap.add_argument("--after")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--reps", type=int, default=5, help="cells per block (3 blocks a side)")
    ap.add_argument("--rounds", type=int, default=3, help="fresh kernels per tree")
    a = ap.parse_args()
    trees = [("before", a.before), ("after", a.after)] if a.before else [("this", a.python)]
    print(f"load average: {os.getloadavg()[0]:.2f}")
    for name, cells in NOTEBOOKS.items():
        got = {t: [] for t, _ in trees}
        for _ in range(a.rounds):
            for tree, py in trees:
                with tempfile.TemporaryDirectory(prefix="cellar-bench-auto-") as d:
                    got[tree].append(cell_cost(py, cells, a.reps, d)[0])
        med = {t: statistics.median(v) for t, v in got.items()}
        line = ", ".join(f"{t} {med[t] * 1e3:.1f} ms" for t in med)
        if a.before:
            line += f"; after/before {med['after'] / med['before']:.3f}x"
        print(f"{name}: reactive cost per cell {line}  (samples ms: "
              + "; ".join(f"{t} " + " ".join(f"{x * 1e3:.1f}" for x in v) for t, v in got.items())
              + ")")
    print(f"load average: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
