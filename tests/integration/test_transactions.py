"""One write transaction per run, not one per node.

LMDB numbers its write transactions; `cellar stats --json` reports the last
committed one (`last_txn`).  A first run that computes and stores six nodes,
a fully cached run, and a run where a node fails must each add exactly one.
"""

import json
import subprocess

import pytest

from conftest import calls, cellar_bin

CELLAR = cellar_bin()
pytestmark = pytest.mark.skipif(CELLAR is None, reason="no cellar binary")

CHAIN = "\n".join(
    ["def n0():\n    _log('n0')\n    return 0\n"]
    + ["def n%d(n%d):\n    _log('n%d')\n    return n%d + 1\n" % (i, i - 1, i, i - 1)
       for i in range(1, 6)]
    + ["def broken(n5):\n    _log('broken')\n    raise ValueError('no')\n"])


def last_txn(store):
    proc = subprocess.run([CELLAR, "stats", "--json", "--dir", str(store)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["last_txn"]


def test_each_run_commits_one_transaction(kernel):
    kernel.ok(CHAIN, cell_id="chain")
    before = last_txn(kernel.store)
    kernel.cellar_run("n5").ok()
    assert kernel.take_calls() == calls(*["n%d" % i for i in range(6)])
    after_first = last_txn(kernel.store)
    assert after_first - before == 1, "six computed nodes, one commit"

    kernel.restart()
    kernel.setup()
    kernel.ok(CHAIN, cell_id="chain")
    kernel.cellar_run("n5").ok()
    assert kernel.take_calls() == calls()
    after_cached = last_txn(kernel.store)
    assert after_cached - after_first == 1, "a cached run records its lineage in one commit"

    res = kernel.cellar_run("broken")
    assert res.error is not None
    assert kernel.take_calls() == calls("broken")
    assert last_txn(kernel.store) - after_cached == 1, "a failed node still means one commit"
