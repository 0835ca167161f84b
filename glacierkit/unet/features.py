"""The contract between training and prediction: which inputs a model sees, and how.

A trained model is two files side by side: ``<name>.keras`` and ``<name>.json`` (the
sidecar). The sidecar's ``inputs`` block is an :class:`InputSpec`: bands by role, extra
index channels (``"ndsi"``), per-channel normalization statistics from the training tiles,
and the patch size. Prediction needs nothing else, so a model trained on Sentinel-2 runs
on Landsat 8 (or the other way round) as long as the scene has the roles.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import xarray as xr

from ..bands import select_bands
from ..exceptions import ParameterError

__all__ = ["EXTRA_CHANNELS", "ND_CHANNELS", "NORMALIZATIONS", "InputSpec", "feature_stack", "scene_medians", "normalize"]


#: Normalized-difference index channels: name -> (a, b) roles of ``(a - b) / (a + b)``.
#: They are invariant to a common gain of both bands (illumination, slope, calibration),
#: and clipped to [-1, 1] (small negative reflectances in deep shadow push them outside):
#: :func:`glacierkit.indices.normalized_difference`, the rule of every index in glacierkit.
ND_CHANNELS: dict[str, tuple[str, str]] = {
    "ndsi": ("green", "swir1"),   # snow and ice (Hall et al. 1995)
    "ndwi": ("green", "nir"),     # open water (McFeeters 1996)
    "ndvi": ("nir", "red"),       # vegetation
    "ndgi": ("green", "red"),     # snow vs ice and debris (Keshri et al. 2009)
    "ndbs": ("blue", "swir1"),    # like NDSI with blue: less sensitive to thin snow on rock
    "ndss": ("swir1", "swir2"),   # the SWIR slope: wet/dirty ice vs rock
}


def _nd_extra(name: str):
    a, b = ND_CHANNELS[name]

    def compute(scene: xr.DataArray) -> xr.DataArray:
        from ..indices import normalized_difference, role_band

        return normalized_difference(role_band(scene, a), role_band(scene, b))  # in [-1, 1]

    compute.__name__ = f"_{name}"
    compute.__doc__ = f"``({a} - {b}) / ({a} + {b})`` clipped to [-1, 1]."
    return compute


#: Extra input channels computed from the scene, by name.
EXTRA_CHANNELS = {name: _nd_extra(name) for name in ND_CHANNELS}
#: How band channels are scaled before the global standardization.
NORMALIZATIONS = ("global", "scene")


@dataclass(frozen=True)
class InputSpec:
    """What a model takes as input.

    Parameters
    ----------
    bands
        Roles (or band names) in channel order, e.g. ``("swir1", "nir", "blue")``.
    extra
        Index channels appended after the bands, e.g. ``("ndsi",)``.
    mean, std
        Per-channel normalization statistics (one per channel), from the training tiles.
    patch_size
        The training tile size; prediction windows use it (or a multiple of ``2**depth``).
    normalization
        ``"global"`` (default): ``(x - mean) / std`` with the training statistics.
        ``"scene"``: band channels are first divided by the scene's own median of that band
        (over its valid pixels), which removes a per-scene gain (illumination, calibration);
        index channels are left as they are. Then the global standardization.
    """

    bands: tuple[str, ...]
    extra: tuple[str, ...] = ()
    mean: tuple[float, ...] = field(default=())
    std: tuple[float, ...] = field(default=())
    patch_size: int = 128
    normalization: str = "global"

    def __post_init__(self):
        object.__setattr__(self, "bands", tuple(self.bands))
        object.__setattr__(self, "extra", tuple(self.extra))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        unknown = [e for e in self.extra if e not in EXTRA_CHANNELS]
        if unknown:
            raise ParameterError(
                f"Unknown extra channels {unknown}. Valid: {sorted(EXTRA_CHANNELS)}."
            )
        if self.normalization not in NORMALIZATIONS:
            raise ParameterError(
                f"Unknown normalization {self.normalization!r}. Valid: {list(NORMALIZATIONS)}."
            )
        if not self.bands and not self.extra:
            raise ParameterError("An InputSpec needs at least one band or extra channel.")
        n = self.n_channels
        for name in ("mean", "std"):
            v = getattr(self, name)
            if v and len(v) != n:
                raise ParameterError(f"{name} has {len(v)} values for {n} channels {self.channels}.")
        if self.std and min(self.std) <= 0:
            raise ParameterError(f"std must be positive, got {self.std}.")

    @property
    def channels(self) -> tuple[str, ...]:
        return self.bands + self.extra

    @property
    def n_channels(self) -> int:
        return len(self.bands) + len(self.extra)

    @property
    def roles(self) -> tuple[str, ...]:
        """Every band role the channels are computed from: the bands, then the roles of the
        index channels (each once)."""
        out = list(self.bands)
        for e in self.extra:
            out += [r for r in ND_CHANNELS[e] if r not in out]
        return tuple(out)

    def with_stats(self, mean: Sequence[float], std: Sequence[float]) -> InputSpec:
        return InputSpec(self.bands, self.extra, tuple(mean), tuple(std), self.patch_size,
                         self.normalization)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: Mapping) -> InputSpec:
        return cls(bands=tuple(d["bands"]), extra=tuple(d.get("extra", ())),
                   mean=tuple(d.get("mean", ())), std=tuple(d.get("std", ())),
                   patch_size=int(d.get("patch_size", 128)),
                   normalization=str(d.get("normalization", "global")))


def scene_medians(scene: xr.DataArray, roles: Sequence[str], max_pixels: int = 1_000_000
                  ) -> tuple[float, ...]:
    """Per-band median over the valid pixels of a scene (a regular subsample of at most
    ``max_pixels``), for ``normalization="scene"``."""
    from ..exceptions import AllNodataError

    step = max(1, int(np.ceil(np.sqrt(scene.sizes["y"] * scene.sizes["x"] / max_pixels))))
    sub = np.asarray(select_bands(scene.isel(y=slice(None, None, step),
                                             x=slice(None, None, step)), roles).values,
                     dtype="float64")
    ok = np.isfinite(sub).all(axis=0)
    if not ok.any():
        raise AllNodataError("The scene has no valid pixel to compute its band medians from.")
    med = np.median(sub[:, ok], axis=1)
    return tuple(float(max(m, 1e-3)) for m in med)


def feature_stack(scene: xr.DataArray, spec: InputSpec,
                  medians: Sequence[float] | None = None) -> xr.DataArray:
    """The model's raw (unnormalized) input channels from a scene: ``(channel, y, x)``.

    Bands are picked by role from the scene's ``role`` coordinate; extras are computed.
    Works lazily on dask-backed scenes. With ``spec.normalization == "scene"`` the band
    channels are divided by ``medians`` (default: :func:`scene_medians` of ``scene``; pass
    the whole scene's when ``scene`` is a part of it).
    """
    layers = []
    if spec.bands:
        bands = select_bands(scene, spec.bands).drop_vars(["role", "wavelength"],
                                                          errors="ignore")
        if spec.normalization == "scene":
            med = scene_medians(scene, spec.bands) if medians is None else medians
            bands = bands / xr.DataArray(np.asarray(med, dtype="float32"), dims="band")
        layers.append(bands)
    for name in spec.extra:
        layers.append(EXTRA_CHANNELS[name](scene).expand_dims(band=[name]))
    out = xr.concat([la.assign_coords(band=[str(b) for b in la["band"].values])
                     for la in layers], dim="band", coords="minimal", compat="override")
    out = out.rename(band="channel").assign_coords(channel=list(spec.channels))
    return out.astype("float32")


def normalize(values: np.ndarray, spec: InputSpec, axis: int = -1) -> np.ndarray:
    """``(x - mean) / std`` per channel along ``axis``; NaN becomes 0 (the mean)."""
    if not spec.mean:
        raise ParameterError("The InputSpec has no normalization statistics yet.")
    shape = [1] * values.ndim
    shape[axis] = spec.n_channels
    mean = np.asarray(spec.mean, dtype="float32").reshape(shape)
    std = np.asarray(spec.std, dtype="float32").reshape(shape)
    out = values.astype("float32", copy=True)  # one copy; the rest is in place
    out -= mean
    out /= std
    return np.nan_to_num(out, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
