"""The `cellar` command-line tool, driven as a real process against a store that a real kernel
built: `ls`, `show NODE|KEY`, `log`, `stats`, `verify` (text and --json, --dir and $CELLAR_DIR),
`--help`, and the exit statuses and stderr messages of every failure; output
that cannot be written, records it cannot read, the one
convention for sizes and times shared with the notebook; and every store command on a store
with a blob deleted or damaged, with pages overwritten (seeded) or truncated, and with a reader
that never finishes (CELLAR_CLI_TIMEOUT).

One kernel per module builds the store (module fixture `built`), then is shut down; tests that
damage a store work on a copy of it.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import Kernel, calls, cellar_bin

CELLAR = cellar_bin()
pytestmark = pytest.mark.skipif(
    CELLAR is None,
    reason="no cellar binary: set CELLAR_BIN, put cellar on PATH or build build/runtime/cellar")

HEX32 = re.compile(r"^[0-9a-f]{32}$")

# A byte pattern that occurs in exactly one stored value (the `marked` node's), so that the
# corruption test can find that value inside data.mdb.
MARKER = b"<<cellar-cli-test-marker-7f3a9c>>"

NODES_V1 = textwrap.dedent(
    """\
    def raw():
        _log("raw")
        return list(range(100))

    def doubled(raw):
        _log("doubled")
        return [x * 2 for x in raw]

    def total(doubled):
        _log("total")
        return len(doubled)

    def other():
        _log("other")
        return "other value " * 10

    def marked():
        _log("marked")
        return b"%s" * 3 + bytes(range(256))
    """
).replace('b"%s"', repr(MARKER))

# `raw` edited (a token change): a new raw value and a new doubled value, but the same
# length, so `total` gets a new key whose data version is the old one (early cutoff).
NODES_V2 = NODES_V1.replace("list(range(100))", "list(range(1, 101))")


def cellar(*args, env_dir: Path | str | None = None, cwd: Path | str | None = None,
           input: bytes | None = None) -> subprocess.CompletedProcess:
    """Run the cellar binary; CELLAR_DIR is set only when env_dir is given."""
    env = dict(os.environ)
    env.pop("CELLAR_DIR", None)
    if env_dir is not None:
        env["CELLAR_DIR"] = str(env_dir)
    return subprocess.run([CELLAR, *map(str, args)], capture_output=True, text=input is None,
                          input=input, env=env, cwd=cwd, timeout=60)


def ok_json(*args, **kw):
    proc = cellar(*args, **kw)
    assert proc.returncode == 0, f"cellar {args} -> {proc.returncode}\n{proc.stderr}"
    assert proc.stderr == "", proc.stderr
    return json.loads(proc.stdout)


def failed(proc, status=1) -> str:
    """Assert the process failed with `status`, printing nothing on stdout; returns stderr."""
    assert proc.returncode == status, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr.strip(), "a failure must say why on stderr"
    return proc.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A store built by a real kernel: two runs, then the kernel is shut down.

    Returns a dict with the store path, the runs' side effects and kernel-side facts."""
    work = tmp_path_factory.mktemp("cli")
    k = Kernel(work)
    try:
        k.setup()
        k.ok(NODES_V1, cell_id="nodes")
        k.cellar_run("total other marked").ok()
        first = k.take_calls()
        k.ok("import cellar")
        marked_dv = k.eval("cellar.data_version(_v['marked'])")
        marked_len = k.eval("len(_v['marked'])")
        raw1_dv = k.eval("cellar.data_version(list(range(100)))")
        k.ok(NODES_V2, cell_id="nodes")
        k.cellar_run("total").ok()
        second = k.take_calls()
        raw2_dv = k.eval("cellar.data_version(list(range(1, 101)))")
        total_dv = k.eval("cellar.data_version(100)")
        k.take_calls()
    finally:
        k.stop()
    return {"store": k.store, "work": work, "first": first, "second": second,
            "marked_dv": marked_dv, "raw_dvs": {raw1_dv, raw2_dv}, "total_dv": total_dv,
            "marked_len": marked_len}


def test_the_store_was_built_as_expected(built):
    # The premise of every other test here: what ran, counted through side effects.
    assert built["first"] == calls("raw", "doubled", "total", "other", "marked")
    assert built["second"] == calls("raw", "doubled", "total")


# ---- ls -------------------------------------------------------------------------------------

def test_ls_json_lists_every_key(built):
    doc = ok_json("ls", "--dir", built["store"], "--json")
    assert Path(doc["store"]) == built["store"].resolve()
    keys = doc["keys"]
    per_node = Counter(k["node"] for k in keys)
    # raw, doubled and total got a second key when raw's code changed.
    assert per_node == {"raw": 2, "doubled": 2, "total": 2, "other": 1, "marked": 1}
    for k in keys:
        for field in ("key", "data_version", "code_version"):
            assert HEX32.match(k[field]), k
        assert k["result_stored"] is True
        assert k["size"] > 0 and k["compute_ns"] >= 0
        assert 0 < k["created_ns"] <= k["last_used_ns"]
    assert len({k["key"] for k in keys}) == len(keys), "keys are unique"
    # Sorted by node name.
    assert [k["node"] for k in keys] == sorted(k["node"] for k in keys)
    by_node = {}
    for k in keys:
        by_node.setdefault(k["node"], []).append(k)
    # Data versions are the values' fingerprints, as the kernel computes them.
    assert {k["data_version"] for k in by_node["raw"]} == built["raw_dvs"]
    assert {k["data_version"] for k in by_node["total"]} == {built["total_dv"]}, \
        "early cutoff: both total keys point at the same value"
    assert by_node["marked"][0]["data_version"] == built["marked_dv"]
    # Two code versions of raw, one of total (its code did not change).
    assert len({k["code_version"] for k in by_node["raw"]}) == 2
    assert len({k["code_version"] for k in by_node["total"]}) == 1
    # The size is that of the stored value: the pickle of 3 markers + 256 bytes.
    marked_size = by_node["marked"][0]["size"]
    assert built["marked_len"] <= marked_size < built["marked_len"] + 200


def test_ls_text_and_cellar_dir_env(built):
    doc = ok_json("ls", "--dir", built["store"], "--json")
    # $CELLAR_DIR gives the same listing as --dir; --dir wins over $CELLAR_DIR.
    assert ok_json("ls", "--json", env_dir=built["store"]) == doc
    assert ok_json("ls", "--json", "--dir", built["store"], env_dir="/nonexistent/x") == doc
    assert ok_json("ls", f"--dir={built['store']}", "--json") == doc
    text = cellar("ls", env_dir=built["store"])
    assert text.returncode == 0 and text.stderr == "", text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].split()[:3] == ["NODE", "KEY", "DATA"], lines[0]
    rows = lines[1:]
    assert len(rows) == len(doc["keys"])
    for k in doc["keys"]:
        row = next((r for r in rows if k["key"][:12] in r), None)
        assert row is not None, f"key {k['key']} not listed:\n{text.stdout}"
        assert row.split()[0] == k["node"] and k["data_version"][:12] in row


def test_default_store_is_dot_cellar_in_cwd(built, tmp_path):
    shutil.copytree(built["store"], tmp_path / ".cellar")
    doc = ok_json("ls", "--json", cwd=tmp_path)
    assert Path(doc["store"]) == (tmp_path / ".cellar").resolve()
    assert len(doc["keys"]) == 8


# ---- stats ----------------------------------------------------------------------------------

def test_stats_json_and_text(built):
    keys = ok_json("ls", "--dir", built["store"], "--json")["keys"]
    st = ok_json("stats", "--json", env_dir=built["store"])
    assert st["keys"] == len(keys) == 8
    # One result per distinct data version (total's two keys share one).
    sizes = {k["data_version"]: k["size"] for k in keys}
    assert st["results"] == len(sizes) == 7
    # result_bytes counts what the results take in the store: each value (the key record's
    # size) plus a small header (segment lengths and checksum).
    overhead = st["result_bytes"] - sum(sizes.values())
    assert 0 <= overhead <= 64 * len(sizes), (st["result_bytes"], sizes)
    assert st["nodes"] == 5
    assert st["runs"] == 2
    data_mdb = built["store"] / "data.mdb"
    # data.mdb is sparse (LMDB's write map sizes it to the map): file_bytes is the disk
    # space it really takes.
    assert st["file_bytes"] == data_mdb.stat().st_blocks * 512
    assert 0 < st["file_bytes"] <= data_mdb.stat().st_size <= st["map_size"]
    text = cellar("stats", "--dir", built["store"])
    assert text.returncode == 0 and text.stderr == ""
    fields = dict(re.split(r"\s{2,}", ln.strip(), maxsplit=1) for ln in text.stdout.splitlines())
    assert fields["keys"] == "8" and fields["nodes"] == "5" and fields["runs"] == "2"
    assert fields["results"].startswith("7 (")
    assert Path(fields["store"]) == built["store"].resolve()


# ---- show -----------------------------------------------------------------------------------

def test_show_node_lists_its_keys_and_runs(built):
    keys = ok_json("ls", "--dir", built["store"], "--json")["keys"]
    raw_keys = {k["key"] for k in keys if k["node"] == "raw"}
    doc = ok_json("show", "raw", "--dir", built["store"], "--json")
    assert doc["node"] == "raw"
    assert {k["key"] for k in doc["keys"]} == raw_keys
    assert doc["metadata"]["name"] == "raw"
    # The node record describes the latest run of raw: its newest key.
    newest = max((k for k in keys if k["node"] == "raw"), key=lambda k: k["created_ns"])
    assert doc["metadata"]["key"] == newest["key"]
    # Both runs included raw (newest first), each with the key it used then.
    runs = doc["runs"]
    assert len(runs) == 2, runs
    assert runs[0]["run_id"] > runs[1]["run_id"]
    run_keys = [r["entry"]["key"] for r in runs]
    assert set(run_keys) == raw_keys and run_keys[0] == newest["key"]
    assert all(r["entry"]["status"] == "computed" for r in runs)

    other = ok_json("show", "other", "--dir", built["store"], "--json")
    assert len(other["keys"]) == 1 and len(other["runs"]) == 1, "other ran in the first run only"

    text = cellar("show", "raw", env_dir=built["store"])
    assert text.returncode == 0 and text.stderr == "", text.stderr
    assert text.stdout.startswith("node raw\n")
    for k in raw_keys:
        assert k in text.stdout
    assert "keys (2):" in text.stdout and "runs (2, newest first):" in text.stdout
    run_rows = text.stdout.split("runs (2, newest first):", 1)[1].strip().splitlines()[1:]
    assert len(run_rows) == 2 and all("computed" in r for r in run_rows), text.stdout


def test_show_key_full_and_prefix(built):
    keys = ok_json("ls", "--dir", built["store"], "--json")["keys"]
    all_keys = [k["key"] for k in keys]
    entry = next(k for k in keys if k["node"] == "marked")
    full = ok_json("show", entry["key"], "--dir", built["store"], "--json")
    assert full == entry
    # The shortest unique prefix of at least 6 digits, and in upper case.
    n = 6
    while sum(k.startswith(entry["key"][:n]) for k in all_keys) > 1:
        n += 1
    assert ok_json("show", entry["key"][:n], "--dir", built["store"], "--json") == entry
    assert ok_json("show", entry["key"][:n].upper(), "--dir", built["store"], "--json") == entry
    text = cellar("show", entry["key"][:n], "--dir", built["store"])
    assert text.returncode == 0 and text.stderr == ""
    fields = dict(re.split(r"\s{2,}", ln.strip(), maxsplit=1) for ln in text.stdout.splitlines())
    assert fields["key"] == entry["key"] and fields["node"] == "marked"
    assert fields["data version"] == f"{entry['data_version']} (stored)"
    assert fields["code version"] == entry["code_version"]


def test_show_unknown(built):
    store = built["store"]
    err = failed(cellar("show", "no_such_node", "--dir", store))
    assert "no_such_node" in err
    # Six hex digits that begin no key.
    all_keys = [k["key"] for k in ok_json("ls", "--dir", store, "--json")["keys"]]
    absent = next(p for p in (f"{i:06x}" for i in range(1 << 24))
                  if not any(k.startswith(p) for k in all_keys))
    err = failed(cellar("show", absent, "--dir", store))
    assert absent in err
    # Too short to be a key prefix.
    err = failed(cellar("show", all_keys[0][:4], "--dir", store))
    assert "at least 6" in err
    # Missing argument is a usage error.
    failed(cellar("show", "--dir", store), status=2)


def test_show_ambiguous_key_prefix(kernel_factory, tmp_path):
    """Two keys sharing a 6-hex-digit prefix: found by making many keys (inputs 0..N of one
    node, each run committing one key) until two collide, then `show PREFIX` must refuse."""
    k = kernel_factory()
    k.setup()
    k.ok("def ident(i):\n    return i\n", cell_id="ident")
    # 20000 keys: the chance that no two share a 24-bit prefix is exp(-20000²/2²⁵) ≈ 7e-6.
    k.ok(textwrap.dedent("""\
        import cellar
        from IPython.utils.capture import capture_output
        with capture_output():
            for _i in range(20000):
                cellar.run("ident", i=_i)
        """), timeout=120)
    k.stop()
    keys = ok_json("ls", "--dir", k.store, "--json")["keys"]
    assert len(keys) == 20000
    seen = {}
    prefix = None
    for e in keys:
        p = e["key"][:6]
        if p in seen:
            prefix = p
            break
        seen[p] = e
    if prefix is None:
        pytest.skip("no two of 20000 keys share 6 hex digits (p ≈ 7e-6)")
    err = failed(cellar("show", prefix, "--dir", k.store))
    assert "ambiguous" in err and prefix in err
    failed(cellar("show", prefix, "--dir", k.store, "--json"))


# ---- verify ---------------------------------------------------------------------------------

def test_verify_healthy_store(built):
    proc = cellar("verify", "--dir", built["store"])
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"checked \d+ records, 7 results, 0 blobs: 0 problems\n", proc.stdout), \
        proc.stdout
    doc = ok_json("verify", "--json", env_dir=built["store"])
    assert doc["clean"] is True and doc["problems"] == []
    assert doc["counts"]["results"] == 7 and doc["counts"]["problems"] == 0
    # Every entry of every database was walked: at least the 8 keys, 7 results, 5 nodes, 2 runs.
    assert doc["counts"]["records"] >= 22


def test_verify_finds_a_flipped_byte_and_repairs_it(built, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(built["store"], store)
    data = bytearray((store / "data.mdb").read_bytes())
    hits = [m.start() for m in re.finditer(re.escape(MARKER), data)]
    assert hits, "the marker value is not stored verbatim in data.mdb"
    for at in hits:  # every copy, in case a stale one sits in a free page
        data[at + 5] ^= 0x20
    (store / "data.mdb").write_bytes(bytes(data))

    proc = cellar("verify", "--dir", store)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert re.search(rf"^result\s+results/{built['marked_dv']}: ", proc.stdout, re.M), proc.stdout
    assert proc.stdout.endswith("7 results, 0 blobs: 1 problem\n"), proc.stdout
    json_proc = cellar("verify", "--dir", store, "--json")
    assert json_proc.returncode == 1
    doc = json.loads(json_proc.stdout)
    assert doc["clean"] is False and doc["counts"]["problems"] == 1
    assert [(p["category"], p["where"]) for p in doc["problems"]] == \
        [("result", f"results/{built['marked_dv']}")]
    assert doc["problems"][0]["message"]
    # The rest of the store still reads.
    assert len(ok_json("ls", "--dir", store, "--json")["keys"]) == 8
    # --repair drops the damaged result, says so, and exits 0 because the store is clean now.
    rep = cellar("verify", "--dir", store, "--repair", "--json")
    assert rep.returncode == 0, (rep.stdout, rep.stderr)
    doc = json.loads(rep.stdout)
    assert doc["repair"]["removed"] == 1 and doc["repair"]["after"]["problems"] == 0
    assert doc["repair"]["set_aside"] is None
    assert ok_json("stats", "--dir", store, "--json")["results"] == 6
    assert ok_json("verify", "--dir", store, "--json")["clean"] is True


@pytest.mark.parametrize("size", [0, 4096, 8192])
def test_verify_and_readers_on_a_truncated_store(built, tmp_path, size):
    store = tmp_path / "store"
    shutil.copytree(built["store"], store)
    mdb = store / "data.mdb"
    with open(mdb, "r+b") as f:
        f.truncate(size)  # to nothing, into the meta pages, and just after them
    proc = cellar("verify", "--dir", store)
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert re.search(r"^structure\s+data.mdb: .*(truncated|damaged)", proc.stdout, re.M), \
        proc.stdout
    assert "Bad file descriptor" not in proc.stdout + proc.stderr
    for cmd in (["ls"], ["stats"], ["log"], ["show", "raw"]):
        p = cellar(*cmd, "--dir", store)
        assert p.returncode == 1 and p.stdout == "", (cmd, p.returncode, p.stdout, p.stderr)
        assert "damaged" in p.stderr or "truncated" in p.stderr, (cmd, p.stderr)
    rep = cellar("verify", "--dir", store, "--repair")
    assert rep.returncode == 0, (rep.stdout, rep.stderr)
    assert "moved to" in rep.stdout and "after the repair:" in rep.stdout, rep.stdout
    assert list(store.glob("data.mdb.damaged-*")), "the damaged file was kept aside"
    assert ok_json("ls", "--dir", store, "--json")["keys"] == []


# ---- help, usage and missing stores ---------------------------------------------------------

@pytest.mark.parametrize("args", [["--help"], ["-h"], ["help"], ["ls", "--help"],
                                  ["show", "--help"], ["stats", "--help"], ["verify", "--help"],
                                  ["scan", "--help"], ["log", "--help"]])
def test_help(args, tmp_path):
    proc = cellar(*args, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.startswith("usage: cellar"), proc.stdout
    if args[0] not in ("--help", "-h", "help"):
        assert proc.stdout.startswith(f"usage: cellar {args[0]}")
    else:
        for cmd in ("scan", "ls", "show", "log", "stats", "verify"):
            assert re.search(rf"^\s+{cmd}\b", proc.stdout, re.M), cmd
    assert list(tmp_path.iterdir()) == [], "--help creates nothing"


@pytest.mark.parametrize("args", [[], ["frobnicate"], ["ls", "--bogus"], ["stats", "--dir"],
                                  ["verify", "extra"], ["show"], ["scan"], ["scan", "--bogus"],
                                  ["scan", "a.py", "b.py"]])
def test_usage_errors_exit_2(args, tmp_path):
    proc = cellar(*args, cwd=tmp_path)
    assert proc.returncode == 2, (args, proc.returncode, proc.stderr)
    assert proc.stdout == ""
    assert "usage" in proc.stderr or "cellar" in proc.stderr
    assert proc.stderr.strip()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("cmd", [["ls"], ["stats"], ["verify"], ["verify", "--repair"],
                                 ["show", "raw"], ["log"]])
def test_missing_store(cmd, tmp_path):
    missing = tmp_path / "nope" / "store"
    status = 2 if cmd[0] == "verify" else 1  # verify: the check could not run
    for proc in (cellar(*cmd, "--dir", missing), cellar(*cmd, env_dir=missing),
                 cellar(*cmd, "--json", cwd=tmp_path)):
        err = failed(proc, status)
        assert proc.stdout == ""
        assert "no cellar store" in err, err
    assert not (tmp_path / "nope").exists() and not (tmp_path / ".cellar").exists(), \
        "a read-only command must not create a store"
    # An empty directory is not a store either, and stays empty.
    missing.mkdir(parents=True, mode=0o700)
    err = failed(cellar(*cmd, "--dir", missing), status)
    assert "no cellar store" in err
    assert list(missing.iterdir()) == []


# ---- output errors, bounded input, whole messages, records it cannot read -------------------

@pytest.mark.parametrize("args", [["ls"], ["ls", "--json"], ["stats"], ["stats", "--json"],
                                  ["show", "raw"], ["show", "raw", "--json"], ["verify"],
                                  ["log"], ["log", "--json"], ["--help"], ["ls", "--help"]])
def test_write_errors_on_stdout_fail_the_command(built, args):
    # /dev/full accepts the open and fails every write with ENOSPC: output that never arrived
    # is a failure, said on stderr, whatever the command.
    env = dict(os.environ, CELLAR_DIR=str(built["store"]))
    with open("/dev/full", "w") as full:
        proc = subprocess.run([CELLAR, *args], stdout=full, stderr=subprocess.PIPE, text=True,
                              env=env, timeout=60)
    assert proc.returncode == (2 if args[0] == "verify" else 1), (args, proc.returncode,
                                                                    proc.stderr)
    assert "cannot write the output" in proc.stderr and "No space left" in proc.stderr, \
        proc.stderr
    # The same command to a real pipe succeeds, so it is the output that failed.
    assert cellar(*args, env_dir=built["store"]).returncode == 0


def test_long_path_keeps_the_whole_message(tmp_path):
    # A store directory whose path is far longer than the old 512-byte message buffer: the
    # message still carries the whole path and the reason.
    deep = tmp_path
    while len(str(deep)) < 2500:
        deep = deep / ("d" * 60)
    deep.mkdir(parents=True, mode=0o700)
    err = failed(cellar("ls", "--dir", deep))
    assert "no cellar store" in err
    assert str(deep) in err, f"the path was cut ({len(err)} bytes of message)"
    assert len(str(deep)) >= 2500


def patch_store(src: Path, dst: Path, old: bytes, new: bytes) -> int:
    """Copy a store and replace `old` by `new` (same length) in data.mdb; returns the count."""
    assert len(old) == len(new)
    shutil.copytree(src, dst)
    data = (dst / "data.mdb").read_bytes()
    count = data.count(old)
    (dst / "data.mdb").write_bytes(data.replace(old, new))
    return count


def test_show_refuses_records_of_an_unknown_format(built, tmp_path):
    # The run records as the extension wrote them say format 1; rewritten in place as format 7
    # (a newer cellar), `show` names the problem, exits 1, and still shows what it can read.
    store = tmp_path / "store"
    assert patch_store(built["store"], store, b'{"format":1,"started_ns"',
                       b'{"format":7,"started_ns"') >= 2
    proc = cellar("show", "raw", "--dir", store, "--json")
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "format 7" in proc.stderr and "newer cellar" in proc.stderr, proc.stderr
    assert "2 run records cannot be read" in proc.stderr, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["runs"] == [] and len(doc["keys"]) == 2
    assert doc["metadata"]["name"] == "raw", "the node record itself is still format 1"

    # A node record of an unknown format.
    store2 = tmp_path / "store2"
    assert patch_store(built["store"], store2, b'{"format":1,"name":"raw"',
                       b'{"format":9,"name":"raw"') >= 1  # a stale copy may sit in a free page
    proc = cellar("show", "raw", "--dir", store2)
    assert proc.returncode == 1
    assert "the record of node 'raw' cannot be read" in proc.stderr
    assert "format 9" in proc.stderr
    assert "runs (2, newest first):" in proc.stdout, "runs are still shown"


def test_show_names_the_damaged_field(built, tmp_path):
    store = tmp_path / "store"
    assert patch_store(built["store"], store, b'"started_ns":', b'"started_nX":') >= 2
    proc = cellar("show", "raw", "--dir", store)
    assert proc.returncode == 1
    assert '"started_ns" is missing or has the wrong type' in proc.stderr, proc.stderr


def test_show_json_rows_match_the_run(built):
    # Every field of a run row as the CLI decodes it, against what the kernel did.
    doc = ok_json("show", "marked", "--dir", built["store"], "--json")
    (run,) = doc["runs"]
    entry = run["entry"]
    assert set(entry) == {"node", "status", "key", "data_version", "time_ns", "size", "error"}
    assert entry["node"] == "marked" and entry["status"] == "computed"
    assert entry["data_version"] == built["marked_dv"] and entry["error"] is None
    assert entry["size"] == doc["keys"][0]["size"] and entry["time_ns"] >= 0
    meta = doc["metadata"]
    assert meta["params"] == [] and meta["cell_id"] == "nodes"
    assert meta["data_version"] == built["marked_dv"]
    assert HEX32.match(meta["code_version"]) and meta["updated_ns"] > 0


# ---- one convention for sizes and times ------------------------------------------------------

SIZE_RE = re.compile(r"^(\d+ B|\d+\.\d (KiB|MiB|GiB|TiB)|\d{3,4} (KiB|MiB|GiB|TiB))$")
TIME_RE = re.compile(r"^(\d+ ns|\d\.\d\d (µs|ms|s)|\d\d\.\d (µs|ms|s)|\d{3} (µs|ms)|\d{3,} s)$")


def test_notebook_and_cli_print_sizes_and_times_alike(kernel_factory):
    k = kernel_factory()
    k.setup()
    # 1.5 MiB and 3 bytes of payload: sizes on both sides of the unit change.
    k.ok("def big():\n    return b'x' * (3 * 2**19)\n\ndef small():\n    return 7\n",
         cell_id="nodes")
    rep = k.cellar_run("big small").ok().report
    load = k.ok("%reload_ext cellar").stdout
    k.stop()
    rows = rep.rows
    for name in ("big", "small"):
        assert SIZE_RE.match(rows[name]["size"]), rows[name]
        assert TIME_RE.match(rows[name]["time"]), rows[name]
    assert rows["big"]["size"].endswith(" MiB"), rows["big"]
    assert rows["small"]["size"].endswith(" B"), rows["small"]
    title_time = re.search(r"\(([^)]*)\)$", rep.text.splitlines()[0]).group(1)
    assert TIME_RE.match(title_time), rep.text.splitlines()[0]
    # `cellar ls` prints each key's size the way the report did for the same value.
    lines = cellar("ls", "--dir", k.store).stdout.splitlines()
    for name in ("big", "small"):
        line = next(ln for ln in lines if ln.split()[0] == name)
        assert f"  {rows[name]['size']}  " in line, (rows[name], line)
    # The %load_ext summary and `cellar stats` agree on the total.
    stats = cellar("stats", "--dir", k.store).stdout
    total = re.search(r"results\s+2 \(([^)]*)\)", stats).group(1)
    assert SIZE_RE.match(total) and f", {total})" in load, (stats, load)


# ---- log ------------------------------------------------------------------------------------

def test_log_lists_the_runs_newest_first(built):
    doc = ok_json("log", "--dir", built["store"], "--json")
    runs = doc["runs"]
    assert len(runs) == 2 and runs[0]["run_id"] > runs[1]["run_id"]
    second, first = runs
    # What ran, as the side effects counted it (the premise test checks those).
    assert first["targets"] == ["total", "other", "marked"]
    assert (first["nodes"], first["computed"], first["loaded"]) == (5, 5, 0)
    assert second["targets"] == ["total"]
    assert (second["nodes"], second["computed"], second["in_memory"]) == (3, 3, 0)
    for r in runs:
        assert r["failed"] == r["skipped"] == 0 and r["pid"] > 0
        assert 0 < r["started_ns"] <= r["run_id"] and r["node_ns"] >= 0
    assert ok_json("log", "--dir", built["store"], "--json", "--limit", "1")["runs"] == [second]
    assert ok_json("log", "--json", "--limit=1", env_dir=built["store"])["runs"] == [second]
    text = cellar("log", "--dir", built["store"])
    assert text.returncode == 0 and text.stderr == "", text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].split()[:3] == ["RUN", "STARTED", "PID"]
    assert [ln.split()[0] for ln in lines[1:]] == [str(second["run_id"]), str(first["run_id"])]
    assert lines[2].endswith("total other marked")
    for bad in (["--limit", "0"], ["--limit", "x"], ["--limit"]):
        failed(cellar("log", "--dir", built["store"], *bad), status=2)
    failed(cellar("ls", "--dir", built["store"], "--limit", "1"), status=2)


def test_json_a_kernel_reads(built, tmp_path):
    # What %cellar log and %cellar show read from the command: the store's run count
    # beside a limited list, each of a node's runs with its start and targets, and a
    # node name that is never taken for a key prefix.
    store = built["store"]
    doc = ok_json("log", "--dir", store, "--json", "--limit", "1")
    assert doc["total"] == 2 and len(doc["runs"]) == 1 and "unreadable" not in doc
    runs = ok_json("show", "total", "--node", "--dir", store, "--json")["runs"]
    assert [r["targets"] for r in runs] == [["total"], ["total", "other", "marked"]]
    assert all(0 < r["started_ns"] <= r["run_id"] for r in runs)
    doc = ok_json("show", "--node", "abcdef", "--dir", store, "--json")
    assert (doc["keys"], doc["runs"], doc["metadata"]) == ([], [], None)
    failed(cellar("show", "abcdef", "--dir", store, "--json"))  # a key prefix without --node


def test_gc_options_a_kernel_passes(built, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(built["store"], store)
    before = ok_json("stats", "--dir", store, "--json")
    # --if-over: above the results' size, nothing is collected (and nothing is dropped
    # although the budget alone would evict everything).
    doc = ok_json("gc", "--dir", store, "--json", "--max-size", "0", "--if-over", "1TiB")
    assert doc["collected"] is False
    assert doc["dropped"]["keys"] == 0 and doc["dropped"]["size_before"] == before["result_bytes"]
    assert ok_json("stats", "--dir", store, "--json")["keys"] == before["keys"]
    doc = ok_json("gc", "--dir", store, "--json", "--max-size", "1B", "--if-over", "1B",
                  "--live", "total,other", "--live=marked", "--timeout", "30")
    assert doc["collected"] is True and doc["dropped"]["keys_by_reason"]["evicted"] > 0
    assert ok_json("stats", "--dir", store, "--json")["result_bytes"] <= 1
    for bad in (["--live", "a,,b"], ["--timeout", "0"], ["--if-over", "lots"]):
        failed(cellar("gc", "--dir", store, *bad), status=2)
    # --timeout stops a collection that does not finish (SIGALRM), leaving the store as it was.
    env = dict(os.environ, CELLAR_GC_TEST_DELAY="5")
    p = subprocess.run([CELLAR, "gc", "--dir", str(store), "--timeout", "1"], env=env,
                       capture_output=True, timeout=60)
    assert p.returncode == -signal.SIGALRM, p


def test_log_names_records_it_cannot_read(built, tmp_path):
    store = tmp_path / "store"
    assert patch_store(built["store"], store, b'{"format":1,"started_ns"',
                       b'{"format":3,"started_ns"') >= 2
    proc = cellar("log", "--dir", store, "--json")
    assert proc.returncode == 1
    assert "2 run records cannot be read" in proc.stderr and "format 3" in proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["runs"] == [] and doc["total"] == 2
    assert doc["unreadable"]["count"] == 2 and "format 3" in doc["unreadable"]["first"]
    # The kernel reads the same JSON (exit status 1 with a document): the tables say it.
    (tmp_path / "k").mkdir()
    k = Kernel(tmp_path / "k", cellar_dir=store)
    try:
        k.setup()
        res = k.ok("%cellar log")
        (text,) = [d["text/plain"] for d in res.displays
                   if d.get("text/plain", "").startswith("cellar log:")]
        assert text.startswith("cellar log: 2 runs in "), text
        assert "2 records could not be read" in text and "format 3" in text, text
        assert not res.warnings, res.describe()
        res = k.ok("%cellar show total")
        texts = [d["text/plain"] for d in res.displays]
        assert texts[0].startswith("cellar show total: "), texts
        assert "2 records could not be read" in texts[0] and "format 3" in texts[0], texts
        assert texts[1].startswith("runs of total: 0, newest first"), texts
    finally:
        k.stop()


# ---- blobs deleted and damaged, pages overwritten, a reader that does not finish ------------

# Two results large enough to be blob files, and enough small nodes that the databases span
# several leaf pages and a run record takes overflow pages.
BLOB_NODES = "import numpy as np\n\n" + textwrap.dedent(
    """\
    def big_a():
        return np.arange(300_000, dtype=np.float64)

    def big_b():
        return np.arange(200_000, dtype=np.int64) * 3
    """) + "".join(f"\ndef small_{i}():\n    return list(range({i * 40}))\n" for i in range(40))
STORE_CMDS = (["ls"], ["ls", "--json"], ["stats", "--json"], ["log", "--json"],
              ["show", "big_a", "--json"], ["show", "small_3"])


@pytest.fixture(scope="module")
def blob_store(tmp_path_factory):
    work = tmp_path_factory.mktemp("cli-blobs")
    k = Kernel(work)
    try:
        k.setup()
        k.ok(BLOB_NODES, cell_id="nodes")
        k.cellar_run("big_a big_b").ok()
        k.cellar_run(" ".join(f"small_{i}" for i in range(40))).ok()
    finally:
        k.stop()
    blobs = sorted(p for p in (k.store / "blobs").glob("??/*") if p.is_file())
    assert [p.stat().st_size for p in blobs] in ([2_400_000, 1_600_000], [1_600_000, 2_400_000])
    return k.store


def run_all_commands(store: Path) -> dict:
    """Every store command on `store`: none may die of a signal or exit outside 0/1/2."""
    out = {}
    for cmd in STORE_CMDS:
        p = cellar(*cmd, "--dir", store)
        assert p.returncode in (0, 1, 2), (cmd, p.returncode, p.stderr)
        assert p.returncode == 0 or p.stderr.strip(), (cmd, "a failure says why")
        out[" ".join(cmd)] = p
    return out


def verify_repair_clean(store: Path) -> list[dict]:
    """verify --json finds problems, each named with its place; --repair leaves it clean."""
    p = cellar("verify", "--json", "--dir", store)
    assert p.returncode in (0, 1), (p.returncode, p.stdout, p.stderr)
    doc = json.loads(p.stdout)
    assert doc["clean"] is (p.returncode == 0) and len(doc["problems"]) == doc["counts"]["problems"]
    for prob in doc["problems"]:
        assert prob["category"] in ("structure", "record", "result", "blob", "orphan"), prob
        assert prob["where"] and prob["message"], prob
    rep = cellar("verify", "--repair", "--json", "--dir", store)
    assert rep.returncode == 0, (rep.returncode, rep.stdout, rep.stderr)
    again = cellar("verify", "--json", "--dir", store)
    assert again.returncode == 0 and json.loads(again.stdout)["clean"] is True, again.stdout
    run_all_commands(store)
    return doc["problems"]


@pytest.mark.parametrize("fault", ["deleted", "damaged"])
def test_cli_on_a_store_with_a_blob_deleted_or_damaged(blob_store, tmp_path, fault):
    store = tmp_path / "store"
    shutil.copytree(blob_store, store)
    big_a = next(e for e in ok_json("ls", "--json", "--dir", store)["keys"] if e["node"] == "big_a")
    dv = big_a["data_version"]
    blob = next((store / "blobs" / dv[:2]).glob(f"{dv}-*"))
    if fault == "deleted":
        blob.unlink()
    else:  # same size, one byte changed
        with open(blob, "r+b") as f:
            f.seek(1_000_003)
            b = f.read(1)
            f.seek(1_000_003)
            f.write(bytes([b[0] ^ 0x01]))
    out = run_all_commands(store)
    # The listing reads the index only, which is intact.
    assert out["ls --json"].returncode == 0
    assert len(json.loads(out["ls --json"].stdout)["keys"]) == 42
    problems = verify_repair_clean(store)
    if fault == "deleted":  # where: the result; the message names the file
        assert [(p["category"], p["where"]) for p in problems] == [("blob", f"results/{dv}")], \
            problems
        assert str(blob) in problems[0]["message"] and "No such file" in problems[0]["message"]
    else:
        assert [(p["category"], p["where"]) for p in problems] == [("result", f"results/{dv}")], \
            problems
    # The repair dropped big_a's result (its node reruns next time) and nothing else.
    keys = {e["node"]: e for e in ok_json("ls", "--json", "--dir", store)["keys"]}
    assert keys["big_a"]["result_stored"] is False and keys["big_b"]["result_stored"] is True
    assert not blob.exists()


def overwrite(store: Path, seed: int) -> str:
    """Seeded damage to data.mdb: a truncation, a meta page, or random pages."""
    data = store / "data.mdb"
    rng = random.Random(seed)
    pages = data.stat().st_size // 4096
    with open(data, "r+b") as f:
        if seed % 6 == 0:
            f.truncate(rng.choice([0, 100, 4096, 5000, 3 * 4096]))
            return "truncated"
        if seed % 6 == 1:
            f.seek(rng.randrange(2) * 4096 + rng.randrange(16, 128))
            f.write(rng.randbytes(rng.randrange(1, 64)))
            return "meta"
        for _ in range(rng.randrange(1, 4)):
            f.seek(rng.randrange(2, pages) * 4096 + rng.choice([0, rng.randrange(4096)]))
            f.write(rng.randbytes(rng.choice([16, 512, 4096])))
        return "pages"


# 163: a meta page that leads LMDB to a tree without cellar's databases (once exit 2 from
# verify, "not a cellar store"; now a structure problem that --repair sets aside).
@pytest.mark.parametrize("seed", [*range(60), 163])
def test_cli_never_crashes_on_overwritten_pages(blob_store, tmp_path, seed):
    store = tmp_path / "store"
    shutil.copytree(blob_store, store)
    what = overwrite(store, seed)
    out = run_all_commands(store)
    if what == "truncated":  # found at open: no command reads it
        assert all(p.returncode == 1 and "damaged" in p.stderr for p in out.values()), \
            {c: p.stderr for c, p in out.items()}
    # (A meta page LMDB does not use, or bytes it ignores, may well go unnoticed.)
    problems = verify_repair_clean(store)
    if what == "truncated":
        assert any(p["category"] == "structure" and p["where"] == "data.mdb" for p in problems)


def test_a_reader_that_does_not_finish_is_stopped(built):
    # A store crafted to make LMDB loop cannot be made deterministically (its cursor stack
    # depth and the open's page checks stop the loops one can craft), so the test hook
    # CELLAR_CLI_TEST_HANG=1 makes the reader child hang once the store is open.
    env = dict(os.environ, CELLAR_DIR=str(built["store"]), CELLAR_CLI_TEST_HANG="1",
               CELLAR_CLI_TIMEOUT="1")
    for cmd in (["ls"], ["stats", "--json"], ["log"], ["show", "raw"]):
        t0 = time.monotonic()
        p = subprocess.run([CELLAR, *cmd], capture_output=True, text=True, env=env, timeout=30)
        took = time.monotonic() - t0
        assert p.returncode == 2 and p.stdout == "", (cmd, p.returncode, p.stdout, p.stderr)
        assert "did not finish within 1 s" in p.stderr and "CELLAR_CLI_TIMEOUT" in p.stderr
        assert "cellar verify" in p.stderr and str(built["store"]) in p.stderr, p.stderr
        assert 0.9 < took < 10, took
    # Without the hook the same limit lets a sound store's commands finish.
    env.pop("CELLAR_CLI_TEST_HANG")
    p = subprocess.run([CELLAR, "ls", "--json"], capture_output=True, text=True, env=env,
                       timeout=30)
    assert p.returncode == 0 and len(json.loads(p.stdout)["keys"]) == 8, p.stderr
