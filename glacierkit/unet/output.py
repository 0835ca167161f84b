"""TODO docstring: unet.output (from predict)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import rasterio
import xarray as xr

from ..exceptions import (
    GlacierKitError,
    ParameterError,
)
from .predict import GDAL_CACHE_MB, predict_scene

log = logging.getLogger(__name__)

__all__ = ["predict_to_file", "write_prediction", "PROBABILITY_SCALE", "NODATA_UINT8"]

#: Probability and confidence are stored as ``round(value * 250)`` in uint8 files.
PROBABILITY_SCALE = 250
#: The uint8 nodata value of the probability, mask and confidence files.
NODATA_UINT8 = 255


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
        enc[~np.isfinite(v)] = NODATA_UINT8
        return enc
    return _by_rows(values, encode)


def _encode_mask(values: np.ndarray, threshold: float) -> np.ndarray:
    """1 where ``p > threshold``, 0 elsewhere, 255 where NaN."""
    def encode(v):
        block = (v > threshold).astype("uint8")
        block[np.isnan(v)] = NODATA_UINT8
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

    Returns
    -------
    dict
        ``{"probability": path, "mask": path[, "confidence": path]}``.
    """
    from ..io.write import write_raster
    from ..staging import check_prefix, output_set

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
                                       "overlap", "context", "tta", "precision")
            if k in prob.attrs}
    if prob.attrs.get("guard"):
        import json

        tags["domain_shift_guard"] = json.dumps(prob.attrs["guard"], default=float)
        tags["in_training_domain"] = "yes" if prob.attrs["guard"].get("in_domain") else "no"
    unit_note = (f"value / {PROBABILITY_SCALE} = {{}} in [0, 1]; {NODATA_UINT8} = nodata")
    paths: dict[str, Path] = {}
    # GDAL's block cache defaults to 5% of RAM; keep the COG conversion lean.
    with output_set(final_dir, prefix, overwrite=overwrite) as out_dir, \
            rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        if probability_dtype == "uint8":
            layer = _like(_encode_unit(values), prob, "glacier_probability")
            paths["probability"] = write_raster(
                layer, out_dir / f"{prefix}probability.tif", dtype="uint8",
                nodata=NODATA_UINT8, tags={**tags, "encoding": unit_note.format("probability")},
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
            nodata=NODATA_UINT8, descriptions=["glacier_mask"],
            tags={**tags, "threshold": threshold,
                  "encoding": f"1 = glacier (probability > {threshold}), 0 = not glacier, "
                              f"{NODATA_UINT8} = nodata"})
        del mask
        if confidence is not None:
            cvals = np.asarray(confidence.values, dtype="float32")
            if cvals.shape != values.shape:
                raise GlacierKitError(
                    f"The confidence layer is {cvals.shape}; the probability is {values.shape}."
                )
            paths["confidence"] = write_raster(
                _like(_encode_unit(cvals), prob, "confidence"),
                out_dir / f"{prefix}confidence.tif", dtype="uint8", nodata=NODATA_UINT8,
                descriptions=["tta_agreement"], scales=[1 / PROBABILITY_SCALE],
                resampling="AVERAGE",
                tags={**tags, "encoding": unit_note.format(
                    "fraction of the 8 flips/rotations agreeing with the mean decision")})
        from ..qgis import write_style

        for kind, path in paths.items():  # QGIS default styles, committed with the set
            write_style(path, kind)
    paths = {kind: final_dir / p.name for kind, p in paths.items()}
    log.info("Wrote %s", ", ".join(str(p) for p in paths.values()))
    return paths


def predict_to_file(
    model,
    scene,
    output_dir: str | os.PathLike,
    *,
    threshold: float = 0.5,
    prefix: str = "",
    probability_dtype: str = "uint8",
    overwrite: bool = True,
    **kwargs,
) -> dict[str, Path]:
    """:func:`predict_scene` then :func:`write_prediction`; returns the written paths.

    The output folder is checked (writable, no earlier set unless ``overwrite``) before
    the prediction starts.

    The scene is streamed from disk (only the probability, 4 bytes per pixel, is held in
    memory), so a full Landsat scene fits in well under 2 GB beyond the model. ``kwargs``
    go to :func:`predict_scene` (``window``, ``overlap``, ``batch_size``, ``tta`` ...).
    """
    from ..staging import check_target

    if not 0 <= threshold <= 1:  # fail before the long prediction
        raise ParameterError(f"threshold={threshold} must be a probability in [0, 1].")
    check_target(output_dir, prefix, overwrite=overwrite)
    prob = predict_scene(model, scene, **kwargs)
    return write_prediction(prob, output_dir, threshold=threshold, prefix=prefix,
                            probability_dtype=probability_dtype, overwrite=overwrite)
