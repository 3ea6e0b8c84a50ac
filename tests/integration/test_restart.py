"""Issue point 6: after a kernel restart and re-running the cells, nothing recomputes and only
the requested targets are deserialized; upstream values are never loaded when nothing
downstream needs them. `Tracked.__setstate__` writes "load <tag>" to calls.log."""

import textwrap

import pytest

from conftest import calls

TRACKED = textwrap.dedent('''\
    """A value type whose unpickling leaves a trace in calls.log (importable across restarts)."""
    import os

    LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "calls.log")


    class Tracked:
        def __init__(self, tag, payload):
            self.tag = tag
            self.payload = payload

        def __getstate__(self):
            return {"tag": self.tag, "payload": self.payload}

        def __setstate__(self, state):
            with open(LOG, "a") as f:
                f.write("load " + state["tag"] + "\\n")
            self.tag = state["tag"]
            self.payload = state["payload"]

        def __eq__(self, other):
            return isinstance(other, Tracked) and (self.tag, self.payload) == (other.tag, other.payload)

        def __repr__(self):
            return f"Tracked({self.tag!r}, {self.payload!r})"
''')

IMPORTS = "from tracked import Tracked"
NODES = '''
def a():
    _log("a")
    return Tracked("a", list(range(5)))

def b(a):
    _log("b")
    return Tracked("b", [x * 2 for x in a.payload])

def c(b):
    _log("c")
    return Tracked("c", sum(b.payload))

def side(a):
    _log("side")
    return Tracked("side", len(a.payload))
'''


@pytest.fixture
def tracked_kernel(kernel):
    (kernel.dir / "tracked.py").write_text(TRACKED)
    kernel.ok(IMPORTS, cell_id="imports")
    kernel.ok(NODES, cell_id="nodes")
    return kernel


def rerun_cells(k, nodes=NODES):
    """What the user does after a restart: run the notebook's cells again, in order."""
    k.restart()
    k.setup()
    k.ok(IMPORTS, cell_id="imports")
    k.ok(nodes, cell_id="nodes")


def test_restart_loads_only_the_requested_target(tracked_kernel):
    k = tracked_kernel
    k.cellar_run("c side").ok()
    assert k.take_calls() == calls("a", "b", "c", "side"), "first run computes (and loads nothing)"

    rerun_cells(k)
    assert k.take_calls() == calls(), "defining nodes loads nothing"
    res = k.cellar_run("c").ok()
    assert k.eval("repr(_v)") == "Tracked('c', 20)"
    assert k.take_calls() == calls("load c"), "only c is deserialized: not a, not b"
    assert res.report.status("c") == "loaded"
    assert res.report.with_status("computed") == set()

    res = k.cellar_run("c").ok()
    assert k.take_calls() == calls(), "second time: in memory, no load"
    assert res.report.status("c") == "in memory"

    res = k.cellar_run("a c").ok()
    assert k.eval("repr(_v)") == "{'a': Tracked('a', [0, 1, 2, 3, 4]), 'c': Tracked('c', 20)}"
    assert k.take_calls() == calls("load a")


def test_restart_edit_loads_only_direct_inputs_of_computing_nodes(tracked_kernel):
    k = tracked_kernel
    k.cellar_run("c side").ok()
    k.take_calls()
    rerun_cells(k, NODES.replace('Tracked("c", sum(b.payload))', 'Tracked("c", max(b.payload))'))
    res = k.cellar_run("c side").ok()
    assert k.eval("repr(_v)") == "{'c': Tracked('c', 8), 'side': Tracked('side', 5)}"
    assert k.take_calls() == calls("load b", "c", "load side"), \
        "c computes from b (loaded); a is never loaded, since b is a hit"
    assert res.report.status("c") == "computed"
    assert res.report.status("b") == "loaded"


def test_restart_without_cell_ids(kernel):
    """nbclient sends no cellId: the namespace decides, and restarts work the same."""
    (kernel.dir / "tracked.py").write_text(TRACKED)
    kernel.ok(IMPORTS)
    kernel.ok(NODES)
    kernel.cellar_run("c").ok()
    kernel.take_calls()
    kernel.restart()
    kernel.setup(cell_ids=False)
    kernel.ok(IMPORTS)
    kernel.ok(NODES)
    kernel.cellar_run("c").ok()
    assert kernel.take_calls() == calls("load c")


def test_repeated_restarts_never_recompute(tracked_kernel):
    k = tracked_kernel
    k.cellar_run("c side").ok()
    k.take_calls()
    for _ in range(2):
        rerun_cells(k)
        k.cellar_run("side").ok()
        assert k.take_calls() == calls("load side")
