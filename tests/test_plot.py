"""The interactive hvplot views of glacierkit.plot, rendered to HTML by HoloViews (Bokeh) and,
for the curves, to PNG by HoloViews' matplotlib backend, as headless runs save them."""

import matplotlib
import numpy as np
import pandas as pd
import pytest
from bokeh.models import GlyphRenderer, HoverTool
from bokeh.plotting import figure

from conftest import make_scene

matplotlib.use("Agg")
hv = pytest.importorskip("holoviews")


@pytest.fixture
def scene_and_outlines():
    import geopandas as gpd
    from shapely.geometry import MultiPolygon, box

    scene, glacier = make_scene(height=80, width=60)
    left, bottom, right, top = scene.rio.bounds()
    mid = (left + right) / 2
    outlines = gpd.GeoDataFrame(
        {"RGIId": ["RGI60-11.00001", "RGI60-11.00002"], "Name": ["Planted", "Twin"],
         "area_km2": [1.2, 0.1]},
        geometry=[box(left, bottom, mid, top),
                  MultiPolygon([box(mid + 100, top - 400, mid + 300, top - 200),
                                box(mid + 400, top - 400, mid + 600, top - 200)])],
        crs=scene.rio.crs).to_crs("EPSG:4326")  # any CRS: the view reprojects
    return scene, glacier, outlines


def _html(view, tmp_path, name="view.html") -> str:
    path = tmp_path / name
    hv.save(view, str(path), backend="bokeh", resources="inline")
    text = path.read_text()
    assert "Bokeh" in text and len(text) > 10_000
    return text


def _flat(nested) -> list[float]:
    if np.ndim(nested) == 0:
        return [float(nested)]
    return [v for item in nested for v in _flat(item)]


def _glyphs(view) -> dict:
    """``{glyph type name: [its data source's data]}`` of the view rendered by Bokeh."""
    model = hv.render(view, backend="bokeh")
    glyphs = {}
    for r in model.select({"type": GlyphRenderer}):
        glyphs.setdefault(type(r.glyph).__name__, []).append(dict(r.data_source.data))
    return glyphs


def test_map_view_renders_composite_and_hoverable_outlines(scene_and_outlines, tmp_path):
    from glacierkit.plot import map_view

    scene, _, outlines = scene_and_outlines
    view = map_view(scene, outlines={"RGI outlines": outlines}, title="planted")
    glyphs = _glyphs(view)
    rgba = glyphs["ImageRGBA"][0]["image"][0]
    assert rgba.shape == (80, 60)  # rasterized, not upsampled: one screen cell per pixel here
    polys = glyphs["MultiPolygons"][0]
    assert list(polys["RGIId"]) == ["RGI60-11.00001", "RGI60-11.00002", "RGI60-11.00002"]
    xs = np.asarray(_flat(polys["xs"]))
    left, _, right, _ = scene.rio.bounds()  # reprojected to the scene's CRS (metres)
    assert left - 1 <= xs.min() and xs.max() <= right + 1
    model = hv.render(view, backend="bokeh")
    assert any("RGIId" in str(t.tooltips) for t in model.select({"type": HoverTool}))
    text = _html(view, tmp_path)
    assert "RGI60-11.00001" in text and "planted" in text


def test_error_view_classes_match_error_classes(scene_and_outlines, tmp_path):
    from glacierkit.indices import ndsi
    from glacierkit.metrics import ERROR_CODES, error_classes
    from glacierkit.plot import ERROR_COLOURS, error_view

    scene, glacier, outlines = scene_and_outlines
    index = ndsi(scene)
    labels = glacier.astype("float32")
    labels[:5] = np.nan  # no data: transparent
    view = error_view(index, labels, 0.3, outlines=outlines, title="errors")
    codes = _glyphs(view)["Image"][0]["image"][0]
    expected = error_classes(np.where(np.isnan(index.values), np.nan, index.values > 0.3), labels)
    for name, code in ERROR_CODES.items():
        assert (codes == code).sum() == (expected == code).sum(), name
    assert np.isnan(codes).sum() == 5 * 60
    assert (codes == ERROR_CODES["FP"]).sum() == 36  # the planted 6 x 6 lake
    text = _html(view, tmp_path)
    assert all(ERROR_COLOURS[k].lower() in text.lower() for k in ("TP", "FP", "FN"))
    assert '"FN"' in text and "errors" in text


def test_curve_views_render_to_html_and_png(tmp_path):
    from glacierkit.indices import ndsi
    from glacierkit.ndsi import threshold as th
    from glacierkit.plot import histogram_view, history_view, save_figure, sweep_view

    scene, glacier = make_scene()
    index, labels = ndsi(scene), glacier.astype("float32")
    hist = th.histogram(index, labels)
    table = th.sweep(index, labels, th.fine_grid())
    history = pd.DataFrame({"epoch": range(5), "loss": np.linspace(1, 0.2, 5),
                            "val_loss": np.linspace(1.1, 0.3, 5),
                            "accuracy": np.linspace(0.6, 0.95, 5),
                            "val_accuracy": np.linspace(0.55, 0.9, 5),
                            "val_iou": np.linspace(0.4, 0.8, 5), "val_kc": np.linspace(0.2, 0.7, 5)})
    open_figures = set(matplotlib.pyplot.get_fignums())
    views = {"hist": histogram_view(hist, marks={"Otsu": th.otsu(hist)}, title="NDSI"),
             "sweep": sweep_view(table, mark=0.3, title="sweep"),
             "history": history_view(history, best_epoch=3)}
    for name, view in views.items():
        _html(view, tmp_path, f"{name}.html")
        png = save_figure(view, tmp_path / f"{name}.png")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000, name
    text = _html(views["hist"], tmp_path)
    assert "glacier (labels)" in text and "Otsu 0." in text and "valley" in text
    assert "KC" in _html(views["sweep"], tmp_path)
    text = _html(views["history"], tmp_path)
    assert "validation (OA)" in text and "best (val accuracy)" in text and "val_kc" not in text
    assert len(views["history"]) == 3
    assert set(matplotlib.pyplot.get_fignums()) == open_figures  # PNG renderings were closed


def test_grid_keeps_each_views_axes(tmp_path):
    from glacierkit.indices import ndsi
    from glacierkit.ndsi import threshold as th
    from glacierkit.plot import grid, histogram_view

    scene, glacier = make_scene()
    small, _ = make_scene(height=16, width=12)
    views = [histogram_view(th.histogram(ndsi(s)), title=t) for s, t in ((scene, "big"), (small, "small"))]
    model = hv.render(grid(views, cols=2), backend="bokeh")
    tops = sorted(f.y_range.end for f in model.select({"type": figure}))
    assert tops[0] < tops[1] / 4  # the small scene's counts are not squashed by the big one's
    fig = hv.render(grid(views, cols=2), backend="matplotlib")
    ylims = sorted(ax.get_ylim()[1] for ax in fig.axes)
    assert ylims[0] < ylims[-1] / 4


def test_glacier_table_view_is_sortable_html(tmp_path):
    from bokeh.models import DataTable

    from glacierkit.plot import glacier_table_view

    df = pd.DataFrame({"RGIId": ["RGI60-11.01450", "RGI60-11.01238"],
                       "ref_area_km2": [80.123456, 16.5], "pred_area_km2": [78.9, 16.1]})
    view = glacier_table_view(df)
    assert "RGI60-11.01450" in _html(view, tmp_path)
    model = hv.render(view, backend="bokeh")
    (table,) = model.select({"type": DataTable})
    assert list(table.source.data["ref_area_km2"]) == [80.123, 16.5]  # rounded for display
    assert [c.field for c in table.columns] == list(df.columns) and table.sortable


def test_methods_error_grid_draws_four_panels_per_scene():
    from glacierkit import indices
    from glacierkit.evaluate import NDSI_LEARNED, UNET
    from glacierkit.plot import methods_error_grid

    maps, oracle = {}, {}
    for i, name in enumerate(["a", "b"]):
        scene, glacier = make_scene(40, 30, seed=i)
        labels = scene.isel(band=0, drop=True).copy(data=glacier.astype("float32"))
        maps[name] = {"scene": scene, "labels": labels, "probability": labels * 0.9,
                      "ndsi": indices.ndsi(scene)}
        oracle[name] = 0.2 + i / 10
    fig = methods_error_grid(maps, {"unet": 0.5, "ndsi_learned": 0.4, "ndsi_oracle": oracle})
    axes = fig.axes
    assert len(axes) == 8
    titles = [ax.get_title() for ax in axes]
    assert titles[1] == UNET and titles[2].startswith(NDSI_LEARNED)
    assert titles[3] == "NDSI oracle (0.2)" and titles[7] == "NDSI oracle (0.3)"
    assert all(ax.images for ax in axes)  # every panel shows a raster


# ---------------------------------------------------------------- views scoped to their data
def _figures(view) -> dict:
    """``{title: bokeh figure}`` of a rendered view or layout."""
    model = hv.render(view, backend="bokeh")
    return {f.title.text: f for f in model.select({"type": figure})}


def _two_scene_views(outlines_beyond: bool = True):
    """Error views of two scenes 160 km apart (two per scene), with outlines that reach far
    beyond each scene, as RGI outlines of a whole glacier do beyond a crop."""
    import geopandas as gpd
    from shapely.geometry import box

    from glacierkit.indices import ndsi
    from glacierkit.plot import error_view

    views, bounds = [], {}
    for name, x0 in (("west", 400_000.0), ("east", 560_000.0)):
        scene, glacier = make_scene(40, 30, x0=x0)
        left, bottom, right, top = bounds[name] = scene.rio.bounds()
        reach = 5_000 if outlines_beyond else 0
        layers = {"RGI outlines": gpd.GeoDataFrame(
                      {"RGIId": [f"RGI-{name}"]}, crs=scene.rio.crs,
                      geometry=[box(left - reach, bottom - reach, (left + right) / 2, top + reach)]),
                  "U-Net outlines": gpd.GeoDataFrame(
                      {"RGIId": ["p"]}, crs=scene.rio.crs,
                      geometry=[box(left + 90, bottom + 90, left + 300, bottom + 300)])}
        idx = ndsi(scene)
        for t in (0.3, 0.5):
            views.append(error_view(idx, glacier.astype("float32"), t, outlines=layers,
                                    title=f"{name} {t}", scene_name=name))
    return views, bounds


def test_error_views_keep_to_their_scene_and_link_only_within_it():
    """The issue's blank panels: four maps of two scenes 160 km apart shared one x range.
    Now each view's ranges lie within its scene's bounds (outlines are clipped to it), the
    two views of a scene pan together, and views of different scenes do not."""
    views, bounds = _two_scene_views()
    figs = _figures(hv.Layout(views).cols(2))
    assert len(figs) == 4
    for title, f in figs.items():
        left, bottom, right, top = bounds[title.split()[0]]
        assert left <= f.x_range.start < f.x_range.end <= right, (title, f.x_range.start)
        assert bottom <= f.y_range.start < f.y_range.end <= top, title
    assert figs["west 0.3"].x_range is figs["west 0.5"].x_range
    assert figs["west 0.3"].x_range is not figs["east 0.3"].x_range
    assert figs["east 0.3"].y_range is figs["east 0.5"].y_range


def test_legend_entries_are_the_outline_layers_in_their_colours():
    from bokeh.models import Legend

    from glacierkit.plot import OUTLINE_COLOURS, outline_colours

    views, _ = _two_scene_views()
    f = _figures(views[0])["west 0.3"]
    (legend,) = f.select({"type": Legend})
    items = {item.label.value: item.renderers[0].glyph.line_color for item in legend.items}
    assert items == {"RGI outlines": OUTLINE_COLOURS[0], "U-Net outlines": OUTLINE_COLOURS[1]}
    assert items == outline_colours(["RGI outlines", "U-Net outlines"])


def test_static_and_leaflet_maps_use_the_same_colours_and_name_them(scene_and_outlines):
    import geopandas as gpd
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex
    from pyproj import Transformer
    from shapely.geometry import box

    from glacierkit.plot import leaflet_map, outline_colours, show_composite

    scene, _, outlines = scene_and_outlines
    left, bottom, right, top = scene.rio.bounds()
    beyond = gpd.GeoDataFrame(geometry=[box(right - 300, bottom - 3000, right + 3000, top),
                                        box(right + 500, top + 500, right + 900, top + 900)],
                              crs=scene.rio.crs)  # one reaches into the scene, one misses it
    layers = {"RGI outlines": pd.concat([outlines, beyond.to_crs(outlines.crs)]),
              "U-Net outlines": outlines.iloc[:1]}
    colours = outline_colours(layers)
    ax = show_composite(scene, outlines=layers)
    legend = {t.get_text(): to_hex(h.get_color()) for t, h in
              zip(ax.get_legend().get_texts(), ax.get_legend().legend_handles, strict=True)}
    assert legend == colours
    drawn = {to_hex(c.get_edgecolor()[0]) for c in ax.collections}
    assert drawn == set(colours.values())
    plt.close(ax.figure)
    pytest.importorskip("leafmap")
    import warnings

    filters = list(warnings.filters)
    m = leaflet_map(scene, layers)
    assert warnings.filters == filters  # leafmap's "ignore every warning" does not stay
    styles = {layer.name: layer.style["color"] for layer in m.layers
              if getattr(layer, "name", "") in layers}
    assert styles == colours
    # the outlines are clipped to the scene, as in the other views: nothing drawn outside it
    to_ll = Transformer.from_crs(scene.rio.crs, "EPSG:4326", always_xy=True)
    lons, lats = to_ll.transform([left, right, left, right], [bottom, bottom, top, top])
    rgi = next(layer for layer in m.layers if getattr(layer, "name", "") == "RGI outlines")

    def corners(c):
        return [c] if isinstance(c[0], float | int) else [p for part in c for p in corners(part)]

    points = np.array([p for f in rgi.data["features"] for p in corners(f["geometry"]["coordinates"])])
    eps = 1e-7
    assert points[:, 0].min() >= min(lons) - eps and points[:, 0].max() <= max(lons) + eps
    assert points[:, 1].min() >= min(lats) - eps and points[:, 1].max() <= max(lats) + eps
    assert len(rgi.data["features"]) == 3  # the two planted outlines and the reaching one
    legend_html = " ".join(getattr(getattr(c, "widget", None), "value", "") or "" for c in m.controls)
    for name, colour in colours.items():
        assert name in legend_html and colour.lstrip("#") in legend_html.lower()


def test_glacier_table_shows_its_keys_in_full():
    from bokeh.models import DataTable

    from glacierkit.plot import glacier_table_view

    df = pd.DataFrame({"RGIId": ["RGI50-11.E2203-1", "RGI50-11.B5616n-1"],
                       "ref_area_km2": [4.4484, 4.391], "area_difference_pct": [-7.2, 1.3],
                       "method": ["NDSI, threshold learned on train", "Deep U-Net"]})
    (table,) = hv.render(glacier_table_view(df), backend="bokeh").select({"type": DataTable})
    widths = {c.field: c.width for c in table.columns}
    # Bokeh's 12 px table font: at most 8 px per character, plus the cell padding
    assert widths["RGIId"] >= 8 * len("RGI50-11.B5616n-1")
    assert widths["area_difference_pct"] >= 8 * len("area_difference_pct")
    assert not table.fit_columns  # the widths hold; a wide table scrolls


def test_three_sweep_panels_fit_a_notebook():
    from glacierkit.indices import ndsi
    from glacierkit.ndsi import threshold as th
    from glacierkit.plot import sweep_view

    scene, glacier = make_scene()
    table = th.sweep(ndsi(scene), glacier.astype("float32"), th.fine_grid())
    figs = _figures(hv.Layout([sweep_view(table, title=str(i)) for i in range(3)]).cols(3))
    assert sum(f.width for f in figs.values()) <= 1100  # JupyterLab's cell at 1500 px
