"""Issue point 9: failures stay local to a node and are never silent."""

import pytest

from conftest import calls

NODES = '''
def a():
    _log("a")
    return 5

def bad(a):
    _log("bad")
    if os.path.exists("fail.flag"):
        raise ValueError("boom-4711 from bad")
    return a + 1

def after_bad(bad):
    _log("after_bad")
    return bad * 2

def good(a):
    _log("good")
    return a * 3
'''


def test_failing_node_fails_only_its_dependants(kernel):
    (kernel.dir / "fail.flag").write_text("")
    kernel.ok(NODES, cell_id="nodes")
    res = kernel.cellar_run("after_bad good")
    assert res.status == "error", res.describe()
    assert kernel.take_calls() == calls("a", "bad", "good"), "good is independent and still runs"
    # The node's own traceback is shown.
    assert "Traceback" in res.stderr and "boom-4711 from bad" in res.stderr, res.describe()
    assert "ValueError" in res.stderr
    # The report comes first, and says who failed and who was skipped.
    rep = res.report
    assert rep.status("bad") == "failed"
    assert rep.status("after_bad") == "skipped"
    assert rep.status("good") == "computed"
    assert rep.summary["failed"] == 1 and rep.summary["skipped"] == 1
    # Then RunError naming both.
    assert res.error["ename"] == "RunError"
    assert "bad" in res.error["evalue"] and "after_bad" in res.error["evalue"], res.error

    # good was stored: it loads after a restart without running.
    kernel.restart()
    kernel.setup()
    kernel.ok(NODES, cell_id="nodes")
    res = kernel.cellar_run("good").ok()
    assert kernel.eval("_v") == 15
    assert kernel.take_calls() == calls()
    assert res.report.status("good") == "loaded"

    # Nothing was stored for bad: it is retried, still fails, and is retried again.
    res = kernel.cellar_run("after_bad")
    assert res.status == "error"
    assert kernel.take_calls() == calls("bad"), "bad is retried; a is a stored hit (loaded, not run)"
    assert "boom-4711 from bad" in res.stderr

    # Same code, but now it succeeds: the earlier failure was not cached.
    (kernel.dir / "fail.flag").unlink()
    res = kernel.cellar_run("after_bad").ok()
    assert kernel.eval("_v") == 12
    assert kernel.take_calls() == calls("bad", "after_bad")
    assert res.report.status("bad") == "computed"


def test_failure_retried_in_same_session(kernel):
    (kernel.dir / "fail.flag").write_text("")
    kernel.ok(NODES, cell_id="nodes")
    kernel.cellar_run("after_bad")
    assert kernel.take_calls() == calls("a", "bad")
    res = kernel.cellar_run("after_bad")
    assert res.status == "error"
    assert kernel.take_calls() == calls("bad"), "the failed node is retried, a stays in memory"
    (kernel.dir / "fail.flag").unlink()
    kernel.cellar_run("after_bad").ok()
    assert kernel.eval("_v") == 12
    assert kernel.take_calls() == calls("bad", "after_bad")


def test_failure_from_python_api(kernel):
    (kernel.dir / "fail.flag").write_text("")
    kernel.ok(NODES, cell_id="nodes")
    res = kernel.run("""
        import cellar
        try:
            cellar.run("after_bad", "good")
        except cellar.RunError as e:
            print("caught", e)
        """).ok()
    assert "caught" in res.stdout and "after_bad" in res.stdout
    assert kernel.take_calls() == calls("a", "bad", "good")


def test_async_node_fails_clearly_and_runs_nothing_downstream(kernel):
    kernel.ok("""
        async def fetched():
            _log("fetched")
            return 1

        def doubled(fetched):
            _log("doubled")
            return 2 * fetched
        """, cell_id="async")
    res = kernel.cellar_run("doubled")
    assert res.error is not None and res.error["ename"] == "RunError"
    assert "async function" in res.error_text
    assert res.report.status("fetched") == "failed"
    assert res.report.status("doubled") == "skipped"
    assert "never awaited" not in res.stderr
    assert kernel.take_calls() == calls(), "an un-awaited coroutine runs no body"


UNPICKLABLE = {
    "lambda": ("lambda x: x + 1", "handle(1)", 2),
    "file": ("open(os.devnull)", "handle.name == os.devnull", True),
    "lock": ("threading.Lock()", "handle.acquire(blocking=False)", True),
}


@pytest.mark.parametrize("kind", sorted(UNPICKLABLE))
def test_unpicklable_result_flows_downstream_with_warning(kernel, kind):
    make, use, expected = UNPICKLABLE[kind]
    nodes = f'''
import threading

def handle():
    _log("handle")
    return {make}

def use(handle):
    _log("use")
    return {use}
'''
    kernel.ok(nodes, cell_id="nodes")
    res = kernel.cellar_run("use").ok()
    assert kernel.eval("_v") == expected
    assert kernel.take_calls() == calls("handle", "use")
    assert res.warnings, f"an unpicklable result needs a 'cellar: warning:' line:\n{res.describe()}"
    assert any("handle" in w for w in res.warnings), res.warnings

    res = kernel.cellar_run("use").ok()
    assert kernel.take_calls() == calls(), "in this session the value is kept in memory"

    kernel.restart()
    kernel.setup()
    kernel.ok(nodes, cell_id="nodes")
    kernel.cellar_run("use").ok()
    assert kernel.eval("_v") == expected
    if kind == "lambda":  # code pickle cannot name is versioned by its code, the same here
        assert kernel.take_calls() == calls("handle"), \
            "not persisted: handle recomputes; use's input has the version it had, use loads"
    else:
        assert kernel.take_calls() == calls("handle", "use"), \
            "not persisted: handle recomputes, and use (whose input had a session-only version) too"


MARK_NODES = '''
import hashlib

def _payload():
    chunks = [hashlib.sha256(str(i).encode()).digest() for i in range(4096)]
    return b"CELLAR-MARK-BEGIN" + b"".join(chunks) + b"CELLAR-MARK-END"

def blob():
    _log("blob")
    return _payload()

def blob_len(blob):
    _log("blob_len")
    return len(blob)
'''


def flip_stored_bytes(store):
    data = store / "data.mdb"
    raw = bytearray(data.read_bytes())
    starts = []
    pos = raw.find(b"CELLAR-MARK-BEGIN")
    while pos >= 0:
        starts.append(pos)
        pos = raw.find(b"CELLAR-MARK-BEGIN", pos + 1)
    assert starts, "the stored value's marker is not in data.mdb (is the value stored uncompressed?)"
    for start in starts:
        end = raw.find(b"CELLAR-MARK-END", start)
        assert end > start
        mid = (start + end) // 2
        for i in range(mid, mid + 16):
            raw[i] ^= 0xFF
    data.write_bytes(bytes(raw))
    return len(starts)


def test_corrupted_stored_result_is_recomputed_with_warning(kernel):
    kernel.ok(MARK_NODES, cell_id="nodes")
    kernel.cellar_run("blob_len blob").ok()
    assert kernel.take_calls() == calls("blob", "blob_len")
    kernel.stop()

    flip_stored_bytes(kernel.store)

    kernel.start()
    kernel.setup()
    kernel.ok(MARK_NODES, cell_id="nodes")
    res = kernel.cellar_run("blob").ok()
    assert kernel.eval("_v == _payload()") is True, "a corrupted value must never be returned"
    assert kernel.take_calls() == calls("blob"), "the corrupted result counts as a miss"
    assert res.warnings, f"a corrupted stored result needs a 'cellar: warning:' line:\n{res.describe()}"
    assert res.report.status("blob") == "computed"

    # The recomputed value was stored again, sound this time.
    kernel.restart()
    kernel.setup()
    kernel.ok(MARK_NODES, cell_id="nodes")
    res = kernel.cellar_run("blob").ok()
    assert kernel.eval("_v == _payload()") is True
    assert kernel.take_calls() == calls()
    assert not res.warnings, res.warnings
