"""Runs every cellar benchmark in sequence and prints the figures.

    .venv/bin/python tests/bench/run_all.py [--quick] [--json out.json]

after `CELLAR_EXTRAS=bench bash .ci/setup`.  Not part of the test suite.
Takes about 6-10 minutes on a 2-core machine (most of it Hamilton's own runs);
--quick uses fewer repetitions.  Every figure is a median over fresh kernels
and is printed next to its reference measured in the same run.
"""

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib as bl  # noqa: E402
import bench_fingerprint  # noqa: E402
import bench_graph  # noqa: E402
import bench_large  # noqa: E402
import bench_store  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--json", help="write all figures here")
    ap.add_argument("--store-source", default=bench_store.ROOT,
                    help="checkout holding tests/bench/bench_store_lookup.c")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="cellar-bench-")
    t0 = time.monotonic()
    res = {"versions": bl.kernel_versions(tmp),
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}}
    print("versions: " + ", ".join("%s %s" % kv for kv in res["versions"].items()))
    print("machine: %d CPUs, %s" % (os.cpu_count(), platform.platform()))
    res["graph"] = bench_graph.run(3 if a.quick else 5, tmp)
    res["fingerprint"] = bench_fingerprint.run(3 if a.quick else 5, tmp)
    res["large"] = bench_large.run(1 if a.quick else 4, tmp)
    if os.path.exists(os.path.join(a.store_source, "tests/bench/bench_store_lookup.c")):
        res["store"] = bench_store.run(bench_store.build(a.store_source), 1_000_000)
    else:
        print("\n== store lookups: skipped, no tests/bench/bench_store_lookup.c in %s ==" % a.store_source)
    shutil.rmtree(tmp, ignore_errors=True)
    print("\nall benchmarks: %.0f s" % (time.monotonic() - t0))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
