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
that completed with the same parameters is skipped unless ``force=True``. A failed step
stops the run and its failing cell's error is shown; the partial notebook is kept as
``<step>.failed.ipynb``.
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
from collections.abc import Callable, Mapping
from pathlib import Path

import yaml

from .exceptions import DataNotFoundError, GlacierKitError, ParameterError

log = logging.getLogger(__name__)

__all__ = ["load_pipeline", "notebook_parameters", "check_parameters", "execute_notebook",
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
    if not path.is_file():
        raise DataNotFoundError(f"Pipeline file not found: {path}.")
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParameterError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(cfg, Mapping):
        raise ParameterError(f"{path} must be a YAML mapping (name:, shared:, steps:, batch:).")
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
    cfg.setdefault("steps", {})
    cfg.setdefault("shared", {})
    for step, params in list(cfg["steps"].items()):
        if params is None:
            cfg["steps"][step] = {}
        elif not isinstance(params, Mapping):
            raise ParameterError(f"Step {step!r} in {path} must map parameter names to values.")
    cfg["_path"] = str(path.resolve())
    return cfg


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


def _hash(params: Mapping[str, object], notebook: Path) -> str:
    blob = json.dumps(params, sort_keys=True, default=str) + notebook.read_text()
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


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
    name = name or cfg.get("name") or "default"
    nb_dir = Path(cfg.get("notebook_dir") or NOTEBOOK_DIR)
    shared = dict(cfg.get("shared", {}))
    shared.setdefault("output_dir", str(Path("runs") / name))
    shared["output_dir"] = str(Path(shared["output_dir"]).resolve())
    run_dir = Path(shared["output_dir"])
    overrides = overrides or {}
    steps = list(cfg["steps"].items())
    if only:
        missing = [s for s in only if s not in cfg["steps"]]
        if missing:
            raise ParameterError(f"Unknown steps {missing}. Steps: {[s for s, _ in steps]}.")
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
    state_path = run_dir / "pipeline_state.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    from tqdm.auto import tqdm

    from .report import REPORT_DIR, notebook_html, write_index

    todo = [p for p in plan if not only or p[0] in only]
    width = max((len(step) for step, _, _ in todo), default=0)
    echo(f"glacierkit run {name}: {len(todo)} steps -> {run_dir}")
    bar = tqdm(total=len(todo), unit="step", leave=False, disable=None,
               bar_format="{desc} {n_fmt}/{total_fmt} steps, {elapsed}")
    for step, notebook, params in todo:
        out = run_dir / "notebooks" / f"{step}.ipynb"
        report = run_dir / REPORT_DIR / f"{step}.html"
        key = _hash(params, notebook)
        if not force and state.get(step, {}).get("hash") == key and out.is_file():
            if not report.is_file():
                notebook_html(out, report)
            bar.update()
            echo(f"  {step:<{width}}  skipped: done before with the same parameters "
                 "(--force runs it again)")
            continue
        bar.set_description_str(f"  {step:<{width}}  running")
        t0 = time.perf_counter()
        try:
            execute_notebook(notebook, out, params, cwd=notebook.parent)
        finally:
            bar.clear()
        dt = time.perf_counter() - t0
        state[step] = {"hash": key, "seconds": round(dt, 1),
                       "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        tmp = state_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, state_path)
        notebook_html(out, report)
        bar.update()
        echo(f"  {step:<{width}}  {dt:5.0f} s")
        warnings = notebook_warnings(out)
        for w in warnings[:3]:  # real warnings of the notebook's code, not kernel chatter
            echo(f"    {w[:150]}")
        if len(warnings) > 3:
            echo(f"    ... {len(warnings) - 3} more warnings in {report}")
    bar.close()
    _write_summary(run_dir, state)
    index = write_index(run_dir, state, [step for step, _, _ in plan], title=name)
    echo(f"Report: {index}")
    return run_dir


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
    name = name or cfg.get("name") or "default"
    run_dir = Path(cfg.get("shared", {}).get("output_dir") or Path("runs") / name).resolve()
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
