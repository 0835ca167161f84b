"""Training tiles: cut, filter, balance, split (spatially blocked), normalize, augment.

:func:`make_patches` turns ``(scene, labels)`` pairs into the arrays a U-Net trains on:

1. The model inputs come from :func:`glacierkit.unet.feature_stack` (bands by role
   plus extra index channels), the same function prediction uses.
2. **Spatially blocked split** (default). Each scene gives a validation *block*: a band of
   ``val_fraction`` of its rows (or columns) on one side. Training tiles are cut only from
   the rest, at least ``gap`` pixels away, so no validation pixel lies inside any training
   tile and nearby, strongly correlated pixels are not split between the two sets. The
   validation block is scored whole, each pixel once. The paper's random split of tiles is
   available (``split="random"``) but it leaks: overlapping tiles share pixels between
   training and validation, so it warns (:class:`LeakySplitWarning`).
3. Training tiles of ``patch_size`` are cut with ``stride`` (the last tile of a row or
   column is aligned to the region's edge so no pixel is left out). Tiles with more than
   ``max_nan_fraction`` no-data pixels are dropped, then the paper's balancing drops tiles
   whose glacier fraction is below ``min_glacier_fraction``. :meth:`Patches.summary` reports
   how many were kept and why the others were dropped.
4. Per-channel normalization statistics come from the pixels of the kept training tiles
   only (each pixel once) and go into the :class:`~glacierkit.unet.InputSpec` that is
   saved with the model.

:func:`training_dataset` then serves the tiles through ``tf.data`` with one of the 8
flips/rotations (the dihedral group of the square) drawn per tile on the fly. The order
and the augmentation of each epoch are pure functions of ``(seed, epoch)``, so a resumed
training sees exactly the batches it would have seen without the interruption.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from ..exceptions import AllNodataError, LeakySplitWarning, ParameterError
from .features import InputSpec, feature_stack, normalize

log = logging.getLogger(__name__)

__all__ = ["Box", "ValidationItem", "Patches", "window_starts", "blocked_regions", "make_patches", "channel_stats", "pad_to_multiple", "SPLITS", "SIDES"]

SPLITS = ("blocked", "random")
SIDES = ("bottom", "top", "left", "right")


@dataclass(frozen=True)
class Box:
    """A pixel window ``[row0, row1) x [col0, col1)``."""

    row0: int
    row1: int
    col0: int
    col1: int

    @property
    def height(self) -> int:
        return self.row1 - self.row0

    @property
    def width(self) -> int:
        return self.col1 - self.col0

    def slices(self) -> tuple[slice, slice]:
        return slice(self.row0, self.row1), slice(self.col0, self.col1)

    def intersects(self, other: Box) -> bool:
        return (self.row0 < other.row1 and other.row0 < self.row1
                and self.col0 < other.col1 and other.col0 < self.col1)


@dataclass
class ValidationItem:
    """One validation image: a whole block (blocked split) or one tile (random split)."""

    scene: str
    box: Box
    x: np.ndarray  # (h, w, channels), normalized, NaN -> 0
    y: np.ndarray  # (h, w), 0/1 (no data -> 0)
    w: np.ndarray  # (h, w), 1 valid, 0 no data


@dataclass
class Patches:
    """Everything training needs, from :func:`make_patches`.

    Attributes
    ----------
    spec
        The input contract with normalization statistics from the training tiles.
    x, y, w
        Training tiles: ``x`` (n, p, p, channels) normalized, ``y`` (n, p, p) 0/1 labels,
        ``w`` (n, p, p) pixel weights (0 where the label or an input is missing).
    validation
        Validation images (see :class:`ValidationItem`).
    catalogue
        One row per candidate tile: scene, row, col, split, nan_fraction,
        glacier_fraction, status (``kept`` or the reason it was dropped).
    regions
        ``{scene: {"train": Box, "validation": Box | None}}``.
    """

    spec: InputSpec
    x: np.ndarray
    y: np.ndarray
    w: np.ndarray
    validation: list[ValidationItem]
    catalogue: pd.DataFrame
    regions: dict[str, dict[str, Box | None]]
    split: str = "blocked"
    settings: dict = field(default_factory=dict)
    #: Raw reflectance tiles ``(n, s, s, roles)`` by :attr:`roles` (NaN kept), for
    #: augmentation in reflectance space; ``s`` >= patch size when tiles are zoomed.
    raw: np.ndarray | None = None
    roles: tuple[str, ...] = ()
    #: Per tile: the source scene's band medians (``normalization="scene"``) and its pixel
    #: size in metres.
    medians: np.ndarray | None = None
    resolution: np.ndarray | None = None

    @property
    def n_train(self) -> int:
        return int(self.x.shape[0])

    @property
    def scenes(self) -> list[str]:
        return list(self.regions)

    def summary(self) -> pd.DataFrame:
        """Tiles kept and dropped per scene (and in total), plus validation pixels."""
        cat = self.catalogue
        rows = []
        for scene in [*self.scenes, "total"]:
            c = cat if scene == "total" else cat[cat["scene"] == scene]
            tr = c[c["split"] == "train"]
            items = [v for v in self.validation if scene in ("total", v.scene)]
            rows.append({
                "scene": scene,
                "candidate_tiles": int(len(tr)),
                "kept": int((tr["status"] == "kept").sum()),
                "dropped_nodata": int((tr["status"] == "dropped: nodata").sum()),
                "dropped_low_glacier": int((tr["status"] == "dropped: glacier fraction").sum()),
                "glacier_fraction_kept": round(float(
                    tr.loc[tr["status"] == "kept", "glacier_fraction"].mean()), 4)
                if (tr["status"] == "kept").any() else float("nan"),
                "validation_items": len(items),
                "validation_pixels": int(sum(v.w.sum() for v in items)),
            })
        return pd.DataFrame(rows)


def window_starts(length: int, size: int, stride: int) -> list[int]:
    """Start offsets of windows of ``size`` every ``stride`` over ``length`` pixels.

    The last window is aligned to the end so every pixel is covered.

    >>> window_starts(10, 4, 3)
    [0, 3, 6]
    >>> window_starts(11, 4, 3)
    [0, 3, 6, 7]
    """
    if size > length:
        return []
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts


def blocked_regions(height: int, width: int, patch_size: int, val_fraction: float,
                    gap: int, side: str = "bottom", scene: str = "scene") -> dict[str, Box]:
    """The validation block and the training region of one scene (blocked split).

    The validation block is ``round(val_fraction * n)`` rows (``side`` top/bottom) or
    columns (left/right) on that side; the training region is the rest minus ``gap``. A
    scene too small along that axis but large enough along the other gets its block on the
    side turned by 90 degrees (bottom -> right, top -> left and back).
    """
    if side not in SIDES:
        raise ParameterError(f"Unknown validation side {side!r}. Valid: {list(SIDES)}.")
    along = height if side in ("top", "bottom") else width
    n_val = max(1, int(round(val_fraction * along)))
    n_train = along - n_val - gap
    turned = {"bottom": "right", "top": "left", "right": "bottom", "left": "top"}[side]
    other = width if side in ("top", "bottom") else height
    if n_train < patch_size and other - max(1, int(round(val_fraction * other))) - gap >= \
            patch_size:
        log.info("Scene %r (%d x %d px) is too small for a %s validation block; it gets a %s "
                 "one.", scene, height, width, side, turned)
        return blocked_regions(height, width, patch_size, val_fraction, gap, turned, scene)
    if n_train < patch_size:
        raise ParameterError(
            f"Scene {scene!r} ({height} x {width} px) is too small for the blocked split: "
            f"{n_val} validation + {gap} gap pixels leave {max(n_train, 0)} px on the {side} "
            f"axis for {patch_size}-px training tiles. Lower val_fraction, val_gap or "
            "patch_size, or put the validation block on the longer side (val_side)."
        )
    if side == "bottom":
        val, train = Box(height - n_val, height, 0, width), Box(0, n_train, 0, width)
    elif side == "top":
        val, train = Box(0, n_val, 0, width), Box(n_val + gap, height, 0, width)
    elif side == "right":
        val, train = Box(0, height, width - n_val, width), Box(0, height, 0, n_train)
    else:
        val, train = Box(0, height, 0, n_val), Box(0, height, n_val + gap, width)
    return {"train": train, "validation": val}


def channel_stats(stacks: list[np.ndarray], masks: list[np.ndarray]) -> tuple[list, list]:
    """Per-channel mean and std over the masked, finite pixels of ``(c, h, w)`` stacks."""
    n_ch = stacks[0].shape[0]
    total = np.zeros(n_ch)
    total_sq = np.zeros(n_ch)
    count = np.zeros(n_ch)
    for values, mask in zip(stacks, masks, strict=True):
        v = values[:, mask].astype("float64")
        ok = np.isfinite(v)
        v = np.where(ok, v, 0.0)
        total += v.sum(axis=1)
        total_sq += (v * v).sum(axis=1)
        count += ok.sum(axis=1)
    if not count.all():
        raise AllNodataError("The training tiles hold no valid pixel in some channel.")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean * mean, 0.0))
    return mean.tolist(), np.maximum(std, 1e-6).tolist()


def pad_to_multiple(item: ValidationItem, multiple: int) -> ValidationItem:
    """Pad a validation image to sizes divisible by ``multiple`` (a U-Net's ``2**depth``).

    Inputs are reflected; the padded pixels get weight 0, so they never count.
    """
    h, w = item.y.shape
    ph, pw = (-h) % multiple, (-w) % multiple
    if not ph and not pw:
        return item
    mode = "reflect" if ph < h and pw < w else "edge"
    x = np.pad(item.x, ((0, ph), (0, pw), (0, 0)), mode=mode)
    y = np.pad(item.y, ((0, ph), (0, pw)))
    wt = np.pad(item.w, ((0, ph), (0, pw)))
    return ValidationItem(item.scene, item.box, x, y, wt)


def _to_numpy(scene: xr.DataArray, labels, spec: InputSpec, name: str):
    """Features, labels (0/1, NaN unknown), valid mask, raw reflectance by role, medians."""
    from ..bands import select_bands
    from ..labels import reference
    from .features import scene_medians

    medians = scene_medians(scene, spec.bands) if spec.normalization == "scene" else None
    feats = feature_stack(scene, spec, medians=medians).values.astype("float32")
    lab = reference(labels)
    if lab.shape != feats.shape[1:]:
        raise ParameterError(
            f"Labels of {name!r} have shape {lab.shape}; the scene is {feats.shape[1:]}. "
            "Rasterize the outlines on the scene's grid (glacierkit.labels.rasterize_outlines)."
        )
    valid = np.isfinite(lab) & np.isfinite(feats).all(axis=0)
    raw = np.asarray(select_bands(scene, spec.roles).values, dtype="float32")
    try:
        res = float(abs(scene.rio.resolution()[0]))
    except Exception:  # noqa: BLE001 - no transform: resolution unknown
        res = float("nan")
    return feats, lab, valid, raw, medians, res


def make_patches(
    scenes: Mapping[str, tuple[xr.DataArray, object]],
    spec: InputSpec,
    *,
    patch_size: int = 128,
    stride: int = 64,
    max_nan_fraction: float = 0.1,
    min_glacier_fraction: float = 0.0,
    val_fraction: float = 0.2,
    gap: int = 128,
    side: str = "bottom",
    split: str = "blocked",
    seed: int = 42,
    tile_size: int | None = None,
    fixed_stats: bool = False,
    train_only: Sequence[str] = (),
) -> Patches:
    """Cut ``{name: (scene, labels)}`` into normalized training tiles and validation images.

    Parameters
    ----------
    scenes
        Scene name -> (scene DataArray ``(band, y, x)`` with a ``role`` coordinate, labels
        ``(y, x)``: 1 glacier, 0 other, NaN no data), e.g. from
        :func:`glacierkit.prep.load_prepared`.
    spec
        The input contract (bands by role, extra channels); its statistics are replaced.
    patch_size, stride
        Tile size and step in pixels. A stride below the tile size gives overlapping tiles.
    max_nan_fraction
        Drop tiles with a larger fraction of no-data pixels.
    min_glacier_fraction
        The paper's balancing: drop tiles whose glacier fraction (of valid pixels) is lower.
    val_fraction
        Fraction of each scene's rows/columns (blocked) or of the kept tiles (random) used
        for validation.
    gap
        Blocked split: pixels between the validation block and the nearest training tile.
    side
        Blocked split: where the validation block lies (bottom, top, left, right).
    split
        ``"blocked"`` (default) or ``"random"`` (the paper's; leaks, and warns so).
    seed
        Seeds the random split.
    tile_size
        Size of the stored training tiles (default ``patch_size``). Larger tiles let
        :func:`training_dataset` zoom (resolution augmentation): it cuts a window of the
        zoomed size from each and resamples it to ``patch_size``.
    fixed_stats
        Keep ``spec``'s normalization statistics (fine-tuning a model whose inputs are
        already normalized so) instead of computing them from the training tiles.
    train_only
        Scenes that give training tiles from all their pixels and no validation block
        (e.g. pseudo-labelled scenes for self-training, which must not pick the epoch).
    """
    if split not in SPLITS:
        raise ParameterError(f"Unknown split {split!r}. Valid: {list(SPLITS)}.")
    if not scenes:
        raise ParameterError("make_patches needs at least one (scene, labels) pair.")
    if fixed_stats and not spec.mean:
        raise ParameterError("fixed_stats=True needs an InputSpec with statistics.")
    given = spec
    spec = InputSpec(spec.bands, spec.extra, patch_size=patch_size,
                     normalization=spec.normalization)
    tile = int(tile_size or patch_size)
    if tile < patch_size:
        raise ParameterError(f"tile_size={tile} is smaller than patch_size={patch_size}.")
    records, tiles, val_items, regions = [], [], [], {}
    coverage: dict[str, np.ndarray] = {}
    arrays = {}
    for name, (scene, labels) in scenes.items():
        if labels is None:
            raise ParameterError(f"Scene {name!r} has no labels; training needs outlines.")
        arrays[name] = _to_numpy(scene, labels, spec, name)
        lab, valid = arrays[name][1], arrays[name][2]
        h, w = lab.shape
        if name in train_only:
            reg = {"train": Box(0, h, 0, w), "validation": None}
        elif split == "blocked":
            reg = blocked_regions(h, w, tile, val_fraction, gap, side, scene=name)
        else:
            reg = {"train": Box(0, h, 0, w), "validation": None}
        regions[name] = reg
        tr = reg["train"]
        for r in window_starts(tr.height, tile, stride):
            for c in window_starts(tr.width, tile, stride):
                box = Box(tr.row0 + r, tr.row0 + r + tile, tr.col0 + c, tr.col0 + c + tile)
                ok = valid[box.slices()]
                nan_fraction = 1.0 - float(ok.mean())
                glacier = float(lab[box.slices()][ok].mean()) if ok.any() else float("nan")
                if nan_fraction > max_nan_fraction:
                    status = "dropped: nodata"
                elif glacier < min_glacier_fraction:
                    status = "dropped: glacier fraction"
                else:
                    status = "kept"
                records.append({"scene": name, "row": box.row0, "col": box.col0,
                                "size": tile, "split": "train",
                                "nan_fraction": round(nan_fraction, 4),
                                "glacier_fraction": round(glacier, 4), "status": status})
                if status == "kept":
                    tiles.append((name, box))
        if split == "blocked" and reg["validation"] is not None:
            val_items.append((name, reg["validation"]))
    catalogue = pd.DataFrame.from_records(records)
    if split == "random":
        warnings.warn(
            "split='random' draws validation tiles at random from the same scenes: with "
            "overlapping tiles (stride < patch_size) validation pixels are also training "
            "pixels, and neighbours are strongly correlated, so validation scores are "
            "optimistic. Use split='blocked' for an honest estimate.",
            LeakySplitWarning, stacklevel=2)
        rng = np.random.default_rng(seed)
        n_val = int(round(val_fraction * len(tiles)))
        if n_val < 1 or n_val >= len(tiles):
            raise ParameterError(
                f"val_fraction={val_fraction} of {len(tiles)} kept tiles leaves no training or "
                "no validation tile. Change val_fraction or min_glacier_fraction."
            )
        chosen = set(rng.choice(len(tiles), size=n_val, replace=False).tolist())
        val_items = [t for i, t in enumerate(tiles) if i in chosen]
        tiles = [t for i, t in enumerate(tiles) if i not in chosen]
        val_keys = {(n, b.row0, b.col0) for n, b in val_items}
        is_val = [(s, r, c) in val_keys for s, r, c in
                  zip(catalogue["scene"], catalogue["row"], catalogue["col"], strict=True)]
        catalogue.loc[is_val, "split"] = "validation"
    if not tiles:
        raise ParameterError(
            f"No training tile is left ({len(catalogue)} candidates: "
            f"{catalogue['status'].value_counts().to_dict()}). Lower min_glacier_fraction, "
            "raise max_nan_fraction or use a smaller patch_size/stride."
        )
    if fixed_stats:
        spec = spec.with_stats(given.mean, given.std)
    else:
        for name, arr in arrays.items():
            valid = arr[2]
            cov = np.zeros(valid.shape, dtype=bool)
            for n, box in tiles:
                if n == name:
                    cov[box.slices()] = True
            coverage[name] = cov & valid
        names = [n for n in arrays if coverage[n].any()]
        mean, std = channel_stats([arrays[n][0] for n in names], [coverage[n] for n in names])
        spec = spec.with_stats(mean, std)

    n, c, nr = len(tiles), spec.n_channels, len(spec.roles)
    x = np.empty((n, tile, tile, c), dtype="float32")
    y = np.empty((n, tile, tile), dtype="float32")
    wt = np.empty((n, tile, tile), dtype="float32")
    raw = np.empty((n, tile, tile, nr), dtype="float32")
    medians = np.ones((n, len(spec.bands)), dtype="float32")
    resolution = np.empty(n, dtype="float32")
    for i, (name, box) in enumerate(tiles):
        feats, lab, valid, rw, med, res = arrays[name]
        x[i] = normalize(np.moveaxis(feats[:, box.row0:box.row1, box.col0:box.col1], 0, -1),
                         spec, axis=-1)
        raw[i] = np.moveaxis(rw[:, box.row0:box.row1, box.col0:box.col1], 0, -1)
        ok = valid[box.slices()]
        y[i] = np.where(ok, lab[box.slices()], 0.0)
        wt[i] = ok
        if med is not None:
            medians[i] = med
        resolution[i] = res
    validation = []
    for name, box in val_items:
        feats, lab, valid = arrays[name][:3]
        ok = valid[box.slices()]
        validation.append(ValidationItem(
            name, box,
            normalize(np.moveaxis(feats[:, box.row0:box.row1, box.col0:box.col1], 0, -1),
                      spec, axis=-1),
            np.where(ok, lab[box.slices()], 0.0).astype("float32"), ok.astype("float32")))
    settings = {"patch_size": patch_size, "stride": stride,
                "max_nan_fraction": max_nan_fraction,
                "min_glacier_fraction": min_glacier_fraction, "val_fraction": val_fraction,
                "gap": gap, "side": side, "split": split, "seed": seed}
    if tile != patch_size:
        settings["tile_size"] = tile
    out = Patches(spec, x, y, wt, validation, catalogue, regions, split, settings,
                  raw=raw, roles=spec.roles, medians=medians, resolution=resolution)
    s = out.summary().iloc[-1]
    log.info("tiles: %d candidates, %d kept, %d dropped for no data, %d for a glacier "
             "fraction below %s; %d validation images (%d pixels)", s["candidate_tiles"],
             s["kept"], s["dropped_nodata"], s["dropped_low_glacier"], min_glacier_fraction,
             s["validation_items"], s["validation_pixels"])
    return out
