"""The quickstart notebook, executed by nbclient twice (the second time in a new kernel, as
after a restart): the second execution loads every result and computes nothing."""

import importlib.util
import re
import shutil
from collections import Counter
from pathlib import Path

import nbformat

TESTS = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("cellar_demo", TESTS / "demo.py")
demo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(demo)


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


def test_quickstart_twice_second_run_computes_nothing(tmp_path):
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
