"""File inputs: a parameter whose value is a pathlib.Path is versioned by what the path names.

Through real kernels, with bodies counted through the side-effect log: an edited file reruns
its readers; a touch, or a file replaced by one with the same bytes, reruns nothing; a file
added to a directory input reruns its readers; a node that returns a Path hands the file's
content on; after a restart nothing reruns and the file is not read again (the kernel's
read bytes in /proc/self/io, around the run, stay far below the file's size).
"""

import os
import time
from pathlib import Path

from conftest import calls

READERS = """
from pathlib import Path

def rows(data):
    _log("rows")
    return data.read_text().splitlines()

def total(rows):
    _log("total")
    return sum(int(r) for r in rows)
"""


def write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # a new inode, as editors save


def settle() -> None:
    # A file changed less than 2 s before it is read is read again next time (its kept
    # fingerprint is not trusted yet): let the test's files settle where that matters.
    time.sleep(2.2)


def fresh_total(kernel, path: Path) -> int:
    return kernel.eval(f"sum(int(r) for r in open({str(path)!r}).read().splitlines())")


def test_edited_file_reruns_its_readers_touch_and_same_bytes_do_not(kernel):
    data = kernel.dir / "numbers.txt"
    write(data, "1\n2\n3\n")
    kernel.ok(READERS, cell_id="readers")
    kernel.ok(f"data = Path({str(data)!r})")
    kernel.cellar_run("total").ok()
    assert kernel.take_calls() == calls("rows", "total")
    assert kernel.eval("_v") == fresh_total(kernel, data) == 6

    write(data, "1\n2\n4\n")
    res = kernel.cellar_run("total").ok()
    assert kernel.take_calls() == calls("rows", "total"), res.describe()
    assert kernel.eval("_v") == fresh_total(kernel, data) == 7

    os.utime(data)  # touched: new times, same bytes
    kernel.cellar_run("total").ok()
    assert kernel.take_calls() == calls(), "a touch changes no content"

    write(data, "1\n2\n4\n")  # replaced by a file with the same bytes
    kernel.cellar_run("total").ok()
    assert kernel.take_calls() == calls(), "same bytes under a new inode"

    # Other lines with the same sum: both rerun (rows returns another list), same total.
    write(data, "3\n4\n")
    kernel.cellar_run("total").ok()
    assert kernel.take_calls() == calls("rows", "total")
    assert kernel.eval("_v") == fresh_total(kernel, data) == 7


def test_a_string_path_is_only_a_string(kernel):
    # Documented: a plain str is versioned as the string. Shown here so the README's
    # statement is true: the old result is served after an edit.
    data = kernel.dir / "s.txt"
    write(data, "5\n")
    kernel.ok("""
        def first(src):
            _log("first")
            return open(src).read().strip()
        """, cell_id="first")
    kernel.ok(f"src = {str(data)!r}")
    kernel.cellar_run("first").ok()
    write(data, "6\n")
    kernel.cellar_run("first").ok()
    assert kernel.take_calls() == calls("first"), "a str path is keyed by the string"
    kernel.ok(f"from pathlib import Path\nsrc = Path({str(data)!r})")
    kernel.cellar_run("first").ok()
    assert kernel.eval("_v") == "6"


def test_directory_input_sees_files_added_and_edited(kernel):
    folder = kernel.dir / "parts"
    folder.mkdir()
    write(folder / "a.txt", "1")
    kernel.ok("""
        from pathlib import Path
        def parts(folder):
            _log("parts")
            return sorted(p.read_text() for p in folder.rglob("*.txt"))
        """, cell_id="parts")
    kernel.ok(f"folder = Path({str(folder)!r})")
    kernel.cellar_run("parts").ok()
    assert kernel.take_calls() == calls("parts")
    kernel.cellar_run("parts").ok()
    assert kernel.take_calls() == calls()
    write(folder / "b.txt", "2")
    kernel.cellar_run("parts").ok()
    assert kernel.take_calls() == calls("parts")
    assert kernel.eval("_v") == ["1", "2"]
    (folder / "sub").mkdir()
    write(folder / "sub" / "c.txt", "3")
    kernel.cellar_run("parts").ok()
    assert kernel.take_calls() == calls("parts")
    assert kernel.eval("_v") == ["1", "2", "3"]
    write(folder / "sub" / "c.txt", "4")
    kernel.cellar_run("parts").ok()
    assert kernel.take_calls() == calls("parts")
    assert kernel.eval("_v") == ["1", "2", "4"]


def test_node_returning_a_path_hands_on_the_content(kernel):
    data = kernel.dir / "made.txt"
    write(data, "10\n")
    kernel.ok(f"""
        from pathlib import Path
        def source():
            _log("source")
            return Path({str(data)!r})

        def value(source):
            _log("value")
            return int(source.read_text())
        """, cell_id="nodes")
    kernel.cellar_run("value").ok()
    assert kernel.take_calls() == calls("source", "value")
    kernel.cellar_run("value").ok()
    assert kernel.take_calls() == calls()
    write(data, "11\n")
    kernel.cellar_run("value").ok()
    ran = kernel.take_calls()
    assert ran["value"] == 1, f"the reader of a changed file must rerun: {ran}"
    assert kernel.eval("_v") == kernel.eval(f"int(open({str(data)!r}).read())") == 11

    settle()
    kernel.cellar_run("value").ok()
    kernel.take_calls()
    kernel.restart()
    kernel.setup()
    kernel.ok(f"""
        from pathlib import Path
        def source():
            _log("source")
            return Path({str(data)!r})

        def value(source):
            _log("value")
            return int(source.read_text())
        """, cell_id="nodes")
    kernel.cellar_run("value").ok()
    ran = kernel.take_calls()
    assert ran["value"] == 0, f"same content after a restart: the reader loads ({ran})"
    assert kernel.eval("_v") == 11
    write(data, "12\n")
    kernel.cellar_run("value").ok()
    assert kernel.take_calls()["value"] == 1
    assert kernel.eval("_v") == 12


def test_after_a_restart_nothing_reruns_and_the_file_is_not_read(kernel):
    big = kernel.dir / "big.txt"
    line = "7\n"
    write(big, line * (4 << 20))  # 8 MiB
    settle()
    kernel.ok(READERS.replace("return data.read_text().splitlines()",
                              "return data.read_text().splitlines()[:3]"), cell_id="readers")
    kernel.ok(f"data = Path({str(big)!r})")
    kernel.cellar_run("total").ok()
    assert kernel.take_calls() == calls("rows", "total")

    kernel.restart()
    kernel.setup()
    kernel.ok(READERS.replace("return data.read_text().splitlines()",
                              "return data.read_text().splitlines()[:3]"), cell_id="readers")
    kernel.ok(f"data = Path({str(big)!r})")
    kernel.ok("""
        def _rchar():
            with open("/proc/self/io") as f:
                return int(next(l for l in f if l.startswith("rchar:")).split()[1])
        """)
    kernel.ok("_before = _rchar()")
    kernel.cellar_run("total").ok()
    kernel.ok("_read = _rchar() - _before")
    assert kernel.take_calls() == calls(), "nothing changed: nothing reruns"
    read = kernel.eval("_read")
    assert read < (1 << 20), f"the kernel read {read} bytes: the 8 MiB input was read again"
    assert kernel.eval("_v") == 21


def test_a_fifo_is_never_read_and_its_readers_rerun(kernel):
    fifo = kernel.dir / "pipe"
    os.mkfifo(fifo)
    kernel.ok("""
        from pathlib import Path
        def kind(src):
            _log("kind")
            return src.is_fifo()
        """, cell_id="kind")
    kernel.ok(f"src = Path({str(fifo)!r})")
    res = kernel.cellar_run("kind").ok()  # a read would block this cell forever
    assert kernel.eval("_v") is True
    assert any("pipe" in w for w in res.warnings), res.describe()
    kernel.cellar_run("kind").ok()
    assert kernel.take_calls() == calls("kind", "kind"), "no version for a FIFO: it reruns"
