"""The mutation check: what reusing a 1 GiB value from memory costs.

A value kept in memory is handed out again (status "in memory") only after it is
fingerprinted again and found to have the data version it was stored with (issue 9,
point 4).  For a numpy array or a DataFrame that is a pickle with out-of-band buffers
(no copy) and one XXH3 pass over the data.  This benchmark times, in one kernel:

- `cellar.run(node)` for a node whose 1 GiB result is in memory (the check plus the
  run's own bookkeeping, report and commit), median of --reps;
- `cellar.data_version(value)`, the check alone;
- the reference: one `np.save` of the same value to a file in the same directory
  (for the frame, of its 9 columns as one float64 array, built before timing, and
  also `pickle.dump` protocol 5 of the frame), `os.sync()` before each timed write;

and prints each as a ratio to the reference.  Values are the ones bench_large.py uses:
np.arange(2**27, dtype=float64) and a DataFrame of 14,913,080 rows x 9 columns.

    .venv/bin/python tests/bench/bench_mutation_check.py [--reps 5]
"""

import argparse
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

ROWS = 2**30 // 72

SETUP = '''
import os, sys, time, json, pickle, types, statistics
import numpy as np, pandas as pd
import cellar
bench_holder = types.ModuleType("bench_holder")
sys.modules["bench_holder"] = bench_holder
bench_holder.array = np.arange(2**27, dtype=np.float64)
_rng = np.random.default_rng(0)
_cols = {f"f{i}": _rng.random(%(rows)d) for i in range(8)}
_cols["i"] = np.arange(%(rows)d, dtype=np.int64)
bench_holder.frame = pd.DataFrame(_cols)
del _cols
bench_holder.frame_values = bench_holder.frame.to_numpy(dtype=np.float64)
'''

NODES = '''
def big_array():
    return bench_holder.array

def big_frame():
    return bench_holder.frame

def tiny():
    return [1, 2, 3]
'''

MEASURE = '''
_ip = get_ipython()
_shown = []
_ip.display_pub.publish = lambda *a, **k: _shown.append(1)
def _med(f, reps, sync=False):
    ts = []
    for _ in range(reps):
        if sync:
            os.sync()
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), ts
_out = {}
for _name, _node in (("array", "big_array"), ("frame", "big_frame"), ("tiny", "tiny")):
    cellar.run(_node)  # computed and stored once
    _before = len(_shown)
    _out[_name + "_run"] = _med(lambda: cellar.run(_node), %(reps)d)
    _v = cellar.run(_node)
    _out[_name + "_check"] = _med(lambda: cellar.data_version(_v), %(reps)d)
_path = os.path.join(os.getcwd(), "ref.npy")
_out["array_save"] = _med(lambda: np.save(_path, bench_holder.array), %(reps)d, sync=True)
_out["frame_save"] = _med(lambda: np.save(_path, bench_holder.frame_values), %(reps)d, sync=True)
def _dump():
    with open(os.path.join(os.getcwd(), "ref.pkl"), "wb") as f:
        pickle.dump(bench_holder.frame, f, protocol=5)
_out["frame_dump"] = _med(_dump, %(reps)d, sync=True)
print("@@BENCH " + json.dumps(_out))
'''


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="cellar-bench-mutation-")
    try:
        with bl.Kernel(tmp, cellar_dir=os.path.join(tmp, "store")) as k:
            bl.load_cellar(k)
            k.execute(SETUP % {"rows": ROWS})
            k.execute(NODES, cell_id=bl.new_cell_id())
            f = k.figures(MEASURE % {"reps": a.reps})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def ms(key):
        return f[key][0] * 1e3

    print("== mutation check: 1 GiB values reused in memory, median of %d ==" % a.reps)
    for kind, ref, ref_name in (("array", "array_save", "np.save"),
                                ("frame", "frame_save", "np.save of its values")):
        print("%-5s in-memory cellar.run   %8.1f ms   ratio to %s (%.1f ms): %.2f"
              % (kind, ms(kind + "_run"), ref_name, ms(ref), f[kind + "_run"][0] / f[ref][0]))
        print("%-5s check alone (data_version) %6.1f ms   ratio to %s: %.2f"
              % (kind, ms(kind + "_check"), ref_name, f[kind + "_check"][0] / f[ref][0]))
    print("frame in-memory cellar.run / pickle.dump (%.1f ms): %.2f"
          % (ms("frame_dump"), f["frame_run"][0] / f["frame_dump"][0]))
    print("tiny in-memory cellar.run (floor)  %8.3f ms" % ms("tiny_run"))
    print("samples (s): " + ", ".join("%s=%s" % (k_, ["%.4f" % t for t in v[1]])
                                      for k_, v in sorted(f.items())))


if __name__ == "__main__":
    main()
