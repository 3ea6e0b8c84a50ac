"""gc over a store of 100,000 results, against one full `cellar verify` of the same store.

A real kernel builds the store: 1,000 nodes that read a global K, run for 20 values of K
(20 code versions of every node) with 5 inputs each, 100 runs of 1,000 nodes, so 100,000
keys and results (small, inline values), node records and run records, as a notebook
edited many times leaves them.  Then, each on its own copy of that store, timed from the
shell as a user runs them:

  cellar gc --dry-run     the plan only (a read snapshot)
  cellar gc               keep 3 versions per node: drops 85,000 keys and results
  cellar gc --max-size B  the same plus eviction down to B (half of what keep leaves)
  cellar verify           the reference: every record, every checksum, every page

and prints each time and its ratio to verify's.  Figures for BENCHMARKS.md are recorded by
the lead on a quiet machine; this script only measures.

    python tests/bench/bench_gc.py [--nodes 1000] [--versions 20] [--inputs 5] [--keep-store]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import Kernel, load_cellar  # noqa: E402


def cellar_bin() -> str:
    for c in (os.environ.get("CELLAR_BIN"), os.path.join(os.path.dirname(sys.executable), "cellar"),
              shutil.which("cellar")):
        if c and os.access(c, os.X_OK):
            return c
    sys.exit("no cellar command: set CELLAR_BIN")


FILL = """\
import cellar
K = 0
{defs}
_names = [{names}]
for _k in range({versions}):
    K = _k
    for _i in range({inputs}):
        cellar.run(*_names, i=_i)
print("filled")
"""


def fill(store: str, nodes: int, versions: int, inputs: int) -> float:
    defs = "\n".join(f"def n{j}(i):\n    return (i, K, {j})\n" for j in range(nodes))
    names = ", ".join(f"'n{j}'" for j in range(nodes))
    work = tempfile.mkdtemp(prefix="cellar-bench-gc-work-")
    t0 = time.perf_counter()
    with Kernel(work, cellar_dir=store) as k:
        load_cellar(k)
        # One cell: the run reports are not published for cellar.run calls.
        k.execute(FILL.format(defs=defs, names=names, versions=versions, inputs=inputs),
                  timeout=3600)
    shutil.rmtree(work, ignore_errors=True)
    return time.perf_counter() - t0


def timed(*argv: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if p.returncode not in (0, 1):  # verify exits 1 when it finds problems
        sys.exit(f"{' '.join(argv)} failed ({p.returncode}):\n{p.stdout}{p.stderr}")
    return took, p.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--versions", type=int, default=20)
    ap.add_argument("--inputs", type=int, default=5)
    ap.add_argument("--keep-store", action="store_true", help="leave the stores on disk")
    args = ap.parse_args()
    cellar = cellar_bin()
    root = tempfile.mkdtemp(prefix="cellar-bench-gc-")
    base = os.path.join(root, "store")
    try:
        took = fill(base, args.nodes, args.versions, args.inputs)
        st = json.loads(subprocess.run([cellar, "stats", "--json", "--dir", base], check=True,
                                       capture_output=True, text=True).stdout)
        print(f"store: {st['results']} results, {st['keys']} keys, {st['nodes']} nodes, "
              f"{st['runs']} runs, data.mdb {st['file_bytes'] / 2**20:.1f} MiB "
              f"(filled in {took:.1f} s by one kernel)")
        budget = st["result_bytes"] * 3 // args.versions // 2
        cases = [("verify", ["verify"]),
                 ("gc --dry-run", ["gc", "--dry-run", "--json"]),
                 ("gc (keep 3)", ["gc", "--json"]),
                 (f"gc --max-size {budget}", ["gc", "--max-size", str(budget), "--json"])]
        times = {}
        for name, argv in cases:
            copy = os.path.join(root, name.split()[0] + str(len(times)))
            shutil.copytree(base, copy)
            times[name], out = timed(cellar, *argv, "--dir", copy)
            detail = ""
            if argv[0] == "gc":
                d = json.loads(out)["dropped"]
                detail = f"  ({d['keys']} keys, {d['results']} results dropped)"
            print(f"{name:<28} {times[name] * 1e3:9.1f} ms{detail}")
        ref = times["verify"]
        for name in times:
            if name != "verify":
                print(f"ratio {name} / verify: {times[name] / ref:.3f}")
    finally:
        if args.keep_store:
            print(f"stores kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
