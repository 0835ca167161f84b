"""Sample data, pinned by commit and checksum.

Every sample file is a file of a public GitHub repository at a fixed commit, checked
against its sha256 (``registry.txt``). A file is looked for, in this order:

1. a local mirror folder laid out as ``github/<owner>/<repo>/<commit>/<path>``, named by
   the environment variable ``GLACIERKIT_DATA_DIR`` (the Makefile points it at
   ``../shared/data`` when that exists);
2. the user cache (``GLACIERKIT_CACHE_DIR``, default ``~/.cache/glacierkit``);
3. a download from ``https://raw.githubusercontent.com/<owner>/<repo>/<commit>/<path>``
   (base URL overridable with ``GLACIERKIT_DATA_URL``) into the cache, checked against
   the pinned sha256.

Examples
--------
>>> import glacierkit.data as gd
>>> gd.scene_names()[:2]
['alps-s2/aletsch', 'alps-s2/fiescher']
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

from .._util import read_json, write_json
from ..exceptions import ChecksumError, DataNotFoundError

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_BASE_URL", "SampleScene", "SOURCES", "SCENES", "SPLITS", "fetch", "fetch_product", "outlines", "outlines_path", "outline_datasets", "aux_raster", "spectra", "SPECTRA_CLASSES", "VALIDATION_CLASSES", "scene_names", "get_scene", "split", "registry", "mirror_dir", "cache_dir"]

DEFAULT_BASE_URL = "https://raw.githubusercontent.com"

_ALPS = "github/reitualexandra/corbassiere_algae_classifier/41090a2ad08d5a90faba052bdacfd7a485d30764"
_RGI_CH = "github/lgeibel/snowicesen/a771443641e139f2a07efdb211c356f0bc22920e/data/outlines"
_EVEREST = "github/GlacioHack/geoutils-data/bd45050f82f552fc2a1c977993f20b0c13eeb05b/data/Everest_Landsat"
_XLANDSAT = "github/compgeolab/xlandsat/20c25691d4e30d026a90e0a64d9f2e087634b3dc/data"
_UNPACKQA = "github/sdtaylor/unpackqa/5ebeca8193b821e8bb54fcc88d6df3325d207388/examples"
_SATRBEDO = "github/pabl1t0x/SatRbedo/e5b365644b65455a4bbc6dc881e37d134f0d8223/inst/extdata"
_SATRBEDO_OLD = "github/pabl1t0x/SatRbedo/d7aaea9598625c6e9627c723f030754d2b54a46c/inst/extdata"
_SPECTRA = ("github/RaineyAbe/glacier-snow-cover-mapping/1a553490d96ba64f0fa1923f75e459871dfac38b/"
            "inputs-outputs")
_OGGM = "github/OGGM/oggm-sample-data/99651428d84b68735c87001da70983fa369abd59"

#: Where each sample comes from and under which licence.
SOURCES: dict[str, dict[str, str]] = {
    "alps-s2": {
        "source": "reitualexandra/corbassiere_algae_classifier@41090a2",
        "licence": "MIT; contains modified Copernicus Sentinel data (2020)",
        "description": "Sentinel-2 L2A crops (20 m, 9 bands, July 2020) of five Alpine glaciers",
    },
    "rgi-ch": {
        "source": "lgeibel/snowicesen@a771443",
        "licence": "CC-BY-4.0 (RGI Consortium), RGI 5.0",
        "description": "RGI 5.0 outlines, Swiss subset (1,961 polygons, EPSG:4326)",
    },
    "everest-l7": {
        "source": "GlacioHack/geoutils-data@bd45050",
        "licence": "BSD-3-Clause; Landsat courtesy of USGS (public domain); RGI CC-BY-4.0",
        "description": "Landsat 7 ETM+ crop over Everest (RGB display stretch + B4) with RGI 6.0 outlines",
    },
    "landsat8-l2sp": {
        "source": "compgeolab/xlandsat@20c2569",
        "licence": "CC0-1.0; Landsat courtesy of USGS",
        "description": "Landsat 8 Collection 2 L2SP product cropped to 400 x 300 (SR_B2-SR_B7 + MTL)",
    },
    "landsat8-qa": {
        "source": "sdtaylor/unpackqa@5ebeca8",
        "licence": "MIT; Landsat courtesy of USGS",
        "description": "Full-scene Landsat 8 Collection 2 QA_PIXEL band (7551 x 7351) over Everest",
    },
    "athabasca": {
        "source": "pabl1t0x/SatRbedo@e5b3656 (2020-09-11 scene: @d7aaea9)",
        "licence": "GPL-3.0-or-later (the package's DESCRIPTION); Landsat: USGS; contains "
                   "modified Copernicus Sentinel data (2020)",
        "description": "Athabasca Glacier (Canadian Rockies): HLS-style Landsat 8 OLI "
                       "(2020-08-16) and Sentinel-2 (2020-09-09, 2020-09-11) at 30 m, with a "
                       "partial outline (1984 extent, Athabasca Glacier and part of the "
                       "Columbia Icefield)",
    },
    "spectra": {
        "source": "RaineyAbe/glacier-snow-cover-mapping@1a55349",
        "licence": "MIT",
        "description": "Labelled snow/shadowed snow/ice/rock/water pixels from US glaciers on "
                       "Landsat 8/9 and Sentinel-2 (SR and TOA), 2019-2021",
    },
    "rgi-oggm": {
        "source": "OGGM/oggm-sample-data@9965142",
        "licence": "BSD-3-Clause (OGGM sample data); RGI CC-BY-4.0",
        "description": "RGI 6 outlines: 20 glaciers of the Oetztal Alps and 61 Icelandic ice caps",
    },
}

# Sentinel-2 files in the Alps sample: file stem -> band name.
_ALPS_BANDS = {"2": "B02", "3": "B03", "4": "B04", "5": "B05", "6": "B06", "7": "B07",
               "8": "B8A", "11": "B11", "12": "B12"}


_L8_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07")
_S2_BANDS = ("B02", "B03", "B04", "B8A", "B11", "B12")
_ATHABASCA = [
    ("l8-2020-08-16", "landsat8", "2020-08-16", (205, 215),
     {b.replace("B0", "B"): f"{_SATRBEDO}/athabasca_2020229_{b}_L30.tif" for b in _L8_BANDS}),
    ("s2-2020-09-09", "sentinel2", "2020-09-09", (205, 215),
     {b: f"{_SATRBEDO}/athabasca_2020253_{b}_S30.tif" for b in _S2_BANDS}),
    ("s2-2020-09-11", "sentinel2", "2020-09-11", (207, 216),
     {b: f"{_SATRBEDO_OLD}/athabasca_{b}_20200911.tif" for b in _S2_BANDS}),
]


@dataclass(frozen=True)
class SampleScene:
    """A sample scene: its files and, for bare crops, the georeference to apply."""

    name: str
    dataset: str
    sensor: str
    product: str
    files: dict[str, str]  # band name -> mirror-relative path
    crs: str | None = None  # applied when the files carry no georeference (or an unnamed equal one)
    upper_left: tuple[float, float] | None = None  # (x, y) of the crop's outer corner
    resolution: float | None = None
    shape: tuple[int, int] | None = None  # (height, width)
    split: str = "unlabelled"
    outlines: str | None = None
    date: str | None = None
    notes: dict[str, str] = field(default_factory=dict)


def _alps(glacier: str, ul: tuple[float, float], shape: tuple[int, int], split: str,
          labelled: bool = True, tile: str = "") -> SampleScene:
    return SampleScene(
        name=f"alps-s2/{glacier.lower()}",
        dataset="alps-s2",
        sensor="sentinel2",
        product="l2a",
        files={band: f"{_ALPS}/Sentinel-2/{glacier}/{stem}.jp2" for stem, band in _ALPS_BANDS.items()},
        crs="EPSG:32632",
        upper_left=ul,
        resolution=20.0,
        shape=shape,
        split=split,
        outlines="alps-s2" if labelled else None,
        date="2020-07",
        notes={"tile": tile, "processing_baseline": "before 04.00 (no -1000 DN offset)"},
    )


#: Every sample scene, by name.
SCENES: dict[str, SampleScene] = {
    s.name: s
    for s in [
        _alps("Aletsch", (419960.0, 5154020.0), (600, 500), "train", tile="T32TMS"),
        _alps("Fiescher", (429960.0, 5156020.0), (500, 300), "train", tile="T32TMS"),
        _alps("Gorner", (410360.0, 5094020.0), (150, 150), "test", tile="T32TMR"),
        _alps("Morteratsch", (569980.0, 5140020.0), (150, 150), "test", tile="T32TNS"),
        _alps("MerDeGlace", (338560.0, 5087220.0), (270, 270), "unlabelled", labelled=False,
              tile="T32TLR"),
        *[SampleScene(
            name=f"athabasca/{key}",
            dataset="athabasca",
            sensor=sensor,
            product="hls",
            files=files,
            # The files carry a WKT equal to EPSG:32611 without the code: name it.
            crs="EPSG:32611",
            resolution=30.0,
            shape=shape,
            split="cross-region",
            outlines="athabasca",
            date=date,
            notes={"region": "Canadian Rockies", "radiometry": "HLS-style surface "
                   "reflectance x 10000, -9999 fill"},
        ) for key, sensor, date, shape, files in _ATHABASCA],
        SampleScene(
            name="everest-l7",
            dataset="everest-l7",
            sensor="landsat7",
            product="display",
            # The RGB file holds ETM+ B3, B2, B1 as an 8-bit display stretch.
            files={"B3": f"{_EVEREST}/LE71400412000304SGS00_RGB.tif#1",
                   "B2": f"{_EVEREST}/LE71400412000304SGS00_RGB.tif#2",
                   "B1": f"{_EVEREST}/LE71400412000304SGS00_RGB.tif#3",
                   "B4": f"{_EVEREST}/LE71400412000304SGS00_B4.tif"},
            split="unlabelled",
            outlines="everest-l7",
            date="2000-10-30",
            notes={"radiometry": "8-bit display stretch, not reflectance; no SWIR band"},
        ),
    ]
}

#: The benchmark split of the Alps sample (from the data README). Never tune on "test".
SPLITS: dict[str, dict[str, list[str]]] = {
    "alps-s2": {
        "train": ["alps-s2/aletsch", "alps-s2/fiescher"],
        "test": ["alps-s2/morteratsch", "alps-s2/gorner"],
        "unlabelled": ["alps-s2/merdeglace"],
    },
    # Another region: never trained on by the default model; for cross-region scores.
    "athabasca": {
        "train": [],
        "test": ["athabasca/l8-2020-08-16", "athabasca/s2-2020-09-09",
                 "athabasca/s2-2020-09-11"],
        "unlabelled": [],
    },
}

_OUTLINE_FILES = {
    "alps-s2": [f"{_RGI_CH}/rgi_copy.{ext}" for ext in ("shp", "shx", "dbf", "prj", "cpg")],
    "everest-l7": [f"{_EVEREST}/15_rgi60_glacier_outlines.gpkg"],
    "athabasca": [f"{_SATRBEDO}/athabasca_outline.{ext}" for ext in ("shp", "shx", "dbf", "prj",
                                                                     "cpg")],
    "oetztal": [f"{_OGGM}/test-workflow/rgi/rgi_oetztal.{ext}" for ext in ("shp", "shx", "dbf",
                                                                           "prj", "cpg")],
    "iceland": [f"{_OGGM}/test-files/RGI6_icecap.{ext}" for ext in ("shp", "shx", "dbf", "prj",
                                                                    "cpg")],
}

#: Outline dataset -> SOURCES key.
_OUTLINE_SOURCES = {"alps-s2": "rgi-ch", "everest-l7": "everest-l7", "athabasca": "athabasca",
                    "oetztal": "rgi-oggm", "iceland": "rgi-oggm"}

#: Extra rasters on a scene's grid: name -> (mirror path, what it holds).
_AUX = {
    "athabasca/dem": (f"{_SATRBEDO}/athabasca_dem.tif", "elevation (m), int16, nodata -32768"),
    "athabasca/shadows": (f"{_SATRBEDO}/athabasca_shadows.tif", "cast-shadow layer, float32"),
}

#: Labelled pixel spectra (data README section 5): (sensor, kind) -> mirror path.
_SPECTRA_FILES = {
    ("landsat", "training"): f"{_SPECTRA}/models_training_data/Landsat_training_data.csv",
    ("sentinel2-sr", "training"): f"{_SPECTRA}/models_training_data/Sentinel-2_SR_training_data.csv",
    ("sentinel2-toa", "training"):
        f"{_SPECTRA}/models_training_data/Sentinel-2_TOA_training_data.csv",
    ("landsat", "validation"): f"{_SPECTRA}/models_validation_data/manually_classified_points/"
                               "Landsat_manually_classified_points.csv",
    ("sentinel2-sr", "validation"): f"{_SPECTRA}/models_validation_data/"
                                    "manually_classified_points/"
                                    "Sentinel-2_SR_manually_classified_points.csv",
    ("sentinel2-toa", "validation"): f"{_SPECTRA}/models_validation_data/"
                                     "manually_classified_points/"
                                     "Sentinel-2_TOA_manually_classified_points.csv",
}
#: Surface classes of the pixel spectra (the source's training points).
SPECTRA_CLASSES = {1: "snow", 2: "shadowed snow", 3: "ice", 4: "rock", 5: "water"}
#: The hand-classified validation points only say snow (1) or not (0).
VALIDATION_CLASSES = {1: "snow", 0: "no snow"}

_PRODUCTS = {
    "landsat8-l2sp": f"{_XLANDSAT}/LC08_L2SP_218074_20190114_20200829_02_T1-cropped.tar.gz",
    "landsat8-qa": f"{_UNPACKQA}/LC08_L2SP_140041_20130503_20200912_02_T1_QA_PIXEL.TIF",
}


@cache
def registry() -> dict[str, str]:
    """Mirror-relative path -> pinned sha256, for every sample file."""
    text = resources.files(__package__).joinpath("registry.txt").read_text()
    out = {}
    for line in text.splitlines():
        if line.strip():
            sha, rel = line.split(maxsplit=1)
            out[rel.strip()] = sha
    return out


def scene_names() -> list[str]:
    """Names accepted by :func:`glacierkit.io.open_scene`."""
    return list(SCENES) + ["landsat8-l2sp"]


def get_scene(name: str) -> SampleScene:
    """The registry entry of a sample scene."""
    key = name.lower()
    if key not in SCENES:
        raise DataNotFoundError(
            f"Unknown sample scene {name!r}. Available scenes: {scene_names()}."
        )
    return SCENES[key]


def split(dataset: str = "alps-s2") -> dict[str, list[str]]:
    """The benchmark split (train / test / unlabelled scene names) of a sample dataset."""
    if dataset not in SPLITS:
        raise DataNotFoundError(
            f"No benchmark split for {dataset!r}. Datasets with a split: {sorted(SPLITS)}."
        )
    return {k: list(v) for k, v in SPLITS[dataset].items()}


def mirror_dir() -> Path | None:
    """The local mirror named by ``GLACIERKIT_DATA_DIR``, if set."""
    value = os.environ.get("GLACIERKIT_DATA_DIR", "").strip()
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """The user cache (``GLACIERKIT_CACHE_DIR`` or the platform cache folder)."""
    value = os.environ.get("GLACIERKIT_CACHE_DIR", "").strip()
    if value:
        return Path(value).expanduser()
    import pooch

    return Path(pooch.os_cache("glacierkit"))


def _url(rel: str) -> str:
    base = os.environ.get("GLACIERKIT_DATA_URL", DEFAULT_BASE_URL).rstrip("/")
    parts = rel.split("/", 1)
    if parts[0] != "github":
        raise DataNotFoundError(f"{rel!r} is not a github/<owner>/<repo>/<commit>/<path> entry.")
    return f"{base}/{parts[1]}"


_VERIFIED: dict[tuple[str, int, float], bool] = {}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _matches(path: Path, sha: str) -> bool:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime)
    if key not in _VERIFIED:
        _VERIFIED[key] = _sha256(path) == sha
    return _VERIFIED[key]


def fetch(rel: str) -> Path:
    """Local path of one sample file (mirror-relative path), fetching it if needed.

    Raises
    ------
    DataNotFoundError
        When the file is in no mirror or cache and cannot be downloaded; the message lists
        every place tried and how to fix it.
    """
    rel = rel.split("#", 1)[0]
    sha = registry().get(rel)
    if sha is None:
        raise DataNotFoundError(f"{rel!r} is not a registered sample file.")
    tried = []
    mirror = mirror_dir()
    if mirror is not None:
        path = mirror / rel
        if path.is_file():
            if _matches(path, sha):
                return path
            tried.append(f"mirror {path} (checksum mismatch: the file differs from the pinned one)")
        else:
            tried.append(f"mirror {path} (missing)")
    else:
        tried.append("mirror (GLACIERKIT_DATA_DIR not set)")
    cached = cache_dir() / rel
    if cached.is_file():
        if _matches(cached, sha):
            return cached
        tried.append(f"cache {cached} (checksum mismatch; deleting and downloading again)")
        cached.unlink()
    else:
        tried.append(f"cache {cached} (missing)")
    url = _url(rel)
    try:
        import pooch

        cached.parent.mkdir(parents=True, exist_ok=True)
        log.info("Downloading %s", url)
        got = pooch.retrieve(url, known_hash=f"sha256:{sha}", fname=cached.name,
                             path=cached.parent, progressbar=_progress())
        return Path(got)
    except Exception as exc:  # network errors, HTTP errors, hash mismatch
        tried.append(f"download {url} ({type(exc).__name__}: {exc})")
        dataset = next((k for k, v in SOURCES.items() if v["source"].split("@")[0] in rel), rel)
        mismatch = any("mismatch" in t.lower() or "does not match" in t.lower() for t in tried)
        raise (ChecksumError if mismatch else DataNotFoundError)(
            f"Sample file for dataset {dataset!r} not found: {rel}\nTried:\n  - "
            + "\n  - ".join(tried)
            + "\nFix: set GLACIERKIT_DATA_DIR to a folder holding github/<owner>/<repo>/<commit>/"
            "<path> (a copy of the mirror), or connect to the internet so the pinned file can be "
            "downloaded into the cache."
        ) from exc


def _progress():
    try:
        import tqdm  # noqa: F401

        return True
    except ImportError:  # pragma: no cover
        return False


def fetch_product(name: str, unpack: bool = True) -> Path:
    """Local path of a sample Landsat product.

    ``"landsat8-l2sp"`` gives the folder of the extracted Collection 2 L2SP crop (bands and
    ``_MTL.txt``), or with ``unpack=False`` the product's ``.tar.gz`` as downloaded (which
    :func:`glacierkit.open_scene` opens too); ``"landsat8-qa"`` gives the full-scene
    QA_PIXEL GeoTIFF.
    """
    if name not in _PRODUCTS:
        raise DataNotFoundError(f"Unknown sample product {name!r}. Available: {sorted(_PRODUCTS)}.")
    path = fetch(_PRODUCTS[name])
    if not path.name.endswith(".tar.gz") or not unpack:
        return path
    stem = path.name[: -len(".tar.gz")]
    target = cache_dir() / "extracted" / registry()[_PRODUCTS[name]][:12] / stem
    if target.is_dir():
        problem = _verify_extracted(target)
        if problem is None:
            return target
        log.warning("The extracted sample %s is not as extracted (%s): extracting it again.",
                    target, problem)
        aside = target.with_name(f".stale-{target.name}-{os.getpid()}")
        try:
            target.rename(aside)
        except FileNotFoundError:  # another process moved it first
            pass
        shutil.rmtree(aside, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    from ..staging import make_private_dir

    tmp = make_private_dir(target.parent, ".extract-")
    try:
        with tarfile.open(path) as tar:
            tar.extractall(tmp, filter="data")
        _write_manifest(tmp)
        tmp.rename(target)  # atomic: a half-extracted folder is never seen
    except (FileExistsError, OSError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (isinstance(exc, FileExistsError) or target.is_dir()):
            raise
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    problem = _verify_extracted(target)
    if problem is not None:
        raise ChecksumError(
            f"The sample product {name} extracted to {target} does not match its manifest "
            f"({problem}). Delete {target.parent} and try again."
        )
    return target


#: The file in an extracted sample product that lists its files with their sha256.
MANIFEST = ".glacierkit-manifest.json"


def _write_manifest(folder: Path) -> None:
    files = {str(p.relative_to(folder)): _sha256(p) for p in sorted(folder.rglob("*"))
             if p.is_file() and p.name != MANIFEST}
    write_json(folder / MANIFEST, files, indent=1)


def _verify_extracted(folder: Path) -> str | None:
    """``None`` when every file of the manifest is there with its sha256 and nothing else
    was added; else what is wrong (a missing manifest counts: extracted by an older
    version, so unverifiable)."""
    try:
        expected = read_json(folder / MANIFEST)
    except (OSError, ValueError):
        return "no readable manifest"
    found = {str(p.relative_to(folder)) for p in folder.rglob("*")
             if p.is_file() and p.name != MANIFEST}
    if set(expected) != found:
        missing, extra = sorted(set(expected) - found), sorted(found - set(expected))
        return f"missing {missing[:3]}, extra {extra[:3]}"
    for rel, sha in expected.items():
        if not _matches(folder / rel, sha):
            return f"{rel} was replaced (checksum mismatch)"
    return None


def outlines_path(dataset: str) -> Path:
    """Local path of a sample dataset's outline file (fetching its companions too)."""
    if dataset not in _OUTLINE_FILES:
        raise DataNotFoundError(
            f"No outlines for dataset {dataset!r}. Datasets with outlines: {sorted(_OUTLINE_FILES)}."
        )
    paths = [fetch(rel) for rel in _OUTLINE_FILES[dataset]]
    return paths[0]


def outlines(dataset: str):
    """Glacier outlines of a sample dataset as a GeoDataFrame.

    ``"alps-s2"``: the RGI 5.0 Swiss subset (EPSG:4326); ``"everest-l7"``: the RGI 6.0
    outlines of the Everest crop (both from about 2000-2003); ``"athabasca"``: one polygon
    (EPSG:32611), Athabasca Glacier and part of the Columbia Icefield, a **partial** outline
    (ice outside it is not labelled; see :func:`glacierkit.labels.partial_outline_labels`);
    ``"oetztal"`` and ``"iceland"``: RGI 6 outlines without imagery.
    """
    import geopandas as gpd

    gdf = gpd.read_file(outlines_path(dataset))
    gdf.attrs["source"] = SOURCES[_OUTLINE_SOURCES[dataset]]["source"]
    return gdf


def outline_datasets() -> list[str]:
    """Names accepted by :func:`outlines`."""
    return list(_OUTLINE_FILES)


def aux_raster(name: str) -> Path:
    """Local path of an extra raster of a sample scene: ``"athabasca/dem"`` (elevation in m)
    or ``"athabasca/shadows"`` (cast shadows), both on the Landsat 8 grid of Athabasca."""
    if name not in _AUX:
        raise DataNotFoundError(f"Unknown sample raster {name!r}. Available: {sorted(_AUX)}.")
    return fetch(_AUX[name][0])


def spectra(sensor: str = "landsat", kind: str = "training"):
    """Labelled pixel spectra from US glaciers (data README section 5) as a DataFrame.

    Parameters
    ----------
    sensor
        ``"landsat"`` (Landsat 8/9, columns ``SR_B1`` ... ``SR_B7``), ``"sentinel2-sr"`` or
        ``"sentinel2-toa"`` (columns ``B1`` ... ``B12``, ``B8A``).
    kind
        ``"training"`` (the source's training points: Gulkana, Wolverine, South Cascade,
        Sperry, 2021; surfaces snow, shadowed snow, ice, rock, water) or ``"validation"``
        (hand-classified points at Lemon Creek and Emmons, 2019-2021; surfaces only
        "snow" and "no snow").

    Returns
    -------
    pandas.DataFrame
        One row per pixel with the source's columns plus ``surface`` (snow, shadowed snow,
        ice, rock, water from the ``class`` code) and reflectance by role (``blue``,
        ``green``, ``red``, ``nir``, ``swir1``, ``swir2``) as given by the source.

    Notes
    -----
    Classes are surface types, not glacier membership (snow can be seasonal).

    The source's Landsat values carry the Collection 2 offset twice: water and snow read
    0.21 in SWIR (about 0.01 on Sentinel-2 SR at the same sites) and fresh snow exceeds 1.
    The role columns therefore subtract 0.2 from the Landsat values (the ``SR_B*`` columns
    stay as published). The Sentinel-2 TOA file's ``B11`` is about 100x too small (rock
    0.002 against 0.23 in ``B12``), so TOA rows have no ``swir1``.
    """
    import pandas as pd

    key = (sensor, kind)
    if key not in _SPECTRA_FILES:
        raise DataNotFoundError(
            f"No spectra for sensor={sensor!r}, kind={kind!r}. Valid: sensors "
            f"{sorted({s for s, _ in _SPECTRA_FILES})}, kinds ['training', 'validation']."
        )
    table = pd.read_csv(fetch(_SPECTRA_FILES[key]))
    cls = next(c for c in table.columns if c.lower() == "class")
    classes = SPECTRA_CLASSES if kind == "training" else VALIDATION_CLASSES
    table["surface"] = table[cls].map(classes)
    table = table[table["surface"].notna()].reset_index(drop=True)
    names = ({"blue": "SR_B2", "green": "SR_B3", "red": "SR_B4", "nir": "SR_B5",
              "swir1": "SR_B6", "swir2": "SR_B7"} if sensor == "landsat" else
             {"blue": "B2", "green": "B3", "red": "B4", "nir": "B8A", "swir1": "B11",
              "swir2": "B12"})
    if sensor == "sentinel2-toa":
        names.pop("swir1")  # the source's TOA B11 column is ~100x too small (rock 0.002)
    offset = -0.2 if sensor == "landsat" else 0.0
    for role, column in names.items():
        if column in table:
            table[role] = (table[column] + offset).astype("float32")
    table.attrs["source"] = SOURCES["spectra"]["source"]
    table.attrs["roles_offset"] = offset
    return table
