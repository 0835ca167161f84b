"""Fault suite, SIGKILL: ``glacierkit predict``, a batch scene and ``glacierkit run`` killed
at named points, and at a point chosen by an event (a staging folder appearing).

No sleeps: a subprocess kills itself at the point named by ``GLACIERKIT_FAULT_POINT``
(:func:`glacierkit.staging.fault_point`), or the test kills it when a file appears.

After every kill the rule is: the output folder holds the previous complete set (or
nothing), never a mix of two runs and never a partial file; running the same command
again gives the complete, correct result and leaves no hidden leftovers.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml

from conftest import ROOT, save_untrained_model, write_notebook, write_scene

keras = pytest.importorskip("keras")

WINDOW = 32
EVENT_TIMEOUT = 120  # seconds; only a bound for a stuck subprocess, never a wait


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save_untrained_model(tmp_path_factory.mktemp("model"), window=WINDOW)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scenes")
    return (write_scene(folder / "a.tif", 48, 40, seed=1),
            write_scene(folder / "b.tif", 64, 56, seed=2))


def _env(point: str | None = None) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("GLACIERKIT_FAULT_POINT", None)
    if point:
        env["GLACIERKIT_FAULT_POINT"] = point
    return env


def _killed_run(args: list[str], point: str, cwd: Path | None = None) -> None:
    """Run a command in a subprocess that kills itself at ``point``; check it did."""
    proc = subprocess.run([sys.executable, *args], env=_env(point), cwd=cwd,
                          capture_output=True, text=True, timeout=EVENT_TIMEOUT)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-2000:])


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _predict_args(model, scene, out, *extra) -> list[str]:
    return ["predict", str(model), str(scene), str(out), "--window", str(WINDOW), "-q",
            *map(str, extra)]


def _in_process(model, scene, out, *extra) -> int:
    from glacierkit.pipeline import main

    return main(_predict_args(model, scene, out, *extra))


# One subprocess imports TensorFlow once and forks a child per kill (a real process,
# killed for real), so the suite pays for one TensorFlow start-up, not one per case. The
# parent has run no TensorFlow op, so the children start their own thread pools.
ZYGOTE = r"""
import json, os, signal, sys, time
from pathlib import Path
import keras, glacierkit.pipeline.batch, glacierkit.pipeline.cli, glacierkit.unet.predict  # the slow imports, once
jobs, results = json.loads(sys.argv[1]), []
for job in jobs:
    pid = os.fork()
    if pid == 0:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1), os.dup2(null, 2)
        if job.get("point"):
            os.environ["GLACIERKIT_FAULT_POINT"] = job["point"]
        if job["kind"] == "cli":
            code = glacierkit.pipeline.main(job["args"])
        else:
            glacierkit.pipeline.process_scene(*job["args"], **job["kwargs"])
            code = 0
        os._exit(code)
    status = None
    if job.get("watch"):  # kill from outside when the watched file appears
        folder = Path(job["watch"])
        while status is None and not list(folder.glob(job["pattern"])):
            done, st = os.waitpid(pid, os.WNOHANG)
            status = st if done else None
            time.sleep(0.002)  # polling for the event, not waiting for a duration
        if status is None:
            os.kill(pid, signal.SIGKILL)
    if status is None:
        status = os.waitpid(pid, 0)[1]
    results.append(os.waitstatus_to_exitcode(status))
print(json.dumps(results))
"""

PREDICT_POINTS = ["predict:predicted", "predict:written", "commit:journal", "commit:moving"]
BATCH_POINTS = ["batch:staged", "batch:swapping"]


@pytest.fixture(scope="module")
def killed(model, scenes, tmp_path_factory):
    """Every predict and batch kill of this module, done once: ``{case: (folder, old
    digest, exit code)}``. Each folder first gets a complete earlier result."""
    from glacierkit.pipeline import process_scene

    base = tmp_path_factory.mktemp("killed")
    jobs, cases = [], []
    for point in [*PREDICT_POINTS, "event"]:
        out = base / point.replace(":", "_").replace("#", "_")
        assert _in_process(model, scenes[0], out, "--tta", "--outlines") == 0
        job = {"kind": "cli", "args": _predict_args(model, scenes[1], out, "--force")}
        if point == "event":  # killed when its staging folder appears
            job.update(watch=str(out), pattern=".gk-staging-*")
        else:
            job["point"] = point
        jobs.append(job)
        cases.append((point, out, _digest(out)))
    for point in BATCH_POINTS:
        out = base / point.replace(":", "_")
        process_scene(str(scenes[1]), model, out, outlines=False,
                      predict_kwargs={"window": WINDOW})
        jobs.append({"kind": "batch", "point": point,
                     "args": [str(scenes[1]), str(model), str(out)],
                     "kwargs": {"outlines": False, "overwrite": True,
                                "predict_kwargs": {"window": WINDOW}}})
        cases.append((point, out, _digest(out / "scenes" / "b")))
    import json

    proc = subprocess.run([sys.executable, "-c", ZYGOTE, json.dumps(jobs)], env=_env(),
                          capture_output=True, text=True, timeout=10 * EVENT_TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    codes = json.loads(proc.stdout.strip().splitlines()[-1])
    return {point: (out, old, code) for (point, out, old), code in zip(cases, codes,
                                                                        strict=True)}


@pytest.fixture(scope="module")
def reference(model, scenes, tmp_path_factory):
    """The uninterrupted result of scene b."""
    out = tmp_path_factory.mktemp("ref") / "b"
    assert _in_process(model, scenes[1], out) == 0
    return out


def _same_rasters(folder: Path, ref: Path) -> None:
    """The same files with the same pixels (COG bytes may differ in metadata order)."""
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in ref.iterdir())
    for p in ref.glob("*.tif"):
        with rasterio.open(p) as a, rasterio.open(folder / p.name) as b:
            np.testing.assert_array_equal(a.read(), b.read())
            assert a.transform == b.transform and a.crs == b.crs


# --------------------------------------------------------------------------- predict
@pytest.mark.parametrize("point", [*PREDICT_POINTS, "event"])
def test_predict_killed(killed, model, scenes, reference, point):
    """Named points, and "event": killed from outside once its staging folder appeared,
    wherever it then was."""
    out, old, code = killed[point]
    if point != "event":
        assert code == -signal.SIGKILL, code
    visible = {k: v for k, v in _digest(out).items() if not k.startswith(".")}
    # an old data file still beside a new one; the QGIS styles are the same for every scene
    kept = {k for k, v in visible.items() if old.get(k) == v and not k.endswith(".qml")}
    if code == 0:  # the event came too late to stop it: the new set, complete
        _same_rasters(out, reference)
    elif not list(out.glob(".gk-commit-*.json")):  # before the commit point: old set intact
        assert visible == old
    else:  # past the commit point: the old set whole, or no old file beside a new one
        assert visible == old or not kept, (sorted(visible), sorted(kept))
    # the same command again: the new set, complete and right, nothing hidden left
    assert _in_process(model, scenes[1], out, "--force") == 0
    _same_rasters(out, reference)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------- batch
@pytest.mark.parametrize("point", BATCH_POINTS)
def test_batch_scene_killed_while_committing(killed, model, scenes, point):
    from glacierkit.pipeline import RESULT_FILE, process_scene

    out, old, code = killed[point]
    assert code == -signal.SIGKILL, code
    root = out / "scenes"
    # a reader sees the old result or none; the next attempt repairs everything
    assert not (root / "b").exists() or _digest(root / "b") == old
    record = process_scene(str(scenes[1]), model, out, outlines=False,
                           predict_kwargs={"window": WINDOW})
    assert record["skipped"] and _digest(root / "b") == old  # restored, nothing lost
    assert sorted(os.listdir(root)) == ["b"]
    record = process_scene(str(scenes[1]), model, out, outlines=False, overwrite=True,
                           predict_kwargs={"window": WINDOW})
    assert not record["skipped"] and (root / "b" / RESULT_FILE).is_file()
    assert sorted(os.listdir(root)) == ["b"]


# --------------------------------------------------------------------------- run
@pytest.fixture
def pipeline(tmp_path):
    """Two tiny notebooks; b_second blocks while a hold file exists (to be killed there)
    and writes its kernel's pid first."""
    nb_dir = tmp_path / "nbs"
    nb_dir.mkdir()
    write_notebook(nb_dir / "a_first.ipynb", """
# %% tags=["parameters"]
output_dir: str = "out"  # where to write

# %%
from pathlib import Path
Path(output_dir, 'a.txt').write_text('a')
""")
    write_notebook(nb_dir / "b_second.ipynb", """
# %% tags=["parameters"]
output_dir: str = "out"  # where to write
hold: str = ""  # a hold file

# %%
import os, time
from pathlib import Path
if hold:
    Path(output_dir, 'kernel.pid.tmp').write_text(str(os.getpid()))
    os.replace(Path(output_dir, 'kernel.pid.tmp'), Path(output_dir, 'kernel.pid'))
    while Path(hold).exists():
        time.sleep(0.05)
Path(output_dir, 'b.txt').write_text(Path(output_dir, 'a.txt').read_text() + 'b')
""")
    out = tmp_path / "run"
    hold = tmp_path / "hold"
    path = tmp_path / "p.yml"
    path.write_text(yaml.safe_dump({"name": "k", "notebook_dir": str(nb_dir),
                                    "shared": {"output_dir": str(out)},
                                    "steps": {"a_first": {}, "b_second": {"hold": str(hold)}}}))
    return path, out, hold


def _finish_run(path: Path, out: Path) -> list[str]:
    from glacierkit.pipeline import load_pipeline, run_pipeline

    messages: list[str] = []
    run_pipeline(load_pipeline(path), echo=messages.append)
    assert (out / "b.txt").read_text() == "ab"
    leftovers = [p.name for p in out.rglob("*") if p.name.startswith(".")
                 and p.name != ".glacierkit-run.lock"]
    assert not leftovers, leftovers
    return messages


def _ran(messages: list[str], step: str) -> bool:
    """The run executed ``step`` (its line ends with the seconds it took)."""
    return any(re.fullmatch(rf"\s*{step}\s+\d+ s", m) for m in messages)


def test_run_killed_inside_a_notebook(pipeline, tmp_path):
    path, out, hold = pipeline
    hold.write_text("hold")
    proc = subprocess.Popen([sys.executable, "-m", "glacierkit.pipeline.cli", "run", str(path)],
                            env=_env(), cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    kernel = None
    try:
        deadline = time.monotonic() + EVENT_TIMEOUT
        while not (out / "kernel.pid").exists():
            assert proc.poll() is None, "the run ended before the notebook blocked"
            assert time.monotonic() < deadline, "the notebook never blocked"
            time.sleep(0.02)  # polling for the event
        kernel = int((out / "kernel.pid").read_text())
        proc.send_signal(signal.SIGKILL)  # the runner and its kernel die, as on a lost node
        os.kill(kernel, signal.SIGKILL)
    finally:
        proc.wait(timeout=EVENT_TIMEOUT)
        hold.unlink(missing_ok=True)
    assert (out / "notebooks" / ".b_second.running.ipynb").exists()  # what a kill leaves
    assert not (out / "notebooks" / "b_second.ipynb").exists()
    (out / "kernel.pid").unlink()
    messages = _finish_run(path, out)
    assert any("a_first" in m and "skipped" in m for m in messages)
    assert _ran(messages, "b_second") and not _ran(messages, "a_first")


def test_run_killed_after_a_notebook_before_its_state(pipeline, tmp_path):
    path, out, hold = pipeline
    _killed_run(["-m", "glacierkit.pipeline.cli", "run", str(path)], "run:executed", cwd=tmp_path)
    assert (out / "notebooks" / "a_first.ipynb").is_file()
    assert not (out / "pipeline_state.json").exists()
    messages = _finish_run(path, out)
    assert _ran(messages, "a_first")  # not recorded: redone
