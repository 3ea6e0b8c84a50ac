"""What cellar-kernel's relay costs: one ipykernel reached directly (the "python3"
kernelspec, this interpreter) and one behind cellar-kernel (the "cellar" kernelspec that
`pip install .` installed), measured in the same run, interleaved so that a noisy
neighbour hurts both alike.

    .venv/bin/python tests/bench/bench_proxy.py [--trips 2000] [--lines 200000] [--reps 3]
        [--variants bare,ext,baseline --baseline-kernel PATH] [--trips-only]

--variants adds round-trip configurations measured in the same interleaved blocks, to
split the cost: "bare" (the proxy without the extension in its kernel), "ext" (the
extension without the proxy), "baseline" (another cellar-kernel build, copied beside
this environment's python, e.g. .venv/bin/cellar-kernel-before).

1. Round trip of an empty execute_request, from send to its execute_reply on shell,
   timed in this process: median and p99, and the difference the proxy adds.
2. iopub throughput: a cell printing LINES short lines, from send to its idle status
   with every line received; the proxied rate as a ratio to the direct one.
3. A 64 MiB comm message with one buffer, echoed back by the kernel: the proxy's peak
   RSS (VmHWM) before and after, which shows how many copies of the buffer it held.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

from jupyter_client import KernelManager


# Configurations the round trip can be measured in (--variants), beside the two above:
# "bare" is cellar-kernel without the extension loaded into its ipykernel (the relay's
# own cost, against "python3"); "ext" is ipykernel with the extension loaded as
# cellar-kernel loads it, reached directly (the extension's cost, against "python3").
# "baseline" is the cellar kernelspec run by another cellar-kernel executable
# (--baseline-kernel: a copy of an earlier build), to compare two builds in one run.
VARIANTS = ("python3", "cellar", "bare", "ext", "baseline")
BASELINE_KERNEL = None


def start(name, cwd):
    km = KernelManager(kernel_name={"bare": "cellar", "ext": "python3",
                                    "baseline": "cellar"}.get(name, name))
    if name == "baseline":
        km.kernel_spec.argv[0] = BASELINE_KERNEL
    if km.kernel_name == "python3":
        km.kernel_spec.argv[0] = sys.executable
    if name == "bare":
        km.kernel_spec.argv.insert(1, "--no-extension")
    if name == "ext":
        km.kernel_spec.argv.append("--IPKernelApp.extra_extensions=cellar")
    km.start_kernel(cwd=cwd)
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    return km, kc


def drain_iopub(kc):
    while kc.iopub_channel.msg_ready():
        kc.iopub_channel.get_msg(timeout=1)


def round_trip(kc):
    """Seconds from sending an empty execute_request to its reply."""
    msg = kc.session.msg("execute_request", {"code": "", "silent": False,
                                             "store_history": False, "user_expressions": {},
                                             "allow_stdin": False, "stop_on_error": True})
    t = time.perf_counter()
    kc.shell_channel.send(msg)
    while True:
        r = kc.shell_channel.get_msg(timeout=30)
        if r["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            return time.perf_counter() - t


def flood(kc, lines):
    """Seconds for a cell printing `lines` lines to be fully received, up to idle."""
    drain_iopub(kc)
    t = time.perf_counter()
    mid = kc.execute(f"for _ in range({lines}): print('ab')")
    got = 0
    while True:
        m = kc.get_iopub_msg(timeout=120)
        if m["parent_header"].get("msg_id") != mid:
            continue
        if m["msg_type"] == "stream":
            got += m["content"]["text"].count("\n")
        elif m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            break
    elapsed = time.perf_counter() - t
    kc.get_shell_msg(timeout=30)
    assert got == lines, (got, lines)
    return elapsed


ECHO = """
def _echo(comm, _open):
    comm.on_msg(lambda m: comm.send(data={}, buffers=[bytes(b) for b in m["buffers"]]))
get_ipython().kernel.comm_manager.register_target("bench_echo", _echo)
"""


def vm_hwm_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def big_comm(km, kc, size):
    """The proxy's peak RSS (KiB) before and after a comm message of `size` bytes went
    to the kernel and back."""
    pid = km.provisioner.process.pid
    kc.execute(ECHO, reply=True, timeout=30)
    drain_iopub(kc)
    before = vm_hwm_kib(pid)
    comm_id = os.urandom(8).hex()
    kc.session.send(kc.shell_channel.socket, "comm_open",
                    {"comm_id": comm_id, "target_name": "bench_echo", "data": {}})
    payload = os.urandom(size)
    kc.session.send(kc.shell_channel.socket, "comm_msg", {"comm_id": comm_id, "data": {}},
                    buffers=[payload])
    while True:
        m = kc.get_iopub_msg(timeout=120)
        if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == comm_id:
            assert bytes(m["buffers"][0]) == payload
            break
    return before, vm_hwm_kib(pid)


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trips", type=int, default=2000)
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", help="write the raw samples here")
    ap.add_argument("--variants", default="python3,cellar",
                    help=f"round-trip configurations, comma-separated, of {','.join(VARIANTS)} "
                         "(python3 and cellar are always measured)")
    ap.add_argument("--trips-only", action="store_true", help="skip the iopub and comm parts")
    ap.add_argument("--baseline-kernel", help="a cellar-kernel executable for the baseline "
                    "variant (beside the environment's python, which it runs)")
    a = ap.parse_args()
    global BASELINE_KERNEL
    BASELINE_KERNEL = a.baseline_kernel
    if "baseline" in a.variants and not BASELINE_KERNEL:
        ap.error("the baseline variant needs --baseline-kernel")
    names = ["python3", "cellar"] + [v for v in a.variants.split(",")
                                     if v in VARIANTS and v not in ("python3", "cellar")]
    cwd = tempfile.mkdtemp(prefix="cellar-bench-proxy-")
    kernels = {}
    trips = {name: [] for name in names}
    try:
        for name in names:
            kernels[name] = start(name, cwd)
        for name, (_, kc) in kernels.items():  # warm up both
            for _ in range(50):
                round_trip(kc)
        block = 100
        for _ in range(max(1, a.trips // block)):
            for name, (_, kc) in kernels.items():
                for _ in range(block):
                    trips[name].append(round_trip(kc))
                drain_iopub(kc)
        floods = {name: [] for name in ("python3", "cellar")}
        for _ in range(0 if a.trips_only else a.reps):
            for name in floods:
                floods[name].append(flood(kernels[name][1], a.lines))
        rss = None if a.trips_only else big_comm(*kernels["cellar"], 64 << 20)
    finally:
        for km, kc in kernels.values():
            kc.stop_channels()
            km.shutdown_kernel(now=True)

    d, p = trips["python3"], trips["cellar"]
    us = 1e6
    print(f"empty execute_request round trip ({len(d)} each, interleaved in blocks of 100)")
    print(f"  direct    median {statistics.median(d) * us:8.1f} us   p99 {pct(d, .99) * us:8.1f} us")
    print(f"  proxied   median {statistics.median(p) * us:8.1f} us   p99 {pct(p, .99) * us:8.1f} us")
    for name in names[2:]:
        v = trips[name]
        print(f"  {name:9} median {statistics.median(v) * us:8.1f} us   p99 {pct(v, .99) * us:8.1f} us")
    for name in names[1:]:
        v = trips[name]
        dm = statistics.median(v) - statistics.median(d)
        print(f"  {'proxy' if name == 'cellar' else name} adds {dm * us:+.1f} us to the median "
              f"({dm / statistics.median(d) * 100:+.1f}%), "
              f"{(pct(v, .99) - pct(d, .99)) * us:+.1f} us to p99")
    if a.trips_only:
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"round_trip_s": trips}, f)
        return
    fd, fp = statistics.median(floods["python3"]), statistics.median(floods["cellar"])
    print(f"iopub: a cell printing {a.lines} lines, median of {a.reps}")
    print(f"  direct  {fd:6.3f} s  ({a.lines / fd:10.0f} lines/s)")
    print(f"  proxied {fp:6.3f} s  ({a.lines / fp:10.0f} lines/s)")
    print(f"  throughput ratio proxied/direct: {fd / fp:.3f}")
    print("a 64 MiB comm message to the kernel and back, through the proxy")
    print(f"  proxy peak RSS {rss[0] / 1024:.1f} MiB before, {rss[1] / 1024:.1f} MiB after "
          f"(+{(rss[1] - rss[0]) / 1024:.1f} MiB = {(rss[1] - rss[0]) / 65536:.2f} x the message)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"round_trip_s": trips, "flood_s": floods, "lines": a.lines,
                       "proxy_hwm_kib": rss}, f)


if __name__ == "__main__":
    main()
