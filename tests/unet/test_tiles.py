"""Tiles: cutting, filters, balancing, the blocked split, statistics, augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from conftest import make_scene
from glacierkit.exceptions import LeakySplitWarning, ParameterError
from glacierkit.unet import (
    Box,
    InputSpec,
    blocked_regions,
    dihedral,
    feature_stack,
    make_patches,
    pad_to_multiple,
    training_dataset,
    window_starts,
)

SPEC = InputSpec(("swir1", "nir", "blue"))


def _labels(glacier: np.ndarray, scene) -> xr.DataArray:
    return xr.DataArray(glacier.astype("float32"), dims=("y", "x"),
                        coords={"y": scene["y"], "x": scene["x"]})


@pytest.fixture
def scenes():
    out = {}
    for i, (h, w) in enumerate([(96, 80), (80, 64)]):
        scene, glacier = make_scene(h, w, seed=i)
        out[f"s{i}"] = (scene, _labels(glacier, scene))
    return out


def test_window_starts_cover_every_pixel():
    assert window_starts(10, 4, 3) == [0, 3, 6]
    assert window_starts(11, 4, 3) == [0, 3, 6, 7]
    assert window_starts(4, 4, 2) == [0]
    assert window_starts(3, 4, 2) == []
    for length, size, stride in [(100, 32, 16), (97, 32, 32), (128, 128, 64)]:
        covered = np.zeros(length, bool)
        for s in window_starts(length, size, stride):
            assert 0 <= s and s + size <= length
            covered[s:s + size] = True
        assert covered.all()


def test_blocked_regions_sides_and_errors():
    r = blocked_regions(600, 500, 128, 0.2, 128, "bottom")
    assert r["validation"] == Box(480, 600, 0, 500)
    assert r["train"] == Box(0, 352, 0, 500)
    r = blocked_regions(600, 500, 128, 0.2, 64, "left")
    assert r["validation"] == Box(0, 600, 0, 100) and r["train"] == Box(0, 600, 164, 500)
    r = blocked_regions(600, 500, 128, 0.2, 0, "top")
    assert r["validation"] == Box(0, 120, 0, 500) and r["train"] == Box(120, 600, 0, 500)
    # too small along the rows, large enough along the columns: the block turns right
    r = blocked_regions(200, 500, 128, 0.2, 128, "bottom")
    assert r["validation"] == Box(0, 200, 400, 500) and r["train"] == Box(0, 200, 0, 272)
    with pytest.raises(ParameterError, match="too small for the blocked split"):
        blocked_regions(200, 300, 128, 0.2, 128, "bottom")
    with pytest.raises(ParameterError, match="Unknown validation side"):
        blocked_regions(600, 500, 128, 0.2, 0, "middle")


def test_no_validation_pixel_inside_any_training_tile(scenes):
    p = make_patches(scenes, SPEC, patch_size=32, stride=8, val_fraction=0.25, gap=8)
    assert p.n_train > 0 and len(p.validation) == 2
    for name, (scene, _) in scenes.items():
        h, w = scene.sizes["y"], scene.sizes["x"]
        val = np.zeros((h, w), bool)
        for item in p.validation:
            if item.scene == name:
                val[item.box.slices()] = True
        tiles = p.catalogue[(p.catalogue.scene == name) & (p.catalogue.status == "kept")]
        assert len(tiles)
        for row, col in zip(tiles["row"], tiles["col"], strict=True):
            tile = np.zeros((h, w), bool)
            tile[row:row + 32, col:col + 32] = True
            assert not (tile & val).any()
            # and the gap holds: the tile is at least 8 rows above the validation block
            assert row + 32 + 8 <= np.argmax(val.any(axis=1))


def test_tiles_hold_the_right_pixels_normalized_with_training_stats(scenes):
    p = make_patches(scenes, SPEC, patch_size=32, stride=16, val_fraction=0.2, gap=0)
    feats = {n: feature_stack(s, SPEC).values for n, (s, _) in scenes.items()}
    # statistics: pixels of the training tiles only, each once
    pix = []
    for name, f in feats.items():
        cov = np.zeros(f.shape[1:], bool)
        for _, t in p.catalogue[p.catalogue.scene == name].iterrows():
            cov[t.row:t.row + 32, t.col:t.col + 32] = True
        pix.append(f[:, cov])
    pix = np.concatenate(pix, axis=1).astype("float64")
    np.testing.assert_allclose(p.spec.mean, pix.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(p.spec.std, pix.std(axis=1), rtol=1e-4)
    # the first tile of scene s1 is the normalized top-left corner, labels included
    first = int(np.flatnonzero(p.catalogue.scene.values == "s1")[0])
    raw = np.moveaxis(feats["s1"][:, :32, :32], 0, -1)
    expected = (raw - np.asarray(p.spec.mean)) / np.asarray(p.spec.std)
    np.testing.assert_allclose(p.x[first], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(p.y[first], scenes["s1"][1].values[:32, :32])
    assert p.w.min() == 1.0
    assert p.spec.patch_size == 32 and p.spec.channels == ("swir1", "nir", "blue")


def test_nodata_filter_and_glacier_balancing(scenes):
    scene, labels = scenes["s0"]
    labels = labels.copy()
    labels.values[:32, :32] = np.nan          # one tile entirely without labels
    scene = scene.copy()
    scene.values[:, 40:44, 60:] = np.nan      # a partial strip: NaN input, weight 0
    p = make_patches({"s0": (scene, labels)}, SPEC, patch_size=32, stride=32,
                     val_fraction=0.2, gap=0, max_nan_fraction=0.2,
                     min_glacier_fraction=0.5)
    cat = p.catalogue.set_index(["row", "col"])
    assert cat.loc[(0, 0), "status"] == "dropped: nodata"
    # the glacier is the left half: right-hand tiles hold none and are balanced away
    assert cat.loc[(0, 48), "status"] == "dropped: glacier fraction"
    assert cat.loc[(32, 0), "status"] == "kept"
    s = p.summary().set_index("scene")
    assert s.loc["s0", "kept"] == (cat.status == "kept").sum()
    assert s.loc["s0", "dropped_nodata"] == 1
    assert s.loc["s0", "dropped_low_glacier"] == (cat.status == "dropped: glacier fraction").sum()
    assert np.isfinite(p.x).all()  # NaN inputs become 0 after normalizing
    with pytest.raises(ParameterError, match="No training tile is left"):
        make_patches({"s0": (scene, labels)}, SPEC, patch_size=32, stride=32, gap=0,
                     min_glacier_fraction=1.1)


def test_random_split_warns_that_it_leaks(scenes):
    with pytest.warns(LeakySplitWarning, match="optimistic"):
        p = make_patches(scenes, SPEC, patch_size=32, stride=16, split="random",
                         val_fraction=0.25)
    assert (p.catalogue.split == "validation").sum() == len(p.validation)
    assert p.n_train + len(p.validation) == (p.catalogue.status == "kept").sum()
    assert all(v.x.shape == (32, 32, 3) for v in p.validation)


def test_pad_to_multiple_gives_padding_zero_weight(scenes):
    p = make_patches(scenes, SPEC, patch_size=32, stride=32, val_fraction=0.2, gap=0)
    item = p.validation[0]  # 19 x 80
    padded = pad_to_multiple(item, 16)
    assert padded.x.shape == (32, 80, 3) and padded.w.shape == (32, 80)
    assert padded.w.sum() == item.w.sum()
    np.testing.assert_array_equal(padded.x[:19], item.x)


def test_dihedral_gives_the_eight_distinct_symmetries():
    img = np.arange(9, dtype="float32").reshape(3, 3, 1)
    outs = [np.asarray(dihedral(img, k))[..., 0] for k in range(8)]
    assert len({o.tobytes() for o in outs}) == 8
    np.testing.assert_array_equal(outs[0], img[..., 0])
    np.testing.assert_array_equal(outs[1], np.rot90(img[..., 0]))
    np.testing.assert_array_equal(outs[4], np.fliplr(img[..., 0]))


def test_training_dataset_order_is_a_function_of_seed_and_epoch(scenes):
    p = make_patches(scenes, SPEC, patch_size=32, stride=16, val_fraction=0.2, gap=0)
    ds, steps = training_dataset(p, batch_size=4, seed=3, epochs=3)
    batches = list(ds.as_numpy_iterator())
    assert len(batches) == 3 * steps and steps == p.n_train // 4
    x, y, w = batches[0]
    assert x.shape == (4, 32, 32, 3) and y.shape == (4, 32, 32, 1) and w.shape == (4, 32, 32)
    # resuming at epoch 2 yields exactly the batches of epoch 2
    resumed = list(training_dataset(p, batch_size=4, seed=3, start_epoch=2,
                                    epochs=3)[0].as_numpy_iterator())
    for a, b in zip(batches[2 * steps:], resumed, strict=True):
        for u, v in zip(a, b, strict=True):
            np.testing.assert_array_equal(u, v)
    # every tile is one of the 8 transforms of a training tile, with its label alongside
    originals = {}
    for i in range(p.n_train):
        for k in range(8):
            originals[np.asarray(dihedral(p.x[i], k)).tobytes()] = (i, k)
    seen_k = set()
    for xb, yb, _ in batches:
        for xi, yi in zip(xb, yb, strict=True):
            i, k = originals[xi.tobytes()]
            seen_k.add(k)
            np.testing.assert_array_equal(yi, np.asarray(dihedral(p.y[i][..., None], k)))
    assert len(seen_k) == 8
    # a new epoch is a new permutation
    first = [originals[x.tobytes()][0] for x in np.concatenate([b[0] for b in
                                                                 batches[:steps]])]
    second = [originals[x.tobytes()][0] for x in np.concatenate([b[0] for b in
                                                                  batches[steps:2 * steps]])]
    assert first != second and len(set(first)) == len(first)


def test_labels_on_another_grid_are_refused(scenes):
    scene, labels = scenes["s0"]
    with pytest.raises(ParameterError, match="Labels of 's0' have shape"):
        make_patches({"s0": (scene, labels[:-1])}, SPEC, patch_size=32, gap=0)
