"""Figure 5: store lookups, from the store's own C benchmark.

Builds tests/bench/bench_store_lookup (CMake target `bench_store_lookup`,
Release, no Python extension) in <source>/build/bench and runs it: it fills a
fresh store with 1,000,000 keys and looks them all up in shuffled order in one
reader, against an in-memory hash table in the same run.  This script only
builds, runs and parses it; the figure is the binary's.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cmake():
    here = os.path.join(os.path.dirname(sys.executable), "cmake")
    return here if os.path.exists(here) else shutil.which("cmake")


def build(source):
    bdir = os.path.join(source, "build", "bench")
    subprocess.run([cmake(), "-S", source, "-B", bdir, "-DCELLAR_BUILD_EXTENSION=OFF",
                    "-DCMAKE_BUILD_TYPE=Release"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([cmake(), "--build", bdir, "-j2", "--target", "bench_store_lookup"],
                   check=True, stdout=subprocess.DEVNULL)
    return os.path.join(bdir, "tests", "bench", "bench_store_lookup")


def run(binary, keys):
    tmp = tempfile.mkdtemp(prefix="cellar-bench-store-")
    try:
        out = subprocess.run([binary, "--keys", str(keys), "--dir", tmp], check=True,
                             capture_output=True, text=True).stdout
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n== store lookups (%s) ==" % os.path.relpath(binary, ROOT) if binary.startswith(ROOT)
          else "\n== store lookups (%s) ==" % binary)
    print(out.rstrip())
    m = re.search(r"get_key, (\d+) keys.*?: ([\d.]+) M lookups/s", out)
    r = {"output": out}
    if m:
        r["keys"], r["mlookups_per_s"] = int(m.group(1)), float(m.group(2))
        ok = r["mlookups_per_s"] >= 1.0 and r["keys"] >= 1_000_000
        print("target >= 1.0 M lookups/s in a store of 1,000,000 keys: %s"
              % ("MET" if ok else "MISSED"))
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default=ROOT, help="checkout holding tests/bench/bench_store_lookup.c")
    ap.add_argument("--binary", help="an already built bench_store_lookup")
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--json")
    a = ap.parse_args()
    if not a.binary and not os.path.exists(os.path.join(a.source, "tests/bench/bench_store_lookup.c")):
        print("bench_store: %s has no tests/bench/bench_store_lookup.c; pass --source or --binary"
              % a.source)
        sys.exit(2)
    res = run(a.binary or build(a.source), a.keys)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
