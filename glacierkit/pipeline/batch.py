"""Many scenes: one task per scene, locally or on a Dask cluster, resumable.

:func:`process_scene` predicts one scene with a trained model and writes, into
``<output_dir>/scenes/<scene>/``: ``probability.tif``, ``mask.tif`` (COGs),
``outlines.gpkg`` (polygons with area in km²) and ``result.json`` (metrics against the
reference outlines when there are any, timings, provenance).

**Nothing partial is ever left behind.** A scene's files are written into a staging folder
``scenes/.staging-<scene>.<random>/`` that is renamed to ``scenes/<scene>/`` only when
everything is complete; a killed task leaves only its staging folder, which the next
attempt deletes (exactly this scene's: never another scene's in-progress folder). A scene
whose folder holds a readable ``result.json`` is skipped, so a killed run resumes where it
stopped. Scene folder names keep letters of any script and are never empty, ``.`` or
``..`` (see :func:`glacierkit._util.slug`).

:func:`run_scenes` sends one task per scene to a ``dask.distributed`` scheduler (an
address such as ``tcp://10.0.0.5:8786``, a ``Client``, or none for a ``LocalCluster`` on
this machine, or a ``distributed`` cluster object such as dask-jobqueue's ``SLURMCluster``).
When a worker dies mid-scene (killed, out of memory, node lost), the scheduler sends the
scene to another worker; ``retries`` more attempts are made when a scene raises. A scene
that still fails is recorded with its error in ``scenes.csv`` and the others go on.

Workers are separate processes (``LocalCluster(processes=True)``), each loading the model
once and running TensorFlow with ``cores / workers`` intra-op threads.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .._util import read_json, write_json
from ..console import QUIET_ENV, collect_warnings
from ..exceptions import DataNotFoundError, NoOverlapError, ParameterError
from ..metrics import Counts, scores
from ..staging import fault_point, make_private_dir

log = logging.getLogger(__name__)

__all__ = ["process_scene", "run_scenes", "scene_dir", "pooled_scores", "RESULT_FILE", "METRICS"]

RESULT_FILE = "result.json"
#: The per-scene metrics written to ``result.json`` and ``scenes.csv``.
METRICS = ("MA", "FA", "OA", "KC", "IoU", "F1")


def scene_dir(output_dir: str | os.PathLike, scene: str) -> Path:
    """Where the outputs of ``scene`` go."""
    from .._util import slug

    return Path(output_dir) / "scenes" / slug(scene)


def _read_record(final: Path) -> dict | None:
    """The record of a done scene; ``None`` when its ``result.json`` is unreadable (the
    scene is then done again)."""
    try:
        record = read_json(final / RESULT_FILE)
    except (OSError, ValueError) as exc:
        log.warning("Cannot read %s (%s): the scene is processed again.", final / RESULT_FILE,
                    exc)
        return None
    if not isinstance(record, dict):
        log.warning("%s is not a scene record: the scene is processed again.",
                    final / RESULT_FILE)
        return None
    record["skipped"] = True
    return record


def _is_ours(entry: str, kind: str, name: str) -> bool:
    """``entry`` is exactly a ``.<kind>-<name>.<8 random chars>`` folder of scene ``name``
    (not of ``<name>-2`` or any other scene)."""
    return re.fullmatch(rf"\.{kind}-{re.escape(name)}\.[a-z0-9_]{{8}}", entry) is not None


def _recover_scene(root: Path, name: str) -> None:
    """Clean what a killed attempt at scene ``name`` left in ``root`` (``scenes/``).

    Its staging folders are deleted. An ``.old-`` folder is the previous result set aside
    just before the new one was renamed in: if the new one is there, it is deleted; if
    not (killed between the two renames), it is put back. Only folders of exactly this
    scene are touched.
    """
    final = root / name
    olds = []
    for entry in root.iterdir():
        if _is_ours(entry.name, "staging", name):
            shutil.rmtree(entry, ignore_errors=True)
        elif _is_ours(entry.name, "old", name):
            olds.append(entry)
    for old in sorted(olds, key=lambda p: p.stat().st_mtime, reverse=True):
        if not final.exists() and (old / RESULT_FILE).is_file():
            log.warning("Restoring %s from %s (an interrupted overwrite).", final, old.name)
            old.rename(final)
        else:
            shutil.rmtree(old, ignore_errors=True)


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
    before_commit: Callable[[str, Path], None] | None = None,
) -> dict:
    """Predict one scene and write its outputs (see the module docstring).

    Parameters
    ----------
    scene
        A scene name or path (anything :func:`glacierkit.io.open_scene` opens).
    model
        The ``.keras`` model path (sidecar beside it); loaded once per process.
    output_dir
        The run folder; outputs go to ``<output_dir>/scenes/<slug>/``.
    threshold
        Probability above which a pixel is glacier.
    outlines
        Reference outlines (path or GeoDataFrame) to evaluate against; ``None`` uses the
        sample registry's outlines for sample scenes; ``False`` skips the evaluation.
    sensor
        Passed to :func:`~glacierkit.io.open_scene` when it cannot guess it.
    overwrite
        Process the scene again even when its outputs exist.
    min_area_km2
        Smallest polygon kept in ``outlines.gpkg``.
    predict_kwargs
        For :func:`glacierkit.unet.predict_scene` (``window``, ``overlap``, ``tta`` ...).
    before_commit
        Called as ``before_commit(scene, staging_folder)`` after every output is written
        and before the folder is committed: a place to add files of your own (they are
        committed atomically with the rest).

    Returns
    -------
    dict
        The scene's record, also in ``result.json``: area, polygon count, ``counts`` and
        ``metrics`` (:data:`METRICS`) when outlines overlap the scene, ``seconds``, the
        ``host`` and ``pid`` that did it, and ``skipped`` (True when it was done before).
    """
    final = scene_dir(output_dir, scene)
    root = Path(output_dir) / "scenes"
    name = final.name
    if final.parent != root or name in ("", ".", "..") or name.startswith("."):
        raise ParameterError(  # slug() never gives these; refuse rather than risk scenes/
            f"Scene {scene!r} maps to the folder name {name!r}, which is not a scene folder. "
            "Rename the scene file."
        )
    root.mkdir(parents=True, exist_ok=True)
    _recover_scene(root, name)
    if (final / RESULT_FILE).is_file() and not overwrite:
        record = _read_record(final)
        if record is not None:
            return record
    staging = make_private_dir(root, f".staging-{name}.")
    t0 = time.perf_counter()
    with collect_warnings() as caught:  # into the record: the parent prints them once
        return _process(scene, model, staging, final, root, name, t0, caught, threshold,
                        outlines, sensor, min_area_km2, predict_kwargs, before_commit)


def _process(scene, model, staging: Path, final: Path, root: Path, name: str, t0: float,
             caught: list[str], threshold, outlines, sensor, min_area_km2, predict_kwargs,
             before_commit) -> dict:
    """The body of :func:`process_scene`, from the staging folder to the commit."""
    import geopandas as gpd

    from ..io.scene import open_scene
    from ..labels import rasterize_outlines
    from ..metrics import confusion
    from ..prep import sample_outlines
    from ..unet.output import predict_to_files
    from ..unet.predict_dask import cached_predictor

    try:
        pred = cached_predictor(str(Path(model).resolve()))
        da = open_scene(scene, sensor=sensor)
        written = predict_to_files(pred, da, staging, threshold=threshold, outlines=True,
                                   min_area_km2=min_area_km2, progress=False,
                                   **(predict_kwargs or {}))
        polygons = gpd.read_file(written.paths["outlines"])
        prob = written.probability.values
        record = {
            "scene": str(scene),
            "model": str(model),
            "threshold": threshold,
            "sensor": da.attrs.get("sensor"),
            "shape": [int(da.sizes["y"]), int(da.sizes["x"])],
            "crs": str(da.rio.crs),
            "glacier_area_km2": float(polygons["area_km2"].sum()) if len(polygons) else 0.0,
            "n_polygons": int(len(polygons)),
            "files": sorted(p.name for p in staging.iterdir()) + [RESULT_FILE],
        }
        source = None if outlines is False else (outlines or sample_outlines(str(scene)))
        if source is not None:
            try:
                labels = rasterize_outlines(source, like=da)
            except NoOverlapError:
                labels = None
                record["evaluation"] = "no reference outline overlaps the scene"
            if labels is not None:
                with np.errstate(invalid="ignore"):  # NaN: nodata, in no class
                    called = np.where(np.isnan(prob), np.nan, prob > threshold)
                counts = confusion(called.astype("float32"), labels.values)
                s = scores(counts)
                record["counts"] = counts.as_dict()
                record["metrics"] = {k: s[k] for k in METRICS}
        record["seconds"] = round(time.perf_counter() - t0, 2)
        record["host"], record["pid"] = socket.gethostname(), os.getpid()
        if caught:
            record["warnings"] = list(caught)
        write_json(staging / RESULT_FILE, record)
        if before_commit is not None:
            before_commit(str(scene), staging)
        fault_point("batch:staged")
        if final.exists():  # overwrite: replace the old folder as late as possible
            old = root / f".old-{name}.{uuid.uuid4().hex[:8]}"
            final.rename(old)
            fault_point("batch:swapping")
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
    """``(client, cluster we started or None)``."""
    from dask.distributed import Client, LocalCluster

    if cluster is None or cluster == "local":
        n = int(n_workers or min(2, os.cpu_count() or 1))
        threads = max(1, (os.cpu_count() or 1) // n)
        env = {**{k: os.environ.get(k, v) for k, v in QUIET_ENV.items()},  # quiet TensorFlow
               "TF_NUM_INTRAOP_THREADS": str(threads), "TF_NUM_INTEROP_THREADS": "1",
               "OMP_NUM_THREADS": str(threads)}
        lc = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=":0", env=env)  # a free port on 127.0.0.1
        client = Client(lc)
        log.info("Local Dask cluster: %d workers, dashboard %s", n, client.dashboard_link)
        return client, lc
    if isinstance(cluster, Client):
        return cluster, None
    if n_workers:
        log.warning("n_workers=%s is ignored with an existing cluster (%s).", n_workers, cluster)
    return Client(cluster), None  # an address or a Cluster object (SLURMCluster, ...)


def pooled_scores(table: pd.DataFrame) -> dict:
    """Scores from the summed counts of every evaluated scene of a ``scenes.csv`` table."""
    cols = ["TP", "FP", "FN", "TN"]
    if not set(cols) <= set(table.columns):
        return {}
    done = table.dropna(subset=cols)
    if done.empty:
        return {}
    total = Counts(*(int(done[c].sum()) for c in cols))
    s = scores(total)
    return {"scenes": int(len(done)), **total.as_dict(), **{k: s[k] for k in METRICS}}


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
    output_dir
        The run folder: ``scenes/<scene>/`` per scene and ``scenes.csv``.
    cluster
        ``None``/``"local"`` for a ``LocalCluster`` on 127.0.0.1 (``n_workers`` processes,
        one thread each), a scheduler address (``"tcp://host:8786"``), a cluster object
        (dask-jobqueue, dask-kubernetes ...) or a ``Client``.
    n_workers
        Worker processes of the local cluster (default: 2, or 1 on a one-core machine).
    retries
        Extra attempts for a scene that raises (a worker dying is handled by the
        scheduler, which moves the scene to another worker).
    progress
        Show a progress bar.
    kwargs
        Passed to :func:`process_scene` (``threshold``, ``outlines``, ``overwrite``,
        ``predict_kwargs``, ``before_commit`` ...).

    Returns
    -------
    pandas.DataFrame
        One row per scene: ``scene``, ``skipped``, ``error``, ``glacier_area_km2``,
        ``n_polygons``, ``seconds`` (the scene's own), ``finished_s`` (since the start of
        the run), ``host``, ``pid``, the counts ``TP, FP, FN, TN`` and :data:`METRICS` when
        evaluated.
    """
    from dask.distributed import as_completed

    from .._util import atomic_path, slug

    # Paths become absolute: workers may run elsewhere (a shared file system is assumed).
    scenes = [str(Path(s).resolve()) if Path(str(s)).exists() else str(s) for s in scenes]
    if not scenes:
        raise ParameterError("No scenes given.")
    seen: dict[str, str] = {}
    for s in scenes:
        other = seen.setdefault(slug(s), s)
        if other != s:
            raise ParameterError(
                f"The scenes {other!r} and {s!r} would both write to scenes/{slug(s)}/. "
                "Rename one of them or process them in separate runs."
            )
    if len(seen) != len(scenes):
        raise ParameterError(f"Scenes listed twice: {sorted({s for s in scenes if scenes.count(s) > 1})}.")
    if not Path(model).is_file():
        raise DataNotFoundError(f"Model not found: {model}.")
    model = str(Path(model).resolve())
    output_dir = Path(output_dir).resolve()
    t0 = time.perf_counter()
    records = {}
    for s in scenes:
        if not kwargs.get("overwrite") and (scene_dir(output_dir, s) / RESULT_FILE).is_file():
            record = _read_record(scene_dir(output_dir, s))
            if record is not None:
                records[s] = record
    todo = [s for s in scenes if s not in records]
    finished: dict[str, float] = {}
    if todo:
        client, local = _client(cluster, n_workers)
        bar = None
        try:
            futures = {client.submit(process_scene, s, model, str(output_dir), pure=False,
                                     retries=retries, key=f"scene-{slug(s)}-{uuid.uuid4().hex[:8]}",
                                     **kwargs): s
                       for s in todo}
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=len(scenes), initial=len(scenes) - len(todo), unit="scene",
                           desc="scenes", leave=False)  # the caller prints the summary
            for fut in as_completed(futures):
                s = futures[fut]
                try:
                    records[s] = fut.result()
                except Exception as exc:  # one bad scene must not stop the others
                    log.error("Scene %s failed: %s: %s", s, type(exc).__name__, exc)
                    records[s] = {"scene": s, "error": f"{type(exc).__name__}: {exc}"}
                finished[s] = round(time.perf_counter() - t0, 2)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
            if local is not None:
                client.close()
                local.close()
            elif client is not cluster:  # we opened it from an address or a cluster object
                client.close()
    for s in todo:  # the workers' warnings, after the progress bar, each distinct one once
        for text in records[s].get("warnings", []):
            log.warning("%s", text)
    rows = []
    for s in scenes:
        r = records[s]
        rows.append({"scene": s, "skipped": bool(r.get("skipped", False)),
                     "error": r.get("error", ""),
                     "glacier_area_km2": r.get("glacier_area_km2"),
                     "n_polygons": r.get("n_polygons"), "seconds": r.get("seconds"),
                     "finished_s": finished.get(s), "host": r.get("host"), "pid": r.get("pid"),
                     **(r.get("counts") or {}), **(r.get("metrics") or {})})
    table = pd.DataFrame(rows)
    with atomic_path(output_dir / "scenes.csv") as tmp:
        table.to_csv(tmp, index=False)
    n_err = int((table["error"] != "").sum())
    log.info("%d scenes: %d processed, %d skipped, %d failed", len(scenes),
             len(todo) - n_err, len(scenes) - len(todo), n_err)
    return table
