"""Node behaviours through real kernels (Hamilton's caching behaviours): `recompute`, `disable`
and `ignore`, each from `@cellar.node(behavior=...)` and from the run's options (`%cellar run
--recompute/--disable/--ignore`, `cellar.run(recompute=, disable=, ignore=)`), and the default
behaviour from CELLAR_DEFAULT_BEHAVIOR and `%cellar default-behavior`. Bodies are counted through
the side-effect log; what is stored is read with `cellar ls --json`, and after a restart."""

from __future__ import annotations

import json
import re
import subprocess
import textwrap

from conftest import calls, cellar_bin

CELLAR = cellar_bin()


def stored_keys(store, node: str) -> int:
    proc = subprocess.run([CELLAR, "ls", "--dir", str(store), "--json"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return sum(1 for k in json.loads(proc.stdout)["keys"] if k["node"] == node)


# `fetched` reads a file cellar does not track (as an API call would): only a recompute sees
# a new value.
RECOMPUTE = textwrap.dedent(
    """\
    import cellar

    @cellar.node(behavior="recompute")
    def fetched():
        _log("fetched")
        with open("value.txt") as f:
            return int(f.read())

    def summary(fetched):
        _log("summary")
        return fetched + 1

    def plain(n):
        _log("plain")
        return n * 10
    """
)


def test_recompute_from_the_decorator_and_the_options(kernel_factory):
    k = kernel_factory()
    (k.dir / "value.txt").write_text("1")
    k.setup()
    k.ok(RECOMPUTE, cell_id="nodes")
    res = k.ok("v = cellar.run('summary')")
    assert k.eval("v") == 2 and k.take_calls() == calls("fetched", "summary")
    assert res.report.status("fetched") == "computed"
    assert "recompute" in res.report.text, "the report names the behaviour"

    # Same value: it reruns, and the downstream node is cut off.
    rep = k.ok("v = cellar.run('summary')").report
    assert k.take_calls() == calls("fetched")
    assert rep.status("fetched") == "computed" and rep.status("summary") == "in memory"
    # A new value behind it: the downstream node reruns.
    (k.dir / "value.txt").write_text("5")
    k.ok("v = cellar.run('summary')")
    assert k.eval("v") == 6 and k.take_calls() == calls("fetched", "summary")

    # Still stored: after a restart, recomputed, and the downstream node loads.
    assert stored_keys(k.store, "fetched") >= 1
    k.restart()
    k.setup()
    k.ok(RECOMPUTE, cell_id="nodes")
    rep = k.cellar_run("summary").ok().report
    assert k.take_calls() == calls("fetched")
    assert rep.status("summary") == "loaded" and k.eval("_v") == 6

    # The option, on a node without a mark: from the magic and from cellar.run.
    k.ok("_v = %cellar run plain --input n=2")
    assert k.take_calls() == calls("plain")
    rep = k.cellar_run("plain --input n=2 --recompute plain").ok().report
    assert rep.status("plain") == "computed" and k.take_calls() == calls("plain")
    k.ok("v = cellar.run('plain', n=2, recompute=['plain'])")
    assert k.take_calls() == calls("plain")
    rep = k.cellar_run("plain --input n=2").ok().report
    assert rep.status("plain") == "in memory" and k.take_calls() == calls(), "for one run only"
    assert "behavior" not in rep.text, "no behaviour column when every node is default"
    # Several nodes at once, as a comma list.
    k.ok("_v = %cellar run summary plain --input n=2 --recompute=plain,summary")
    assert k.take_calls() == calls("fetched", "plain", "summary")


DISABLE = textwrap.dedent(
    """\
    import cellar

    @cellar.node(behavior="disable")
    def conn(n):
        _log("conn")
        return n

    def use(conn):
        _log("use")
        return conn + 1

    def other(n):
        _log("other")
        return n * 3

    def after(other):
        _log("after")
        return other - 1
    """
)


def test_disable_never_stores_nor_reuses_and_reruns_downstream(kernel_factory):
    k = kernel_factory()
    k.setup()
    k.ok(DISABLE, cell_id="nodes")
    for _ in range(2):
        rep = k.ok("v = cellar.run('use', n=4)").report
        assert k.eval("v") == 5
        assert k.take_calls() == calls("conn", "use"), "not reused from memory either"
        assert rep.status("conn") == "computed" and rep.status("use") == "computed"
    assert stored_keys(k.store, "conn") == 0
    status = k.ok("%cellar status --input n=4").displays[-1]["text/plain"]
    assert re.search(r"conn\s+needs run", status) and re.search(r"use\s+needs run", status), status
    k.restart()
    k.setup()
    k.ok(DISABLE, cell_id="nodes")
    k.ok("v = cellar.run('use', n=4)")
    assert k.take_calls() == calls("conn", "use"), "nothing loaded after a restart"

    # From the options, on default nodes: `other` is neither stored nor reused.
    k.ok("v = cellar.run('after', n=1)")
    assert k.take_calls() == calls("other", "after")
    before = stored_keys(k.store, "other")
    rep = k.cellar_run("after --input n=1 --disable other").ok().report
    assert k.take_calls() == calls("other", "after")
    assert "disable" in rep.text
    k.ok("v = cellar.run('after', n=2, disable=['other'])")
    assert k.take_calls() == calls("other", "after") and k.eval("v") == 5
    assert stored_keys(k.store, "other") == before, "a disabled node stores nothing"
    k.ok("v = cellar.run('after', n=1)")
    assert k.take_calls() == calls(), "without the option, the stored results serve again"


IGNORE = textwrap.dedent(
    """\
    import threading
    import cellar

    class Client:  # unpicklable, as clients and connections are
        def __init__(self, endpoint="local"):
            self.endpoint = endpoint
            self.lock = threading.Lock()

    url = "https://a.example"

    @cellar.node(behavior="ignore")
    def client(url):
        _log("client")
        return Client(url)

    def rows(client, n):
        _log("rows")
        return [n] * 3 if isinstance(client, Client) else None

    def total(rows):
        _log("total")
        return sum(rows)

    def logger():
        _log("logger")
        return Client()

    def work(logger, n):
        _log("work")
        return n + 100
    """
)


def test_ignore_keeps_the_value_out_of_downstream_keys(kernel_factory):
    k = kernel_factory()
    k.setup()
    k.ok(IGNORE, cell_id="nodes")
    rep = k.ok("v = cellar.run('total', n=2)").report
    assert k.eval("v") == 6 and k.take_calls() == calls("client", "rows", "total")
    assert rep.status("client") == "computed"
    # A new client object each run, yet nothing downstream reruns, and the client is not
    # even made when nothing needs it.
    rep = k.ok("v = cellar.run('total', n=2)").report
    assert k.take_calls() == calls()
    assert rep.status("rows") == "in memory" and rep.status("client") == "skipped"
    assert "ignore" in rep.text
    # The client's own input changes (a new client, another endpoint): still nothing reruns.
    k.ok("url = 'https://b.example'")
    rep = k.ok("v = cellar.run('total', n=2)").report
    assert k.take_calls() == calls() and rep.status("total") == "in memory"
    # A real input change reruns the readers, and they get a client.
    k.ok("v = cellar.run('total', n=3)")
    assert k.eval("v") == 9 and k.take_calls() == calls("client", "rows", "total")
    # Stored without it: after a restart, loaded, and the client is not made.
    k.restart()
    k.setup()
    k.ok(IGNORE, cell_id="nodes")
    rep = k.ok("v = cellar.run('total', n=3)").report
    assert k.eval("v") == 9 and k.take_calls() == calls()
    assert rep.status("total") == "loaded"
    assert stored_keys(k.store, "client") == 0
    status = k.ok("%cellar status --input n=3").displays[-1]["text/plain"]
    assert re.search(r"client\s+needs run\s+ignore", status), status
    assert re.search(r"total\s+up to date", status), status
    # As a target it runs each time: its value is never stored nor reused.
    k.ok("c = cellar.run('client')")
    k.ok("c2 = cellar.run('client')")
    assert k.take_calls() == calls("client", "client") and k.eval("c is not c2")

    # The control: a new unpicklable value that is not ignored reruns its readers.
    k.ok("v = cellar.run('work', n=1)")
    k.ok("v = cellar.run('work', n=1, recompute=['logger'])")
    assert k.take_calls() == calls("logger", "work", "logger", "work")
    # The option: keys without it, so the second run reuses `work`.
    k.ok("_v = %cellar run work --input n=1 --ignore logger")
    assert k.take_calls() == calls("logger", "work")
    k.ok("v = cellar.run('work', n=1, ignore=['logger'])")
    assert k.take_calls() == calls() and k.eval("v") == 101


def test_default_behavior_from_env_and_magic_and_bad_names(kernel_factory):
    k = kernel_factory(extra_env={"CELLAR_DEFAULT_BEHAVIOR": "disable"})
    k.setup()
    k.ok(DISABLE.replace('@cellar.node(behavior="disable")', '@cellar.node(behavior="default")'),
         cell_id="nodes")
    k.ok("v = cellar.run('after', 'use', n=1)")
    assert k.take_calls() == calls("conn", "use", "other", "after")
    k.ok("v = cellar.run('after', 'use', n=1)")
    assert k.take_calls() == calls("other", "after", "use"), \
        "unmarked nodes are disabled; the node marked default is reused"
    assert stored_keys(k.store, "other") == 0 and stored_keys(k.store, "conn") == 1
    assert "disable" in k.ok("%cellar default-behavior").stdout

    res = k.ok("%cellar default-behavior default")
    assert "default" in res.stdout
    k.ok("v = cellar.run('after', n=1)")
    k.ok("v = cellar.run('after', n=1)")
    assert k.take_calls() == calls("other", "after")
    # A function marked after its definition (in a later cell) takes the mark.
    k.ok("cellar.node(other, behavior='disable')")
    k.ok("v = cellar.run('after', n=1)")
    assert k.take_calls() == calls("other", "after")
    k.ok("cellar.node(other)")
    k.ok("v = cellar.run('after', n=1)")
    assert k.take_calls() == calls(), "unmarked again: its stored result serves"

    # Bad names: a clear error, and nothing changes.
    err = k.run("%cellar default-behavior sometimes").error
    assert err["ename"] == "RunError" and "sometimes" in err["evalue"], err
    assert "recompute" in err["evalue"], "the error lists the behaviours"
    assert "behaviour default" in k.ok("%cellar default-behavior").stdout
    err = k.run("@cellar.node(behavior='often')\ndef x():\n    return 1").error
    assert err["ename"] == "RunError" and "often" in err["evalue"], err
    err = k.run("_v = %cellar run after --input n=1 --recompute nope").error
    assert err["ename"] == "RunError" and "'nope'" in err["evalue"], err
    err = k.run("cellar.run('after', n=1, recompute=['other'], disable=['other'])").error
    assert err["ename"] == "RunError" and "two behaviours" in err["evalue"], err
    err = k.run("_v = %cellar status --ignore other").error
    assert err["ename"] == "RunError", err
    assert k.take_calls() == calls(), "nothing ran"

    # A bad environment variable: a warning, and the default behaviour.
    (k.dir / "bad").mkdir()
    k2 = kernel_factory(workdir=k.dir / "bad", extra_env={"CELLAR_DEFAULT_BEHAVIOR": "never"})
    k2.setup()
    k2.ok(DISABLE, cell_id="nodes")
    res = k2.ok("v = cellar.run('after', n=1)")
    assert "CELLAR_DEFAULT_BEHAVIOR" in res.stderr
    k2.ok("v = cellar.run('after', n=1)")
    assert k2.take_calls() == calls("other", "after")
