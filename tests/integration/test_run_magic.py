"""Issue point 3: %cellar run / cellar.run, the report, status, dir, --help, loading."""

import re

from conftest import CHAIN_DEFS, calls

STORE_LINE = re.compile(r"^cellar: store (?P<path>/\S+)(?P<rest>.*)$", re.M)


def store_line(text):
    m = STORE_LINE.search(text)
    assert m, f"no 'cellar: store PATH' line in:\n{text}"
    return m


def status_table(res):
    """{node: 'up to date' | 'needs run'} from a `%cellar status` display."""
    assert res.displays, f"status shows nothing:\n{res.describe()}"
    data = res.displays[-1]
    assert "text/html" in data, "status must offer text/html too"
    out = {}
    for ln in data["text/plain"].splitlines():
        cols = re.split(r"\s{2,}", ln.strip())
        if len(cols) >= 2 and cols[-1] in ("up to date", "needs run"):
            out[cols[0]] = cols[-1]
    return out


def test_report_statuses_text_and_html(kernel):
    kernel.ok(CHAIN_DEFS, cell_id="defs")
    res = kernel.cellar_run("c").ok()
    assert kernel.eval("_v") == 21
    assert kernel.take_calls() == calls("a", "b", "c")
    data = [d for d in res.displays if d.get("text/plain", "").startswith("cellar run:")][0]
    assert "text/html" in data, "the report must have an HTML form for notebooks"
    for node in ("a", "b", "c"):
        assert node in data["text/html"]
    rep = res.report
    assert rep.with_status("computed") == {"a", "b", "c"}
    s = rep.summary
    assert (s["nodes"], s["computed"], s["failed"], s["skipped"]) == (3, 3, 0, 0), rep.text
    for node in ("a", "b", "c"):
        row = rep.rows[node]
        assert re.search(r"\d", row["time"]), f"time column empty: {rep.text}"
        assert re.search(r"\d+(\.\d+)?\s*[KMGT]?i?B", row["size"]), f"size column not a size: {rep.text}"
    # Second run: the target comes from this session's memory, no body runs.
    res = kernel.cellar_run("c").ok()
    assert kernel.take_calls() == calls()
    assert res.report.status("c") == "in memory"
    assert res.report.with_status("computed") == set()
    assert res.report.summary["computed"] == 0


def test_report_counts_match_rows(kernel):
    kernel.ok(CHAIN_DEFS, cell_id="defs")
    kernel.cellar_run("b").ok()
    kernel.take_calls()
    res = kernel.cellar_run("c").ok()
    assert kernel.take_calls() == calls("c")
    rep = res.report
    assert rep.status("c") == "computed"
    assert rep.with_status("computed") == {"c"}
    for key, status in (("computed", "computed"), ("loaded", "loaded"), ("in_memory", "in memory"),
                        ("failed", "failed"), ("skipped", "skipped")):
        assert rep.summary[key] == len(rep.with_status(status)), rep.text
    assert rep.summary["nodes"] == len(rep.rows), rep.text


def test_several_targets_return_dict_in_request_order(kernel):
    kernel.ok(CHAIN_DEFS, cell_id="defs")
    kernel.cellar_run("c a").ok()
    assert kernel.eval("list(_v.items())") == [("c", 21), ("a", 2)]
    assert kernel.take_calls() == calls("a", "b", "c")
    kernel.cellar_run("a b").ok()
    assert kernel.eval("list(_v.items())") == [("a", 2), ("b", 20)]
    assert kernel.take_calls() == calls()


def test_cellar_run_from_python(kernel):
    kernel.ok(CHAIN_DEFS, cell_id="defs")
    kernel.ok("""
        def scaled(c, k):
            _log("scaled")
            return c * k
        """, cell_id="scaled")
    res = kernel.ok("import cellar\n_v = cellar.run('scaled', k=2)")
    assert kernel.eval("_v") == 42
    assert kernel.take_calls() == calls("a", "b", "c", "scaled")
    assert len(res.reports) == 1, "cellar.run shows the same report"
    assert res.report.with_status("computed") == {"a", "b", "c", "scaled"}
    kernel.ok("_v = cellar.run('scaled', 'a', k=2)")
    assert kernel.eval("list(_v.items())") == [("scaled", 42), ("a", 2)]
    assert kernel.take_calls() == calls()
    assert kernel.eval("issubclass(cellar.RunError, Exception)") is True
    res = kernel.run("cellar.run('no_such_node')")
    assert res.error and res.error["ename"] == "RunError", res.describe()
    assert "no_such_node" in res.error["evalue"]


def test_unknown_target_is_a_run_error(kernel):
    res = kernel.cellar_run("no_such_node")
    assert res.status == "error"
    assert res.error["ename"] == "RunError"
    assert "no_such_node" in res.error["evalue"]


def test_status_tracks_code_and_inputs(kernel):
    kernel.ok(CHAIN_DEFS, cell_id="defs")
    kernel.ok("""
        def d(a, n):
            _log("d")
            return a + n
        """, cell_id="d")
    assert status_table(kernel.ok("%cellar status")) == {
        "a": "needs run", "b": "needs run", "c": "needs run", "d": "needs run"}
    kernel.cellar_run("c d --input n=1").ok()
    kernel.take_calls()
    table = status_table(kernel.ok("%cellar status --input n=1"))
    assert table == {"a": "up to date", "b": "up to date", "c": "up to date", "d": "up to date"}, table
    table = status_table(kernel.ok("%cellar status --input n=2"))
    assert table["d"] == "needs run" and table["a"] == "up to date", table
    kernel.ok("""
        def a():
            _log("a")
            return 2

        def b(a):
            _log("b")
            return a * 10 + 0

        def c(b):
            _log("c")
            return b + 1
        """, cell_id="defs")
    table = status_table(kernel.ok("%cellar status --input n=1"))
    assert table == {"a": "up to date", "b": "needs run", "c": "needs run", "d": "up to date"}, table
    assert kernel.take_calls() == calls(), "status must not run anything"


def test_status_names_each_missing_input_and_its_node(kernel):
    kernel.ok("""
        def raw(path, sep):
            _log("raw")
            return path + sep

        def cooked(raw, scale=2):
            _log("cooked")
            return raw * scale

        def other(limit):
            _log("other")
            return limit
        """, cell_id="defs")
    res = kernel.ok("%cellar status --input sep=,")
    text = res.displays[-1]["text/plain"]
    lines = text.splitlines()
    assert lines[0] == "cellar status: 0 of 3 nodes up to date", text
    assert re.split(r"\s{2,}", lines[1].strip()) == ["node", "state", "missing input"], text
    rows = {cols[0]: cols[1:] for cols in (re.split(r"\s{2,}", ln.strip()) for ln in lines[2:5])}
    assert rows["raw"] == ["needs input", "path"], text  # sep is given, path is not
    assert rows["other"] == ["needs input", "limit"], text
    assert rows["cooked"] == ["needs run"], text  # scale has a default
    assert "--input NAME=VALUE" in lines[-1], text
    assert "path" in res.displays[-1]["text/html"] and "limit" in res.displays[-1]["text/html"]
    # Both missing inputs of one node are named; a global counts as given.
    kernel.ok("limit = 3")
    text = kernel.ok("%cellar status").displays[-1]["text/plain"]
    assert re.search(r"^raw\s{2,}needs input\s{2,}path, sep$", text, re.M), text
    assert re.search(r"^other\s{2,}needs run\s*$", text, re.M), text
    assert kernel.take_calls() == calls(), "status runs nothing"
    # Nothing missing: no column, no note.
    kernel.cellar_run("cooked other --input path=p --input sep=s").ok()
    text = kernel.ok("%cellar status --input path=p --input sep=s").displays[-1]["text/plain"]
    assert text.splitlines()[1].split() == ["node", "state"], text
    assert "missing" not in text and "--input" not in text, text


UNIT = r"\d+(\.\d+)? (ns|µs|ms|s)"


def test_report_title_and_rows_write_times_alike(kernel):
    kernel.ok(CHAIN_DEFS, cell_id="defs")
    kernel.ok("""
        import time
        def slowish(c):
            time.sleep(0.02)
            return c
        """, cell_id="slowish")
    rep = kernel.cellar_run("slowish").ok().report
    title = rep.text.splitlines()[0]
    m = re.search(r"\((?P<took>[^()]*)\)$", title)
    assert m and re.fullmatch(UNIT, m.group("took")), title
    for node in ("a", "b", "c", "slowish"):
        assert re.fullmatch(UNIT, rep.rows[node]["time"]), rep.text
    assert rep.rows["slowish"]["time"].endswith(" ms"), rep.text
    assert "us" not in rep.text.replace("status", ""), "micro is µ"


def test_load_ext_prints_store_path_and_contents(kernel_factory):
    k = kernel_factory()
    res = k.setup()
    m = store_line(res.stdout)
    assert m["path"] == str(k.store), "CELLAR_DIR sets the store"
    assert re.search(r"\b0 results?\b", m["rest"]), f"a fresh store holds nothing: {m[0]!r}"
    assert (k.store / "data.mdb").exists()
    assert not (k.dir / ".cellar").exists()
    k.ok(CHAIN_DEFS, cell_id="defs")
    k.cellar_run("c").ok()
    k.restart()
    res = k.setup()
    m = store_line(res.stdout)
    assert m["path"] == str(k.store)
    held = re.search(r"\b(\d+) results?\b", m["rest"])
    assert held and int(held[1]) >= 3, f"store line must say what it holds: {m[0]!r}"
    nodes = re.search(r"\b(\d+) nodes?\b", m["rest"])
    assert nodes and int(nodes[1]) >= 3, f"store line must say what it holds: {m[0]!r}"


def test_default_store_is_dot_cellar_in_cwd(kernel_factory):
    k = kernel_factory(cellar_dir=None)
    res = k.setup()
    assert store_line(res.stdout)["path"] == str(k.dir / ".cellar")
    k.ok(CHAIN_DEFS, cell_id="defs")
    k.cellar_run("c").ok()
    assert (k.dir / ".cellar" / "data.mdb").exists()


def test_dir_switches_store(kernel):
    kernel.ok(CHAIN_DEFS, cell_id="defs")
    kernel.cellar_run("c").ok()
    assert kernel.take_calls() == calls("a", "b", "c")
    other = kernel.dir / "other-store"
    kernel.restart()
    kernel.setup()
    res = kernel.ok(f"%cellar dir {other}")
    assert store_line(res.stdout)["path"] == str(other)
    assert (other / "data.mdb").exists(), "dir creates the store"
    kernel.ok(CHAIN_DEFS, cell_id="defs")
    kernel.cellar_run("c").ok()
    assert kernel.take_calls() == calls("a", "b", "c"), "the other store is empty: all compute"
    kernel.restart()
    kernel.setup()  # back on CELLAR_DIR, which holds c
    kernel.ok(CHAIN_DEFS, cell_id="defs")
    res = kernel.cellar_run("c").ok()
    assert kernel.take_calls() == calls()
    assert res.report.status("c") == "loaded"
    kernel.ok(f"%cellar dir {other}")
    kernel.cellar_run("a").ok()
    assert kernel.take_calls() == calls()


def test_help_documents_commands(kernel):
    for line in ("%cellar --help", "%cellar"):
        res = kernel.run(line)
        text = res.stdout + "".join(d.get("text/plain", "") for d in res.displays)
        for word in ("run", "status", "dir", "--input"):
            assert word in text, f"{line!r} does not document {word!r}:\n{text}"


def test_reload_ext_does_not_hook_twice(kernel):
    count = ("(len(get_ipython().events.callbacks['pre_run_cell']),"
             " len(get_ipython().events.callbacks['post_run_cell']))")
    before = kernel.eval(count)
    assert before[0] >= 1 and before[1] >= 1, "load_ext hooks pre_run_cell and post_run_cell"
    kernel.ok("%reload_ext cellar")
    kernel.ok("%reload_ext cellar")
    assert kernel.eval(count) == before
    kernel.ok("%load_ext cellar")
    assert kernel.eval(count) == before
    # Still one graph, still working: a node defined now runs exactly once.
    kernel.ok(CHAIN_DEFS, cell_id="defs")
    kernel.cellar_run("c").ok()
    assert kernel.eval("_v") == 21
    assert kernel.take_calls() == calls("a", "b", "c")


def test_report_is_text_in_a_terminal(tmp_path):
    """Outside a notebook (terminal IPython) the report is printed as the text table."""
    import os
    import subprocess
    import sys

    # A terminal session: each cell goes through the terminal shell's run_cell.
    driver = tmp_path / "driver.py"
    driver.write_text(
        "ip = get_ipython()\n"
        "for cell in ['%load_ext cellar',\n"
        "             'def a():\\n    return 2\\n\\ndef b(a):\\n    return a * 10\\n',\n"
        "             'v = %cellar run b',\n"
        "             'print(\"value\", v)']:\n"
        "    ip.run_cell(cell, store_history=True)\n"
    )
    env = dict(os.environ, CELLAR_DIR=str(tmp_path / "store"))
    proc = subprocess.run(
        [sys.executable, "-m", "IPython", "--quick", "--no-banner", "--colors=NoColor",
         "-c", f"exec(open({str(driver)!r}).read())"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "value 20" in out, out
    assert re.search(r"^cellar run: 2 nodes, 2 computed", out, re.M), out
    assert re.search(r"^b\s{2,}computed\s{2,}", out, re.M), out
    assert "<table" not in out and "<div" not in out, "no HTML in a terminal"
