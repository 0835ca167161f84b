"""The threshold explorer: exact metrics per move, display raster, colours, widget wiring."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from conftest import make_scene
from glacierkit import NODATA, indices
from glacierkit.exceptions import ParameterError
from glacierkit.metrics import ERROR_CODES, error_classes
from glacierkit.ndsi import ThresholdExplorer, threshold
from glacierkit.plot import ERROR_COLOURS, display_stride


@pytest.fixture
def planted():
    scene, glacier = make_scene(height=90, width=70, seed=2)
    ndsi = indices.ndsi(scene)
    labels = xr.DataArray(glacier.astype("float32"), dims=("y", "x"),
                          coords={"y": scene.y, "x": scene.x})
    labels[0, :5] = np.nan
    return ndsi, labels


def test_error_classes_codes():
    pred = np.array([1.0, 1.0, 0.0, 0.0, np.nan, 1.0])
    ref = np.array([1, 0, 1, 0, 1, np.nan], dtype="float32")
    np.testing.assert_array_equal(error_classes(pred, ref), [1, 2, 3, 0, 255, 255])
    assert ERROR_CODES == {"TN": 0, "TP": 1, "FP": 2, "FN": 3}


def test_display_stride_bounds_the_raster():
    assert display_stride((100, 100), 10_000) == 1
    s = display_stride((7800, 7700), 500_000)
    assert np.ceil(7800 / s) * np.ceil(7700 / s) <= 500_000
    assert np.ceil(7800 / (s - 1)) * np.ceil(7700 / (s - 1)) > 500_000
    with pytest.raises(ParameterError):
        display_stride((10, 10), 0)


def test_metrics_are_the_exact_sweep_at_every_position(planted):
    ndsi, labels = planted
    grid = threshold.fine_grid(-0.5, 0.95, 0.05)
    explorer = ThresholdExplorer(ndsi, labels, grid, threshold=0.3)
    table = threshold.sweep(ndsi, labels, grid)
    for _, row in table.iterrows():
        m = explorer.metrics(row.threshold)
        assert (m["TP"], m["FP"], m["FN"], m["TN"]) == (row.TP, row.FP, row.FN, row.TN)
    assert explorer.threshold == pytest.approx(0.3)
    assert explorer.snap(0.312) == pytest.approx(0.3)


def test_map_codes_and_colours_follow_the_threshold(planted):
    ndsi, labels = planted
    explorer = ThresholdExplorer(ndsi, labels, threshold.fine_grid(), max_pixels=1000)
    s = explorer.stride
    assert s > 1 and explorer.codes().size <= 1000
    for t in (0.0, 0.5, 0.7):
        v = ndsi.values[::s, ::s]
        expected = error_classes(np.where(np.isnan(v), np.nan, v > np.float32(t)),
                                 labels.values[::s, ::s])
        np.testing.assert_array_equal(explorer.codes(t), expected)
        rgba = explorer.rgba(t)
        assert rgba.shape == expected.shape + (4,) and rgba.dtype == np.uint8
        tp = expected == ERROR_CODES["TP"]
        hexa = ERROR_COLOURS["TP"].lstrip("#")
        if tp.any():
            assert tuple(rgba[tp][0][:3]) == tuple(int(hexa[i:i + 2], 16) for i in (0, 2, 4))
        assert (rgba[expected == NODATA][:, 3] == 0).all()
    assert not np.array_equal(explorer.codes(-0.9), explorer.codes(0.9))


def test_default_start_is_best_training_kc_and_html_names_the_threshold(planted):
    ndsi, labels = planted
    explorer = ThresholdExplorer(ndsi, labels)
    table = threshold.sweep(ndsi, labels, threshold.fine_grid())
    assert explorer.threshold == threshold.best_threshold(table, "KC")
    html = explorer.metrics_html(0.45)
    assert 'data-threshold="0.4500"' in html and "KC" in html and "TP" in html


def test_widget_moves_update_metrics_and_the_rendered_map(planted):
    pytest.importorskip("ipywidgets")
    hv = pytest.importorskip("holoviews")
    ndsi, labels = planted
    explorer = ThresholdExplorer(ndsi, labels, threshold.fine_grid(-1, 1, 0.01), threshold=0.2)
    box = explorer.widget()
    slider, metrics = box.children
    plot = hv.renderer("bokeh").get_plot(explorer.view())
    source = plot.handles["source"]
    before = np.array(source.data["image"][0]).copy()
    slider.value = -0.5  # what a user's drag does: the rock (NDSI -0.2) becomes FP
    assert explorer.threshold == pytest.approx(-0.5)
    assert 'data-threshold="-0.5000"' in metrics.value
    after = np.array(source.data["image"][0])
    assert not np.array_equal(before, after)
    explorer.set_threshold(0.31)  # programmatic moves drive the slider too
    assert slider.value == pytest.approx(0.31) and 'data-threshold="0.3100"' in metrics.value


def test_static_figure(planted):
    import matplotlib

    matplotlib.use("Agg")
    ndsi, labels = planted
    explorer = ThresholdExplorer(ndsi, labels, threshold=0.4)
    fig = explorer.static_figure(ndsi, labels)
    assert "KC" in fig.axes[0].get_xlabel()


def test_dask_index_gives_the_same_explorer(planted):
    ndsi, labels = planted
    grid = threshold.fine_grid()
    lazy = ThresholdExplorer(ndsi.chunk({"y": 30, "x": 30}), labels.chunk({"y": 40}), grid,
                             threshold=0.3, max_pixels=500)
    eager = ThresholdExplorer(ndsi, labels, grid, threshold=0.3, max_pixels=500)
    np.testing.assert_array_equal(lazy.codes(), eager.codes())
    assert lazy.metrics() == eager.metrics()


def test_static_error_map_of_a_large_scene_is_decimated(planted):
    import matplotlib

    matplotlib.use("Agg")
    from glacierkit.plot import show_error_map

    ndsi, labels = planted
    ax = show_error_map(ndsi, labels, 0.3, max_pixels=1000)
    assert ax.images[0].get_array().size <= 1000
    assert "1 in" in ax.get_legend().get_texts()[0].get_text()
