"""Fault suite, outlines: points and lines, invalid polygons, odd files and CRSs.

Rule: labels that are right (polygons burned on the scene's grid, repaired ones said so),
or a GlacierKitError naming the value and the fix. The input is never changed.
"""

from __future__ import annotations

import hashlib
import logging

import geopandas as gpd
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import GeometryCollection, LineString, Point, Polygon, box

from conftest import make_scene, write_scene
from glacierkit.exceptions import (
    GlacierKitError,
    MissingCRSError,
    NoOverlapError,
    OutlineGeometryError,
)
from glacierkit.labels import rasterize_outlines, read_outlines

X0, Y0, RES = 400_000.0, 5_100_000.0, 30.0  # make_scene's grid (EPSG:32632)


@pytest.fixture(scope="module")
def scene():
    return make_scene(40, 40)[0]


def _gdf(geoms, crs="EPSG:32632", ids=None):
    ids = ids or [f"G{i}" for i in range(len(geoms))]
    return gpd.GeoDataFrame({"RGIId": ids}, geometry=list(geoms), crs=crs)


def _cell(r0, c0, r1, c1):
    """A box covering pixel rows r0..r1-1 and columns c0..c1-1."""
    return box(X0 + c0 * RES, Y0 - r1 * RES, X0 + c1 * RES, Y0 - r0 * RES)


@pytest.mark.parametrize("bad", [Point(X0 + 100, Y0 - 100),
                                 LineString([(X0, Y0 - 50), (X0 + 900, Y0 - 50)]),
                                 GeometryCollection([Point(X0 + 5, Y0 - 5)])])
def test_points_and_lines_are_refused(scene, bad):
    gdf = _gdf([_cell(0, 0, 5, 5), bad])
    with pytest.raises(OutlineGeometryError, match=r"1 of the 2 outlines are not polygons.*G1"):
        rasterize_outlines(gdf, like=scene)


def test_collections_keep_their_polygons(scene):
    coll = GeometryCollection([_cell(0, 0, 4, 4), LineString([(X0, Y0), (X0 + 1, Y0 - 1)])])
    lab = rasterize_outlines(_gdf([coll]), like=scene)
    assert int(lab.sum()) == 16


def test_invalid_polygons_are_repaired_and_said_so(scene, caplog):
    # a bow-tie: two triangles meeting at a point (self-intersecting, invalid)
    x1, y1 = X0 + 20 * RES, Y0 - 20 * RES
    bowtie = Polygon([(X0, Y0), (x1, y1), (x1, Y0), (X0, y1)])
    assert not bowtie.is_valid
    gdf = _gdf([bowtie])
    wkb = gdf.to_wkb()
    with caplog.at_level(logging.WARNING, logger="glacierkit.labels"):
        lab = rasterize_outlines(gdf, like=scene)
    assert "make_valid" in caplog.text and "G0" in caplog.text
    # the repaired shape is the two triangles: half the 20 x 20 pixels, by symmetry
    assert abs(int(lab.sum()) - 200) <= 20
    assert gdf.to_wkb().equals(wkb)  # the caller's GeoDataFrame is unchanged


def test_polygons_with_no_area_left_are_dropped(scene, caplog):
    flat = Polygon([(X0, Y0 - 30), (X0 + 300, Y0 - 30), (X0 + 600, Y0 - 30)])  # zero area
    gdf = _gdf([_cell(0, 0, 2, 2), flat])
    with caplog.at_level(logging.WARNING, logger="glacierkit.labels"):
        lab = rasterize_outlines(gdf, like=scene)
    assert int(lab.sum()) == 4 and "dropped" in caplog.text


def test_outlines_without_crs_or_overlap(scene):
    with pytest.raises(MissingCRSError, match="set_crs"):
        rasterize_outlines(gpd.GeoDataFrame(geometry=[_cell(0, 0, 2, 2)]), like=scene)
    far = _gdf([box(0, 0, 10, 10)])
    with pytest.raises(NoOverlapError, match="bounds"):
        rasterize_outlines(far, like=scene)


def test_outlines_in_an_impossible_crs_position(scene):
    """Coordinates outside the CRS's domain (latitude 200) cannot be reprojected."""
    bad = _gdf([box(7.0, 200.0, 7.1, 200.1)], crs="EPSG:4326")
    with pytest.raises(GlacierKitError, match="no place in the scene's EPSG:32632"):
        rasterize_outlines(bad, like=scene)


@pytest.mark.parametrize("content", [b"", b"not a vector file", b"\x00" * 100])
def test_unreadable_outline_files(scene, tmp_path, content):
    path = tmp_path / "rgi.gpkg"
    path.write_bytes(content)
    with pytest.raises(GlacierKitError, match="rgi.gpkg"):
        rasterize_outlines(path, like=scene)
    assert path.read_bytes() == content


def test_shapefile_missing_its_companions(scene, tmp_path):
    _gdf([_cell(0, 0, 3, 3)]).to_file(tmp_path / "rgi.shp")
    (tmp_path / "rgi.shx").unlink()
    (tmp_path / "rgi.prj").unlink()
    try:
        lab = rasterize_outlines(tmp_path / "rgi.shp", like=scene)
    except GlacierKitError as exc:
        assert "rgi" in str(exc)
    else:  # GDAL rebuilds the .shx; without .prj there is no CRS, which must be refused
        pytest.fail(f"outlines without a CRS were accepted ({int(lab.sum())} px)")


def test_outline_file_is_not_modified(scene, tmp_path):
    path = tmp_path / "rgi.gpkg"
    x1, y1 = X0 + 10 * RES, Y0 - 10 * RES
    _gdf([Polygon([(X0, Y0), (x1, y1), (x1, Y0), (X0, y1)])]).to_file(path)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    rasterize_outlines(path, like=scene)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_prepare_with_point_outlines_is_refused_before_writing(tmp_path):
    from glacierkit.prep import prepare_scenes

    scene = write_scene(tmp_path / "s.tif")
    pts = tmp_path / "points.gpkg"
    _gdf([Point(X0 + 100, Y0 - 100)]).to_file(pts)
    with pytest.raises(OutlineGeometryError):
        prepare_scenes([str(scene)], tmp_path / "run", outlines=str(pts))
    assert not (tmp_path / "run" / "prepared" / "manifest.csv").exists()


coords = st.tuples(st.floats(-5, 45), st.floats(-5, 45))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rings=st.lists(st.lists(coords, min_size=3, max_size=7), min_size=1, max_size=4))
def test_generated_polygons_burn_or_fail_clearly(rings):
    """Random (often self-intersecting) polygons in pixel units: labels are 0/1 on the
    scene's grid, and every pixel centre inside the repaired polygons is glacier."""
    scene = make_scene(40, 40)[0]
    polys = [Polygon([(X0 + c * RES, Y0 - r * RES) for r, c in ring]) for ring in rings]
    gdf = _gdf(polys)
    wkb = gdf.to_wkb()
    try:
        lab = rasterize_outlines(gdf, like=scene)
    except (NoOverlapError, OutlineGeometryError):
        return
    except GlacierKitError as exc:  # any other refusal must still be a clear one
        assert str(exc)
        return
    finally:
        assert gdf.to_wkb().equals(wkb)
    values = np.unique(lab.values)
    assert set(values.tolist()) <= {0, 1} and lab.shape == (40, 40)
    fixed = read_outlines(gdf).geometry.union_all()
    ys, xs = np.nonzero(lab.values)
    from shapely import points

    centres = points(X0 + (xs + 0.5) * RES, Y0 - (ys + 0.5) * RES)
    assert all(fixed.buffer(1e-6).covers(p) for p in centres)
