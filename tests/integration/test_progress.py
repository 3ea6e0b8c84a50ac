"""Issue 12: the live progress line of a run that lasts, and none for a fast one.

In a notebook the line is a display with a display_id (display_data, then
update_display_data), and the report takes its place at the end; in a terminal IPython
it is one line on stderr, redrawn after carriage returns and erased before the report.
"""

import os
import re
import subprocess
import sys

import pytest

from conftest import calls

# slow sleeps 1 s, so the line appears while it runs (half a second in) and is redrawn
# when mid starts; mid sleeps 0.3 s, more than the 0.2 s between redraws.
SLOW_CHAIN = """
import time

def slow():
    _log("slow")
    time.sleep(1.0)
    return 1

def mid(slow):
    _log("mid")
    time.sleep(0.3)
    return slow + 1

def last(mid):
    _log("last")
    return mid + 1
"""

PROGRESS_RE = re.compile(r"^cellar: (\d+) of (\d+) nodes done, (running|loading) (\w+) \((.+)\)$")


def displays_with_ids(res):
    """(msg type, display_id, text/plain) of every display message, in order."""
    out = []
    for m in res.messages:
        if m["type"] in ("display_data", "update_display_data"):
            c = m["content"]
            out.append((m["type"], c.get("transient", {}).get("display_id"),
                        c["data"].get("text/plain", "")))
    return out


def test_slow_run_shows_progress_in_place_then_the_report(kernel):
    kernel.ok(SLOW_CHAIN, cell_id="chain")
    res = kernel.cellar_run("last").ok()
    assert kernel.eval("_v") == 3
    assert kernel.take_calls() == calls("slow", "mid", "last")
    shown = displays_with_ids(res)
    assert shown, res.describe()
    kind, did, text = shown[0]
    assert kind == "display_data" and did, f"the line is a display with a display_id: {shown}"
    m = PROGRESS_RE.match(text)
    assert m, f"not a progress line: {text!r}"
    # First drawn half a second in, while slow's body runs.
    assert m.group(1, 2, 3, 4) == ("0", "3", "running", "slow"), text
    assert re.fullmatch(r"\d+(\.\d+)? (ms|s)", m.group(5)), text
    updates = [(k, t) for k, d, t in shown[1:] if d == did]
    assert len(updates) == len(shown) - 1, f"every later display updates the line: {shown}"
    assert all(k == "update_display_data" for k, _ in updates), shown
    # Redrawn in place while the run goes on, before the report arrives.
    lines = [t for _, t in updates[:-1]]
    assert lines and all(PROGRESS_RE.match(t) for t in lines), shown
    assert any(t.startswith("cellar: 1 of 3 nodes done, running mid") for t in lines), shown
    assert "running last" in lines[-1] or "running mid" in lines[-1], shown
    # The last update is the report itself, with its HTML form: it takes the line's place.
    assert updates[-1][1].startswith("cellar run: 3 nodes, 3 computed"), shown
    last_update = [m for m in res.messages if m["type"] == "update_display_data"][-1]
    assert "text/html" in last_update["content"]["data"]
    assert res.report.with_status("computed") == {"slow", "mid", "last"}

    # The same run again is fast (in memory): no progress, one plain report.
    res = kernel.cellar_run("last").ok()
    assert kernel.take_calls() == calls()
    assert not [m for m in res.messages if m["type"] == "update_display_data"], res.describe()
    assert all(d is None for _, d, _ in displays_with_ids(res)), displays_with_ids(res)
    assert res.report.status("last") == "in memory"


def test_one_long_node_shows_the_line_while_it_runs(kernel):
    """A single body that runs 1.3 s: the line appears and is redrawn during it."""
    kernel.ok("""
        import time

        def lone():
            _log("lone")
            time.sleep(1.3)
            return 7
        """, cell_id="lone")
    res = kernel.cellar_run("lone").ok()
    assert kernel.eval("_v") == 7
    assert kernel.take_calls() == calls("lone")
    shown = displays_with_ids(res)
    kind, did, text = shown[0]
    assert kind == "display_data" and did, shown
    m = PROGRESS_RE.match(text)
    assert m and m.group(1, 2, 3, 4) == ("0", "1", "running", "lone"), text
    lines = [t for k, d, t in shown[1:-1]]
    assert len(lines) >= 2 and all(PROGRESS_RE.match(t) for t in lines), \
        f"redrawn while the body runs (every 0.2 s past 0.5 s): {shown}"
    assert all(k == "update_display_data" and d == did for k, d, _ in shown[1:]), shown
    assert shown[-1][2].startswith("cellar run: 1 node"), shown
    # Drawn while the body was still sleeping: each says less than its 1.3 s.
    took = [PROGRESS_RE.match(t).group(5) for t in [text] + lines]
    assert all(t.endswith(" ms") and float(t.split()[0]) < 1300 for t in took[:2]), took
    assert res.report.status("lone") == "computed"


def test_fast_and_cached_runs_show_no_progress(kernel):
    kernel.ok("""
        def a():
            _log("a")
            return 1

        def b(a):
            _log("b")
            return a + 1
        """, cell_id="fast")
    for expected in (calls("a", "b"), calls()):
        res = kernel.cellar_run("b").ok()
        assert kernel.take_calls() == expected
        shown = displays_with_ids(res)
        assert [(k, d) for k, d, _ in shown] == [("display_data", None)], shown
        assert shown[0][2].startswith("cellar run:"), shown


def test_terminal_progress_is_one_line_on_stderr(tmp_path):
    driver = tmp_path / "driver.py"
    driver.write_text(
        "ip = get_ipython()\n"
        f"for cell in [{'%load_ext cellar'!r}, 'def _log(name):\\n    pass\\n', {SLOW_CHAIN!r},\n"
        "             'v = %cellar run last', 'print(\"value\", v)']:\n"
        "    ip.run_cell(cell, store_history=True)\n"
    )
    env = dict(os.environ, CELLAR_DIR=str(tmp_path / "store"))
    proc = subprocess.run(
        [sys.executable, "-m", "IPython", "--quick", "--no-banner", "--colors=NoColor",
         "-c", f"exec(open({str(driver)!r}).read())"],
        cwd=tmp_path, env=env, capture_output=True, timeout=120)  # bytes: keep the \r
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, err
    assert "value 3" in out, out
    assert re.search(r"^cellar run: 3 nodes, 3 computed", out, re.M), out
    assert "nodes done" not in out, "the line goes to stderr, not into the output"
    drawn = re.findall(r"\r(cellar: [^\r\n]*?)\s*(?=\r)", err)
    assert drawn, repr(err)
    assert all(PROGRESS_RE.match(d) for d in drawn), repr(err)
    assert "running slow" in drawn[0] and any("running mid" in d for d in drawn), repr(err)
    assert "\n" not in err[err.index("\rcellar:"):], f"redrawn in place, never a new line: {err!r}"
    assert err.endswith("\r") and err.rstrip("\r").split("\r")[-1].strip() == "", \
        f"the line is erased before the report: {err!r}"


def frontend_outputs(res):
    """The cell's outputs as JupyterLab's output area keeps them (its OutputArea's
    _onIOPub): clear_output clears now, or with wait=True at the next output added;
    update_display_data changes the outputs added with that display_id since the last
    clear. Each output is (msg type, text/plain)."""
    outputs, ids, clear_next = [], {}, False
    for m in res.messages:
        kind, c = m["type"], m["content"]
        did = c.get("transient", {}).get("display_id") if isinstance(c, dict) else None
        if kind == "clear_output":
            if c.get("wait"):
                clear_next = True
            else:
                outputs, ids, clear_next = [], {}, False
        elif kind in ("display_data", "stream", "execute_result", "error"):
            if clear_next:
                outputs, ids, clear_next = [], {}, False
            text = c.get("text", "") if kind == "stream" else c.get("data", {}).get("text/plain", "")
            outputs.append((kind, text))
            if did and kind == "display_data":
                ids.setdefault(did, []).append(len(outputs) - 1)
        elif kind == "update_display_data":
            for i in ids.get(did, []):
                outputs[i] = ("display_data", c["data"].get("text/plain", ""))
    return outputs


# cleaner clears the cell's outputs after the line has been drawn (slow ran 0.8 s),
# then takes long enough for the line to be drawn again; last is the target.
CLEARING_CHAIN = """
import time
from IPython.display import clear_output

def slow():
    _log("slow")
    time.sleep(0.8)
    return 1

def cleaner(slow):
    _log("cleaner")
    print("before the clear")
    clear_output(wait=WAIT)
    print("after the clear")
    time.sleep(SLEEP)
    return slow + 1

def last(cleaner):
    _log("last")
    return cleaner + 1
"""


@pytest.mark.parametrize("wait", [False, True])
@pytest.mark.parametrize("sleep", [0.0, 0.7])
def test_clear_output_in_a_body_keeps_the_report(kernel, wait, sleep):
    """A body that clears the cell's output takes the progress line with it; the line
    (if drawn again) and the report come back as new displays, and the cell ends with
    the report, as a frontend shows it."""
    kernel.ok(CLEARING_CHAIN.replace("WAIT", str(wait)).replace("SLEEP", str(sleep)),
              cell_id="chain")
    res = kernel.cellar_run("last").ok()
    assert kernel.eval("_v") == 3
    assert kernel.take_calls() == calls("slow", "cleaner", "last")
    kinds = [m["type"] for m in res.messages]
    assert "clear_output" in kinds, res.describe()
    before = kinds[:kinds.index("clear_output")]
    assert "display_data" in before, f"the line was drawn before the clear: {kinds}"
    outputs = frontend_outputs(res)
    assert outputs and outputs[-1][0] == "display_data", outputs
    assert outputs[-1][1].startswith("cellar run: 3 nodes, 3 computed"), outputs
    assert not any("nodes done" in t for _, t in outputs), f"no stale line left: {outputs}"
    assert any("after the clear" in t for _, t in outputs), outputs
    assert not any("before the clear" in t for _, t in outputs), outputs
    # After the clear, nothing updates a display made before it.
    clear_at = kinds.index("clear_output")
    old_ids = {m["content"].get("transient", {}).get("display_id")
               for m in res.messages[:clear_at] if m["type"] == "display_data"}
    later = [m["content"].get("transient", {}).get("display_id")
             for m in res.messages[clear_at:] if m["type"] == "update_display_data"]
    assert not old_ids & set(later), (old_ids, later)
    assert res.report.with_status("computed") == {"slow", "cleaner", "last"}
