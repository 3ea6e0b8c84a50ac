"""Soak of issue 9's generated-notebook check: many more steps than the suite runs.

    .venv/bin/python tests/bench/soak_random_notebooks.py --steps 500 --seed 7 [--seeds 4]
        [--features mixed | --features classes,closures,...] [--shrink-seconds 120]

Runs the Session of tests/integration/test_random_notebooks.py (a real ipykernel and a fresh
store per seed) for `--steps` steps on each of `--seeds` consecutive seeds from `--seed`.
A seed stops at its first failure (after it the store and the oracle disagree on what was
computed), which is printed with its shrunk repro; the next seed goes on. Prints one line
per seed and a summary line with steps per second; exits 1 if any seed failed.
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from conftest import Kernel  # noqa: E402
from notebook_gen import FEATURE_SETS, FEATURES  # noqa: E402
from test_random_notebooks import Session, shrink  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300, help="steps per seed")
    ap.add_argument("--seed", type=int, default=1, help="first seed")
    ap.add_argument("--seeds", type=int, default=1, help="how many consecutive seeds")
    ap.add_argument("--features", default="mixed",
                    help=f"a feature set ({', '.join(FEATURE_SETS)}) or a comma-separated list of "
                         f"features ({', '.join(FEATURES)})")
    ap.add_argument("--shrink-seconds", type=float, default=120.0,
                    help="time to spend shrinking each failure (0: off)")
    ap.add_argument("--keep", action="store_true", help="keep each seed's directory")
    args = ap.parse_args()
    features = FEATURE_SETS.get(args.features) or tuple(args.features.split(","))
    unknown = set(features) - set(FEATURES)
    if unknown:
        ap.error(f"unknown features: {', '.join(sorted(unknown))}")

    failed, steps_done, t0 = 0, 0, time.monotonic()
    for seed in range(args.seed, args.seed + args.seeds):
        wd = Path(tempfile.mkdtemp(prefix=f"cellar-soak-{seed}-"))
        started = []

        def make(workdir=None, **kw):
            k = Kernel(workdir or wd, **kw)
            started.append(k)
            return k

        t = time.monotonic()
        try:
            s = Session(make(), seed, features)
            f = s.run(args.steps)
            done = len(s.trace)
            steps_done += done
            if f is None:
                print(f"seed {seed}: {done} runs ok ({time.monotonic() - t:.1f} s)", flush=True)
            else:
                failed += 1
                f.shrunk = shrink(make, wd, f, s, budget=args.shrink_seconds)
                print(f"seed {seed}: FAILED at step {f.step_no} ({time.monotonic() - t:.1f} s)\n{f.text()}\n",
                      flush=True)
        finally:
            for k in started:
                try:
                    k.stop()
                except Exception as exc:
                    print(f"kernel shutdown failed: {exc!r}", file=sys.stderr)
            if not args.keep:
                shutil.rmtree(wd, ignore_errors=True)
    dt = time.monotonic() - t0
    print(f"soak: {args.seeds} seeds, {failed} failed, {steps_done} steps checked in {dt:.1f} s "
          f"({steps_done / dt:.1f} steps/s), features {args.features}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
