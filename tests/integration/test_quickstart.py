"""The quickstart notebook, executed by nbclient twice (the second time in a new kernel, as
after a restart): the second execution loads every result and computes nothing.

It runs as after the README's install, `pip install "cellar[notebook]"`: the kernel may import
only the distributions that cellar and its `notebook` extra require (recursively, from the
installed metadata), so a hidden dependency such as a parquet engine, present in the test
environment but not declared, fails the test with an ImportError.
"""

import importlib.metadata as md
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import nbformat
import pytest
from packaging.requirements import Requirement

TESTS = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("cellar_demo", TESTS / "demo.py")
demo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(demo)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_distributions(dist: str = "cellar", extras: tuple[str, ...] = ("notebook",)) -> set[str]:
    """The installed distributions that `dist[extras]` requires, recursively."""
    seen: set[str] = set()
    todo = [(dist, set(extras))]
    while todo:
        name, want = todo.pop()
        if _norm(name) in seen:
            continue
        seen.add(_norm(name))
        try:
            reqs = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for text in reqs:
            req = Requirement(text)
            envs = [{"extra": e} for e in want] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in envs):
                todo.append((req.name, set(req.extras)))
    return seen


def undeclared_modules() -> list[str]:
    """Top-level modules of installed distributions that cellar[notebook] does not require."""
    allowed = declared_distributions()
    return sorted(top for top, dists in md.packages_distributions().items()
                  if not any(_norm(d) in allowed for d in dists) and top.isidentifier())


@pytest.fixture
def declared_only(tmp_path, monkeypatch):
    """PYTHONPATH with a sitecustomize that makes undeclared modules unimportable."""
    site = tmp_path / "declared-only"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(f"""\
        import sys
        BLOCKED = frozenset({undeclared_modules()!r})
        class _Undeclared:
            @staticmethod
            def find_spec(name, path=None, target=None):
                if name.partition(".")[0] in BLOCKED:
                    raise ModuleNotFoundError(
                        f"No module named {{name!r}} (not required by cellar[notebook])",
                        name=name)
                return None
        sys.meta_path.insert(0, _Undeclared)
        """))
    old = [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), *old]))
    return site


def test_undeclared_modules_cannot_be_imported(declared_only):
    """The restriction itself: a test dependency that the notebook extra does not declare
    (pytest) is blocked, a declared one (pandas, through the extra) imports."""
    env = dict(os.environ)
    probe = "import pandas, numpy, cellar\ntry:\n    import pytest\nexcept ImportError:\n    print('blocked')\n"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "blocked"
    assert "pyarrow" in undeclared_modules() or not md.packages_distributions().get("pyarrow")


def cell_outputs(nb, marker):
    """(stdout text, execute_result text, cellar reports) of the code cell containing marker."""
    cells = [c for c in nb.cells if c.cell_type == "code" and marker in c.source]
    assert len(cells) == 1, marker
    stdout, result, reps = "", "", []
    for out in cells[0].outputs:
        if out.output_type == "stream" and out.name == "stdout":
            stdout += out.text
        elif out.output_type == "execute_result":
            result = out.data.get("text/plain", "")
        elif out.output_type == "display_data" and out.data.get("text/plain", "").startswith("cellar run:"):
            reps.append(out.data["text/plain"])
            assert "text/html" in out.data, "in a notebook the report is HTML too"
    return stdout, result, reps


def computing(stdout):
    return Counter(re.findall(r"^computing (\w+)$", stdout, re.M))


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(demo.NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert sum(c.cell_type == "markdown" for c in nb.cells) >= 5


def test_quickstart_twice_second_run_computes_nothing(tmp_path, declared_only):
    shutil.copy(demo.NOTEBOOK, tmp_path / demo.NOTEBOOK.name)

    nb1, _ = demo.execute(tmp_path)
    ran1 = Counter(demo.take_calls(tmp_path))
    assert ran1 == Counter({"raw_data": 1, "cleaned_data": 2, "statistics": 2, "predictor": 2}), ran1
    out, _, reps = cell_outputs(nb1, "stats = %cellar run statistics")
    assert computing(out) == Counter(["raw_data", "cleaned_data", "statistics"])
    assert demo.statuses(reps[0]) .get("statistics") == "computed"
    out, _, reps = cell_outputs(nb1, "model = %cellar run predictor")
    assert computing(out) == Counter(["predictor"]), "adding a node computes only it"
    assert demo.statuses(reps[0]).get("predictor") == "computed"
    out, _, reps = cell_outputs(nb1, "results = %cellar run statistics predictor")
    assert computing(out) == Counter(["cleaned_data", "statistics", "predictor"]), \
        "editing cleaned_data reruns it and its downstream, not raw_data"
    assert (tmp_path / ".cellar" / "data.mdb").exists(), "the store lives beside the notebook"

    nb2, _ = demo.execute(tmp_path)
    ran2 = demo.take_calls(tmp_path)
    assert ran2 == [], f"second run computed {ran2}"
    reps2 = demo.reports(nb2)
    assert len(reps2) == len(demo.reports(nb1)) == 3
    assert demo.problems_of_second_run(reps2, ran2) == []
    for marker, targets in (("stats = %cellar run statistics", ["statistics"]),
                            ("model = %cellar run predictor", ["predictor"]),
                            ("results = %cellar run statistics predictor", ["statistics", "predictor"])):
        out, result2, reps = cell_outputs(nb2, marker)
        assert computing(out) == Counter()
        for t in targets:
            assert demo.statuses(reps[0]).get(t) == "loaded", reps[0]
        assert result2 == cell_outputs(nb1, marker)[1], "same results as the first run"
    load_out = cell_outputs(nb2, "%load_ext cellar")[0]
    assert "cellar: store " + str(tmp_path / ".cellar") in load_out
    assert not re.search(r"\b0 results?\b", load_out), load_out
