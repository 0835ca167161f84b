"""Pipeline files: read, check and resolve the YAML that ``glacierkit run`` executes.

:func:`load_pipeline` checks the structure and the types of every value with a message
that names the value and the fix; paths in the file are relative to the folder the run is
started in. The ``batch:`` section (many scenes on Dask) is checked here too, and
:func:`read_scene_list` reads a file of scene paths.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path

import yaml

from ..exceptions import DataNotFoundError, ParameterError

__all__ = ["load_pipeline", "check_run_name", "read_scene_list", "BATCH_KEYS"]


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


def check_batch(batch, path) -> dict:
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
        cfg["batch"] = check_batch(cfg["batch"], path)
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


def check_step_names(names, steps, what: str) -> None:
    for name in names:
        if name not in steps:
            close = difflib.get_close_matches(str(name), list(steps), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ParameterError(
                f"Unknown step {name!r} in {what}.{hint} Steps of the pipeline: {list(steps)}."
            )


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
