"""A store that manages its size, through real kernels and the real `cellar` command:
`%cellar gc` / `cellar gc` keep the recent code versions of every live node within a budget
(a reverted edit still hits, counted through the side-effect log), evict least recently used
first, and leave a running kernel's values usable; a result dropped between a run's plan and
its load is recomputed; two kernels running while gc runs both get right values; `forget`
recomputes exactly that node; `%cellar max-size` and CELLAR_MAX_SIZE collect by themselves
(a `cellar gc` child in the background: the budget holds once it is reaped);
`cellar compact` refuses while a kernel holds the store and works after; `cellar stats` says
what gc would free.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time

import pytest

from conftest import calls, cellar_bin

CELLAR = cellar_bin()
pytestmark = pytest.mark.skipif(CELLAR is None, reason="no cellar binary (set CELLAR_BIN)")

MiB = 1 << 20

# A node whose result is a ~1.5 MiB blob whose content depends on VERSION (its code).
PAYLOAD = """\
import numpy as np
def payload():
    _log("payload")
    return np.full(200_000, {version}, dtype=np.float64)
"""


def cli(store, *args, check=True):
    p = subprocess.run([CELLAR, *args, "--dir", str(store)], capture_output=True, text=True,
                       timeout=120)
    if check:
        assert p.returncode == 0, f"cellar {' '.join(args)}: {p.returncode}\n{p.stdout}{p.stderr}"
    return p


def stats(store) -> dict:
    return json.loads(cli(store, "stats", "--json").stdout)


def keys_of(store) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for k in json.loads(cli(store, "ls", "--json").stdout)["keys"]:
        out.setdefault(k["node"], []).append(k)
    return out


def test_gc_budget_keeps_recent_versions_and_a_reverted_edit_hits(kernel):
    # Five versions of payload, each stored; two small nodes beside it.
    kernel.ok("def small():\n    _log('small')\n    return 'x' * 100\n"
              "def other(small):\n    _log('other')\n    return small + '!'\n")
    for v in range(1, 6):
        kernel.ok(PAYLOAD.format(version=v))
        kernel.cellar_run("payload other").ok()
        time.sleep(0.01)  # distinct last-used times
    assert kernel.take_calls() == calls("small", "other", *["payload"] * 5)
    before = stats(kernel.store)
    assert before["result_bytes"] > 7 * MiB and before["gc_would_free"]["keys"] == 2
    line = [ln for ln in cli(kernel.store, "stats").stdout.splitlines() if ln.startswith("gc frees")]
    assert line and "(2 keys, 2 results; keep 3 versions)" in line[0], line

    budget = 5 * MiB  # the three recent versions (~4.6 MiB) fit, five do not
    res = kernel.ok(f"%cellar gc --max-size {budget}")
    assert "dropped 2 keys and 2 results" in res.stdout, res.stdout
    after = stats(kernel.store)
    assert after["result_bytes"] <= budget
    assert after["gc_would_free"]["keys"] == 0
    nodes = keys_of(kernel.store)
    assert len(nodes["payload"]) == 3 and len(nodes["small"]) == 1 and len(nodes["other"]) == 1

    # Revert to version 3 in a new session: loaded, no body runs.
    kernel.restart()
    kernel.setup()
    kernel.ok("def small():\n    _log('small')\n    return 'x' * 100\n")
    kernel.ok(PAYLOAD.format(version=3))
    rep = kernel.cellar_run("payload small").ok().report
    assert rep.status("payload") == "loaded" and rep.status("small") == "loaded"
    assert kernel.take_calls() == calls()
    assert kernel.eval("float(_v['payload'][0])") == 3.0
    # Version 1 was dropped: it computes again.
    kernel.ok(PAYLOAD.format(version=1))
    assert kernel.cellar_run("payload").ok().report.status("payload") == "computed"
    assert kernel.take_calls() == calls("payload")


def test_budget_evicts_least_recently_used_and_a_holding_kernel_keeps_its_value(kernel_factory):
    a = kernel_factory()
    a.setup()
    defs = "".join(f"def n{i}():\n    _log('n{i}')\n    return np.full(200_000, {i}.0)\n"
                   for i in range(6))
    a.ok("import numpy as np\n" + defs)
    for i in range(6):
        a.cellar_run(f"n{i}").ok()
        time.sleep(0.01)
    a.take_calls()
    # A restarted kernel holds n0, loaded (mapped from its blob).  Loading does not make
    # n0 recent here: last-used times are rewritten at most every 10 minutes.
    a.restart()
    a.setup()
    a.ok("import numpy as np\n" + defs)
    assert a.cellar_run("n0").ok().report.status("n0") == "loaded"
    held = a.eval("float(_v.sum())")
    # The CLI evicts down to 3 results: n0, n1, n2 are the least recently used.
    out = cli(a.store, "gc", "--max-size", "4.7MiB").stdout
    assert "3 evicted for the budget" in out, out
    assert set(keys_of(a.store)) == {"n3", "n4", "n5"}
    assert stats(a.store)["result_bytes"] <= int(4.7 * MiB)
    # What the kernel holds is still usable, and reused without a body run.
    assert a.eval("float(_v.sum())") == held == 0.0
    assert a.cellar_run("n0 n4").ok().report.status("n0") == "in memory"
    assert a.take_calls() == calls()
    assert a.cellar_run("n1").ok().report.status("n1") == "computed"
    assert a.take_calls() == calls("n1")
    # A value mapped from a blob that gc unlinked stays readable in its kernel.
    assert a.cellar_run("n5").ok().report.status("n5") == "loaded"
    cli(a.store, "forget", "n5")
    assert a.eval("float(_v.sum())") == 5.0 * 200_000
    assert not (keys_of(a.store).get("n5"))


def test_result_dropped_between_plan_and_load_is_recomputed(kernel):
    # trigger runs first and forgets stored from another process; down then loads stored,
    # which the run planned as a hit: its blob is gone, so it is recomputed, with a warning.
    defs = f"""\
import numpy as np, subprocess
def stored():
    _log("stored")
    return np.arange(300_000, dtype=np.float64)

def trigger(n):
    _log("trigger")
    subprocess.run([{CELLAR!r}, "forget", "stored", "--dir", {str(kernel.store)!r}],
                   check=True, capture_output=True)
    return n

def down(trigger, stored):
    _log("down")
    return float(stored.sum()) + trigger
"""
    kernel.ok(defs)
    kernel.ok("_first = %cellar run stored")
    kernel.restart()  # a new session: stored comes from the store, not from memory
    kernel.setup()
    kernel.ok(defs)
    kernel.take_calls()
    res = kernel.cellar_run("down --input n=1").ok()
    assert kernel.eval("_v") == float(sum(range(300_000))) + 1
    assert kernel.take_calls() == calls("trigger", "stored", "down")
    assert any("stored" in w and "missing" in w for w in res.warnings), res.stderr
    assert res.report.status("stored") == "computed"


CONCURRENT = """\
import numpy as np, cellar
def block(n, tag):
    _log("block")
    return np.full(150_000, float(n))
def total(block):
    return float(block.sum())
for i in range({rounds}):
    v = cellar.run("total", n=i % 7, tag={tag!r})
    assert v == (i % 7) * 150_000.0, (i, v)
print("rounds done")
"""


def test_two_kernels_running_while_gc_runs_both_finish_right(kernel_factory, tmp_path):
    store = tmp_path / "store"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = kernel_factory(tmp_path / "a", cellar_dir=store)
    b = kernel_factory(tmp_path / "b", cellar_dir=store)
    for k in (a, b):
        k.setup()
    results = {}

    def work(name, k):
        results[name] = k.run(CONCURRENT.format(rounds=40, tag=name), timeout=300)

    threads = [threading.Thread(target=work, args=(n, k)) for n, k in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    gcs = 0
    while any(t.is_alive() for t in threads):
        cli(store, "gc", "--max-size", "2MiB", "--keep", "1")
        gcs += 1
    for t in threads:
        t.join()
    assert gcs >= 3
    for name in ("a", "b"):
        res = results[name]
        assert res.status == "ok", res.describe()
        assert "rounds done" in res.stdout
    cli(store, "gc", "--max-size", "2MiB")
    assert stats(store)["result_bytes"] <= 2 * MiB
    assert cli(store, "verify", check=False).returncode == 0


CHAIN = """\
def a():
    _log("a")
    return 2
def b(a):
    _log("b")
    return a * 10
def c(b):
    _log("c")
    return b + 1
"""


def test_forget_recomputes_that_node_only(kernel):
    kernel.ok(CHAIN)
    kernel.cellar_run("c").ok()
    kernel.take_calls()
    res = kernel.ok("%cellar forget b")
    assert "1 key and 1 result" in res.stdout, res.stdout
    rep = kernel.cellar_run("c").ok().report
    assert kernel.take_calls() == calls("b")
    assert rep.status("b") == "computed" and rep.status("c") == "in memory"
    assert kernel.eval("_v") == 21
    # From the shell, in a new session: only b again.
    cli(kernel.store, "forget", "b")
    kernel.restart()
    kernel.setup()
    kernel.ok(CHAIN)
    rep = kernel.cellar_run("c").ok().report
    assert kernel.take_calls() == calls("b")
    assert rep.status("a") == "loaded" and rep.status("c") == "loaded"
    bad = kernel.run("%cellar forget")
    assert bad.status == "error" and "at least one node" in bad.error_text


def settled(k, limit: int) -> int:
    """The store's result bytes once the kernel's automatic gc (a `cellar gc` child in the
    background, reaped after a cell) has brought them under `limit`, or after 30 s."""
    deadline = time.monotonic() + 30
    while (size := stats(k.store)["result_bytes"]) > limit and time.monotonic() < deadline:
        time.sleep(0.2)
        k.ok("pass")
    return size


def test_max_size_collects_after_a_commit(kernel_factory):
    k = kernel_factory(extra_env={"CELLAR_MAX_SIZE": "3MiB"})
    k.setup()
    assert "max size 3.0 MiB" in k.ok("%cellar max-size").stdout
    k.ok("import numpy as np\ndef big(i):\n    _log('big')\n    return np.full(100_000, float(i))\n")
    for i in range(8):  # 8 x 0.76 MiB
        k.cellar_run(f"big --input i={i}").ok()
        assert settled(k, 3 * MiB) <= 3 * MiB
    assert len(keys_of(k.store)["big"]) >= 3  # the recent ones stay
    k.ok("%cellar max-size off")
    for i in range(8, 13):
        k.cellar_run(f"big --input i={i}").ok()
    time.sleep(1)
    k.ok("pass")
    assert stats(k.store)["result_bytes"] > 3 * MiB
    assert "1.0 MiB" in k.ok("%cellar max-size 1MiB").stdout
    k.cellar_run("big --input i=20").ok()
    assert settled(k, MiB) <= MiB
    bad = k.run("%cellar max-size lots")
    assert bad.status == "error" and "not a size" in bad.error_text
    bad = k.run("%cellar gc --keep 0")
    assert bad.status == "error" and "positive count" in bad.error_text


SMALL = "".join(f"def s{i}():\n    _log('s{i}')\n    return 'v{i}' * 50_000\n" for i in range(40))


def test_compact_refuses_while_a_kernel_holds_the_store(kernel):
    kernel.ok(SMALL)
    kernel.cellar_run(" ".join(f"s{i}" for i in range(40))).ok()
    kernel.take_calls()
    cli(kernel.store, "forget", *[f"s{i}" for i in range(30)])
    p = cli(kernel.store, "compact", check=False)
    assert p.returncode == 1 and "is open in process" in p.stderr, p.stderr
    kernel.stop()
    out = cli(kernel.store, "compact", "--json").stdout
    doc = json.loads(out)
    assert doc["file_after"] < doc["file_before"] / 2
    assert cli(kernel.store, "verify", check=False).returncode == 0
    kernel.start()
    kernel.setup()
    kernel.ok(SMALL)
    kernel.take_calls()
    rep = kernel.cellar_run(" ".join(f"s{i}" for i in range(30, 40))).ok().report
    assert rep.with_status("loaded") == {f"s{i}" for i in range(30, 40)}
    assert kernel.take_calls() == calls()


@pytest.mark.parametrize("args", [["forget", "x"], ["gc"], ["gc", "--dry-run"], ["compact"]])
def test_commands_never_create_a_store_and_document_themselves(args, tmp_path):
    missing = tmp_path / "nothing-here"
    p = subprocess.run([CELLAR, *args, "--dir", str(missing)], capture_output=True, text=True)
    assert p.returncode == 1 and "cellar" in p.stderr and not missing.exists(), p.stderr
    h = subprocess.run([CELLAR, args[0], "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert h.returncode == 0 and h.stdout.startswith(f"usage: cellar {args[0]}")
    assert list(tmp_path.iterdir()) == []


def test_usage_errors(tmp_path):
    for args in (["forget"], ["gc", "--max-size", "lots"], ["gc", "--keep", "0"], ["gc", "--bogus"]):
        p = subprocess.run([CELLAR, *args, "--dir", str(tmp_path)], capture_output=True, text=True)
        assert p.returncode == 2 and "usage: cellar" in p.stderr, (args, p.stderr)
    env = dict(os.environ, CELLAR_MAX_SIZE="lots")
    p = subprocess.run([CELLAR, "gc", "--dir", str(tmp_path)], capture_output=True, text=True,
                       env=env)
    assert p.returncode == 2 and "CELLAR_MAX_SIZE 'lots' is not a size" in p.stderr, p.stderr
