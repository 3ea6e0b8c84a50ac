"""Helpers for the cellar-kernel tests: a kernel started through the installed "cellar"
kernelspec, cells run with every message collected, raw wire messages for the tests that
must send what jupyter_client never would, and process-table checks."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import zmq
from jupyter_client import BlockingKernelClient, KernelManager
from jupyter_client.session import Session

TIMEOUT = 60.0


@dataclass
class Result:
    reply: dict
    iopub: list[dict] = field(default_factory=list)
    others: list[dict] = field(default_factory=list)  # iopub for other requests, meanwhile

    def of_type(self, t: str) -> list[dict]:
        return [m for m in self.iopub if m["msg_type"] == t]

    @property
    def stdout(self) -> str:
        return "".join(m["content"]["text"] for m in self.of_type("stream")
                       if m["content"]["name"] == "stdout")


def start(cwd: Path, stderr_path: Path | None = None, manager: dict | None = None,
          **kw) -> tuple[KernelManager, BlockingKernelClient]:
    """A KernelManager on the "cellar" kernelspec as `pip install .` installed it (or as
    `manager`, KernelManager's arguments, say)."""
    km = KernelManager(**(manager or {"kernel_name": "cellar"}))
    if stderr_path is not None:
        kw["stderr"] = open(stderr_path, "wb")  # noqa: SIM115 (the kernel holds it)
    km.start_kernel(cwd=str(cwd), **kw)
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=TIMEOUT)
    return km, kc


def second_client(km: KernelManager) -> BlockingKernelClient:
    """Another client with its own session (so its own routing identity)."""
    kc = BlockingKernelClient()
    kc.load_connection_info(km.get_connection_info())
    kc.session = Session(key=km.session.key, signature_scheme=km.session.signature_scheme)
    kc.start_channels()
    kc.wait_for_ready(timeout=TIMEOUT)
    return kc


def collect(kc: BlockingKernelClient, msg_id: str, timeout: float = TIMEOUT) -> Result:
    """The shell reply to `msg_id` and every iopub message it parented, up to idle."""
    deadline = time.monotonic() + timeout
    iopub: list[dict] = []
    others: list[dict] = []
    while True:
        m = kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        if m["parent_header"].get("msg_id") != msg_id:
            others.append(m)
            continue
        iopub.append(m)
        if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            break
    while True:
        r = kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
        if r["parent_header"].get("msg_id") == msg_id:
            return Result(r, iopub, others)


def run(kc: BlockingKernelClient, code: str, timeout: float = TIMEOUT, **kw) -> Result:
    return collect(kc, kc.execute(code, **kw), timeout)


def ok(kc: BlockingKernelClient, code: str, timeout: float = TIMEOUT) -> Result:
    r = run(kc, code, timeout)
    assert r.reply["content"]["status"] == "ok", r.reply["content"]
    return r


def evaluate(kc: BlockingKernelClient, expr: str):
    """The value of a Python expression in the kernel, through JSON."""
    r = ok(kc, f"import json as _j; print(_j.dumps({expr}))")
    return json.loads(r.stdout)


def alive(pid: int) -> bool:
    """True while `pid` is in the process table and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pids, timeout: float = 5.0) -> list[int]:
    """The pids still alive after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def proxy_pid(km: KernelManager) -> int:
    return km.provisioner.process.pid


# --- raw wire messages ---------------------------------------------------------------

def frames(key: bytes, msg_type: str, content: dict, header_extra: dict | None = None,
           sign_with: bytes | None = None, buffers: list[bytes] = ()) -> list[bytes]:
    """A message as the wire carries it (no identity: a DEALER sends it), signed with
    `sign_with` (default: the right key)."""
    header = {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "session": uuid.uuid4().hex,
              "username": "test", "date": "2026-01-01T00:00:00.000000Z", "version": "5.4"}
    header.update(header_extra or {})
    parts = [json.dumps(x).encode() for x in (header, {}, {}, content)]
    mac = hmac.new(sign_with if sign_with is not None else key, digestmod=hashlib.sha256)
    for p in parts:
        mac.update(p)
    return [b"<IDS|MSG>", mac.hexdigest().encode(), *parts, *buffers]


def endpoint(km: KernelManager, channel: str) -> str:
    info = km.get_connection_info()
    return f"tcp://{info['ip']}:{info[channel + '_port']}"


def raw_socket(ctx: zmq.Context, km: KernelManager, channel: str, kind=zmq.DEALER):
    s = ctx.socket(kind)
    s.linger = 0
    s.connect(endpoint(km, channel))
    return s


def receive_reply(sock, timeout: float = 10.0) -> dict | None:
    """The header and content of the next message on a raw socket, or None."""
    if not sock.poll(int(timeout * 1000)):
        return None
    parts = sock.recv_multipart()
    i = parts.index(b"<IDS|MSG>")
    return {"header": json.loads(parts[i + 2]), "parent": json.loads(parts[i + 3]),
            "content": json.loads(parts[i + 5])}

