"""Issue 12, reactive mode: with `%cellar auto on`, a cell that changes what the last
run's targets depend on (a node, a helper, a global) reruns them at its end, and the
report is among that cell's outputs; a cell that changes nothing relevant runs nothing."""

from conftest import calls, strip_ansi

A = '''
def a():
    _log("a")
    return 2
'''
B = '''
def b(a):
    _log("b")
    return a * 10
'''
B_EDITED = '''
def b(a):
    _log("b")
    return a * 100
'''
C = '''
def c(b):
    _log("c")
    return _scale(b) + 1
'''
HELPER = '''
def _scale(v):
    return v * SCALE
'''


def define(kernel):
    kernel.ok("import cellar\nSCALE = 1", cell_id="scale")
    kernel.ok(HELPER, cell_id="helper2")
    kernel.ok(A, cell_id="a")
    kernel.ok(B, cell_id="b")
    kernel.ok(C, cell_id="c")


def no_run(res):
    assert res.reports == [], res.describe()
    assert "cellar auto" not in res.stdout, res.describe()


def test_edits_rerun_the_targets_and_unrelated_cells_do_not(kernel):
    define(kernel)
    assert "off" in kernel.ok("%cellar auto").stdout, "off by default"
    no_run(kernel.ok(B_EDITED, cell_id="b"))
    kernel.ok(B, cell_id="b")
    kernel.ok("%cellar auto on")
    kernel.cellar_run("c").ok()
    assert kernel.eval("_v") == 21
    assert kernel.take_calls() == calls("a", "b", "c")
    assert "on; c reruns" in kernel.ok("%cellar auto").stdout

    # Editing a node's cell: b and c rerun at the end of that cell, a is kept.
    res = kernel.ok(B_EDITED, cell_id="b")
    assert kernel.take_calls() == calls("b", "c")
    rep = res.report
    assert rep.status("b") == "computed" and rep.status("c") == "computed"
    assert rep.status("a") == "in memory"
    assert "cellar auto: b changed; running c" in res.stdout, res.describe()
    assert kernel.eval("cellar.results.c") == kernel.eval("_scale(b(a())) + 1") == 201
    kernel.take_calls()

    # A cell that changes nothing the targets depend on runs nothing.
    no_run(kernel.ok("x_unrelated = 5"))
    no_run(kernel.ok("def other(a):\n    return a", cell_id="other"))
    no_run(kernel.ok("SCALE = 1  # same value, new object", cell_id="scale"))
    assert kernel.take_calls() == calls()

    # A global read by a helper of c: only c reruns.
    res = kernel.ok("SCALE = 3", cell_id="scale")
    assert kernel.take_calls() == calls("c")
    assert "cellar auto: c changed; running c" in res.stdout, res.describe()
    assert res.report.status("c") == "computed"
    assert kernel.eval("cellar.results.c") == 601

    # A cell that runs itself: one run, not a second one at its end.
    res = kernel.ok(B.replace("* 10", "* 1000") + "\n_w = %cellar run c\n", cell_id="b")
    assert kernel.take_calls() == calls("b", "c")
    assert len(res.reports) == 1, res.describe()
    no_run(kernel.ok("x_unrelated = 6"))
    # cellar.run counts too, and its targets become the ones watched.
    res = kernel.ok("_w = cellar.run('b')")
    assert len(res.reports) == 1 and kernel.take_calls() == calls()
    # The module's GC traversal reaches what reactive mode keeps (the targets' list).
    assert kernel.eval("any(r == ['b'] for r in __import__('gc').get_referents(cellar))")
    res = kernel.ok(A.replace("return 2", "return 3"), cell_id="a")
    assert kernel.take_calls() == calls("a", "b"), "b is the target now, c is not"
    assert kernel.eval("cellar.results.b") == 3000

    # Off: edits rerun nothing.
    kernel.ok("%cellar auto off")
    no_run(kernel.ok(A, cell_id="a"))
    no_run(kernel.ok("SCALE = 5", cell_id="scale"))
    assert kernel.take_calls() == calls()


def test_a_failing_rerun_is_shown_and_the_kernel_goes_on(kernel):
    define(kernel)
    kernel.ok("%cellar auto on")
    kernel.cellar_run("c").ok()
    kernel.take_calls()

    bad = B.replace('_log("b")', '_log("b")\n    raise ValueError("boom-912 in b")')
    res = kernel.run(bad, cell_id="b")
    assert res.status == "ok", "the cell itself succeeded: " + res.describe()
    assert kernel.take_calls() == calls("b")
    rep = res.report
    assert rep.status("b") == "failed" and rep.status("c") == "skipped"
    names = [e["ename"] for e in res.errors]
    assert names == ["ValueError", "RunError"], res.describe()
    assert "boom-912 in b" in res.error_text

    # The kernel goes on; the failure is not retried by cells that change nothing.
    no_run(kernel.ok("x_unrelated = 5"))
    assert kernel.eval("1 + 1") == 2
    # A cell that fails runs nothing either, even after an edit.
    res = kernel.run(B_EDITED + "\nraise KeyError('cell-fails')\n", cell_id="b")
    assert res.status == "error" and res.reports == [], res.describe()
    assert kernel.take_calls() == calls()
    # The next cell sees the fixed b and reruns.
    res = kernel.ok("x_unrelated = 7")
    assert kernel.take_calls() == calls("b", "c")
    assert res.report.status("c") == "computed"
    assert kernel.eval("cellar.results.c") == 201
    assert "Error" not in strip_ansi(res.stderr), res.describe()

    # A graph that cannot be planned (a cycle, even among other nodes) warns once and
    # reruns nothing; the change made meanwhile still counts once it can be planned.
    res = kernel.ok("def p(q):\n    return q\n\ndef q(p):\n    return p\n", cell_id="cycle")
    assert len(res.warnings) == 1 and "could not check" in res.warnings[0], res.describe()
    res = kernel.ok(A.replace("return 2", "return 4"), cell_id="a")
    assert res.warnings == [] and res.reports == [], res.describe()
    res = kernel.ok("pass", cell_id="cycle")
    assert kernel.take_calls() == calls("a", "b", "c")
    assert res.report.status("c") == "computed"
    assert kernel.eval("cellar.results.c") == 401


def test_a_rerun_keeps_the_runs_inputs(kernel):
    kernel.ok("import cellar")
    kernel.ok('def p(n, k=1):\n    _log("p")\n    return n * k\n', cell_id="p")
    kernel.ok("%cellar auto on")
    kernel.cellar_run("p --input n=7").ok()
    assert kernel.eval("_v") == 7 and kernel.take_calls() == calls("p")
    res = kernel.ok('def p(n, k=1):\n    _log("p")\n    return n * k + 1\n', cell_id="p")
    assert kernel.take_calls() == calls("p") and res.report.status("p") == "computed"
    assert kernel.eval("cellar.results(n=7).p") == 8, "n=7 from --input, not missing"
    no_run(kernel.ok("n = 100"))  # a global n is not used: --input n=7 is
    res = kernel.ok("k = 2")  # the default k is overridden by a global k
    assert kernel.take_calls() == calls("p")
    assert kernel.eval("cellar.results(n=7).p") == 15


OPTION_NODES = '''
import time

def a():
    _log("a")
    return 2

def client():
    _log("client")
    return [time.time_ns()]  # a new value each time it runs

def stamp(a):
    _log("stamp")
    return a + 1

def b(a, client):
    _log("b")
    return a * 10

def c(b, stamp):
    _log("c")
    return _scale(b) + stamp
'''


def test_a_rerun_keeps_the_runs_behaviour_options(kernel):
    """The rerun repeats --recompute, --disable and --ignore, and sees a change below a
    disabled or ignored node."""
    kernel.ok("import cellar\nSCALE = 1", cell_id="scale")
    kernel.ok(HELPER, cell_id="helper2")
    kernel.ok(OPTION_NODES, cell_id="nodes")
    kernel.ok("%cellar auto on")
    kernel.cellar_run("c --recompute a --disable stamp --ignore client").ok()
    assert kernel.eval("_v") == 23
    assert kernel.take_calls() == calls("a", "client", "stamp", "b", "c")
    assert "on; c --recompute a --disable stamp --ignore client reruns" in \
        kernel.ok("%cellar auto").stdout

    # Nothing the targets depend on changed: no rerun, although a is recompute,
    # stamp disabled and client a new value at each run.
    no_run(kernel.ok("x_unrelated = 5"))
    assert kernel.take_calls() == calls()

    # A global read by c (below the disabled stamp and the ignored client): c reruns,
    # a is recomputed (--recompute), stamp computed again (--disable); b keeps its
    # value (a is equal, client is not in its key), so client is not needed.
    res = kernel.ok("SCALE = 3", cell_id="scale")
    assert kernel.take_calls() == calls("a", "stamp", "c"), res.describe()
    assert "running c --recompute a --disable stamp --ignore client" in res.stdout, \
        res.describe()
    rep = res.report
    assert rep.status("b") == "in memory" and rep.status("client") == "skipped", rep.text
    no_run(kernel.ok("x_unrelated = 6"))
    assert kernel.take_calls() == calls()

    # An edit of c itself (below both) reruns it, with the same options.
    res = kernel.ok(OPTION_NODES.replace("+ stamp", "+ stamp * 2"), cell_id="nodes")
    assert kernel.take_calls() == calls("a", "stamp", "c"), res.describe()
    assert res.report.status("c") == "computed"
    # An edit of b, below the ignored client: b reruns, and client with it.
    res = kernel.ok(OPTION_NODES.replace("+ stamp", "+ stamp * 2").replace(
        "a * 10", "a * 100"), cell_id="nodes")
    assert kernel.take_calls() == calls("a", "client", "stamp", "b", "c"), res.describe()
    assert kernel.eval("_v") == 23, "the rerun does not rebind _v"

    # A run without options: its reruns have none either.
    kernel.cellar_run("c").ok()
    kernel.take_calls()
    assert "--" not in kernel.ok("%cellar auto").stdout
    res = kernel.ok("SCALE = 4", cell_id="scale")
    assert kernel.take_calls() == calls("c"), res.describe()
    assert "running c\n" in res.stdout, res.describe()


def test_a_change_below_a_node_marked_disable_reruns(kernel):
    kernel.ok("import cellar\nSCALE = 1", cell_id="scale")
    kernel.ok(HELPER, cell_id="helper2")
    kernel.ok(A, cell_id="a")
    kernel.ok('@cellar.node(behavior="disable")\ndef b(a):\n    _log("b")\n    return a * 10\n',
              cell_id="b")
    kernel.ok(C, cell_id="c")
    kernel.ok("%cellar auto on")
    kernel.cellar_run("c").ok()
    assert kernel.take_calls() == calls("a", "b", "c")
    no_run(kernel.ok("x_unrelated = 5"))
    res = kernel.ok("SCALE = 2", cell_id="scale")
    assert kernel.take_calls() == calls("b", "c"), res.describe()
    assert res.report.status("c") == "computed"


def test_a_strided_array_input_is_cheap_and_its_mutations_still_rerun(kernel):
    """A non-contiguous numpy input (a strided view) is fingerprinted through a
    contiguous copy: the same version as any equal array, and a change made through
    any alias of its base reruns the targets."""
    kernel.ok("""
        import numpy as np, cellar
        BASE = np.arange(40, dtype=np.int64).reshape(4, 10)
        VIEW = BASE[:, ::3]          # neither C- nor Fortran-contiguous
        ALIAS = BASE.reshape(-1)     # the same memory under another name
        assert not VIEW.flags.forc
        assert cellar.data_version(VIEW) == cellar.data_version(np.ascontiguousarray(VIEW))
        assert cellar.data_version(VIEW) != cellar.data_version(BASE[:, ::2])
        """, cell_id="data")
    kernel.ok('def total(VIEW):\n    _log("total")\n    return int(VIEW.sum())\n', cell_id="n")
    kernel.ok("%cellar auto on")
    kernel.cellar_run("total").ok()
    first = kernel.eval("_v")
    assert kernel.take_calls() == calls("total")
    no_run(kernel.ok("x_unrelated = 1"))
    no_run(kernel.ok("ALIAS[1] = 1  # the same value: no change"))  # BASE[0, 1] is 1
    assert kernel.take_calls() == calls()
    res = kernel.ok("ALIAS[3] = 1000  # BASE[0, 3], inside VIEW, through an alias")
    assert kernel.take_calls() == calls("total"), res.describe()
    assert kernel.eval("cellar.results.total") == first - 3 + 1000
    no_run(kernel.ok("ALIAS[4] = 5000  # BASE[0, 4], not in VIEW"))
    assert kernel.take_calls() == calls()


STRIDED_NODES = """
    import numpy as np
    def strided():
        _log("strided")
        return np.arange(3_000_000, dtype=np.float64).reshape(1000, 3000)[:, ::2]
    def shape(strided):
        _log("shape")
        return strided.shape
    """


def test_a_strided_array_result_is_stored_and_loads_equal(kernel):
    kernel.ok(STRIDED_NODES, cell_id="n")
    kernel.cellar_run("shape strided").ok()
    assert kernel.take_calls() == calls("strided", "shape")
    kernel.restart()
    kernel.setup()
    kernel.ok("import numpy as np", cell_id="np")
    kernel.ok(STRIDED_NODES, cell_id="n")
    res = kernel.cellar_run("shape strided").ok()
    assert kernel.take_calls() == calls(), res.describe()
    assert res.report.status("strided") == "loaded"
    assert kernel.eval("bool((_v['strided'] == np.arange(3_000_000.0).reshape(1000, 3000)"
                       "[:, ::2]).all()) and _v['shape'] == (1000, 1500)") is True


def test_the_check_fingerprints_only_what_the_targets_read(kernel):
    """After each cell only the targets and their ancestors are keyed: the input of a
    node the targets do not need is not fingerprinted (its pickling has a side effect
    that would show), while one the targets read still is, and still reruns them."""
    kernel.ok("""
        class Probe:
            def __init__(self, tag):
                self.tag = tag
            def __reduce__(self):
                _log("pickled " + self.tag)
                return (Probe, (self.tag,))
        NEEDED = Probe("needed")
        UNNEEDED = Probe("unneeded")
        """, cell_id="probe")
    kernel.ok('def uses(NEEDED):\n    _log("uses")\n    return NEEDED.tag\n\n'
              'def other(UNNEEDED):\n    _log("other")\n    return 1\n', cell_id="n")
    kernel.ok("%cellar auto on")
    kernel.cellar_run("uses").ok()
    kernel.take_calls()
    no_run(kernel.ok("x_unrelated = 1"))
    seen = kernel.take_calls()
    assert seen["pickled needed"] >= 1, seen
    assert seen["pickled unneeded"] == 0, seen
    res = kernel.ok('NEEDED = Probe("needed-2")')
    seen = kernel.take_calls()
    assert seen["uses"] == 1 and seen["pickled unneeded"] == 0, (seen, res.describe())
