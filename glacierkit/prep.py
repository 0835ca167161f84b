"""Data preparation (notebook 01): scenes and labels on one grid, written as COGs.

:func:`prepare_scenes` opens each scene, burns its outlines on the scene's exact grid and
writes ``<output_dir>/prepared/<scene>.tif`` (float32 reflectance, band descriptions =
band names) and ``<scene>_labels.tif`` (uint8: 1 glacier, 0 other, 255 no data), plus a
``manifest.csv`` that the later notebooks read with :func:`load_prepared`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ._util import NODATA, atomic_path, slug
from .data import samples as _data
from .exceptions import CorruptFileError, DataNotFoundError, NoOverlapError, ParameterError
from .io.clouds import CARRIED_ATTRS
from .io.scene import open_scene
from .io.stac import is_item
from .io.write import write_raster
from .labels import rasterize_outlines

log = logging.getLogger(__name__)

__all__ = ["prepare_scene", "prepare_scenes", "ensure_prepared", "scene_outlines", "load_manifest", "load_prepared"]



def sample_outlines(name: str):
    try:
        entry = _data.get_scene(name)
    except DataNotFoundError:
        return None
    return entry.outlines


def prepare_scene(scene: str, output_dir: str | os.PathLike, outlines=None, sensor=None,
                  all_touched: bool = False) -> dict:
    """Prepare one scene; return its summary row (see :func:`prepare_scenes`). A STAC item
    (URL) with ``outlines`` is read over the outlines only (plus a margin)."""
    if outlines is not None and is_item(str(scene)):
        from .io.stac import open_item

        da = open_item(str(scene), outlines=outlines)
    else:
        da = open_scene(scene, sensor=sensor or None)
    out = Path(output_dir) / "prepared"
    name = slug(scene)
    scene_path = write_raster(da, out / f"{name}.tif",
                              tags={k: da.attrs[k] for k in ("sensor", "product", "date",
                                                               "scene_id", *CARRIED_ATTRS)
                                    if da.attrs.get(k) is not None})
    valid = np.isfinite(da.values).all(axis=0)
    source = outlines or sample_outlines(scene)
    labels_path, fraction = None, float("nan")
    if source is not None:
        try:
            lab = rasterize_outlines(source, like=da, all_touched=all_touched)
        except NoOverlapError:
            if outlines:  # outlines the user gave must overlap: say so
                raise
            lab = None
        if lab is not None:
            fraction = float(lab.values[valid].mean()) if valid.any() else float("nan")
            stored = lab.where(valid, NODATA).astype("uint8")
            labels_path = write_raster(stored, out / f"{name}_labels.tif", dtype="uint8",
                                       nodata=NODATA, descriptions=["glacier"])
    if labels_path is None:  # no labels this time: none from an earlier run stay behind
        (out / f"{name}_labels.tif").unlink(missing_ok=True)
    res = da.rio.resolution()
    split = da.attrs.get("split", "")
    return {
        "scene": scene,
        "slug": name,
        "split": split,
        "sensor": da.attrs.get("sensor"),
        "level": da.attrs.get("level"),
        "level_from": da.attrs.get("level_from"),
        "date": da.attrs.get("date"),
        "bands": " ".join(str(b) for b in da["band"].values),
        "width": da.sizes["x"],
        "height": da.sizes["y"],
        "resolution_m": abs(res[0]),
        "crs": str(da.rio.crs),
        "glacier_fraction": round(fraction, 4),
        "valid_fraction": round(float(valid.mean()), 4),
        "scene_path": str(scene_path),
        "labels_path": str(labels_path) if labels_path else "",
    }


def prepare_scenes(scenes: Sequence[str], output_dir: str | os.PathLike, outlines=None,
                   sensor=None, all_touched: bool = False) -> pd.DataFrame:
    """Prepare several scenes with a progress bar and write ``prepared/manifest.csv``.

    Returns the summary table: size, resolution, CRS, glacier fraction, valid fraction and
    the paths of the written files.
    """
    from tqdm.auto import tqdm

    scenes = list(dict.fromkeys(str(s) for s in scenes))  # each scene once, in order
    manifest = Path(output_dir) / "prepared" / "manifest.csv"
    previous = load_manifest(output_dir) if manifest.is_file() else None
    _check_names(scenes, [] if previous is None else list(previous["scene"]), output_dir)
    rows = [prepare_scene(s, output_dir, outlines=outlines, sensor=sensor,
                          all_touched=all_touched)
            for s in tqdm(scenes, desc="preparing scenes", unit="scene")]
    table = pd.DataFrame(rows)
    if previous is not None:
        table_all = pd.concat([previous[~previous["scene"].isin(table["scene"])], table])
    else:
        table_all = table
    with atomic_path(manifest) as tmp:
        table_all.to_csv(tmp, index=False)
    return table


def _same_scene(a: str, b: str) -> bool:
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


def _check_names(scenes: Sequence[str], prepared: Sequence[str], output_dir) -> None:
    """Refuse scenes that would write the same ``prepared/<slug>.tif`` as another one (of
    this call or prepared before in ``output_dir``), as batch runs do."""
    owners: dict[str, str] = {}
    for s in [*prepared, *scenes]:
        owners.setdefault(slug(s), s)
    for s in scenes:
        name = slug(s)
        other = owners[name]
        if not _same_scene(other, s):
            where = "is already prepared there" if other in prepared else "is in the same list"
            raise ParameterError(
                f"The scenes {other!r} and {s!r} would both be written to "
                f"{Path(output_dir) / 'prepared' / (name + '.tif')} ({other!r} {where}). "
                "Rename one of the files, or prepare them into separate output_dir folders."
            )
        clash = owners.get(f"{name}_labels")
        if clash is not None and not _same_scene(clash, s):
            raise ParameterError(
                f"The scene {clash!r} would be written to prepared/{name}_labels.tif, the "
                f"labels file of {s!r}. Rename one of them or use separate output_dir folders."
            )


def load_manifest(output_dir: str | os.PathLike) -> pd.DataFrame:
    """The table written by :func:`prepare_scenes`."""
    manifest = Path(output_dir) / "prepared" / "manifest.csv"
    if not manifest.is_file():
        raise DataNotFoundError(
            f"No prepared scenes in {output_dir} (missing {manifest}). Run notebook "
            "01_data_prep (or glacierkit.prep.prepare_scenes) with this output_dir first."
        )
    try:
        table = pd.read_csv(manifest, keep_default_na=False)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise CorruptFileError(
            f"{manifest} is damaged ({type(exc).__name__}: {' '.join(str(exc).split())}). "
            "Delete it and run notebook 01_data_prep with this output_dir again."
        ) from None
    missing = {"scene", "slug", "sensor", "scene_path", "labels_path", "split"} - set(table)
    if missing:
        raise CorruptFileError(
            f"{manifest} lacks the columns {sorted(missing)}. Delete it and run notebook "
            "01_data_prep with this output_dir again."
        )
    return table


def load_prepared(output_dir: str | os.PathLike, scene: str,
                  bands: Sequence[str] | None = None) -> tuple[xr.DataArray, xr.DataArray | None]:
    """A prepared scene and its labels (float32: 1 glacier, 0 other, NaN no data).

    ``scene`` is the name given to :func:`prepare_scenes` (or its slug).
    """
    from .io.raster import open_raster

    table = load_manifest(output_dir)
    row = table[(table["scene"] == scene) | (table["slug"] == scene)]
    if row.empty:
        raise DataNotFoundError(
            f"Scene {scene!r} is not prepared in {output_dir}. Prepared: {list(table['scene'])}."
        )
    row = row.iloc[0]
    da = open_scene(row["scene_path"], sensor=row["sensor"] or None, bands=bands)
    da.attrs.update({"scene_id": row["scene"], "split": row["split"],
                     **_carried_tags(row["scene_path"])})
    labels = None
    if row["labels_path"]:
        raw = open_raster(row["labels_path"]).squeeze("band", drop=True)
        labels = raw.astype("float32").where(raw != NODATA)
        labels = labels.assign_coords(x=da["x"], y=da["y"])
        labels.name = "glacier"
        labels = labels.rio.write_crs(da.rio.crs)
    return da, labels


def _carried_tags(path) -> dict:
    """The processing level, STAC collection and cloud-mask record kept in a prepared
    file's tags (numbers back as numbers). ``source`` stays the prepared file itself."""
    import rasterio

    with rasterio.open(path) as src:
        tags = src.tags()
    out = {}
    for key in CARRIED_ATTRS:
        if key in tags and key != "source":
            try:
                out[key] = float(tags[key]) if key.endswith("fraction") else tags[key]
            except ValueError:
                out[key] = tags[key]
    return out


def scene_outlines(scene: str, outlines=None, like: xr.DataArray | None = None):
    """The outline polygons of a scene (its sample outlines unless ``outlines`` is given),
    clipped to ``like``'s bounds and in its CRS; ``None`` when there are none."""
    from shapely.geometry import box

    from .labels import read_outlines

    source = outlines or sample_outlines(scene)
    if source is None:
        return None
    gdf = read_outlines(source)
    if like is not None:
        gdf = gdf.to_crs(like.rio.crs)
        gdf = gdf[gdf.intersects(box(*like.rio.bounds()))]
    return gdf


def ensure_prepared(output_dir: str | os.PathLike, scenes: Sequence[str], **kwargs) -> pd.DataFrame:
    """Prepare those of ``scenes`` not yet in ``output_dir`` (so any notebook can run alone).

    Returns the manifest rows of ``scenes``.
    """
    manifest = Path(output_dir) / "prepared" / "manifest.csv"
    done = set(load_manifest(output_dir)["scene"]) if manifest.is_file() else set()
    todo = [s for s in scenes if s not in done]
    if todo:
        log.info("Preparing %d scene(s) first: %s", len(todo), todo)
        prepare_scenes(todo, output_dir, **kwargs)
    table = load_manifest(output_dir)
    return table[table["scene"].isin(list(scenes))].reset_index(drop=True)
