"""Issue point 10: values round-trip equal across a restart, and data versions tell apart
values that share bytes but differ in type, dtype, shape or column names."""

import shutil

import pytest

from conftest import calls

HELPERS = '''
import numpy as np
import pandas as pd

def _same(x, y):
    """Equal in value *and* type, dtype, shape, columns and index."""
    if type(x) is not type(y):
        return False
    if isinstance(x, np.ndarray):
        return x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y)
    if isinstance(x, pd.DataFrame):
        return (x.equals(y) and list(x.columns) == list(y.columns)
                and list(x.dtypes) == list(y.dtypes) and x.index.equals(y.index)
                and x.index.name == y.index.name)
    if isinstance(x, dict):
        return list(x) == list(y) and all(_same(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)):
        return len(x) == len(y) and all(_same(a, b) for a, b in zip(x, y))
    return x == y

def _describe(v):
    """A literal description of what a value is."""
    if isinstance(v, np.ndarray):
        return ("ndarray", v.shape, v.dtype.str, v.tobytes().hex())
    if isinstance(v, pd.DataFrame):
        return ("DataFrame", list(v.columns), [str(t) for t in v.dtypes], v.to_numpy().tolist())
    return (type(v).__name__, repr(v))
'''

ROUND_TRIP = '''
def arr_f64():
    _log("arr_f64")
    return np.random.default_rng(1).normal(size=(300, 7))

def arr_fortran_i32():
    _log("arr_fortran_i32")
    return np.asfortranarray(np.arange(60, dtype=np.int32).reshape(6, 10))

def arr_records():
    _log("arr_records")
    return np.array([(1, 2.5), (3, 4.5)], dtype=[("x", "<i4"), ("y", "<f8")])

def arr_empty():
    _log("arr_empty")
    return np.empty((0, 3), dtype=np.float32)

def frame():
    _log("frame")
    return pd.DataFrame(
        {"i": np.arange(5), "f": np.linspace(0.0, 1.0, 5), "s": list("abcde"),
         "c": pd.Categorical(list("xyxyx")), "t": pd.date_range("2024-01-01", periods=5),
         "n": [1.0, None, 3.0, None, 5.0]},
        index=pd.Index([10, 20, 30, 40, 50], name="k"))

def nested():
    _log("nested")
    return {"list": [1, (2, 3), {"deep": None}], "set": {1, 2, 3}, "bytes": b"\\x00\\xff",
            "arr": np.arange(4, dtype=np.uint8), "df": pd.DataFrame({"x": [1.5]}),
            1.5: "float key", (1, "t"): "tuple key", "text": "\\u00fcn\\u00efc\\u00f6de"}
'''
RT_NAMES = ["arr_f64", "arr_fortran_i32", "arr_records", "arr_empty", "frame", "nested"]


def test_values_round_trip_across_restart(kernel):
    kernel.ok(HELPERS, cell_id="helpers")
    kernel.ok(ROUND_TRIP, cell_id="nodes")
    kernel.cellar_run(" ".join(RT_NAMES)).ok()
    assert kernel.take_calls() == calls(*RT_NAMES)
    kernel.restart()
    kernel.setup()
    kernel.ok(HELPERS, cell_id="helpers")
    kernel.ok(ROUND_TRIP, cell_id="nodes")
    res = kernel.cellar_run(" ".join(RT_NAMES)).ok()
    assert kernel.take_calls() == calls(), "everything must load"
    assert res.report.with_status("loaded") == set(RT_NAMES)
    same = kernel.eval("{n: _same(_v[n], globals()[n]()) for n in %r}" % RT_NAMES)
    kernel.take_calls()  # calling the functions directly above logged them
    assert same == {n: True for n in RT_NAMES}


SHARED_BYTES = '''
def shape_23():
    _log("shape_23")
    return np.arange(6, dtype=np.int64).reshape(2, 3)

def shape_6():
    _log("shape_6")
    return np.arange(6, dtype=np.int64) + 0

def as_float():
    _log("as_float")
    return (np.arange(6, dtype=np.int64) + 0).view(np.float64)

def str_one():
    _log("str_one")
    return "1"

def int_one():
    _log("int_one")
    return 1

def df_ab():
    _log("df_ab")
    return pd.DataFrame({"a": [1, 2], "b": [3, 4]})

def df_xy():
    _log("df_xy")
    return pd.DataFrame({"x": [1, 2], "y": [3, 4]})
'''
SB_NAMES = ["shape_23", "shape_6", "as_float", "str_one", "int_one", "df_ab", "df_xy"]


def test_nodes_sharing_bytes_get_their_own_values_back(kernel):
    kernel.ok(HELPERS, cell_id="helpers")
    kernel.ok(SHARED_BYTES, cell_id="nodes")
    kernel.cellar_run(" ".join(SB_NAMES)).ok()
    expected = kernel.eval("{n: _describe(_v[n]) for n in %r}" % SB_NAMES)
    assert kernel.take_calls() == calls(*SB_NAMES)
    assert expected["shape_23"][1] == (2, 3) and expected["shape_6"][1] == (6,)
    assert expected["as_float"][2] == "<f8" and expected["str_one"] == ("str", "'1'")
    kernel.restart()
    kernel.setup()
    kernel.ok(HELPERS, cell_id="helpers")
    kernel.ok(SHARED_BYTES, cell_id="nodes")
    # One at a time, in reverse order, then all together.
    for name in reversed(SB_NAMES):
        kernel.cellar_run(name).ok()
        assert kernel.eval("_describe(_v)") == expected[name], name
    assert kernel.take_calls() == calls(), "everything must load"
    kernel.cellar_run(" ".join(SB_NAMES)).ok()
    assert kernel.eval("{n: _describe(_v[n]) for n in %r}" % SB_NAMES) == expected


def test_inputs_sharing_bytes_have_distinct_data_versions(kernel):
    """A downstream key built from a colliding data version would return the wrong result."""
    kernel.ok(HELPERS, cell_id="helpers")
    kernel.ok('''
        def kind(x):
            _log("kind")
            return _describe(x)
        ''', cell_id="kind")
    values = {
        "shape_23": "np.arange(6, dtype=np.int64).reshape(2, 3)",
        "shape_6": "np.arange(6, dtype=np.int64)",
        "as_float": "np.arange(6, dtype=np.int64).view(np.float64)",
        "str_one": "'1'",
        "int_one": "1",
        "float_one": "1.0",
        "bool_true": "True",
        "df_ab": "pd.DataFrame({'a': [1, 2], 'b': [3, 4]})",
        "df_xy": "pd.DataFrame({'x': [1, 2], 'y': [3, 4]})",
        "df_ab_f": "pd.DataFrame({'a': [1.0, 2.0], 'b': [3.0, 4.0]})",
    }
    kernel.ok("import cellar")
    expected = {}
    for name, expr in values.items():
        kernel.ok(f"_v = cellar.run('kind', x={expr})")
        expected[name] = kernel.eval(f"_describe({expr})")
        assert kernel.eval("_v") == expected[name], f"{name}: got another value's result"
    assert kernel.take_calls() == calls(*["kind"] * len(values)), "each value is its own key"
    kernel.restart()
    kernel.setup()
    kernel.ok(HELPERS, cell_id="helpers")
    kernel.ok('''
        def kind(x):
            _log("kind")
            return _describe(x)
        ''', cell_id="kind")
    kernel.ok("import cellar")
    for name, expr in reversed(list(values.items())):
        kernel.ok(f"_v = cellar.run('kind', x={expr})")
        assert kernel.eval("_v") == expected[name], name
    assert kernel.take_calls() == calls()


@pytest.mark.large
def test_one_gib_array_round_trips(kernel):
    n = 2 ** 27  # 1 GiB of float64
    kernel.ok("import numpy as np", cell_id="np")
    kernel.ok(f'''
        def big():
            _log("big")
            a = np.arange({n}, dtype=np.float64)
            a[::4096] *= -1.5
            return a
        ''', cell_id="big")
    try:
        kernel.ok("_v = %cellar run big\n_v = None", timeout=300)
        assert kernel.take_calls() == calls("big")
        kernel.restart()
        kernel.setup()
        kernel.ok("import numpy as np", cell_id="np")
        kernel.ok(f'''
            def big():
                _log("big")
                a = np.arange({n}, dtype=np.float64)
                a[::4096] *= -1.5
                return a
            ''', cell_id="big")
        res = kernel.run("_v = %cellar run big", timeout=300).ok()
        assert kernel.take_calls() == calls(), "the 1 GiB result must load"
        assert res.report.status("big") == "loaded"
        ok = kernel.eval(f"""(_v.dtype.str, _v.shape, bool(_v[0] == 0.0), bool(_v[4096] == -6144.0),
                               bool(_v[-1] == {n - 1}.0), bool(np.array_equal(_v, big())))""")
        assert ok == ("<f8", (n,), True, True, True, True)
    finally:
        kernel.stop()
        shutil.rmtree(kernel.store, ignore_errors=True)
