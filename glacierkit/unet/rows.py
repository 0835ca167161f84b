"""Streaming a scene through the network by blocks of rows.

:class:`Rows` reads the bands the model needs a block of rows at a time (a background
thread reads ahead while the network works), computes the normalized features and the
nodata mask, and forgets each block once the last window that needs it is assembled, so a
full Landsat scene never sits in memory. :class:`GuardSample` keeps the strided sample the
domain-shift guard reads, taken from the same blocks (no second pass over the file).
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import rasterio
import xarray as xr
from rasterio._err import CPLE_BaseError

from ..exceptions import (
    CorruptFileError,
    UnknownBandError,
)
from .artifact import Predictor
from .features import InputSpec, feature_stack

log = logging.getLogger(__name__)

#: Rows read from a scene file per block (a multiple of common GeoTIFF tile heights).
BLOCK_ROWS = 256


# --------------------------------------------------------------------------- reading
def open_streaming(scene, block_rows: int) -> xr.DataArray:
    from ..io.scene import open_scene

    if isinstance(scene, xr.DataArray):
        return open_scene(scene)
    path = Path(str(scene)).expanduser()
    if path.exists():
        # A lazily opened file: one dask chunk per block of rows, all columns.
        return open_scene(path, chunks={"band": 1, "y": block_rows, "x": -1})
    return open_scene(scene)


def check_roles(scene: xr.DataArray, pred: Predictor) -> None:
    try:
        feature_stack(scene.isel(y=slice(0, 1), x=slice(0, 1)), pred.spec)
    except UnknownBandError as exc:
        names = [str(b) for b in scene["band"].values]
        roles = [str(r) for r in scene["role"].values] if "role" in scene.coords else []
        raise UnknownBandError(
            f"The model needs the bands {list(pred.spec.bands)} and extras "
            f"{list(pred.spec.extra)} by role, but the scene "
            f"({scene.attrs.get('sensor', 'unknown sensor')}) lacks one: {exc} The scene has "
            f"bands {names} with roles {roles}. Open the scene with all the bands the model "
            "needs (open_scene without bands=, or a file that includes them)."
        ) from exc


def _normalize_last(raw: np.ndarray, spec: InputSpec, dtype="float32") -> np.ndarray:
    """:func:`glacierkit.unet.normalize` of ``(C, ...)`` features, channel last (the
    same float32 operations, so the same values, with fewer passes over the block), stored
    as ``dtype`` (float32, or bfloat16 for a model that rounds its inputs to it anyway)."""
    shape = (raw.shape[0],) + (1,) * (raw.ndim - 1)
    norm = raw.astype("float32", copy=False) - np.asarray(spec.mean, dtype="float32").reshape(shape)
    norm /= np.asarray(spec.std, dtype="float32").reshape(shape)
    np.copyto(norm, 0.0, where=~np.isfinite(norm))  # NaN (nodata) and infinities: the mean
    out = np.empty(raw.shape[1:] + (raw.shape[0],), dtype=dtype)
    out[...] = np.moveaxis(norm, 0, -1)  # to bfloat16: rounded to nearest even, as TF casts
    return out


#: Roles an extra input channel is computed from (for the guard's sample of the bands).
_EXTRA_ROLES = {"ndsi": ("green", "swir1"), "ndwi": ("green", "nir")}


def band_indices(scene: xr.DataArray, spec: InputSpec, also: tuple[str, ...] = ()
                  ) -> list[int]:
    """Indices of the scene's bands that ``spec`` (its bands and the roles its extra
    channels are computed from) and ``also`` need: all bands for an unknown extra."""
    needed = set(spec.bands) | set(also)
    for extra in spec.extra:
        needed |= set(_EXTRA_ROLES.get(extra, ("*",)))
    names = [str(b) for b in scene["band"].values]
    roles = ([str(r) for r in scene["role"].values] if "role" in scene.coords
             else [""] * len(names))
    if "*" in needed:
        return list(range(len(names)))
    return [i for i, (n, r) in enumerate(zip(names, roles, strict=True))
            if n in needed or r in needed]


class GuardSample:
    """Every ``step``-th row and column of the bands the domain-shift guard reads, taken
    from the blocks prediction reads anyway: the guard then needs no second pass over the
    file (on a lazily opened scene a strided selection reads every block whole). The same
    pixels as ``scene.isel(y=::step, x=::step)``."""

    #: Roles the guard reads besides the model's (NDSI and the green reflectance).
    ROLES = ("green", "swir1")

    def __init__(self, step: int):
        self.step = int(step)
        self.parts: dict[int, np.ndarray] = {}

    def take(self, b: int, rows: slice, values: np.ndarray) -> None:
        """Keep the sampled rows and columns of block ``b`` (``values``: ``(band, r, W)``)."""
        first = -(-rows.start // self.step) * self.step  # the first sampled row of the block
        if first < rows.stop:
            self.parts[b] = values[:, first - rows.start:: self.step, :: self.step].copy()

    def scene(self, block_scene: xr.DataArray) -> xr.DataArray:
        """The sampled scene, with the coordinates of ``block_scene``'s strided selection."""
        sub = block_scene.isel(y=slice(None, None, self.step), x=slice(None, None, self.step))
        data = np.concatenate([self.parts[b] for b in sorted(self.parts)], axis=1)
        return sub.copy(data=data)


class Rows:
    """Normalized features (channel last) and the nodata mask of a scene, by blocks of rows.

    Blocks of ``block`` rows are computed once each (aligned to the dask chunks of a
    lazily opened scene), by a background thread ahead of need when ``prefetch`` (reading
    and feature computation then overlap the forward passes). Features are dropped with
    :meth:`forget` once copied into the last strip that needs them; the (small) nodata
    masks with :meth:`forget_nodata` once their rows are written.
    """

    def __init__(self, scene: xr.DataArray, spec: InputSpec, block: int, prefetch: bool = True,
                 sample: GuardSample | None = None, dtype="float32"):
        self.scene = scene
        self.dtype = dtype
        self.sample = sample
        self.spec = spec
        self.block = block
        self.height = scene.sizes["y"]
        self.n_blocks = max(1, math.ceil(self.height / block))
        self.cache: dict[int, Future] = {}
        self.masks: dict[int, np.ndarray] = {}
        self.n_bands = len(spec.bands)
        # Only the bands the features (and the guard's sample) need are read.
        self.bands = band_indices(scene, spec, GuardSample.ROLES if sample is not None else ())
        self.source = scene.isel(band=self.bands)
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="glacierkit-read") \
            if prefetch else None

    def _load(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Block ``b``: features ``(r, W, C)`` and nodata ``(r, W)``."""
        rows = slice(b * self.block, min((b + 1) * self.block, self.height))
        try:
            # one read of the bands in use, in this thread: the network keeps the other core
            # (dask's synchronous scheduler, given as the function: named by a string, dask
            # imports distributed to look for a client first)
            from dask.local import get_sync

            block = self.source.isel(y=rows).compute(scheduler=get_sync)
        except (rasterio.errors.RasterioError, CPLE_BaseError) as exc:
            source = self.scene.attrs.get("source") or self.scene.attrs.get("scene_id")
            raise CorruptFileError(
                f"Cannot read rows {rows.start}-{rows.stop} of {source} "
                f"({' '.join(str(exc).split())}). The file is corrupt or truncated: "
                "download or export it again."
            ) from exc
        raw = feature_stack(block, self.spec).values  # (C, r, W)
        nodata = np.isnan(raw[: self.n_bands]).any(axis=0)
        if self.sample is not None:
            self.sample.take(b, rows, np.asarray(block.values))
        return _normalize_last(raw, self.spec, self.dtype), nodata

    def _submit(self, b: int) -> Future:
        if b not in self.cache:
            if self.pool is None:
                fut: Future = Future()
                fut.set_result(self._load(b))
            else:
                fut = self.pool.submit(self._load, b)
            self.cache[b] = fut
        return self.cache[b]

    def _block(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        feats, nodata = self._submit(b).result()
        self.masks.setdefault(b, nodata)
        return feats, nodata

    def forget(self, row: int) -> None:
        """Drop the features of the blocks that end before ``row``."""
        for b in [k for k in self.cache if (k + 1) * self.block <= row]:
            self.masks.setdefault(b, self.cache[b].result()[1])
            del self.cache[b]

    def forget_nodata(self, row: int) -> None:
        """Drop the nodata masks of the blocks that end before ``row``."""
        for b in [k for k in self.masks if (k + 1) * self.block <= row]:
            del self.masks[b]

    def prefetch(self, lo: int, hi: int) -> None:
        """Start loading the blocks of rows ``[lo, hi)`` (clipped to the scene)."""
        hi = min(hi, self.height)
        for b in range(max(0, lo) // self.block, (hi - 1) // self.block + 1 if hi > 0 else 0):
            self._submit(b)

    def fill(self, out: np.ndarray, rows: np.ndarray) -> None:
        """``out[i] = features of scene row rows[i]`` (``out``: ``(len(rows), W, C)``),
        copying runs of consecutive rows as slices."""
        i, n = 0, len(rows)
        while i < n:
            b = int(rows[i]) // self.block
            feats, _ = self._block(b)
            r = int(rows[i]) - b * self.block
            j = i + 1
            d = int(rows[j] - rows[i]) if j < n else 1
            if d not in (1, -1):
                d = 1
            while j < n and int(rows[j]) - int(rows[j - 1]) == d and \
                    int(rows[j]) // self.block == b:
                j += 1
            stop = r + d * (j - i)
            out[i:j] = feats[r: (stop if stop >= 0 else None): d]
            i = j

    def nodata(self, lo: int, hi: int) -> np.ndarray:
        """The nodata mask of rows ``[lo, hi)``."""
        parts = []
        for b in range(lo // self.block, (hi - 1) // self.block + 1):
            nod = self.masks[b] if b in self.masks else self._block(b)[1]
            parts.append(nod[max(lo - b * self.block, 0): hi - b * self.block])
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def release_memory() -> None:
    """Give the freed row blocks and strips back to the operating system (glibc keeps freed
    heap memory otherwise, and a following write would count it twice; the same as dask's
    ``trim_memory``). Best effort: nothing happens where ``malloc_trim`` does not exist."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def rows_per_block(da: xr.DataArray, block_rows: int) -> int:
    if da.chunks is not None:
        ychunks = da.chunksizes.get("y", ())
        if ychunks:
            if ychunks[0] > 4 * block_rows:
                log.warning(
                    "The scene's dask chunks are %d rows high: each is read whole, which "
                    "needs more memory. Rechunk to about %d rows (scene.chunk(y=%d)) or pass "
                    "the file path.", ychunks[0], block_rows, block_rows)
            return int(ychunks[0])
    return int(block_rows)
