"""Data versions that never lie (issue 9, point 3 and "deterministic data versions").

Notebook code reached through data (a partial, a dict of functions, a default argument,
a node that returns a function, an instance of a notebook class) counts by its code
version, not its name: editing that code reruns the node that receives it, even when
early cutoff would otherwise hide the change.  Sets fingerprint canonically: two kernels
with different PYTHONHASHSEED values give the same versions and share one store.

Expected values are computed fresh in the same kernel, by calling the functions
directly after the cached run (those calls log too, so the log is emptied after).
"""

from conftest import calls

PARTIAL = '''
import functools

def _mul(a, b):
    return a * b

op = functools.partial(_mul, 3)

def applied(op):
    _log("applied")
    return op(10)
'''
PARTIAL_EDITED = PARTIAL.replace("return a * b", "return a * b + 1")


def fresh(kernel, expr):
    """`expr` evaluated in the kernel; whatever it logged is dropped."""
    value = kernel.eval(expr)
    kernel.take_calls()
    return value


def test_partial_input_reruns_when_its_function_changes(kernel):
    kernel.ok(PARTIAL, cell_id="p")
    kernel.cellar_run("applied").ok()
    assert kernel.take_calls() == calls("applied")
    assert kernel.eval("_v") == fresh(kernel, "op(10)") == 30
    kernel.cellar_run("applied").ok()
    assert kernel.take_calls() == calls(), "unchanged code and data: nothing reruns"
    kernel.ok(PARTIAL_EDITED, cell_id="p")
    kernel.cellar_run("applied").ok()
    assert kernel.take_calls() == calls("applied"), \
        "the partial's function changed: the node that takes it must rerun"
    assert kernel.eval("_v") == fresh(kernel, "op(10)") == 31


DICT_OF_FUNCTIONS = '''
def _double(x):
    return 2 * x

def _square(x):
    return x * x

OPS = {"double": _double, "square": _square}

def table():
    _log("table")
    return {name: f(7) for name, f in OPS.items()}

def chosen(OPS):
    _log("chosen")
    return OPS["square"](3)
'''


def test_dict_of_functions_global_and_input(kernel):
    kernel.ok(DICT_OF_FUNCTIONS, cell_id="ops")
    kernel.cellar_run("table chosen").ok()
    assert kernel.take_calls() == calls("table", "chosen")
    kernel.ok(DICT_OF_FUNCTIONS.replace("return x * x", "return x * x * x"), cell_id="ops")
    kernel.cellar_run("table chosen").ok()
    assert kernel.take_calls() == calls("table", "chosen"), \
        "a function inside a dict changed: the global's reader and the input's taker rerun"
    assert kernel.eval("_v") == fresh(kernel, "{'table': table(), 'chosen': chosen(OPS)}")
    assert kernel.eval("_v['chosen']") == 27


DEFAULT = '''
def _offset(x):
    return x + 1

def shifted(fn=_offset):
    _log("shifted")
    return fn(41)
'''


def test_function_default_argument(kernel):
    kernel.ok(DEFAULT, cell_id="d")
    kernel.cellar_run("shifted").ok()
    assert kernel.take_calls() == calls("shifted")
    assert kernel.eval("_v") == 42
    kernel.ok(DEFAULT.replace("return x + 1", "return x - 1"), cell_id="d")
    res = kernel.cellar_run("shifted").ok()
    assert kernel.take_calls() == calls("shifted"), \
        "the default's function changed: the node must rerun\n" + res.report.text
    assert kernel.eval("_v") == fresh(kernel, "shifted()") == 40


MAKER = '''
def _kernel_fn(x):
    return x * 10

def maker():
    _log("maker")
    return _kernel_fn

def used(maker):
    _log("used")
    return maker(4)
'''


def test_node_returning_a_function(kernel):
    kernel.ok(MAKER, cell_id="m")
    kernel.cellar_run("used").ok()
    assert kernel.take_calls() == calls("maker", "used")
    kernel.ok(MAKER.replace("return x * 10", "return x * 100"), cell_id="m")
    kernel.cellar_run("used").ok()
    assert kernel.take_calls() == calls("maker", "used"), \
        "maker returns the same name but other code: early cutoff must not hide it"
    assert kernel.eval("_v") == fresh(kernel, "used(maker())") == 400


CLASS = '''
class Scaler:
    def __init__(self, k):
        self.k = k

    def apply(self, x):
        return x * self.k

def scaler():
    _log("scaler")
    return Scaler(2)

def scaled(scaler):
    _log("scaled")
    return scaler.apply(5)

def bound(scaler):
    _log("bound")
    return scaler.apply

def via_method(bound):
    _log("via_method")
    return bound(7)
'''


def test_instance_and_bound_method_of_a_notebook_class(kernel):
    kernel.ok(CLASS, cell_id="cls")
    kernel.cellar_run("scaled via_method").ok()
    assert kernel.take_calls() == calls("scaler", "scaled", "bound", "via_method")
    assert kernel.eval("_v") == {"scaled": 10, "via_method": 14}
    kernel.ok(CLASS.replace("return x * self.k", "return x * self.k + 1"), cell_id="cls")
    kernel.cellar_run("scaled via_method").ok()
    ran = kernel.take_calls()
    assert ran["scaled"] == 1 and ran["via_method"] == 1, \
        f"the class's method changed: every consumer of its instance reruns, ran {ran}"
    assert kernel.eval("_v") == fresh(
        kernel, "{'scaled': scaled(scaler()), 'via_method': via_method(bound(scaler()))}")
    assert kernel.eval("_v['scaled']") == 11


def test_code_in_data_does_not_change_a_stored_value(kernel):
    """The stored stream is a normal pickle: it loads in a new kernel, and a value with
    no notebook code keeps its data version whether or not the code around it changes."""
    kernel.ok(PARTIAL, cell_id="p")
    kernel.ok("""
        def plain():
            _log("plain")
            return {"x": [1, 2.5, "s"], "n": None}
        """, cell_id="plain")
    kernel.cellar_run("applied plain").ok()
    assert kernel.take_calls() == calls("applied", "plain")
    kernel.ok("import cellar")
    dv_partial = kernel.eval("cellar.data_version(op)")
    dv_plain = kernel.eval("cellar.data_version(_v['plain'])")
    kernel.ok(PARTIAL_EDITED, cell_id="p")
    assert kernel.eval("cellar.data_version(op)") != dv_partial
    assert kernel.eval("cellar.data_version(_v['plain'])") == dv_plain
    kernel.restart()
    kernel.setup()
    kernel.ok(PARTIAL_EDITED, cell_id="p")
    kernel.ok("""
        def plain():
            _log("plain")
            return {"x": [1, 2.5, "s"], "n": None}
        """, cell_id="plain")
    res = kernel.cellar_run("applied plain").ok()
    assert res.report.status("plain") == "loaded"
    assert not res.warnings, res.stderr
    assert kernel.eval("_v") == fresh(kernel, "{'applied': applied(op), 'plain': plain()}")


SETS = '''
WORDS = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"}

def vocabulary():
    _log("vocabulary")
    return {"words": set(WORDS), "frozen": frozenset(w.upper() for w in WORDS),
            "nested": [{("k", w) for w in WORDS}], "empty": set()}

def size(vocabulary):
    _log("size")
    return len(vocabulary["words"])

def tagged(WORDS):
    _log("tagged")
    return sorted(WORDS)[0]

def reads_global():
    _log("reads_global")
    return len(WORDS)
'''
SET_NODES = ["vocabulary", "size", "tagged", "reads_global"]


def test_sets_same_versions_under_two_hash_seeds(kernel_factory, tmp_path):
    store = tmp_path / "shared-store"
    seen = {}
    for seed in ("1", "4242"):
        # one after the other in the same directory (the helper's LOG path is a global
        # that every node reads, so another directory would be another notebook)
        k = kernel_factory(tmp_path, cellar_dir=store,
                           extra_env={"PYTHONHASHSEED": seed})
        k.setup()
        k.ok(SETS, cell_id="sets")
        k.ok("import cellar")
        order = k.eval("list(WORDS)")
        versions = k.eval("[cellar.data_version(v) for v in "
                          "(WORDS, vocabulary(), frozenset(WORDS), {1: set(WORDS)})]")
        k.take_calls()
        res = k.cellar_run(" ".join(SET_NODES)).ok()
        ran = k.take_calls()
        assert fresh(k, "_v == {'vocabulary': vocabulary(), 'size': size(vocabulary()), "
                        "'tagged': tagged(WORDS), 'reads_global': reads_global()}") is True
        seen[seed] = (order, versions, ran, res)
        k.stop()
    (order1, v1, ran1, _), (order2, v2, ran2, res2) = seen["1"], seen["4242"]
    assert order1 != order2, "the two hash seeds should order the set differently"
    assert v1 == v2, "same values, other hash seed: the data versions must be equal"
    assert ran1 == calls(*SET_NODES)
    assert ran2 == calls(), f"the second kernel must reuse every result, ran {ran2}"
    assert all(res2.report.status(n) == "loaded" for n in SET_NODES), res2.report.text


def test_set_order_does_not_change_a_version_in_one_kernel(kernel):
    """Equal sets with different iteration orders in one process (a set that grew and
    shrank keeps its larger table) share a version; sets that differ never do."""
    kernel.ok("""
        import cellar
        words = {f"w{i}" for i in range(40)}
        grown = set(words)
        grown.update(range(5000))
        grown.difference_update(range(5000))
        """)
    assert kernel.eval("grown == words and list(grown) != list(words)"), \
        "the test needs two equal sets that iterate differently"
    assert kernel.eval("cellar.data_version(words) == cellar.data_version(grown)")
    assert kernel.eval("cellar.data_version({'k': [words]}) == cellar.data_version({'k': [grown]})")
    assert kernel.eval("cellar.data_version(frozenset(words)) == cellar.data_version(frozenset(grown))")
    assert kernel.eval("cellar.data_version(words) != cellar.data_version(words | {'w40'})")
    assert kernel.eval("cellar.data_version({1, 2}) != cellar.data_version(frozenset({1, 2}))")
    assert kernel.eval("cellar.data_version({'1'}) != cellar.data_version({1})")


# Functions that a value holds after their cell is re-run: `OPS` and `ops()` hold the old
# `_h` and `_g` objects, which pickle can no longer name (`__main__._h` is a new function).
# `_g` reads `_h` by name, so it calls whatever `_h` is now.
STALE_HELPERS = '''
def _h(x):
    return x * 2

def _g(x):
    return _h(x) + 1
'''
STALE_USERS = '''
OPS = {"h": _h, "g": _g}

def reader():
    _log("reader")
    return OPS["h"](5) + OPS["g"](5)

def ops():
    _log("ops")
    return {"h": _h, "g": _g}

def taker(ops):
    _log("taker")
    return ops["h"](7) * 100 + ops["g"](7)
'''
STALE_FRESH = "{'reader': reader(), 'taker': taker(ops())}"


def test_values_holding_functions_of_a_re_run_cell(kernel_factory):
    """A value that holds a notebook function whose cell was re-run is versioned by that
    function's code: the same code keeps every data version and nothing reruns; code that
    the old function reaches by name (here `_g` calling `_h`) changes it, and its readers
    rerun; after a restart, the same cells give the same versions."""
    k = kernel_factory()
    k.setup()
    k.ok(STALE_HELPERS, cell_id="helpers")
    k.ok(STALE_USERS, cell_id="users")
    k.cellar_run("reader taker").ok()
    assert k.take_calls() == calls("reader", "ops", "taker")
    k.ok("import cellar")
    before = k.eval("cellar.data_version(OPS)")

    # The helpers' cell again, same code: OPS and ops' value now hold the old objects.
    k.ok(STALE_HELPERS, cell_id="helpers")
    assert k.eval("OPS['h'] is not _h")
    assert k.eval("cellar.data_version(OPS)") == before, \
        "equal code, equal data version, though pickle cannot name the old function"
    res = k.cellar_run("reader taker").ok()
    assert k.take_calls() == calls(), "same code: no reader reruns\n" + res.report.text
    assert not res.warnings, res.stderr
    assert k.eval("_v") == fresh(k, STALE_FRESH)

    # Edited: OPS["h"] is still the old _h, but the old _g calls the new _h by name.
    edited = STALE_HELPERS.replace("return x * 2", "return x * 3")
    k.ok(edited, cell_id="helpers")
    assert k.eval("cellar.data_version(OPS)") != before
    res = k.cellar_run("reader taker").ok()
    assert k.take_calls() == calls("reader", "ops", "taker"), res.report.text
    assert k.eval("_v") == fresh(k, STALE_FRESH)
    k.cellar_run("reader taker").ok()
    assert k.take_calls() == calls(), "a value with old functions is not rerun every time"

    # A node computed while the global it returns holds old functions: its value cannot be
    # stored, but its data version is the one the same cells give in any kernel.
    k.ok(edited, cell_id="helpers")
    k.ok("def pick():\n    _log('pick')\n    return OPS\n\n"
         "def count(pick):\n    _log('count')\n    return pick['g'](1)\n", cell_id="pick")
    res = k.cellar_run("count").ok()
    assert k.take_calls() == calls("pick", "count")
    assert any("cannot be pickled" in w for w in res.warnings), res.stderr

    # A restart, the same cells in the same order: everything is found in the store.
    k.restart()
    k.setup()
    k.ok(STALE_HELPERS, cell_id="helpers")
    k.ok(STALE_USERS, cell_id="users")
    k.ok(edited, cell_id="helpers")
    res = k.cellar_run("reader taker").ok()
    assert k.take_calls() == calls(), res.report.text
    assert k.eval("_v") == fresh(k, STALE_FRESH)
    k.ok("def pick():\n    _log('pick')\n    return OPS\n\n"
         "def count(pick):\n    _log('count')\n    return pick['g'](1)\n", cell_id="pick")
    res = k.cellar_run("count").ok()
    assert k.take_calls() == calls("pick"), \
        "pick's value was not stored, but it has the version it had\n" + res.report.text
    assert res.report.status("count") == "loaded"
    assert k.eval("_v") == fresh(k, "count(pick())")
    # New code after the restart: the readers rerun, once.
    k.ok(STALE_HELPERS.replace("return x * 2", "return x * 4"), cell_id="helpers")
    k.cellar_run("reader taker").ok()
    assert k.take_calls() == calls("reader", "ops", "taker")
    assert k.eval("_v") == fresh(k, STALE_FRESH)
    k.cellar_run("reader taker").ok()
    assert k.take_calls() == calls()


CACHED_IN_DATA = '''
import functools

@functools.lru_cache(maxsize=None)
def _cached(x):
    return x + 1

TABLE = {"f": _cached}
BOUND = functools.partial(_cached, 4)

def looked_up():
    _log("looked_up")
    return TABLE["f"](1) + BOUND()
'''


def test_lru_cache_wrapper_inside_data(kernel):
    """An lru_cache'd notebook function held in data counts by the code it wraps: editing it
    (the data's cell re-run with it) reruns the reader; re-running it unchanged does not."""
    kernel.ok(CACHED_IN_DATA, cell_id="cached")
    kernel.cellar_run("looked_up").ok()
    assert kernel.take_calls() == calls("looked_up")
    assert kernel.eval("_v") == fresh(kernel, "looked_up()") == 7
    kernel.ok(CACHED_IN_DATA, cell_id="cached")
    res = kernel.cellar_run("looked_up").ok()
    assert kernel.take_calls() == calls(), "same code, a new wrapper: nothing reruns\n" + res.report.text
    kernel.ok(CACHED_IN_DATA.replace("return x + 1", "return x + 2"), cell_id="cached")
    res = kernel.cellar_run("looked_up").ok()
    assert kernel.take_calls() == calls("looked_up"), \
        "the wrapped function changed: its reader must rerun\n" + res.report.text
    assert kernel.eval("_v") == fresh(kernel, "looked_up()") == 9


NAMELESS_IN_DATA = '''
def _make(m):
    def scale(x):
        return x * m
    return scale

FNS = {"inc": lambda x: x + 1, "triple": _make(3)}

def applied_all():
    _log("applied_all")
    return FNS["inc"](1) + FNS["triple"](2)
'''


def test_lambda_and_closure_inside_data(kernel_factory):
    """Code that pickle can never name (a lambda, a closure made by a factory) inside a
    global is versioned by its code and closure: the reader is not rerun on every run or
    after a restart, and reruns when the lambda or the factory's argument changes."""
    k = kernel_factory()
    k.setup()
    k.ok(NAMELESS_IN_DATA, cell_id="fns")
    k.cellar_run("applied_all").ok()
    assert k.take_calls() == calls("applied_all")
    k.ok(NAMELESS_IN_DATA, cell_id="fns")
    res = k.cellar_run("applied_all").ok()
    assert k.take_calls() == calls(), res.report.text
    assert k.eval("_v") == fresh(k, "applied_all()") == 8
    src = NAMELESS_IN_DATA
    for edit, value in (("x + 1", "x + 5"), ("_make(3)", "_make(4)")):  # one, then the other
        src = src.replace(edit, value)
        k.ok(src, cell_id="fns")
        k.cellar_run("applied_all").ok()
        assert k.take_calls() == calls("applied_all"), f"edited {edit} -> {value}"
        assert k.eval("_v") == fresh(k, "applied_all()")
    k.restart()
    k.setup()
    k.ok(NAMELESS_IN_DATA, cell_id="fns")
    res = k.cellar_run("applied_all").ok()
    assert k.take_calls() == calls(), "same cells after a restart\n" + res.report.text
    assert res.report.status("applied_all") == "loaded"


def test_a_stored_value_never_stands_for_code_its_name_no_longer_reaches(kernel):
    """`config` returned OPS while `_h` was current, and its result was stored by name. After
    `_h` is edited (OPS not rebuilt: it holds the old `_h`), a fresh config() returns the old
    `_h`; loading the stored result would give the new one. Its key must differ."""
    kernel.ok(STALE_HELPERS, cell_id="helpers")
    kernel.ok('OPS = {"h": _h}\n\ndef config():\n    _log("config")\n    return OPS\n',
              cell_id="ops")
    kernel.cellar_run("config").ok()
    assert kernel.take_calls() == calls("config")
    kernel.ok(STALE_HELPERS.replace("return x * 2", "return x * 3"), cell_id="helpers")
    kernel.ok("import cellar\ncellar.forget_memory()")
    res = kernel.cellar_run("config").ok()
    assert kernel.take_calls() == calls("config"), res.report.text
    assert kernel.eval("_v['h'](5)") == fresh(kernel, "config()['h'](5)") == 10
    # Back to the code it was stored with: the stored result stands for it again.
    kernel.ok(STALE_HELPERS, cell_id="helpers")
    kernel.ok("cellar.forget_memory()")
    res = kernel.cellar_run("config").ok()
    assert kernel.take_calls() == calls(), res.report.text
    assert res.report.status("config") == "loaded"
    assert kernel.eval("_v['h'](5)") == fresh(kernel, "config()['h'](5)") == 10
