"""Issue points 4 and 7: an edit reruns exactly the edited node and its downstream;
formatting-only edits rerun nothing; a new node computes alone."""

import pytest

from conftest import calls

SRC = '''
def src():
    _log("src")
    return [3, 1, 2]
'''
MID = '''
def mid(src):
    _log("mid")
    return sorted(src)
'''
OUT = '''
def out(mid):
    _log("out")
    return sum(mid) * 2
'''
SIDE = '''
def side(src):
    _log("side")
    return len(src)
'''

# Edits of MID that change only formatting, comments or the docstring.
COSMETIC = {
    "docstring": '''
def mid(src):
    """Sort the source list."""
    _log("mid")
    return sorted(src)
''',
    "comment": '''
# the middle step
def mid(src):  # sorts
    _log("mid")  # record the call
    # sorted() returns a new list
    return sorted(src)
''',
    "whitespace": '''

def mid( src ):

    _log( "mid" )
    return   sorted(  src  )

''',
}


def define_all(k, use_cell_ids=True):
    for cid, code in (("src", SRC), ("mid", MID), ("out", OUT), ("side", SIDE)):
        k.ok(code, cell_id=cid if use_cell_ids else None)


@pytest.mark.parametrize("use_cell_ids", [True, False], ids=["cellId", "no-cellId"])
def test_edit_reruns_exactly_node_and_downstream(kernel, use_cell_ids):
    define_all(kernel, use_cell_ids)
    kernel.cellar_run("out side").ok()
    assert kernel.eval("_v") == {"out": 12, "side": 3}
    assert kernel.take_calls() == calls("src", "mid", "out", "side")

    kernel.ok('''
        def mid(src):
            _log("mid")
            return sorted(src, reverse=True)
        ''', cell_id="mid" if use_cell_ids else None)
    res = kernel.cellar_run("out side").ok()
    assert kernel.eval("_v") == {"out": 12, "side": 3}
    assert kernel.take_calls() == calls("mid", "out"), "mid and its downstream, nothing else"
    assert res.report.status("side") == "in memory"
    assert res.report.with_status("computed") == {"mid", "out"}

    kernel.ok('''
        def out(mid):
            _log("out")
            return mid[0]
        ''', cell_id="out" if use_cell_ids else None)
    kernel.cellar_run("out").ok()
    assert kernel.eval("_v") == 3
    assert kernel.take_calls() == calls("out"), "editing a leaf reruns only the leaf"

    kernel.ok('''
        def src():
            _log("src")
            return [5, 1, 2]
        ''', cell_id="src" if use_cell_ids else None)
    kernel.cellar_run("out side").ok()
    assert kernel.eval("_v") == {"out": 5, "side": 3}
    assert kernel.take_calls() == calls("src", "mid", "out", "side")


def test_reverting_an_edit_reuses_the_earlier_results(kernel):
    define_all(kernel)
    kernel.cellar_run("out").ok()
    kernel.take_calls()
    kernel.ok("def mid(src):\n    _log('mid')\n    return list(reversed(sorted(src)))", cell_id="mid")
    kernel.cellar_run("out").ok()
    assert kernel.take_calls() == calls("mid", "out")
    kernel.ok(MID, cell_id="mid")
    kernel.cellar_run("out").ok()
    assert kernel.eval("_v") == 12
    assert kernel.take_calls() == calls(), "the original code's results are stored"


@pytest.mark.parametrize("kind", sorted(COSMETIC))
def test_cosmetic_edit_reruns_nothing(kernel, kind):
    define_all(kernel)
    kernel.cellar_run("out side").ok()
    kernel.take_calls()
    kernel.ok(COSMETIC[kind], cell_id="mid")
    res = kernel.cellar_run("out side").ok()
    assert kernel.eval("_v") == {"out": 12, "side": 3}
    assert kernel.take_calls() == calls(), f"a {kind}-only edit must rerun nothing"
    assert res.report.with_status("computed") == set()


def test_cosmetic_edit_after_restart_loads(kernel):
    define_all(kernel)
    kernel.cellar_run("out").ok()
    kernel.take_calls()
    kernel.restart()
    kernel.setup()
    define_all(kernel)
    kernel.ok(COSMETIC["docstring"], cell_id="mid")
    kernel.ok(COSMETIC["comment"], cell_id="mid")
    res = kernel.cellar_run("out").ok()
    assert kernel.eval("_v") == 12
    assert kernel.take_calls() == calls()
    assert res.report.status("out") == "loaded"


def test_adding_a_node_computes_only_it(kernel):
    define_all(kernel)
    kernel.cellar_run("out side").ok()
    kernel.take_calls()
    kernel.ok('''
        def extra(mid, side):
            _log("extra")
            return mid + [side]
        ''', cell_id="extra")
    res = kernel.cellar_run("extra").ok()
    assert kernel.eval("_v") == [1, 2, 3, 3]
    assert kernel.take_calls() == calls("extra")
    assert res.report.with_status("computed") == {"extra"}
    # The same after a restart: upstream loads (only what extra2 needs), only extra2 computes.
    kernel.restart()
    kernel.setup()
    define_all(kernel)
    kernel.ok('''
        def extra2(out):
            _log("extra2")
            return -out
        ''', cell_id="extra2")
    kernel.cellar_run("extra2").ok()
    assert kernel.eval("_v") == -12
    assert kernel.take_calls() == calls("extra2")
