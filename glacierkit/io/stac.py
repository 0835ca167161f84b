"""Scenes from a STAC API: search by glacier, rank by clouds over the glacier, load lazily.

The archives users work with (Earth Search, Microsoft Planetary Computer) serve Landsat and
Sentinel-2 as cloud-optimized GeoTIFFs described by STAC items. This module finds and
opens them with the ecosystem's own clients (``pystac-client`` to search, ``odc-stac`` to
read, GDAL's HTTP range reads underneath), so a glacier and a summer are enough:

>>> import glacierkit as gk                                             # doctest: +SKIP
>>> found = gk.stac.search(outlines="rgi60_02.shp", rgi_ids=["RGI60-02.xxxxx"],
...                        dates="2020-07-01/2020-09-30", max_cloud=50)
>>> found.table[["id", "date", "scene_cloud_pct", "glacier_obscured_pct"]]
>>> scene = gk.stac.open_item(found.items[0], outlines=found.outlines)
>>> prob = gk.predict_scene("models/unet_alps_s2.keras", scene)

- :func:`search` searches an API by bbox, outlines or RGI ids, dates and scene cloud cover,
  and **ranks the items by the share of the glacier outline area they do not see clearly**
  (cloud, cloud shadow and cirrus from each item's own ``qa_pixel``/``scl`` asset, read
  over the outlines only, or outside the image), not by the scene's cloud cover.
- :func:`open_item` loads one item (or the items of one day) as a Dask-backed scene by band
  role: reflectance with the right scale and offset (the asset's ``raster:bands``, else the
  sensor table with the Sentinel-2 processing baseline), ``level`` ``"surface"`` for Level-2
  collections and ``"toa"`` for Level-1, and clouds made nodata
  (:mod:`glacierkit.io.clouds`). The result goes to :func:`glacierkit.predict_scene`, the
  sweeps and everything else that takes a scene; :func:`glacierkit.io.open_scene` opens
  item URLs this way too.

Endpoints (:data:`ENDPOINTS`): ``earth-search`` (the default; Sentinel-2 L2A COGs are
public; its Landsat Collection 2 assets are in a requester-pays bucket, so they need AWS
credentials and ``AWS_REQUEST_PAYER=requester``) and ``planetary-computer`` (Landsat and
Sentinel-2 free; asset URLs are signed with the ``planetary-computer`` package, which
:func:`search` and :func:`open_item` do automatically for that host).
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ..exceptions import DataNotFoundError, GlacierKitError, NoOverlapError, ParameterError

log = logging.getLogger(__name__)

__all__ = ["EARTH_SEARCH", "PLANETARY_COMPUTER", "ENDPOINTS", "API_ENV", "DEFAULT_COLLECTIONS",
           "ROLE_ASSETS", "CLOUD_ASSETS", "SearchResult", "search", "get_item", "open_item",
           "item_scene_info", "is_item", "query_scenes"]

EARTH_SEARCH = "https://earth-search.aws.element84.com/v1"
PLANETARY_COMPUTER = "https://planetarycomputer.microsoft.com/api/stac/v1"
#: Public STAC APIs by short name (``api=`` takes a name or any URL).
ENDPOINTS = {"earth-search": EARTH_SEARCH, "planetary-computer": PLANETARY_COMPUTER}
#: Searched when ``collections`` is not given: Sentinel-2 L2A and Landsat Collection 2 L2
#: (their ids on both endpoints).
DEFAULT_COLLECTIONS = ("sentinel-2-l2a", "landsat-c2-l2")

#: Asset keys (and ``eo:bands`` common names) that fill each role, in order of preference.
#: Earth Search and Planetary Computer's Landsat use common names; Planetary Computer's
#: Sentinel-2 uses band names (``B8A``), which are found through the sensor table.
ROLE_ASSETS: dict[str, tuple[str, ...]] = {
    "coastal": ("coastal",),
    "blue": ("blue",),
    "green": ("green",),
    "red": ("red",),
    "nir": ("nir08", "nir"),
    "swir1": ("swir16",),
    "swir2": ("swir22",),
}
#: Cloud layers by asset key: Landsat ``QA_PIXEL``, Sentinel-2 ``SCL``.
CLOUD_ASSETS: dict[str, str] = {"qa_pixel": "qa_pixel", "QA_PIXEL": "qa_pixel",
                                "scl": "scl", "SCL": "scl"}
#: Roles loaded by default.
LOAD_ROLES = ("blue", "green", "red", "nir", "swir1", "swir2")
#: Metres of margin around the outlines when loading or ranking.
MARGIN_M = 300.0
_RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt")


# --------------------------------------------------------------------------- small helpers
def is_item(text: str) -> bool:
    """Whether ``text`` names a STAC item: an ``http(s)://`` URL that is not a raster file
    itself, or an existing local ``.json`` file whose ``type`` is ``Feature``."""
    t = str(text).strip()
    low = t.lower().split("?", 1)[0]
    if low.startswith(("http://", "https://")):
        return not low.endswith(_RASTER_SUFFIXES)
    if low.endswith(".json") and Path(t).is_file():
        try:
            head = Path(t).read_text(encoding="utf-8", errors="replace")[:4000]
        except OSError:
            return False
        return '"Feature"' in head and '"assets"' in head
    return False


#: Environment variable naming the STAC API used when none is given (a URL or a name of
#: :data:`ENDPOINTS`; default ``earth-search``).
API_ENV = "GLACIERKIT_STAC_API"


def _api_url(api: str | None) -> str:
    api = api or os.environ.get(API_ENV) or "earth-search"
    return ENDPOINTS.get(api, api).rstrip("/")


def _signer(api_url: str, sign):
    """The Planetary Computer URL signer when asked (``sign=True``) or when the API is
    Planetary Computer's (``sign="auto"``); None otherwise."""
    if sign is False or (sign == "auto" and "planetarycomputer" not in api_url):
        return None
    try:
        import planetary_computer
    except ImportError as exc:  # pragma: no cover - a dependency
        raise ParameterError(
            "Signing Planetary Computer asset URLs needs the planetary-computer package: pip "
            "install planetary-computer."
        ) from exc
    return planetary_computer.sign_inplace


def _sensor_of(item) -> str:
    """glacierkit's sensor id for an item (from ``platform``, else ``constellation`` or
    its id)."""
    from ..bands import get_sensor

    props = item.properties
    text = " ".join(str(props.get(k, "")) for k in ("platform", "constellation")) + " " + item.id
    text = text.lower()
    m = re.search(r"landsat[-_ ]?0?(\d)", text) or re.search(r"\bl[ceot]0?(\d)", text)
    if m:
        sid = f"landsat{m.group(1)}"
        return get_sensor("landsat5" if sid == "landsat4" else sid).id
    if "sentinel-2" in text or "sentinel2" in text or re.search(r"\bs2[abc]_", text):
        return "sentinel2"
    raise GlacierKitError(
        f"Cannot tell the sensor of STAC item {item.id!r} (platform "
        f"{props.get('platform')!r}); glacierkit reads Landsat 5/7/8/9 and Sentinel-2 items."
    )


def _level(item) -> tuple[str, str]:
    """``(product, level)``: ``("l2sp", "surface")`` for Landsat Collection 2 Level-2,
    ``("l2a", "surface")`` for Sentinel-2 L2A, ``("l1", "toa")`` / ``("l1c", "toa")`` for
    Level-1; from ``processing:level``, the collection id or the item id."""
    props = item.properties
    text = " ".join([str(props.get("processing:level", "")), str(item.collection_id or ""),
                     item.id]).lower()
    s2 = _sensor_of(item) == "sentinel2"
    if re.search(r"l2|level-?2", text):
        return ("l2a" if s2 else "l2sp"), "surface"
    if re.search(r"l1|level-?1", text):
        return ("l1c" if s2 else "l1"), "toa"
    raise GlacierKitError(
        f"Cannot tell the processing level of STAC item {item.id!r} (collection "
        f"{item.collection_id!r}); use a Level-2 (surface reflectance) collection such as "
        f"{list(DEFAULT_COLLECTIONS)}."
    )


def _asset_for_role(item, role: str, sensor) -> tuple[str, str] | None:
    """``(asset key, band name)`` of the asset that fills ``role``, or None."""
    assets = item.assets
    keys = list(assets)
    band_names = list(sensor.roles.get(role, ()))
    for want in ROLE_ASSETS.get(role, ()):
        if want in assets:
            return want, _band_name(assets[want], want, role, sensor)
    for key in keys:  # eo:bands common names
        for b in assets[key].extra_fields.get("eo:bands", []) or []:
            if b.get("common_name") in ROLE_ASSETS.get(role, ()):
                return key, _band_name(assets[key], key, role, sensor)
    for name in band_names:  # band names as keys (Planetary Computer's Sentinel-2: B8A)
        for key in keys:
            if key.upper() in (name, f"SR_{name}") or key.upper().replace("B0", "B") == name:
                return key, name
    return None


def _band_name(asset, key: str, role: str, sensor) -> str:
    """The sensor table's band name of an asset (``B8A`` for ``nir08``, ``B08`` for ``nir``
    on Sentinel-2)."""
    from ..bands import normalize_band_name

    for b in asset.extra_fields.get("eo:bands", []) or []:
        name = normalize_band_name(str(b.get("name", "")), sensor.band_names)
        if name is not None:
            return name
    if sensor.id == "sentinel2" and key == "nir":
        return "B08"
    return sensor.band_for_role(role)


def _cloud_asset(item) -> tuple[str, str] | None:
    for key, kind in CLOUD_ASSETS.items():
        if key in item.assets:
            return key, kind
    return None


def _raster_info(asset) -> dict:
    bands = asset.extra_fields.get("raster:bands") or []
    return dict(bands[0]) if bands else {}


def _scaling(item, asset, sensor, product) -> tuple[dict, str]:
    """How an asset's DNs become reflectance: its ``raster:bands`` scale/offset when given
    (Earth Search), else the sensor table (with the Sentinel-2 baseline offset); Landsat
    Level-1 top-of-atmosphere reflectance is divided by the sine of the sun elevation."""
    scaling, how = _dn_scaling(item, asset, sensor, product)
    if product == "l1" and sensor.id.startswith("landsat"):
        elevation = item.properties.get("view:sun_elevation")
        if elevation is None:
            raise GlacierKitError(
                f"STAC item {item.id!r} is Landsat Level-1 but gives no view:sun_elevation, "
                "so its top-of-atmosphere reflectance cannot be corrected for the sun. Use a "
                "Level-2 (surface reflectance) collection such as landsat-c2-l2."
            )
        k = math.sin(math.radians(float(elevation)))
        scaling = {**scaling, "scale": scaling["scale"] / k, "offset": scaling["offset"] / k}
        how += f", / sin(sun elevation {float(elevation):.2f})"
    return scaling, how


def _dn_scaling(item, asset, sensor, product) -> tuple[dict, str]:
    info = _raster_info(asset)
    if info.get("scale") is not None or info.get("offset") is not None:
        scale = float(info.get("scale", 1.0))
        offset = float(info.get("offset", 0.0))
        nodata = info.get("nodata", 0)
        return ({"scale": scale, "offset": offset, "nodata": nodata},
                f"DN * {scale:g} + {offset:g} (the item's raster:bands)")
    baseline = item.properties.get("s2:processing_baseline")
    scaling = sensor.scaling(product, baseline)
    if info.get("nodata") is not None:
        scaling["nodata"] = info["nodata"]
    how = f"DN * {scaling['scale']:g} + {scaling['offset']:g} (the {sensor.name} table"
    how += f", processing baseline {baseline})" if baseline else ")"
    if sensor.id == "sentinel2" and baseline is None:
        log.warning("STAC item %s says neither raster:bands scale/offset nor "
                    "s2:processing_baseline: read as before baseline 04.00 (no -1000 DN "
                    "offset).", item.id)
    return scaling, how


def _resolution(item, keys: Sequence[str], sensor, names: Sequence[str]) -> float:
    """The coarsest native pixel size of the loaded assets (metres): so SWIR, the bands
    glaciers are told by, are never upsampled into made-up detail."""
    res = []
    for key in keys:
        asset = item.assets[key]
        t = asset.extra_fields.get("proj:transform") or item.properties.get("proj:transform")
        if t:
            res.append(abs(float(t[0])))
        elif asset.extra_fields.get("gsd") or _raster_info(asset).get("spatial_resolution"):
            res.append(float(asset.extra_fields.get("gsd")
                             or _raster_info(asset)["spatial_resolution"]))
    if not res:
        res = [float(sensor.bands[n]["resolution"]) for n in names]
    return max(res)


def _anchor(item, key: str, resolution: float):
    """Pixel-edge alignment of the item's own grid, so loading at its native resolution
    does not shift it (Landsat grids have edges at odd multiples of 15 m)."""
    from odc.geo import xy_

    t = item.assets[key].extra_fields.get("proj:transform") or item.properties.get(
        "proj:transform")
    if not t or not math.isclose(abs(float(t[0])), resolution):
        return None
    fx = (float(t[2]) / resolution) % 1.0
    fy = (float(t[5]) / resolution) % 1.0
    return xy_(fx, fy)


# --------------------------------------------------------------------------- outlines
def _glaciers(outlines=None, rgi_ids=None, bbox=None, id_column: str = "RGIId"):
    """``(outlines in EPSG:4326 or None, bbox lon/lat)`` from outlines and/or ids, or a
    bbox."""
    from ..labels import read_outlines

    if rgi_ids and outlines is None:
        raise ParameterError(
            f"rgi_ids={list(rgi_ids)[:3]}... need outlines to look them up in: pass outlines= "
            "(an RGI shapefile or GeoPackage of the region, --glaciers on the command line)."
        )
    if outlines is None and bbox is None:
        raise ParameterError(
            "Say where to search: bbox=(west, south, east, north) in degrees, or glacier "
            "outlines= (with rgi_ids= to pick glaciers); on the command line --bbox or "
            "--glaciers [--rgi-ids]."
        )
    if outlines is None:
        b = tuple(float(v) for v in bbox)
        if len(b) != 4 or not (b[0] < b[2] and b[1] < b[3]):
            raise ParameterError(
                f"bbox={bbox!r}: give west, south, east, north in degrees, west < east and "
                "south < north, e.g. (-117.3, 52.15, -117.2, 52.22)."
            )
        return None, b
    gdf = read_outlines(outlines, ids=list(rgi_ids) if rgi_ids else None, id_column=id_column)
    if gdf.empty:
        raise NoOverlapError("The outlines are empty: nothing to search for.")
    gdf = gdf.to_crs("EPSG:4326")
    west, south, east, north = (float(v) for v in gdf.total_bounds)
    dlat = MARGIN_M / 111_320.0  # metres to degrees, at the outlines' latitude
    dlon = dlat / max(math.cos(math.radians(max(abs(south), abs(north)))), 0.01)
    return gdf, (west - dlon, south - dlat, east + dlon, north + dlat)


# --------------------------------------------------------------------------- searching
@dataclass
class SearchResult:
    """What :func:`search` found: the items ranked (clearest view of the glaciers first)
    and a table of them."""

    items: list  # pystac.Item, ranked
    table: pd.DataFrame  # one row per item, in the same order
    outlines: object = None  # the glacier outlines searched for (EPSG:4326), or None
    bbox: tuple | None = None
    api: str = EARTH_SEARCH
    extra: dict = field(default_factory=dict, repr=False)

    def hrefs(self, top: int | None = None) -> list[str]:
        """The items' own URLs (``self`` links), best first; usable as scene names."""
        return [_self_href(i) for i in self.items[:top]]

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write the ranked items as a GeoJSON FeatureCollection (an ItemCollection)."""
        from .._util import write_json

        return write_json(path, {"type": "FeatureCollection",
                                 "features": [i.to_dict() for i in self.items]})


def _self_href(item) -> str:
    href = item.get_self_href()
    if href:
        return href
    for link in item.links:
        if link.rel == "self":
            return link.href
    raise GlacierKitError(f"STAC item {item.id!r} has no self link; open it as an object.")


def _client(api_url: str, sign):
    from pystac_client import Client
    from pystac_client.exceptions import APIError

    try:
        return Client.open(api_url, modifier=_signer(api_url, sign))
    except (APIError, OSError, ValueError) as exc:
        raise DataNotFoundError(
            f"Cannot open the STAC API {api_url} ({' '.join(str(exc).split())[:300]}). Check "
            f"the URL and the network; known APIs: {ENDPOINTS}."
        ) from exc


def search(
    *,
    api: str | None = None,
    collections: Sequence[str] | None = None,
    bbox: Sequence[float] | None = None,
    outlines=None,
    rgi_ids: Iterable[str] | None = None,
    dates: str | None = None,
    max_cloud: float | None = None,
    max_items: int = 100,
    rank: bool = True,
    max_obscured: float | None = None,
    id_column: str = "RGIId",
    sign="auto",
    page_size: int | None = None,
) -> SearchResult:
    """Search a STAC API for scenes of glaciers and rank them by clouds over the glaciers.

    Parameters
    ----------
    api
        A URL or a name of :data:`ENDPOINTS` (default: the ``GLACIERKIT_STAC_API``
        environment variable, else ``"earth-search"``).
    collections
        Collection ids (default :data:`DEFAULT_COLLECTIONS`: Sentinel-2 L2A and Landsat
        Collection 2 Level-2).
    bbox
        ``(west, south, east, north)`` in degrees, when no outlines are given.
    outlines
        Glacier outlines (a file, a sample name such as ``"athabasca"``, or a GeoDataFrame;
        any CRS): the search covers them (plus :data:`MARGIN_M`) and the ranking counts the
        clouds over them.
    rgi_ids
        Only these glaciers of ``outlines`` (values of ``id_column``).
    dates
        ``"2020-07-01/2020-09-30"`` (a STAC datetime interval; ``"2020"`` is a whole year).
    max_cloud
        Largest scene cloud cover in % (``eo:cloud_cover``): on the server when it supports
        the filter or query extension, and always checked here.
    max_items
        Most items to fetch (and rank).
    rank
        Rank by the share of the glacier area each item does not see clearly, read from its
        ``qa_pixel``/``scl`` asset over the outlines (a small range read per item). Without
        outlines (a bbox search) the bbox is the area ranked over. ``False``: the server's
        order.
    max_obscured
        Drop items that see less than ``1 - max_obscured`` of the glacier area clearly.
    id_column
        The outlines' glacier id column.
    sign
        Sign asset URLs for Planetary Computer: ``"auto"`` (when the API is theirs),
        ``True`` or ``False``.
    page_size
        Items per page the server is asked for (its default when None).

    Returns
    -------
    SearchResult
        ``items`` best first and ``table`` with, per item: ``id``, ``collection``,
        ``date``, ``sensor``, ``scene_cloud_pct`` (the item's ``eo:cloud_cover``),
        ``glacier_obscured_pct`` (cloud, cloud shadow or cirrus over the glacier area the
        image covers), ``glacier_covered_pct`` (the share of the glacier area inside the
        image), ``glacier_clear_pct`` (seen clearly: the ranking key) and ``href``.
    """
    from pystac_client import ConformanceClasses

    api_url = _api_url(api)
    gdf, box = _glaciers(outlines, rgi_ids, bbox, id_column)
    collections = list(collections or DEFAULT_COLLECTIONS)
    client = _client(api_url, sign)
    kwargs = {"collections": collections, "bbox": box, "max_items": max_items}
    if page_size:
        kwargs["limit"] = page_size
    if dates:
        kwargs["datetime"] = dates
    if max_cloud is not None:
        if client.conforms_to(ConformanceClasses.FILTER):
            kwargs["filter"] = {"op": "<=", "args": [{"property": "eo:cloud_cover"},
                                                     float(max_cloud)]}
            kwargs["filter_lang"] = "cql2-json"
        elif client.conforms_to(ConformanceClasses.QUERY):
            kwargs["query"] = {"eo:cloud_cover": {"lte": float(max_cloud)}}
        else:
            log.info("%s supports neither the filter nor the query extension: cloud cover is "
                     "filtered here.", api_url)
    try:
        items = list(client.search(**kwargs).items())
    except Exception as exc:  # pystac-client's APIError and the HTTP errors beneath it
        raise DataNotFoundError(
            f"The search of {api_url} failed ({' '.join(str(exc).split())[:300]}). Check the "
            f"collections {collections} (the API's are listed at {api_url}/collections) and "
            "the dates (e.g. 2020-07-01/2020-09-30)."
        ) from exc
    if max_cloud is not None:
        items = [i for i in items if i.properties.get("eo:cloud_cover") is None
                 or float(i.properties["eo:cloud_cover"]) <= float(max_cloud)]
    rows = [_row(i) for i in items]
    if rank and items:
        for row, item in zip(rows, items, strict=True):
            try:
                row.update(_glacier_view(item, gdf, box))
            except (OSError, RuntimeError, ValueError) as exc:  # one unreadable cloud layer
                log.warning("Cannot read the cloud layer of %s (%s); it is ranked by its "
                            "scene cloud cover.", item.id, " ".join(str(exc).split())[:200])
        order = sorted(range(len(items)), key=lambda k: _rank_key(rows[k]))
        items, rows = [items[k] for k in order], [rows[k] for k in order]
    if max_obscured is not None and rank:
        keep = [k for k, r in enumerate(rows)
                if np.isfinite(r["glacier_clear_pct"])
                and r["glacier_clear_pct"] >= 100 * (1 - float(max_obscured))]
        items, rows = [items[k] for k in keep], [rows[k] for k in keep]
    table = pd.DataFrame(rows, columns=_COLUMNS if rank else _COLUMNS[:6] + ["href"])
    log.info("%d items from %s", len(items), api_url)
    return SearchResult(items, table.reset_index(drop=True), gdf, box, api_url)


_COLUMNS = ["id", "collection", "date", "sensor", "level", "scene_cloud_pct",
            "glacier_obscured_pct", "glacier_covered_pct", "glacier_clear_pct", "href"]


def _row(item) -> dict:
    try:
        sensor, level = _sensor_of(item), _level(item)[1]
    except GlacierKitError:
        sensor, level = "unknown", "unknown"
    cc = item.properties.get("eo:cloud_cover")
    return {"id": item.id, "collection": item.collection_id,
            "date": item.datetime.date().isoformat() if item.datetime else None,
            "sensor": sensor, "level": level,
            "scene_cloud_pct": float(cc) if cc is not None else np.nan,
            "href": item.get_self_href() or ""}


def _rank_key(row: Mapping) -> tuple:
    clear = row.get("glacier_clear_pct", np.nan)
    scene = row.get("scene_cloud_pct", np.nan)
    return (not np.isfinite(clear), -clear if np.isfinite(clear) else 0.0,
            scene if np.isfinite(scene) else 101.0, row["id"])


def _glacier_view(item, gdf, box) -> dict:
    """The glacier area an item sees clearly, from its cloud asset over the outlines."""
    from shapely.geometry import box as shapely_box

    from .clouds import obscured

    nan = {"glacier_obscured_pct": np.nan, "glacier_covered_pct": np.nan,
           "glacier_clear_pct": np.nan}
    found = _cloud_asset(item)
    if found is None:
        return nan
    key, kind = found
    try:
        layer = _load_assets([item], [key], box, resampling="nearest")[key]
    except NoOverlapError:
        return {**nan, "glacier_covered_pct": 0.0, "glacier_clear_pct": 0.0}
    layer = layer.load()
    hit, has_data = obscured(layer.rename(kind), kind)
    if gdf is not None:
        from ..labels import rasterize_outlines

        try:
            glacier = rasterize_outlines(gdf, like=layer, chunks=False).values == 1
        except NoOverlapError:
            glacier = np.zeros(layer.shape, bool)
    else:
        import geopandas as gpd

        area = gpd.GeoDataFrame(geometry=[shapely_box(*box)], crs="EPSG:4326")
        from ..labels import rasterize_outlines

        glacier = rasterize_outlines(area, like=layer, chunks=False).values == 1
    n = int(glacier.sum())
    if n == 0:
        return nan
    seen = np.asarray(has_data.values) & glacier
    hidden = np.asarray(hit.values) & seen
    covered = int(seen.sum())
    return {"glacier_obscured_pct": round(100 * float(hidden.sum()) / covered, 2)
            if covered else np.nan,
            "glacier_covered_pct": round(100 * covered / n, 2),
            "glacier_clear_pct": round(100 * float((seen & ~hidden).sum()) / n, 2)}


def query_scenes(query: Mapping | None) -> list[str]:
    """The item URLs a notebook's ``stac_query`` parameter finds, best first.

    ``query`` holds the keyword arguments of :func:`search` plus ``top`` (how many items to
    keep, default 1); an empty one gives no scenes.
    """
    if not query:
        return []
    query = dict(query)
    top = int(query.pop("top", 1))
    found = search(**query)
    if not found.items:
        raise DataNotFoundError(
            f"The STAC search {dict(query)} found no item. Widen the dates, raise max_cloud or "
            "check the collections."
        )
    return found.hrefs(top)


# --------------------------------------------------------------------------- loading
def get_item(ref, *, api: str | None = None, collections: Sequence[str] | None = None,
             sign="auto"):
    """A ``pystac.Item`` from an item URL or local ``.json`` file, or an item id searched
    for in ``api`` (in ``collections``, default all)."""
    import pystac

    if isinstance(ref, pystac.Item):
        return ref
    text = str(ref).strip()
    if text.lower().startswith(("http://", "https://")) or text.lower().endswith(".json"):
        if not text.lower().startswith("http") and not Path(text).is_file():
            raise DataNotFoundError(f"STAC item file not found: {text}.")
        try:
            item = pystac.Item.from_file(text)
        except Exception as exc:  # urllib's HTTPError, JSON and STAC errors
            raise DataNotFoundError(
                f"Cannot read a STAC item from {text} ({' '.join(str(exc).split())[:300]}). "
                "Check the URL (an item's own link, .../collections/<c>/items/<id>)."
            ) from exc
        signer = _signer(text, sign)
        if signer is not None:
            signer(item)
        return item
    api_url = _api_url(api)
    client = _client(api_url, sign)
    kwargs = {"ids": [text], "max_items": 2}
    if collections:
        kwargs["collections"] = list(collections)
    try:
        items = list(client.search(**kwargs).items())
    except Exception as exc:
        raise DataNotFoundError(
            f"Looking up STAC item {text!r} in {api_url} failed "
            f"({' '.join(str(exc).split())[:300]})."
        ) from exc
    if not items:
        raise DataNotFoundError(
            f"No STAC item {text!r} in {api_url}"
            + (f" (collections {list(collections)})" if collections else "")
            + ". Give an id that `glacierkit search` printed, or the item's URL."
        )
    return items[0]


def _load_assets(items, keys: Sequence[str], bbox, *, resolution=None, anchor=None,
                 resampling="average", chunks=None, like=None) -> xr.Dataset:
    """``odc.stac.load`` of some assets of items of one day, on the items' own CRS (or on
    the grid of ``like``). A cloud layer is loaded alone: it stays an integer layer
    whatever the item's metadata say."""
    import odc.stac
    from odc.stac import configure_rio

    configure_rio(cloud_defaults=True)
    kwargs = {"bands": list(keys), "groupby": "solar_day", "chunks": chunks,
              "resampling": {k: ("nearest" if k in CLOUD_ASSETS else resampling) for k in keys},
              "fail_on_error": True}
    if len(keys) == 1 and keys[0] in CLOUD_ASSETS:
        kwargs["dtype"] = "uint16" if CLOUD_ASSETS[keys[0]] == "qa_pixel" else "uint8"
    if like is not None:
        kwargs["like"] = like
        bbox = resolution = anchor = None
    if bbox is not None:
        kwargs["bbox"] = tuple(bbox)
    if resolution is not None:
        kwargs["resolution"] = float(resolution)
    if anchor is not None:
        kwargs["anchor"] = anchor
    try:
        ds = odc.stac.load(list(items), **kwargs)
    except ValueError as exc:
        if "no" in str(exc).lower() and ("overlap" in str(exc).lower()
                                         or "empty" in str(exc).lower()):
            raise NoOverlapError(
                f"The STAC item(s) {[i.id for i in items]} do not cover {bbox}.") from exc
        raise
    if ds.sizes.get("x", 0) == 0 or ds.sizes.get("y", 0) == 0:
        raise NoOverlapError(f"The STAC item(s) {[i.id for i in items]} do not cover {bbox}.")
    if ds.sizes.get("time", 1) != 1:
        raise ParameterError(
            f"The items {[i.id for i in items]} are from {ds.sizes['time']} days; open one "
            "day at a time."
        )
    return ds.isel(time=0) if "time" in ds.dims else ds


def item_scene_info(item) -> dict:
    """What glacierkit reads from an item before loading it: sensor, product, level, the
    asset of each role (with band name and scaling) and the cloud asset."""
    from ..bands import get_sensor

    sensor = get_sensor(_sensor_of(item))
    product, level = _level(item)
    roles = {}
    for role in LOAD_ROLES:
        found = _asset_for_role(item, role, sensor)
        if found is not None:
            key, band = found
            scaling, how = _scaling(item, item.assets[key], sensor, product)
            roles[role] = {"asset": key, "band": band, "scaling": scaling, "how": how}
    return {"sensor": sensor.id, "product": product, "level": level, "roles": roles,
            "cloud": _cloud_asset(item)}


def open_item(
    item,
    *,
    api: str | None = None,
    roles: Sequence[str] | None = None,
    bands: Sequence[str] | None = None,
    bbox: Sequence[float] | None = None,
    outlines=None,
    resolution: float | None = None,
    chunks=None,
    clouds=True,
    sign="auto",
) -> xr.DataArray:
    """Load a STAC item as a lazy (Dask-backed) scene of reflectance by band role.

    Parameters
    ----------
    item
        A ``pystac.Item``, an item URL or local ``.json``, an item id (looked up in
        ``api``), or a list of items of the same day (mosaicked, as tiles of one pass).
    api
        For an item id: the API to look it up in (see :func:`search`).
    roles, bands
        Roles to load (default ``blue, green, red, nir, swir1, swir2``; those the item has);
        ``bands`` selects among them afterwards, as in :func:`glacierkit.io.open_scene`.
    bbox, outlines
        The area to load: ``(west, south, east, north)`` in degrees, or the bounds of
        glacier outlines plus :data:`MARGIN_M` (default: the whole item).
    resolution
        Pixel size in the item's CRS units (default: the coarsest native pixel of the
        loaded bands: 20 m for Sentinel-2's SWIR, 30 m for Landsat).
    chunks
        Dask chunks (default 2048 x 2048 pixels).
    clouds
        ``True`` (default): cloud, cloud-shadow and cirrus pixels of the item's ``qa_pixel``
        or ``scl`` asset are NaN (:func:`glacierkit.io.clouds.mask_clouds`; with
        ``outlines`` the obscured share of the glacier area is recorded and checked);
        ``False`` keeps them.
    sign
        Planetary Computer URL signing (see :func:`search`).

    Returns
    -------
    xarray.DataArray
        ``(band, y, x)`` float32 reflectance in the item's CRS, NaN for nodata and clouds,
        with ``band``/``role``/``wavelength`` coordinates and attrs ``sensor``, ``product``,
        ``level`` (``"surface"`` or ``"toa"``), ``date``, ``scene_id`` (the item id),
        ``source`` (the item URL), ``stac_collection``, ``scaling`` and the cloud attrs.
    """
    from ..bands import get_sensor, select_bands
    from .clouds import mask_clouds
    from .raster import scale_dn, stack_bands

    items = list(item) if isinstance(item, (list, tuple)) else [item]
    items = [get_item(i, api=api, sign=sign) for i in items]
    first = items[0]
    info = item_scene_info(first)
    sensor = get_sensor(info["sensor"])
    want = list(roles) if roles is not None else list(LOAD_ROLES)
    missing = [r for r in want if r not in info["roles"]]
    if roles is not None and missing:
        raise ParameterError(
            f"STAC item {first.id!r} has no asset for the roles {missing} (assets: "
            f"{list(first.assets)}). Roles it has: {list(info['roles'])}."
        )
    use = [r for r in want if r in info["roles"]]
    if not use:
        raise ParameterError(
            f"STAC item {first.id!r} has no reflectance asset glacierkit knows (assets: "
            f"{list(first.assets)}); expected keys such as {sorted(ROLE_ASSETS)} values."
        )
    keys = [info["roles"][r]["asset"] for r in use]
    names = [info["roles"][r]["band"] for r in use]
    cloud = info["cloud"] if clouds is True else None
    res = resolution or _resolution(first, keys, sensor, names)
    if outlines is not None:  # read once, for the area and the obscured share
        outlines, box = _glaciers(outlines)
    box = bbox if bbox is not None else (box if outlines is not None else None)
    box = _within_items(box, items)
    ds = _load_assets(items, keys, box, resolution=res,
                      anchor=_anchor(first, keys[-1], res), chunks=_chunks(chunks))
    layers, hows = [], {}
    for role, key, name in zip(use, keys, names, strict=True):
        scaling = info["roles"][role]["scaling"]
        hows[name] = info["roles"][role]["how"]
        raw = ds[key]
        layer = scale_dn(raw, scaling["scale"], scaling["offset"], scaling.get("nodata"))
        layers.append(layer.expand_dims(band=[name]).rio.write_crs(ds.odc.crs.to_wkt()))
    hrefs = {i.id: _self_href_or(i, "") for i in items}
    attrs = {"sensor": sensor.id, "product": info["product"], "level": info["level"],
             "date": first.datetime.date().isoformat() if first.datetime else None,
             "scene_id": first.id if len(items) == 1 else "+".join(i.id for i in items),
             "source": hrefs[first.id] or f"stac:{first.collection_id}/{first.id}",
             "stac_collection": first.collection_id,
             "scaling": "; ".join(sorted(set(hows.values())))}
    if first.properties.get("eo:cloud_cover") is not None:
        attrs["scene_cloud_pct"] = float(first.properties["eo:cloud_cover"])
    da = stack_bands(layers, names, sensor, attrs)
    da = da.drop_vars([c for c in ("time",) if c in da.coords])
    crs = ds.odc.crs
    da = da.rio.write_crs(crs.to_wkt() if crs.epsg is None else f"EPSG:{crs.epsg}")
    da = da.rio.write_transform(ds.odc.geobox.affine)
    if cloud is not None:
        layer = _load_assets(items, [cloud[0]], None, like=ds,
                             chunks=_chunks(chunks))[cloud[0]].rename(cloud[1])
        layer.attrs = {"cloud_kind": cloud[1],
                       "cloud_layer": first.assets[cloud[0]].href.split("?", 1)[0]}
        layer = layer.rio.write_crs(da.rio.crs).rio.write_transform(da.rio.transform())
        da = mask_clouds(da, layer, kind=cloud[1], outlines=outlines)
    elif clouds is True:
        log.warning("STAC item %s has no qa_pixel or scl asset: clouds are not masked.",
                    first.id)
        da.attrs["cloud_mask"] = "none (the item has no qa_pixel or scl asset)"
    elif clouds is not False:
        da = mask_clouds(da, clouds, outlines=outlines)
    if bands is not None:
        da = select_bands(da, bands)
    return da


def _within_items(box, items):
    """The part of ``box`` the items cover (their bbox), so a margin around the glaciers
    does not add a frame of nodata beyond the image; ``box`` itself when it lies outside."""
    boxes = [i.bbox for i in items if i.bbox]
    if box is None or not boxes:
        return box
    west, south = min(b[0] for b in boxes), min(b[1] for b in boxes)
    east, north = max(b[2] for b in boxes), max(b[3] for b in boxes)
    out = (max(box[0], west), max(box[1], south), min(box[2], east), min(box[3], north))
    return out if out[0] < out[2] and out[1] < out[3] else tuple(box)


def _chunks(chunks) -> dict | None:
    """odc-stac chunks from open_scene's: lazy 2048-pixel blocks unless ``False`` (load
    now); a dict keeps its ``x``/``y`` sizes (non-positive ones become 2048)."""
    if chunks is False:
        return None
    if chunks is None or chunks is True:
        return {"x": 2048, "y": 2048}
    if not isinstance(chunks, Mapping):
        chunks = {"x": int(chunks), "y": int(chunks)}
    out = {k: (int(v) if isinstance(v, (int, np.integer)) and v > 0 else 2048)
           for k, v in chunks.items() if k in ("x", "y")}
    return {"x": out.get("x", 2048), "y": out.get("y", 2048)}


def _self_href_or(item, default: str) -> str:
    try:
        return _self_href(item)
    except GlacierKitError:
        return default
