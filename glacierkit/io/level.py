"""Processing level: surface reflectance or top-of-atmosphere, and offsets nobody stated.

Scenes reach glacierkit as surface reflectance (Landsat Collection 2 L2SP, Sentinel-2 L2A,
HLS) or as top-of-atmosphere reflectance (Landsat L1, Sentinel-2 L1C, most "TOA" exports
from Earth Engine). The two differ by the atmosphere::

    toa = transmittance * surface + path reflectance          (per band)

Path reflectance (haze) is largest in the blue and near zero in the shortwave infrared.
That matters for glacier mapping: it lifts green far more than SWIR1, so the NDSI of dark,
shadowed rock turns positive at top of atmosphere, and a model trained on surface
reflectance calls it glacier.

:func:`scene_level` decides the level of a scene, in this order: the user's ``level=``; the
product's metadata (MTL ``PROCESSING_LEVEL``, Sentinel-2 product names ``MSIL1C`` /
``MSIL2A``, HLS, file tags, the sample registry); else the data (:func:`detect_level`: at
top of atmosphere even the darkest pixels of a scene keep a blue reflectance of about 0.04
or more, falling towards the SWIR, which surface reflectance does not). :func:`to_surface`
brings a top-of-atmosphere scene to approximate surface reflectance by dark-object
subtraction (Chavez 1988): the path reflectance of each band is the reflectance of the
scene's darkest pixels, less what a dark surface reflects, within the physically plausible
range of :data:`ATMOSPHERE`, and the result is divided by a typical transmittance.

Sentinel-2 products from processing baseline 04.00 on add 1000 to every DN; a file that
does not say so reads 0.1 too bright in every band. :func:`detect_offset` finds it: a real
scene always has pixels darker than about 0.09 in some band (water, shadow, and snow and
ice in the SWIR), and an uncorrected offset leaves none.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping

import numpy as np
import xarray as xr

from ..exceptions import ParameterError

log = logging.getLogger(__name__)

__all__ = ["LEVELS", "PRODUCT_LEVELS", "LEVEL_ATTRS", "ATMOSPHERE", "DARK_SURFACE",
           "TOA_BLUE_MIN", "OFFSET_MIN", "OFFSET_PERCENTILE", "OFFSET_MIN_PIXELS",
           "check_level", "product_level", "guess_product", "dark_pixels", "detect_level",
           "detect_offset", "path_reflectance", "to_surface"]

#: Scene attributes that say the processing level: what it is, how it was found, the
#: dark-object estimate and the correction made before the model (carried into outputs).
LEVEL_ATTRS = ("level", "level_from", "level_correction", "path_reflectance")

#: The processing levels glacierkit knows.
LEVELS = ("surface", "toa")

#: The level of each product in ``sensors.toml``.
PRODUCT_LEVELS = {"l2sp": "surface", "l2a": "surface", "hls": "surface",
                  "l1": "toa", "l1c": "toa"}

#: Path reflectance and two-way transmittance of the atmosphere between surface and
#: sensor, per band role: ``(path_low, path_high, transmittance_low, transmittance_high)``
#: for a clear (aerosol optical depth at 550 nm about 0.05) to a hazy (about 0.4)
#: continental atmosphere, sun zenith 30-60 degrees, from sea level to 2 km. The values are
#: those of radiative-transfer tables for these conditions (6S, Vermote et al. 1997; the
#: relative scattering model of Chavez 1988, path reflectance falling as about
#: wavelength^-2 to ^-4): Rayleigh scattering puts 0.04-0.12 into the blue and almost nothing
#: into the SWIR. Used as the plausible range of the dark-object correction and to simulate
#: top-of-atmosphere scenes (:mod:`glacierkit.evaluate.conditions`).
ATMOSPHERE: dict[str, tuple[float, float, float, float]] = {
    "coastal": (0.070, 0.160, 0.62, 0.84),
    "blue": (0.045, 0.120, 0.68, 0.88),
    "green": (0.025, 0.075, 0.76, 0.92),
    "red": (0.015, 0.050, 0.80, 0.94),
    "rededge1": (0.012, 0.042, 0.82, 0.95),
    "rededge2": (0.010, 0.036, 0.83, 0.95),
    "rededge3": (0.008, 0.030, 0.84, 0.95),
    "nir": (0.006, 0.025, 0.86, 0.96),
    "swir1": (0.001, 0.008, 0.88, 0.97),
    "swir2": (0.0005, 0.005, 0.86, 0.97),
}

#: Surface reflectance of the darkest pixels of a scene (deep shadow, clear water): what
#: dark-object subtraction leaves in each band (Chavez 1988 assumes about 1 %).
DARK_SURFACE: dict[str, float] = {"coastal": 0.01, "blue": 0.01, "green": 0.01, "red": 0.01,
                                  "rededge1": 0.01, "rededge2": 0.01, "rededge3": 0.01,
                                  "nir": 0.005, "swir1": 0.003, "swir2": 0.002}

#: A scene is top-of-atmosphere by its data when the blue reflectance of its darkest pixels
#: is at least this much and exceeds their SWIR reflectance by at least :data:`TOA_FALL`
#: (haze falls towards the SWIR; the dark pixels of surface reflectance do not).
TOA_BLUE_MIN = 0.04
TOA_FALL = 0.025

#: An unstated offset is present when in every band 99 % of the pixels are brighter than
#: this. Measured on the sample scenes, the Alps validation strips and their simulated
#: top-of-atmosphere versions: the 1st percentile of the darkest band is at most 0.060 as
#: they are (0.060 on a rock-only strip of Fiescher) and at least 0.076 for Sentinel-2
#: scenes with the +0.1 of baseline 04.00 (0.10-0.16 for the Alps, 0.076-0.097 for
#: Athabasca, whose shadows hold negative surface reflectance): snow and ice are dark in
#: the SWIR, water and shadow in every band.
OFFSET_MIN = 0.07
OFFSET_PERCENTILE = 1.0
#: Scenes with fewer valid pixels are not judged (a small crop may be all rock).
OFFSET_MIN_PIXELS = 4096

_DARK_ROLES = ("blue", "green", "red", "nir", "swir1", "swir2")
#: Centre wavelengths (micrometres) of the roles, for the haze ceiling.
_WAVELENGTH = {"coastal": 0.443, "blue": 0.49, "green": 0.56, "red": 0.665, "rededge1": 0.705,
               "rededge2": 0.74, "rededge3": 0.783, "nir": 0.865, "swir1": 1.61,
               "swir2": 2.2}
_SAMPLE_PIXELS = 1_000_000


def check_level(level) -> str | None:
    """``level`` as one of :data:`LEVELS` (None stays None), or a clear error."""
    if level is None:
        return None
    text = str(level).strip().lower()
    aliases = {"sr": "surface", "boa": "surface", "l2": "surface", "surface": "surface",
               "toa": "toa", "l1": "toa", "top-of-atmosphere": "toa"}
    if text not in aliases:
        raise ParameterError(
            f"level={level!r}: give 'surface' (surface reflectance: Landsat L2SP, "
            "Sentinel-2 L2A, HLS) or 'toa' (top-of-atmosphere: Landsat L1, Sentinel-2 L1C); "
            "--level on the command line."
        )
    return aliases[text]


def product_level(product) -> str | None:
    """The level of a product name of ``sensors.toml`` (``"l1c"`` -> ``"toa"``), or None."""
    return PRODUCT_LEVELS.get(str(product or "").lower())


def guess_product(text: str) -> str | None:
    """The product a file or product name says: ``MSIL1C``/``L1C`` -> ``l1c``,
    ``MSIL2A``/``L2A`` -> ``l2a``, ``L1TP``/``L1GT``/``L1GS`` -> ``l1``, ``L2SP`` -> ``l2sp``;
    None when it says nothing. ``TOA`` and ``SR``/``BOA`` tokens count too."""
    t = str(text).upper()
    tokens = set(re.split(r"[^A-Z0-9]+", t))
    if re.search(r"MSIL1C|(^|[^A-Z0-9])L1C([^A-Z0-9]|$)", t):
        return "l1c"
    if re.search(r"MSIL2A|(^|[^A-Z0-9])L2A([^A-Z0-9]|$)", t):
        return "l2a"
    if tokens & {"L1TP", "L1GT", "L1GS"}:
        return "l1"
    if "L2SP" in tokens:
        return "l2sp"
    return None


def _roles(scene: xr.DataArray) -> list[str]:
    if "role" in scene.coords:
        return [str(r) for r in scene["role"].values]
    return [str(b) for b in scene["band"].values]


def _sample(scene: xr.DataArray) -> np.ndarray:
    """``(band, n)`` float64 values of the pixels valid in every band: a strided sample of
    at most about a million pixels (for a lazy scene, five 512 x 512 windows)."""
    ny, nx = scene.sizes["y"], scene.sizes["x"]
    if scene.chunks:
        parts = [np.empty((scene.sizes["band"], 0))]
        windows = []
        for fy, fx in ((0.5, 0.5), (0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75)):
            cy, cx, h = int(ny * fy), int(nx * fx), 256
            box = (max(cy - h, 0), min(cy + h, ny), max(cx - h, 0), min(cx + h, nx))
            if any(box[0] < w[1] and w[0] < box[1] and box[2] < w[3] and w[2] < box[3]
                   for w in windows):
                continue  # overlaps one already read (a small scene): each pixel once
            windows.append(box)
            win = scene.isel(y=slice(box[0], box[1]), x=slice(box[2], box[3]))
            try:
                values = np.asarray(win.values, dtype="float64")
            except Exception as exc:  # a damaged block: prediction reports it where it is
                log.debug("Window at (%s, %s) unreadable (%s); not sampled.", cy, cx, exc)
                continue
            parts.append(values.reshape(scene.sizes["band"], -1))
        values = np.concatenate(parts, axis=1)
    else:
        step = max(1, int(math.sqrt(ny * nx / _SAMPLE_PIXELS)))
        values = np.asarray(scene.values[:, ::step, ::step], dtype="float64")
        values = values.reshape(scene.sizes["band"], -1)
    return values[:, np.isfinite(values).all(axis=0)]


def dark_pixels(scene: xr.DataArray, fraction: float = 0.01, min_pixels: int = 50
                ) -> dict[str, float]:
    """Per role, the median reflectance of the scene's darkest pixels: the ``fraction``
    (at least ``min_pixels``) with the lowest mean over the blue, green, red, NIR and SWIR
    roles. One set of pixels for every band (deep shadow, water), so a band is not read
    on the ice that is dark only in the SWIR. Empty when the scene has too few valid
    pixels or none of those roles."""
    roles = _roles(scene)
    use = [i for i, r in enumerate(roles) if r in _DARK_ROLES]
    if not use:
        return {}
    values = _sample(scene)
    if values.shape[1] < min_pixels:
        return {}
    brightness = values[use].mean(axis=0)
    n = max(min_pixels, int(fraction * values.shape[1]))
    darkest = np.argpartition(brightness, min(n, values.shape[1] - 1))[:n]
    med = np.median(values[:, darkest], axis=1)
    return {r: float(v) for r, v in zip(roles, med, strict=True) if r in _DARK_ROLES}


def detect_level(scene: xr.DataArray, dark: Mapping[str, float] | None = None
                 ) -> tuple[str | None, str]:
    """``(level, reason)`` from the data alone: ``"toa"`` when the darkest pixels keep a
    blue reflectance of at least :data:`TOA_BLUE_MIN` that falls by :data:`TOA_FALL` or more
    towards the SWIR, and is at least their green (path reflectance is bluer than anything
    dark on the ground but shadow, which is darker; turbid glacial lakes peak in the
    green); ``"surface"`` otherwise; None without the blue and a SWIR (or NIR) role."""
    dark = dark_pixels(scene) if dark is None else dark
    far = next((r for r in ("swir1", "swir2", "nir") if r in dark), None)
    if "blue" not in dark or far is None:
        return None, "no blue and SWIR/NIR bands to tell the level from"
    blue, low = dark["blue"], dark[far]
    numbers = f"darkest pixels: blue {blue:.3f}, {far} {low:.3f}"
    if blue >= TOA_BLUE_MIN and blue - low >= TOA_FALL and blue >= dark.get("green", 0.0):
        return "toa", f"data: {numbers} (haze: blue >= {TOA_BLUE_MIN}, falling to the {far})"
    return "surface", f"data: {numbers}"


def detect_offset(scene: xr.DataArray, dark: Mapping[str, float] | None = None
                  ) -> tuple[bool, str]:
    """``(offset present, reason)``: True when in every band at least 99 % of the pixels
    are brighter than :data:`OFFSET_MIN`, as when the +1000 DN of Sentinel-2 processing
    baseline 04.00 was not removed (a few negative pixels, as atmospheric correction
    leaves in deep shadow, do not hide it)."""
    values = _sample(scene)
    if values.shape[1] < OFFSET_MIN_PIXELS:
        return False, f"too few valid pixels to tell ({values.shape[1]})"
    low = np.percentile(values, OFFSET_PERCENTILE, axis=1)
    roles = _roles(scene)
    darkest = int(np.argmin(low))
    reason = (f"99 % of the pixels of every band are above {low[darkest]:.3f} "
              f"({roles[darkest]}; limit {OFFSET_MIN})")
    return bool(low.min() >= OFFSET_MIN), reason


def path_reflectance(scene: xr.DataArray, dark: Mapping[str, float] | None = None
                     ) -> dict[str, float]:
    """The dark-object estimate of each band's path reflectance: the darkest pixels'
    reflectance less :data:`DARK_SURFACE`, kept within the range of :data:`ATMOSPHERE`
    (a scene without dark pixels cannot claim more haze than a hazy atmosphere gives, nor
    less than a clear one)."""
    dark = dark_pixels(scene) if dark is None else dark
    out = {}
    for role in _roles(scene):
        if role in ATMOSPHERE:
            lo, hi, _, _ = ATMOSPHERE[role]
            value = dark.get(role, lo) - DARK_SURFACE.get(role, 0.0)
            out[role] = float(min(max(value, lo), hi))
    if "blue" in out:  # haze falls with wavelength at least as 1/lambda (Chavez 1988)
        lam = {r: _WAVELENGTH[r] for r in out if r in _WAVELENGTH}
        for role, wl in lam.items():
            if wl > _WAVELENGTH["blue"]:
                ceiling = out["blue"] * _WAVELENGTH["blue"] / wl
                out[role] = float(max(min(out[role], ceiling), ATMOSPHERE[role][0]))
    return out


def to_surface(scene: xr.DataArray, path: Mapping[str, float] | None = None) -> xr.DataArray:
    """Approximate surface reflectance of a top-of-atmosphere scene (dark-object
    subtraction): ``(toa - path) / transmittance`` per band, with ``path`` from
    :func:`path_reflectance` (or the scene's ``path_reflectance`` attribute, or given) and
    the typical (mid-range) transmittance of :data:`ATMOSPHERE`. Bands of other roles are
    kept. Lazy (dask) scenes stay lazy; NaN stays NaN; the input is not modified."""
    if path is None:
        path = scene.attrs.get("path_reflectance") or path_reflectance(scene)
    if isinstance(path, str):
        path = {k: float(v) for k, v in (p.split(":") for p in path.split(",") if p)}
    roles = _roles(scene)
    p = np.array([path.get(r, 0.0) if r in ATMOSPHERE else 0.0 for r in roles], "float32")
    t = np.array([(ATMOSPHERE[r][2] + ATMOSPHERE[r][3]) / 2 if r in ATMOSPHERE else 1.0
                  for r in roles], "float32")
    offset = xr.DataArray(p, dims="band", coords={"band": scene["band"].values})
    gain = xr.DataArray(t, dims="band", coords={"band": scene["band"].values})
    out = ((scene - offset) / gain).astype("float32")
    out.attrs = {**scene.attrs, "level": "surface",
                 "corrected_from": "toa",
                 "correction": "dark-object subtraction (glacierkit.io.level.to_surface)",
                 "path_reflectance": ",".join(f"{r}:{v:.4f}" for r, v in path.items())}
    return out.rio.write_crs(scene.rio.crs) if scene.rio.crs is not None else out
