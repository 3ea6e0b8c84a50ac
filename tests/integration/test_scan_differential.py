"""Differential test of the cell scanner against Python's own ast module.

Every .py file of the running interpreter's standard library (test packages
included, site-packages excluded) that ast.parse accepts is scanned with
`cellar scan FILE`, and the top-level functions it reports (name, async flag,
line, end_line, decorator count, parameter names, kinds and defaults) must
equal ast's module-level FunctionDef / AsyncFunctionDef nodes exactly.  A few
hand-written IPython cells are compared against ast after stripping their
IPython lines the way IPython would make them Python.
"""

import ast
import json
import subprocess
import sysconfig
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import cellar_bin

CELLAR = cellar_bin()
pytestmark = pytest.mark.skipif(
    CELLAR is None,
    reason="no cellar binary: set CELLAR_BIN, put cellar on PATH or build build/runtime/cellar")


def scan_path(path):
    proc = subprocess.run([CELLAR, "scan", str(path)], capture_output=True, timeout=60)
    assert proc.returncode in (0, 1), (path, proc.returncode, proc.stderr)
    return json.loads(proc.stdout)


def scan_text(text):
    proc = subprocess.run([CELLAR, "scan", "-"], input=text.encode(), capture_output=True,
                          timeout=60)
    assert proc.returncode in (0, 1), (proc.returncode, proc.stderr)
    return json.loads(proc.stdout)


def ast_functions(tree):
    out = []
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        a = node.args
        params = []
        npos = len(a.posonlyargs) + len(a.args)
        for i, arg in enumerate(a.posonlyargs + a.args):
            kind = "positional_only" if i < len(a.posonlyargs) else "positional_or_keyword"
            params.append((arg.arg, kind, i >= npos - len(a.defaults)))
        if a.vararg:
            params.append((a.vararg.arg, "var_positional", False))
        for arg, default in zip(a.kwonlyargs, a.kw_defaults):
            params.append((arg.arg, "keyword_only", default is not None))
        if a.kwarg:
            params.append((a.kwarg.arg, "var_keyword", False))
        out.append({"name": node.name, "async": isinstance(node, ast.AsyncFunctionDef),
                    "line": node.lineno, "end_line": node.end_lineno,
                    "decorators": len(node.decorator_list), "params": params})
    return out


def scanner_functions(doc):
    return [{"name": f["name"], "async": f["async"], "line": f["line"],
             "end_line": f["end_line"], "decorators": f["decorators"],
             "params": [(p["name"], p["kind"], p["default"]) for p in f["params"]]}
            for f in doc["functions"]]


def stdlib_files():
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        if "site-packages" in path.parts or "dist-packages" in path.parts:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError, OSError):
            continue
        yield path, tree


def compare_file(item):
    path, expected = item
    doc = scan_path(path)
    got = scanner_functions(doc)
    problems = []
    if doc["errors"]:
        problems.append(f"{path}: errors reported for valid source: {doc['errors'][:3]}")
    if got != expected:
        exp_by = {(f["name"], f["line"]): f for f in expected}
        got_by = {(f["name"], f["line"]): f for f in got}
        for key in sorted(set(exp_by) | set(got_by), key=lambda k: k[1]):
            if exp_by.get(key) != got_by.get(key):
                problems.append(f"{path}:{key[1]} {key[0]}: ast={exp_by.get(key)} "
                                f"scanner={got_by.get(key)}")
                break
    return len(expected), problems


def test_stdlib_top_level_functions_match_ast():
    items = [(path, ast_functions(tree)) for path, tree in stdlib_files()]
    assert len(items) > 500, "expected a full standard library"
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(compare_file, items))
    nfuncs = sum(n for n, _ in results)
    mismatches = [p for _, probs in results for p in probs]
    print(f"\ncompared {len(items)} files, {nfuncs} top-level functions, "
          f"{len(mismatches)} mismatching files")
    assert not mismatches, "first mismatches:\n" + "\n".join(mismatches[:20])


# Each cell is (IPython source, the Python that IPython would turn it into as
# far as top-level functions go: IPython lines replaced by `pass`).
IPYTHON_CELLS = [
    ("%matplotlib inline\nimport numpy as np\n\ndef f(a, b=2):\n    return a + b\n",
     "pass\nimport numpy as np\n\ndef f(a, b=2):\n    return a + b\n"),
    ("!pip install \"it's\n!!ls\nx = !ls -l\nfiles = %sx ls\na, b = %who_ls\n"
     "def g(*args, k=1, **kw):\n    %time y = 1\n    return y\n",
     "pass\npass\npass\npass\npass\n"
     "def g(*args, k=1, **kw):\n    pass\n    return y\n"),
    ("np.mean?\n??np\ndef h(x, /, y):\n    return x\nh??\n",
     "pass\npass\ndef h(x, /, y):\n    return x\npass\n"),
    ("%%time\ndef slow(n):\n    return sum(range(n))\n\n@cache\ndef fast(n): return n\n",
     "pass\ndef slow(n):\n    return sum(range(n))\n\n@cache\ndef fast(n): return n\n"),
    ("%%capture out\nasync def fetch(url, *, timeout=10):\n    return url\n",
     "pass\nasync def fetch(url, *, timeout=10):\n    return url\n"),
]


@pytest.mark.parametrize("cell,python", IPYTHON_CELLS)
def test_ipython_cells_match_ast(cell, python):
    doc = scan_text(cell)
    assert doc["errors"] == []
    assert scanner_functions(doc) == ast_functions(ast.parse(python))


@pytest.mark.parametrize("magic", ["%%bash", "%%writefile out.py", "%%html", "%%javascript"])
def test_non_python_cell_magics_report_nothing(magic):
    doc = scan_text(f"{magic}\ndef f(:\n  echo 'unterminated\n")
    assert doc == {"functions": [], "errors": []}
