"""Random small notebooks, random edits, and an oracle that knows what each edit must rerun.

A seeded ``Generator`` builds a ``Model``: definitions (globals of many types, private helpers,
lambdas, closure factories and their closures, decorators with and without
``functools.wraps``, mutually recursive helpers, notebook classes with a base, properties,
static and class methods, dataclasses, partials and dicts of functions) and nodes whose
parameters name other nodes or globals (a random DAG), some mutating their inputs, some named
with characters that NFKC changes, laid out in cells with fixed cellIds. Each step is an
edit (a value, an equal value written otherwise, a body, an attribute, a decorator, a
factory argument, a node added or removed, a revert, a comment-only change, sometimes with
the run in the same cell), a user mutating a returned value in place, or a kernel restart.

The oracle does not ask cellar anything. A ``Replica`` executes exactly the cells the kernel
executes, in the same order, in a plain module of this process (``_log`` is a no-op there),
and records for every definition what its object was built from (its normalized source and,
for things evaluated at definition time such as decorators, base classes, factories and
partials, a snapshot of what they were then). A node's code identity is that record plus the
records (or, for plain values, the value fingerprints) of everything it reaches at call time,
recursively. A node's cache key is its code identity and the fingerprints of its inputs'
values, computed fresh by calling the functions; the node must run iff that key was never
computed before in this store (so reverts hit, equal values cut off). The kernel side
(``Session`` and the shrinking replay) is in test_random_notebooks.py.
"""

from __future__ import annotations

import copy
import functools
import random
import sys
import textwrap
import types
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

FEATURES = ("globals", "helpers", "classes", "closures", "decorators", "recursion", "data_functions",
            "mutation", "frames", "edit_and_run", "unicode")

# Feature sets the suite runs, each selectable with -k (every set includes globals, helpers
# and the node DAG with add/remove/revert/no-op edits and restarts).
FEATURE_SETS = {
    "core": ("globals", "helpers"),
    "classes": ("globals", "helpers", "classes"),
    "closures": ("globals", "helpers", "closures"),
    "decorators": ("globals", "helpers", "decorators"),
    "recursion": ("globals", "helpers", "recursion"),
    "data_functions": ("globals", "helpers", "data_functions"),
    "mutation": ("globals", "helpers", "mutation"),
    "frames": ("globals", "helpers", "frames", "mutation"),
    "edit_and_run": ("globals", "helpers", "edit_and_run"),
    "unicode": ("globals", "helpers", "unicode"),
    # everything but the NFKC names, which (unfixed) stop a session at its first run and would
    # hide what the other features find
    "mixed": tuple(f for f in FEATURES if f != "unicode"),
}

# The cell every generated notebook runs after conftest's `_log` cell: imports and private
# helpers that are never edited. `_num` turns any node value into a number (calling
# functions and partials, so a function handed through data matters downstream); `_eq` is
# the value check's comparison (types by name, arrays by dtype/shape/content, dict order,
# functions and partials by what they return, instances by their fields); `_poke` mutates a
# container in place, as a body or a user might (an array only if it is writeable: handing
# out read-only views is one way the design allows to keep values intact).
PRELUDE = textwrap.dedent(
    """\
    import copy
    import dataclasses
    import functools
    import numpy as np

    def _poke(v):
        if isinstance(v, list):
            v.append(0)
        elif isinstance(v, dict):
            v["poked"] = 1
        elif isinstance(v, set):
            v.add("poked")
        elif isinstance(v, np.ndarray) and v.flags.writeable:
            v += 1
        elif type(v).__name__ == "DataFrame":
            try:
                v[v.columns[0]] = v[v.columns[0]] * 100
            except ValueError:  # a read-only frame
                pass

    def _num(v):
        if isinstance(v, (bool, int, float, np.number)):
            return v
        if isinstance(v, str):
            return len(v)
        if isinstance(v, np.ndarray):
            return float(v.sum())
        if type(v).__name__ == "DataFrame":
            return float(v.to_numpy().sum())
        if isinstance(v, dict):
            return sum(_num(x) for x in v.values())
        if isinstance(v, (list, tuple, set, frozenset)):
            return sum(_num(x) for x in v)
        if hasattr(v, "total"):
            return _num(v.total())
        if isinstance(v, functools.partial):
            return _num(v())
        if callable(v):
            return _num(v(1))
        return 0

    def _eq(a, b):
        if type(a).__qualname__ != type(b).__qualname__:
            return False
        if isinstance(a, np.ndarray):
            return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))
        if type(a).__name__ == "DataFrame":
            return list(a.columns) == list(b.columns) and list(a.dtypes) == list(b.dtypes) and a.equals(b)
        if isinstance(a, dict):
            return list(a) == list(b) and all(_eq(a[k], b[k]) for k in a)
        if isinstance(a, (list, tuple)):
            return len(a) == len(b) and all(_eq(x, y) for x, y in zip(a, b))
        if isinstance(a, float):
            return repr(a) == repr(b)
        if isinstance(a, functools.partial):
            return _eq(a(), b())
        if callable(a) and not isinstance(a, type):
            return _eq(a(1), b(1))
        if hasattr(a, "__dict__") and not isinstance(a, type):
            return _eq(vars(a), vars(b))
        return a == b
    """
)



def prelude(features) -> str:
    """The prelude cell for a feature set (pandas only where frames are generated: its import
    costs every kernel start)."""
    return PRELUDE + ("import pandas as pd\n" if "frames" in features else "")


# Global types: (literal form, equal-value alternative form, how a body reads it).
GTYPES = {
    "int": ("{k}", "{km} + 1", "{g}"),
    "float": ("{k}.5", "{k}.25 + 0.25", "{g}"),
    "str": ('"ab" * {k}', '"ab" * ({km} + 1)', "len({g})"),
    "tuple": ('({k}, "t")', 'tuple([{k}, "t"])', "{g}[0]"),
    "list": ("[{k}, 2, 3]", "[{k}] + [2, 3]", "sum({g})"),
    "dict": ('{{"k": {k}, "z": 2}}', "dict(k={k}, z=2)", '{g}["k"]'),
    "set": ('{{"a", "b", "c", {k}}}', 'set(["c", "b", "a", {k}])',
            "sum(x for x in {g} if isinstance(x, int))"),
    "array": ("np.arange({k}, {k} + 4)", "np.array([{k}, {k} + 1, {k} + 2, {k} + 3])",
              "int({g}.sum())"),
    "frame": ('pd.DataFrame({{"a": [{k}, 2], "b": [1.5, 2.5]}})', 'pd.DataFrame({{"a": [{km} + 1, 2], "b": [1.5, 2.5]}})',
              'int({g}["a"].sum())'),
}

# Node return shapes; "inst", "fn" and "partial" need a dataclass / helpers to exist.
SHAPES = {
    "int": "v",
    "float": "v / 2",
    "str": '"x" * (v % 5)',
    "list": "[v % 4, 1]",
    "dict": '{{"v": v % 3}}',
    "tuple": '(v % 3, "t")',
    "array": "np.array([v % 4, 1.5])",
    "set": '{{v % 3, "p", "q"}}',
    "frame": 'pd.DataFrame({{"v": [v % 4, 1], "w": [0.5, v / 2]}})',
    "inst": "{cls}(v % 5)",
    "fn": "{fn}",
    "partial": "functools.partial({fn}, v % 3)",
}

VALUE_KINDS = {"global"}
# Kinds a body can use as a term, and how.
TERM = {
    "global": None,  # GTYPES use expression
    "helper": "{n}(2)",
    "lambda": "{n}(2)",
    "closure": "{n}(2)",
    "rec": "{n}(3)",
    "class": "{n}(2).val() + {n}(3).prop + {n}.st(2) + {n}.cm(1)",
    "dataclass": "{n}(2).total()",
    "partial": "{n}()",
    "ops": '{n}["p"](2) + {n}["q"](1)',
}


@dataclass
class Def:
    """One top-level definition: what it is, its editable integers, what it reads."""

    name: str
    kind: str
    p: dict  # editable integer parameters
    refs: list = field(default_factory=list)  # names read when called (live)
    deftime: list = field(default_factory=list)  # names evaluated when the def runs
    x: dict = field(default_factory=dict)  # fixed structure (gtype, params, shape, ...)
    noise: int = 0  # comment/docstring revision: changes no meaning

    @property
    def is_node(self) -> bool:
        return self.kind == "node"


@dataclass
class Cell:
    cid: str
    names: list


def nk(name: str) -> str:
    """The identifier Python binds for `name` (PEP 3131: NFKC)."""
    return unicodedata.normalize("NFKC", name)


class Model:
    """The notebook: definitions by name and cells in notebook order."""

    def __init__(self):
        self.defs: dict[str, Def] = {}
        self.cells: list[Cell] = []

    def copy(self) -> "Model":
        return copy.deepcopy(self)

    def cell_of(self, name: str) -> Cell:
        return next(c for c in self.cells if name in c.names)

    def cell(self, cid: str) -> Cell:
        return next(c for c in self.cells if c.cid == cid)

    def nodes(self) -> list[str]:
        return [n for c in self.cells for n in c.names if self.defs[n].is_node]

    def node_deps(self, name: str) -> list[str]:
        return [nk(p) for p in self.defs[name].x["params"] if nk(p) in self.defs and self.defs[nk(p)].is_node]

    def closure_nodes(self, targets) -> list[str]:
        """Targets and their node ancestors, in an order where inputs come first."""
        out, seen = [], set()

        def visit(n):
            if n in seen:
                return
            seen.add(n)
            for d in self.node_deps(n):
                visit(d)
            out.append(n)

        for t in targets:
            visit(t)
        return out

    # -- rendering ---------------------------------------------------------------------------
    def term(self, name: str) -> str:
        d = self.defs[name]
        if d.kind == "global":
            return GTYPES[d.x["gtype"]][2].format(g=name)
        return TERM[d.kind].format(n=name)

    def terms(self, names) -> str:
        return "".join(f" + {self.term(n)}" for n in names)

    def render(self, d: Def, noise: bool = True) -> str:
        nz = d.noise if noise else 0
        cm = f"  # rev {nz}" if nz else ""
        doc = f'    """Revision {nz}."""\n' if nz else ""
        p = d.p
        k = d.kind
        if k == "global":
            form = GTYPES[d.x["gtype"]][p["form"]]
            return f"{d.name} = {form.format(k=p['k'], km=p['k'] - 1)}{cm}\n"
        deco = f"@{d.x['deco']}\n" if d.x.get("deco") else ""
        if k == "helper":
            if d.x.get("fdefault"):
                f = d.x["fdefault"]
                return (f"{deco}def {d.name}(x, f={f}):\n{doc}"
                        f"    return f(x) * {p['a']}{self.terms(d.x['terms'])}\n")
            return f"{deco}def {d.name}(x):\n{doc}    return x * {p['a']}{self.terms(d.x['terms'])}{cm}\n"
        if k == "lambda":
            return f"{d.name} = lambda x: x * {p['a']}{self.terms(d.x['terms'])}{cm}\n"
        if k == "rec":
            other, base = d.x["other"], d.x["base"]
            stop = f"{p['a']}{self.terms(d.x['terms'])}" if base else f"{p['a']}"
            step = f"{other}(n - 1) + {p['b']}" if base else f"{other}(n - 1) * {p['b']}"
            return (f"def {d.name}(n):\n{doc}    if n <= 0:\n        return {stop}\n"
                    f"    return {step}\n")
        if k == "factory":
            return (f"def {d.name}(m):\n{doc}    def inner(x):\n"
                    f"        return x * m + {p['a']}{self.terms(d.x['terms'])}\n    return inner\n")
        if k == "closure":
            return f"{d.name} = {d.x['factory']}({p['m']}){cm}\n"
        if k == "deco_wraps":
            return (f"def {d.name}(f):\n{doc}    @functools.wraps(f)\n"
                    f"    def wrapper(*args, **kwargs):\n"
                    f"        return f(*args, **kwargs) + {p['a']}{self.terms(d.x['terms'])}\n"
                    f"    return wrapper\n")
        if k == "deco_plain":
            return (f"def {d.name}(f):\n{doc}    def wrapper(x):\n"
                    f"        return f(x) * {p['a']}{self.terms(d.x['terms'])}\n    return wrapper\n")
        if k == "base":
            return (f"class {d.name}:\n{doc}    def base_m(self):\n"
                    f"        return {p['a']}{self.terms(d.x['terms'])}\n")
        if k == "class":
            base = d.x.get("base")
            extra = " + self.base_m()" if base else ""
            return (f"class {d.name}{'(' + base + ')' if base else ''}:\n{doc}"
                    f"    K = {p['k']}\n\n"
                    f"    def __init__(self, x):\n        self.x = x\n\n"
                    f"    def val(self):\n        return self.x * self.K{self.terms(d.x['terms'])}{extra}\n\n"
                    f"    @property\n    def prop(self):\n        return self.x + {p['b']}\n\n"
                    f"    @staticmethod\n    def st(y):\n        return y * {p['s']}\n\n"
                    f"    @classmethod\n    def cm(cls, y):\n        return cls.K + y + {p['c']}\n")
        if k == "dataclass":
            return (f"@dataclasses.dataclass\nclass {d.name}:\n{doc}    x: int\n    y: int = {p['d']}\n\n"
                    f"    def total(self):\n        return self.x + self.y * {p['t']}{self.terms(d.x['terms'])}\n")
        if k == "partial":
            return f"{d.name} = functools.partial({d.x['fn']}, {p['a']}){cm}\n"
        if k == "ops":
            return f'{d.name} = {{"p": {d.x["fns"][0]}, "q": {d.x["fns"][1]}}}{cm}\n'
        if k == "node":
            params = d.x["params"]
            shape = SHAPES[d.x["shape"]].format(cls=d.x.get("cls"), fn=d.x.get("fn"))
            body = f"    v = {p['a']}" + "".join(f" + _num({q})" for q in params)
            body += self.terms(d.x["terms"])
            pokes = "".join(f"    _poke({q})\n" for q in d.x.get("pokes", ()))
            return (f"{deco}def {d.name}({', '.join(params)}):\n{doc}    _log(\"{d.name}\")\n"
                    f"{body}{cm}\n{pokes}    v = int(v) % 997\n    return {shape}\n")
        raise ValueError(k)

    def cell_source(self, cell: Cell) -> str:
        if not cell.names:
            return "# (nothing defined here any more)\n"
        return "\n\n".join(self.render(self.defs[n]) for n in cell.names)

    def listing(self) -> str:
        """The whole notebook, cell by cell, as a repro."""
        out = []
        for c in self.cells:
            out.append(f"# --- cell {c.cid}\n{self.cell_source(c)}")
        return "\n".join(out)


class Replica:
    """The notebook executed in this process, cell for cell as the kernel executes it."""

    def __init__(self, model: Model, features=FEATURES):
        self.model = model
        self.mod = types.ModuleType("_cellar_nb_replica")
        sys.modules[self.mod.__name__] = self.mod
        self.ns = self.mod.__dict__
        self.rec: dict[str, tuple] = {}  # name -> record of the object it is bound to
        self.obj_rec: dict[int, tuple] = {}  # id(object) -> its record
        self.keep: list = []  # keeps recorded objects alive, so ids stay theirs
        exec(compile("def _log(name):\n    pass\n" + prelude(features), "<prelude>", "exec"), self.ns)

    def exec_cell(self, cell: Cell) -> None:
        exec(compile(self.model.cell_source(cell), f"<cell {cell.cid}>", "exec"), self.ns)
        for n in cell.names:
            d = self.model.defs[n]
            if d.kind in VALUE_KINDS:
                continue
            r = (d.kind, n, self.model.render(d, noise=False), tuple(d.refs),
                 tuple((x, self.rec.get(x)) for x in d.deftime))
            self.rec[n] = r
            obj = self.ns[n]
            self.obj_rec[id(obj)] = r
            self.keep.append(obj)

    @staticmethod
    def live_names(r) -> list:
        out = list(r[3])
        for _, xr in r[4]:
            if xr is not None:
                out += Replica.live_names(xr)
        return out

    def code_id(self, r) -> str:
        """The record plus what it reaches when called: other records, or value fingerprints."""
        items, seen, todo = [("self", repr(r))], set(), self.live_names(r)
        while todo:
            y = todo.pop()
            if y in seen:
                continue
            seen.add(y)
            d = self.model.defs.get(y)
            if d is not None and d.kind in VALUE_KINDS:
                items.append((y, repr(self.vfp(self.ns[y]))))
            elif y in self.rec:
                items.append((y, repr(self.rec[y])))
                if d is not None and d.kind in ("partial", "ops"):  # see _code_fp
                    items.append((y, repr(self._held_tags(self.ns[y]))))
                todo += self.live_names(self.rec[y])
        return repr(sorted(items))

    def vfp(self, v):
        """A value's fingerprint as cellar's design defines data versions: typed, ordered,
        sets canonical, notebook code inside data by its code identity."""
        t = type(v)
        if v is None or t in (bool, int, str, bytes, float):
            return (t.__name__, repr(v))
        if t in (list, tuple):
            return (t.__name__, tuple(self.vfp(x) for x in v))
        if t is dict:
            return ("dict", tuple((self.vfp(a), self.vfp(b)) for a, b in v.items()))
        if t in (set, frozenset):
            return (t.__name__, tuple(sorted(repr(self.vfp(x)) for x in v)))
        if isinstance(v, np.ndarray):
            return ("ndarray", v.dtype.str, v.shape, v.tobytes())
        if isinstance(v, np.generic):
            return ("npscalar", v.dtype.str, v.tobytes())
        if type(v).__name__ == "DataFrame":
            return ("frame", tuple(v.columns), tuple(str(t) for t in v.dtypes), tuple(v.index),
                    tuple(v[c].to_numpy().tobytes() for c in v.columns))
        if isinstance(v, functools.partial):
            return ("partial", self.vfp(v.func), self.vfp(v.args), self.vfp(v.keywords))
        if id(v) in self.obj_rec:
            return self._code_fp(v)
        if id(t) in self.obj_rec:
            return ("obj", self._code_fp(t), self.vfp(vars(v)))
        raise TypeError(f"no fingerprint for {v!r}")

    def _held_tags(self, v) -> tuple:
        """For a partial or a dict of functions (counted by its record, which says what its
        functions were built from): whether each function it holds counts as named."""
        held = [v.func] if isinstance(v, functools.partial) else list(v.values())
        return tuple(self._code_fp(x)[0] for x in held if id(x) in self.obj_rec)

    def _code_fp(self, obj):
        """Notebook code counts by what it is built from (its record, and what it reads now),
        also when its name no longer reaches it: a dict built before its helper's cell was
        re-run holds the old function. Such code fingerprints as if named while its name
        reaches code of the same identity (the cell re-run unchanged); otherwise (edited
        since, a lambda, a closure, a plain decorator's wrapper) apart from anything named,
        since a value stored by name would load the other code."""
        mine = self.code_id(self.obj_rec[id(obj)])
        parts = getattr(obj, "__qualname__", "").split(".")
        reached = self.ns.get(parts[0])
        for part in parts[1:]:
            reached = getattr(reached, part, None)
        if reached is obj or (id(reached) in self.obj_rec
                              and self.code_id(self.obj_rec[id(reached)]) == mine):
            return ("code", mine)
        return ("apart", mine)

    def evaluate(self, targets):
        """Fresh values, input fingerprints and code identities of the targets' closure."""
        vals, keys = {}, {}
        for n in self.model.closure_nodes(targets):
            d = self.model.defs[n]
            # each consumer gets the value as its node returned it, whatever others did to it
            args = {nk(q): (copy.deepcopy(vals[nk(q)]) if nk(q) in vals else self.ns[q]) for q in d.x["params"]}
            vals[n] = self.ns[n](**args)
            keys[n] = (self.code_id(self.rec[n]), tuple((q, repr(self.vfp(a))) for q, a in args.items()))
        return vals, keys


@dataclass
class Step:
    """One step: its description, and the cells to execute (or a restart)."""

    what: str
    cells: list  # cell ids, in execution order
    restart: bool = False
    run_in_cell: bool = False  # `_v = %cellar run ...` is the last executed cell's last line
    poke: bool | str = False  # the user mutates a value that the last run returned (which one, once done)


class Generator:
    """Seeded notebooks and edits over a feature set."""

    def __init__(self, seed: int, features=FEATURES):
        self.rng = random.Random(seed)
        self.seed = seed
        self.f = set(features)
        self.counter = Counter()
        self.history: list = []  # (name, param, old value) for reverts

    def fresh(self, prefix: str) -> str:
        i = self.counter[prefix]
        self.counter[prefix] += 1
        return f"{prefix}{i}"

    def _usable(self, m: Model, kinds) -> list:
        return [n for n, d in m.defs.items() if d.kind in kinds]

    @staticmethod
    def _named_helpers(m: Model) -> list:
        """Helpers that pickle by name (undecorated or functools.wraps): the ones a node may
        return. A plain wrapper is `_dp.<locals>.wrapper`, which no pickle can name: a result
        holding one is not stored (recomputed after a restart), which the oracle does not
        model. Globals (partials, dicts) hold any helper: their versions need no name."""
        return [n for n, d in m.defs.items() if d.kind == "helper"
                and (not d.x.get("deco") or m.defs[d.x["deco"]].kind == "deco_wraps")]

    def _pick_terms(self, m: Model, kinds, most=2) -> list:
        pool = self._usable(m, kinds)
        return self.rng.sample(pool, min(len(pool), self.rng.randint(0, most)))

    @staticmethod
    def _last_cell(m: Model, kind: str) -> str | None:
        """The last cell's id if it defines a `kind` last (a second one may join it)."""
        if m.cells and m.cells[-1].names and m.defs[m.cells[-1].names[-1]].kind == kind:
            return m.cells[-1].cid
        return None

    def _add(self, m: Model, d: Def, cell: str | None = None) -> None:
        key = nk(d.name)
        m.defs[key] = d
        if cell is not None and self.rng.random() < 0.25 and m.cells and m.cells[-1].cid == cell:
            m.cells[-1].names.append(key)  # a cell that defines two things
        else:
            m.cells.append(Cell(f"c_{key}", [key]))

    def build(self) -> Model:
        r, m = self.rng, Model()
        gtypes = [g for g in GTYPES if g != "frame" or "frames" in self.f]
        for _ in range(r.randint(2, 4)):
            g = self.fresh("G")
            self._add(m, Def(g, "global", {"k": r.randint(1, 6), "form": 0}, x={"gtype": r.choice(gtypes)}))
        term_kinds = {"global", "helper"}
        decos = []
        if "decorators" in self.f:
            for kind in ("deco_wraps", "deco_plain"):
                n = self.fresh("_dw" if kind == "deco_wraps" else "_dp")
                t = self._pick_terms(m, {"global"}, 1)
                self._add(m, Def(n, kind, {"a": r.randint(1, 5)}, refs=t, x={"terms": t}))
                decos.append(n)
        for _ in range(r.randint(2, 3)):
            self._add_helper(m, decos)
        if "recursion" in self.f:
            ev, od = self.fresh("_ev"), self.fresh("_od")
            t = self._pick_terms(m, {"global"}, 2) or self._usable(m, {"global"})[:1]
            self._add(m, Def(ev, "rec", {"a": r.randint(1, 5), "b": r.randint(1, 3)}, refs=[od] + t,
                             x={"other": od, "base": True, "terms": t}))
            self._add(m, Def(od, "rec", {"a": r.randint(1, 5), "b": r.randint(1, 3)}, refs=[ev],
                             x={"other": ev, "base": False, "terms": []}), cell=f"c_{ev}")
            term_kinds.add("rec")
        if "closures" in self.f:
            fac = self.fresh("_mk")
            t = self._pick_terms(m, {"global"}, 1)
            self._add(m, Def(fac, "factory", {"a": r.randint(1, 5)}, refs=t, x={"terms": t}))
            for _ in range(r.randint(1, 2)):
                self._add(m, Def(self.fresh("_sc"), "closure", {"m": r.randint(1, 5)}, deftime=[fac],
                                 x={"factory": fac}))
            t = self._pick_terms(m, {"global", "helper"}, 2)
            self._add(m, Def(self.fresh("_lm"), "lambda", {"a": r.randint(1, 5)}, refs=t, x={"terms": t}))
            term_kinds |= {"closure", "lambda"}
        if "classes" in self.f:
            b = self.fresh("B")
            t = self._pick_terms(m, {"global", "helper"}, 1)
            self._add(m, Def(b, "base", {"a": r.randint(1, 5)}, refs=t, x={"terms": t}))
            base = b if r.random() < 0.7 else None
            t = self._pick_terms(m, {"global", "helper"}, 1)
            self._add(m, Def(self.fresh("C"), "class",
                             {"k": r.randint(1, 5), "b": r.randint(1, 5), "s": r.randint(1, 5),
                              "c": r.randint(1, 5)},
                             refs=t, deftime=[base] if base else [], x={"terms": t, "base": base}))
            t = self._pick_terms(m, {"global"}, 1)
            self._add(m, Def(self.fresh("D"), "dataclass", {"d": r.randint(1, 5), "t": r.randint(1, 5)},
                             refs=t, x={"terms": t}))
            term_kinds |= {"class", "dataclass"}
        if "data_functions" in self.f:
            hs = self._usable(m, {"helper"}) or [self._add_helper(m, [])]
            fn = r.choice(hs)
            self._add(m, Def(self.fresh("_pt"), "partial", {"a": r.randint(1, 5)}, deftime=[fn], x={"fn": fn}))
            fns = [r.choice(hs), r.choice(hs)]
            self._add(m, Def(self.fresh("_OPS"), "ops", {}, deftime=list(dict.fromkeys(fns)), x={"fns": fns}))
            self._add_helper(m, decos, fdefault=r.choice(hs))
            term_kinds |= {"partial", "ops"}
        self.term_kinds = term_kinds
        self.decos = decos
        for _ in range(r.randint(3, 5)):
            self._add_node(m)
        return m

    def _add_helper(self, m: Model, decos, fdefault=None) -> str:
        r = self.rng
        t = self._pick_terms(m, {"global", "helper", "rec"}, 2)
        deco = r.choice(decos) if decos and r.random() < 0.6 else None
        deftime = ([deco] if deco else []) + ([fdefault] if fdefault else [])
        name = self.fresh("_h")
        self._add(m, Def(name, "helper", {"a": r.randint(1, 5)}, refs=t, deftime=deftime,
                         x={"terms": t, "deco": deco, "fdefault": fdefault}),
                  cell=self._last_cell(m, "helper"))
        return name

    def _add_node(self, m: Model) -> str:
        r = self.rng
        name = self.fresh("n")
        nodes = m.nodes()
        params = r.sample(nodes, min(len(nodes), r.randint(0, 2)))
        if "unicode" in self.f:  # the parameter typed the other way than the def, sometimes
            params = [r.choice([p, p.replace("\u03bc", "\u00b5")]) for p in params]
            if r.random() < 0.5:
                name = name.replace("n", "n\u00b5", 1)  # MICRO SIGN: Python binds GREEK SMALL MU
        if r.random() < 0.3:
            g = r.choice(self._usable(m, {"global"}))
            params.append(g)
        t = self._pick_terms(m, self.term_kinds, 3)
        shapes = ["int", "float", "str", "list", "dict", "tuple", "array", "set"]
        if "frames" in self.f:
            shapes += ["frame"] * 3
        if "classes" in self.f:
            shapes += ["inst"] * 2
        if "data_functions" in self.f and self._named_helpers(m):
            shapes += ["fn", "partial"] * 2
        shape = r.choice(shapes)
        x = {"params": params, "terms": t, "shape": shape}
        if "mutation" in self.f:
            mine = [q for q in params if nk(q) in m.defs and m.defs[nk(q)].is_node]
            if mine and r.random() < 0.6:
                x["pokes"] = [r.choice(mine)]
        if shape == "inst":
            x["cls"] = r.choice(self._usable(m, {"dataclass"}))
            t = t + [x["cls"]]
        if shape in ("fn", "partial"):
            x["fn"] = r.choice(self._named_helpers(m))
            t = t + [x["fn"]]
        deftime = []
        if self.decos and shape in ("int", "float") and r.random() < 0.5:
            x["deco"] = next(d for d in self.decos if m.defs[d].kind == "deco_wraps")
            deftime = [x["deco"]]
        # a function named in the return statement is read by the body, as a term is
        self._add(m, Def(name, "node", {"a": r.randint(1, 9)}, refs=list(dict.fromkeys(t)), deftime=deftime,
                         x=x), cell=self._last_cell(m, "node"))
        return nk(name)

    # -- edits -------------------------------------------------------------------------------
    def _dependents_cells(self, m: Model, name: str) -> list:
        """Cells of definitions that evaluated `name` when they ran (transitively), in order."""
        hit, frontier = set(), {name}
        while frontier:
            nxt = {n for n, d in m.defs.items() if set(d.deftime) & frontier} - hit
            hit |= nxt
            frontier = nxt
        return [c.cid for c in m.cells if set(c.names) & hit]

    def step(self, m: Model) -> Step:
        r = self.rng
        kinds = ["value", "value", "same_value", "body", "body", "node_body", "add_node",
                 "remove_node", "revert", "noop", "restart"]
        if "closures" in self.f:
            kinds += ["factory_arg"]
        if "mutation" in self.f:
            kinds += ["poke", "poke"]
        if self._feature_defs(m):
            kinds += ["feature_body"] * 3  # so that 20 steps edit what the feature set is about
        st = self._step(m, r.choice(kinds))
        if "edit_and_run" in self.f and st.cells and not st.restart and r.random() < 0.4:
            st.run_in_cell = True
            st.what += ", and run the targets in that same cell"
        return st

    def _feature_defs(self, m: Model) -> list:
        """Editable definitions of the feature set's own kinds (not globals, helpers, nodes)."""
        return [n for n, d in m.defs.items() if d.p and (d.kind not in ("global", "helper", "node", "ops")
                                                          or d.x.get("fdefault"))]

    def _step(self, m: Model, what: str) -> Step:
        r = self.rng
        if what == "poke":
            return Step("the user mutates in place a value that the last run returned", [], poke=True)
        if what == "restart":
            return Step("restart the kernel, re-run every cell", [c.cid for c in m.cells], restart=True)
        if what == "add_node":
            n = self._add_node(m)
            return Step(f"add node {n}", [m.cell_of(n).cid])
        if what == "remove_node":
            nodes = m.nodes()
            sinks = [n for n in nodes if not any(n in m.node_deps(o) for o in nodes)]
            if len(nodes) > 2 and sinks:
                n = r.choice(sinks)
                cell = m.cell_of(n)
                cell.names.remove(n)
                del m.defs[n]
                return Step(f"remove node {n} from cell {cell.cid}", [cell.cid])
            what = "noop"
        if what == "revert" and self.history:
            name, key, old = self.history.pop(r.randrange(len(self.history)))
            if name in m.defs:
                return self._set(m, name, key, old, f"revert {name}.{key} to {old}")
            what = "noop"
        if what == "noop":
            n = r.choice(list(m.defs))
            m.defs[n].noise += 1
            return Step(f"comment/docstring-only edit of {m.defs[n].name}", [m.cell_of(n).cid])
        if what in ("value", "same_value"):
            g = m.defs[r.choice(self._usable(m, {"global"}))]
            if what == "same_value":
                return self._set(m, g.name, "form", 1 - g.p["form"], f"rewrite {g.name} to an equal value")
            return self._set(m, g.name, "k", self._other(g.p["k"]), f"change global {g.name}")
        if what == "factory_arg":
            c = m.defs[r.choice(self._usable(m, {"closure"}))]
            return self._set(m, c.name, "m", self._other(c.p["m"]), f"change factory argument of {c.name}")
        if what == "node_body":
            n = r.choice(m.nodes())
            return self._set(m, n, "a", self._other(m.defs[n].p["a"]), f"edit body of node {n}")
        cands = [n for n, d in m.defs.items() if d.kind not in ("global", "node", "ops") and d.p]
        if what == "feature_body":
            cands = self._feature_defs(m)
        n = r.choice(cands)
        key = r.choice(sorted(m.defs[n].p))
        return self._set(m, n, key, self._other(m.defs[n].p[key]), f"edit {m.defs[n].kind} {n}: {key}")

    def _other(self, v: int) -> int:
        return self.rng.choice([x for x in range(1, 7) if x != v])

    def _set(self, m: Model, name: str, key: str, value, what: str) -> Step:
        d = m.defs[name]
        self.history.append((name, key, d.p[key]))
        d.p[key] = value
        cells = [m.cell_of(name).cid]
        deps = self._dependents_cells(m, name)
        if deps and self.rng.random() < 0.5:
            cells += [c for c in deps if c not in cells]
            what += f", then re-run the cells that used it at definition time ({', '.join(deps)})"
        return Step(what, cells)

    def targets(self, m: Model) -> list:
        nodes = m.nodes()
        if self.rng.random() < 0.6:
            return nodes
        return sorted(self.rng.sample(nodes, self.rng.randint(1, len(nodes))), key=nodes.index)


# -- for shrinking a failure: which definitions may go --------------------------------------
def needs(d: Def) -> set:
    """Every name a definition cannot do without."""
    x = d.x
    out = set(d.refs) | set(d.deftime) | {nk(p) for p in x.get("params", ())} | set(x.get("fns", ()))
    out |= {x[k] for k in ("fn", "cls", "other", "factory", "base", "deco", "fdefault") if x.get(k)}
    return out


def without(m: Model, drop: set) -> Model:
    """A copy of the notebook without the definitions in `drop` (and the cells they leave
    empty)."""
    m = m.copy()
    for n in drop:
        m.defs.pop(n, None)
    cells = []
    for c in m.cells:
        kept = [n for n in c.names if n not in drop]
        if kept or not c.names:  # a cell emptied by the user stays: executing it removes a node
            c.names = kept
            cells.append(c)
    m.cells = cells
    return m


def closure_of(models, roots) -> set:
    """The roots and every definition they need, in any of the notebooks."""
    keep, todo = set(), list(roots)
    while todo:
        n = todo.pop()
        if n in keep:
            continue
        keep.add(n)
        for m in models:
            if n in m.defs:
                todo += needs(m.defs[n])
    return keep
