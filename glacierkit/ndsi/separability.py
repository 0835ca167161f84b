"""How well bands, indices and 3-band combinations separate glacier from other pixels.

Two measures, both computed from labelled pixels:

- **AUC** (area under the ROC curve, Mann-Whitney): the probability that a random glacier
  pixel has a higher value than a random other pixel. 0.5 is useless, 1 (or 0) perfect;
  ``separability = max(AUC, 1 - AUC)``. Non-parametric, for one feature; for a band
  combination it is the AUC of the Fisher (LDA) projection fitted on the same pixels
  (in-sample, so slightly optimistic).
- **Jeffries-Matusita distance** (Richards & Jia, *Remote Sensing Digital Image
  Analysis*): ``JM = 2 (1 - exp(-B))`` with the Bhattacharyya distance ``B`` between two
  Gaussian classes, from 0 (identical) to 2 (fully separable). It assumes Gaussian
  classes, which skewed ratios and mixed classes violate.

Rankings are descriptive statistics of the pixels they are given: compute them on the
training scenes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from .. import indices as _indices
from ..bands import PAPER_BANDS, TRUE_COLOUR, get_sensor, select_bands
from ..exceptions import AllNodataError, ParameterError

__all__ = ["OLI_ROLES", "INDEX_FEATURES", "oli_numbers", "pixel_table", "pooled_pixel_table", "auc", "jeffries_matusita", "lda_auc", "rank_features", "rank_combinations", "describe_rank", "spectral_profiles"]

#: The six OLI-equivalent reflective bands, by role (OLI bands 2-7).
OLI_ROLES: tuple[str, ...] = ("blue", "green", "red", "nir", "swir1", "swir2")
#: Indices ranked next to the single bands.
INDEX_FEATURES = {"ndsi": _indices.ndsi, "ndwi": _indices.ndwi,
                  "red_swir_ratio": _indices.red_swir_ratio}


def oli_numbers(roles: Sequence[str]) -> str:
    """Landsat 8 OLI band numbers of roles, e.g. ``("swir1", "nir", "blue")`` -> ``"6-5-2"``."""
    oli = get_sensor("landsat8")
    return "-".join(oli.band_for_role(r).lstrip("B") for r in roles)


def pixel_table(scene: xr.DataArray, labels, roles: Sequence[str] = OLI_ROLES,
                index_features: Iterable[str] = tuple(INDEX_FEATURES),
                max_pixels: int | None = 200_000, seed: int = 0) -> pd.DataFrame:
    """Labelled pixels as a table: one column per band role and index, plus ``glacier``.

    Only pixels with a label and finite values in every column are kept; at most
    ``max_pixels`` of them, drawn at random (seeded) when there are more.
    """
    lab = np.asarray(getattr(labels, "values", labels), dtype="float32").reshape(-1)
    cols = {r: np.asarray(select_bands(scene, (r,)).values, dtype="float32").reshape(-1)
            for r in roles}
    for name in index_features:
        if name not in INDEX_FEATURES:
            raise ParameterError(f"Unknown index {name!r}. Valid: {sorted(INDEX_FEATURES)}.")
        cols[name] = np.asarray(INDEX_FEATURES[name](scene).values).reshape(-1)
    ok = np.isfinite(lab)
    for values in cols.values():
        ok &= np.isfinite(values)
    keep = np.flatnonzero(ok)
    if keep.size == 0:
        raise AllNodataError(
            f"Scene {scene.attrs.get('scene_id', '')!r} has no labelled pixel with finite "
            "values; check that the labels overlap the scene."
        )
    if max_pixels and keep.size > max_pixels:
        keep = np.sort(np.random.default_rng(seed).choice(keep, max_pixels, replace=False))
    table = pd.DataFrame({k: v[keep] for k, v in cols.items()})
    table["glacier"] = (lab[keep] > 0).astype("int8")
    return table


def pooled_pixel_table(pairs: Iterable[tuple[xr.DataArray, object]], **kwargs) -> pd.DataFrame:
    """:func:`pixel_table` of several ``(scene, labels)`` pairs, stacked (same keywords)."""
    parts = [pixel_table(scene, labels, **kwargs) for scene, labels in pairs]
    if not parts:
        raise ParameterError("No scenes given: pass at least one (scene, labels) pair.")
    return pd.concat(parts, ignore_index=True)


#: Surfaces of the labelled spectra (glacierkit.data.spectra) counted as snow/ice.
SNOW_ICE = ("snow", "shadowed snow", "ice")


def spectra_pixel_table(spectra: pd.DataFrame, roles: Sequence[str] = OLI_ROLES,
                        snow_ice: Sequence[str] = SNOW_ICE) -> pd.DataFrame:
    """A :func:`pixel_table` from labelled pixel spectra (:func:`glacierkit.data.spectra`).

    ``glacier`` is 1 for the ``snow_ice`` surfaces and 0 for rock and water; the index
    columns are computed from the role columns with the same formulas as on scenes. Rows
    missing a role are dropped; roles the table lacks (Sentinel-2 TOA has no ``swir1``)
    raise :class:`~glacierkit.exceptions.ParameterError`.
    """
    missing = [r for r in roles if r not in spectra.columns]
    if missing:
        raise ParameterError(
            f"The spectra have no {missing} column(s); they have {list(spectra.columns)}."
        )
    t = spectra[list(roles)].astype("float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        # clipped to [-1, 1] as glacierkit.indices.normalized_difference does on scenes
        t["ndsi"] = ((t["green"] - t["swir1"]) / (t["green"] + t["swir1"])).clip(-1, 1)
        t["ndwi"] = ((t["green"] - t["nir"]) / (t["green"] + t["nir"])).clip(-1, 1)
        t["red_swir_ratio"] = t["red"] / t["swir1"]
    t["glacier"] = spectra["surface"].isin(list(snow_ice)).astype("int8")
    t["surface"] = spectra["surface"].to_numpy()
    t = t.replace([np.inf, -np.inf], np.nan).dropna().reset_index(drop=True)
    return t


def _two_classes(y) -> tuple[np.ndarray, int, int]:
    y = np.asarray(y).astype(bool).reshape(-1)
    n1 = int(y.sum())
    n0 = y.size - n1
    if n1 == 0 or n0 == 0:
        raise ParameterError(
            f"Separability needs both classes; got {n1} glacier and {n0} other pixels."
        )
    return y, n1, n0


def auc(values, y) -> float:
    """ROC AUC of one feature: P(glacier value > other value), ties counted half."""
    from scipy.stats import rankdata

    y, n1, n0 = _two_classes(y)
    ranks = rankdata(np.asarray(values, dtype="float64").reshape(-1))
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def jeffries_matusita(x, y) -> float:
    """Jeffries-Matusita distance (0..2) between the Gaussian glacier and other classes.

    ``x`` is ``(n,)`` or ``(n, features)``.
    """
    y, _, _ = _two_classes(y)
    x = np.asarray(x, dtype="float64")
    x = x.reshape(len(y), -1)
    a, b = x[y], x[~y]
    ma, mb = a.mean(axis=0), b.mean(axis=0)
    ca = np.atleast_2d(np.cov(a, rowvar=False))
    cb = np.atleast_2d(np.cov(b, rowvar=False))
    ridge = 1e-12 * max(np.trace(ca) + np.trace(cb), 1e-30) * np.eye(ca.shape[0])
    ca, cb = ca + ridge, cb + ridge
    c = (ca + cb) / 2
    d = ma - mb
    term1 = d @ np.linalg.solve(c, d) / 8
    term2 = 0.5 * (np.linalg.slogdet(c)[1]
                   - 0.5 * (np.linalg.slogdet(ca)[1] + np.linalg.slogdet(cb)[1]))
    return float(2 * (1 - np.exp(-(term1 + term2))))


def lda_auc(x, y) -> float:
    """AUC of the Fisher linear discriminant projection of ``x`` (fitted in-sample)."""
    y, _, _ = _two_classes(y)
    x = np.asarray(x, dtype="float64").reshape(len(y), -1)
    a, b = x[y], x[~y]
    within = np.atleast_2d(np.cov(a, rowvar=False)) + np.atleast_2d(np.cov(b, rowvar=False))
    within += 1e-12 * max(np.trace(within), 1e-30) * np.eye(within.shape[0])
    w = np.linalg.solve(within, a.mean(axis=0) - b.mean(axis=0))
    return auc(x @ w, y)


def rank_features(table: pd.DataFrame, features: Sequence[str] | None = None) -> pd.DataFrame:
    """Rank single features (bands and indices) of a :func:`pixel_table` by separability.

    Returns one row per feature, best first (by AUC separability): ``feature``, ``AUC``,
    ``separability`` (= max(AUC, 1 - AUC)), ``glacier`` (higher or lower), ``JM``,
    ``rank``.
    """
    features = list(features or [c for c in table.columns if c not in ("glacier", "surface")])
    y = table["glacier"].to_numpy()
    rows = []
    for f in features:
        a = auc(table[f].to_numpy(), y)
        rows.append({"feature": f, "AUC": a, "separability": max(a, 1 - a),
                     "glacier": "higher" if a >= 0.5 else "lower",
                     "JM": jeffries_matusita(table[f].to_numpy(), y)})
    out = pd.DataFrame(rows).sort_values(["separability", "JM"], ascending=False,
                                         ignore_index=True)
    out["rank"] = np.arange(1, len(out) + 1)
    return out


def rank_combinations(table: pd.DataFrame, roles: Sequence[str] = OLI_ROLES, k: int = 3
                      ) -> pd.DataFrame:
    """Rank every ``k``-band combination of ``roles`` by Jeffries-Matusita distance.

    Returns one row per combination, best first: ``bands`` (roles, in OLI band order
    high to low, e.g. ``swir1-nir-blue``), ``oli`` (``6-5-2``), ``JM``, ``LDA_AUC``,
    ``rank_JM``, ``rank_AUC``, and ``paper`` / ``true_colour`` flags for 6-5-2 and 4-3-2.
    Band order within a combination does not change its separability.
    """
    missing = [r for r in roles if r not in table.columns]
    if missing:
        raise ParameterError(f"The pixel table has no column for {missing}; it has "
                             f"{list(table.columns)}.")
    y = table["glacier"].to_numpy()
    order = {r: int(get_sensor("landsat8").band_for_role(r).lstrip("B")) for r in roles}
    rows = []
    for combo in itertools.combinations(roles, k):
        combo = tuple(sorted(combo, key=lambda r: -order[r]))
        x = table[list(combo)].to_numpy()
        rows.append({"bands": "-".join(combo), "oli": oli_numbers(combo),
                     "JM": jeffries_matusita(x, y), "LDA_AUC": lda_auc(x, y),
                     "paper": set(combo) == set(PAPER_BANDS),
                     "true_colour": set(combo) == set(TRUE_COLOUR)})
    out = pd.DataFrame(rows)
    out["rank_AUC"] = out["LDA_AUC"].rank(ascending=False, method="min").astype(int)
    out = out.sort_values(["JM", "LDA_AUC"], ascending=False, ignore_index=True)
    out["rank_JM"] = np.arange(1, len(out) + 1)
    return out[["rank_JM", "bands", "oli", "JM", "LDA_AUC", "rank_AUC", "paper", "true_colour"]]


def describe_rank(ranking: pd.DataFrame, roles: Sequence[str] = PAPER_BANDS) -> str:
    """One honest sentence: where a combination (default 6-5-2) lands in a ranking."""
    row = ranking[ranking["bands"].str.split("-").map(set) == set(roles)]
    if row.empty:
        raise ParameterError(f"{'-'.join(roles)} is not in this ranking.")
    row = row.iloc[0]
    n = len(ranking)
    best_jm = ranking.iloc[0]
    best_auc = ranking.loc[ranking["LDA_AUC"].idxmax()]
    text = (f"{row['oli']} ({row['bands']}) ranks {row['rank_JM']} of {n} by Jeffries-Matusita "
            f"distance (JM {row['JM']:.3f}; best {best_jm['oli']} at {best_jm['JM']:.3f}) and "
            f"{row['rank_AUC']} of {n} by LDA AUC ({row['LDA_AUC']:.4f}; best "
            f"{best_auc['oli']} at {best_auc['LDA_AUC']:.4f}).")
    lost = [name for name, rank in (("JM", row["rank_JM"]), ("LDA AUC", row["rank_AUC"]))
            if rank != 1]
    if not lost:
        return text + " It is the best combination on both measures."
    return text + f" It is not the best combination by {' or '.join(lost)} on these pixels."


def spectral_profiles(scene: xr.DataArray, labels, roles: Sequence[str] = OLI_ROLES
                      ) -> pd.DataFrame:
    """Per-class reflectance statistics by band: a tidy table for profile plots.

    Columns: ``role``, ``band``, ``wavelength`` (µm, NaN if unknown), ``class``
    (``glacier``/``other``), ``mean``, ``std``, ``q10``, ``q90``, ``n``.
    """
    lab = np.asarray(getattr(labels, "values", labels), dtype="float32")
    rows = []
    for role in roles:
        band = select_bands(scene, (role,))
        values = np.asarray(band.values[0], dtype="float32")
        wavelength = (float(band["wavelength"].values[0]) if "wavelength" in band.coords
                      else float("nan"))
        for name, mask in (("glacier", lab > 0), ("other", lab == 0)):
            v = values[mask & np.isfinite(values)]
            stats = (np.percentile(v, [10, 90]) if v.size else (np.nan, np.nan))
            rows.append({"role": role, "band": str(band["band"].values[0]),
                         "wavelength": wavelength, "class": name,
                         "mean": float(v.mean()) if v.size else np.nan,
                         "std": float(v.std()) if v.size else np.nan,
                         "q10": float(stats[0]), "q90": float(stats[1]), "n": int(v.size)})
    return pd.DataFrame(rows)
