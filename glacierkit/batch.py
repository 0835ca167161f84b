"""Many scenes: one task per scene, locally or on a Dask cluster, resumable.

:func:`process_scene` predicts one scene with a trained model and writes, into
``<output_dir>/scenes/<scene>/``: ``probability.tif``, ``mask.tif`` (COGs),
``outlines.gpkg`` (polygons with area in km²) and ``result.json`` (metrics against the
reference outlines when there are any, timings, provenance).

**Nothing partial is ever left behind.** A scene's files are written into a staging folder
``scenes/.staging-<scene>-<random>/`` that is renamed to ``scenes/<scene>/`` only when
everything is complete; a killed task leaves only its staging folder, which the next
attempt deletes. A scene whose folder exists is skipped, so a killed run resumes where it
stopped.

:func:`run_scenes` sends one task per scene to a ``dask.distributed`` scheduler (an
address such as ``tcp://10.0.0.5:8786``, a ``Client``, or none for a ``LocalCluster`` on
this machine). Tasks are retried on other workers when a worker dies.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from .exceptions import DataNotFoundError, NoOverlapError, ParameterError

log = logging.getLogger(__name__)

__all__ = ["process_scene", "run_scenes", "scene_dir", "RESULT_FILE"]

RESULT_FILE = "result.json"


def scene_dir(output_dir: str | os.PathLike, scene: str) -> Path:
    """Where the outputs of ``scene`` go."""
    from .prep import slug

    return Path(output_dir) / "scenes" / slug(scene)


@lru_cache(maxsize=4)
def _cached_model(path: str):
    """One loaded model per worker process (loading a Keras model takes seconds)."""
    from .features import load_model

    return load_model(path)


def _json_safe(v):
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, (np.floating, float)):
        return None if not np.isfinite(v) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def process_scene(
    scene: str,
    model: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    threshold: float = 0.5,
    outlines=None,
    sensor: str | None = None,
    overwrite: bool = False,
    min_area_km2: float = 0.01,
    predict_kwargs: dict | None = None,
) -> dict:
    """Predict one scene and write its outputs (see the module docstring).

    Returns the scene's result record (read back from ``result.json`` when it was done
    before and ``overwrite`` is False; then ``"skipped": True``).
    """
    from .io import open_scene
    from .labels import rasterize_outlines
    from .metrics import confusion, scores
    from .predict import predict_to_file
    from .prep import _sample_outlines, slug
    from .vectorize import mask_to_polygons, write_outlines

    final = scene_dir(output_dir, scene)
    if final.is_dir() and (final / RESULT_FILE).is_file() and not overwrite:
        record = json.loads((final / RESULT_FILE).read_text())
        record["skipped"] = True
        return record
    root = final.parent
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(f".staging-{slug(scene)}-*"):  # left by a killed attempt
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".staging-{slug(scene)}-"))
    t0 = time.perf_counter()
    try:
        loaded = _cached_model(str(Path(model).resolve()))
        da = open_scene(scene, sensor=sensor)
        paths = predict_to_file(loaded, da, staging, threshold=threshold,
                                progress=False, **(predict_kwargs or {}))
        from .io import open_raster

        mask = open_raster(paths["mask"]).squeeze("band", drop=True)
        polygons = mask_to_polygons(mask, min_area_km2=min_area_km2)
        write_outlines(polygons, staging / "outlines.gpkg")
        record = {
            "scene": scene,
            "model": str(model),
            "threshold": threshold,
            "sensor": da.attrs.get("sensor"),
            "shape": [int(da.sizes["y"]), int(da.sizes["x"])],
            "crs": str(da.rio.crs),
            "glacier_area_km2": float(polygons["area_km2"].sum()) if len(polygons) else 0.0,
            "n_polygons": int(len(polygons)),
            "files": ["probability.tif", "mask.tif", "outlines.gpkg"],
        }
        source = outlines or _sample_outlines(scene)
        if source is not None:
            try:
                labels = rasterize_outlines(source, like=da)
            except NoOverlapError:
                labels = None
            if labels is not None:
                m = mask.values
                pred = np.where(m == 255, np.nan, m).astype("float32")
                counts = confusion(pred, labels.values)
                s = scores(counts)
                record["counts"] = counts.as_dict()
                record["metrics"] = {k: s[k] for k in ("MA", "FA", "OA", "KC", "IoU", "F1")}
        record["seconds"] = round(time.perf_counter() - t0, 2)
        (staging / RESULT_FILE).write_text(json.dumps(_json_safe(record), indent=2))
        if final.exists():  # overwrite: replace the old folder as late as possible
            old = root / f".old-{slug(scene)}-{os.getpid()}"
            final.rename(old)
            staging.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    record["skipped"] = False
    return record


def _client(cluster, n_workers: int | None):
    from dask.distributed import Client, LocalCluster

    if cluster is None or cluster == "local":
        lc = LocalCluster(n_workers=n_workers or min(2, os.cpu_count() or 1),
                          threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None)
        return Client(lc), lc
    if isinstance(cluster, Client):
        return cluster, None
    return Client(cluster), None


def run_scenes(
    scenes: Sequence[str],
    model: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    cluster=None,
    n_workers: int | None = None,
    retries: int = 2,
    progress: bool = True,
    **kwargs,
) -> pd.DataFrame:
    """Process many scenes, one Dask task each; return (and write) ``scenes.csv``.

    Parameters
    ----------
    scenes
        Scene names or paths (anything :func:`glacierkit.io.open_scene` opens).
    model
        The ``.keras`` model (sidecar beside it).
    cluster
        ``None``/``"local"`` for a ``LocalCluster`` on 127.0.0.1 (``n_workers`` processes,
        one thread each), a scheduler address (``"tcp://host:8786"``), or a ``Client``.
    retries
        Extra attempts per scene (on top of Dask's rescheduling when a worker dies).
    kwargs
        Passed to :func:`process_scene` (``threshold``, ``outlines``, ``overwrite`` ...).
    """
    from dask.distributed import as_completed

    from .io import atomic_path

    scenes = list(scenes)
    if not scenes:
        raise ParameterError("No scenes given.")
    if not Path(model).is_file():
        raise DataNotFoundError(f"Model not found: {model}.")
    model = str(Path(model).resolve())
    output_dir = Path(output_dir).resolve()
    todo = [s for s in scenes if kwargs.get("overwrite") or
            not (scene_dir(output_dir, s) / RESULT_FILE).is_file()]
    records = {s: {**json.loads((scene_dir(output_dir, s) / RESULT_FILE).read_text()),
                   "skipped": True} for s in scenes if s not in todo}
    if todo:
        client, local = _client(cluster, n_workers)
        try:
            futures = {client.submit(process_scene, s, model, str(output_dir), pure=False,
                                     retries=retries, key=f"scene-{i}-{os.getpid()}", **kwargs): s
                       for i, s in enumerate(todo)}
            bar = None
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=len(scenes), initial=len(scenes) - len(todo), unit="scene",
                           desc="scenes")
            for fut in as_completed(futures):
                s = futures[fut]
                try:
                    records[s] = fut.result()
                except Exception as exc:  # one bad scene must not stop the others
                    log.error("Scene %s failed: %s", s, exc)
                    records[s] = {"scene": s, "error": f"{type(exc).__name__}: {exc}"}
                if bar is not None:
                    bar.update(1)
            if bar is not None:
                bar.close()
        finally:
            client.close()
            if local is not None:
                local.close()
    rows = []
    for s in scenes:
        r = records[s]
        rows.append({"scene": s, "skipped": r.get("skipped", False), "error": r.get("error", ""),
                     "glacier_area_km2": r.get("glacier_area_km2"),
                     "n_polygons": r.get("n_polygons"), "seconds": r.get("seconds"),
                     **{k: v for k, v in (r.get("metrics") or {}).items()}})
    table = pd.DataFrame(rows)
    with atomic_path(output_dir / "scenes.csv") as tmp:
        table.to_csv(tmp, index=False)
    return table
