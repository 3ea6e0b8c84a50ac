"""Issue point 1: top-level functions become nodes, parameters link them, cells own their nodes."""

import pytest

from conftest import CHAIN_DEFS, calls

def test_functions_become_nodes_linked_by_parameters(kernel):
    kernel.ok(CHAIN_DEFS, cell_id="defs")
    assert kernel.take_calls() == calls(), "defining nodes must not run them"
    res = kernel.cellar_run("c").ok()
    assert kernel.eval("_v") == 21
    assert kernel.take_calls() == calls("a", "b", "c")
    rep = res.report
    assert {"a", "b", "c"} <= set(rep.rows)
    assert rep.with_status("computed") == {"a", "b", "c"}


def test_diamond_runs_shared_ancestor_once(kernel):
    kernel.ok("""
        def root():
            _log("root")
            return 3
        def left(root):
            _log("left")
            return root + 1
        def right(root):
            _log("right")
            return root * 2
        def join(left, right):
            _log("join")
            return (left, right)
        """, cell_id="diamond")
    kernel.cellar_run("join").ok()
    assert kernel.eval("_v") == (4, 6)
    assert kernel.take_calls() == calls("root", "left", "right", "join")


def test_private_functions_are_not_nodes(kernel):
    kernel.ok("""
        def _helper():
            _log("_helper")
            return 1
        def public(x=1):
            _log("public")
            return x
        """, cell_id="defs")
    res = kernel.cellar_run("_helper")
    assert res.status == "error"
    assert res.error["ename"] == "RunError", res.describe()
    assert "_helper" in res.error["evalue"]
    assert kernel.take_calls() == calls()
    status = kernel.ok("%cellar status")
    text = status.displays[-1]["text/plain"] if status.displays else status.stdout
    assert "public" in text and "_helper" not in text, text


def test_cell_rerun_without_function_removes_node(kernel):
    kernel.ok("""
        def f():
            _log("f")
            return 1
        def g():
            _log("g")
            return 2
        """, cell_id="cell-1")
    kernel.cellar_run("g").ok()
    assert kernel.take_calls() == calls("g")
    # The same cell, now without g: g leaves the graph although the name is still bound.
    kernel.ok("""
        def f():
            _log("f")
            return 1
        """, cell_id="cell-1")
    assert kernel.eval("callable(g)") is True
    res = kernel.cellar_run("g")
    assert res.status == "error", res.describe()
    assert res.error["ename"] == "RunError"
    assert "g" in res.error["evalue"] and "unknown" in res.error["evalue"].lower(), res.error
    assert kernel.take_calls() == calls()
    kernel.cellar_run("f").ok()
    assert kernel.eval("_v") == 1
    assert kernel.take_calls() == calls("f")
    status = kernel.ok("%cellar status")
    text = status.displays[-1]["text/plain"]
    assert "f" in [ln.split()[0] for ln in text.splitlines() if ln.strip()]
    assert "g" not in [ln.split()[0] for ln in text.splitlines() if ln.strip()], text


def test_other_cells_keep_their_nodes(kernel):
    """Re-running a cell without a node turns its name into an input of its dependants."""
    kernel.ok("""
        def p():
            _log("p")
            return 1
        def p2():
            _log("p2")
            return 7
        """, cell_id="cell-p")
    kernel.ok("""
        def q(p):
            _log("q")
            return p + 1
        """, cell_id="cell-q")
    kernel.cellar_run("q").ok()
    assert kernel.take_calls() == calls("p", "q")
    kernel.ok("""
        del p
        def p2():
            _log("p2")
            return 7
        """, cell_id="cell-p")
    res = kernel.cellar_run("q")
    assert res.status == "error", res.describe()
    assert res.error["ename"] == "RunError"
    text = res.error_text
    assert "'p'" in text and "'q'" in text, f"missing input error must name input p and node q:\n{text}"
    assert kernel.take_calls() == calls(), "q's input is missing: nothing may run"
    kernel.cellar_run("q --input p=41").ok()
    assert kernel.eval("_v") == 42
    assert kernel.take_calls() == calls("q"), "q is still a node of cell-q"


def test_without_cell_id_namespace_decides(kernel):
    kernel.ok("""
        def gone():
            _log("gone")
            return 1
        def rebound():
            _log("rebound")
            return 2
        def kept():
            _log("kept")
            return 3
        """)
    kernel.ok("del gone\nrebound = 5")
    for name in ("gone", "rebound"):
        res = kernel.cellar_run(name)
        assert res.status == "error", res.describe()
        assert res.error["ename"] == "RunError"
        assert name in res.error["evalue"]
    kernel.cellar_run("kept").ok()
    assert kernel.eval("_v") == 3
    assert kernel.take_calls() == calls("kept")


def test_functions_in_the_load_ext_cell_are_nodes(kernel_factory):
    """The cell that loads cellar is a cell like any other: its functions are nodes, and its
    helpers are notebook functions (post_run_cell arrives without a pre_run_cell for it)."""
    k = kernel_factory()
    cell = """
        %load_ext cellar
        import os
        LOG2 = os.path.join(os.getcwd(), "calls.log")
        def _note(name):
            with open(LOG2, "a") as f:
                f.write(name + "\\n")
        def same_cell():
            _note("same_cell")
            return 2
        """
    k.ok(cell, cell_id="first")
    k.ok("""
        def later(same_cell):
            _note("later")
            return same_cell + 1
        """, cell_id="second")
    k.cellar_run("later").ok()
    assert k.eval("_v") == 3
    assert k.take_calls() == calls("same_cell", "later")
    # The helper defined in the load_ext cell must have a stable code version: after a
    # restart, nothing recomputes.
    k.restart()
    k.ok(cell, cell_id="first")
    k.ok("""
        def later(same_cell):
            _note("later")
            return same_cell + 1
        """, cell_id="second")
    res = k.cellar_run("later").ok()
    assert k.eval("_v") == 3
    assert k.take_calls() == calls()
    assert res.report.status("later") == "loaded"


LOAD_AND_RUN = """
    %load_ext cellar
    import os
    import cellar
    LOG3 = os.path.join(os.getcwd(), "calls.log")
    def _note(name):
        with open(LOG3, "a") as f:
            f.write(name + "\\n")
    def base():
        _note("base")
        return 4
    def top(base):
        _note("top")
        return base * 10
    {run}
    """


@pytest.mark.parametrize("run", ["_v = %cellar run top", "_v = cellar.run('top')"])
def test_load_ext_cell_that_defines_and_runs(kernel_factory, run):
    """One cell loads cellar, defines nodes below the %load_ext line and runs them: the run
    sees them (the loading cell had no pre_run_cell; its source is taken when cellar loads),
    and the nodes stay registered for the next cells and after a restart."""
    k = kernel_factory()
    cell = LOAD_AND_RUN.format(run=run)
    res = k.ok(cell, cell_id="first")
    assert "unknown node" not in res.error_text
    assert k.eval("_v") == 40
    assert k.take_calls() == calls("base", "top")
    # Edited in a later cell: exactly the edited node reruns.
    k.ok("""
        def top(base):
            _note("top")
            return base * 100
        """, cell_id="second")
    k.cellar_run("top").ok()
    assert k.eval("_v") == 400
    assert k.take_calls() == calls("top")
    # The same cell after a restart: its nodes load from the store.
    k.restart()
    res = k.ok(cell, cell_id="first")
    assert k.eval("_v") == 40
    assert k.take_calls() == calls()
    assert res.report.status("top") == "loaded"
