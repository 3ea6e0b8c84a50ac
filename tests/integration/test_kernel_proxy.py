"""cellar-kernel, the proxy in front of ipykernel, through the "cellar" kernelspec that
`pip install .` installed into this environment, driven by real jupyter_client clients
and, where a test must send what jupyter_client never would, by raw pyzmq sockets.

Side effects that must not happen (a forged or replayed cell) are files the cell would
write; processes that must be gone are looked up in /proc."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import zmq

from proxy_client import (alive, collect, evaluate, frames, ok, proxy_pid, raw_socket,
                          receive_reply, run, second_client, start, wait_gone)

VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One proxied kernel for the tests that leave it as they found it."""
    cwd = tmp_path_factory.mktemp("proxy")
    km, kc = start(cwd, stderr_path=cwd / "kernel.stderr")
    yield km, kc, cwd
    kc.stop_channels()
    pids = [proxy_pid(km)]
    km.shutdown_kernel(now=False)
    assert wait_gone(pids) == []


@pytest.fixture
def own(tmp_path):
    """A proxied kernel of the test's own, shut down (and checked gone) afterwards."""
    km, kc = start(tmp_path, stderr_path=tmp_path / "kernel.stderr")
    yield km, kc, tmp_path
    kc.stop_channels()
    if km.has_kernel:
        km.shutdown_kernel(now=True)


def control(kc, msg_type: str, content: dict) -> dict:
    """Sends a request on control and returns its reply (skipping older replies)."""
    msg = kc.session.msg(msg_type, content)
    kc.control_channel.send(msg)
    while True:
        reply = kc.control_channel.get_msg(timeout=30)
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            return reply


def child_pid(kc) -> int:
    return evaluate(kc, "__import__('os').getpid()")


def test_kernelspec_is_installed_and_runs_the_env_python(shared):
    km, kc, _ = shared
    out = subprocess.run([str(VENV_BIN / "jupyter"), "kernelspec", "list", "--json"],
                         capture_output=True, text=True, check=True)
    spec = json.loads(out.stdout)["kernelspecs"]["cellar"]
    assert spec["spec"]["display_name"] == "Python 3 (cellar)"
    assert Path(spec["resource_dir"]).resolve().is_relative_to(Path(sys.prefix).resolve())
    # The kernel's parent is cellar-kernel, and the kernel is this environment's python.
    info = evaluate(kc, "[__import__('os').getppid(), __import__('sys').executable]")
    assert info[0] == proxy_pid(km)
    assert Path(f"/proc/{info[0]}/exe").resolve().name == "cellar-kernel"
    assert Path(info[1]) == Path(sys.executable)
    assert evaluate(kc, "__import__('os').environ['JPY_PARENT_PID']") == str(info[0])


def test_stream_display_error_and_rich_outputs(shared):
    _, kc, _ = shared
    r = ok(kc, "import sys\nprint('to out')\nprint('to err', file=sys.stderr)")
    streams = {(m["content"]["name"], m["content"]["text"]) for m in r.of_type("stream")}
    assert streams == {("stdout", "to out\n"), ("stderr", "to err\n")}

    r = ok(kc, "from IPython.display import display, HTML\n"
               "display(HTML('<b>bold</b>'))\n"
               "class Rich:\n"
               "    def _repr_html_(self): return '<i>rich</i>'\n"
               "    def _repr_markdown_(self): return '*rich*'\n"
               "Rich()")
    (disp,) = r.of_type("display_data")
    assert disp["content"]["data"]["text/html"] == "<b>bold</b>"
    (res,) = r.of_type("execute_result")
    assert res["content"]["data"]["text/html"] == "<i>rich</i>"
    assert res["content"]["data"]["text/markdown"] == "*rich*"
    assert res["content"]["execution_count"] == r.reply["content"]["execution_count"]

    r = run(kc, "1/0")
    assert r.reply["content"]["status"] == "error"
    assert r.reply["content"]["ename"] == "ZeroDivisionError"
    (err,) = r.of_type("error")
    assert err["content"]["ename"] == "ZeroDivisionError"


def test_input_reaches_the_client_that_asked(shared):
    km, kc, _ = shared
    other = second_client(km)  # connected, but must never see the input_request
    try:
        msg_id = kc.execute("answer = input('name? ')", allow_stdin=True)
        req = kc.get_stdin_msg(timeout=30)
        assert req["msg_type"] == "input_request"
        assert req["content"]["prompt"] == "name? "
        kc.input("forty two")
        r = collect(kc, msg_id)
        assert r.reply["content"]["status"] == "ok"
        assert evaluate(kc, "answer") == "forty two"
        with pytest.raises(Exception):
            other.get_stdin_msg(timeout=0.5)
    finally:
        other.stop_channels()


ECHO_TARGET = """
import hashlib
_got = []
def _echo_target(comm, open_msg):
    @comm.on_msg
    def _on(msg):
        bufs = [bytes(b) for b in msg["buffers"]]
        _got.append([hashlib.sha256(b).hexdigest() for b in bufs])
        comm.send(data={"n": len(bufs)}, buffers=[b[::-1] for b in bufs])
get_ipython().kernel.comm_manager.register_target("echo", _echo_target)
"""


def comm_roundtrip(kc, buffers: list[bytes], timeout: float = 60.0) -> list[bytes]:
    """Opens an "echo" comm, sends `buffers`, returns the buffers it sent back."""
    comm_id = uuid.uuid4().hex
    kc.session.send(kc.shell_channel.socket, "comm_open",
                    {"comm_id": comm_id, "target_name": "echo", "data": {}})
    kc.session.send(kc.shell_channel.socket, "comm_msg",
                    {"comm_id": comm_id, "data": {"hello": 1}}, buffers=buffers)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = kc.get_iopub_msg(timeout=deadline - time.monotonic())
        if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == comm_id:
            assert m["content"]["data"] == {"n": len(buffers)}
            return [bytes(b) for b in m["buffers"]]
    raise AssertionError("no comm_msg came back")


def test_comm_binary_buffers_byte_identical_both_ways(shared):
    _, kc, _ = shared
    ok(kc, ECHO_TARGET)
    sent = [os.urandom(1000), b"", bytes(range(256)) * 3, b"\x00" * 17]
    back = comm_roundtrip(kc, sent)
    assert back == [b[::-1] for b in sent]
    assert evaluate(kc, "_got[-1]") == [hashlib.sha256(b).hexdigest() for b in sent]


def test_comm_message_of_64_mib(shared):
    _, kc, _ = shared
    ok(kc, ECHO_TARGET)
    big = os.urandom(64 << 20)
    t = time.monotonic()
    back = comm_roundtrip(kc, [big])
    elapsed = time.monotonic() - t
    assert hashlib.sha256(back[0]).digest() == hashlib.sha256(big[::-1]).digest()
    assert evaluate(kc, "_got[-1]") == [hashlib.sha256(big).hexdigest()]
    assert elapsed < 30


def test_subshell_created_and_used(shared):
    km, kc, _ = shared
    info = kc.kernel_info(reply=True, timeout=30)
    assert "kernel subshells" in info["content"].get("supported_features", [])
    sid = control(kc, "create_subshell_request", {})["content"]["subshell_id"]
    # A long cell on the main shell; the subshell answers meanwhile.
    slow = kc.execute("import time; time.sleep(3)")
    quick = kc.session.msg("execute_request", {"code": "import threading\n"
                           "print(threading.current_thread().name)", "silent": False,
                           "store_history": False, "user_expressions": {},
                           "allow_stdin": False, "stop_on_error": True})
    quick["header"]["subshell_id"] = sid
    t = time.monotonic()
    kc.shell_channel.send(quick)
    r = collect(kc, quick["header"]["msg_id"])
    assert time.monotonic() - t < 2.5
    assert r.reply["content"]["status"] == "ok"
    assert r.reply["parent_header"]["subshell_id"] == sid
    assert "MainThread" not in r.stdout
    collect(kc, slow)
    assert sid in control(kc, "list_subshell_request", {})["content"]["subshell_id"]


def test_two_clients_get_their_own_replies_and_all_iopub(shared):
    km, kc, _ = shared
    kc2 = second_client(km)
    try:
        assert kc2.session.bsession != kc.session.bsession
        id1 = kc.execute("print('from one')")
        id2 = kc2.execute("print('from two')")
        r1, r2 = collect(kc, id1), collect(kc2, id2)
        assert r1.stdout == "from one\n" and r2.stdout == "from two\n"
        # Each reply went to its own client only: nothing else is waiting on shell.
        for c in (kc, kc2):
            with pytest.raises(Exception):
                c.get_shell_msg(timeout=0.5)
        # iopub reached both: client two saw client one's output too.
        seen = r2.others
        while True:
            try:
                seen.append(kc2.get_iopub_msg(timeout=0.5))
            except Exception:
                break
        assert [m["content"]["text"] for m in seen if m["msg_type"] == "stream"
                and m["parent_header"].get("msg_id") == id1] == ["from one\n"]
    finally:
        kc2.stop_channels()


def test_interrupt_in_signal_mode(shared):
    km, kc, _ = shared
    assert km.kernel_spec.interrupt_mode == "signal"
    before = proxy_pid(km)
    msg_id = kc.execute("import time; time.sleep(30)")
    time.sleep(1.0)
    t = time.monotonic()
    km.interrupt_kernel()
    r = collect(kc, msg_id, timeout=10)
    assert time.monotonic() - t < 5
    assert r.reply["content"]["ename"] == "KeyboardInterrupt"
    assert alive(before) and proxy_pid(km) == before
    assert ok(kc, "print(6 * 7)").stdout == "42\n"


def test_interrupt_in_message_mode(shared):
    km, kc, _ = shared
    msg_id = kc.execute("import time; time.sleep(30)")
    time.sleep(1.0)
    t = time.monotonic()
    kc.control_channel.send(kc.session.msg("interrupt_request", {}))
    r = collect(kc, msg_id, timeout=10)
    assert time.monotonic() - t < 5
    assert r.reply["content"]["ename"] == "KeyboardInterrupt"
    assert ok(kc, "print(6 * 7)").stdout == "42\n"


def test_forged_unsigned_and_replayed_messages_never_run(shared):
    km, kc, cwd = shared
    key = km.session.key
    ctx = zmq.Context.instance()
    sock = raw_socket(ctx, km, "shell")
    try:
        def cell(name):
            return {"code": f"open({str(cwd / name)!r}, 'a').write('ran\\n')",
                    "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True}
        sock.send_multipart(frames(key, "execute_request", cell("forged"),
                                   sign_with=b"not the key"))
        unsigned = frames(key, "execute_request", cell("unsigned"))
        unsigned[1] = b""
        sock.send_multipart(unsigned)
        good = frames(key, "execute_request", cell("replayed"))
        sock.send_multipart(good)
        reply = receive_reply(sock, timeout=30)
        assert reply and reply["content"]["status"] == "ok"
        sock.send_multipart(good)  # the same frames again: a replay
        assert receive_reply(sock, timeout=2.0) is None
        ok(kc, "pass")  # everything before this has been handled
        assert not (cwd / "forged").exists()
        assert not (cwd / "unsigned").exists()
        assert (cwd / "replayed").read_text() == "ran\n"
        log = (cwd / "kernel.stderr").read_text()
        assert "bad signature" in log and "unsigned" in log and "replayed" in log
    finally:
        sock.close()


def test_garbage_frames_do_not_stop_it(shared):
    km, kc, cwd = shared
    ctx = zmq.Context.instance()
    socks = [raw_socket(ctx, km, ch) for ch in ("shell", "control", "stdin")]
    hb = raw_socket(ctx, km, "hb", zmq.REQ)
    xsub = raw_socket(ctx, km, "iopub", zmq.XSUB)
    try:
        rnd = [os.urandom(n) for n in (0, 1, 9, 64, 1000)]
        for s in socks:
            s.send(b"")
            s.send_multipart(rnd)
            s.send_multipart([b"<IDS|MSG>"])
            s.send_multipart([b"<IDS|MSG>", b"sig", b"{", b"}", b"[", b"\xff"])
            s.send_multipart([b"x"] * 2000)
        xsub.send(b"\x07garbage")
        xsub.send_multipart([b"\x01", b"two frames"])
        xsub.send(b"\x01\xff\xfe not utf-8 topic")
        # Too many frames: over the limit of 65536, dropped whole.
        good = frames(km.session.key, "execute_request",
                      {"code": f"open({str(cwd / 'toomany')!r}, 'w')", "silent": False})
        socks[0].send_multipart(good + [b""] * 65537)
        # A peer that disappears with a message half sent.
        half = raw_socket(ctx, km, "shell")
        half.send(b"<IDS|MSG>", zmq.SNDMORE)
        half.close(linger=0)
        hb.send(b"ping")
        assert hb.poll(5000) and hb.recv() == b"ping"
        assert ok(kc, "print('still here')").stdout == "still here\n"
        assert not (cwd / "toomany").exists()
        # The 65,543-frame message may still be arriving when the short execute,
        # from another peer of the same ROUTER, has been answered.
        deadline = time.monotonic() + 10
        while ("over the size limit" not in (cwd / "kernel.stderr").read_text()
               and time.monotonic() < deadline):
            time.sleep(0.05)
        assert "over the size limit" in (cwd / "kernel.stderr").read_text()
    finally:
        for s in socks + [hb, xsub]:
            s.close(linger=0)


def test_iopub_welcome_answers_each_subscription(shared):
    km, kc, _ = shared
    ctx = zmq.Context.instance()
    sub = raw_socket(ctx, km, "iopub", zmq.SUB)
    try:
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        assert sub.poll(5000)
        parts = sub.recv_multipart()
        i = parts.index(b"<IDS|MSG>")
        header, content = json.loads(parts[i + 2]), json.loads(parts[i + 5])
        assert header["msg_type"] == "iopub_welcome"
        assert content == {"subscription": ""}
        km.session.digest_history.clear()
        msg = km.session.deserialize(parts[i + 1:])  # raises on a bad signature
        assert msg["msg_type"] == "iopub_welcome"
    finally:
        sub.close(linger=0)


def test_kill_9_of_the_child_mid_cell_answers_and_carries_on(own):
    km, kc, cwd = own
    proxy, child = proxy_pid(km), child_pid(kc)
    ok(kc, "x = len('computed')")  # not a definition: crash recovery does not replay it
    msg_id = kc.execute("import time; time.sleep(30)")
    time.sleep(1.0)
    os.kill(child, signal.SIGKILL)
    r = collect(kc, msg_id, timeout=10)
    assert r.reply["content"]["status"] == "error"
    assert r.reply["content"]["ename"] == "KernelDied"
    assert any(m["content"]["ename"] == "KernelDied" for m in r.of_type("error"))
    # What frontends show is the traceback: it must name the error too.
    assert [m["content"]["traceback"] for m in r.of_type("error")] == [
        ["\x1b[0;31mKernelDied\x1b[0m: " + r.reply["content"]["evalue"]]]
    assert wait_gone([child]) == []
    # The same proxy, a new child, and the session goes on (its computed variables are
    # gone; test_kernel_recovery.py covers what is replayed).
    new_child = child_pid(kc)
    assert new_child != child and proxy_pid(km) == proxy and alive(proxy)
    assert ok(kc, "print('next')").stdout == "next\n"
    assert run(kc, "x").reply["content"]["ename"] == "NameError"
    km.shutdown_kernel(now=False)
    assert wait_gone([proxy, new_child]) == []


def test_restart_and_shutdown_leave_no_process(own):
    km, kc, _ = own
    proxy, child = proxy_pid(km), child_pid(kc)
    km.restart_kernel(now=False)
    assert wait_gone([proxy, child]) == []
    kc.wait_for_ready(timeout=60)
    proxy2, child2 = proxy_pid(km), child_pid(kc)
    assert proxy2 != proxy and alive(proxy2) and alive(child2)
    t = time.monotonic()
    km.shutdown_kernel(now=False)
    assert wait_gone([proxy2, child2], timeout=3.0) == []
    assert time.monotonic() - t < 5


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killing_the_proxy_takes_the_child(own, sig):
    km, kc, _ = own
    proxy, child = proxy_pid(km), child_pid(kc)
    os.kill(proxy, sig)
    assert wait_gone([proxy, child], timeout=5.0) == []
    km.provisioner.process.wait(timeout=5)


def test_signal_mode_interrupt_reaches_the_kernel_exactly_once(shared):
    km, kc, _ = shared
    msg_id = kc.execute(
        "import signal, time\n"
        "_sigints = []\n"
        "_old = signal.signal(signal.SIGINT, lambda *a: _sigints.append(1))\n"
        "try:\n"
        "    time.sleep(2.5)\n"
        "finally:\n"
        "    signal.signal(signal.SIGINT, _old)\n")
    time.sleep(1.0)
    km.interrupt_kernel()
    assert collect(kc, msg_id).reply["content"]["status"] == "ok"
    assert evaluate(kc, "len(_sigints)") == 1


def test_protocol_requests_pass_through(shared):
    _, kc, _ = shared
    ok(kc, "some_variable_name = 1")
    mid = kc.is_complete("for x in y:")
    reply = kc.get_shell_msg(timeout=30)
    assert reply["parent_header"]["msg_id"] == mid
    assert reply["content"]["status"] == "incomplete"
    comp = kc.complete("some_variable_na", reply=True)["content"]
    assert "some_variable_name" in comp["matches"]
    insp = kc.inspect("len", reply=True)["content"]
    assert insp["found"] and "text/plain" in insp["data"]
    hist = kc.history(hist_access_type="tail", n=5, reply=True)["content"]
    assert hist["status"] == "ok"
    reply = control(kc, "debug_request", {"type": "request", "seq": 1,
                                          "command": "initialize",
                                          "arguments": {"adapterID": "cellar-test"}})
    assert reply["msg_type"] == "debug_reply"
    assert reply["content"]["command"] == "initialize"


def test_ipc_transport(tmp_path):
    km, kc = start(tmp_path, manager={"kernel_name": "cellar", "transport": "ipc",
                                      "ip": str(tmp_path / "k")})
    try:
        assert km.get_connection_info()["transport"] == "ipc"
        assert ok(kc, "print('over ipc')").stdout == "over ipc\n"
    finally:
        kc.stop_channels()
        pids = [proxy_pid(km)]
        km.shutdown_kernel(now=False)
        assert wait_gone(pids) == []


def cellar(*args, **kw):
    return subprocess.run([str(VENV_BIN / "cellar"), *args], capture_output=True,
                          text=True, **kw)


def test_install_kernel_and_message_mode_interrupt(tmp_path):
    from jupyter_client.kernelspec import KernelSpecManager

    out = cellar("install-kernel", "--prefix", str(tmp_path / "env"), "--name",
                 "cellar-msg", "--display-name", "cellar, message mode",
                 "--interrupt-mode", "message")
    assert out.returncode == 0, out.stderr
    spec_file = tmp_path / "env/share/jupyter/kernels/cellar-msg/kernel.json"
    spec = json.loads(spec_file.read_text())
    assert spec["argv"][0] == str(VENV_BIN / "cellar-kernel")
    assert spec["argv"][4] == str(VENV_BIN / "python")
    assert spec["display_name"] == "cellar, message mode"
    assert spec["interrupt_mode"] == "message"
    # --user goes to $JUPYTER_DATA_DIR; bad names are refused.
    env = dict(os.environ, JUPYTER_DATA_DIR=str(tmp_path / "user"))
    assert cellar("install-kernel", "--user", env=env).returncode == 0
    assert (tmp_path / "user/kernels/cellar/kernel.json").is_file()
    assert cellar("install-kernel", "--name", "../evil", "--prefix",
                  str(tmp_path)).returncode == 2

    ksm = KernelSpecManager(kernel_dirs=[str(spec_file.parent.parent)])
    km, kc = start(tmp_path, manager={"kernel_name": "cellar-msg",
                                      "kernel_spec_manager": ksm})
    try:
        assert km.kernel_spec.interrupt_mode == "message"
        msg_id = kc.execute("import time; time.sleep(30)")
        time.sleep(1.0)
        t = time.monotonic()
        km.interrupt_kernel()  # an interrupt_request on control, in this mode
        r = collect(kc, msg_id, timeout=10)
        assert time.monotonic() - t < 5
        assert r.reply["content"]["ename"] == "KeyboardInterrupt"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def connection_file(path: Path, **over) -> Path:
    from jupyter_client.connect import write_connection_file

    write_connection_file(str(path), key=b"k")  # free tcp ports
    data = json.loads(path.read_text())
    data.update(over)
    path.write_text(json.dumps(data))
    return path


def test_a_kernel_that_cannot_start_is_given_up_clearly(tmp_path):
    conn = connection_file(tmp_path / "c.json")
    t = time.monotonic()
    p = subprocess.run([str(VENV_BIN / "cellar-kernel"), "-f", str(conn), "--", "false"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1
    assert "giving up" in p.stderr
    assert time.monotonic() - t < 10


@pytest.mark.parametrize("over,says", [({"signature_scheme": "hmac-md5"}, "hmac-md5"),
                                       ({"shell_port": "x"}, "shell_port"),
                                       ({"transport": "udp"}, "udp")])
def test_a_bad_connection_file_is_refused_clearly(tmp_path, over, says):
    conn = connection_file(tmp_path / "c.json", **over)
    p = subprocess.run([str(VENV_BIN / "cellar-kernel"), "-f", str(conn), "--",
                        sys.executable, "-m", "ipykernel_launcher"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 1
    assert says in p.stderr


def test_oversize_messages_are_dropped_both_ways(tmp_path):
    env = dict(os.environ, CELLAR_KERNEL_MAX_MESSAGE=str(1 << 20))
    km, kc = start(tmp_path, stderr_path=tmp_path / "kernel.stderr", env=env)
    try:
        ok(kc, ECHO_TARGET)
        small = os.urandom(100_000)
        assert comm_roundtrip(kc, [small]) == [small[::-1]]
        with pytest.raises(Exception):
            comm_roundtrip(kc, [os.urandom(2 << 20)], timeout=3)
        assert evaluate(kc, "len(_got)") == 1  # the big one never reached the kernel
        # From the kernel: the 2 MiB stream is dropped, the cell still finishes.
        r = ok(kc, "print('x' * (2 << 20))")
        assert r.stdout == ""
        assert ok(kc, "print('after')").stdout == "after\n"
        log = (tmp_path / "kernel.stderr").read_text()
        assert "from shell: over the size limit" in log
        assert "from the kernel: over the size limit" in log
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _cpus(status_path: str) -> set[int]:
    """The CPUs a task may run on, from its Cpus_allowed_list in /proc."""
    for line in open(status_path):
        if line.startswith("Cpus_allowed_list:"):
            cpus = set()
            for part in line.split(":", 1)[1].strip().split(","):
                lo, _, hi = part.partition("-")
                cpus.update(range(int(lo), int(hi or lo) + 1))
            return cpus
    raise AssertionError(f"no Cpus_allowed_list in {status_path}")


@pytest.mark.parametrize("setting", [None, "off", "bogus"])
def test_relay_threads_share_one_cpu_and_the_kernel_gets_them_all(tmp_path, setting):
    """The proxy's threads run on one CPU (unless CELLAR_KERNEL_CPU=off or a value that
    is not a CPU, which is a warning), and its kernel on every CPU the proxy was given."""
    mine = os.sched_getaffinity(0)
    if len(mine) < 2:
        pytest.skip("only one CPU: nothing is pinned")
    env = dict(os.environ)
    env.pop("CELLAR_KERNEL_CPU", None)
    if setting:
        env["CELLAR_KERNEL_CPU"] = setting
    km, kc = start(tmp_path, stderr_path=tmp_path / "kernel.stderr", env=env)
    try:
        pid = proxy_pid(km)
        threads = {int(t): _cpus(f"/proc/{pid}/task/{t}/status")
                   for t in os.listdir(f"/proc/{pid}/task")}
        assert len(threads) >= 3, threads  # the relay, libzmq's I/O thread, the journal's
        if setting is None:
            # The relay (the main thread) and libzmq's I/O thread on one CPU; the
            # journal's writer, started before them, on all.
            pinned = [t for t in threads.values() if t == threads[pid]]
            assert len(threads[pid]) == 1 and len(pinned) >= 2, threads
            assert all(t == mine for t in threads.values() if t != threads[pid]), threads
            assert len(pinned) < len(threads), threads
        else:
            assert all(t == mine for t in threads.values()), threads
        # The kernel's own view, from inside it.
        child = evaluate(kc, "sorted(__import__('os').sched_getaffinity(0))")
        assert set(child) == mine
        assert ok(kc, "1 + 1")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    said = (tmp_path / "kernel.stderr").read_text()
    assert ("CELLAR_KERNEL_CPU='bogus' is not a CPU" in said) == (setting == "bogus")


def _ping(hb, payload: bytes, wait_ms: int) -> bool:
    """One heartbeat ping on a DEALER (so that an unanswered one does not wedge the
    socket, as a REQ's would); True when its echo came back within wait_ms."""
    hb.send_multipart([b"", payload])
    deadline = time.monotonic() + wait_ms / 1000
    while (left := deadline - time.monotonic()) > 0:
        if hb.poll(int(left * 1000) + 1) and hb.recv_multipart()[-1] == payload:
            return True
    return False


def test_heartbeat_is_the_childs_own_and_survives_a_crash(own):
    """Pings reach ipykernel's heartbeat: a stopped child stops answering them, as it
    would without the proxy, and answers the queued ones when it goes on; while a
    killed child is replaced, the proxy answers, so the frontend stays connected."""
    km, kc, _ = own
    ctx = zmq.Context.instance()
    hb = raw_socket(ctx, km, "hb")
    try:
        assert _ping(hb, b"first", 5000)
        pid = child_pid(kc)
        os.kill(pid, signal.SIGSTOP)
        try:
            assert not _ping(hb, b"while stopped", 1500)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert _ping(hb, b"after", 5000)
        os.kill(pid, signal.SIGKILL)
        answered = [_ping(hb, b"recovery %d" % i, 1000) for i in range(5)]
        assert all(answered[1:]), answered  # the first may have gone to the dead child
        assert child_pid(kc) != pid
        assert _ping(hb, b"new child", 5000)
    finally:
        hb.close(linger=0)
