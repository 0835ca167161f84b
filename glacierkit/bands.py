"""Sensors and bands, known by role.

glacierkit never hard-codes band numbers. Each sensor has a table (``sensors.toml``)
that maps band names to wavelengths and to *roles* (``coastal, blue, green, red, nir,
swir1, swir2``). The paper's Landsat 8 "6-5-2" composite is ``("swir1", "nir", "blue")``,
which means B6-B5-B2 on OLI, B5-B4-B1 on ETM+ and B11-B8A-B02 on Sentinel-2.

Examples
--------
>>> from glacierkit.bands import get_sensor
>>> get_sensor("landsat8").band_for_role("swir1")
'B6'
>>> get_sensor("sentinel2").band_for_role("nir", available=["B02", "B08"])
'B08'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import numpy as np
import tomllib
import xarray as xr

from .exceptions import UnknownBandError, UnknownSensorError

__all__ = ["ROLES", "PAPER_BANDS", "TRUE_COLOUR", "Sensor", "get_sensor", "sensor_ids", "normalize_band_name", "select_bands", "composite"]

#: The roles every optical sensor table may fill (OLI-equivalent bands).
ROLES: tuple[str, ...] = ("coastal", "blue", "green", "red", "nir", "swir1", "swir2")
#: The paper's Landsat 8 OLI 6-5-2 false-colour composite, by role.
PAPER_BANDS: tuple[str, ...] = ("swir1", "nir", "blue")
#: Landsat 8 OLI 4-3-2, true colour.
TRUE_COLOUR: tuple[str, ...] = ("red", "green", "blue")


@dataclass(frozen=True)
class Sensor:
    """One sensor's band table (read from ``sensors.toml``)."""

    id: str
    name: str
    bands: dict[str, dict]
    roles: dict[str, tuple[str, ...]]
    products: dict[str, dict] = field(repr=False)
    default_product: str = "l2sp"

    @property
    def band_names(self) -> list[str]:
        return list(self.bands)

    @property
    def all_roles(self) -> list[str]:
        return list(self.roles)

    def wavelength(self, band: str) -> float:
        return float(self.bands[self.normalize(band)]["wavelength"])

    def normalize(self, band: str) -> str:
        """Return the table's spelling of ``band`` ("b3", "SR_B3", "B03" -> "B3" on Landsat)."""
        name = normalize_band_name(band, self.band_names)
        if name is None:
            raise UnknownBandError(
                f"Band {band!r} is not a {self.name} band. Valid bands: {self.band_names}; "
                f"valid roles: {self.all_roles}."
            )
        return name

    def band_for_role(self, role: str, available: Iterable[str] | None = None) -> str:
        """The band that fills ``role``; with ``available``, the first candidate present."""
        if role not in self.roles:
            raise UnknownBandError(
                f"Role {role!r} is not known for {self.name}. Valid roles: {self.all_roles}; "
                f"or give a band name from {self.band_names}."
            )
        candidates = self.roles[role]
        if available is None:
            return candidates[0]
        have = {self.normalize(b) for b in available}
        for band in candidates:
            if band in have:
                return band
        raise UnknownBandError(
            f"The scene has no band for role {role!r}: {self.name} fills it with "
            f"{list(candidates)}, and the scene has {sorted(have)}. Open the scene with that band."
        )

    def roles_of(self, band_names: Sequence[str]) -> list[str]:
        """The role each band plays in a scene made of ``band_names`` ('' for none).

        Fallbacks are honoured: on Sentinel-2, B08 is ``nir`` only when B8A is absent.
        """
        names = [self.normalize(b) for b in band_names]
        out = [""] * len(names)
        for role, candidates in self.roles.items():
            for band in candidates:
                if band in names:
                    out[names.index(band)] = role
                    break
        return out

    def resolve(self, wanted: str, available: Sequence[str]) -> str:
        """Band name for ``wanted``, which may be a role or a band name."""
        if wanted in self.roles:
            return self.band_for_role(wanted, available)
        name = self.normalize(wanted)
        if name not in [self.normalize(b) for b in available]:
            raise UnknownBandError(
                f"Band {wanted!r} is not in this scene, which has {list(available)}."
            )
        return name

    def scaling(self, product: str | None = None, baseline: str | None = None) -> dict:
        """Default ``scale``, ``offset`` and ``nodata`` for a product level.

        For Sentinel-2 with processing ``baseline`` >= 04.00, the -1000 DN offset is added.
        """
        product = (product or self.default_product).lower()
        if product not in self.products:
            raise UnknownSensorError(
                f"Product {product!r} is not known for {self.name}. "
                f"Valid products: {sorted(self.products)}."
            )
        p = dict(self.products[product])
        start = p.pop("offset_from_baseline", None)
        extra = p.pop("baseline_offset", 0.0)
        if start is not None and baseline is not None and _version(baseline) >= _version(start):
            p["offset"] = float(p.get("offset", 0.0)) + float(extra)
        p.setdefault("offset", 0.0)
        p.setdefault("nodata", None)
        return p


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", str(text)))


@cache
def _tables() -> dict[str, Sensor]:
    raw = tomllib.loads(resources.files("glacierkit").joinpath("sensors.toml").read_text())
    return {
        sid: Sensor(
            id=sid,
            name=t["name"],
            bands=dict(t["bands"]),
            roles={r: tuple(b) for r, b in t["roles"].items()},
            products=dict(t["products"]),
            default_product=t.get("default_product", "l2sp"),
        )
        for sid, t in raw.items()
    }


def sensor_ids() -> list[str]:
    """Ids of all sensors with a table."""
    return list(_tables())


def get_sensor(sensor: str | Sensor) -> Sensor:
    """Return the table for ``sensor`` (``landsat8``, ``landsat9``, ``landsat7``, ``sentinel2``).

    Aliases such as ``"L8"``, ``"LC08"``, ``"S2"`` and ``"sentinel-2"`` are accepted.
    """
    if isinstance(sensor, Sensor):
        return sensor
    key = str(sensor).lower().replace("-", "").replace("_", "").replace(" ", "")
    aliases = {
        "l8": "landsat8", "lc08": "landsat8", "lc8": "landsat8", "oli": "landsat8",
        "l9": "landsat9", "lc09": "landsat9", "lc9": "landsat9",
        "l7": "landsat7", "le07": "landsat7", "le7": "landsat7", "etm": "landsat7",
        "etm+": "landsat7", "s2": "sentinel2", "s2a": "sentinel2", "s2b": "sentinel2",
        "s2c": "sentinel2", "msi": "sentinel2",
    }
    key = aliases.get(key, key)
    tables = _tables()
    if key not in tables:
        raise UnknownSensorError(
            f"Unknown sensor {sensor!r}. Valid sensors: {sorted(tables)} "
            "(add a table to glacierkit/sensors.toml for another one)."
        )
    return tables[key]


def normalize_band_name(band: str, valid: Sequence[str]) -> str | None:
    """Match a band spelling ("3", "b3", "SR_B3", "B03", "B8A") to one of ``valid``."""
    text = str(band).strip().upper()
    if text in valid:
        return text
    m = re.search(r"B?0*(\d+A?)$", text)
    if not m:
        return None
    core = m.group(1)
    for v in valid:
        vm = re.fullmatch(r"B0*(\d+A?)", v.upper())
        if vm and vm.group(1) == core:
            return v
    return None


def select_bands(scene: xr.DataArray, bands: Sequence[str]) -> xr.DataArray:
    """Select bands of ``scene`` by role or band name, in the order given.

    Roles are looked up in the scene's ``role`` coordinate first, so this works for any
    scene that :func:`glacierkit.io.open_scene` returns, whatever the sensor.
    """
    if isinstance(bands, str):
        bands = (bands,)
    names = [str(b) for b in scene["band"].values]
    roles = [str(r) for r in scene["role"].values] if "role" in scene.coords else [""] * len(names)
    idx = []
    for want in bands:
        if want in roles and want:
            idx.append(roles.index(want))
        elif want in names:
            idx.append(names.index(want))
        else:
            sensor_id = scene.attrs.get("sensor")
            hint = ""
            if sensor_id:
                try:
                    sensor = get_sensor(sensor_id)
                    if want in sensor.roles:
                        hint = f" {sensor.name} fills {want!r} with {list(sensor.roles[want])}."
                except UnknownSensorError:
                    pass
            raise UnknownBandError(
                f"Band or role {want!r} is not in this scene. It has bands {names} with roles "
                f"{[r or '-' for r in roles]}.{hint} Valid roles: {list(ROLES)}."
            )
    return scene.isel(band=idx)


def _stretch_limits(values: np.ndarray, stretch: tuple[float, float]) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    if finite.size > 2_000_000:  # a regular subsample is plenty for percentiles
        finite = finite[:: finite.size // 2_000_000 + 1]
    lo, hi = np.percentile(finite, stretch)
    return float(lo), float(hi if hi > lo else lo + 1e-6)


def composite(
    scene: xr.DataArray,
    roles: Sequence[str] = PAPER_BANDS,
    stretch: tuple[float, float] = (2, 98),
) -> xr.DataArray:
    """An RGB display composite with a per-band percentile stretch.

    The default is the paper's 6-5-2 false colour (SWIR1, NIR, blue), in which glacier ice
    and snow appear cyan. ``roles=("red", "green", "blue")`` gives true colour (4-3-2).

    Returns a float32 DataArray with dims ``("y", "x", "rgb")`` scaled to 0-1, NaN where
    any band is missing; coordinates and CRS of the scene are kept.
    """
    rgb = select_bands(scene, roles)
    values = np.asarray(rgb.values, dtype="float32")
    out = np.empty(values.shape[1:] + (len(roles),), dtype="float32")
    for i in range(values.shape[0]):
        lo, hi = _stretch_limits(values[i], stretch)
        out[..., i] = np.clip((values[i] - lo) / (hi - lo), 0, 1)
    out[~np.isfinite(values).all(axis=0)] = np.nan
    result = xr.DataArray(
        out,
        dims=("y", "x", "rgb"),
        coords={"y": scene["y"], "x": scene["x"], "rgb": list(roles)},
        attrs={**scene.attrs, "stretch": list(stretch)},
    )
    crs = scene.rio.crs if hasattr(scene, "rio") else None
    if crs is not None:
        result = result.rio.write_crs(crs)
    return result
