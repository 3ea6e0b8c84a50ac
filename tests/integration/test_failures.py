"""Issue point 9: failures stay local to a node and are never silent."""

import re

import pytest

from conftest import calls, strip_ansi

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
    # The node's own traceback is shown, by IPython's formatter, as an error output.
    node_errors = [e for e in res.errors if e["ename"] == "ValueError"]
    assert len(node_errors) == 1, res.describe()
    assert "boom-4711 from bad" in strip_ansi("\n".join(node_errors[0]["traceback"]))
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
    assert "boom-4711 from bad" in res.error_text

    # Same code, but now it succeeds: the earlier failure was not cached.
    (kernel.dir / "fail.flag").unlink()
    res = kernel.cellar_run("after_bad").ok()
    assert kernel.eval("_v") == 12
    assert kernel.take_calls() == calls("bad", "after_bad")
    assert res.report.status("bad") == "computed"


def test_node_traceback_by_ipython_and_run_error_once(kernel):
    """The failing node's traceback is IPython's rendering of the node's own frames (a
    helper it calls included), shown once; the RunError after it is one summary line,
    without a traceback of the `%cellar run` call."""
    (kernel.dir / "fail.flag").write_text("")
    kernel.ok(NODES, cell_id="nodes")
    kernel.ok("""
        def _check(x):
            raise KeyError(f"key-{x}-from-helper")

        def uses_helper(a):
            _log("uses_helper")
            return _check(a)
        """, cell_id="helper-node")
    res = kernel.cellar_run("after_bad uses_helper")
    assert res.status == "error"
    assert kernel.take_calls() == calls("a", "bad", "uses_helper")
    assert [e["ename"] for e in res.errors] == ["ValueError", "KeyError", "RunError"], \
        res.describe()
    everything = strip_ansi("\n".join(
        "\n".join(m["content"].get("traceback", [])) + m["content"].get("text", "")
        for m in res.messages if m["type"] in ("error", "stream")))
    assert "run_line_magic" not in everything, everything
    assert "cellar" not in everything.replace("cellar run", "").split("RunError")[0], \
        "no frame of cellar's before the summary"
    bad_tb, helper_tb, run_error = (strip_ansi("\n".join(e["traceback"])) for e in res.errors)
    # IPython's own formatter: its "Cell In[N], line L, in NAME" frames, source lines shown.
    assert re.search(r"Cell In\[\d+\], line \d+, in bad\b", bad_tb), bad_tb
    assert 'raise ValueError("boom-4711 from bad")' in bad_tb, bad_tb
    assert re.search(r"in uses_helper\b", helper_tb) and re.search(r"in _check\b", helper_tb), \
        helper_tb
    assert everything.count("Traceback (most recent call last)") == 2, \
        "each failing node's traceback once, and none for the RunError"
    assert "ValueError: boom-4711 from bad" in bad_tb.strip().splitlines()[-1], bad_tb
    assert "Traceback" not in run_error and "---" not in run_error, run_error
    assert run_error.strip().splitlines() == [
        "RunError: " + res.error["evalue"]], run_error
    assert "bad failed" in run_error and "after_bad skipped" in run_error, run_error
    assert res.report.status("bad") == "failed"


def test_run_error_from_python_has_no_frames_of_the_call(kernel):
    res = kernel.run("""
        import cellar
        cellar.run("no_such_node")
        """)
    assert res.status == "error"
    assert len(res.errors) == 1 and res.error["ename"] == "RunError"
    tb = strip_ansi("\n".join(res.error["traceback"]))
    assert tb.strip().splitlines() == ["RunError: " + res.error["evalue"]], tb
    assert "no_such_node" in tb


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


def test_terminal_ipython_shows_node_traceback_and_one_line_run_error(tmp_path):
    """In a terminal IPython the same: the node's frames by IPython's formatter, then the
    report, then RunError as one line, and no frame of the magic call."""
    import os
    import subprocess
    import sys

    driver = tmp_path / "driver.py"
    driver.write_text(
        "ip = get_ipython()\n"
        "for cell in ['%load_ext cellar',\n"
        "             'def a():\\n    return 1\\n\\ndef bad(a):\\n    raise ValueError(\"boom-77\")\\n',\n"
        "             '%cellar run bad', 'print(\"after\")']:\n"
        "    ip.run_cell(cell, store_history=True)\n"
    )
    env = dict(os.environ, CELLAR_DIR=str(tmp_path / "store"))
    proc = subprocess.run(
        [sys.executable, "-m", "IPython", "--quick", "--no-banner", "--colors=NoColor",
         "-c", f"exec(open({str(driver)!r}).read())"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    text = proc.stdout + proc.stderr
    assert "after" in proc.stdout, text
    assert re.search(r"in bad\(a\)", text) and 'raise ValueError("boom-77")' in text, text
    assert text.count("Traceback (most recent call last)") == 1, text
    assert "run_line_magic" not in text, text
    lines = [ln for ln in text.splitlines() if ln.startswith("RunError")]
    assert lines == ["RunError: not every target could be produced: bad failed: ValueError: "
                     "boom-77"], text
    assert text.index("boom-77") < text.index("cellar run: 2 nodes") < text.index("RunError"), text


def debug_session(kernel, code, answers, timeout=60.0):
    """Runs `code` with stdin allowed, answering each input_request with the next of
    `answers` (as a frontend answers the debugger's prompt); returns (stdout, prompts)."""
    import queue
    import time

    kc = kernel.kc
    msg_id = kc.execute(code, allow_stdin=True)
    answers, prompts, out = list(answers), [], ""
    deadline, idle, replied = time.monotonic() + timeout, False, False
    while not (idle and replied):
        assert time.monotonic() < deadline, f"no end of the debug cell; stdout so far:\n{out}"
        try:
            req = kc.get_stdin_msg(timeout=0.05)
            prompts.append(req["content"]["prompt"])
            kc.input(answers.pop(0) if answers else "q")
        except queue.Empty:
            pass
        try:
            m = kc.get_iopub_msg(timeout=0.05)
            if m["parent_header"].get("msg_id") == msg_id:
                if m["msg_type"] == "stream":
                    out += m["content"]["text"]
                elif m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                    idle = True
        except queue.Empty:
            pass
        try:
            r = kc.get_shell_msg(timeout=0.01)
            replied = replied or r["parent_header"].get("msg_id") == msg_id
        except queue.Empty:
            pass
    return strip_ansi(out), prompts


DEBUG_NODES = '''
def base():
    _log("base")
    return 3

def fails(base):
    _log("fails")
    secret_local_4242 = base * 7
    raise ValueError(f"debug-me {secret_local_4242}")
'''


@pytest.mark.parametrize("how", ["magic", "python", "auto"])
def test_debug_after_a_failed_run_opens_the_node(kernel, how):
    """%debug after a run whose node failed opens the node body's frame (its locals,
    its line), not RunError's or the magic's."""
    kernel.ok(DEBUG_NODES, cell_id="nodes")
    if how == "auto":
        kernel.ok("def ok_target():\n    return 1\n", cell_id="ok")
        kernel.run("_v = %cellar run ok_target fails")
        kernel.take_calls()
        kernel.ok("%cellar auto on")
        # Editing fails reruns the targets at the end of this cell, which fail again.
        res = kernel.ok(DEBUG_NODES.replace("base * 7", "base * 7 + 0"), cell_id="nodes")
        assert kernel.take_calls() == calls("fails"), res.describe()
        assert any(e["ename"] == "RunError" for e in res.errors), res.describe()
    else:
        res = kernel.run("_v = %cellar run fails" if how == "magic"
                         else "import cellar\ncellar.run('fails')")
        assert res.status == "error" and res.error["ename"] == "RunError", res.describe()
        assert kernel.take_calls() == calls("base", "fails")
        assert "debug-me 21" in res.error_text
    out, prompts = debug_session(kernel, "%debug", ["p sorted(locals())", "bt", "q"])
    assert prompts and all("ipdb>" in p for p in prompts), (prompts, out)
    assert len(prompts) == 3, (prompts, out)
    assert "'secret_local_4242'" in out, out  # the body's locals
    assert ")fails()" in out and 'raise ValueError(f"debug-me' in out, out  # its frame
    assert "run_line_magic" not in out and "RunError" not in out, out
    assert kernel.take_calls() == calls(), "debugging ran no body"


def test_debug_after_run_error_without_failed_node_is_the_run_error(kernel):
    """A RunError no node caused (an unknown target) leaves %debug on the RunError."""
    res = kernel.run("import cellar\ncellar.run('no_such_node')")
    assert res.error["ename"] == "RunError"
    kernel.ok("import sys\nassert type(sys.last_value).__name__ == 'RunError', sys.last_value")
    kernel.ok("assert cellar.RunError.node_exception is None")
