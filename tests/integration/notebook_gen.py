"""Random small notebooks, random edits, and an oracle that knows what each edit must rerun.

A seeded ``Generator`` builds a ``Model``: definitions (globals of many types, private helpers,
lambdas, closure factories and their closures, decorators with and without
``functools.wraps``, mutually recursive helpers, notebook classes with a base, properties,
static and class methods, dataclasses, partials and dicts of functions) and nodes whose
parameters name other nodes or globals (a random DAG), laid out in cells with fixed cellIds.
Each step is an edit (a value, a body, an attribute, a decorator, a factory argument, a node
added or removed, a revert, a comment-only change) or a kernel restart.

The oracle does not ask cellar anything. A ``Replica`` executes exactly the cells the kernel
executes, in the same order, in a plain module of this process (``_log`` is a no-op there),
and records for every definition what its object was built from (its normalized source and,
for things evaluated at definition time such as decorators, base classes, factories and
partials, a snapshot of what they were then). A node's code identity is that record plus the
records (or, for plain values, the value fingerprints) of everything it reaches at call time,
recursively. A node's cache key is its code identity and the fingerprints of its inputs'
values, computed fresh by calling the functions; the node must run iff that key was never
computed before in this store (so reverts hit, equal values cut off). ``Session`` drives a
real kernel through the same steps and compares what ran (calls.log) with the oracle, and
each target's value with a fresh computation in the same kernel.
"""

from __future__ import annotations

import copy
import functools
import random
import sys
import textwrap
import types
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

FEATURES = ("globals", "helpers", "classes", "closures", "decorators", "recursion", "data_functions")

# Feature sets the suite runs, each selectable with -k (every set includes globals, helpers
# and the node DAG with add/remove/revert/no-op edits and restarts).
FEATURE_SETS = {
    "core": ("globals", "helpers"),
    "classes": ("globals", "helpers", "classes"),
    "closures": ("globals", "helpers", "closures"),
    "decorators": ("globals", "helpers", "decorators"),
    "recursion": ("globals", "helpers", "recursion"),
    "data_functions": ("globals", "helpers", "data_functions"),
    "mixed": FEATURES,
}

# The cell every generated notebook runs after conftest's `_log` cell: imports and two
# private helpers that are never edited. `_num` turns any node value into a number (calling
# functions and partials, so a function handed through data matters downstream); `_eq` is
# the value check's comparison (types by name, arrays by dtype/shape/content, dict order,
# functions and partials by what they return, instances by their fields).
PRELUDE = textwrap.dedent(
    """\
    import dataclasses
    import functools
    import numpy as np

    def _num(v):
        if isinstance(v, (bool, int, float, np.number)):
            return v
        if isinstance(v, str):
            return len(v)
        if isinstance(v, np.ndarray):
            return float(v.sum())
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


def _lit(v) -> str:
    return str(v)


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
        return [p for p in self.defs[name].x["params"] if p in self.defs and self.defs[p].is_node]

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
            return (f"{deco}def {d.name}({', '.join(params)}):\n{doc}    _log(\"{d.name}\")\n"
                    f"{body}{cm}\n    v = int(v) % 997\n    return {shape}\n")
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

    def __init__(self, model: Model):
        self.model = model
        self.mod = types.ModuleType("_cellar_nb_replica")
        sys.modules[self.mod.__name__] = self.mod
        self.ns = self.mod.__dict__
        self.rec: dict[str, tuple] = {}  # name -> record of the object it is bound to
        self.obj_rec: dict[int, tuple] = {}  # id(object) -> its record
        self.keep: list = []  # keeps recorded objects alive, so ids stay theirs
        exec(compile("def _log(name):\n    pass\n" + PRELUDE, "<prelude>", "exec"), self.ns)

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
        if isinstance(v, functools.partial):
            return ("partial", self.vfp(v.func), self.vfp(v.args), self.vfp(v.keywords))
        if id(v) in self.obj_rec:
            return ("code", self.code_id(self.obj_rec[id(v)]))
        if id(t) in self.obj_rec:
            return ("obj", self.code_id(self.obj_rec[id(t)]), self.vfp(vars(v)))
        raise TypeError(f"no fingerprint for {v!r}")

    def evaluate(self, targets):
        """Fresh values, input fingerprints and code identities of the targets' closure."""
        vals, keys = {}, {}
        for n in self.model.closure_nodes(targets):
            d = self.model.defs[n]
            args = {q: (vals[q] if q in vals else self.ns[q]) for q in d.x["params"]}
            vals[n] = self.ns[n](**args)
            keys[n] = (self.code_id(self.rec[n]), tuple((q, repr(self.vfp(a))) for q, a in args.items()))
        return vals, keys


@dataclass
class Step:
    """One step: its description, and the cells to execute (or a restart)."""

    what: str
    cells: list  # cell ids, in execution order
    restart: bool = False


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
        """Helpers that pickle by name (undecorated or functools.wraps): the ones a value may
        hold. A plain wrapper is `_dp.<locals>.wrapper`, which no pickle can name, and an
        unpicklable value is documented to get a unique version."""
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
        m.defs[d.name] = d
        if cell is not None and self.rng.random() < 0.25 and m.cells and m.cells[-1].cid == cell:
            m.cells[-1].names.append(d.name)  # a cell that defines two things
        else:
            m.cells.append(Cell(f"c_{d.name}", [d.name]))

    def build(self) -> Model:
        r, m = self.rng, Model()
        gtypes = list(GTYPES)
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
            hs = self._named_helpers(m) or [self._add_helper(m, [])]
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
        if r.random() < 0.3:
            g = r.choice(self._usable(m, {"global"}))
            params.append(g)
        t = self._pick_terms(m, self.term_kinds, 3)
        shapes = ["int", "float", "str", "list", "dict", "tuple", "array", "set"]
        if "classes" in self.f:
            shapes += ["inst"] * 2
        if "data_functions" in self.f and self._named_helpers(m):
            shapes += ["fn", "partial"] * 2
        shape = r.choice(shapes)
        x = {"params": params, "terms": t, "shape": shape}
        if shape == "inst":
            x["cls"] = r.choice(self._usable(m, {"dataclass"}))
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
        return name

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
        what = r.choice(kinds)
        if what == "restart":
            return Step("restart the kernel, re-run every cell", [c.cid for c in m.cells], restart=True)
        if what == "add_node":
            n = self._add_node(m)
            return Step(f"add node {n}", [m.cell_of(n).cid])
        if what == "remove_node":
            nodes = m.nodes()
            sinks = [n for n in nodes if not any(n in m.defs[o].x["params"] for o in nodes)]
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
            d = m.defs[r.choice(list(m.defs))]
            d.noise += 1
            return Step(f"comment/docstring-only edit of {d.name}", [m.cell_of(d.name).cid])
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


@dataclass
class Failure:
    """What differed at one step, with everything needed to replay it."""

    seed: int
    features: tuple
    step_no: int
    step: str
    problems: list
    executed: list  # (cell id, source) executed by the step
    listing: str  # the notebook after the step
    history: list  # the steps before, as descriptions
    targets: list
    report: str = ""
    shrunk: str = ""
    before: str = ""  # the notebook before the step

    def text(self) -> str:
        ex = "\n".join(f"# --- executed cell {cid}\n{src}" for cid, src in self.executed)
        hist = "\n".join(f"  {i}: {h}" for i, h in enumerate(self.history))
        out = (f"seed={self.seed} features={','.join(self.features)} step {self.step_no}: {self.step}\n"
               f"targets: {' '.join(self.targets)}\n"
               + "\n".join(f"PROBLEM: {p}" for p in self.problems)
               + f"\n--- steps before (each: what, then the run):\n{hist}\n"
               f"--- notebook before the step:\n{self.before}\n--- the step executed:\n{ex or '(no cell)'}\n"
               f"--- notebook after the step:\n{self.listing}\n--- cellar's report (diagnosis only):\n{self.report}")
        if self.shrunk:
            out += f"\n--- shrunk repro (fresh kernel and store):\n{self.shrunk}"
        return out


class Session:
    """One generated notebook driven through a real kernel, step by step, against the oracle.

    `kernel` is tests/integration/conftest.py's Kernel (run/ok/cellar_run/take_calls/restart/
    setup)."""

    def __init__(self, kernel, seed: int, features=FEATURES, model: Model | None = None, targets=None):
        self.k = kernel
        self.seed = seed
        self.features = tuple(features)
        self.gen = Generator(seed, features)
        self.model = self.gen.build() if model is None else model
        self.fixed_targets = targets  # a replay runs the failing step's targets
        self.replica = None
        self.seen: dict[str, set] = {}
        self.history: list = []
        self.trace: list = []  # (notebook after the step, step, targets), for shrinking

    # -- driving the kernel ------------------------------------------------------------------
    def _load_notebook(self, fresh_kernel: bool) -> list:
        """Setup cells, prelude, then every cell in notebook order, in kernel and replica."""
        if fresh_kernel:
            self.k.setup()
        self.k.ok(PRELUDE, cell_id="prelude")
        self.replica = Replica(self.model)
        problems = []
        for c in self.model.cells:
            problems += self._exec(c.cid)
        return problems

    def _exec(self, cid: str) -> list:
        cell = self.model.cell(cid)
        res = self.k.run(self.model.cell_source(cell), cell_id=cid)
        self.replica.exec_cell(cell)
        if res.status != "ok":
            return [f"cell {cid} failed in the kernel:\n{res.error_text}"]
        return []

    def start(self) -> Failure | None:
        problems = self._load_notebook(fresh_kernel=True)
        return self._run_and_check(0, Step("first run of the whole notebook",
                                           [c.cid for c in self.model.cells]), problems)

    def step(self, i: int) -> Failure | None:
        return self.apply(i, self.gen.step(self.model))

    def apply(self, i: int, st: Step) -> Failure | None:
        """Execute a step's cells (or restart and re-run all), then run and check."""
        self.replica.model = self.model
        problems = []
        if st.restart:
            self.k.restart()
            self.k.setup()
            problems = self._load_notebook(fresh_kernel=False)
        else:
            for cid in st.cells:
                problems += self._exec(cid)
        return self._run_and_check(i, st, problems)

    def _run_and_check(self, i: int, st: Step, problems: list) -> Failure | None:
        m, k = self.model, self.k
        defined = k.take_calls()
        if defined:
            problems.append(f"executing the cells ran bodies: {dict(defined)}")
        if self.fixed_targets is not None:
            nodes = m.nodes()
            targets = [t for t in self.fixed_targets if t in nodes] or nodes
        else:
            targets = self.gen.targets(m)
        _, keys = self.replica.evaluate(targets)
        expected = Counter(n for n, key in keys.items() if key not in self.seen.get(n, set()))
        res = k.cellar_run(" ".join(targets))
        report = "\n".join(r.text for r in res.reports) if res.status == "ok" else res.error_text
        ran = k.take_calls()
        if res.status != "ok":
            problems.append(f"%cellar run failed:\n{res.error_text}")
        else:
            extra, missing = ran - expected, expected - ran
            if extra:
                problems.append(f"ran but nothing it depends on changed (needless recompute): {sorted(extra)}")
            if missing:
                problems.append(f"did not run though its code or an input changed (stale): {sorted(missing)}")
            problems += self._check_values(targets)
        for n, key in keys.items():
            self.seen.setdefault(n, set()).add(key)
        executed = [(cid, m.cell_source(m.cell(cid))) for cid in st.cells] if not st.restart else []
        before = self.trace[-1][0].listing() if self.trace else "(empty)"
        self.history.append(f"{st.what}; then %cellar run {' '.join(targets)}")
        self.trace.append((m.copy(), st, list(targets)))
        if not problems:
            return None
        return Failure(self.seed, self.features, i, st.what, problems, executed, m.listing(),
                       self.history[:-1], targets, report, before=before)

    def _check_values(self, targets) -> list:
        """Each target's value against the plain functions called in this kernel now."""
        m = self.model
        lines = ["_fr = {}"]
        for n in m.closure_nodes(targets):
            args = ", ".join(f"{q}=_fr[{q!r}]" if q in m.defs and m.defs[q].is_node else f"{q}={q}"
                             for q in m.defs[n].x["params"])
            lines.append(f"_fr[{n!r}] = {n}({args})")
        got = "_v" if len(targets) > 1 else f"{{{targets[0]!r}: _v}}"
        lines.append(f"_vd = {got}")
        lines.append(f"print(repr([(t, repr(_vd[t]), repr(_fr[t])) for t in {list(targets)!r} "
                     f"if not _eq(_vd[t], _fr[t])]))")
        res = self.k.run("\n".join(lines))
        self.k.take_calls()  # the fresh computation logs too; it is not cellar's doing
        if res.status != "ok":
            return [f"the fresh computation failed:\n{res.error_text}"]
        import ast
        bad = ast.literal_eval(res.stdout.strip().splitlines()[-1])
        return [f"wrong value for {t}: cellar returned {a}, a fresh computation gives {b}" for t, a, b in bad]

    def run(self, steps: int) -> Failure | None:
        """The first run and `steps` steps; stops at the first failure (after it the store and
        the oracle no longer agree on what was computed)."""
        f = self.start()
        for i in range(1, steps + 1):
            if f is not None:
                return f
            f = self.step(i)
        return f


def _needs(d: Def) -> set:
    """Every name a definition cannot do without."""
    x = d.x
    out = set(d.refs) | set(d.deftime) | set(x.get("params", ())) | set(x.get("fns", ()))
    out |= {x[k] for k in ("fn", "cls", "other", "factory", "base", "deco", "fdefault") if x.get(k)}
    return out


def _without(m: Model, drop: set) -> Model:
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


def _closure(models, roots) -> set:
    keep, todo = set(), list(roots)
    while todo:
        n = todo.pop()
        if n in keep:
            continue
        keep.add(n)
        for m in models:
            if n in m.defs:
                todo += _needs(m.defs[n])
    return keep


def _category(problems) -> set:
    return {p.split(":")[0].split(" for ")[0] for p in problems}


def replay(kernel, seed, features, trace, drop: set = frozenset()) -> Failure | None:
    """Replays a trace (notebook after each step, step, targets) without the definitions in
    `drop`, in `kernel` (fresh, on a fresh store); the first failure, or None."""
    m0, st0, t0 = trace[0]
    s = Session(kernel, seed, features, model=_without(m0, drop), targets=t0)
    s.history = []
    f = s.start() if st0.cells or not st0.restart else None
    for i, (m, st, targets) in enumerate(trace[1:], 1):
        if f is not None:
            return f
        s.model, s.fixed_targets = _without(m, drop), targets
        ids = {c.cid for c in s.model.cells}
        f = s.apply(i, Step(st.what, [c for c in st.cells if c in ids], st.restart))
    return f


def _merge(trace, gone: set) -> list:
    """The trace without the steps in `gone` (never the first or last): a dropped step's
    cells are executed by the next kept step, so kernel and replica still run the same cells."""
    out, pending = [], []
    for i, (m, st, t) in enumerate(trace):
        if i in gone:
            pending += st.cells
            continue
        cells = list(dict.fromkeys(pending + st.cells)) if not st.restart else st.cells
        out.append((m, Step(st.what, cells, st.restart), t))
        pending = []
    return out


def shrink(kernel_factory, tmp_path, failure: Failure, session: Session, budget: float | None = None) -> str:
    """Replays the failing trace in fresh kernels and stores with fewer steps and fewer
    definitions, keeping each cut whenever the same kind of problem still shows. Returns the
    smallest failing replay's text (empty if shrinking is off). `budget` seconds
    (CELLAR_PROPTEST_SHRINK_SECONDS, default 30; 0: off)."""
    import os
    import re
    import time

    if budget is None:
        budget = float(os.environ.get("CELLAR_PROPTEST_SHRINK_SECONDS", "30"))
    if budget <= 0 or not session.trace:
        return ""
    deadline = time.monotonic() + budget
    want = _category(failure.problems)
    attempt = [0]

    def fails(trace, drop) -> Failure | None:
        attempt[0] += 1
        wd = tmp_path / f"shrink{attempt[0]}"
        wd.mkdir()
        k = kernel_factory(wd)
        try:
            if not _without(trace[-1][0], drop).nodes():
                return None
            f = replay(k, failure.seed, failure.features, trace, drop)
            return f if f is not None and _category(f.problems) & want else None
        finally:
            k.stop()

    trace, drop, best = session.trace, set(), None
    # 1. fewer steps: the last step alone after a first run of the notebook before it, then
    #    halves, quarters, ... of the steps before it.
    if len(trace) > 2:
        m_before = trace[-2][0]
        alone = [(m_before, Step("first run of the notebook before the step",
                                 [c.cid for c in m_before.cells]), trace[-2][2]), trace[-1]]
        f = fails(alone, drop)
        if f is not None:
            trace, best = alone, f
    chunk = max(1, (len(trace) - 2) // 2)
    while chunk >= 1 and len(trace) > 2 and time.monotonic() < deadline:
        i = 1
        while i < len(trace) - 1 and time.monotonic() < deadline:
            gone = set(range(i, min(i + chunk, len(trace) - 1)))
            cut = _merge(trace, gone)
            f = fails(cut, drop)
            if f is not None:
                trace, best = cut, f
            else:
                i += chunk
        chunk //= 2
    # 2. fewer definitions: all but what the culprits need, else the other nodes, then one
    #    at a time (nodes first).
    models = [m for m, _, _ in trace]
    everything = set().union(*(m.defs for m in models))
    is_node = {n for m in models for n, d in m.defs.items() if d.is_node}
    culprits = set(re.findall(r"\\bn\\d+\\b", " ".join(failure.problems)))
    named = {w.strip(",.:()") for _, st, _ in trace for w in st.what.split()} & everything
    keep = _closure(models, culprits | named)
    for cut in (everything - keep, (everything - keep) & is_node):
        if culprits and cut and time.monotonic() < deadline:
            f = fails(trace, cut)
            if f is not None:
                best, drop = f, set(cut)
                break
    for n in sorted(everything - drop, key=lambda n: (n not in is_node, n), reverse=False):
        if time.monotonic() > deadline:
            break
        rest = everything - drop - {n}
        if n in culprits or n in named or any(n in _needs(m.defs[o]) for m in models for o in rest
                                              if o in m.defs):
            continue
        f = fails(trace, drop | {n})
        if f is not None:
            best, drop = f, drop | {n}
    if best is None:
        return "(no replay in a fresh kernel with fewer steps or definitions shows it)"
    return (f"{len(trace)} steps, {len(everything - drop)} definitions, {attempt[0]} replays\n"
            + best.text())
