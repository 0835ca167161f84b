"""A live threshold slider: an error map and exact metrics that follow an ipywidgets slider.

:class:`ThresholdExplorer` makes one pass over the full-resolution pixels when it is built
(:func:`glacierkit.ndsi.class_histogram`), so the metrics for every threshold of the
grid are known exactly from then on: moving the slider only looks them up. The map is
drawn with HoloViews (Bokeh) on a display raster of at most ``max_pixels`` pixels
(every ``step``-th pixel of the scene in each direction), so an update re-colours at most
that many pixels, whatever the scene size.

In a live notebook the map and the metrics follow the slider. Headless (papermill, CI) the
cell still runs, and :meth:`ThresholdExplorer.static_figure` gives a matplotlib error map
for a chosen threshold.

Examples
--------
>>> explorer = ThresholdExplorer(ndsi, labels, threshold=0.3)  # doctest: +SKIP
>>> explorer  # the slider, the metrics and the map        # doctest: +SKIP
"""

from __future__ import annotations

import html

import numpy as np
import xarray as xr

from .._util import NODATA
from ..exceptions import ParameterError
from ..metrics import ERROR_CODES, error_classes
from ..ndsi import threshold as _threshold
from ..plot import ERROR_COLOURS, display_stride, show_error_map

__all__ = ["ThresholdExplorer"]

_CSS_CLASS = "gk-threshold-explorer"


def _rgba_lut() -> np.ndarray:
    lut = np.zeros((256, 4), dtype=np.uint8)
    for code, key in enumerate(("TN", "TP", "FP", "FN")):
        hexa = ERROR_COLOURS[key].lstrip("#")
        lut[code] = [int(hexa[i: i + 2], 16) for i in (0, 2, 4)] + [255]
    lut[NODATA] = [0, 0, 0, 0]
    return lut


class ThresholdExplorer:
    """Slide an index threshold and watch the error map and the exact metrics change.

    Parameters
    ----------
    index
        ``(y, x)`` index DataArray (e.g. :func:`glacierkit.indices.ndsi`), numpy or dask.
    labels
        Reference on the same grid (glacier where ``> 0``, NaN excluded).
    thresholds
        The slider's positions (default :func:`glacierkit.ndsi.fine_grid`).
    threshold
        Starting position (snapped to the nearest grid value; default: best KC).
    max_pixels
        Size limit of the display raster (the metrics always use every pixel).
    title
        Shown above the map.
    """

    def __init__(self, index, labels, thresholds=None, threshold: float | None = None,
                 max_pixels: int = 500_000, title: str | None = None):
        grid = np.asarray(thresholds if thresholds is not None else _threshold.fine_grid(),
                          dtype="float64")
        self.thresholds = np.unique(grid)
        self.table = _threshold.class_histogram(index, labels, self.thresholds).table(
            self.thresholds)
        self._rows = self.table.set_index("threshold")
        start = (_threshold.best_threshold(self.table, "KC") if threshold is None
                 else float(threshold))
        self.threshold = self.snap(start)
        self.title = title or (index.attrs.get("scene_id") if isinstance(index, xr.DataArray)
                               else "") or ""
        values = index.data if isinstance(index, xr.DataArray) else index
        shape = tuple(values.shape)
        if len(shape) != 2:
            raise ParameterError(f"The index must be 2-D (y, x); got shape {shape}.")
        self.stride = display_stride(shape, max_pixels)
        s = self.stride
        # Only the display raster is loaded (dask inputs stay lazy until here).
        self._index = np.ascontiguousarray(np.asarray(values[::s, ::s]))
        lab = labels.data if isinstance(labels, xr.DataArray) else labels
        self._labels = np.ascontiguousarray(np.asarray(lab[::s, ::s]))
        self._dtype = self._index.dtype.type if self._index.dtype.kind == "f" else np.float64
        self._nodata = np.isnan(self._index) if self._index.dtype.kind == "f" else None
        # Codes when not called glacier (TN 0 / FN 3) and when called glacier (FP 2 / TP 1).
        self._truth = error_classes(np.zeros(self._index.shape, bool), self._labels)
        if self._nodata is not None:
            self._truth[self._nodata] = NODATA
        flip = np.arange(256, dtype=np.uint8)
        flip[ERROR_CODES["TN"]], flip[ERROR_CODES["FN"]] = ERROR_CODES["FP"], ERROR_CODES["TP"]
        self._truth_pred = flip[self._truth]
        # Codes of both outcomes, precomputed: a move is one comparison and one select.
        self._lut = _rgba_lut().view(np.uint32).reshape(-1)
        if isinstance(index, xr.DataArray) and {"x", "y"} <= set(index.coords):
            xs, ys = index["x"].values, index["y"].values
        else:
            xs, ys = np.arange(shape[1], dtype=float), np.arange(shape[0], dtype=float)
        dx = (xs[1] - xs[0]) if xs.size > 1 else 1.0
        dy = (ys[1] - ys[0]) if ys.size > 1 else -1.0
        xs_d, ys_d = xs[::s], ys[::s]
        # Bounds of the display raster (a display pixel covers s x s scene pixels).
        left, right = xs_d[0] - dx / 2, xs_d[0] + (xs_d.size * s - 0.5) * dx
        top, bottom = ys_d[0] - dy / 2, ys_d[0] + (ys_d.size * s - 0.5) * dy
        self.bounds = (min(left, right), min(top, bottom), max(left, right), max(top, bottom))
        flipped = dy > 0  # HoloViews wants row 0 at the top
        self._top_no = self._truth[::-1] if flipped else self._truth
        self._top_yes = self._truth_pred[::-1] if flipped else self._truth_pred
        self._top_index = self._index[::-1] if flipped else self._index
        self._widget = None
        self._stream = None
        self.dmap = None

    # ----------------------------------------------------------------- pure, cheap updates
    def snap(self, value: float) -> float:
        """The grid threshold nearest to ``value``."""
        return float(self.thresholds[int(np.argmin(np.abs(self.thresholds - value)))])

    def metrics(self, threshold: float | None = None) -> dict:
        """Exact full-resolution counts and metrics at a grid threshold (a table lookup)."""
        t = self.snap(self.threshold if threshold is None else threshold)
        return {"threshold": t, **self._rows.loc[t].to_dict()}

    def codes(self, threshold: float | None = None) -> np.ndarray:
        """Error class codes (0 TN, 1 TP, 2 FP, 3 FN, 255 no data) on the display raster."""
        t = self._dtype(self.snap(self.threshold if threshold is None else threshold))
        return np.where(self._index > t, self._truth_pred, self._truth)

    def _top_codes(self, threshold: float) -> np.ndarray:
        """:meth:`codes` with the northernmost row first (what the map draws)."""
        t = self._dtype(self.snap(threshold))
        return np.where(self._top_index > t, self._top_yes, self._top_no)

    def rgba(self, threshold: float | None = None) -> np.ndarray:
        """The display raster as ``(y, x, 4)`` uint8 colours (:data:`ERROR_COLOURS`)."""
        out = self._lut[self.codes(threshold)]
        return out.view(np.uint8).reshape(out.shape + (4,))

    def metrics_html(self, threshold: float | None = None) -> str:
        """The metrics line shown under the slider."""
        m = self.metrics(threshold)

        def f(key):
            v = m[key]
            return "n/a" if not np.isfinite(v) else f"{v:.3f}"

        swatch = " ".join(
            f'<span style="background:{ERROR_COLOURS[k]};padding:0 6px;margin-left:6px">&nbsp;'
            f"</span> {k} {int(m[k]):,}" for k in ("TP", "FP", "FN", "TN"))
        return (f'<div class="gk-metrics" data-threshold="{m["threshold"]:.4f}">'
                f"<b>{html.escape(self.title)}</b> index &gt; <b>{m['threshold']:.2f}</b>: "
                f"MA {f('MA')} · FA {f('FA')} · OA {f('OA')} · <b>KC {f('KC')}</b> · "
                f"IoU {f('IoU')} · F1 {f('F1')}<br>{swatch}"
                f"<br><small>metrics from all {int(m['TP'] + m['FP'] + m['FN'] + m['TN']):,} "
                f"pixels; the map shows {self._sampling()}</small></div>")

    def _sampling(self) -> str:
        if self.stride == 1:
            return "every pixel"
        return f"one pixel in {self.stride} x {self.stride}"

    # ----------------------------------------------------------------- HoloViews + ipywidgets
    def _image(self, threshold):
        import holoviews as hv

        # One byte per pixel; the browser maps the four codes to the four colours.
        return hv.Image(self._top_codes(threshold), bounds=self.bounds, kdims=["x", "y"],
                        vdims=["error class"])

    def view(self):
        """The HoloViews DynamicMap of the error map, driven by a threshold stream."""
        import holoviews as hv

        if self.dmap is None:
            self._stream = hv.streams.Stream.define("Threshold", threshold=self.threshold)()
            colours = [ERROR_COLOURS[k] for k in ("TN", "TP", "FP", "FN")]
            self.dmap = hv.DynamicMap(self._image, streams=[self._stream]).opts(
                hv.opts.Image(cmap=colours, clim=(-0.5, 3.5), colorbar=False,
                              clipping_colors={"max": "#00000000", "NaN": "#00000000"},
                              title=f"{self.title}  TP / FP / FN", data_aspect=1,
                              frame_width=560, xformatter="%.0f", yformatter="%.0f"))
        return self.dmap

    def set_threshold(self, value: float) -> None:
        """Move to ``value`` (snapped to the grid): update the metrics and the map."""
        self.threshold = self.snap(value)
        if self._widget is not None:
            slider, metrics = self._widget.children[0], self._widget.children[1]
            if slider.value != self.threshold:
                slider.value = self.threshold  # its observer calls back here once
                return
            metrics.value = self.metrics_html()
        if self._stream is not None:
            self._stream.event(threshold=self.threshold)

    def widget(self):
        """The slider and the metrics line, as one ipywidgets box (the map is :meth:`view`)."""
        import ipywidgets as widgets

        if self._widget is not None:
            return self._widget
        slider = widgets.SelectionSlider(
            options=[(f"{t:.2f}", float(t)) for t in self.thresholds], value=self.threshold,
            description="threshold", continuous_update=True,
            layout=widgets.Layout(width="560px"))
        slider.add_class("gk-threshold-slider")
        metrics = widgets.HTML(self.metrics_html())
        metrics.add_class("gk-metrics-box")
        box = widgets.VBox([slider, metrics])
        box.add_class(_CSS_CLASS)
        self._widget = box
        slider.observe(lambda change: self.set_threshold(change["new"]), names="value")
        return box

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget())
        display(self.view())

    # ----------------------------------------------------------------- headless
    def static_figure(self, index: xr.DataArray, labels: xr.DataArray,
                      threshold: float | None = None):
        """A matplotlib error map at ``threshold`` (for reports and headless runs)."""
        import matplotlib.pyplot as plt

        t = self.threshold if threshold is None else threshold
        fig, ax = plt.subplots(figsize=(6, 6))
        show_error_map(index, labels, t, ax=ax)
        m = self.metrics(t)
        ax.set_xlabel(f"KC {m['KC']:.3f}  OA {m['OA']:.3f}  IoU {m['IoU']:.3f}", fontsize=8)
        return fig
