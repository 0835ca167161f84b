"""Synthetic scenes from labelled pixel spectra, for checking a model's spectral sense.

:func:`spectra_mosaic` arranges the snow, ice, rock and water pixels of
:func:`glacierkit.data.spectra` into blocks of a small georeferenced scene, so a model can be
asked what it calls water or rock that it has never seen
(:func:`glacierkit.evaluate.spectral_sense`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["spectra_mosaic"]


# --------------------------------------------------------------------------- spectral sense
def spectra_mosaic(spectra: pd.DataFrame, block: int = 8, blocks: int = 32, seed: int = 0,
                   sensor: str = "landsat8", res: float = 30.0
                   ) -> tuple[xr.DataArray, np.ndarray]:
    """A synthetic scene made of labelled pixel spectra (:func:`glacierkit.data.spectra`).

    ``blocks`` x ``blocks`` squares of ``block`` pixels, each filled with one labelled
    pixel's spectrum (drawn at random, seeded, with every surface about equally often), on
    a dummy UTM grid. Returns the scene (reflectance by role) and the surface name of every
    pixel. A model's spectral sense: what it calls glacier on each surface of a mosaic.
    """
    from affine import Affine

    from ..bands import get_sensor

    roles = [r for r in ("blue", "green", "red", "nir", "swir1", "swir2") if r in spectra]
    rng = np.random.default_rng(seed)
    groups = {k: g for k, g in spectra.dropna(subset=roles).groupby("surface")}
    surfaces = sorted(groups)
    n = blocks * blocks
    pick = rng.integers(0, len(surfaces), n)
    values = np.empty((len(roles), blocks, blocks), dtype="float32")
    kinds = np.empty((blocks, blocks), dtype=object)
    for i in range(n):
        g = groups[surfaces[pick[i]]]
        row = g.iloc[int(rng.integers(0, len(g)))]
        values[:, i // blocks, i % blocks] = [row[r] for r in roles]
        kinds[i // blocks, i % blocks] = surfaces[pick[i]]
    data = np.repeat(np.repeat(values, block, axis=1), block, axis=2)
    kinds = np.repeat(np.repeat(kinds, block, axis=0), block, axis=1)
    s = get_sensor(sensor)
    size = blocks * block
    x0, y0 = 500_000.0, 5_000_000.0
    da = xr.DataArray(
        data, dims=("band", "y", "x"),
        coords={"band": [s.band_for_role(r) for r in roles], "role": ("band", roles),
                "y": y0 - res * (np.arange(size) + 0.5), "x": x0 + res * (np.arange(size) + 0.5)},
        attrs={"sensor": sensor, "scene_id": "spectra mosaic"}, name="reflectance")
    da = da.rio.write_crs("EPSG:32610").rio.write_transform(Affine(res, 0, x0, 0, -res, y0))
    return da, kinds
