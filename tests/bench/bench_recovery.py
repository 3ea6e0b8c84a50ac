"""What crash recovery costs under the cellar kernel: the time from the kernel's death
(SIGKILL of ipykernel in the middle of a cell) to the next `%cellar run` answered, with its
results loaded from the store, for a chain of N nodes; next to it, as the reference
measured in the same run, the same session restarted by hand: `restart_kernel`, every
definition cell run again, then the same `%cellar run`.

    .venv/bin/python tests/bench/bench_recovery.py [--nodes 10 1000] [--reps 3]
"""

import argparse
import os
import signal
import statistics
import subprocess
import tempfile
import time

from jupyter_client import KernelManager


def cells(n):
    """The session: a literal, then the chain n0 -> n1 -> ... in cells of 100 nodes."""
    out = ["SCALE = 3\n"]
    body = []
    for i in range(n):
        body.append(f"def n{i}({'n%d' % (i - 1) if i else ''}):\n"
                    f"    return {'n%d + SCALE' % (i - 1) if i else 'SCALE'}\n")
        if len(body) == 100 or i == n - 1:
            out.append("\n".join(body))
            body = []
    return out


def execute(kc, code, timeout=600):
    msg = kc.session.msg("execute_request", {"code": code, "silent": False,
                                             "store_history": True, "user_expressions": {},
                                             "allow_stdin": False, "stop_on_error": True})
    kc.shell_channel.send(msg)
    return msg["header"]["msg_id"]


def reply(kc, msg_id, timeout=600):
    while True:
        r = kc.shell_channel.get_msg(timeout=timeout)
        if r["parent_header"].get("msg_id") == msg_id:
            return r["content"]


def ok(kc, code):
    c = reply(kc, execute(kc, code))
    assert c["status"] == "ok", c
    return c


def session(n, cwd):
    km = KernelManager(kernel_name="cellar")
    km.start_kernel(cwd=cwd, env=dict(os.environ, CELLAR_DIR=os.path.join(cwd, "store")),
                    stderr=subprocess.DEVNULL)
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    for c in cells(n):
        ok(kc, c)
    ok(kc, f"_v = %cellar run n{n - 1}")
    return km, kc


def child_pid(kc):
    msg_id = execute(kc, "import os; _pid = os.getpid()", 60)
    reply(kc, msg_id)
    msg_id = kc.execute("_pid", silent=False)
    while True:
        m = kc.get_iopub_msg(timeout=60)
        if m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "execute_result":
            return int(m["content"]["data"]["text/plain"])


def recover(n, cwd):
    km, kc = session(n, cwd)
    try:
        pid = child_pid(kc)
        mid = execute(kc, "import time; time.sleep(60)")
        time.sleep(0.5)
        t = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        assert reply(kc, mid)["ename"] == "KernelDied"
        ok(kc, f"_v = %cellar run n{n - 1}")
        took = time.perf_counter() - t
        ok(kc, f"assert _v == {3 * n}")
        return took
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def by_hand(n, cwd):
    km, kc = session(n, cwd)
    try:
        t = time.perf_counter()
        km.restart_kernel(now=True)
        kc.wait_for_ready(timeout=60)
        for c in cells(n):
            ok(kc, c)
        ok(kc, f"_v = %cellar run n{n - 1}")
        return time.perf_counter() - t
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[10, 1000])
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    print("crash recovery: SIGKILL of the kernel mid-cell to the next %cellar run answered")
    for n in a.nodes:
        rec, ref = [], []
        for _ in range(a.reps):
            with tempfile.TemporaryDirectory() as d:
                rec.append(recover(n, d))
            with tempfile.TemporaryDirectory() as d:
                ref.append(by_hand(n, d))
        r, h = statistics.median(rec), statistics.median(ref)
        print(f"  {n:5d} nodes: recovery {r:7.3f} s   restart by hand {h:7.3f} s   "
              f"ratio {r / h:5.2f}  (median of {a.reps})")


if __name__ == "__main__":
    main()
