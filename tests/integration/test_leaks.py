"""No leaks in the Python entry points (issue 9, "the extension's shape").

100,000 calls of each entry point (the `%cellar` magic with arguments, `cellar.run`,
`cellar.data_version`) in one real kernel: after 10,000 warm-up calls, the allocated
memory blocks (sys.getallocatedblocks) and the objects the GC tracks must not grow over
the next 90,000 beyond a small bound, nor what tracemalloc traces over the last 10,000
(tracing all 90,000 slows every allocation several times over and would take minutes).
One leaked object per call would be 90,000 blocks.  The run reports are built and
handed to the shell's display publisher, which only counts them here: sending 200,000
reports over iopub would take minutes and is ipykernel's work, not cellar's.

Also: the module's GC traversal reaches every Python object its state holds, so the
cyclic GC can see a cycle through the module.
"""

import pytest

TOTAL = 100_000
WARM = 10_000
TRACED = 10_000

LEAK_CELL = '''
import gc, sys, tracemalloc, cellar
_ip = get_ipython()
_shown = [0]
def _count_publish(*args, **kwargs):
    _shown[0] += 1
_ip.display_pub.publish = _count_publish

def tiny(n, m=0):
    return n + m

_nested = {"a": [1, 2.5, "x"], "s": {"p", "q"}, "t": (None, b"b")}
_CALLS = {
    # the function %%cellar is registered as (IPython's own dispatch is not cellar's)
    "magic": lambda: cellar._magic("run tiny --input n=1 --input=m=2"),
    "run": lambda: cellar.run("tiny", n=1),
    "data_version": lambda: cellar.data_version(_nested),
}

def _measure(name):
    call = _CALLS[name]
    for _ in range(%(warm)d):
        call()
    gc.collect()
    blocks, objects = sys.getallocatedblocks(), len(gc.get_objects())
    for _ in range(%(untraced)d):
        call()
    tracemalloc.start()
    traced = tracemalloc.get_traced_memory()[0]
    for _ in range(%(traced)d):
        call()
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] - traced
    tracemalloc.stop()
    gc.collect()
    return traced, sys.getallocatedblocks() - blocks, len(gc.get_objects()) - objects
''' % {"warm": WARM, "untraced": TOTAL - WARM - TRACED, "traced": TRACED}


@pytest.mark.parametrize("entry", ["magic", "run", "data_version"])
def test_entry_point_does_not_leak(kernel, entry):
    kernel.ok(LEAK_CELL)
    kernel.ok("assert cellar.run('tiny', n=1) == 1")
    kernel.ok(f"_grown = _measure({entry!r})", timeout=300)
    traced, blocks, objects = kernel.eval("_grown")
    assert blocks < 1000, f"{entry}: {blocks} more memory blocks after {TOTAL - WARM} calls"
    assert objects < 100, f"{entry}: {objects} more GC-tracked objects after " \
                          f"{TOTAL - WARM} calls"
    assert traced < 64 * 1024, f"{entry}: tracemalloc: {traced} more bytes after the " \
                               f"last {TRACED} calls"
    if entry in ("magic", "run"):
        assert kernel.eval("_shown[0]") >= TOTAL, "every run must have shown its report"
        assert kernel.eval("cellar._magic('run tiny --input n=1 --input=m=2')") == 3


def test_module_traversal_reaches_the_state(kernel):
    kernel.ok("""
        import ast, gc, io, pickle, shlex, traceback, cellar
        _refs = gc.get_referents(cellar)
        _want = {"pickle.loads": pickle.loads, "ast.literal_eval": ast.literal_eval,
                 "shlex.split": shlex.split, "traceback.print_exception": traceback.print_exception,
                 "io.BytesIO": io.BytesIO, "shell": get_ipython(), "RunError": cellar.RunError,
                 "StoreError": cellar.StoreError}
        _missing = sorted(n for n, o in _want.items() if not any(r is o for r in _refs))
        """)
    assert kernel.eval("_missing") == []
    # the state's own picklers are there too
    assert kernel.eval("sorted(r.__name__ for r in _refs if isinstance(r, type) and "
                       "r.__module__ == 'cellar' and 'Pickler' in r.__name__)") == \
        ["_CanonicalPickler", "_Pickler", "_VersionPickler"]
