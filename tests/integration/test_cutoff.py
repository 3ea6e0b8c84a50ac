"""Issue point 8: early cutoff. A recomputed node whose value is unchanged leaves its
downstream cached, in the session and across a restart."""

from conftest import calls

NODES = '''
def raw(n):
    _log("raw")
    return list(range(n))

def parity(raw):
    _log("parity")
    return len(raw) % 2

def label(parity):
    _log("label")
    return "odd" if parity else "even"
'''

NORM = '''
def norm(raw):
    _log("norm")
    return sorted(raw)
'''
REPORT = '''
def summary(norm):
    _log("summary")
    return {"first": norm[0], "n": len(norm)}
'''


def test_input_change_with_unchanged_value_cuts_off(kernel):
    kernel.ok(NODES, cell_id="nodes")
    kernel.cellar_run("label --input n=2").ok()
    assert kernel.eval("_v") == "even"
    assert kernel.take_calls() == calls("raw", "parity", "label")
    res = kernel.cellar_run("label --input n=4").ok()
    assert kernel.eval("_v") == "even"
    assert kernel.take_calls() == calls("raw", "parity"), \
        "parity recomputed to the same value: label must not rerun"
    assert res.report.status("parity") == "computed"
    assert res.report.status("label") != "computed"
    kernel.cellar_run("label --input n=5").ok()
    assert kernel.eval("_v") == "odd"
    assert kernel.take_calls() == calls("raw", "parity", "label")


def test_code_edit_with_unchanged_value_cuts_off(kernel):
    kernel.ok(NODES, cell_id="nodes")
    kernel.ok(NORM, cell_id="norm")
    kernel.ok(REPORT, cell_id="report")
    kernel.cellar_run("summary --input n=6").ok()
    assert kernel.take_calls() == calls("raw", "norm", "summary")
    kernel.ok('''
        def norm(raw):
            _log("norm")
            return list(sorted(set(raw)))
        ''', cell_id="norm")
    kernel.cellar_run("summary --input n=6").ok()
    assert kernel.eval("_v") == {"first": 0, "n": 6}
    assert kernel.take_calls() == calls("norm"), "norm's new code gives the same list: summary stays cached"

    # After a restart: the edited norm's result is stored, summary's key is unchanged.
    kernel.restart()
    kernel.setup()
    kernel.ok(NODES, cell_id="nodes")
    kernel.ok('''
        def norm(raw):
            _log("norm")
            return list(sorted(set(raw)))
        ''', cell_id="norm")
    kernel.ok(REPORT, cell_id="report")
    res = kernel.cellar_run("summary --input n=6").ok()
    assert kernel.eval("_v") == {"first": 0, "n": 6}
    assert kernel.take_calls() == calls()
    assert res.report.status("summary") == "loaded"


def test_cutoff_after_restart_with_new_code(kernel):
    kernel.ok(NODES, cell_id="nodes")
    kernel.ok(NORM, cell_id="norm")
    kernel.ok(REPORT, cell_id="report")
    kernel.cellar_run("summary --input n=3").ok()
    kernel.take_calls()
    kernel.restart()
    kernel.setup()
    kernel.ok(NODES, cell_id="nodes")
    kernel.ok(NORM.replace("return sorted(raw)", "return sorted(raw, key=int)"), cell_id="norm")
    kernel.ok(REPORT, cell_id="report")
    kernel.cellar_run("summary --input n=3").ok()
    assert kernel.eval("_v") == {"first": 0, "n": 3}
    assert kernel.take_calls() == calls("norm"), "raw loads for norm; summary loads, not recomputes"
