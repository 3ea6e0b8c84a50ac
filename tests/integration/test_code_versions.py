"""Issue 9, the code-version half: a node reruns exactly when code it reaches changed (class
attributes of every kind, wrappers, lambdas, closures, defaults, cycles of helpers, the user's
own modules), identifiers are NFKC-normalized as Python does, a cell that redefines a node and
runs its consumer uses the new definition, and, after a restart with the same cells (under
another hash seed), nothing recomputes.

Each scenario is a small notebook: `Notebook.cell` runs a cell under a cellId and remembers
it, so that after a restart the same cells are run again in order. What ran is counted from
calls.log (`_log` in the bodies); each cached value is compared with a fresh call of the same
function chain in the same kernel.
"""

import textwrap

import pytest

from conftest import calls


class Notebook:
    def __init__(self, kernel):
        self.k = kernel
        self.cells: dict[str, str] = {}

    def cell(self, cell_id: str, src: str):
        src = textwrap.dedent(src)
        self.cells[cell_id] = src
        return self.k.ok(src, cell_id=cell_id)

    def run(self, target: str, ran, fresh: str):
        """`%cellar run target`: exactly `ran` bodies run (a Counter), and the value equals
        `fresh`, an expression evaluated after the run in the same kernel."""
        self.k.take_calls()
        self.k.cellar_run(target).ok()
        got = self.k.take_calls()
        assert got == ran, f"{target}: expected {ran} to run, got {got}"
        assert self.k.eval(f"_v == ({fresh})"), f"{target}: cached value != fresh {fresh}"
        self.k.take_calls()  # the fresh computation logs too

    def replay(self, kernel=None):
        """A restart (or a new kernel on the same store): the same cells again, in order."""
        if kernel is None:
            self.k.restart()
        else:
            self.k = kernel
        self.k.setup()
        for cell_id, src in self.cells.items():
            self.k.ok(src, cell_id=cell_id)
        self.k.take_calls()


@pytest.fixture
def nb(kernel):
    return Notebook(kernel)


def restart_reruns_nothing(nb, kernel_factory, targets_fresh):
    """Restart under another hash seed: every target is a hit, with the same value."""
    other = kernel_factory(extra_env={"PYTHONHASHSEED": "4321"})
    nb.k.stop()
    nb.replay(other)
    for target, fresh in targets_fresh.items():
        nb.run(target, calls(), fresh)


CLASSES = """\
    from dataclasses import dataclass, field

    class Meta(type):
        BONUS = 1

    class Base(metaclass=Meta):
        OFFSET = 1
        def scale(self, x):
            return x * FACTOR + self.OFFSET

    class Sub(Base):
        \"\"\"A class docstring does not change what it computes.\"\"\"
        class Inner:
            V = 7
        def scale(self, x):
            return super().scale(x) + 1
        @staticmethod
        def st(x):
            return x + 10
        @classmethod
        def cm(cls, x):
            return x + cls.OFFSET
        @property
        def p(self):
            return 100

    @dataclass
    class Cfg:
        n: int = 3
        items: list = field(default_factory=lambda: [1, 2])
    """

USES = """\
    def uses_class():
        _log("uses_class")
        s, c = Sub(), Cfg()
        return (s.scale(5), s.st(1), Sub.cm(1), s.p, Sub.Inner.V, type(Sub).BONUS, c.n, c.items)
    """


@pytest.mark.parametrize("old,new", [
    ("FACTOR = 2", "FACTOR = 3"),                         # a global a method reads
    ("OFFSET = 1", "OFFSET = 5"),                         # a class constant
    ("return x * FACTOR + self.OFFSET", "return x * FACTOR - self.OFFSET"),  # a base's method
    ("return super().scale(x) + 1", "return super().scale(x) + 2"),          # a method
    ("return x + 10", "return x + 11"),                   # a staticmethod
    ("return x + cls.OFFSET", "return x - cls.OFFSET"),   # a classmethod
    ("return 100", "return 101"),                         # a property getter
    ("V = 7", "V = 8"),                                   # a nested class
    ("BONUS = 1", "BONUS = 2"),                           # the metaclass
    ("n: int = 3", "n: int = 4"),                         # a dataclass default
    ("lambda: [1, 2]", "lambda: [1, 3]"),                 # a dataclass default_factory
])
def test_every_kind_of_class_attribute(nb, old, new):
    cell_id = "factor" if old.startswith("FACTOR") else "classes"
    nb.cell("factor", "FACTOR = 2\n")
    nb.cell("classes", CLASSES)
    nb.cell("uses", USES)
    assert old in nb.cells[cell_id]
    nb.run("uses_class", calls("uses_class"), "uses_class()")
    nb.cell(cell_id, nb.cells[cell_id].replace(old, new))
    nb.run("uses_class", calls("uses_class"), "uses_class()")
    nb.run("uses_class", calls(), "uses_class()")
    # Reverting the edit (new objects, the first code again) finds the first result.
    nb.cell(cell_id, nb.cells[cell_id].replace(new, old))
    nb.run("uses_class", calls(), "uses_class()")


def test_classes_redefined_unchanged_or_with_docstrings_rerun_nothing(nb, kernel_factory):
    nb.cell("factor", "FACTOR = 2\n")
    nb.cell("classes", CLASSES)
    nb.cell("uses", USES)
    nb.run("uses_class", calls("uses_class"), "uses_class()")
    nb.cell("classes", CLASSES)  # new class objects, same code
    nb.run("uses_class", calls(), "uses_class()")
    doc = CLASSES.replace("def st(x):\n", 'def st(x):\n            """Adds ten."""\n')
    nb.cell("classes", doc.replace("A class docstring", "Another class docstring"))
    nb.run("uses_class", calls(), "uses_class()")
    restart_reruns_nothing(nb, kernel_factory, {"uses_class": "uses_class()"})


WRAPPERS = {
    "deco": """\
        import functools
        def deco(f):
            @functools.wraps(f)
            def wrapper(*a, **kw):
                return f(*a, **kw) * MULT
            return wrapper
        """,
    "nowraps": """\
        def nowraps(f):
            def wrapper(*a, **kw):
                return f(*a, **kw) + 1
            return wrapper
        """,
    "mult": "MULT = 2\n",
    "inner1": """\
        @deco
        def inner1():
            return 5
        """,
    "inner2": """\
        @nowraps
        def inner2():
            return 7
        """,
    "cached": """\
        @functools.lru_cache(maxsize=None)
        def cached_helper(x):
            return x * 3
        """,
    "users": """\
        def wrapped_user():
            _log("wrapped_user")
            return inner1() + inner2() + cached_helper(2)

        @deco
        def decorated_node():
            _log("decorated_node")
            return 1
        """,
}

WRAPPER_EDITS = [
    ("deco", "* MULT", "* MULT + 1", {"wrapped_user", "decorated_node"}),  # the wrapper's code
    ("mult", "MULT = 2", "MULT = 3", {"wrapped_user", "decorated_node"}),  # what the wrapper reads
    ("inner1", "return 5", "return 6", {"wrapped_user"}),                  # the wrapped body
    ("nowraps", "+ 1", "+ 2", {"wrapped_user"}),                           # no functools.wraps
    ("inner2", "return 7", "return 8", {"wrapped_user"}),                  # hidden in a closure
    ("cached", "x * 3", "x * 4", {"wrapped_user"}),                        # a C wrapper
]


def test_every_kind_of_wrapper(nb, kernel_factory):
    for cell_id, src in WRAPPERS.items():
        nb.cell(cell_id, src)
    fresh = {"wrapped_user": "wrapped_user()", "decorated_node": "decorated_node()"}
    for t, f in fresh.items():
        nb.run(t, calls(t), f)
    for cell_id, old, new, affected in WRAPPER_EDITS:
        assert old in nb.cells[cell_id]
        nb.cell(cell_id, nb.cells[cell_id].replace(old, new))
        if cell_id in ("deco", "nowraps"):  # a decorator applies when the decorated cell runs
            for again in ("inner1", "inner2", "users"):
                nb.cell(again, nb.cells[again])
        for t, f in fresh.items():
            nb.run(t, calls(t) if t in affected else calls(), f)
    restart_reruns_nothing(nb, kernel_factory, fresh)


def test_lambdas_closures_and_defaults(nb, kernel_factory):
    nb.cell("make", """\
        def make(k):
            def f(x):
                return x * k
            return f
        """)
    nb.cell("scaler", "scaler = make(2)\n")
    nb.cell("bias", "BIAS = 0\n")
    nb.cell("square", "square = lambda x: x * x + BIAS\n")
    nb.cell("k0", "K0 = 1\n")
    nb.cell("hd", """\
        def add_default(x, k=K0, *, j=K0):
            return x + k + j
        def member(x):
            return x in {"a", "b", "c", "d"}
        """)
    nb.cell("exec", 'exec("def made_by_exec(x):\\n    return x + 100\\n")\n')
    nb.cell("user", """\
        def closure_user():
            _log("closure_user")
            return scaler(3) + square(2) + add_default(1) + member("c") + made_by_exec(0)
        """)
    f = "closure_user()"
    nb.run("closure_user", calls("closure_user"), f)
    nb.cell("scaler", "scaler = make(5)\n")  # the closure cell's value
    nb.run("closure_user", calls("closure_user"), f)
    nb.cell("bias", "BIAS = 1\n")  # a global the lambda reads
    nb.run("closure_user", calls("closure_user"), f)
    nb.cell("square", "square = lambda x: x * x * x + BIAS\n")  # the lambda's code
    nb.run("closure_user", calls("closure_user"), f)
    nb.cell("k0", "K0 = 2\n")  # the default was taken when add_default was defined
    nb.run("closure_user", calls(), f)
    nb.cell("hd", nb.cells["hd"])  # now the default is 2
    nb.run("closure_user", calls("closure_user"), f)
    nb.cell("exec", nb.cells["exec"].replace("x + 100", "x + 200"))  # exec-bound code
    nb.run("closure_user", calls("closure_user"), f)
    nb.cell("make", nb.cells["make"].replace("x * k", "x * k + 1"))
    nb.run("closure_user", calls(), f)  # scaler is still the old closure: same value
    nb.cell("scaler", nb.cells["scaler"])
    nb.run("closure_user", calls("closure_user"), f)
    restart_reruns_nothing(nb, kernel_factory, {"closure_user": f})


CYCLE = """\
    def even(n):
        return True if n == 0 else odd(n - 1)

    def odd(n):
        if n >= LIMIT:
            return None
        return False if n == 0 else even(n - 1)
    """

CYCLE_NODES = """\
    def cyc_a():
        _log("cyc_a")
        return even(6)

    def cyc_b():
        _log("cyc_b")
        return odd(7)
    """

CLASS_CYCLE = """\
    class Ping:
        def hit(self, n):
            return 0 if n == 0 else Pong().hit(n - 1) + 1

    class Pong:
        def hit(self, n):
            return 0 if n == 0 else Ping().hit(n - 1) + STEP
    """


def test_cycle_of_helpers_with_a_global(nb, kernel_factory):
    nb.cell("limit", "LIMIT = 100\n")
    nb.cell("cycle", CYCLE)
    nb.cell("nodes", CYCLE_NODES)
    fresh = {"cyc_a": "cyc_a()", "cyc_b": "cyc_b()"}
    nb.run("cyc_a", calls("cyc_a"), fresh["cyc_a"])  # the walk starts at even
    nb.run("cyc_b", calls("cyc_b"), fresh["cyc_b"])  # ... and here at odd
    # The global is read by odd only; even, which cyc_a calls, reaches it through the cycle.
    nb.cell("limit", "LIMIT = 5\n")
    nb.run("cyc_a", calls("cyc_a"), fresh["cyc_a"])
    nb.run("cyc_b", calls("cyc_b"), fresh["cyc_b"])
    # Whichever targets run together, the versions are the same.
    nb.k.take_calls()
    nb.k.cellar_run("cyc_b cyc_a").ok()
    assert nb.k.take_calls() == calls()
    nb.cell("cycle", CYCLE.replace("even(n - 1)", "even(n - 1) and True"))
    nb.k.cellar_run("cyc_b cyc_a").ok()
    assert nb.k.take_calls() == calls("cyc_a", "cyc_b")
    # Classes that refer to each other, a global read by one of them.
    nb.cell("step", "STEP = 1\n")
    nb.cell("classes", CLASS_CYCLE)
    nb.cell("ping", 'def ping():\n    _log("ping")\n    return Ping().hit(5)\n')
    fresh["ping"] = "ping()"
    nb.run("ping", calls("ping"), fresh["ping"])
    nb.cell("step", "STEP = 10\n")
    nb.run("ping", calls("ping"), fresh["ping"])
    nb.cell("classes", CLASS_CYCLE)
    nb.run("ping", calls(), fresh["ping"])
    restart_reruns_nothing(nb, kernel_factory, fresh)


def test_identifiers_are_nfkc_normalized(nb, kernel_factory):
    micro, mu = "\u00b5", "\u03bc"  # MICRO SIGN, which NFKC turns into GREEK SMALL LETTER MU
    nb.cell("defs", f"""\
        def {micro}_hat():
            _log("hat")
            return 3

        def consumer({micro}_hat, {micro}_k=4):
            _log("consumer")
            return {micro}_hat * 10 + {micro}_k
        """)
    assert nb.k.eval(f"'{mu}_hat' in dir()") and not nb.k.eval(f"'{micro}_hat' in dir()")
    nb.run("consumer", calls("hat", "consumer"), f"consumer({mu}_hat())")
    nb.k.ok(f"import cellar\n_v = cellar.run('{mu}_hat')")
    assert nb.k.eval("_v") == 3
    nb.k.take_calls()
    # An input under a normalized name is passed under that keyword.
    nb.run("consumer", calls(), f"consumer({mu}_hat())")
    nb.k.ok(f"_v = cellar.run('consumer', {mu}_k=5)")
    assert nb.k.eval("_v") == 35 and nb.k.take_calls() == calls("consumer")
    # Typed into the magic with the MICRO SIGN, as in the def: the same node and input.
    nb.k.cellar_run(f"{micro}_hat").ok()
    assert nb.k.eval("_v") == 3 and nb.k.take_calls() == calls()
    nb.k.cellar_run(f"consumer --input {micro}_k=6").ok()
    assert nb.k.eval("_v") == 36 and nb.k.take_calls() == calls("consumer")
    restart_reruns_nothing(nb, kernel_factory, {"consumer": f"consumer({mu}_hat())"})


def test_edit_and_run_in_one_cell(nb, kernel_factory):
    nb.cell("base", 'def base():\n    _log("base")\n    return 1\n')
    nb.cell("top", 'def top(base):\n    _log("top")\n    return base + 1\n')
    nb.run("top", calls("base", "top"), "top(base())")
    res = nb.cell("base", 'def base():\n    _log("base")\n    return 10\n\n_v = %cellar run top\n')
    assert res.report.status("base") == "computed" and res.report.status("top") == "computed"
    assert nb.k.take_calls() == calls("base", "top")
    assert nb.k.eval("_v == top(base()) == 11")
    nb.k.take_calls()
    nb.run("top", calls(), "top(base())")
    # The stored value is the number, not the function object that was passed before.
    nb.k.ok("import cellar\ncellar.forget_memory()")
    nb.run("top", calls(), "top(base())")
    # A run above the redefinition in the same cell still sees the old definition.
    res = nb.cell("base", '_v = %cellar run top\ndef base():\n    _log("base")\n    return 20\n')
    assert nb.k.eval("_v") == 11 and nb.k.take_calls() == calls()
    nb.run("top", calls("base", "top"), "top(base())")
    nb.cell("base", 'def base():\n    _log("base")\n    return 20\n')  # same code, no run
    nb.run("top", calls(), "top(base())")
    restart_reruns_nothing(nb, kernel_factory, {"top": "top(base())"})


HELPERS_V1 = """\
SCALE = 2

def scale(x):
    return x * SCALE

class Box:
    def size(self):
        return 3
"""


def test_local_module_edited_and_reloaded(nb, kernel_factory):
    path = nb.k.dir / "helpers_mod.py"
    path.write_text(HELPERS_V1)
    nb.cell("imports", """\
        import importlib, sys
        sys.dont_write_bytecode = True  # an edit within the same second must reload
        import helpers_mod
        from helpers_mod import scale, Box
        """)
    nb.cell("nodes", """\
        def via_attr():
            _log("via_attr")
            return helpers_mod.scale(3) + helpers_mod.SCALE

        def via_name():
            _log("via_name")
            return scale(4) + Box().size()

        def untouched():
            _log("untouched")
            return 1
        """)
    fresh = {t: f"{t}()" for t in ("via_attr", "via_name", "untouched")}
    for t, f in fresh.items():
        nb.run(t, calls(t), f)
    path.write_text(HELPERS_V1.replace("x * SCALE", "x * SCALE + 1"))
    nb.k.ok("importlib.reload(helpers_mod)")
    nb.run("via_attr", calls("via_attr"), fresh["via_attr"])
    nb.run("via_name", calls(), fresh["via_name"])  # still the old function: same value
    nb.run("untouched", calls(), fresh["untouched"])
    nb.cell("imports", nb.cells["imports"])  # from-import the reloaded function
    nb.run("via_name", calls("via_name"), fresh["via_name"])
    path.write_text(HELPERS_V1.replace("x * SCALE", "x * SCALE + 1").replace("SCALE = 2", "SCALE = 5")
                    .replace("return 3", "return 4"))
    nb.cell("imports", nb.cells["imports"].replace("import helpers_mod\n",
                                                   "import helpers_mod\nimportlib.reload(helpers_mod)\n"))
    for t, f in fresh.items():
        nb.run(t, calls(t) if t != "untouched" else calls(), f)
    restart_reruns_nothing(nb, kernel_factory, fresh)


LIBRARY_SHAPED = """\
    import abc, collections, enum, functools

    class Color(enum.Enum):
        RED = 1
        GREEN = 2

    class Shape(abc.ABC):
        @abc.abstractmethod
        def area(self): ...
        @abc.abstractmethod
        def perimeter(self): ...

    class Square(Shape):
        __slots__ = ("s",)
        def __init__(self, s):
            self.s = s
        def area(self):
            return self.s * self.s
        def perimeter(self):
            return 4 * self.s

    class Tree:
        pass
    Tree.ROOT = Tree()  # a class attribute holding its own instance

    Pair = collections.namedtuple("Pair", "x y")
    bigger = functools.partial(max, 3)
    """


def test_classes_made_with_library_machinery_survive_a_restart(nb, kernel_factory):
    """Enums, ABCs (a frozenset of abstract names, in hash-seed order), __slots__,
    namedtuples (methods pickle cannot name), a class holding its own instance: the same
    cells give the same versions under another hash seed, and edits still count."""
    nb.cell("shapes", LIBRARY_SHAPED)
    nb.cell("node", """\
        def shaped():
            _log("shaped")
            return (Color.GREEN.value, Square(3).area(), Square(3).perimeter(),
                    Pair(1, 2).y, Tree.ROOT is not None, bigger(1))
        """)
    nb.run("shaped", calls("shaped"), "shaped()")
    nb.run("shaped", calls(), "shaped()")
    nb.cell("shapes", LIBRARY_SHAPED)  # new objects, same code
    nb.run("shaped", calls(), "shaped()")
    nb.cell("shapes", LIBRARY_SHAPED.replace("4 * self.s", "4 * self.s + 0.5"))
    nb.run("shaped", calls("shaped"), "shaped()")
    nb.cell("shapes", LIBRARY_SHAPED.replace("GREEN = 2", "GREEN = 3"))
    nb.run("shaped", calls("shaped"), "shaped()")
    restart_reruns_nothing(nb, kernel_factory, {"shaped": "shaped()"})


def test_autoreload_reruns_exactly_the_users_of_what_changed(nb, kernel_factory):
    """%autoreload swaps the edited functions' code in place, also under names that were
    imported with `from ... import`: the nodes that use them rerun, and only those."""
    import os
    path = nb.k.dir / "auto_mod.py"
    path.write_text(HELPERS_V1)
    nb.cell("auto", "%load_ext autoreload\n%autoreload 2\n")
    nb.cell("imports", "import auto_mod\nfrom auto_mod import scale\n")
    nb.cell("nodes", """\
        def uses_scale():
            _log("uses_scale")
            return scale(4)

        def uses_box():
            _log("uses_box")
            return auto_mod.Box().size()
        """)
    fresh = {"uses_scale": "uses_scale()", "uses_box": "uses_box()"}
    for t, f in fresh.items():
        nb.run(t, calls(t), f)
    path.write_text(HELPERS_V1.replace("x * SCALE", "x * SCALE + 1"))
    st = path.stat()
    os.utime(path, (st.st_atime + 5, st.st_mtime + 5))  # autoreload compares mtimes
    nb.k.ok("pass")  # autoreload reloads before this cell
    nb.run("uses_scale", calls("uses_scale"), fresh["uses_scale"])
    nb.run("uses_box", calls(), fresh["uses_box"])
    assert nb.k.eval("scale(4)") == 9
    restart_reruns_nothing(nb, kernel_factory, fresh)
