"""File inputs: the version of a 1 GiB file, first time against md5sum, then after a restart.

    .venv/bin/python tests/bench/bench_file_input.py [--size-mib 1024] [--reps 3]

For each repetition, in one run: `md5sum` of the file (the reference: one read and a
hash), then, in a fresh kernel on a fresh store, `cellar.data_version(Path(file))` (the
first fingerprint: one read, kept in the store), then in a new kernel on that store the same
call again (the kept fingerprint: a stat and a lookup). Each kernel measures its own time
and the bytes it read (rchar in /proc/self/io) around the call. The file is written once and
left to settle (a kept fingerprint is trusted only for a file unchanged for 2 s before it
was read), and the page cache is warm for all three, as it is for a file just written.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

TIMED = """
import time, json, cellar
from pathlib import Path
def _rchar():
    with open('/proc/self/io') as f:
        return int(next(l for l in f if l.startswith('rchar:')).split()[1])
_r0 = _rchar(); _t0 = time.perf_counter()
_dv = cellar.data_version(Path(%r))
_t = time.perf_counter() - _t0; _read = _rchar() - _r0
print('@@BENCH ' + json.dumps({'t': _t, 'read': _read, 'dv': _dv}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    size = args.size_mib << 20
    with tempfile.TemporaryDirectory(prefix="cellar-bench-file-") as tmp:
        path = os.path.join(tmp, "input.bin")
        block = os.urandom(1 << 20)
        with open(path, "wb") as f:
            for _ in range(args.size_mib):
                f.write(block)
        time.sleep(2.5)
        rows = []
        for rep in range(args.reps):
            t0 = time.perf_counter()
            subprocess.run(["md5sum", path], check=True, stdout=subprocess.DEVNULL)
            md5 = time.perf_counter() - t0
            store = os.path.join(tmp, "store-%d" % rep)
            with bl.Kernel(tmp, store) as k:
                bl.load_cellar(k)
                first = k.figures(TIMED % path)
            with bl.Kernel(tmp, store) as k:
                bl.load_cellar(k)
                again = k.figures(TIMED % path)
            assert first["dv"] == again["dv"], "the kept fingerprint gave another version"
            rows.append((md5, first, again))
            print("rep %d: md5sum %.3f s | first %.3f s (%.2fx md5sum, read %d MiB) | "
                  "after restart %.1f us (read %d bytes)"
                  % (rep, md5, first["t"], first["t"] / md5, first["read"] >> 20,
                     again["t"] * 1e6, again["read"]))
        md5s = [r[0] for r in rows]
        firsts = [r[1]["t"] for r in rows]
        agains = [r[2]["t"] for r in rows]
        print("\n%d MiB file, medians over %d: md5sum %.3f s; first fingerprint %.3f s = %.2fx "
              "md5sum (%.2f GB/s); after a restart %.1f us, %d bytes read (file %d bytes)"
              % (args.size_mib, args.reps, bl.median(md5s), bl.median(firsts),
                 bl.median(firsts) / bl.median(md5s), bl.gbps(size, bl.median(firsts)),
                 bl.median(agains) * 1e6, max(r[2]["read"] for r in rows), size))


if __name__ == "__main__":
    main()
