"""Issue 9's generated-case check: random small notebooks and random edits through a real
kernel, against an oracle that knows what each edit must rerun (see notebook_gen.py).

After every edit and every restart, each target's value must equal a fresh computation in the
same kernel, and the bodies that ran (calls.log) must be exactly those whose code closure or
inputs changed: anything more is a needless recompute, anything less a stale result. One
kernel per seed; each feature set is its own test id, so `-k classes` or `-k closures` runs
one of them. A failing case prints the seed, the notebook, the step and what differed, and a
shrunk repro when one reproduces in a fresh kernel.

`CELLAR_PROPTEST_STEPS` (default 30) sets the steps per case; tests/bench/soak_random_notebooks.py
runs many more.
"""

import os

import pytest

from notebook_gen import FEATURE_SETS, Session, shrink

STEPS = int(os.environ.get("CELLAR_PROPTEST_STEPS", "30"))
SEEDS = (1, 2)
CASES = [(name, seed) for name in FEATURE_SETS for seed in SEEDS]


@pytest.mark.parametrize("features,seed", CASES, ids=[f"{n}-seed{s}" for n, s in CASES])
def test_random_notebook(kernel_factory, tmp_path, features, seed):
    k = kernel_factory()
    s = Session(k, seed, FEATURE_SETS[features])
    failure = s.run(STEPS)
    if failure is not None:
        failure.shrunk = shrink(kernel_factory, tmp_path, failure, s)
        pytest.fail(failure.text(), pytrace=False)
