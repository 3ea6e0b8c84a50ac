"""Issue point 5: module-level constants and notebook functions a node uses are part of its
code version; editing one reruns exactly the nodes that use it (and their downstream)."""

from conftest import calls

VALUES = '''
def values():
    _log("values")
    return [0.125, 0.375, 0.625, 0.875]
'''
READERS = '''
def above(values):
    _log("above")
    return [v for v in values if v > THRESHOLD]

def below(values):
    _log("below")
    return [v for v in values if v <= THRESHOLD]

def total(values):
    _log("total")
    return sum(values)

def count_above(above):
    _log("count_above")
    return len(above)
'''


def test_editing_a_constant_reruns_exactly_its_readers(kernel):
    kernel.ok("THRESHOLD = 0.5", cell_id="const")
    kernel.ok(VALUES, cell_id="values")
    kernel.ok(READERS, cell_id="readers")
    targets = "count_above below total"
    kernel.cellar_run(targets).ok()
    assert kernel.eval("_v") == {"count_above": 2, "below": [0.125, 0.375], "total": 2.0}
    assert kernel.take_calls() == calls("values", "above", "below", "total", "count_above")

    kernel.ok("THRESHOLD = 0.7", cell_id="const")
    res = kernel.cellar_run(targets).ok()
    assert kernel.eval("_v") == {"count_above": 1, "below": [0.125, 0.375, 0.625], "total": 2.0}
    assert kernel.take_calls() == calls("above", "below", "count_above"), \
        "the readers of THRESHOLD (and above's dependant) rerun; values and total do not"
    assert res.report.status("total") == "in memory"

    kernel.ok("THRESHOLD = 0.7  # same value, new object", cell_id="const")
    kernel.cellar_run(targets).ok()
    assert kernel.take_calls() == calls(), "same value, same data version: nothing reruns"

    kernel.ok("THRESHOLD = 0.5", cell_id="const")
    kernel.cellar_run(targets).ok()
    assert kernel.eval("_v")["count_above"] == 2
    assert kernel.take_calls() == calls(), "back to 0.5: the first results are reused"


def test_constant_change_invalidates_across_restart(kernel):
    kernel.ok("THRESHOLD = 0.5", cell_id="const")
    kernel.ok(VALUES, cell_id="values")
    kernel.ok(READERS, cell_id="readers")
    kernel.cellar_run("below total").ok()
    kernel.take_calls()
    kernel.restart()
    kernel.setup()
    kernel.ok("THRESHOLD = 0.65", cell_id="const")
    kernel.ok(VALUES, cell_id="values")
    kernel.ok(READERS, cell_id="readers")
    kernel.cellar_run("below total").ok()
    assert kernel.eval("_v") == {"below": [0.125, 0.375, 0.625], "total": 2.0}
    assert kernel.take_calls() == calls("below"), \
        "below must not return the stale value stored for THRESHOLD=0.5; values must load, not compute"


def test_constant_container_global(kernel):
    kernel.ok("WEIGHTS = {'x': 1, 'y': 2}", cell_id="const")
    kernel.ok('''
        def weighted(values):
            _log("weighted")
            return [v * WEIGHTS["x"] for v in values]
        def plain(values):
            _log("plain")
            return list(values)
        ''', cell_id="nodes")
    kernel.ok(VALUES, cell_id="values")
    kernel.cellar_run("weighted plain").ok()
    kernel.take_calls()
    kernel.ok("WEIGHTS['x'] = 3")  # mutated in place, not rebound
    kernel.cellar_run("weighted plain").ok()
    assert kernel.eval("_v['weighted']") == [0.375, 1.125, 1.875, 2.625]
    assert kernel.take_calls() == calls("weighted"), "an in-place change is a new data version"


HELPERS = '''
def _factor():
    return 2

def _scale(x):
    return x * _factor()

def double(values):
    _log("double")
    return [v * 2 for v in values]
'''
USERS = '''
def scaled(values):
    _log("scaled")
    return [_scale(v) for v in values]

def quad(values):
    _log("quad")
    return double(values) + double(values)

def untouched(values):
    _log("untouched")
    return max(values)

def after_scaled(scaled):
    _log("after_scaled")
    return sum(scaled)
'''
TARGETS = "scaled quad untouched after_scaled double"


def define_helpers(k, helpers=HELPERS):
    k.ok(VALUES, cell_id="values")
    k.ok(helpers, cell_id="helpers")
    k.ok(USERS, cell_id="users")


def test_editing_a_private_helper_reruns_its_users_recursively(kernel):
    define_helpers(kernel)
    kernel.cellar_run(TARGETS).ok()
    assert kernel.eval("_v['scaled']") == [0.25, 0.75, 1.25, 1.75]
    # quad calls double as a plain function, so double's body runs there too.
    assert kernel.take_calls() == calls("values", "scaled", "quad", "double", "double", "double",
                                        "untouched", "after_scaled")
    # _factor is only reached through _scale: a two-level helper chain.
    kernel.ok(HELPERS.replace("return 2", "return 3"), cell_id="helpers")
    kernel.cellar_run(TARGETS).ok()
    assert kernel.eval("_v['scaled']") == [0.375, 1.125, 1.875, 2.625]
    assert kernel.take_calls() == calls("scaled", "after_scaled"), \
        "_factor changed: exactly the node that reaches it through _scale reruns"

    kernel.ok(HELPERS.replace("return 2", "return 3").replace("return x * _factor()",
                                                               "return _factor() * x"),
              cell_id="helpers")
    kernel.cellar_run(TARGETS).ok()
    assert kernel.take_calls() == calls("scaled"), \
        "_scale changed: scaled reruns; its value is the same, so after_scaled stays cached"


def test_editing_a_node_called_as_function_reruns_its_callers(kernel):
    define_helpers(kernel)
    kernel.cellar_run(TARGETS).ok()
    kernel.take_calls()
    kernel.ok(HELPERS.replace("[v * 2 for v in values]", "[v + v for v in values]"), cell_id="helpers")
    kernel.cellar_run(TARGETS).ok()
    # double reruns as a node, and once per call inside quad, which must rerun too.
    assert kernel.take_calls() == calls("double", "quad", "double", "double")


def test_comment_edit_in_helper_reruns_nothing(kernel):
    define_helpers(kernel)
    kernel.cellar_run(TARGETS).ok()
    kernel.take_calls()
    kernel.ok(HELPERS.replace("def _factor():", "def _factor():\n    # the factor\n"),
              cell_id="helpers")
    kernel.cellar_run(TARGETS).ok()
    assert kernel.take_calls() == calls()


def test_helper_change_invalidates_across_restart(kernel):
    define_helpers(kernel)
    kernel.cellar_run("scaled untouched").ok()
    kernel.take_calls()
    kernel.restart()
    kernel.setup()
    define_helpers(kernel, HELPERS.replace("return 2", "return 10"))
    kernel.cellar_run("scaled untouched").ok()
    assert kernel.eval("_v") == {"scaled": [1.25, 3.75, 6.25, 8.75], "untouched": 0.875}
    assert kernel.take_calls() == calls("scaled"), "scaled must not load its stale stored value"
