"""Spectral indices on scenes, by band role.

One generic :func:`normalized_difference` and thin named wrappers. Each returns a
``(y, x)`` DataArray on the scene's grid with its coordinates, CRS and attrs. Zero
denominators and NaN inputs give NaN, silently, also on dask arrays.

**Negative reflectance.** Atmospheric correction leaves some dark pixels (deep shadow,
water, over-corrected SWIR on ice) with a zero or negative reflectance. With both bands
positive a normalized difference lies in [-1, 1]; with one negative it does not (on the
Landsat 8 sample crop NDSI reached -1,470 and 51 on the 436 pixels with negative green).
Such values are **clipped to -1 or 1**: glacierkit's one rule, the same in the NDSI
threshold sweeps (``glacierkit.ndsi.sweep``), the slider, and the U-Net's index input
channels (which the committed model was trained with). The clipped value follows the sign
of the ratio: a positive green over a negative SWIR1 gives NDSI 1 (snow-like, as
over-corrected SWIR on ice is), a negative green over a smaller positive SWIR1 gives NDSI
-1, but where the two bands sum to less than zero the sign flips (green -0.02 and SWIR1
0.01 give 3, clipped to 1). To leave such pixels out, mask them with
:func:`positive_bands`: ``ndsi(scene).where(positive_bands(scene, "green", "swir1"))``.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .bands import select_bands

__all__ = ["normalized_difference", "ndsi", "ndwi", "band_ratio", "red_swir_ratio", "positive_bands"]


def role_band(scene: xr.DataArray, role: str) -> xr.DataArray:
    """One band by role or name, as a view (no copy) without band coordinates."""
    names = [str(b) for b in scene["band"].values]
    roles = [str(r) for r in scene["role"].values] if "role" in scene.coords else []
    if role in roles and role:
        i = roles.index(role)
    elif role in names:
        i = names.index(role)
    else:  # let select_bands raise its error, which names the valid roles (1-pixel crop)
        select_bands(scene.isel(y=slice(0, 1), x=slice(0, 1)), (role,))
        raise AssertionError("unreachable")  # pragma: no cover
    return scene.isel(band=i).drop_vars(
        [c for c in ("band", "role", "wavelength") if c in scene.coords], errors="ignore")


def _finish(out: xr.DataArray, scene: xr.DataArray, name: str, formula: str) -> xr.DataArray:
    out = out.astype("float32", copy=False)
    out.name = name
    out.attrs = {**scene.attrs, "long_name": name.upper(), "formula": formula}
    crs = scene.rio.crs
    if crs is not None:
        out = out.rio.write_crs(crs, inplace=True)  # a new array: no copy
    return out


#: Below this many pixels (per array or dask chunk) float32 bands take the NumPy
#: expression: the same bits, without importing and loading the compiled kernel (which
#: costs more than it saves on a small scene, such as a command-line call's first block).
COMPILED_FROM_PIXELS = 1 << 20


def _nd_float32(a: np.ndarray, b: np.ndarray, parallel: bool = True) -> np.ndarray:
    """``float32((a - b) / (a + b))`` clipped to [-1, 1], NaN for zero or NaN
    denominators: the compiled one-pass kernel for large arrays, the NumPy expression (the
    same operations) for small ones."""
    if np.broadcast(a, b).size >= COMPILED_FROM_PIXELS:
        from ._kernels import nd_values

        return nd_values(a, b, parallel=parallel)
    den = a + b
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.clip((a - b) / np.where(den != 0, den, np.float32(np.nan)),
                       np.float32(-1), np.float32(1))


def normalized_difference(a: xr.DataArray, b: xr.DataArray) -> xr.DataArray:
    """``(a - b) / (a + b)`` clipped to [-1, 1]; NaN where ``a + b == 0`` or an input is
    NaN (no warnings).

    Only a negative ``a`` or ``b`` puts the ratio outside [-1, 1]; it is then clipped to
    the nearest bound (see the module's description for what that means and how to mask
    such pixels instead). Float32 inputs are computed in one compiled pass (per chunk for
    dask), bit for bit equal to the xarray expression and without its temporaries (below
    :data:`COMPILED_FROM_PIXELS` pixels by that expression in NumPy); other dtypes use the
    expression.
    """
    if a.dtype == np.float32 and b.dtype == np.float32:
        return xr.apply_ufunc(_nd_float32, a, b, dask="parallelized",
                              output_dtypes=[np.float32], kwargs={"parallel": True})
    den = a + b
    return ((a - b) / den.where(den != 0)).clip(-1.0, 1.0)


def positive_bands(scene: xr.DataArray, *roles: str) -> xr.DataArray:
    """True where every band of ``roles`` has a positive reflectance (and is not NaN): the
    pixels where a normalized difference of those bands needs no clip.

    Examples
    --------
    >>> ndsi(scene).where(positive_bands(scene, "green", "swir1"))  # doctest: +SKIP
    """
    ok = None
    for role in roles:
        band = role_band(scene, role) > 0
        ok = band if ok is None else ok & band
    return ok


def ndsi(scene: xr.DataArray) -> xr.DataArray:
    """Normalized Difference Snow Index, ``(green - swir1) / (green + swir1)``, in [-1, 1].

    Landsat 8/9 OLI bands 3 and 6, ETM+ 2 and 5, Sentinel-2 B03 and B11. Snow and ice are
    bright in green and dark in SWIR, so NDSI is high (> ~0.4 for snow) over them; water is
    also high, which is the method's known weakness.

    References
    ----------
    Hall, D. K., Riggs, G. A. & Salomonson, V. V. (1995). Development of methods for mapping
    global snow cover using MODIS data. *Remote Sensing of Environment* 54, 127-140.
    Dozier, J. (1989). Spectral signature of alpine snow cover from the Landsat Thematic
    Mapper. *Remote Sensing of Environment* 28, 9-22.
    """
    out = normalized_difference(role_band(scene, "green"), role_band(scene, "swir1"))
    return _finish(out, scene, "ndsi", "(green - swir1) / (green + swir1), clipped to [-1, 1]")


def ndwi(scene: xr.DataArray) -> xr.DataArray:
    """Normalized Difference Water Index, ``(green - nir) / (green + nir)``, in [-1, 1].

    Open water is positive; snow and ice are near zero. Used here as a water mask to show
    where NDSI mistakes lakes for glacier.

    References
    ----------
    McFeeters, S. K. (1996). The use of the Normalized Difference Water Index (NDWI) in the
    delineation of open water features. *Int. J. Remote Sensing* 17(7), 1425-1432.
    """
    out = normalized_difference(role_band(scene, "green"), role_band(scene, "nir"))
    return _finish(out, scene, "ndwi", "(green - nir) / (green + nir), clipped to [-1, 1]")


def band_ratio(scene: xr.DataArray, numerator: str, denominator: str) -> xr.DataArray:
    """``numerator / denominator`` by role, NaN where the denominator is 0 or NaN."""
    num, den = role_band(scene, numerator), role_band(scene, denominator)
    out = num / den.where(den != 0)
    return _finish(out, scene, f"{numerator}_{denominator}_ratio",
                   f"{numerator} / {denominator}")


def red_swir_ratio(scene: xr.DataArray) -> xr.DataArray:
    """The red/SWIR1 band ratio for clean glacier ice (threshold about 2.0).

    References
    ----------
    Paul, F., Kääb, A., Maisch, M., Kellenberger, T. & Haeberli, W. (2002). The new
    remote-sensing-derived Swiss glacier inventory: I. Methods. *Annals of Glaciology* 34,
    355-361.
    """
    return band_ratio(scene, "red", "swir1")
