"""Issue 9, point 8: versions are pure functions of the code and the data, the same in every
process. The same cells run in two fresh kernels, one after the other, on one store, with two
different PYTHONHASHSEED values (so sets iterate, and pickle, in a different order): the
second kernel computes nothing (calls.log stays empty), returns values equal to a fresh call
of the same functions, and `cellar.data_version` gives each value the same version in both.

One case per pattern the issue names: a notebook class, a lambda, a closure, a set global, a
dataclass and a functools.partial (-k selects one)."""

import textwrap

import pytest

from conftest import calls

SEEDS = ("1", "2")

# name -> (definitions cell, nodes cell, targets, values whose data versions must agree)
PATTERNS = {
    "class": (
        """\
        OFFSET = 4

        class Scaler:
            FACTOR = 3

            def __init__(self, bias=1):
                self.bias = bias

            def apply(self, x):
                return x * self.FACTOR + OFFSET + self.bias

            @property
            def double_bias(self):
                return 2 * self.bias
        """,
        """\
        def scaled():
            _log("scaled")
            s = Scaler()
            return s.apply(5) + s.double_bias

        def scaler():
            _log("scaler")
            return Scaler(7)

        def from_scaler(scaler):
            _log("from_scaler")
            return scaler.apply(2)
        """,
        ["scaled", "scaler", "from_scaler"],
        ["Scaler(7)", "[Scaler(1), Scaler(2)]", "Scaler"],
    ),
    "lambda": (
        """\
        OFFSET = 4
        _sq = lambda x: x * x + OFFSET
        _pair = lambda a, b=3: (a, b)
        """,
        """\
        def squared():
            _log("squared")
            return _sq(7)

        def paired(squared):
            _log("paired")
            return _pair(squared)
        """,
        ["squared", "paired"],
        ["(_sq(2), _pair(1))"],
    ),
    "closure": (
        """\
        OFFSET = 4

        def _make(m):
            def inner(x):
                return x * m + OFFSET
            return inner

        _triple = _make(3)
        """,
        """\
        def tripled():
            _log("tripled")
            return _triple(5)

        def again(tripled):
            _log("again")
            return _triple(tripled)
        """,
        ["tripled", "again"],
        ["[_triple(1), _triple(2)]"],
    ),
    "set": (
        """\
        WORDS = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"}
        """,
        """\
        def word_count():
            _log("word_count")
            return len(WORDS)

        def word_set():
            _log("word_set")
            return WORDS | {"iota"}

        def first(word_set):
            _log("first")
            return sorted(word_set)[0]

        def frozen():
            _log("frozen")
            return {"words": frozenset(WORDS), "n": 1}
        """,
        ["word_count", "word_set", "first", "frozen"],
        ["WORDS", "frozenset(WORDS)", '{"k": WORDS, "t": (WORDS, 1)}', '{("a", 1), ("b", 2), ("c", 3)}'],
    ),
    "dataclass": (
        """\
        import dataclasses

        @dataclasses.dataclass
        class Point:
            x: int
            y: int = 2
            tags: frozenset = frozenset({"p", "q", "r", "s"})

            def norm1(self):
                return abs(self.x) + abs(self.y)
        """,
        """\
        def point():
            _log("point")
            return Point(3)

        def norm(point):
            _log("norm")
            return point.norm1()
        """,
        ["point", "norm"],
        ["Point(3)", "[Point(1), Point(2, 5)]", "Point"],
    ),
    "partial": (
        """\
        import functools

        def _add(a, b):
            return a + b

        _add5 = functools.partial(_add, 5)
        """,
        """\
        def plus():
            _log("plus")
            return _add5(10)

        def adder():
            _log("adder")
            return functools.partial(_add, 2)

        def used(adder):
            _log("used")
            return adder(1)
        """,
        ["plus", "adder", "used"],
        ["_add5", '{"f": _add5, "g": functools.partial(_add, b=1)}'],
    ),
}

# The targets' fresh values, by calling the functions in dependency order, compared with
# what cellar returned (`_v`, a dict): partials by what they wrap, instances of a class
# without __eq__ by their fields, everything else with ==.
CHECK = """\
import functools as _ft, inspect as _insp
_fresh = {}
for _t in %r:
    _f = globals()[_t]
    _fresh[_t] = _f(**{p: _fresh[p] for p in _insp.signature(_f).parameters})
def _same(a, b):
    if isinstance(a, _ft.partial):
        return a.func is b.func and a.args == b.args and a.keywords == b.keywords
    if type(a).__eq__ is object.__eq__:
        return type(a) is type(b) and vars(a) == vars(b)
    return type(a) is type(b) and a == b
print(repr(sorted(t for t in _fresh if not _same(_v[t], _fresh[t]))))
"""


def session(k, defs, nodes, targets, values):
    """Load cellar, run the cells, run the targets; the values' data versions and the
    iteration order of a set of strings (to show the hash seeds differ)."""
    k.setup()
    k.ok(textwrap.dedent(defs), cell_id="defs")
    k.ok(textwrap.dedent(nodes), cell_id="nodes")
    assert k.take_calls() == calls(), "defining cells run no body"
    res = k.cellar_run(" ".join(targets)).ok()
    ran = k.take_calls()
    versions = k.eval("{e: cellar.data_version(eval(e)) for e in %r}" % (values,))
    order = k.eval('list({"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"})')
    return res, ran, versions, order


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_same_cells_in_another_process_compute_nothing(kernel_factory, pattern):
    defs, nodes, targets, values = PATTERNS[pattern]
    first = kernel_factory(extra_env={"PYTHONHASHSEED": SEEDS[0]})
    first.ok("import cellar")
    _, ran1, versions1, order1 = session(first, defs, nodes, targets, values)
    assert ran1 == calls(*targets), "the first kernel computes every target"
    first.stop()

    second = kernel_factory(extra_env={"PYTHONHASHSEED": SEEDS[1]})
    second.ok("import cellar")
    res, ran2, versions2, order2 = session(second, defs, nodes, targets, values)
    assert order1 != order2, "the two hash seeds must give sets another order, or this shows nothing"
    problems = []
    if ran2 != calls():
        problems.append(f"same cells, same store, another process: nothing may run, but {dict(ran2)} "
                        f"ran\n{res.report.text}")
    wrong = second.ok(CHECK % (targets,)).stdout.strip()
    if wrong != "[]":
        problems.append(f"values that differ from a fresh computation: {wrong}")
    for e in values:
        if versions1[e] != versions2[e]:
            problems.append(f"cellar.data_version({e}) differs between the two processes")
    assert not problems, "\n".join(problems)
