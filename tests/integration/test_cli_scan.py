"""`cellar scan FILE|-`, driven as a real process: what it reports of a cell's source
(functions, their parameters and code versions, IPython lines), its errors, output that cannot
be written, and input beyond its limit. The store commands are in test_cli.py, whose `cellar`
helper this file shares.
"""

from __future__ import annotations

import json
import subprocess
import textwrap

from test_cli import CELLAR, HEX32, cellar

# ---- scan -----------------------------------------------------------------------------------

SCAN_SRC = textwrap.dedent(
    '''\
    import os

    @decorate
    @other(1)
    def first(a, b=2, *args, c, d=4, **kw):
        """Doc."""
        return a + b

    async def second(x, /, y):
        await x
        return y

    class C:
        def method(self):
            pass

    def _private():
        pass
    '''
)


def test_scan_file_and_stdin(tmp_path):
    path = tmp_path / "cell.py"
    path.write_text(SCAN_SRC)
    proc = cellar("scan", path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) == {"functions", "errors"} and doc["errors"] == []
    fns = doc["functions"]
    assert [f["name"] for f in fns] == ["first", "second", "_private"]
    for f in fns:
        assert set(f) == {"name", "async", "line", "end_line", "decorators", "code_version",
                          "params"}
        assert HEX32.match(f["code_version"])
        for p in f["params"]:
            assert set(p) == {"name", "kind", "default"}
    first, second = fns[0], fns[1]
    # line is the `def` line, as in ast (decorators above it are counted, not spanned).
    assert (first["async"], first["line"], first["end_line"], first["decorators"]) == \
        (False, 5, 7, 2)
    assert [(p["name"], p["kind"], p["default"]) for p in first["params"]] == [
        ("a", "positional_or_keyword", False), ("b", "positional_or_keyword", True),
        ("args", "var_positional", False), ("c", "keyword_only", False),
        ("d", "keyword_only", True), ("kw", "var_keyword", False)]
    assert (second["async"], second["line"], second["end_line"], second["decorators"]) == \
        (True, 9, 11, 0)
    assert [(p["name"], p["kind"]) for p in second["params"]] == [
        ("x", "positional_only"), ("y", "positional_or_keyword")]

    stdin = cellar("scan", "-", input=SCAN_SRC.encode())
    assert stdin.returncode == 0 and stdin.stderr == b""
    assert json.loads(stdin.stdout) == doc


def test_scan_errors_and_ipython_lines(tmp_path):
    # An unclosed bracket: exit 1, the JSON still printed with the error's position.
    proc = cellar("scan", "-", input=b"def ok():\n    return 1\n\nx = (1,\n")
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert [f["name"] for f in doc["functions"]] == ["ok"]
    assert doc["errors"] and {"line", "col", "message"} <= set(doc["errors"][0])
    # IPython syntax is not an error.
    cell = b"%load_ext cellar\n!ls\nx = %time 1\ndef f(a):\n    return a\n"
    proc = cellar("scan", "-", input=cell)
    assert proc.returncode == 0, proc.stdout
    assert [f["name"] for f in json.loads(proc.stdout)["functions"]] == ["f"]
    # A file that cannot be read is a usage-level failure (2), with the reason.
    proc = cellar("scan", tmp_path / "missing.py")
    assert proc.returncode == 2 and "missing.py" in proc.stderr and proc.stdout == ""


def code_version(src: str) -> str:
    proc = cellar("scan", "-", input=src.encode())
    assert proc.returncode == 0, proc.stdout
    fns = json.loads(proc.stdout)["functions"]
    assert len(fns) == 1
    return fns[0]["code_version"]


def test_scan_code_version_stability():
    base = code_version("def f(a, b=1):\n    x = a + b\n    return x * 2\n")
    same = [
        # whitespace, blank lines, comments, docstring
        "def f(a,b=1):\n    x=a+b\n\n    return x*2\n",
        "def f(a, b=1):  # comment\n    # another\n    x = a + b\n    return x * 2  # end\n",
        'def f(a, b=1):\n    """A docstring."""\n    x = a + b\n    return x * 2\n',
        "def f(a,\n      b=1):\n    x = a + \\\n        b\n    return x * 2\n",
        "\n\n# leading comment\ndef f(a, b=1):\n  x = a + b\n  return x * 2\n",
    ]
    for src in same:
        assert code_version(src) == base, src
    different = [
        "def f(a, b=2):\n    x = a + b\n    return x * 2\n",  # default value
        "def f(a, b=1):\n    x = a - b\n    return x * 2\n",  # operator
        "def f(a, c=1):\n    x = a + c\n    return x * 2\n",  # name
        "def f(a, b=1):\n    x = a + b\n    return x * 3\n",  # constant
        "def f(a, b=1):\n    x = a + b\n    return 'x' * 2\n",  # a string that is not a docstring
        "def f(a, b=1,):\n    x = a + b\n    return x * 2\n",  # a trailing comma is a token
        "def f(a, b=1):\n    x = (a + b)\n    return x * 2\n",  # so are parentheses
    ]
    versions = {code_version(src) for src in different}
    assert base not in versions and len(versions) == len(different)


def test_scan_write_error_is_not_a_clean_scan(tmp_path):
    path = tmp_path / "cell.py"
    path.write_text(SCAN_SRC)
    with open("/dev/full", "w") as full:
        proc = subprocess.run([CELLAR, "scan", str(path)], stdout=full, stderr=subprocess.PIPE,
                              text=True, timeout=60)
    assert proc.returncode == 2 and "cannot write" in proc.stderr, (proc.returncode,
                                                                   proc.stderr)


def test_scan_refuses_input_beyond_its_limit(tmp_path):
    cell = "def f(a, b=1):\n    return (a + b) * 2\n\n"
    big = tmp_path / "big.py"
    big.write_text(cell * (50_000_000 // len(cell)))  # 50 MB
    assert big.stat().st_size > 49_000_000
    for proc in (cellar("scan", big), cellar("scan", "-", input=big.read_bytes())):
        err = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode()
        assert proc.returncode == 2, (proc.returncode, err)
        assert "larger than 16.0 MiB" in err, err
        assert not proc.stdout
    # One byte over the limit is refused; the same source under it is scanned.
    over = tmp_path / "over.py"
    over.write_bytes(b"#" * (16 * 1024 * 1024 + 1))
    assert cellar("scan", over).returncode == 2
    small = tmp_path / "small.py"
    small.write_text(cell * 1000)
    proc = cellar("scan", small)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["functions"]) == 1000


