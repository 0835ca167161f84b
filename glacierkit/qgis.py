"""QGIS layer styles (``.qml`` sidecars) so predictions open readable in QGIS.

QGIS loads ``<name>.qml`` beside ``<name>.tif`` as the layer's default style. The styles
follow the files' encodings (:func:`glacierkit.unet.write_prediction`): probability and
confidence are shown as 0..1 ramps (the uint8 files carry the scale 0.004, which GDAL and
QGIS apply), the mask as a two-class palette with "not glacier" transparent. Nodata (255 or
NaN) is declared in the files and so transparent.
"""

from __future__ import annotations

import os
from pathlib import Path
from xml.sax.saxutils import quoteattr

__all__ = ["STYLES", "raster_style", "write_style"]

#: Colour stops (value, colour, label) of each layer kind; ``paletted`` kinds are classes.
STYLES = {
    "probability": {"type": "ramp", "stops": [(0.0, "#5b4a3a", "0 not glacier"),
                                              (0.5, "#f2f2f2", "0.5"),
                                              (1.0, "#2166ac", "1 glacier")]},
    "confidence": {"type": "ramp", "stops": [(0.5, "#d7301f", "0.5 flips disagree"),
                                             (0.75, "#fdcc8a", "0.75"),
                                             (1.0, "#1a9850", "1 all agree")]},
    "mask": {"type": "paletted", "classes": [(0, "#000000", 0, "not glacier"),
                                             (1, "#4a90d9", 255, "glacier")]},
}

_HEAD = ("<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
         '<qgis version="3.28.0" styleCategories="Symbology">\n  <pipe>\n')
_TAIL = ('    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>\n'
         '    <huesaturation saturation="0" grayscaleMode="0" colorizeOn="0"/>\n'
         '    <rasterresampler maxOversampling="2"/>\n  </pipe>\n'
         "  <blendMode>0</blendMode>\n</qgis>\n")


def raster_style(kind: str) -> str:
    """The QML text of a one-band raster style: ``probability``, ``confidence`` or ``mask``."""
    from .exceptions import ParameterError

    if kind not in STYLES:
        raise ParameterError(f"No QGIS style {kind!r}; styles: {sorted(STYLES)}.")
    style = STYLES[kind]
    if style["type"] == "paletted":
        entries = "".join(
            f"        <paletteEntry value={quoteattr(str(v))} color={quoteattr(c)} "
            f"alpha={quoteattr(str(a))} label={quoteattr(lab)}/>\n"
            for v, c, a, lab in style["classes"])
        body = ('    <rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1" '
                'nodataColor="">\n      <rasterTransparency/>\n      <colorPalette>\n'
                f"{entries}      </colorPalette>\n    </rasterrenderer>\n")
    else:
        stops = style["stops"]
        lo, hi = stops[0][0], stops[-1][0]
        items = "".join(
            f"            <item value={quoteattr(repr(float(v)))} color={quoteattr(c)} "
            f'alpha="255" label={quoteattr(lab)}/>\n' for v, c, lab in stops)
        body = (f'    <rasterrenderer type="singlebandpseudocolor" band="1" opacity="1" '
                f'alphaBand="-1" classificationMin="{lo}" classificationMax="{hi}" '
                'nodataColor="">\n      <rasterTransparency/>\n'
                "      <minMaxOrigin><limits>None</limits><extent>WholeRaster</extent>"
                "</minMaxOrigin>\n      <rastershader>\n"
                f'        <colorrampshader colorRampType="INTERPOLATED" classificationMode="1" '
                f'clip="0" minimumValue="{lo}" maximumValue="{hi}">\n'
                f"{items}        </colorrampshader>\n      </rastershader>\n"
                "    </rasterrenderer>\n")
    return _HEAD + body + _TAIL


def write_style(raster: str | os.PathLike, kind: str) -> Path:
    """Write ``raster``'s QGIS default style ``<stem>.qml`` beside it, atomically."""
    from ._util import atomic_path

    path = Path(raster).with_suffix(".qml")
    with atomic_path(path) as tmp:
        Path(tmp).write_text(raster_style(kind))
    return path
