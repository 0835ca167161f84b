"""From a prediction to files: the one path every caller takes.

:func:`predict_to_files` predicts a scene and writes its files; :func:`write_prediction`
writes a probability already in memory. The console command (``glacierkit predict``), the
batch runner (:mod:`glacierkit.pipeline.batch`), the test-scene comparison
(:func:`glacierkit.evaluate.compare_methods`) and the cross-region scores
(:func:`glacierkit.evaluate.cross_region`) all write through :func:`write_prediction`, so
every prediction on disk has the same files, encodings, tags and commit rule:

* ``probability.tif``, ``mask.tif`` and (with TTA) ``confidence.tif``: cloud-optimized
  GeoTIFFs with the scene's CRS (uint8 ``round(p * 250)``, :data:`~glacierkit.NODATA` =
  nodata, with GDAL's scale factor so QGIS shows 0..1);
* ``outlines.gpkg`` when asked (polygons of the mask with area and perimeter);
* a QGIS style beside each raster (:mod:`glacierkit.qgis`);
* all written into a hidden staging folder and moved in as one set
  (:func:`glacierkit.staging.output_set`): a folder never holds a new probability beside an
  old mask, and a killed run leaves the old set or the new one, never a mix.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import xarray as xr

from .._util import NODATA, to_json
from ..exceptions import GlacierKitError, ParameterError
from ..io.clouds import CARRIED_ATTRS
from ..staging import PREDICTION_STEMS, check_prefix, check_target, fault_point, output_set
from .predict import GDAL_CACHE_MB, predict_scene

log = logging.getLogger(__name__)

__all__ = ["predict_to_files", "write_prediction", "check_not_the_scene", "PredictionFiles",
           "PROBABILITY_SCALE"]

#: Probability and confidence are stored as ``round(value * 250)`` in uint8 files.
PROBABILITY_SCALE = 250


# --------------------------------------------------------------------------- writing
def _by_rows(values: np.ndarray, encode, rows: int = 1024) -> np.ndarray:
    """uint8 ``encode(block)`` of ``values`` by blocks of rows, so the temporaries stay
    small on full scenes."""
    out = np.empty(values.shape, dtype="uint8")
    for r in range(0, values.shape[0], rows):
        out[r: r + rows] = encode(values[r: r + rows])
    return out


def _encode_unit(values: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8 ``round(v * 250)``; NaN -> 255."""
    def encode(v):
        enc = np.rint(np.clip(np.nan_to_num(v, nan=0.0), 0, 1) * PROBABILITY_SCALE)
        enc[~np.isfinite(v)] = NODATA
        return enc
    return _by_rows(values, encode)


def _encode_mask(values: np.ndarray, threshold: float) -> np.ndarray:
    """1 where ``p > threshold``, 0 elsewhere, 255 where NaN."""
    def encode(v):
        block = (v > threshold).astype("uint8")
        block[np.isnan(v)] = NODATA
        return block
    return _by_rows(values, encode)


def _like(values: np.ndarray, grid: xr.DataArray, name: str) -> xr.DataArray:
    da = xr.DataArray(values, dims=("y", "x"), coords={"y": grid["y"].values,
                                                       "x": grid["x"].values}, name=name)
    return da.rio.write_crs(grid.rio.crs).rio.write_transform(grid.rio.transform())


def write_prediction(
    prob: xr.DataArray,
    output_dir: str | os.PathLike,
    *,
    threshold: float = 0.5,
    prefix: str = "",
    probability_dtype: str = "uint8",
    confidence: xr.DataArray | None = None,
    overwrite: bool = True,
    outlines=False,
    min_area_km2: float = 0.01,
    simplify_m: float | None = None,
) -> dict[str, Path]:
    """Write a prediction as cloud-optimized GeoTIFFs with overviews, atomically.

    The files are written to a staging folder and moved in as one set
    (:func:`glacierkit.staging.output_set`): the folder never holds a new probability
    beside an old mask, and an earlier set with the same prefix is replaced as a whole
    (its ``confidence.tif`` and ``outlines.gpkg`` too), or refused with
    ``overwrite=False``.

    Files in ``output_dir`` (each name starts with ``prefix``):

    * ``probability.tif``: with ``probability_dtype="uint8"`` (default) the value is
      ``round(p * 250)``, so 0..250 maps to 0..1 in steps of 0.004 (the file's scale factor
      is 0.004, so GDAL/QGIS can unscale it) and 255 is nodata; with ``"float32"`` the
      probability itself with NaN nodata.
    * ``mask.tif``: uint8, 1 glacier (``p > threshold``), 0 not glacier, 255 nodata.
    * ``confidence.tif`` (when ``confidence`` is given or ``prob`` carries a ``confidence``
      coordinate from ``tta=True``): uint8 like the probability, 0..250 = 0..1.
    * ``outlines.gpkg`` (with ``outlines=True``): the glacier polygons of the mask
      (:func:`glacierkit.vectorize.mask_to_polygons`), with area and perimeter.
    * beside each, its QGIS style (``probability.qml`` ...; :mod:`glacierkit.qgis`), so the
      layers open readable in QGIS.

    Parameters
    ----------
    prob
        ``(y, x)`` probability from :func:`predict_scene` (CRS and transform needed).
    output_dir
        Folder for the files (created if needed).
    threshold
        Probability above which a pixel is glacier in the mask.
    prefix
        Prepended to the file names, e.g. ``"merdeglace_"``.
    probability_dtype
        ``"uint8"`` or ``"float32"``.
    confidence
        A confidence layer on the same grid (default: ``prob.confidence`` if present).
    overwrite
        Replace an earlier set of outputs with the same prefix in ``output_dir``;
        ``False`` raises :class:`~glacierkit.exceptions.OutputExistsError` instead.
    outlines, min_area_km2, simplify_m
        Also write ``outlines.gpkg``: with ``True`` the mask's polygons of at least
        ``min_area_km2``, simplified by ``simplify_m`` metres (None: not simplified); or a
        GeoDataFrame of them already made (:func:`glacierkit.vectorize.mask_to_polygons`).

    Returns
    -------
    dict
        ``{"probability": path, "mask": path[, "confidence": path][, "outlines": path]}``.
    """
    from ..io.write import write_raster
    from ..qgis import write_style

    if not 0 <= threshold <= 1:
        raise ParameterError(f"threshold={threshold} must be a probability in [0, 1].")
    prefix = check_prefix(prefix)
    if probability_dtype not in ("uint8", "float32"):
        raise ParameterError(
            f"probability_dtype={probability_dtype!r}; use 'uint8' (0..250, 255 nodata) or "
            "'float32'."
        )
    if prob.dims != ("y", "x"):
        raise GlacierKitError(f"Expected a (y, x) probability; got dims {prob.dims}.")
    if confidence is None and "confidence" in prob.coords:
        confidence = prob["confidence"]
    values = np.asarray(prob.values, dtype="float32")
    if confidence is not None and confidence.shape != values.shape:
        raise GlacierKitError(
            f"The confidence layer is {confidence.shape}; the probability is {values.shape}."
        )
    final_dir = Path(output_dir)
    tags = {k: prob.attrs[k] for k in ("model", "scene_id", "sensor", "date", "window",
                                       "overlap", "context", "tta", "precision",
                                       *CARRIED_ATTRS)
            if k in prob.attrs}
    if prob.attrs.get("guard"):
        tags["domain_shift_guard"] = to_json(prob.attrs["guard"], indent=None)
        tags["in_training_domain"] = "yes" if prob.attrs["guard"].get("in_domain") else "no"
    unit_note = (f"value / {PROBABILITY_SCALE} = {{}} in [0, 1]; {NODATA} = nodata")
    paths: dict[str, Path] = {}
    # GDAL's block cache defaults to 5% of RAM; keep the COG conversion lean.
    with output_set(final_dir, prefix, overwrite=overwrite) as out_dir, \
            rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        if probability_dtype == "uint8":
            layer = _like(_encode_unit(values), prob, "glacier_probability")
            paths["probability"] = write_raster(
                layer, out_dir / f"{prefix}probability.tif", dtype="uint8",
                nodata=NODATA, tags={**tags, "encoding": unit_note.format("probability")},
                descriptions=["glacier_probability"], scales=[1 / PROBABILITY_SCALE],
                resampling="AVERAGE")
        else:
            layer = _like(values, prob, "glacier_probability")
            paths["probability"] = write_raster(
                layer, out_dir / f"{prefix}probability.tif", dtype="float32",
                tags={**tags, "encoding": "glacier probability; NaN = nodata"},
                descriptions=["glacier_probability"], resampling="AVERAGE")
        mask = _encode_mask(values, threshold)
        paths["mask"] = write_raster(
            _like(mask, prob, "glacier_mask"), out_dir / f"{prefix}mask.tif", dtype="uint8",
            nodata=NODATA, descriptions=["glacier_mask"],
            tags={**tags, "threshold": threshold,
                  "encoding": f"1 = glacier (probability > {threshold}), 0 = not glacier, "
                              f"{NODATA} = nodata"})
        del mask
        if confidence is not None:
            cvals = np.asarray(confidence.values, dtype="float32")
            if cvals.shape != values.shape:
                raise GlacierKitError(
                    f"The confidence layer is {cvals.shape}; the probability is {values.shape}."
                )
            paths["confidence"] = write_raster(
                _like(_encode_unit(cvals), prob, "confidence"),
                out_dir / f"{prefix}confidence.tif", dtype="uint8", nodata=NODATA,
                descriptions=["tta_agreement"], scales=[1 / PROBABILITY_SCALE],
                resampling="AVERAGE",
                tags={**tags, "encoding": unit_note.format(
                    "fraction of the 8 flips/rotations agreeing with the mean decision")})
        for kind, path in list(paths.items()):  # QGIS default styles, committed with the set
            write_style(path, kind)
        if outlines is not False and outlines is not None:
            from ..vectorize import mask_to_polygons, write_outlines

            polygons = outlines if not isinstance(outlines, bool) else mask_to_polygons(
                prob, threshold=threshold, min_area_km2=min_area_km2, simplify_m=simplify_m)
            paths["outlines"] = write_outlines(polygons, out_dir / f"{prefix}outlines.gpkg")
        fault_point("predict:written")
    paths = {kind: final_dir / p.name for kind, p in paths.items()}
    log.info("Wrote %s", ", ".join(str(p) for p in paths.values()))
    return paths




@dataclass
class PredictionFiles:
    """What :func:`predict_to_files` wrote: the ``paths`` by kind and the ``probability``
    (its attrs hold the window plan and the domain-shift guard's report)."""

    paths: dict[str, Path]
    probability: xr.DataArray


def check_not_the_scene(scene, output_dir: Path, prefix: str) -> None:
    """Refuse an output set that would overwrite or change the input scene (a path, or a
    scene opened from one: its ``source`` attribute)."""
    if isinstance(scene, xr.DataArray):
        scene = scene.attrs.get("source")
    if not isinstance(scene, (str, os.PathLike)):
        return
    src = Path(scene).expanduser()
    if not src.exists():
        return  # a sample name
    src, out = src.resolve(), output_dir.resolve()
    outputs = {out / f"{prefix}{stem}{suffix}" for stem in PREDICTION_STEMS
               for suffix in (".tif", ".gpkg")}
    if src in outputs or src == out or src in out.parents:
        raise ParameterError(
            f"The outputs in {output_dir} would overwrite or change the scene {scene}. "
            "Give an output folder outside the scene, or another prefix (--prefix)."
        )


def predict_to_files(
    model,
    scene,
    output_dir: str | os.PathLike,
    *,
    threshold: float | None = None,
    prefix: str = "",
    probability_dtype: str = "uint8",
    overwrite: bool = True,
    outlines: bool = False,
    min_area_km2: float = 0.01,
    simplify_m: float | None = None,
    **kwargs,
) -> PredictionFiles:
    """Predict a scene and write its files as one set (see the module docstring).

    Everything that can fail fast is checked before the prediction starts: the threshold,
    the prefix, the output folder (writable, no earlier set unless ``overwrite``) and that
    no output would overwrite the scene itself. The scene is streamed from disk (only the
    probability, 4 bytes per pixel, is held in memory).

    Parameters
    ----------
    model
        A ``.keras`` path, the pair from :func:`glacierkit.unet.load_model`, or a loaded
        predictor.
    scene
        Anything :func:`glacierkit.unet.predict_scene` takes.
    output_dir
        The folder of the set (created if needed).
    threshold
        Probability above which the mask says glacier; default: the model's own
        (its sidecar's ``architecture.threshold``), else 0.5.
    prefix, probability_dtype, overwrite, outlines, min_area_km2, simplify_m
        As in :func:`write_prediction`.
    kwargs
        For :func:`glacierkit.unet.predict_scene` (``window``, ``overlap``, ``tta``,
        ``precision``, ``progress`` ...).

    Returns
    -------
    PredictionFiles
    """
    from .artifact import resolve_model

    if threshold is not None and not 0 <= threshold <= 1:  # fail before the long prediction
        raise ParameterError(f"threshold={threshold} must be a probability in [0, 1].")
    output_dir = Path(output_dir)
    prefix = check_prefix(prefix)
    check_target(output_dir, prefix, overwrite=overwrite)
    check_not_the_scene(scene, output_dir, prefix)
    pred = resolve_model(model, kwargs.pop("precision", None))
    if threshold is None:
        threshold = float(pred.sidecar.get("architecture", {}).get("threshold", 0.5))
    prob = predict_scene(pred, scene, **kwargs)
    fault_point("predict:predicted")
    paths = write_prediction(prob, output_dir, threshold=threshold, prefix=prefix,
                             probability_dtype=probability_dtype, overwrite=overwrite,
                             outlines=outlines, min_area_km2=min_area_km2,
                             simplify_m=simplify_m)
    return PredictionFiles(paths, prob)
