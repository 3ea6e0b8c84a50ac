"""Lineage and results from Python, through real kernels: `%cellar log [N]` and `%cellar show
NODE` after runs, an edit and a restart (what each node did, compared with the bodies that ran,
counted through the side-effect log; the code versions of an edited node), the same records as
`cellar log --json` and `cellar show --json` read them; `cellar.results.NAME` equal to a fresh
computation, loading nothing until it is read (the value's unpickling is a side effect; a blob's
pages are resident only once it is read) and never computing; `cellar.run(..., recompute=[...])` rerunning the named bodies, storing them again and
cutting off downstream.
"""

from __future__ import annotations

import json
import re
import subprocess
import textwrap

import pytest

from conftest import calls, cellar_bin

CELLAR = cellar_bin()

NODES = textwrap.dedent(
    """\
    def raw(n):
        _log("raw")
        return list(range(n))

    def doubled(raw):
        _log("doubled")
        return [x * 2 for x in raw]

    def total(doubled):
        _log("total")
        return sum(doubled)
    """
)
# doubled edited: a new code version, the same value, so total is cut off.
NODES_EDITED = NODES.replace("[x * 2 for x in raw]", "[x + x for x in raw]")

TIME_RE = re.compile(r"^(\d+ ns|\d\.\d\d (µs|ms|s)|\d\d\.\d (µs|ms|s)|\d{3} (µs|ms)|\d{3,} s)$")
MOMENT_RE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
SIZE_RE = re.compile(r"^(\d+ B|\d+\.\d (KiB|MiB|GiB)|\d{3,4} (KiB|MiB|GiB))$")


def table(text: str) -> tuple[str, list[str], list[dict[str, str]], list[str]]:
    """A cellar.Report's text/plain: its title, header, rows (by column name) and the rest."""
    lines = text.splitlines()
    header = re.split(r"\s{2,}", lines[1].strip())
    rows, rest = [], []
    for ln in lines[2:]:
        cols = re.split(r"\s{2,}", ln.strip())
        if len(cols) == len(header) and not rest:
            rows.append(dict(zip(header, cols)))
        else:
            rest.append(ln)
    return lines[0], header, rows, rest


def names(cell: str) -> set[str]:
    return set() if cell == "-" else set(cell.split(", "))


def displays(res, prefix: str) -> list[dict]:
    return [d for d in res.displays if d.get("text/plain", "").startswith(prefix)]


def cli_json(*args) -> dict:
    proc = subprocess.run([CELLAR, *map(str, args), "--json"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_log_and_show_after_runs_an_edit_and_a_restart(kernel):
    k = kernel
    k.ok(NODES, cell_id="nodes")
    did = []  # (computed, in memory, loaded) per run, oldest first, from the side effects
    k.cellar_run("total --input n=4").ok()
    assert k.take_calls() == calls("raw", "doubled", "total")
    k.cellar_run("total --input n=4").ok()
    assert k.take_calls() == calls()
    k.ok(NODES_EDITED, cell_id="nodes")
    k.cellar_run("total --input n=4").ok()
    assert k.take_calls() == calls("doubled"), "total is cut off: doubled's value is the same"
    k.restart()
    k.setup()
    k.ok(NODES_EDITED, cell_id="nodes")
    rep = k.cellar_run("total --input n=4").ok().report
    assert k.take_calls() == calls(), "after the restart everything comes from the store"
    assert rep.with_status("loaded") == {"raw", "doubled", "total"}
    did = [({"raw", "doubled", "total"}, set(), set()),
           (set(), {"raw", "doubled", "total"}, set()),
           ({"doubled"}, {"raw", "total"}, set()),
           (set(), set(), {"raw", "doubled", "total"})]

    res = k.ok("%cellar log")
    (log,) = displays(res, "cellar log:")
    title, header, rows, rest = table(log["text/plain"])
    assert title.startswith("cellar log: 4 runs in "), title
    assert header == ["started", "targets", "inputs", "computed", "loaded", "in memory",
                      "failed", "node time"]
    assert len(rows) == 4 and rest == []
    for row, (computed, memory, loaded) in zip(rows, reversed(did)):  # newest first
        assert names(row["computed"]) == computed, row
        assert names(row["in memory"]) == memory, row
        assert names(row["loaded"]) == loaded, row
        assert row["failed"] == "-" and row["targets"] == "total" and row["inputs"] == "n=4"
        assert MOMENT_RE.match(row["started"]) and TIME_RE.match(row["node time"]), row
    assert [r["started"] for r in rows] == sorted((r["started"] for r in rows), reverse=True)
    assert "<table>" in log["text/html"] and "n=4" in log["text/html"]

    res = k.ok("%cellar log 2")
    title, _, rows2, _ = table(displays(res, "cellar log:")[0]["text/plain"])
    assert title.startswith("cellar log: the 2 newest of 4 runs"), title
    assert rows2 == rows[:2]
    assert k.run("%cellar log zero").status == "error"

    # The command line reads the same records.
    runs = cli_json("log", "--dir", k.store)["runs"]
    assert len(runs) == 4
    for run, (computed, memory, loaded) in zip(runs, reversed(did)):
        assert set(run["outcomes"]["computed"]) == computed
        assert set(run["outcomes"]["in_memory"]) == memory
        assert set(run["outcomes"]["loaded"]) == loaded
        (inp,) = run["inputs"]
        assert (inp["name"], inp["source"], inp["value"]) == ("n", "given", "4")
    assert len({run["inputs"][0]["data_version"] for run in runs}) == 1
    text = subprocess.run([CELLAR, "log", "--dir", str(k.store)], capture_output=True,
                          text=True, timeout=60).stdout.splitlines()
    assert "INPUTS" in text[0] and all(" n=4 " in ln for ln in text[1:]), text

    # total's code never changed: one code version, one result.  Its current key needs n,
    # which only the runs gave: without it the current result cannot be known.
    res = k.ok("%cellar show total")
    title, _, rows, _ = table(displays(res, "cellar show total:")[0]["text/plain"])
    assert title == "cellar show total: 1 code version, 1 result"
    assert [r["result"] for r in rows] == ["stored"]
    k.ok("n = 4")
    res = k.ok("%cellar show total")
    title, _, rows, _ = table(displays(res, "cellar show total:")[0]["text/plain"])
    assert [r["result"] for r in rows] == ["current"]

    # show: doubled has two code versions (one result each), the newest the current one.
    res = k.ok("%cellar show doubled")
    results, runs_of = displays(res, "cellar show doubled:"), displays(res, "runs of doubled:")
    title, header, rows, rest = table(results[0]["text/plain"])
    assert title == "cellar show doubled: 2 code versions, 2 results", title
    assert header == ["code version", "result", "created", "last used", "compute", "size",
                      "data version", "key"]
    assert [r["result"] for r in rows] == ["current", "stored"], rows
    assert rows[0]["code version"] != rows[1]["code version"]
    assert rows[0]["data version"] == rows[1]["data version"], "the edit kept the value"
    for r in rows:
        assert MOMENT_RE.match(r["created"]) and MOMENT_RE.match(r["last used"]), r
        assert TIME_RE.match(r["compute"]) and SIZE_RE.match(r["size"]), r
    assert "parameters: raw; cell: nodes" in " ".join(rest), rest
    assert f"current code version {rows[0]['code version']}" in " ".join(rest)
    title, header, runs_rows, _ = table(runs_of[0]["text/plain"])
    assert title == "runs of doubled: 4, newest first"
    assert [r["status"] for r in runs_rows] == ["loaded", "computed", "in memory", "computed"]
    cli = cli_json("show", "doubled", "--dir", k.store)
    assert {key["code_version"][:12] for key in cli["keys"]} == \
        {r["code version"] for r in rows}
    assert {key["key"][:12] for key in cli["keys"]} == {r["key"] for r in rows}
    assert [r["entry"]["status"] for r in cli["runs"]] == [r["status"] for r in runs_rows]
    assert k.run("%cellar show").status == "error"
    err = k.run("%cellar show nope").error
    assert err["ename"] == "RunError" and "no node 'nope'" in err["evalue"], err
    assert k.take_calls() == calls(), "log and show run nothing"

    # One run in detail from the command line: every node of the edit's run, by its id.
    edit = runs[1]  # newest first: the restart's run, then the edit's
    one = cli_json("log", edit["run_id"], "--dir", k.store)
    assert {n["node"]: n["status"] for n in one["nodes"]} == \
        {"raw": "in memory", "doubled": "computed", "total": "in memory"}
    assert one["inputs"] == edit["inputs"] and one["targets"] == ["total"]
    text = subprocess.run([CELLAR, "log", str(edit["run_id"]), "--dir", str(k.store)],
                          capture_output=True, text=True, timeout=60).stdout
    assert re.search(r"^doubled\s+computed\s", text, re.M), text
    assert re.search(r"^inputs\s+n=4\s+given\s+[0-9a-f]{32}$", text, re.M), text

    # A failing node: the log names it, and the run's detail says why.
    k.ok("def broken(total):\n    raise ValueError('boom ' + str(total))\n", cell_id="broken")
    assert k.run("%cellar run broken").status == "error"
    res = k.ok("%cellar log 1")
    (row,) = table(displays(res, "cellar log:")[0]["text/plain"])[2]
    assert row["failed"] == "broken" and row["inputs"] == "n=4 (global)", row
    newest = cli_json("log", "--dir", k.store, "--limit", "1")["runs"][0]
    assert newest["outcomes"]["failed"] == ["broken"]
    nodes = {n["node"]: n for n in cli_json("log", newest["run_id"], "--dir", k.store)["nodes"]}
    assert nodes["broken"]["status"] == "failed"
    assert nodes["broken"]["error"] == "ValueError: boom 12", nodes["broken"]


PAYLOAD = textwrap.dedent(
    """\
    def _rebuild(data):
        _log("unpickled")
        if os.environ.get("LINEAGE_TEST_BROKEN"):
            raise ValueError("cannot rebuild this payload")
        return Payload(data)

    class Payload:
        def __init__(self, data):
            self.data = data
        def __reduce__(self):
            return (_rebuild, (self.data,))
        def __eq__(self, other):
            return isinstance(other, Payload) and other.data == self.data

    def payload():
        _log("payload")
        return Payload(bytes(range(256)) * 8192)

    def length(payload):
        _log("length")
        return len(payload.data)

    def scaled(length, factor):
        _log("scaled")
        return length * factor
    """
)


def test_results_load_only_when_read_and_never_compute(kernel):
    k = kernel
    k.ok(PAYLOAD, cell_id="nodes")
    k.ok("import cellar")
    # Nothing has run: every read says so, and runs nothing.
    for expr in ("cellar.results.payload", "cellar.results.length"):
        err = k.run(expr)
        assert err.error and err.error["ename"] == "NoResultError", err.describe()
        assert "run it first" in err.error["evalue"] and "never computes" in err.error["evalue"]
    assert k.eval("isinstance(cellar.NoResultError('x'), LookupError)") is True
    assert k.eval("hasattr(cellar.results, 'payload')") is False
    assert k.eval("getattr(cellar.results, 'payload', 'none')") == "none"
    err = k.run("cellar.results.nope").error
    assert err["ename"] == "NoResultError" and "no node 'nope'" in err["evalue"]
    assert k.eval("dir(cellar.results)") == ["length", "payload", "scaled"]
    assert k.take_calls() == calls(), "cellar.results never computes"

    k.cellar_run("scaled --input factor=3").ok()
    assert k.take_calls() == calls("payload", "length", "scaled")

    k.restart()
    k.setup()
    k.ok(PAYLOAD, cell_id="nodes")
    # Reaching the view, listing it and reading an int result load nothing of payload.
    k.ok("import cellar\nview = cellar.results\nnames = dir(view)\nn = view.length")
    assert k.take_calls() == calls(), "nothing unpickled before payload is read"
    assert k.eval("n == len(bytes(range(256)) * 8192)") is True
    err = k.run("cellar.results.scaled").error
    assert "node 'scaled' needs input 'factor'" in err["evalue"], err
    assert "cellar.results(NAME=VALUE).scaled" in err["evalue"], err
    assert k.eval("cellar.results(factor=3).scaled") == 3 * 256 * 8192
    assert k.run("cellar.results(factor=4).scaled").error["ename"] == "NoResultError"
    k.take_calls()
    # Now payload: loaded once (its unpickling is the side effect), equal to a fresh one.
    assert k.eval("cellar.results.payload == Payload(bytes(range(256)) * 8192)") is True
    assert k.take_calls() == calls("unpickled")
    assert k.eval("cellar.results.payload is cellar.results.payload") is True
    assert k.take_calls() == calls(), "kept for the session: not loaded again"
    # A run after it finds the value in memory.
    rep = k.cellar_run("length").ok().report
    assert rep.status("payload") == rep.status("length") == "in memory"

    # A stored result that cannot be unpickled: NoResultError, the unpickling error its cause.
    k.ok("os.environ['LINEAGE_TEST_BROKEN'] = '1'\ncellar.forget_memory()")
    err = k.run("cellar.results.payload").error
    assert err["ename"] == "NoResultError" and "cannot be loaded" in err["evalue"], err
    assert "cannot rebuild this payload" in "\n".join(err["traceback"]), err
    k.ok("try:\n    cellar.results.payload\nexcept cellar.NoResultError as e:\n"
         "    cause = type(e.__cause__).__name__")
    assert k.eval("cause") == "ValueError"
    k.ok("del os.environ['LINEAGE_TEST_BROKEN']")
    assert k.take_calls() == calls("unpickled", "unpickled"), "tried, never computed"

    # An edit: the stored result is not the current one, and nothing runs.
    k.ok(PAYLOAD.replace("* 8192", "* 4096"), cell_id="nodes")
    err = k.run("cellar.results.payload").error
    assert err["ename"] == "NoResultError"
    assert "no result is stored for the current code and inputs" in err["evalue"], err
    err = k.run("cellar.results.length").error
    assert err["ename"] == "NoResultError"
    assert "a node it needs has no result" in err["evalue"], err
    assert k.take_calls() == calls()
    assert k.run("cellar.results(1)").error["ename"] == "TypeError"


def test_recompute_reruns_the_named_bodies(kernel_factory):
    k = kernel_factory()
    k.setup()
    k.ok(NODES, cell_id="nodes")
    k.ok("import cellar")
    assert k.eval("cellar.run('total', n=3)") == 6
    assert k.take_calls() == calls("raw", "doubled", "total")
    before = {key["key"]: key["created_ns"]
              for key in cli_json("ls", "--dir", k.store)["keys"] if key["node"] == "doubled"}
    res = k.ok("v = cellar.run('total', n=3, recompute=['doubled'])")
    assert k.eval("v") == 6
    assert k.take_calls() == calls("doubled"), "only the named body reran"
    rep = res.report
    assert rep.status("doubled") == "computed"
    assert rep.status("total") == "in memory", "downstream cut off: the value is the same"
    after = {key["key"]: key["created_ns"]
             for key in cli_json("ls", "--dir", k.store)["keys"] if key["node"] == "doubled"}
    assert after.keys() == before.keys() and all(after[x] > before[x] for x in after), \
        "stored again"

    # After a restart: recomputed although the store has it; the others are loaded.
    k.restart()
    k.setup()
    k.ok(NODES, cell_id="nodes")
    k.ok("import cellar")
    rep = k.ok("v = cellar.run('total', n=3, recompute=['raw'])").report
    assert k.take_calls() == calls("raw")
    assert rep.status("raw") == "computed" and rep.status("total") == "loaded"
    assert k.eval("v") == 6
    runs = cli_json("log", "--dir", k.store, "--limit", "1")["runs"]
    assert runs[0]["outcomes"]["computed"] == ["raw"]
    # Names that are not nodes are refused before anything runs.
    err = k.run("cellar.run('total', n=3, recompute=['nope'])").error
    assert err["ename"] == "RunError" and "'nope'" in err["evalue"]
    assert k.run("cellar.run('total', n=3, recompute='raw')").error["ename"] == "TypeError"
    assert k.take_calls() == calls()


def test_results_map_no_blob_before_the_read(kernel):
    # A 64 MiB array is a blob file, mapped when loaded and read once by the checksum: the
    # file pages this process has resident (RssFile) grow by its size only when it is read.
    k = kernel
    nodes = "import numpy as np\n\ndef big():\n    _log('big')\n    return np.arange(8 << 20, dtype=np.int64)\n"
    k.ok(nodes, cell_id="nodes")
    k.cellar_run("big").ok()
    assert k.take_calls() == calls("big")
    k.restart()
    k.setup()
    k.ok(nodes, cell_id="nodes")
    k.ok(textwrap.dedent("""\
        import cellar
        def _rss_file():
            with open("/proc/self/status") as f:
                return next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("RssFile:"))
        before = _rss_file()
        names = dir(cellar.results)
        try:
            cellar.results.nothing
        except LookupError:
            pass
        planned = _rss_file()
        value = cellar.results.big
        read = _rss_file()
        """))
    assert k.take_calls() == calls(), "nothing computed"
    assert k.eval("planned - before") < 8 << 20, "no blob mapped before the read"
    assert k.eval("read - planned") >= 60 << 20, "the read mapped and checked the blob"
    assert k.eval("bool((value == np.arange(8 << 20, dtype=np.int64)).all())") is True
