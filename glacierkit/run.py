"""The pipeline runner: notebooks 01-05 in order with papermill, from one YAML file.

A pipeline file looks like::

    name: sample                 # runs/<name>/ unless output_dir is given
    shared:                      # applied to every notebook that declares the parameter
      output_dir: runs/sample
    steps:                       # notebooks/<step>.ipynb, in this order
      01_data_prep:
        scenes: [alps-s2/aletsch, alps-s2/fiescher]
      03_ndsi_threshold: {}

An optional ``batch:`` section sets up ``glacierkit run PIPELINE.yml --scenes ...``, which
predicts (and, where reference outlines exist, evaluates) many scenes with a trained model,
one Dask task per scene (:func:`run_batch`, :mod:`glacierkit.batch`)::

    batch:
      model: models/unet_alps_s2.keras   # required; relative to the working directory
      threshold: 0.5                     # or the pipeline file's folder
      scenes: [alps-s2/morteratsch, alps-s2/gorner]   # default when --scenes has no names
      outlines: null       # null: the sample outlines where known; a path; false: none
      window: null         # predict_scene options: window, overlap, batch_size, tta
      cluster: null        # null: a LocalCluster; or a scheduler address tcp://host:8786
      workers: 2           # LocalCluster worker processes

Every parameter name is checked against the notebook's ``parameters`` cell
(``papermill.inspect_notebook``), so a typo is an error, not papermill's warning. A step
that completed is skipped unless ``force=True``, but only when nothing it depends on
changed: its identity is its parameters, its notebook, and the runs of every step before
it (a step run again, e.g. with ``--force`` or new parameters, makes every later step run
again), and every file it wrote must still be there (a deleted output means "not done").
A failed step stops the run and its failing cell's error is shown; the partial notebook is
kept as ``<step>.failed.ipynb``.

**Relative paths** in a pipeline file (``shared.output_dir``, ``outlines: data/rgi.shp``,
``model_path`` ...) are relative to the working directory ``glacierkit run`` is started
in: the notebooks run there, not in ``notebooks/``. ``batch.model`` is also looked for
beside the pipeline file.

**Trust.** A pipeline file runs notebooks: ``notebook_dir:`` may point at any folder, and
the notebooks in it are executed with your permissions. Run only pipeline files (and
notebook folders) you trust, as you would a script.

One run folder is used by one ``glacierkit run`` at a time (a lock file
``.glacierkit-run.lock`` in it); notebooks left half-written by a killed run
(``.<step>.running.ipynb``) are removed when the next run starts.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from pathlib import Path

import yaml

from .exceptions import DataNotFoundError, GlacierKitError, ParameterError

log = logging.getLogger(__name__)

__all__ = ["load_pipeline", "check_run_name", "notebook_parameters", "check_parameters", "execute_notebook",
           "run_pipeline", "run_batch", "read_scene_list", "StepFailed", "NOTEBOOK_DIR",
           "BATCH_KEYS", "KERNEL_NAME", "KernelNotFoundError", "check_kernel"]

#: Where the notebooks live (the repository's ``notebooks/``).
NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
#: The Jupyter kernel the notebooks name in their metadata and papermill runs them with:
#: ``make setup`` registers it in .venv, Binder's postBuild in its environment.
KERNEL_NAME = "glacierkit"


class StepFailed(GlacierKitError):
    """A notebook of the pipeline raised an error."""


class KernelNotFoundError(GlacierKitError, LookupError):
    """The ``glacierkit`` Jupyter kernel is not registered in this environment."""


def check_kernel(name: str = KERNEL_NAME) -> None:
    """Raise :class:`KernelNotFoundError`, with the command that fixes it, if ``name`` is
    not a registered Jupyter kernel."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(name)
        if os.path.isabs(spec.argv[0]) and not os.path.exists(spec.argv[0]):
            raise NoSuchKernel(name)  # registered from a Python that no longer exists
    except NoSuchKernel:
        raise KernelNotFoundError(
            f"The Jupyter kernel {name!r} the notebooks run with is not registered. Register "
            f"it for this Python with: python -m ipykernel install --sys-prefix --name {name} "
            f"--display-name 'Python ({name})'  (make setup does this)."
        ) from None


def _number(low=None, high=None, integer=False, high_open=False):
    def check(value):
        kind = int if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kind):
            return "an integer" if integer else "a number"
        if low is not None and value < low:
            return f">= {low}"
        if high is not None and (value >= high if high_open else value > high):
            return f"< {high}" if high_open else f"<= {high}"
        return None
    return check


def _optional(check):
    return lambda value: None if value is None else check(value)


def _is(kind, what):
    return lambda value: None if isinstance(value, kind) else what


def _scene_list(value):
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        return "a list of scene names or paths"
    return None


def _outlines(value):
    return None if value is None or value is False or isinstance(value, str) else \
        "null (sample outlines), false (no evaluation) or a path"


#: The keys of a pipeline file's ``batch:`` section and what each must be.
BATCH_KEYS = {
    "model": _is(str, "the path of a .keras model"),
    "threshold": _number(0, 1),
    "scenes": _scene_list,
    "outlines": _outlines,
    "sensor": _optional(_is(str, "a sensor name")),
    "window": _optional(_number(1, integer=True)),
    "overlap": _number(0, 1, high_open=True),
    "batch_size": _number(1, integer=True),
    "tta": _is(bool, "true or false"),
    "min_area_km2": _number(0),
    "cluster": _optional(_is(str, "a scheduler address such as tcp://host:8786, or local")),
    "workers": _optional(_number(1, integer=True)),
    "retries": _number(0, integer=True),
}


def _check_batch(batch, path) -> dict:
    if not isinstance(batch, Mapping):
        raise ParameterError(
            f"'batch:' in {path} must map keys to values, e.g. batch: {{model: "
            "models/unet_alps_s2.keras}}."
        )
    for key, value in batch.items():
        if key not in BATCH_KEYS:
            close = difflib.get_close_matches(str(key), BATCH_KEYS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ParameterError(
                f"Unknown key {key!r} in the batch section of {path}.{hint} Valid keys: "
                f"{sorted(BATCH_KEYS)}."
            )
        problem = BATCH_KEYS[key](value)
        if problem:
            raise ParameterError(f"batch.{key} in {path} must be {problem}; got {value!r}.")
    if "model" not in batch:
        raise ParameterError(
            f"The batch section of {path} needs 'model:', the path of the trained .keras "
            "model (e.g. models/unet_alps_s2.keras)."
        )
    return dict(batch)


def load_pipeline(path: str | os.PathLike) -> dict:
    """Read and validate a pipeline YAML file."""
    path = Path(path)
    if path.is_dir():
        raise DataNotFoundError(f"{path} is a folder; give the pipeline YAML file in it.")
    if not path.is_file():
        raise DataNotFoundError(f"Pipeline file not found: {path}.")
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ParameterError(
            f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8."
        ) from None
    except yaml.YAMLError as exc:
        raise ParameterError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(cfg, Mapping):
        raise ParameterError(f"{path} must be a YAML mapping (name:, shared:, steps:, batch:).")
    cfg = dict(cfg)
    if "name" in cfg and cfg["name"] is not None:
        cfg["name"] = check_run_name(cfg["name"], path)
    if not isinstance(cfg.get("shared") or {}, Mapping):
        raise ParameterError(
            f"'shared:' in {path} must map parameter names to values, e.g. shared: "
            "{output_dir: runs/my-run}."
        )
    out_dir = (cfg.get("shared") or {}).get("output_dir")
    if out_dir is not None and not isinstance(out_dir, str):
        raise ParameterError(f"shared.output_dir in {path} must be a folder path; got {out_dir!r}.")
    nb_dir = cfg.get("notebook_dir")
    if nb_dir is not None and not isinstance(nb_dir, str):
        raise ParameterError(f"notebook_dir in {path} must be a folder path; got {nb_dir!r}.")
    unknown = set(cfg) - {"name", "shared", "steps", "notebook_dir", "batch"}
    if unknown:
        raise ParameterError(
            f"Unknown top-level keys {sorted(unknown)} in {path}. Valid: name, shared, steps, "
            "batch, notebook_dir."
        )
    if "batch" in cfg:
        cfg["batch"] = _check_batch(cfg["batch"], path)
    if "steps" in cfg or "batch" not in cfg:
        if not isinstance(cfg.get("steps"), Mapping) or not cfg["steps"]:
            raise ParameterError(
                f"{path} needs a 'steps:' mapping of notebook name -> parameters (or only a "
                "'batch:' section for glacierkit run --scenes)."
            )
    if cfg.get("steps") is None:
        cfg["steps"] = {}
    if cfg.get("shared") is None:
        cfg["shared"] = {}
    for step, params in list(cfg["steps"].items()):
        if not isinstance(step, str):
            raise ParameterError(f"Step {step!r} in {path} must be a notebook name (text).")
        if params is None:
            cfg["steps"][step] = {}
        elif not isinstance(params, Mapping):
            raise ParameterError(f"Step {step!r} in {path} must map parameter names to values.")
    cfg["_path"] = str(path.resolve())
    return cfg


def check_run_name(name, where="the run name") -> str:
    """A run name is one folder name under ``runs/``: text without path separators."""
    if not isinstance(name, str) or not name.strip() or name in (".", "..") or any(
            sep in name for sep in ("/", "\\", "\0")):
        raise ParameterError(
            f"Run name {name!r} (in {where}) must be a plain folder name such as 'my-run' "
            "(outputs go to runs/<name>/); to write elsewhere set shared.output_dir."
        )
    return name


def notebook_parameters(notebook: str | os.PathLike) -> dict[str, dict]:
    """The parameters a notebook declares: ``{name: {"default", "type", "help"}}``."""
    import papermill as pm

    params = pm.inspect_notebook(str(notebook))
    return {k: {"default": v.get("default"), "type": v.get("inferred_type_name"),
                "help": v.get("help", "")} for k, v in params.items()}


def check_parameters(notebook: str | os.PathLike, params: Mapping[str, object]) -> None:
    """Raise :class:`ParameterError` for any name the notebook does not declare."""
    declared = notebook_parameters(notebook)
    if not declared:
        raise ParameterError(f"{notebook} has no cell tagged 'parameters'.")
    for name in params:
        if name not in declared:
            close = difflib.get_close_matches(name, declared, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ParameterError(
                f"Unknown parameter {name!r} for {Path(notebook).name}.{hint} Valid parameters: "
                f"{sorted(declared)}."
            )


def _kernel_manager(stderr, ipc_dir: str):
    """A kernel manager that talks to the kernel over IPC sockets in a private temporary
    folder ``ipc_dir`` (no TCP port, so no "running over TCP without encryption" warning) and sends
    the kernel process's own stderr (TensorFlow/absl C++ logs, IPKernelApp) to ``stderr``.
    What the notebook's cells print or warn still goes into the executed notebook."""
    from jupyter_client.manager import AsyncKernelManager

    class QuietKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.transport = "ipc"
            self.ip = os.path.join(ipc_dir, "k")

        async def _async_launch_kernel(self, kernel_cmd, **kw):
            kw["stderr"] = stderr
            return await super()._async_launch_kernel(kernel_cmd, **kw)

    return QuietKernelManager


def execute_notebook(notebook: str | os.PathLike, output: str | os.PathLike,
                     parameters: Mapping[str, object], cwd: str | os.PathLike | None = None,
                     log_output: bool = False) -> Path:
    """Execute one notebook with papermill; the output appears only on success.

    On failure the partial notebook is kept as ``<output stem>.failed.ipynb`` and
    :class:`StepFailed` carries the failing cell's error. The kernel process's own log
    (not the cells' output, which is in the notebook) goes to ``<output stem>.kernel.log``.
    """
    import papermill as pm

    notebook, output = Path(notebook), Path(output)
    check_parameters(notebook, parameters)
    check_kernel()
    # Kernels inherit the environment: keep TensorFlow's C++ start-up chatter out of the log.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.stem}.running.ipynb")
    failed = output.with_name(f"{output.stem}.failed.ipynb")
    kernel_log = open(output.with_name(f"{output.stem}.kernel.log"), "wb")  # noqa: SIM115
    ipc_dir = tempfile.TemporaryDirectory(prefix="gk-kernel-")
    try:
        pm.execute_notebook(str(notebook), str(tmp), parameters=dict(parameters),
                            kernel_name=KERNEL_NAME, language="python",
                            cwd=str(cwd or notebook.parent), progress_bar=False,
                            log_output=log_output,
                            kernel_manager_class=_kernel_manager(kernel_log, ipc_dir.name))
    except pm.PapermillExecutionError as exc:
        os.replace(tmp, failed)
        raise StepFailed(
            f"{notebook.name} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}\n"
            f"The executed notebook is kept at {failed}."
        ) from None
    except BaseException:
        if tmp.exists():
            os.replace(tmp, failed)
        raise
    finally:
        kernel_log.close()
        ipc_dir.cleanup()
    os.replace(tmp, output)
    if failed.exists():
        failed.unlink()
    return output




_WARNING = re.compile(r"\b(\w*Warning): (.+)")


def notebook_warnings(notebook: str | os.PathLike) -> list[str]:
    """The distinct ``...Warning: message`` lines the cells of an executed notebook wrote
    to stderr, in order (``"UserWarning: ..."``)."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    found: dict[str, None] = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                for m in _WARNING.finditer(out.get("text", "")):
                    found.setdefault(f"{m.group(1)}: {m.group(2).strip()}", None)
    return list(found)


def _hash(params: Mapping[str, object], notebook: Path, upstream=()) -> str:
    """A step's identity: its parameters, its notebook and the runs of the steps before it
    (``upstream``: ``[(step, run id or None), ...]``)."""
    blob = json.dumps([params, list(upstream)], sort_keys=True, default=str)
    blob += notebook.read_text()
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


#: Files of the runner itself, not outputs of a step.
_RUNNER_FILES = {"pipeline_state.json", "summary.md"}


def _snapshot(run_dir: Path) -> dict[str, tuple[int, int]]:
    """``{relative path: (size, mtime)}`` of the files under ``run_dir`` that a step may
    have written (not the runner's own files, notebooks, hidden files or batch scenes)."""
    out = {}
    for root, dirs, files in os.walk(run_dir):
        rel_root = Path(root).relative_to(run_dir)
        if rel_root == Path("."):
            dirs[:] = [d for d in dirs if d not in ("notebooks", "scenes")]
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for f in files:
            rel = str(rel_root / f) if rel_root != Path(".") else f
            if f.startswith(".") or rel in _RUNNER_FILES:
                continue
            try:
                st = (Path(root) / f).stat()
            except OSError:
                continue
            out[rel] = (st.st_size, st.st_mtime_ns)
    return out


def _read_state(state_path: Path) -> dict:
    if not state_path.is_file():
        return {}
    try:
        state = json.loads(state_path.read_text())
        if isinstance(state, dict) and all(isinstance(v, dict) for v in state.values()):
            return state
    except (OSError, ValueError):
        pass
    log.warning("%s is unreadable; every step runs again.", state_path)
    return {}


@contextmanager
def _run_lock(run_dir: Path):
    """One ``glacierkit run`` per run folder at a time (an advisory lock, released when
    the process ends, even by a kill)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Windows
        yield
        return
    path = run_dir / ".glacierkit-run.lock"
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            raise ParameterError(
                f"Another glacierkit run (pid {holder}) is using {run_dir}. Wait for it to "
                "finish, or give this run another --name (or shared.output_dir)."
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _unknown_steps(names, steps, what: str) -> None:
    for name in names:
        if name not in steps:
            close = difflib.get_close_matches(str(name), list(steps), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ParameterError(
                f"Unknown step {name!r} in {what}.{hint} Steps of the pipeline: {list(steps)}."
            )


def run_pipeline(
    pipeline: str | os.PathLike | Mapping,
    name: str | None = None,
    *,
    force: bool = False,
    only: list[str] | None = None,
    overrides: Mapping[str, Mapping[str, object]] | None = None,
    echo: Callable[[str], None] = print,
) -> Path:
    """Run every step of a pipeline; return the run folder ``runs/<name>``.

    Parameters
    ----------
    pipeline
        Path to the YAML file (or its loaded dict).
    name
        Run name; default the file's ``name``.
    force
        Re-run steps that already completed with the same parameters.
    only
        Run only these steps (names as in the file).
    overrides
        ``{step: {param: value}}`` on top of the file (``"*"`` applies to every step).
    """
    cfg = pipeline if isinstance(pipeline, Mapping) else load_pipeline(pipeline)
    if not cfg.get("steps"):
        raise ParameterError(
            f"{cfg.get('_path', 'The pipeline')} has no notebook steps, only a batch section: "
            "run it with --scenes."
        )
    name = check_run_name(name or cfg.get("name") or "default", "--name" if name else
                          cfg.get("_path", "the pipeline"))
    nb_dir = Path(cfg.get("notebook_dir") or NOTEBOOK_DIR)
    shared = dict(cfg.get("shared") or {})
    shared.setdefault("output_dir", str(Path("runs") / name))
    shared["output_dir"] = str(Path(shared["output_dir"]).resolve())
    run_dir = Path(shared["output_dir"])
    overrides = overrides or {}
    steps = list(cfg["steps"].items())
    if only:
        _unknown_steps(only, cfg["steps"], "--only")
    _unknown_steps([k for k in overrides if k != "*"], cfg["steps"], "--set")
    # Check everything before running anything.
    plan = []
    used_shared: set[str] = set()
    for step, params in steps:
        notebook = nb_dir / f"{step}.ipynb"
        if not notebook.is_file():
            raise ParameterError(
                f"Step {step!r} has no notebook {notebook}. Steps are notebook names without "
                f".ipynb: {sorted(p.stem for p in nb_dir.glob('*.ipynb'))}."
            )
        declared = notebook_parameters(notebook)
        merged = {k: v for k, v in shared.items() if k in declared}
        used_shared |= set(merged)
        merged.update(params)
        merged.update(overrides.get("*", {}))
        merged.update(overrides.get(step, {}))
        check_parameters(notebook, merged)
        plan.append((step, notebook, merged))
    unused = set(shared) - used_shared - {"output_dir"}
    if unused:
        raise ParameterError(
            f"Shared parameters {sorted(unused)} are declared by no notebook of the pipeline."
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    with _run_lock(run_dir):
        index = _run_steps(plan, run_dir, name=name, force=force, only=only, echo=echo)
    echo(f"Report: {index}")
    return run_dir


def _run_steps(plan, run_dir: Path, *, name: str, force: bool, only, echo) -> Path:
    """Run the steps of ``plan`` that need it; return the run's ``index.html``."""
    from tqdm.auto import tqdm

    from .report import REPORT_DIR, notebook_html, write_index
    from .staging import fault_point

    nb_out = run_dir / "notebooks"
    if nb_out.is_dir():  # left by a killed run (this run holds the folder's lock)
        for stale in nb_out.glob(".*.running.ipynb"):
            log.info("Removing %s, left by an interrupted run.", stale)
            stale.unlink(missing_ok=True)
    state_path = run_dir / "pipeline_state.json"
    state = _read_state(state_path)
    todo = [p for p in plan if not only or p[0] in only]
    width = max((len(step) for step, _, _ in todo), default=0)
    echo(f"glacierkit run {name}: {len(todo)} steps -> {run_dir}")
    bar = tqdm(total=len(todo), unit="step", leave=False, disable=None,
               bar_format="{desc} {n_fmt}/{total_fmt} steps, {elapsed}")
    upstream: list[tuple[str, str | None]] = []
    for step, notebook, params in plan:
        key = _hash(params, notebook, upstream)
        upstream.append((step, state.get(step, {}).get("run_id")))
        if only and step not in only:
            continue
        out = nb_out / f"{step}.ipynb"
        report = run_dir / REPORT_DIR / f"{step}.html"
        record = state.get(step, {})
        missing = [f for f in record.get("outputs", []) if not (run_dir / f).exists()]
        if not force and record.get("hash") == key and out.is_file() and not missing:
            if not report.is_file():
                notebook_html(out, report)
            bar.update()
            echo(f"  {step:<{width}}  skipped: done before with the same parameters and inputs "
                 "(--force runs it again)")
            continue
        if record.get("hash") == key and missing:
            echo(f"  {step:<{width}}  {len(missing)} of its outputs are gone "
                 f"({', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}), running again")
        elif record and record.get("hash") != key and not force:
            echo(f"  {step:<{width}}  its parameters, notebook or an earlier step changed: "
                 "running again")
        bar.set_description_str(f"  {step:<{width}}  running")
        before = _snapshot(run_dir)
        t0 = time.perf_counter()
        try:
            execute_notebook(notebook, out, params, cwd=Path.cwd())
        finally:
            bar.clear()
        dt = time.perf_counter() - t0
        fault_point("run:executed")
        after = _snapshot(run_dir)
        outputs = sorted(f for f, v in after.items() if before.get(f) != v)
        run_id = uuid.uuid4().hex[:12]
        upstream[-1] = (step, run_id)
        state[step] = {"hash": key, "run_id": run_id, "seconds": round(dt, 1),
                       "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "outputs": outputs}
        tmp = state_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, state_path)
        notebook_html(out, report)
        bar.update()
        echo(f"  {step:<{width}}  {dt:5.0f} s")
        warnings = notebook_warnings(out)
        for w in warnings[:3]:  # real warnings of the notebook's code, not kernel chatter
            echo(f"    {w if len(w) <= 160 else w[:160].rsplit(' ', 1)[0] + ' ...'}")
        if len(warnings) > 3:
            echo(f"    ... {len(warnings) - 3} more warnings in {report}")
    bar.close()
    _write_summary(run_dir, state)
    return write_index(run_dir, state, [step for step, _, _ in plan], title=name)


def read_scene_list(path: str | os.PathLike) -> list[str]:
    """Scenes from a text file: one per line; blank lines and ``#`` comments ignored.

    A relative path that exists next to the list file is taken from there; anything else
    (sample names, absolute or working-directory paths) is kept as written.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"Scene list not found: {path}.")
    scenes = []
    for line in path.read_text().splitlines():
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        beside = path.parent / entry
        scenes.append(str(beside) if not Path(entry).is_absolute() and beside.exists()
                      else entry)
    if not scenes:
        raise ParameterError(f"{path} lists no scenes (one scene name or path per line).")
    return scenes


def _candidates(path: str, cfg: Mapping) -> list[Path]:
    """``path`` as given, then beside the pipeline file and in its parent folder."""
    candidates = [Path(path).expanduser()]
    if not candidates[0].is_absolute() and cfg.get("_path"):
        here = Path(cfg["_path"]).parent
        candidates += [here / path, here.parent / path]
    return candidates


def _model_path(model: str, cfg: Mapping) -> Path:
    candidates = _candidates(model, cfg)
    for c in candidates:
        if c.is_file():
            return c.resolve()
    raise DataNotFoundError(
        f"The batch model {model!r} was not found (looked in: "
        f"{', '.join(str(c) for c in dict.fromkeys(candidates))}). Train one with notebook 04 "
        "or point batch.model at a .keras file with its .json sidecar."
    )


def run_batch(
    pipeline: str | os.PathLike | Mapping,
    scenes: list[str] | None = None,
    name: str | None = None,
    *,
    cluster: str | None = None,
    workers: int | None = None,
    force: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
):
    """Predict (and evaluate) many scenes as set up in the pipeline's ``batch:`` section.

    One :mod:`dask.distributed` task per scene (:func:`glacierkit.batch.run_scenes`);
    outputs go to ``<run folder>/scenes/<scene>/`` with ``scenes.csv`` and
    ``scenes_summary.md`` beside them. Scenes done before are skipped unless ``force``.

    Parameters
    ----------
    pipeline
        Path to the YAML file (or its loaded dict) with a ``batch:`` section.
    scenes
        Scene names or paths; default the section's ``scenes:``.
    name
        Run name (default the file's ``name``); the run folder is ``shared.output_dir``
        or ``runs/<name>``.
    cluster, workers
        Override the section's ``cluster`` (scheduler address) and ``workers``.
    force
        Process every scene again.

    Returns
    -------
    tuple
        ``(run folder, scenes table)``.
    """
    from .batch import pooled_scores, run_scenes

    cfg = pipeline if isinstance(pipeline, Mapping) else load_pipeline(pipeline)
    where = cfg.get("_path", "the pipeline")
    if "batch" not in cfg:
        raise ParameterError(
            f"{where} has no 'batch:' section, so --scenes does not know which model to use. "
            "Add one, e.g.\nbatch:\n  model: models/unet_alps_s2.keras\n  threshold: 0.5"
        )
    batch = _check_batch(cfg["batch"], where)
    scenes = list(scenes or batch.get("scenes") or [])
    if not scenes:
        raise ParameterError(
            "No scenes: give them after --scenes, in a file with --scenes-file, or as "
            f"batch.scenes in {where}."
        )
    if workers is not None and (isinstance(workers, bool) or int(workers) < 1):
        raise ParameterError(f"workers={workers} must be a positive number of processes.")
    model = _model_path(batch["model"], cfg)
    name = check_run_name(name or cfg.get("name") or "default", "--name" if name else where)
    run_dir = Path((cfg.get("shared") or {}).get("output_dir") or Path("runs") / name).resolve()
    predict_kwargs = {k: batch[k] for k in ("window", "overlap", "batch_size", "tta")
                      if batch.get(k) is not None}
    outlines = batch.get("outlines")
    if isinstance(outlines, str):  # a file (made absolute for the workers) or a sample name
        outlines = next((str(c.resolve()) for c in _candidates(outlines, cfg) if c.exists()),
                        outlines)
    cluster = cluster or batch.get("cluster")
    workers = workers or batch.get("workers")
    echo(f"[glacierkit run] {len(scenes)} scenes with {model.name} on "
         f"{cluster or f'a local cluster ({workers or 2} workers)'} -> {run_dir / 'scenes'}")
    t0 = time.perf_counter()
    table = run_scenes(
        scenes, model, run_dir, cluster=cluster, n_workers=workers,
        retries=batch.get("retries", 2), progress=progress,
        threshold=batch.get("threshold", 0.5), outlines=outlines,
        sensor=batch.get("sensor"), overwrite=force,
        min_area_km2=batch.get("min_area_km2", 0.01), predict_kwargs=predict_kwargs,
    )
    dt = time.perf_counter() - t0
    _write_batch_summary(run_dir, table, pooled_scores(table), model, dt)
    failed = table[table["error"].fillna("") != ""]
    echo(f"[glacierkit run] {len(table) - len(failed)} of {len(table)} scenes done "
         f"({int(table['skipped'].sum())} skipped as done before) in {dt:.0f} s -> "
         f"{run_dir / 'scenes.csv'}")
    for _, row in failed.iterrows():
        echo(f"[glacierkit run] FAILED {row['scene']}: {row['error']}")
    return run_dir, table


def _write_batch_summary(run_dir: Path, table, pooled: Mapping, model: Path,
                         seconds: float) -> None:
    cols = [c for c in ("scene", "skipped", "error", "glacier_area_km2", "n_polygons",
                        "seconds", "KC", "IoU", "F1") if c in table.columns]
    shown = table[cols].fillna("")
    lines = [f"# glacierkit batch run `{run_dir.name}`", "", f"- model: `{model}`",
             f"- scenes: {len(table)}; wall time {seconds:.1f} s", ""]
    lines.append(_markdown(shown))
    if pooled:
        lines += ["", f"## Pooled over the {pooled['scenes']} evaluated scenes "
                      "(from summed counts)", ""]
        lines += [f"- {k}: {v:.4f}" if isinstance(v, float) else f"- {k}: {v}"
                  for k, v in pooled.items() if k != "scenes"]
    tmp = run_dir / ".scenes_summary.md.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, run_dir / "scenes_summary.md")


def _write_summary(run_dir: Path, state: Mapping) -> None:
    lines = [f"# glacierkit run `{run_dir.name}`", "", "| step | seconds | finished |",
             "|---|---|---|"]
    for step, s in state.items():
        lines.append(f"| {step} | {s.get('seconds')} | {s.get('finished')} |")
    table = run_dir / "table4.csv"  # written by notebook 05 (glacierkit.evaluate)
    if table.is_file():
        import pandas as pd

        df = pd.read_csv(table, keep_default_na=False)
        lines += ["", "## U-Net against NDSI on the test scenes (pooled, %)", "",
                  _markdown(df), "", "Per scene: comparison.csv; provenance: metrics.json."]
    other = run_dir / "other_region" / "cross_region.csv"  # notebook 05, "Another region"
    if other.is_file():
        import pandas as pd

        df = pd.read_csv(other)
        cols = ["scene", "method", "threshold", "MA", "FA", "KC", "rock_FA"]
        df = df[cols].assign(**{c: (100 * df[c]).round(1) for c in ("MA", "FA", "KC", "rock_FA")})
        lines += ["", f"## Another region: {df['scene'].iloc[0].split('/')[0]} (known-truth "
                  "mask, %)", "", _markdown(df), "",
                  "rock_FA: share of the clear-rock pixels called glacier. Details: "
                  "other_region/cross_region.json."]
    tmp = run_dir / ".summary.md.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, run_dir / "summary.md")


def _markdown(df) -> str:
    """A pandas table as GitHub markdown (without needing the tabulate package)."""
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "---|" * len(df.columns)
    rows = ["| " + " | ".join(str(v) for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join([head, rule, *rows])
