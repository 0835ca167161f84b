"""The pipeline runner: notebooks 01-05 in order with papermill, from one YAML file.

A pipeline file looks like::

    name: sample                 # runs/<name>/ unless output_dir is given
    shared:                      # applied to every notebook that declares the parameter
      output_dir: runs/sample
    steps:                       # notebooks/<step>.ipynb, in this order
      01_data_prep:
        scenes: [alps-s2/aletsch, alps-s2/fiescher]
      03_ndsi_threshold: {}

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
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import yaml

from .exceptions import DataNotFoundError, GlacierKitError, ParameterError

log = logging.getLogger(__name__)

__all__ = ["load_pipeline", "notebook_parameters", "check_parameters", "execute_notebook",
           "run_pipeline", "StepFailed", "NOTEBOOK_DIR"]

#: Where the notebooks live (the repository's ``notebooks/``).
NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
KERNEL_NAME = "python3"


class StepFailed(GlacierKitError):
    """A notebook of the pipeline raised an error."""


def load_pipeline(path: str | os.PathLike) -> dict:
    """Read and validate a pipeline YAML file."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"Pipeline file not found: {path}.")
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParameterError(f"{path} is not valid YAML: {exc}") from exc
    unknown = set(cfg) - {"name", "shared", "steps", "notebook_dir"}
    if unknown:
        raise ParameterError(
            f"Unknown top-level keys {sorted(unknown)} in {path}. Valid: name, shared, steps, "
            "notebook_dir."
        )
    if not isinstance(cfg.get("steps"), Mapping) or not cfg["steps"]:
        raise ParameterError(f"{path} needs a 'steps:' mapping of notebook name -> parameters.")
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


def execute_notebook(notebook: str | os.PathLike, output: str | os.PathLike,
                     parameters: Mapping[str, object], cwd: str | os.PathLike | None = None,
                     log_output: bool = False) -> Path:
    """Execute one notebook with papermill; the output appears only on success.

    On failure the partial notebook is kept as ``<output stem>.failed.ipynb`` and
    :class:`StepFailed` carries the failing cell's error.
    """
    import papermill as pm

    notebook, output = Path(notebook), Path(output)
    check_parameters(notebook, parameters)
    # Kernels inherit the environment: keep TensorFlow's C++ start-up chatter out of the log.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.stem}.running.ipynb")
    failed = output.with_name(f"{output.stem}.failed.ipynb")
    try:
        pm.execute_notebook(str(notebook), str(tmp), parameters=dict(parameters),
                            kernel_name=KERNEL_NAME, language="python",
                            cwd=str(cwd or notebook.parent), progress_bar=False,
                            log_output=log_output)
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
    os.replace(tmp, output)
    if failed.exists():
        failed.unlink()
    return output




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
    timings = []
    for step, notebook, params in plan:
        if only and step not in only:
            continue
        out = run_dir / "notebooks" / f"{step}.ipynb"
        key = _hash(params, notebook)
        if not force and state.get(step, {}).get("hash") == key and out.is_file():
            echo(f"[glacierkit run] {step}: done before with the same parameters, skipped "
                 "(use --force to run again)")
            continue
        echo(f"[glacierkit run] {step}: running {notebook.name} ...")
        t0 = time.perf_counter()
        execute_notebook(notebook, out, params, cwd=notebook.parent)
        dt = time.perf_counter() - t0
        timings.append((step, dt))
        state[step] = {"hash": key, "seconds": round(dt, 1),
                       "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        tmp = state_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, state_path)
        echo(f"[glacierkit run] {step}: done in {dt:.0f} s -> {out}")
    _write_summary(run_dir, state)
    echo(f"[glacierkit run] finished: {run_dir}")
    return run_dir


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
    tmp = run_dir / ".summary.md.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, run_dir / "summary.md")


def _markdown(df) -> str:
    """A pandas table as GitHub markdown (without needing the tabulate package)."""
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "---|" * len(df.columns)
    rows = ["| " + " | ".join(str(v) for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join([head, rule, *rows])
