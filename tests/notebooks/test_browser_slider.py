"""The threshold slider of notebook 03, used as a person would: JupyterLab in Chromium.

Starts JupyterLab on 127.0.0.1 (free port, random token, throw-away settings), opens a
copy of notebook 03 pointed at the prepared sample scenes, runs all cells from the menu,
moves the slider with the keyboard and checks that the metrics text and the map change.

Needs Debian's Chromium at /usr/bin/chromium, driven by the Python ``playwright``
package (no browser download). Without it the test is skipped, unless ``GLACIERKIT_CI=1``
(set by ``.ci/run``), where a missing browser is a failure.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.notebook]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
NOTEBOOK = "03_ndsi_threshold.ipynb"
WAIT_MS = 300_000  # a bound for events (a cold kernel imports holoviews, compiles numba)


def _require_browser():
    reason = None
    if not CHROMIUM.is_file():
        reason = f"{CHROMIUM} not found (apt-get install -y chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "the playwright Python package is not installed"
    if reason:
        if os.environ.get("GLACIERKIT_CI") == "1":
            pytest.fail(f"GLACIERKIT_CI=1 but the browser test cannot run: {reason}")
        pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _notebook_copy(folder: Path, output_dir: Path) -> Path:
    """Notebook 03 with small parameters injected the way papermill does."""
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = load_notebook_node(str(ROOT / "notebooks" / NOTEBOOK))
    nb = parameterize_notebook(nb, {
        "output_dir": str(output_dir),
        "train_scenes": ["alps-s2/fiescher"],
        "test_scenes": ["alps-s2/morteratsch"],
        "slider_scene": "alps-s2/morteratsch",
    })
    path = folder / NOTEBOOK
    nbformat.write(nb, path)
    return path


@pytest.fixture
def jupyterlab(tmp_path, prepared_alps):
    _require_browser()
    work = tmp_path / "lab"
    work.mkdir()
    output_dir = tmp_path / "run"
    (output_dir / "prepared").mkdir(parents=True)
    # The manifest holds absolute paths, so outputs go to this run only.
    shutil.copy(Path(prepared_alps) / "prepared" / "manifest.csv", output_dir / "prepared")
    _notebook_copy(work, output_dir)
    settings = tmp_path / "settings"
    news = settings / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    # Every cell in the DOM (no windowing), so the test can see each cell's prompt.
    tracker = settings / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(settings),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
           "IPYTHONDIR": str(tmp_path / "ipython")}
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers and CI often run as root
        cmd.append("--allow-root")
    log = open(tmp_path / "jupyterlab.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2):
                    break
            except OSError as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    raise RuntimeError("JupyterLab did not start:\n" + (
                        tmp_path / "jupyterlab.log").read_text()[-3000:]) from exc
                time.sleep(0.3)
        # Start the notebook's kernel through the REST API, so the page attaches to it
        # instead of racing the kernel-spec fetch (which pops up "Select Kernel").
        request = urllib.request.Request(
            f"{url}/api/sessions", method="POST",
            data=json.dumps({"path": NOTEBOOK, "type": "notebook", "name": NOTEBOOK,
                             "kernel": {"name": "glacierkit"}}).encode(),
            headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60):
            pass
        yield {"url": url, "token": token, "output_dir": output_dir, "tmp": tmp_path}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_slider_updates_metrics_and_map(jupyterlab):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.set_default_timeout(WAIT_MS)
            console = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.goto(f"{jupyterlab['url']}/lab/tree/{NOTEBOOK}?token={jupyterlab['token']}")
            page.wait_for_selector(".jp-NotebookPanel .jp-Cell")
            page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]')

            try:
                _run_all_cells(page)
                _check_every_view_draws(page, expect, console)
                _check_slider(page, expect)
            except Exception:
                page.screenshot(path=str(jupyterlab["tmp"] / "failure.png"), full_page=True)
                errors = [e.inner_text()[-1500:] for e in page.locator(
                    ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").all()]
                print("notebook stderr outputs:", *errors, sep="\n")
                print("dialogs:", [d.inner_text() for d in page.locator(".jp-Dialog").all()])
                raise
        finally:
            browser.close()


def _accept_dialogs(page) -> None:
    """Accept JupyterLab dialogs, such as "Select Kernel" when the notebook opened before the
    kernel specs had loaded; there the notebook's own running kernel is chosen, where the
    dialog offers it (seen repeating a dozen times on one page load, in 2 of 6 runs: with
    the default choice each acceptance restarted the kernel and lost the queued cells)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    dialogs = page.locator(".jp-Dialog")
    for _ in range(5):
        if not dialogs.count():
            return
        print("accepting dialog:", dialogs.first.inner_text().replace("\n", " ")[:200])
        try:
            # A kernel selector offers the notebook's running kernel ("<notebook> (id)"):
            # connect to it. Accepting the default would start a new kernel and shut down
            # the running one, with the cells queued on it.
            select = dialogs.first.locator("select")
            if select.count():
                running = [t.strip() for t in select.first.locator("option").all_inner_texts()
                           if t.strip().startswith(f"{NOTEBOOK} (")]
                if running:
                    select.first.select_option(label=running[0], timeout=5_000)
            dialogs.first.locator(".jp-Dialog-button.jp-mod-accept").click(timeout=5_000)
            dialogs.first.wait_for(state="detached", timeout=5_000)
        except PlaywrightTimeout:
            continue


# The notebook's progress as the page shows it: each code cell's prompt ("[ ]", "[*]" or
# "[7]") and the kernel status of the execution indicator.
NOTEBOOK_STATE = """() => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  if (!panel) return null;
  const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
    .map(e => e.textContent.replace(/\\s/g, ''));
  const indicator = document.querySelector('.jp-Notebook-ExecutionIndicator');
  return {prompts, status: indicator ? indicator.getAttribute('data-status') : null};
}"""

# True once the notebook has settled: the kernel is idle and no cell is queued or running
# ([*]); then either every cell has its execution count, or some never ran.
SETTLED = "() => { const s = (" + NOTEBOOK_STATE + """)();
  if (!s || !s.prompts.length || s.status !== 'idle') return false;
  return !s.prompts.some(p => p.includes('*'));
}"""
# True once a Run All has been taken up: some cell is queued or running ([*]), or shows a
# count above the highest one before the click.
QUEUED = "before => { const s = (" + NOTEBOOK_STATE + """)();
  return s && s.prompts.some(p => p.includes('*') ||
                             Number((p.match(/\\[(\\d+)\\]/) || [0, 0])[1]) > before);
}"""


def _run_all_cells(page, attempts: int = 4) -> None:
    """Run > Run All Cells, then wait (on events, not time) until the kernel is idle and
    every code cell has its execution count. If the notebook settles with cells that never
    ran (a kernel still starting, or a dialog, swallowed part of the queue), run all again.
    A cell that raised fails the test here, with its traceback."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(attempts):
        _accept_dialogs(page)
        before = max([0] + [int(n) for n in re.findall(
            r"\[(\d+)\]", " ".join(page.evaluate(NOTEBOOK_STATE)["prompts"]))])
        try:
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click(timeout=10_000)
            page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click(timeout=10_000)
        except PlaywrightTimeout:
            if not page.locator(".jp-Dialog").count():
                page.keyboard.press("Escape")  # close a menu left open
            continue
        try:
            page.wait_for_function(QUEUED, arg=before, timeout=20_000)
        except PlaywrightTimeout:
            continue
        page.wait_for_function(SETTLED)  # every queued cell done, kernel idle
        state = page.evaluate(NOTEBOOK_STATE)
        if all(re.fullmatch(r"\[\d+\]:?", p) for p in state["prompts"]):
            if page.locator(".jp-OutputArea-output[data-mime-type="
                            "'application/vnd.jupyter.stderr']", has_text="Traceback").count():
                raise AssertionError("A cell raised an error while running the notebook")
            return
        # A Run All taken up by a kernel still starting can run only some cells, out of
        # order (a later cell then fails on a name an earlier one defines); all again.
        print("cells that never ran after Run All:", state["prompts"])
    raise AssertionError(f"Run All Cells did not run every cell: {page.evaluate(NOTEBOOK_STATE)}")


# A fingerprint of the RGBA image data of every Bokeh image in the page (what the map draws).
MAP_FINGERPRINT = """() => {
  const out = [];
  const docs = (window.Bokeh && window.Bokeh.documents) ? window.Bokeh.documents : [];
  for (const doc of docs) {
    for (const m of doc.all_models) {
      const d = m.data;
      const img = !d ? null : (d instanceof Map ? d.get("image") : d.image);
      if (!img || !img.length) continue;
      const a = img[0];
      let h = 0;
      for (let i = 0; i < a.length; i++) h = (Math.imul(h, 31) + a[i]) >>> 0;
      out.push(a.length + ":" + h);
    }
  }
  return out.join(",");
}"""


# Per Bokeh plot in the page: its title and whether each of its glyph renderers has data.
PLOTS = """() => {
  const out = [];
  for (const doc of (window.Bokeh && window.Bokeh.documents) || []) {
    for (const m of doc.all_models) {
      if (!m.renderers || !m.x_range) continue;
      const sizes = m.renderers.filter(r => r.data_source).map(r => {
        const d = r.data_source.data;
        const cols = d instanceof Map ? [...d.values()] : Object.values(d);
        return cols.length ? cols[0].length : 0;
      });
      out.push({title: m.title ? m.title.text : "", sizes,
                x: [m.x_range.start, m.x_range.end], y: [m.y_range.start, m.y_range.end]});
    }
  }
  return out;
}"""


def _check_every_view_draws(page, expect, console) -> None:
    """Every HoloViews view (histograms, sweep curves, the slider map) is drawn with its
    data: a visible canvas, each plot's glyphs hold data and its ranges are finite; and no
    BokehJS loader in the page asked a CDN (which offline never answers: blank views)."""
    views = page.locator(".jp-OutputArea-output").filter(has=page.locator("canvas"))
    assert views.count() >= 3, views.count()  # histograms, sweep curves, the slider map
    for i in range(views.count()):
        canvas = views.nth(i).locator("canvas").first
        expect(canvas).to_be_visible()
        assert canvas.bounding_box()["height"] > 50
    plots = page.evaluate(PLOTS)
    # one train and one test scene: a histogram and a sweep panel each (one scene needs no
    # pooled panel), and the slider's map
    titles = sorted(p["title"] for p in plots)
    assert titles == sorted(["alps-s2/fiescher", "alps-s2/morteratsch"] * 2
                            + ["alps-s2/morteratsch  TP / FP / FN"]), plots
    for plot in plots:
        assert plot["sizes"] and all(n > 0 for n in plot["sizes"]), plot
        assert all(v is not None and abs(v) < 1e12 for v in plot["x"] + plot["y"]), plot
    cdn = [m for m in console if "failed to load" in m or "failed to initialize" in m
           or "BokehJS failed" in m]
    assert not cdn, cdn


def _check_slider(page, expect) -> None:
    metrics = page.locator(".gk-metrics").first
    expect(metrics).to_be_visible()
    expect(metrics).to_contain_text("KC")
    start = metrics.get_attribute("data-threshold")
    first_text = metrics.inner_text()
    handle = page.locator(".gk-threshold-slider .noUi-handle").first
    expect(handle).to_be_visible()
    cell = page.locator(".jp-CodeCell", has=page.locator(".gk-threshold-explorer"))
    map_area = cell.locator(".jp-OutputArea-child").nth(1)  # the HoloViews map
    expect(map_area.locator("canvas").first).to_be_visible()
    page.wait_for_function(f"() => ({MAP_FINGERPRINT})().length > 0")
    before = page.evaluate(MAP_FINGERPRINT)

    handle.focus()
    for _ in range(8):  # eight grid steps up (0.08 on the default grid)
        page.keyboard.press("ArrowRight")
    expect(metrics).to_have_attribute("data-threshold", f"{float(start) + 0.08:.4f}")
    moved = float(metrics.get_attribute("data-threshold"))
    text = metrics.inner_text()
    assert text != first_text and f"> {moved:.2f}:" in text
    # The map follows: its image data (drawn by Bokeh in the page) changes.
    page.wait_for_function(f"before => ({MAP_FINGERPRINT})() !== before", arg=before,
                           timeout=30_000)
    expect(map_area.locator("canvas").first).to_be_visible()
    assert page.locator("text=Traceback").count() == 0
