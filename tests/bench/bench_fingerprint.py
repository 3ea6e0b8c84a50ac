"""Figure 4 and the physical limits: fingerprinting a 1 GiB array, memcpy
bandwidth, and a kernel round trip.

Measured twice: directly, with `cellar.data_version(BIG)`; and through the one
place a user triggers it without storing anything:
`%cellar status` computes every node's cache key, and a node that reads a
module-level value gets that value's data version in its code version.  The
node `fp_node` is defined in one cell (fixed cellId) reading either `BIG`
(np.arange(2**27) float64, 1 GiB) or `TINY` (4 floats); the figure is
status-time(BIG) - status-time(TINY), medians over alternating repetitions.
The reference is hashlib.md5 over the same 1 GiB buffer (no copy).

Limits, in the same kernel: np.copyto of 1 GiB into an already-faulted array
(memcpy bandwidth), and arr.copy() (allocation and page faults included); and,
in a separate fresh kernel, an empty execute_request's round trip from the
driver, before and after `%load_ext cellar` (its cell hooks then run).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

SETUP = """
import time, json, hashlib, statistics
import numpy as np
BIG = np.arange(2**27, dtype=np.float64)
TINY = np.arange(4, dtype=np.float64)
"""

STATUS = """
_t0 = time.perf_counter()
get_ipython().run_line_magic('cellar', 'status')
_t = time.perf_counter() - _t0
print('@@BENCH ' + json.dumps({'t': _t}))
"""

DIRECT = """
import cellar
_ts = []
for _i in range(5):
    _t0 = time.perf_counter(); cellar.data_version(BIG); _ts.append(time.perf_counter() - _t0)
print('@@BENCH ' + json.dumps({'t': statistics.median(_ts)}))
"""

MD5 = """
_ts = []
for _i in range(3):
    _t0 = time.perf_counter(); hashlib.md5(BIG).digest(); _ts.append(time.perf_counter() - _t0)
print('@@BENCH ' + json.dumps({'t': statistics.median(_ts)}))
"""

MEMCPY = """
_dst = np.empty_like(BIG)
_dst.fill(1.0)
_ts = []
for _i in range(5):
    _t0 = time.perf_counter(); np.copyto(_dst, BIG); _ts.append(time.perf_counter() - _t0)
_tc = []
for _i in range(3):
    _t0 = time.perf_counter(); _c = BIG.copy(); _tc.append(time.perf_counter() - _t0); del _c
del _dst
print('@@BENCH ' + json.dumps({'copyto': statistics.median(_ts), 'copy': statistics.median(_tc)}))
"""


def run(reps, tmp):
    nbytes = 2**30
    with bl.Kernel(tmp, os.path.join(tmp, "store")) as k:
        bl.load_cellar(k)
        k.execute(SETUP)
        big, tiny = [], []
        for _ in range(reps):
            for name, acc in (("BIG", big), ("TINY", tiny)):
                k.execute("def fp_node():\n    return %s.shape\n" % name, cell_id="fp")
                acc.append(k.figures(STATUS)["t"])
                if "needs run" not in "\n".join(k.displays):
                    raise bl.CellError("status did not report fp_node")
        md5 = k.figures(MD5)["t"]
        direct = k.figures(DIRECT)["t"]
        mem = k.figures(MEMCPY)
    with bl.Kernel(tmp, os.path.join(tmp, "store")) as k:
        rt_plain = bl.median(k.round_trip(50))
        bl.load_cellar(k)
        rt_cellar = bl.median(k.round_trip(50))
    fp = bl.median(big) - bl.median(tiny)
    r = {"fingerprint_s": fp, "status_big_s": bl.median(big), "status_tiny_s": bl.median(tiny),
         "md5_s": md5, "fp_over_md5": fp / md5, "direct_s": direct,
         "direct_over_md5": direct / md5, "memcpy_s": mem["copyto"],
         "copy_alloc_s": mem["copy"], "round_trip_plain_s": rt_plain,
         "round_trip_cellar_s": rt_cellar}
    g = lambda t: bl.gbps(nbytes, t)  # noqa: E731
    print("\n== fingerprint of 1 GiB float64, median of %d ==" % reps)
    print("cellar data version %.3f s (%.2f GB/s) = status with BIG %.3f s - with TINY %.3f s"
          % (fp, g(fp), r["status_big_s"], r["status_tiny_s"]))
    print("cellar.data_version %.3f s (%.2f GB/s), direct" % (direct, g(direct)))
    print("hashlib.md5         %.3f s (%.2f GB/s)" % (md5, g(md5)))
    print("ratio cellar / md5  %.3f (target <= 0.333) %s" % (r["fp_over_md5"],
          "MET" if r["fp_over_md5"] <= 1 / 3 else "MISSED"))
    print("ratio direct / md5  %.3f (target <= 0.333) %s" % (r["direct_over_md5"],
          "MET" if r["direct_over_md5"] <= 1 / 3 else "MISSED"))
    print("\n== physical limits ==")
    print("memcpy 1 GiB (np.copyto, pre-faulted) %.3f s (%.2f GB/s); arr.copy() %.3f s (%.2f GB/s)"
          % (mem["copyto"], g(mem["copyto"]), mem["copy"], g(mem["copy"])))
    print("empty execute_request round trip: plain kernel %.2f ms, with cellar loaded %.2f ms"
          % (rt_plain * 1e3, rt_cellar * 1e3))
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="cellar-bench-fp-")
    try:
        res = run(a.reps, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
