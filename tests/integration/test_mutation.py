"""Mutation is never served, never stored (issue 9, point 4).

A value kept in memory is the very object handed to downstream bodies and returned to
the user.  Whoever changes it in place (a body, the user; a list, an array, a
DataFrame), the next consumer gets the value as it was computed, the changed value is
never stored under the old version, and after a restart the store holds what the node
really returns.  An iterator result is never reused: its node reruns per consumer.
Expected values are computed fresh in the same kernel.
"""

from conftest import calls

LIST_NODES = '''
def base():
    _log("base")
    return [1, 2, 3]

def appender(base):
    _log("appender")
    base.append(99)
    return len(base)

def reader(base):
    _log("reader")
    return list(base)
'''


def fresh(kernel, expr):
    """`expr` evaluated in the kernel; whatever it logged is dropped."""
    value = kernel.eval(expr)
    kernel.take_calls()
    return value


def changed_warnings(res, node):
    return [w for w in res.warnings if f"'{node}'" in w and "changed in place" in w]


def test_body_appending_to_its_argument(kernel):
    kernel.ok(LIST_NODES, cell_id="nodes")
    res = kernel.cellar_run("appender reader").ok()
    assert kernel.eval("_v") == fresh(kernel, "{'appender': appender(base()), "
                                              "'reader': reader(base())}")
    assert kernel.eval("_v['reader']") == [1, 2, 3]
    assert changed_warnings(res, "base"), res.stderr
    kernel.take_calls()
    # a later consumer, in a later run, gets base as computed too
    kernel.ok("def later(base):\n    _log('later')\n    return sum(base)\n", cell_id="later")
    kernel.cellar_run("later").ok()
    assert kernel.eval("_v") == fresh(kernel, "later(base())") == 6
    kernel.restart()
    kernel.setup()
    kernel.ok(LIST_NODES, cell_id="nodes")
    res = kernel.cellar_run("base").ok()
    assert res.report.status("base") == "loaded"
    assert not res.warnings, res.stderr
    assert kernel.eval("_v") == fresh(kernel, "base()") == [1, 2, 3]


ARRAY_NODES = '''
import numpy as np

def arr():
    _log("arr")
    return np.arange(100_000, dtype=np.float64)

def bump(arr):
    _log("bump")
    arr += 1
    return float(arr.sum())
'''


def test_body_adding_in_place_to_an_array_stores_the_array_as_computed(kernel):
    # The bytes to store are taken when arr returns, before bump changes it in place, so
    # arr is stored as computed: in this session the bumped copy is not served (it is
    # loaded again from the store, not recomputed), and after a restart nothing reruns.
    kernel.ok(ARRAY_NODES, cell_id="nodes")
    res = kernel.cellar_run("bump").ok()
    assert kernel.take_calls() == calls("arr", "bump")
    assert kernel.eval("_v") == fresh(kernel, "bump(arr())")
    assert not [w for w in res.warnings if "not stored" in w], res.stderr
    res = kernel.cellar_run("arr").ok()
    assert changed_warnings(res, "arr"), res.stderr
    assert res.report.status("arr") == "loaded"
    assert kernel.eval("bool((_v == np.arange(100_000, dtype=np.float64)).all())")
    kernel.take_calls()
    kernel.restart()
    kernel.setup()
    kernel.ok(ARRAY_NODES, cell_id="nodes")
    res = kernel.cellar_run("bump").ok()
    assert not [w for w in res.warnings if "corrupt" in w or "not used" in w], res.stderr
    assert kernel.take_calls() == calls(), "arr and bump were stored right: nothing reruns"
    assert kernel.eval("_v") == fresh(kernel, "bump(arr())")
    kernel.cellar_run("arr").ok()
    assert kernel.eval("bool((_v == np.arange(100_000, dtype=np.float64)).all())")


def test_second_consumer_in_the_same_run_gets_the_array_as_computed(kernel):
    kernel.ok(ARRAY_NODES + '''
def total(arr):
    _log("total")
    return float(arr.sum())
''', cell_id="nodes")
    kernel.cellar_run("bump total").ok()
    assert kernel.eval("_v") == fresh(kernel, "{'bump': bump(arr()), 'total': total(arr())}")
    kernel.restart()
    kernel.setup()
    kernel.ok(ARRAY_NODES + '''
def total(arr):
    _log("total")
    return float(arr.sum())
''', cell_id="nodes")
    res = kernel.cellar_run("arr total").ok()
    assert not res.warnings, res.stderr
    assert res.report.status("total") == "loaded"
    assert kernel.eval("_v['total']") == fresh(kernel, "total(arr())")
    assert kernel.eval("bool((_v['arr'] == arr()).all())")


FRAME_NODES = '''
import numpy as np
import pandas as pd

def frame():
    _log("frame")
    return pd.DataFrame({"a": np.arange(6, dtype=np.int64), "b": list("uvwxyz")})

def total(frame):
    _log("total")
    return int(frame["a"].sum())
'''


def test_user_mutating_a_returned_frame(kernel):
    kernel.ok(FRAME_NODES, cell_id="nodes")
    kernel.ok("df = %cellar run frame")
    assert kernel.take_calls() == calls("frame")
    kernel.ok("df['a'] *= 100")
    res = kernel.ok("df2 = %cellar run frame")
    assert changed_warnings(res, "frame"), res.stderr
    assert res.report.status("frame") != "in memory"
    assert kernel.eval("bool(df2.equals(frame()))")
    kernel.take_calls()
    res = kernel.cellar_run("total").ok()
    assert kernel.eval("_v") == fresh(kernel, "total(frame())") == 15
    kernel.restart()
    kernel.setup()
    kernel.ok(FRAME_NODES, cell_id="nodes")
    res = kernel.cellar_run("total").ok()
    assert res.report.status("total") == "loaded"
    assert kernel.eval("_v") == fresh(kernel, "total(frame())") == 15


def test_user_writing_into_a_returned_array(kernel):
    kernel.ok(ARRAY_NODES, cell_id="nodes")
    kernel.ok("a = %cellar run arr")
    kernel.ok("a[0] = -1.0")
    res = kernel.ok("b = %cellar run arr")
    assert changed_warnings(res, "arr"), res.stderr
    assert kernel.eval("float(b[0])") == 0.0
    kernel.take_calls()
    res = kernel.ok("c = %cellar run arr")
    assert res.report.status("arr") == "in memory", "an unchanged value is reused"
    assert kernel.take_calls() == calls()


def test_unchanged_value_is_reused_from_memory(kernel):
    kernel.ok(FRAME_NODES, cell_id="nodes")
    kernel.cellar_run("total").ok()
    kernel.take_calls()
    res = kernel.cellar_run("total frame").ok()
    assert res.report.status("frame") == "in memory"
    assert res.report.status("total") == "in memory"
    assert not res.warnings, res.stderr
    assert kernel.take_calls() == calls()


GENERATOR_NODES = '''
def numbers():
    _log("numbers")
    return (i * i for i in range(5))

def total(numbers):
    _log("total")
    return sum(numbers)

def count(numbers):
    _log("count")
    return len(list(numbers))

def mapped():
    _log("mapped")
    return map(str, range(3))

def joined(mapped):
    _log("joined")
    return ",".join(mapped)
'''


def test_generator_reruns_for_each_consumer(kernel):
    kernel.ok(GENERATOR_NODES, cell_id="nodes")
    res = kernel.cellar_run("total count").ok()
    assert kernel.take_calls() == calls("numbers", "numbers", "total", "count")
    assert kernel.eval("_v") == fresh(kernel, "{'total': total(numbers()), "
                                              "'count': count(numbers())}")
    assert kernel.eval("_v") == {"total": 30, "count": 5}
    assert [w for w in res.warnings if "'numbers'" in w and "iterator" in w], res.stderr
    res = kernel.cellar_run("total count").ok()
    assert kernel.take_calls() == calls("numbers", "numbers", "total", "count"), \
        "an iterator is not reused, so its consumers cannot be either"
    assert kernel.eval("_v") == {"total": 30, "count": 5}
    kernel.ok("g = %cellar run numbers")
    kernel.ok("h = %cellar run numbers")
    assert kernel.eval("(sum(g), sum(h))") == (30, 30)
    kernel.cellar_run("joined").ok()
    assert kernel.eval("_v") == fresh(kernel, "joined(mapped())") == "0,1,2"


def test_body_changing_a_frame_in_place(kernel):
    kernel.ok(FRAME_NODES + '''
def scaled(frame):
    _log("scaled")
    frame["a"] *= 100
    frame.loc[0, "b"] = "changed"
    return int(frame["a"].sum())
''', cell_id="nodes")
    res = kernel.cellar_run("scaled total frame").ok()
    assert kernel.eval("_v['scaled']") == fresh(kernel, "scaled(frame())") == 1500
    assert kernel.eval("_v['total']") == fresh(kernel, "total(frame())") == 15
    assert kernel.eval("bool(_v['frame'].equals(frame()))")
    kernel.take_calls()
    assert changed_warnings(res, "frame"), res.stderr
    kernel.restart()
    kernel.setup()
    kernel.ok(FRAME_NODES, cell_id="nodes")
    res = kernel.cellar_run("frame").ok()
    assert not res.warnings, res.stderr
    assert kernel.eval("bool(_v.equals(frame()))")


CHAIN_NODES = '''
def first():
    _log("first")
    return [1, 2]

def second(first):
    _log("second")
    first.append(99)
    return [len(first)]

def third(second):
    _log("third")
    second.append(7)
    return sum(second)
'''


def test_targets_mutated_along_a_chain_are_all_returned_as_computed(kernel):
    # `second` changes `first` and `third` changes `second`, all three requested: fetching
    # `second` again for the caller reruns it, and that rerun changes `first` once more,
    # after `first` itself was checked. Every target must still come back as computed.
    kernel.ok(CHAIN_NODES, cell_id="chain")
    res = kernel.cellar_run("first second third").ok()
    got = kernel.eval("_v")
    expected = fresh(kernel, "{'first': first(), 'second': second(first()), "
                             "'third': third(second(first()))}")
    assert got == expected
    assert got["first"] == [1, 2]
    assert changed_warnings(res, "first") and changed_warnings(res, "second"), res.stderr
