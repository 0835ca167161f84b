"""A real STAC API on 127.0.0.1 for the tests, over items built from the sample COGs.

:func:`build_items` turns Athabasca's three dates into the products a STAC API serves:

- ``LC08_L2SP_045024_20200816_02_T1`` (``landsat-c2-l2``, Earth Search style): uint16
  Collection 2 Level-2 DNs (``(reflectance + 0.2) / 2.75e-5``, 0 = fill) under common-name
  asset keys with ``raster:bands`` scale/offset, and a ``qa_pixel`` asset whose bits are a
  205 x 215 window of the **real** Landsat 8 ``QA_PIXEL`` file of the sample data (Everest,
  2013-05-03), placed on Athabasca's grid: real cloud, shadow and cirrus shapes.
- ``S2B_11UMT_20200909_0_L2A`` (``sentinel-2-l2a``, Earth Search Collection-1 style,
  processing baseline 05.00): DNs ``reflectance * 10000 + 1000`` with ``raster:bands`` offset
  -0.1, and a synthetic 60 m ``scl`` asset with a cloud, its shadow and cirrus planted over
  the glacier (while the scene's ``eo:cloud_cover`` says 4 %).
- ``S2A_11UMT_20200911_0_L2A`` (``sentinel-2-l2a``, Planetary Computer style: band-name
  asset keys ``B02`` ... ``SCL``, no ``raster:bands`` scale, baseline 02.14): DNs
  ``reflectance * 10000``, with a cloud planted on rock away from the glacier (scene cloud
  cover 30 %).

The ids follow the archives' naming; the items themselves are made for the tests.
:func:`serve_files` serves the COGs with HTTP range requests (``RangeHTTPServer``) and
:func:`serve_stac` the items with ``rustac serve`` (its in-memory backend), so the real
client code runs: search with paging, asset hrefs, and GDAL's COG reads over HTTP ranges.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

#: The real QA_PIXEL window transplanted onto the Landsat item (row, column of its corner):
#: 30 % of it obscured, mostly in its left half (cloud 14 %, shadow 11 %, cirrus 4 %).
QA_WINDOW = (1845, 1505)
L8_ID = "LC08_L2SP_045024_20200816_02_T1"
S2_CLOUDY_ID = "S2B_11UMT_20200909_0_L2A"
S2_CLEAR_ID = "S2A_11UMT_20200911_0_L2A"
OUTLINES = "athabasca"


def _cog(path: Path, values: np.ndarray, transform, crs: str, nodata) -> None:
    import rasterio

    profile = {"driver": "COG", "width": values.shape[1], "height": values.shape[0],
               "count": 1, "dtype": values.dtype.name, "crs": crs, "transform": transform,
               "nodata": nodata, "compress": "DEFLATE", "blocksize": 64}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(values, 1)


def _raw(name: str):
    """The sample scene's reflectance (band, y, x) and its grid."""
    from glacierkit import open_scene

    scene = open_scene(name)
    return scene, np.asarray(scene.values)


def _geometry(scene) -> tuple[dict, list[float]]:
    from pyproj import Transformer

    left, bottom, right, top = scene.rio.bounds()
    tr = Transformer.from_crs(scene.rio.crs, "EPSG:4326", always_xy=True)
    xs, ys = tr.transform([left, right, right, left], [bottom, bottom, top, top])
    ring = [[float(x), float(y)] for x, y in zip(xs, ys, strict=True)]
    ring.append(ring[0])
    return ({"type": "Polygon", "coordinates": [ring]},
            [min(xs), min(ys), max(xs), max(ys)])


def _disc(shape, centre, radius) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def _scl(refl: np.ndarray, cloud_at, shadow_at, cirrus_at) -> np.ndarray:
    """A synthetic SCL on the scene's grid: snow where NDSI > 0.4, else not vegetated,
    0 where the scene has no data; a cloud (9 core, 8 rim), its shadow (3) and cirrus (10)."""
    green, swir1 = refl[1], refl[4]
    with np.errstate(invalid="ignore", divide="ignore"):
        nd = (green - swir1) / (green + swir1)
    scl = np.where(nd > 0.4, 11, 5).astype("uint8")
    shape = scl.shape
    scl[_disc(shape, shadow_at, 22)] = 3
    scl[_disc(shape, cirrus_at, 14)] = 10
    scl[_disc(shape, cloud_at, 30)] = 8
    scl[_disc(shape, cloud_at, 20)] = 9
    scl[~np.isfinite(refl).all(axis=0)] = 0
    return scl


def build_items(folder: Path, base_url: str) -> list[dict]:
    """Write the assets into ``folder`` and return the three STAC items (dicts) whose
    asset hrefs point at ``base_url``."""
    import rasterio
    from affine import Affine

    from glacierkit import data

    folder.mkdir(parents=True, exist_ok=True)
    items = []
    # --- Landsat 8 Collection 2 Level-2, Earth Search style, with the real QA bits
    scene, refl = _raw("athabasca/l8-2020-08-16")
    crs, transform = "EPSG:32611", scene.rio.transform()
    geometry, bbox = _geometry(scene)
    assets = {}
    eo = {"blue": "SR_B2", "green": "SR_B3", "red": "SR_B4", "nir08": "SR_B5",
          "swir16": "SR_B6", "swir22": "SR_B7"}
    for i, (key, name) in enumerate(eo.items()):
        dn = np.where(np.isfinite(refl[i]), np.clip(np.rint((refl[i] + 0.2) / 2.75e-5), 1,
                                                     65535), 0).astype("uint16")
        _cog(folder / f"{L8_ID}_{name}.TIF", dn, transform, crs, 0)
        assets[key] = {"href": f"{base_url}/{L8_ID}_{name}.TIF",
                       "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                       "roles": ["data", "reflectance"],
                       "eo:bands": [{"name": name, "common_name": key}],
                       "raster:bands": [{"nodata": 0, "data_type": "uint16",
                                         "scale": 2.75e-05, "offset": -0.2}]}
    r0, c0 = QA_WINDOW
    with rasterio.open(data.fetch_product("landsat8-qa")) as src:
        qa = src.read(1, window=rasterio.windows.Window(c0, r0, refl.shape[2], refl.shape[1]))
    _cog(folder / f"{L8_ID}_QA_PIXEL.TIF", qa, transform, crs, 1)
    assets["qa_pixel"] = {"href": f"{base_url}/{L8_ID}_QA_PIXEL.TIF",
                          "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                          "roles": ["cloud", "cloud-shadow", "snow-ice", "water-mask"],
                          "raster:bands": [{"nodata": 1, "data_type": "uint16"}]}
    items.append(_item(L8_ID, "landsat-c2-l2", "2020-08-16T18:47:11Z", geometry, bbox,
                       {"platform": "landsat-8", "eo:cloud_cover": 12.0,
                        "landsat:correction": "L2SP", "proj:epsg": 32611,
                        "proj:shape": list(refl.shape[1:]),
                        "proj:transform": list(transform)[:6]}, assets))
    # --- Sentinel-2, the two dates: planted clouds over the glacier (09-09), on rock (09-11)
    labels = _glacier_centre(scene)
    for ident, name, when, style in (
            (S2_CLOUDY_ID, "athabasca/s2-2020-09-09", "2020-09-09T19:07:21Z", "earth-search"),
            (S2_CLEAR_ID, "athabasca/s2-2020-09-11", "2020-09-11T18:57:19Z", "planetary")):
        scene, refl = _raw(name)
        transform = scene.rio.transform()
        geometry, bbox = _geometry(scene)
        h, w = refl.shape[1:]
        if style == "earth-search":  # clouds on the glacier, a low scene cloud cover
            cy, cx = labels
            scl = _scl(refl, (cy, cx), (cy + 30, cx + 35), (cy - 35, cx - 30))
            offset, cloud_cover, baseline = 1000, 4.0, "05.00"
        else:  # clouds on rock in the south-east corner, a high scene cloud cover
            scl = _scl(refl, (h - 25, w - 25), (h - 10, w - 60), (h - 60, w - 10))
            offset, cloud_cover, baseline = 0, 30.0, "02.14"
        keys = (["blue", "green", "red", "nir08", "swir16", "swir22"] if style == "earth-search"
                else ["B02", "B03", "B04", "B8A", "B11", "B12"])
        names = ["B02", "B03", "B04", "B8A", "B11", "B12"]
        assets = {}
        for i, (key, band) in enumerate(zip(keys, names, strict=True)):
            dn = np.where(np.isfinite(refl[i]),
                          np.clip(np.rint(refl[i] * 10000 + offset), 1, 65535), 0).astype("uint16")
            _cog(folder / f"{ident}_{band}.tif", dn, transform, crs, 0)
            asset = {"href": f"{base_url}/{ident}_{band}.tif",
                     "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                     "roles": ["data", "reflectance"],
                     "eo:bands": [{"name": band, "common_name": key if style ==
                                   "earth-search" else None}]}
            if style == "earth-search":
                asset["raster:bands"] = [{"nodata": 0, "data_type": "uint16",
                                          "scale": 0.0001, "offset": -0.1}]
            assets[key] = asset
        coarse = scl[::2, ::2].copy()  # SCL at 60 m, twice the bands' pixel
        t60 = transform * Affine.scale(2)
        scl_key = "scl" if style == "earth-search" else "SCL"
        _cog(folder / f"{ident}_SCL.tif", coarse, t60, crs, 0)
        assets[scl_key] = {"href": f"{base_url}/{ident}_SCL.tif",
                           "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                           "roles": ["data"], "proj:shape": list(coarse.shape),
                           "proj:transform": list(t60)[:6]}
        props = {"platform": "sentinel-2b" if ident.startswith("S2B") else "Sentinel-2A",
                 "eo:cloud_cover": cloud_cover, "s2:processing_baseline": baseline,
                 "proj:epsg": 32611, "proj:shape": [h, w], "proj:transform": list(transform)[:6]}
        if style == "earth-search":
            props["earthsearch:boa_offset_applied"] = True
        items.append(_item(ident, "sentinel-2-l2a", when, geometry, bbox, props, assets))
    return items


def _glacier_centre(scene) -> tuple[int, int]:
    from glacierkit.labels import rasterize_outlines

    inside = rasterize_outlines(OUTLINES, like=scene).values == 1
    rows, cols = np.nonzero(inside)
    return int(np.median(rows)), int(np.median(cols))


def _item(ident, collection, when, geometry, bbox, props, assets) -> dict:
    return {"type": "Feature", "stac_version": "1.0.0",
            "stac_extensions": [
                "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
                "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
                "https://stac-extensions.github.io/raster/v1.1.0/schema.json"],
            "id": ident, "collection": collection, "geometry": geometry, "bbox": bbox,
            "properties": {"datetime": when, **props}, "links": [], "assets": assets}


# --------------------------------------------------------------------------- servers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 30.0) -> None:
    """Return once ``127.0.0.1:port`` accepts connections; fail if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with status {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not open port {port}") from None
            try:  # wait for the process to exit, or 50 ms, before the next attempt
                proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass


def serve_files(folder: Path) -> tuple[subprocess.Popen, str]:
    """Serve ``folder`` over HTTP with range requests (``python -m RangeHTTPServer``) on a
    port the system picks; returns the process and the base URL."""
    proc = subprocess.Popen([sys.executable, "-u", "-m", "RangeHTTPServer", "0", "--bind",
                             "127.0.0.1"], cwd=folder, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()  # "Serving HTTP on 127.0.0.1 port 40123 (...) ..."
    m = re.search(r"port (\d+)", line)
    if not m:
        proc.kill()
        raise RuntimeError(f"RangeHTTPServer did not say its port: {line!r}")
    port = int(m.group(1))
    wait_for_port(port, proc, "RangeHTTPServer")
    return proc, f"http://127.0.0.1:{port}"


def rustac() -> str:
    exe = Path(sys.executable).with_name("rustac")
    return str(exe) if exe.exists() else "rustac"


def serve_stac(items_file: Path) -> tuple[subprocess.Popen, str]:
    """``rustac serve`` (in-memory backend) over an ItemCollection file."""
    port = free_port()
    proc = subprocess.Popen([rustac(), "serve", str(items_file), "--create-collections",
                             "--addr", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "error"})
    wait_for_port(port, proc, "rustac serve")
    return proc, f"http://127.0.0.1:{port}"


class LocalStac:
    """The files server, the STAC API and the items, started together."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.assets = self.folder / "assets"
        self.assets.mkdir(parents=True, exist_ok=True)
        self.procs = []
        try:
            files, self.files_url = serve_files(self.assets)
            self.procs.append(files)
            self.items = build_items(self.assets, self.files_url)
            self.items_file = self.folder / "items.json"
            self.items_file.write_text(json.dumps({"type": "FeatureCollection",
                                                   "features": self.items}))
            api, self.url = serve_stac(self.items_file)
            self.procs.append(api)
        except BaseException:
            self.close()  # no server left behind
            raise

    def item_url(self, ident: str) -> str:
        coll = next(i["collection"] for i in self.items if i["id"] == ident)
        return f"{self.url}/collections/{coll}/items/{ident}"

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> None:  # pragma: no cover - a manual tool
    """Serve the test items until interrupted: ``python tests/stac_local.py [FOLDER]``."""
    import signal
    import tempfile

    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="stac-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop the servers on kill too
    stac = LocalStac(folder)
    print(f"STAC API: {stac.url}  (items: {', '.join(i['id'] for i in stac.items)})")
    print(f"try: glacierkit search --api {stac.url} --glaciers athabasca "
          "--predict models/unet_alps_s2.keras runs/local-stac", flush=True)
    try:
        stac.procs[-1].wait()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        stac.close()


if __name__ == "__main__":  # pragma: no cover
    main()
