"""Issue point 2: input resolution order, literal parsing, missing inputs, inputs in the key."""

from conftest import calls

PICK = """
def pick(n=1):
    _log("pick")
    return n
"""


def test_input_precedence_run_args_then_globals_then_default(kernel):
    kernel.ok(PICK, cell_id="pick")
    kernel.ok("n = 10")
    kernel.cellar_run("pick --input n=3").ok()
    assert kernel.eval("_v") == 3, "--input beats the global"
    kernel.ok("import cellar\n_v = cellar.run('pick', n=4)")
    assert kernel.eval("_v") == 4, "cellar.run keyword beats the global"
    kernel.cellar_run("pick").ok()
    assert kernel.eval("_v") == 10, "the global beats the default"
    kernel.ok("del n")
    kernel.cellar_run("pick").ok()
    assert kernel.eval("_v") == 1, "the default is the last resort"
    assert kernel.take_calls() == calls("pick", "pick", "pick", "pick"), "four inputs, four keys"


def test_input_values_enter_the_key_by_data_version(kernel):
    kernel.ok(PICK, cell_id="pick")
    kernel.cellar_run("pick --input n=3").ok()
    assert kernel.take_calls() == calls("pick")
    res = kernel.cellar_run("pick --input n=3").ok()
    assert kernel.take_calls() == calls(), "same input value: no recompute"
    assert res.report.status("pick") == "in memory"
    kernel.cellar_run("pick --input n=3.0").ok()
    assert kernel.eval("repr(_v)") == "3.0", "3.0 == 3 but is another value: must not return int 3"
    assert kernel.take_calls() == calls("pick")
    # A global input: a new object with the same value is the same data version.
    kernel.ok("n = [1, 2]")
    kernel.cellar_run("pick").ok()
    assert kernel.take_calls() == calls("pick")
    kernel.ok("n = [1, 2]")
    kernel.cellar_run("pick").ok()
    assert kernel.take_calls() == calls(), "rebinding a global to an equal value reruns nothing"
    kernel.ok("n = [1, 3]")
    kernel.cellar_run("pick").ok()
    assert kernel.eval("_v") == [1, 3]
    assert kernel.take_calls() == calls("pick")


def test_input_flag_parses_literals_else_string(kernel):
    kernel.ok("""
        def kind(x):
            _log("kind")
            return (type(x).__name__, x)
        """, cell_id="kind")
    cases = [
        ("x=3", ("int", 3)),
        ("x=2.5", ("float", 2.5)),
        ("x=data.parquet", ("str", "data.parquet")),
        ("x=[1,2]", ("list", [1, 2])),
        ("x=True", ("bool", True)),
        ("x=None", ("NoneType", None)),
        ("x=hello", ("str", "hello")),
    ]
    for flag, expected in cases:
        kernel.cellar_run(f"kind --input {flag}").ok()
        assert kernel.eval("_v") == expected, flag
    assert kernel.take_calls() == calls(*["kind"] * len(cases))


def test_several_inputs_and_nodes_mixed(kernel):
    kernel.ok("""
        def base(start, step=1):
            _log("base")
            return list(range(start, start + 3 * step, step))
        def total(base, bonus):
            _log("total")
            return sum(base) + bonus
        """, cell_id="defs")
    kernel.ok("bonus = 100")
    kernel.cellar_run("total --input start=1 --input step=2").ok()
    assert kernel.eval("_v") == 1 + 3 + 5 + 100
    assert kernel.take_calls() == calls("base", "total")
    kernel.cellar_run("total --input start=1 --input step=2 --input bonus=0").ok()
    assert kernel.eval("_v") == 9
    assert kernel.take_calls() == calls("total"), "only the node reading the changed input reruns"


def test_missing_input_names_input_and_node(kernel):
    kernel.ok("""
        def raw_data(file_path):
            _log("raw_data")
            return open(file_path).read()
        def cleaned(raw_data):
            _log("cleaned")
            return raw_data.strip()
        """, cell_id="defs")
    res = kernel.cellar_run("cleaned")
    assert res.status == "error", res.describe()
    assert res.error["ename"] == "RunError"
    text = res.error_text
    assert "file_path" in text and "raw_data" in text, text
    assert kernel.take_calls() == calls(), "no body may run when an input is missing"
    (kernel.dir / "in.txt").write_text("  payload \n")
    kernel.cellar_run("cleaned --input file_path=in.txt").ok()
    assert kernel.eval("_v") == "payload"
    assert kernel.take_calls() == calls("raw_data", "cleaned")
