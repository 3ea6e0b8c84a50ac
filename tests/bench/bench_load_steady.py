"""Figure 3, steady state: loading a 1 GiB array once a kernel has warmed up.

bench_large.py times each contender's first load in a fresh kernel, where on
this VM the first gigabyte a process allocates sometimes costs several times
the next one, whoever allocates it.  This benchmark times loads after that:
one kernel stores the array with cellar and np.save, loads each once
untimed, then alternates `cellar.run` (the session memory dropped each time,
so the value comes from the store) and `np.load`, and prints the medians.

    .venv/bin/python tests/bench/bench_load_steady.py [--reps 7]
"""

import argparse
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

SETUP = """
import gc, json, os, statistics, sys, time
import numpy as np
import cellar
sys.path.insert(0, %(dir)r)
import bench_holder
bench_holder.value = np.arange(2**27, dtype=np.float64)
np.save(%(npy)r, bench_holder.value)
"""

NODE = """import bench_holder

def big_steady():
    return bench_holder.value
"""

LOOP = """
cellar.run('big_steady')
bench_holder.value = None
gc.collect()
def _cellar():
    t = time.perf_counter(); v = cellar.run('big_steady'); t = time.perf_counter() - t
    assert v.shape == (2**27,) and v[-1] == 2**27 - 1
    cellar.forget_memory()
    return t
def _np():
    t = time.perf_counter(); v = np.load(%(npy)r); t = time.perf_counter() - t
    assert v.shape == (2**27,)
    return t
_cellar(); _np()
_c, _n = [], []
for _i in range(%(reps)d):
    _c.append(_cellar()); _n.append(_np())
print('@@BENCH ' + json.dumps({'cellar': _c, 'np_load': _n}))
"""


def run(reps, tmp):
    with open(os.path.join(tmp, "bench_holder.py"), "w") as f:
        f.write("value = None\n")
    p = {"dir": tmp, "npy": os.path.join(tmp, "steady.npy"), "reps": reps}
    with bl.Kernel(tmp, os.path.join(tmp, "store")) as k:
        bl.load_cellar(k)
        k.execute(SETUP % p)
        k.execute(NODE, cell_id="steady")
        res = k.figures(LOOP % p)
    c, n = bl.median(res["cellar"]), bl.median(res["np_load"])
    print("\n== 1 GiB array, steady-state loads, median of %d alternating ==" % reps)
    print("cellar.run (from the store) %.3f s (%.2f GB/s)" % (c, bl.gbps(2**30, c)))
    print("np.load                     %.3f s (%.2f GB/s)" % (n, bl.gbps(2**30, n)))
    print("ratio np.load / cellar      %.2fx (target >= 1.0x) %s"
          % (n / c, "MET" if n / c >= 1.0 else "MISSED"))
    print("samples cellar:  " + " ".join("%.3f" % x for x in res["cellar"]))
    print("samples np.load: " + " ".join("%.3f" % x for x in res["np_load"]))
    return {"cellar_s": c, "np_load_s": n, "ratio": n / c, "samples": res}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="cellar-bench-steady-")
    try:
        run(a.reps, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
