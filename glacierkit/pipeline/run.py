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
one Dask task per scene (:func:`run_batch`, :mod:`glacierkit.pipeline.batch`)::

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

import hashlib
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from pathlib import Path

from .._util import read_json, to_json, write_json
from ..exceptions import DataNotFoundError, ParameterError
from .config import check_batch, check_run_name, check_step_names, load_pipeline
from .notebooks import (
    NOTEBOOK_DIR,
    check_parameters,
    execute_notebook,
    notebook_parameters,
    notebook_warnings,
)

log = logging.getLogger(__name__)

__all__ = ["run_pipeline", "run_batch"]


def _hash(params: Mapping[str, object], notebook: Path, upstream=()) -> str:
    """A step's identity: its parameters, its notebook and the runs of the steps before it
    (``upstream``: ``[(step, run id or None), ...]``)."""
    blob = to_json([params, list(upstream)], indent=None, sort_keys=True)
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
        state = read_json(state_path)
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
        check_step_names(only, cfg["steps"], "--only")
    check_step_names([k for k in overrides if k != "*"], cfg["steps"], "--set")
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

    from ..staging import fault_point
    from .report import REPORT_DIR, notebook_html, write_index

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
        write_json(state_path, state)
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

    One :mod:`dask.distributed` task per scene (:func:`glacierkit.pipeline.run_scenes`);
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
    batch = check_batch(cfg["batch"], where)
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
    conditions = run_dir / "conditions" / "conditions_summary.csv"  # notebook 05
    if conditions.is_file():
        import pandas as pd

        df = pd.read_csv(conditions)
        cols = ["condition", "scenes", "model_KC", "ndsi_KC", "oracle_KC", "margin", "passes"]
        df = df[cols].assign(**{c: (100 * df[c]).round(1)
                                for c in ("model_KC", "ndsi_KC", "oracle_KC", "margin")})
        lines += ["", "## Across conditions: top of atmosphere, offsets, pixel sizes (KC, %)",
                  "", _markdown(df), "",
                  "margin: the model's KC minus NDSI's at the learned threshold, pooled over "
                  "the scenes of the condition (the bar: at least -2). Details: conditions/."]
    tmp = run_dir / ".summary.md.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, run_dir / "summary.md")


def _markdown(df) -> str:
    """A pandas table as GitHub markdown (without needing the tabulate package)."""
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "---|" * len(df.columns)
    rows = ["| " + " | ".join(str(v) for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join([head, rule, *rows])
