"""Harness for the browser tests: a real JupyterLab 4 or Notebook 7 server driven by
Debian's chromium.

``JupyterServer`` starts ``python -m jupyterlab`` (``LabServer``) or ``python -m notebook``
(``NotebookServer``, Notebook 7) from this interpreter's environment (so the
"Python 3 (cellar)" kernelspec that ``pip install .`` put in its ``share/jupyter/kernels``
is offered) on a port the OS picks, with a random token, a temporary root directory and
its own config, data, runtime, settings, workspace and IPython directories, so nothing
of the user's Jupyter setup leaks in and nothing leaks out. ``CELLAR_DIR`` is removed
from its environment: each notebook's kernel keeps its store in ``.cellar/`` beside the
notebook, the default, so each test (one directory each) has its own store. ``stop``
shuts the server down through its REST API and then checks the process table: no
process started for it (the server, ``cellar-kernel``, ipykernel) may remain.

``LabPage`` drives one browser page through the UI as a user does: the launcher, typing
into cells (CodeMirror), Shift+Enter, the menu bar, dialogs. It waits for a cell to
finish by watching the cell's prompt: a MutationObserver installed before the cell is
run notes the ``[*]`` that JupyterLab shows while it runs, and the cell is done when
the prompt shows a number again, so a fast cell and a repeated execution count are both
seen. ``NotebookPage`` does the same in Notebook 7, whose notebook page is made of the
same JupyterLab widgets: only its tree page, its New menu (a new notebook opens in a new
tab) and how a theme is seen to apply differ. ``contrasts`` reads *computed* colours
(getComputedStyle) and gives the WCAG contrast ratio of every text in cellar's report
tables and graphs against what is really painted behind it (semi-transparent colours
composited over their ancestors), and of each graph node's status border against the
box inside it and the graph around it.

Chromium is Debian's (``/usr/bin/chromium``, or ``$CELLAR_CHROMIUM``), launched headless
through playwright's Python API; no browser is ever downloaded.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat

CHROMIUM = os.environ.get("CELLAR_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking"]
SERVER_START_TIMEOUT = 90.0
# One cell (or a Run All) may take this long; JupyterLab on two busy cores is slow to start kernels.
CELL_TIMEOUT = 120.0

KERNEL_NAME = "cellar"
KERNEL_DISPLAY = "Python 3 (cellar)"

# Disabled so that no toast covers the notebook: the news question and the update check.
PAGE_CONFIG = {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}


def chromium_browser():
    """Debian's chromium driven by playwright, for a module-scoped fixture to
    ``yield from`` (after its server's fixture, so that pages close before the server
    stops)."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def page_for_test(request, server, browser, tmp_path, page_class, prefix: str = ""):
    """A fresh page (own browser context) on `server` as `page_class`, for a test's
    fixture to ``yield from``: the test's notebooks go in root/<test name>/ (its own
    calls.log and .cellar store), its screenshots under $CELLAR_BROWSER_SCREENS/
    <prefix><test name>/ or the test's tmp_path/screens; afterwards the context closes
    and the server's kernels are shut down."""
    name = request.node.name
    screens = os.environ.get("CELLAR_BROWSER_SCREENS")
    shots = Path(screens) / f"{prefix}{name}" if screens else tmp_path / "screens"
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield page_class(context.new_page(), server, shots, workdir=name)
    print(f"screenshots: {shots}")
    context.close()
    server.shutdown_kernels()


def chromium_missing_reason() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"{CHROMIUM} not found: install Debian's chromium (bash .ci/setup does)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright not installed: pip install '.[test]'"
    return None


class JupyterServer:
    """A Jupyter server process (``python -m APP``, APP ``jupyterlab`` or ``notebook``)
    with everything under ``base``; see the module doc."""

    app = "jupyterlab"
    # The app's name in messages and its URL paths: a directory, a notebook.
    name = "jupyter lab"
    tree_path = "lab/tree/"
    notebook_path = "lab/tree/"

    def __init__(self, base: Path):
        self.base = Path(base)
        self.root = self.base / "root"
        self.runtime = self.base / "runtime"
        dirs = {name: self.base / name for name in ("config", "data", "settings", "workspaces", "ipython")}
        for d in [self.root, self.runtime, *dirs.values()]:
            d.mkdir(parents=True, exist_ok=True)
        (dirs["config"] / "labconfig").mkdir(exist_ok=True)
        (dirs["config"] / "labconfig" / "page_config.json").write_text(json.dumps(PAGE_CONFIG))
        self.token = secrets.token_hex(16)
        env = dict(os.environ)
        for var in ("CELLAR_DIR", "JUPYTER_PATH", "JUPYTER_CONFIG_PATH", "JUPYTER_TOKEN"):
            env.pop(var, None)
        env.update({
            "JUPYTER_CONFIG_DIR": str(dirs["config"]),
            "JUPYTER_DATA_DIR": str(dirs["data"]),
            "JUPYTER_RUNTIME_DIR": str(self.runtime),
            "JUPYTERLAB_SETTINGS_DIR": str(dirs["settings"]),
            "JUPYTERLAB_WORKSPACES_DIR": str(dirs["workspaces"]),
            "IPYTHONDIR": str(dirs["ipython"]),
            # The environment's own bin first: the kernelspec's `python`, `cellar-kernel`.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        })
        # The LabApp options also reach Notebook 7, which loads JupyterLab's server extension.
        cmd = [sys.executable, "-m", self.app, "--no-browser",
               "--ServerApp.ip=127.0.0.1", "--ServerApp.port=0", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
               "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.extension_manager=readonly"]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        self.log_path = self.base / "server.log"
        self._log = open(self.log_path, "wb")
        # Its own session, so that a last-resort kill reaches everything it started.
        self.proc = subprocess.Popen(cmd, env=env, cwd=self.root, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self.url = self._wait_ready()
        except BaseException:
            self.stop(check=False)
            raise

    def _wait_ready(self) -> str:
        info_file = self.runtime / f"jpserver-{self.proc.pid}.json"
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            if info_file.exists():
                try:
                    url = json.loads(info_file.read_text())["url"]
                    self.url = url
                    self.api("GET", "api/status")
                    return url
                except (ValueError, KeyError, OSError):
                    pass  # file half-written, or not answering yet
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} not ready within {SERVER_START_TIMEOUT}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def page_url(self, path: str) -> str:
        """A URL under the server with the token (and ``reset``: no workspace restored)."""
        return f"{self.url}{path}?reset&token={self.token}"

    def api(self, method: str, path: str, body: dict | None = None):
        req = urllib.request.Request(f"{self.url}{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            data = r.read()
        return json.loads(data) if data else None

    def shutdown_kernels(self) -> None:
        """Shut down every kernel the server runs (between tests, to free the CPU)."""
        for k in self.api("GET", "api/kernels"):
            try:
                self.api("DELETE", f"api/kernels/{k['id']}")
            except urllib.error.HTTPError:
                pass  # gone meanwhile

    def own_processes(self) -> list[int]:
        """Processes started for this server, found in the process table: their
        environment has its JUPYTER_RUNTIME_DIR (inherited by the kernels, the
        ``cellar-kernel`` proxies and the ipykernels they start) or their command line
        names its runtime directory."""
        mark = str(self.runtime).encode()
        env_mark = b"JUPYTER_RUNTIME_DIR=" + mark + b"\0"
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
                environ = Path(f"/proc/{entry}/environ").read_bytes() + b"\0"
            except OSError:
                continue  # gone, or not ours to read
            if mark in cmdline or env_mark in environ:
                found.append(int(entry))
        return found

    def stop(self, check: bool = True) -> None:
        """Shut down through /api/shutdown (kernels first), then check for orphans.
        Anything left is killed, and with ``check`` reported as an error."""
        if self.proc.poll() is None:
            try:
                self.api("POST", "api/shutdown")
            except (OSError, urllib.error.URLError):
                pass
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait()
        self._log.close()
        left: list[int] = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            left = self.own_processes()
            if not left:
                break
            time.sleep(0.2)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if check and left:
            raise AssertionError(f"processes left behind by {self.name}: {left}")


class LabServer(JupyterServer):
    """JupyterLab 4: ``python -m jupyterlab``, its UI under ``lab/``."""


class NotebookServer(JupyterServer):
    """Notebook 7: ``python -m notebook``, directories under ``tree/``, notebooks under
    ``notebooks/`` (each in its own browser tab)."""

    app = "notebook"
    name = "jupyter notebook"
    tree_path = "tree/"
    notebook_path = "notebooks/"


def write_notebook(path: Path, cells: list[str]) -> Path:
    """A notebook on the cellar kernelspec with these code cells."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": KERNEL_DISPLAY, "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


# Installs an observer on each prompt: it marks the prompt once it has shown [*].
_WATCH_PROMPTS = """els => els.forEach(el => {
    if (el._cellarObserver) el._cellarObserver.disconnect();
    el.dataset.cellarRan = el.textContent.includes('*') ? '1' : '';
    const o = new MutationObserver(() => {
        if (el.textContent.includes('*')) el.dataset.cellarRan = '1';
    });
    o.observe(el, {childList: true, characterData: true, subtree: true});
    el._cellarObserver = o;
})"""

_PROMPTS_DONE = r"""els => els.every(el =>
    el.dataset.cellarRan === '1' && /^\[\d+\]/.test(el.textContent.trim()))"""

# The WCAG contrast of every text in the report tables and graphs under `scope`.
_CONTRAST = r"""scope => {
    const parse = s => {
        s = s.trim();
        let m = s.match(/^rgba?\(([^)]*)\)$/);
        if (m) {
            const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
            return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
        }
        m = s.match(/^color\(srgb\s+([^)]*)\)$/);
        if (m) {
            const p = m[1].split(/[\s\/]+/).filter(Boolean).map(Number);
            return [p[0] * 255, p[1] * 255, p[2] * 255, p.length > 3 ? p[3] : 1];
        }
        if (s === 'transparent' || s === 'none' || s === '') return [0, 0, 0, 0];
        throw new Error('unparsed colour ' + s);
    };
    const over = (top, under) => {  // top composited over an opaque `under`
        const a = top[3];
        return [0, 1, 2].map(i => top[i] * a + under[i] * (1 - a)).concat([1]);
    };
    const lum = c => {
        const ch = c.slice(0, 3).map(v => {
            v /= 255;
            return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
        });
        return 0.2126 * ch[0] + 0.7152 * ch[1] + 0.0722 * ch[2];
    };
    const ratio = (a, b) => {
        const [l1, l2] = [lum(a), lum(b)].sort((x, y) => y - x);
        return (l1 + 0.05) / (l2 + 0.05);
    };
    // What is painted behind an HTML element: its and its ancestors' backgrounds.
    const painted = el => {
        const layers = [];
        for (let e = el; e && e.nodeType === 1; e = e.parentElement)
            layers.push(parse(getComputedStyle(e).backgroundColor));
        let c = [255, 255, 255, 1];  // the canvas
        for (const l of layers.reverse()) c = over(l, c);
        return c;
    };
    const fmt = c => 'rgb(' + c.slice(0, 3).map(Math.round).join(',') + ')';
    const out = [];
    for (const cell of document.querySelectorAll(`${scope} .cellar-report td, ${scope} .cellar-report th`)) {
        const bg = painted(cell);
        const fg = over(parse(getComputedStyle(cell).color), bg);
        out.push({what: 'report', text: cell.textContent.trim(), fg: fmt(fg), bg: fmt(bg), ratio: ratio(fg, bg)});
    }
    for (const svg of document.querySelectorAll(`${scope} svg.cellar-graph`)) {
        const page = painted(svg.parentElement);
        const gp = svg.querySelector('g.graph > polygon');
        const graphBg = gp ? over(parse(getComputedStyle(gp).fill), page) : page;
        for (const node of svg.querySelectorAll('g.node')) {
            const shape = node.querySelector('path, polygon, ellipse');
            const bg = shape ? over(parse(getComputedStyle(shape).fill), graphBg) : graphBg;
            if (shape) {  // the status border, against the box inside and the graph outside
                const st = over(parse(getComputedStyle(shape).stroke), bg);
                const title = node.querySelector('title');
                out.push({what: 'border', text: (title ? title.textContent : '') + ' ' + node.getAttribute('class'),
                          fg: fmt(st), bg: fmt(graphBg), ratio: Math.min(ratio(st, bg), ratio(st, graphBg))});
            }
            for (const t of node.querySelectorAll('text')) {
                const fg = over(parse(getComputedStyle(t).fill), bg);
                out.push({what: 'graph', text: t.textContent.trim(), fg: fmt(fg), bg: fmt(bg), ratio: ratio(fg, bg)});
            }
        }
    }
    return out;
}"""


class LabPage:
    """One JupyterLab page in chromium, driven through the UI (see the module doc)."""

    def __init__(self, page, server: LabServer, shots: Path, workdir: str):
        """``workdir``: this page's directory under the server's root (made here);
        ``self.rel`` is its path in URLs, ``self.dir`` on disk."""
        self.page = page
        self.server = server
        self.rel = workdir
        self.dir = server.root / workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.shots = Path(shots)
        self.shots.mkdir(parents=True, exist_ok=True)
        self._shot_no = 0
        page.set_default_timeout(60_000)

    # -- navigation ----------------------------------------------------------------------
    def open_lab(self, path: str = "") -> None:
        """Load JupyterLab at ``lab/tree/PATH`` (a directory or a notebook)."""
        self.page.goto(self.server.page_url(f"lab/tree/{path}" if path else "lab"))
        self.page.wait_for_selector("#jp-main-dock-panel", timeout=90_000)

    def open_notebook(self, path: str) -> None:
        """Open a notebook file and wait for its kernel to be idle."""
        self.open_lab(path)
        self.wait_for_notebook()

    def wait_for_notebook(self, kernel: str = KERNEL_DISPLAY) -> None:
        """Wait until the notebook shows, on ``kernel`` (its display name), idle."""
        self.notebook.locator(".jp-Cell").first.wait_for(timeout=90_000)
        name = self.notebook.locator(".jp-KernelName")
        deadline = time.monotonic() + CELL_TIMEOUT
        while name.inner_text().strip() != kernel:
            if time.monotonic() > deadline:
                raise TimeoutError(f"notebook not on kernel {kernel!r}: {name.inner_text()!r}")
            time.sleep(0.2)
        self.wait_kernel_idle()

    @property
    def notebook(self):
        return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")

    def kernel_status(self) -> str:
        """The kernel status the notebook's toolbar shows (e.g. "Idle", "Busy")."""
        return self.notebook.locator(".jp-Notebook-ExecutionIndicator").get_attribute("data-status") or ""

    def wait_kernel_idle(self, timeout: float = CELL_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while self.kernel_status() != "idle":
            if time.monotonic() > deadline:
                raise TimeoutError(f"kernel not idle within {timeout}s (status {self.kernel_status()!r})")
            time.sleep(0.2)

    def screenshot(self, name: str) -> Path:
        self._shot_no += 1
        path = self.shots / f"{self._shot_no:02d}-{name}.png"
        self.page.screenshot(path=str(path))
        return path

    # -- cells ---------------------------------------------------------------------------
    @property
    def cells(self):
        return self.notebook.locator(".jp-Cell")

    def cell(self, i: int):
        return self.cells.nth(i)

    def set_cell(self, i: int, code: str) -> None:
        """Replace cell i's text by typing into its editor (as a paste: no auto-indent)."""
        editor = self.cell(i).locator(".cm-content")
        editor.click()
        self.page.keyboard.press("Control+a")
        self.page.keyboard.press("Delete")
        self.page.keyboard.insert_text(code)

    def cell_text(self, i: int) -> str:
        return self.cell(i).locator(".cm-content").inner_text()

    def run_and_wait(self, indices: list[int], action) -> None:
        """Do ``action`` (which runs the cells ``indices``), then wait until each has run."""
        prompts = [self.cell(i).locator(".jp-InputArea-prompt") for i in indices]
        for p in prompts:
            p.evaluate_all(_WATCH_PROMPTS)
        action()
        deadline = time.monotonic() + CELL_TIMEOUT
        for i, p in zip(indices, prompts):
            while not p.evaluate_all(_PROMPTS_DONE):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"cell {i} did not finish within {CELL_TIMEOUT}s:\n{self.describe()}")
                time.sleep(0.1)

    def run_cell(self, i: int) -> None:
        """Run cell i with Shift+Enter from its editor and wait for it."""
        def go():
            self.cell(i).locator(".cm-content").click()
            self.page.keyboard.press("Shift+Enter")
        self.run_and_wait([i], go)

    def type_and_run(self, i: int, code: str) -> None:
        self.set_cell(i, code)
        self.run_cell(i)

    def run_all(self) -> None:
        """Run → Run All Cells, and wait for every cell."""
        n = self.cells.count()
        self.run_and_wait(list(range(n)), lambda: self.menu("Run", "Run All Cells"))

    def outputs_text(self, i: int) -> str:
        return self.cell(i).locator(".jp-OutputArea").inner_text()

    def result_text(self, i: int) -> str:
        """The text of cell i's execute result (the Out[n] value)."""
        return self.cell(i).locator(".jp-OutputArea-executeResult .jp-OutputArea-output").inner_text().strip()

    def errors(self) -> list[str]:
        """Tracebacks and stderr shown anywhere in the notebook."""
        loc = self.notebook.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
        return [loc.nth(k).inner_text() for k in range(loc.count())]

    def describe(self) -> str:
        parts = []
        for k in range(self.cells.count()):
            c = self.cell(k)
            prompt = c.locator(".jp-InputArea-prompt").inner_text()
            parts.append(f"--- cell {k} {prompt}\n{self.cell_text(k)}\n>>> {c.locator('.jp-OutputArea').inner_text()}")
        return "\n".join(parts)

    def report(self, i: int) -> dict:
        """Cell i's cellar report as rendered: its title and rows {node: status}."""
        rep = self.cell(i).locator(".cellar-report")
        rep.wait_for()
        data = rep.evaluate("""r => ({
            title: r.querySelector('p').textContent.trim(),
            header: [...r.querySelectorAll('thead th')].map(th => th.textContent.trim()),
            rows: [...r.querySelectorAll('tbody tr')].map(tr => [...tr.cells].map(td => td.textContent.trim())),
        })""")
        assert data["header"][:2] == ["node", "status"], data
        data["status"] = {row[0]: row[1] for row in data["rows"]}
        return data

    # -- menus, dialogs, themes ----------------------------------------------------------
    def menu(self, *labels: str) -> None:
        """Click through the menu bar: ``menu("Kernel", "Restart Kernel…")``; every label
        but the last opens a (sub)menu."""
        self.page.locator(".lm-MenuBar-item", has_text=labels[0]).first.click()
        for k, label in enumerate(labels[1:], start=1):
            menu = self.page.locator(".lm-Menu").last
            item = menu.locator(".lm-Menu-item", has=self.page.locator(
                ".lm-Menu-itemLabel", has_text=re.compile(rf"^\s*{re.escape(label)}\s*$")))
            item.first.wait_for(state="visible")
            if k < len(labels) - 1:
                item.first.hover()
                self.page.locator(".lm-Menu").nth(k).wait_for(state="visible")
            else:
                item.first.click()

    def accept_dialog(self, button: str) -> None:
        dialog = self.page.locator(".jp-Dialog")
        dialog.wait_for()
        dialog.locator(".jp-Dialog-button", has_text=button).click()
        dialog.wait_for(state="detached")

    def restart_kernel_from_menu(self, on_dialog=None) -> None:
        """Kernel → Restart Kernel…, confirm, and wait until the kernel has left "idle"
        (seen by an observer on the toolbar's status) and come back to it."""
        self.notebook.locator(".jp-Notebook-ExecutionIndicator").evaluate("""el => {
            el.dataset.cellarLeftIdle = '';
            new MutationObserver(() => {
                if (el.dataset.status !== 'idle') el.dataset.cellarLeftIdle = '1';
            }).observe(el, {attributes: true, attributeFilter: ['data-status']});
        }""")
        self.menu("Kernel", "Restart Kernel…")
        if on_dialog:
            on_dialog()
        self.accept_dialog("Restart")
        self.page.wait_for_function("""() => {
            const el = document.querySelector(
                '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');
            return el.dataset.cellarLeftIdle === '1' && el.dataset.status === 'idle';
        }""", timeout=CELL_TIMEOUT * 1000)

    def set_theme(self, theme: str) -> None:
        """Settings → Theme → THEME, then wait until the theme's CSS applies."""
        self.menu("Settings", "Theme", theme)
        self.page.wait_for_function(
            """name => document.body.dataset.jpThemeName === name &&
                       !document.querySelector('#jupyterlab-splash')""", arg=theme)
        # The theme's stylesheet is in once the layout colour is the theme's own.
        want_light = "Light" in theme
        self.page.wait_for_function("""light => {
            const c = getComputedStyle(document.querySelector('.jp-Notebook')).backgroundColor;
            const v = (c.match(/\\d+/g) || [255]).slice(0, 3).map(Number);
            return light ? v[0] > 200 : v[0] < 60;
        }""", arg=want_light)
        self.page.wait_for_timeout(300)  # let the outputs repaint

    def contrasts(self) -> list[dict]:
        """Each text of the notebook's reports and graphs: {what, text, fg, bg, ratio}."""
        return contrasts(self.page, ".jp-NotebookPanel:not(.lm-mod-hidden)")

    def cellar_html(self) -> str:
        """The notebook's rendered reports and graphs, as HTML."""
        return self.notebook.locator(".cellar-report, .cellar-graph-view").evaluate_all(
            "els => els.map(e => e.outerHTML).join('\\n')")


def contrasts(page, scope: str = "body") -> list[dict]:
    """The WCAG contrast of each text in cellar's reports and graphs under ``scope``,
    from computed colours: {what: report|graph|border, text, fg, bg, ratio}; for a
    border, text is the node's name and classes."""
    return page.evaluate(_CONTRAST, scope)


class NotebookPage(LabPage):
    """A Notebook 7 page: the same notebook widgets, menus and dialogs as JupyterLab's
    (Notebook 7 is built from JupyterLab's components), but one document per browser
    tab: the tree page (``tree/PATH``) lists files, and its New menu opens a new
    notebook in a new tab, which then becomes ``self.page``."""

    def open_tree(self, path: str = "") -> None:
        """Load the tree page of directory ``path``."""
        self.page.goto(self.server.page_url(f"{self.server.tree_path}{path}"))
        self.page.wait_for_selector(".jp-DirListing", timeout=90_000)

    def open_notebook(self, path: str) -> None:
        self.page.goto(self.server.page_url(f"{self.server.notebook_path}{path}"))
        self.wait_for_notebook()

    def new_menu_items(self) -> list[str]:
        """Open the tree page's New menu and return its items' labels (it stays open)."""
        self.page.locator('[data-jp-item-name="new-dropdown"] .lm-MenuBar-item').click()
        items = self.page.locator(".lm-Menu .lm-Menu-item .lm-Menu-itemLabel")
        items.first.wait_for(state="visible")
        return [t.strip() for t in items.all_inner_texts()]

    def new_notebook(self, kernel: str = KERNEL_DISPLAY) -> None:
        """New → ``kernel`` in the open New menu: the notebook opens in a new tab, which
        becomes this object's page, and is waited for on that kernel."""
        item = self.page.locator(".lm-Menu .lm-Menu-item", has=self.page.locator(
            ".lm-Menu-itemLabel", has_text=re.compile(rf"^\s*{re.escape(kernel)}\s*$")))
        with self.page.context.expect_page() as tab:
            item.click()
        self.page = tab.value
        self.page.set_default_timeout(60_000)
        self.wait_for_notebook(kernel)

    def set_theme(self, theme: str) -> None:
        """Settings → Theme → THEME, then wait until the theme's CSS applies: Notebook 7
        paints no background on ``.jp-Notebook``, so the theme's own layout colour is read
        from an element painted with ``--jp-layout-color0``."""
        self.menu("Settings", "Theme", theme)
        self.page.wait_for_function("name => document.body.dataset.jpThemeName === name", arg=theme)
        self.page.wait_for_function("""light => {
            const probe = document.createElement('div');
            probe.style.background = 'var(--jp-layout-color0)';
            document.body.appendChild(probe);
            const c = getComputedStyle(probe).backgroundColor;
            probe.remove();
            const v = (c.match(/\\d+/g) || [255]).slice(0, 3).map(Number);
            return light ? v[0] > 200 : v[0] < 60;
        }""", arg="Light" in theme)
        self.page.wait_for_timeout(300)  # let the outputs repaint
