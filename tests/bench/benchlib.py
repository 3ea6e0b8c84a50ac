"""Shared helpers for cellar's benchmarks: real ipykernel kernels driven
through jupyter_client, timing done inside the kernel.

Every benchmark starts kernels with `Kernel(workdir, cellar_dir)`, sends cells
(optionally with a cellId, as JupyterLab does), and reads back figures that the
kernel prints as one `@@BENCH {json}` line.  A "restart" is a new kernel
process on the same store directory, which is what a frontend's restart gives.
"""

import json
import os
import statistics
import sys
import time
import uuid

from jupyter_client import KernelManager

MARK = "@@BENCH "


class CellError(RuntimeError):
    pass


class Kernel:
    """One ipykernel process (this interpreter's environment)."""

    def __init__(self, workdir, cellar_dir=None, env=None):
        kenv = dict(os.environ)
        if cellar_dir:
            kenv["CELLAR_DIR"] = str(cellar_dir)
        if env:
            kenv.update(env)
        # The kernel's own benchmarks time themselves; keep numpy/BLAS single
        # threaded so that the 2-core machine is not oversubscribed.
        kenv.setdefault("OMP_NUM_THREADS", "1")
        self.km = KernelManager(kernel_name="python3")
        self.km.kernel_spec.argv[0] = sys.executable
        self.km.start_kernel(env=kenv, cwd=str(workdir))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    @property
    def pid(self):
        return self.km.provisioner.pid

    def execute(self, code, cell_id=None, timeout=600):
        """Runs one cell; returns (stdout, stderr). Raises CellError on error."""
        content = {"code": code, "silent": False, "store_history": True,
                   "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}
        msg = self.kc.session.msg("execute_request", content)
        if cell_id is not None:
            msg["metadata"]["cellId"] = cell_id
        self.kc.shell_channel.send(msg)
        mid = msg["header"]["msg_id"]
        out, err, error = [], [], None
        out_displays = self.displays = []
        deadline = time.monotonic() + timeout
        while True:
            m = self.kc.get_iopub_msg(timeout=max(1, deadline - time.monotonic()))
            if m["parent_header"].get("msg_id") != mid:
                continue
            t, c = m["msg_type"], m["content"]
            if t == "stream":
                (out if c["name"] == "stdout" else err).append(c["text"])
            elif t in ("display_data", "execute_result"):
                out_displays.append(c["data"].get("text/plain", ""))
            elif t == "error":
                error = "%s: %s\n%s" % (c["ename"], c["evalue"], "\n".join(c["traceback"]))
            elif t == "status" and c["execution_state"] == "idle":
                break
        while True:
            r = self.kc.get_shell_msg(timeout=max(1, deadline - time.monotonic()))
            if r["parent_header"].get("msg_id") == mid:
                break
        stdout, stderr = "".join(out), "".join(err)
        if error or r["content"]["status"] != "ok":
            raise CellError("cell failed:\n%s\n%s\n--- code ---\n%s" % ((error or "")[-3000:], stderr[-2000:], code[:1500]))
        return stdout, stderr

    def figures(self, code, cell_id=None):
        """Runs a cell that prints one `@@BENCH {json}` line; returns the dict."""
        stdout, stderr = self.execute(code, cell_id)
        for line in stdout.splitlines():
            if line.startswith(MARK):
                return json.loads(line[len(MARK):])
        raise CellError("no figures in output:\n%s\n%s" % (stdout, stderr))

    def round_trip(self, n=50):
        """Client-side seconds for an empty execute_request, each one."""
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            self.execute("")
            times.append(time.perf_counter() - t0)
        return times

    def close(self):
        try:
            self.kc.stop_channels()
        finally:
            self.km.shutdown_kernel(now=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def load_cellar(k):
    """%load_ext cellar in the kernel; returns its store line."""
    out, _ = k.execute("%load_ext cellar")
    if "cellar: store" not in out:
        raise CellError("cellar did not load: %r" % out)
    return out.strip()


def new_cell_id():
    return str(uuid.uuid4())


def median(xs):
    return statistics.median(xs)


def versions_code():
    return (
        "import sys, json, importlib.metadata as _md\n"
        "_v = {'python': sys.version.split()[0]}\n"
        "for _p in ('ipykernel', 'ipython', 'numpy', 'pandas', 'pyarrow', 'apache-hamilton',"
        " 'joblib', 'cellar', 'jupyter_client'):\n"
        "    try: _v[_p] = _md.version(_p)\n"
        "    except Exception: _v[_p] = None\n"
        "print('@@BENCH ' + json.dumps(_v))\n"
    )


def kernel_versions(workdir):
    with Kernel(workdir) as k:
        return k.figures(versions_code())


def fmt_us(s):
    return "%.2f us" % (s * 1e6)


def gbps(nbytes, seconds):
    return nbytes / seconds / 1e9
