"""Sentinel-2 product specifics.

:func:`s2_baseline` finds the processing baseline (``"04.00"`` and later add a -1000 DN
offset to L1C and L2A) from ``baseline=``, the file's metadata or the product name
(``..._N0400_...``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import rioxarray  # noqa: F401  (registers the .rio accessor)

from ..exceptions import (
    ParameterError,
)

_BASELINE_RE = re.compile(r"_N(\d{2})(\d{2})(?=[_.]|$)")


def s2_baseline(given, text: str, tags: Mapping[str, str], source) -> str | None:
    """The Sentinel-2 processing baseline (``"04.00"``) from ``baseline=``, the file's
    metadata or the product name (``..._N0400_...``); ``None`` when nothing says."""
    if given is not None:
        if not re.fullmatch(r"\d{1,2}\.\d{2}", str(given).strip()):
            raise ParameterError(
                f"baseline={given!r}: give the Sentinel-2 processing baseline as NN.NN, e.g. "
                "'04.00' (the product name's N0400) or '02.14'."
            )
        return str(given).strip()
    for key, value in tags.items():
        k = key.upper()
        if k in ("PROCESSING_BASELINE", "BASELINE"):
            m = re.search(r"(\d{1,2})\.?(\d{2})", str(value))
            if m:
                return f"{int(m.group(1)):02d}.{m.group(2)}"
        if k.startswith(("BOA_ADD_OFFSET", "RADIO_ADD_OFFSET")):
            try:  # the offset itself: -1000 from baseline 04.00 on
                return "04.00" if float(value) <= -1000 else "00.00"
            except ValueError:
                pass
    m = _BASELINE_RE.search(text.upper())
    if m:
        return f"{m.group(1)}.{m.group(2)}"
    return None
