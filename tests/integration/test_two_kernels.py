"""Issue point 11: two kernels run the same notebook against one store at the same time."""

import threading

from conftest import SETUP_CELLS, Kernel, calls, count_lines

CELLS = SETUP_CELLS + [
    ("nodes", '''
import time

def base(n):
    _log("base")
    time.sleep(0.2)
    return list(range(n))

def squares(base):
    _log("squares")
    time.sleep(0.1)
    return [x * x for x in base]

def total(squares):
    _log("total")
    return sum(squares)

def evens(base):
    _log("evens")
    return [x for x in base if x % 2 == 0]
'''),
]
# Per round, the input each kernel runs with: the same (both race on one key) or not
# (both write different results into the store at the same time).
ROUNDS = [(10, 10), (20, 30), (30, 20), (10, 40), (40, 40)]


def expected(n):
    sq = [x * x for x in range(n)]
    return {"total": sum(sq), "evens": [x for x in range(n) if x % 2 == 0]}


def drive(k: Kernel, which: int, barrier: threading.Barrier, out: dict, errors: list):
    try:
        for cid, code in CELLS:
            k.ok(code, cell_id=cid)
        for pair in ROUNDS:
            n = pair[which]
            barrier.wait(timeout=120)
            k.cellar_run(f"total evens --input n={n}").ok()
            out.setdefault(k, []).append(k.eval("_v"))
    except BaseException as exc:  # reported by the main thread
        errors.append(exc)
        barrier.abort()


def test_two_kernels_share_one_store(kernel_factory, tmp_path):
    k1 = kernel_factory()
    k2 = kernel_factory()
    assert k1.store == k2.store
    barrier = threading.Barrier(2)
    out: dict = {}
    errors: list = []
    threads = [threading.Thread(target=drive, args=(k, i, barrier, out, errors))
               for i, k in enumerate((k1, k2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a kernel hung"
    assert not errors, errors
    for i, k in enumerate((k1, k2)):
        assert out[k] == [expected(pair[i]) for pair in ROUNDS]
    # Each distinct input is computed at most once per kernel.
    ran = count_lines(tmp_path / "calls.log")
    distinct = len({n for pair in ROUNDS for n in pair})
    for node in ("base", "squares", "total", "evens"):
        assert 1 <= ran[node] <= 2 * distinct, (node, ran)
    (tmp_path / "calls.log").write_text("")

    # The shared store is consistent: a third kernel loads every result without computing.
    k1.stop()
    k2.stop()
    k3 = kernel_factory()
    for cid, code in CELLS:
        k3.ok(code, cell_id=cid)
    for n in sorted({n for pair in ROUNDS for n in pair}):
        res = k3.cellar_run(f"total evens --input n={n}").ok()
        assert k3.eval("_v") == expected(n)
        assert res.report.status("total") == "loaded"
    assert k3.take_calls() == calls()
