"""The one-pass threshold sweep: exact against per-threshold thresholding, dask, Otsu, picking."""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from conftest import make_scene
from glacierkit import _kernels, indices
from glacierkit.exceptions import DataNotFoundError, ParameterError
from glacierkit.metrics import Counts, scores
from glacierkit.ndsi import threshold


def naive(index, labels, thresholds):
    """Per-threshold thresholding, the definition the sweep must reproduce count for count."""
    index = np.asarray(index)
    labels = np.asarray(labels, dtype="float64")
    ok = ~np.isnan(index) & ~np.isnan(labels)
    glacier, other = ok & (labels == 1), ok & (labels == 0)  # other label values: ignored
    rows = []
    for t in thresholds:
        pred = index > index.dtype.type(t)
        rows.append((np.count_nonzero(pred & glacier), np.count_nonzero(pred & other),
                     np.count_nonzero(~pred & glacier), np.count_nonzero(~pred & other)))
    return np.array(rows, dtype="int64")


def counts_of(table):
    return table[["TP", "FP", "FN", "TN"]].to_numpy()


def adversarial(n=300_000, seed=1, dtype="float32", thresholds=None):
    """Random values plus every threshold, its float neighbours, +-inf, NaN, -0.0."""
    rng = np.random.default_rng(seed)
    t = np.asarray(thresholds if thresholds is not None else threshold.fine_grid())
    x = rng.uniform(-1.2, 1.2, n).astype(dtype)
    tt = t.astype(dtype)
    big, small = np.array(2, dtype=dtype), np.array(-2, dtype=dtype)
    special = np.concatenate([tt, np.nextafter(tt, big), np.nextafter(tt, small),
                              np.array([np.inf, -np.inf, np.nan, -0.0, 0.0], dtype=dtype)])
    x[: special.size] = special
    x[special.size: 2 * special.size] = special  # twice, with other labels
    labels = (rng.random(n) > 0.45).astype("float32")
    labels[rng.random(n) < 0.02] = np.nan
    labels[special.size: 2 * special.size] = 1 - np.nan_to_num(labels[: special.size])
    return x, labels


# --------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("parallel", [True, False])
@pytest.mark.parametrize("grid", ["fine", "paper", "irregular", "negative", "tiny-step"])
def test_sweep_equals_per_threshold_counts(parallel, grid):
    thresholds = {
        "fine": threshold.fine_grid(),
        "paper": threshold.paper_grid(),
        "irregular": np.array([0.7, -0.35, 0.1, 0.123456, 0.1, 0.5, 0.33333]),
        "negative": threshold.fine_grid(-1.0, 1.0, 0.05),
        "tiny-step": np.array([0.3, 0.3 + 1e-8, 0.3 + 2e-8, 0.30000003]),
    }[grid]
    x, labels = adversarial(n=2_500_000 if parallel else 200_000, thresholds=thresholds)
    hist = threshold.class_histogram(x, labels, thresholds, parallel=parallel)
    table = hist.table(thresholds)
    np.testing.assert_array_equal(counts_of(table), naive(x, labels, thresholds))
    np.testing.assert_array_equal(table["threshold"].to_numpy(), np.asarray(thresholds, float))


def test_fast_and_general_kernels_agree():
    x, labels = adversarial(n=100_000)
    t = threshold.fine_grid()
    t32 = t.astype("float32")
    assert _kernels.grid_of(t32, t) is not None  # the fast path is used for the fine grid
    fast = _kernels.hist_index(x, labels, t32, t)
    general = _kernels._general(x, x[:1], False, True, labels, True, t32)
    np.testing.assert_array_equal(fast, general)


def test_float64_index_compared_in_float64():
    x, labels = adversarial(n=50_000, dtype="float64")
    t = threshold.fine_grid()
    table = threshold.sweep(x, labels, t)
    np.testing.assert_array_equal(counts_of(table), naive(x, labels, t))


def test_values_exactly_on_a_threshold_are_not_glacier():
    t32 = np.float32(0.3)
    x = np.array([t32, np.nextafter(t32, np.float32(1)), np.nextafter(t32, np.float32(0)),
                  0.3], dtype="float32")
    table = threshold.sweep(x, np.ones(4, dtype="float32"), [0.3])
    # float32(0.3) and 0.3 cast to float32 sit on the threshold; only the next float is above.
    assert table.loc[0, "TP"] == 1 and table.loc[0, "FN"] == 3
    assert "float32" in table.attrs["rule"]


def test_nan_in_index_or_labels_is_excluded():
    x = np.array([0.9, np.nan, 0.9, 0.1, 0.1], dtype="float32")
    labels = np.array([1, 1, np.nan, 0, 1], dtype="float32")
    row = threshold.sweep(x, labels, [0.5]).iloc[0]
    assert (row.TP, row.FP, row.FN, row.TN) == (1, 0, 1, 1)


@pytest.mark.parametrize("dtype", ["uint8", "float32", "float64", "int16"])
def test_labels_other_than_0_and_1_are_not_counted(dtype):
    """255 ("unknown"), 2, -1, 0.5 and NaN count in no class, in every kernel."""
    x, labels = adversarial(n=60_000, seed=4)
    rng = np.random.default_rng(5)
    odd = {"uint8": [255, 2, 7], "int16": [255, 2, -1],
           "float32": [255, 2, -1, 0.5, np.nan], "float64": [255, 2, -1, 0.5, np.nan]}[dtype]
    labels = np.nan_to_num(labels)
    pick = rng.random(labels.size) < 0.3
    labels[pick] = rng.choice(np.asarray(odd, dtype="float64"), pick.sum())
    labels = labels.astype(dtype)
    counted = (labels == 0) | (labels == 1)
    for t in (threshold.fine_grid(), np.array([0.7, -0.35, 0.123456])):  # fast, general
        table = threshold.sweep(x, labels, t)
        np.testing.assert_array_equal(counts_of(table), naive(x, labels, t))
        assert counts_of(table)[0].sum() == np.count_nonzero(counted & ~np.isnan(x))
        # the same as dropping those pixels
        np.testing.assert_array_equal(counts_of(table),
                                      counts_of(threshold.sweep(x[counted], labels[counted], t)))
    # the fused NDSI kernel and the dask path skip them too
    scene, glacier = make_scene(height=60, width=50, seed=3)
    lab = glacier.astype(dtype)
    lab[::7, ::3] = 255
    lab[1::9, ::2] = 2
    ref = threshold.sweep(indices.ndsi(scene), lab, threshold.fine_grid())
    ok = (lab == 0) | (lab == 1)
    assert ref[["TP", "FP", "FN", "TN"]].to_numpy()[0].sum() == np.count_nonzero(ok)
    pd.testing.assert_frame_equal(threshold.sweep_scene(scene, lab), ref)
    lazy = scene.chunk({"band": 1, "y": 17, "x": 31})
    pd.testing.assert_frame_equal(threshold.sweep_scene(lazy, da.from_array(lab, chunks=20)),
                                  ref)


def test_label_dtypes_bool_uint8_float_agree():
    x, labels = adversarial(n=20_000)
    labels = np.nan_to_num(labels)
    t = threshold.paper_grid()
    ref = counts_of(threshold.sweep(x, labels, t))
    for lab in (labels > 0, labels.astype("uint8"), labels.astype("float64")):
        np.testing.assert_array_equal(counts_of(threshold.sweep(x, lab, t)), ref)


def test_thresholds_in_any_order_with_duplicates():
    x, labels = adversarial(n=10_000)
    t = [0.5, 0.1, 0.5, 0.3]
    table = threshold.sweep(x, labels, t)
    assert list(table["threshold"]) == t
    np.testing.assert_array_equal(counts_of(table), naive(x, labels, t))


def test_columns_and_metrics_come_from_the_counts():
    x, labels = adversarial(n=10_000)
    table = threshold.sweep(x, labels, threshold.paper_grid())
    assert tuple(table.columns) == threshold.COLUMNS
    row = table.iloc[3]
    s = scores(Counts(int(row.TP), int(row.FP), int(row.FN), int(row.TN)))
    for key in ("MA", "FA", "OA", "KC", "IoU", "F1"):
        assert row[key] == pytest.approx(s[key])


def test_degenerate_thresholds_give_nan_metrics_not_errors():
    x = np.array([0.1, 0.2], dtype="float32")
    table = threshold.sweep(x, np.array([1, 0], dtype="float32"), [0.9])
    assert table.loc[0, "TP"] == 0 and np.isnan(table.loc[0, "FA"])


# --------------------------------------------------------------------------- planted scene
def test_planted_scene_glacier_and_lake():
    scene, glacier = make_scene()
    ndsi = indices.ndsi(scene)
    table = threshold.sweep(ndsi, glacier.astype("float32"), [0.3])
    row = table.iloc[0]
    assert row.TP == glacier.sum() and row.FN == 0
    assert row.FP == 36  # the 6 x 6 lake: NDSI calls water glacier
    water = indices.ndwi(scene) > 0.3
    res = threshold.water_as_glacier(ndsi, water, 0.3, labels=glacier.astype("float32"))
    assert res["water_pixels"] == 36 and res["water_called_glacier"] == 36
    assert res["water_outside_outlines_called_glacier"] == 36 and res["fraction"] == 1.0


def test_fused_scene_sweep_equals_sweep_of_ndsi():
    scene, glacier = make_scene(height=80, width=70, seed=3)
    values = scene.values.copy()
    rng = np.random.default_rng(0)
    values[:, :5] = rng.uniform(-0.05, 0.4, values[:, :5].shape)  # negative reflectance too
    green, swir1 = 1, 4
    values[green, 10, :10] = values[swir1, 10, :10] = 0.0  # zero denominators
    values[swir1, 11, :10] = -values[green, 11, :10]
    values[green, 12, :5] = np.nan
    scene = scene.copy(data=values)
    labels = glacier.astype("float32")
    labels[0, :] = np.nan
    t = threshold.fine_grid(-1, 1, 0.01)
    ref = threshold.sweep(indices.ndsi(scene), labels, t)
    pd.testing.assert_frame_equal(threshold.sweep_scene(scene, labels, t), ref)
    lazy = scene.chunk({"band": 1, "y": 23, "x": 31})
    pd.testing.assert_frame_equal(threshold.sweep_scene(lazy, labels, t), ref)
    wide = scene.astype("float64")
    pd.testing.assert_frame_equal(threshold.sweep_scene(wide, labels, t),
                                  threshold.sweep(indices.ndsi(wide), labels, t))


# --------------------------------------------------------------------------- dask
def test_dask_inputs_are_reduced_chunk_by_chunk(monkeypatch):
    x, labels = adversarial(n=120 * 150)
    x, labels = x.reshape(120, 150), labels.reshape(120, 150)
    t = threshold.fine_grid()
    ref = threshold.sweep(x, labels, t)
    seen = []
    original = _kernels.hist_index

    def spy(values, *args, **kwargs):
        seen.append(values.size)
        return original(values, *args, **kwargs)

    monkeypatch.setattr(_kernels, "hist_index", spy)
    lazy_x = xr.DataArray(da.from_array(x, chunks=(50, 70)), dims=("y", "x"))
    lazy_l = da.from_array(labels, chunks=(30, 150))  # different chunks: rechunked to match
    out = threshold.sweep(lazy_x, lazy_l, t)
    pd.testing.assert_frame_equal(out, ref)
    assert len(seen) == 9 and max(seen) == 50 * 70  # one small histogram per chunk


# --------------------------------------------------------------------------- histogram, Otsu
def bimodal(n=200_000, seed=0):
    rng = np.random.default_rng(seed)
    other = rng.normal(-0.1, 0.12, int(n * 0.4))
    ice = rng.normal(0.75, 0.08, n - other.size)
    x = np.concatenate([other, ice]).astype("float32")
    labels = np.concatenate([np.zeros(other.size), np.ones(ice.size)]).astype("float32")
    return x, labels


def test_histogram_finds_the_two_peaks_and_the_valley():
    x, labels = bimodal()
    h = threshold.histogram(x, labels)
    assert h.peaks[0] == pytest.approx(-0.1, abs=0.05)
    assert h.peaks[1] == pytest.approx(0.75, abs=0.05)
    assert h.peaks[0] < h.valley < h.peaks[1]
    assert 0.2 < h.valley < 0.55
    assert h.glacier.sum() + h.other.sum() == h.counts.sum() == x.size - h.below - h.above
    np.testing.assert_array_equal(h.glacier + h.other, h.counts)


def test_histogram_bins_are_open_on_the_left_and_exact():
    t = threshold.fine_grid(-1, 1, 0.01)
    x, _ = adversarial(n=50_000, thresholds=t)
    h = threshold.histogram(x)
    e = h.edges.astype("float32")
    expected = [np.count_nonzero((x > e[i]) & (x <= e[i + 1])) for i in range(e.size - 1)]
    np.testing.assert_array_equal(h.counts, expected)
    assert h.below == np.count_nonzero(x <= e[0])
    assert h.above == np.count_nonzero(x > e[-1])


def test_histogram_with_one_mode_has_no_valley():
    x = np.random.default_rng(0).normal(0.5, 0.05, 10_000).astype("float32")
    h = threshold.histogram(x)
    assert np.isnan(h.valley) and np.isnan(h.peaks[0])


def test_histograms_pool_by_addition():
    x, labels = bimodal()
    a = threshold.histogram(x[:1000], labels[:1000])
    b = threshold.histogram(x[1000:], labels[1000:])
    np.testing.assert_array_equal((a + b).counts, threshold.histogram(x, labels).counts)


def test_otsu_separates_a_bimodal_index():
    x, _ = bimodal()
    t = threshold.otsu(x)
    assert 0.2 < t < 0.5
    assert t == threshold.otsu(threshold.histogram(x))
    assert np.isnan(threshold.otsu(np.full(10, np.nan, dtype="float32")))


def test_otsu_matches_brute_force_between_class_variance():
    x, _ = bimodal(n=20_000, seed=5)
    h = threshold.histogram(x)
    c = h.centres
    counts = h.counts.astype("float64")
    counts[0] += h.below  # values outside the range count in the end bins
    counts[-1] += h.above
    between = {}
    for i in range(1, c.size):
        w0, w1 = counts[:i].sum(), counts[i:].sum()
        if w0 and w1:
            m0 = (counts[:i] * c[:i]).sum() / w0
            m1 = (counts[i:] * c[i:]).sum() / w1
            between[h.edges[i]] = w0 * w1 * (m0 - m1) ** 2
    assert between[threshold.otsu(h)] == pytest.approx(max(between.values()), rel=1e-9)


# --------------------------------------------------------------------------- choosing
def tables_for(values_by_scene):
    return {name: threshold.sweep(x, lab, threshold.fine_grid())
            for name, (x, lab) in values_by_scene.items()}


def test_best_threshold_maximises_and_refuses_ma_fa():
    x, labels = bimodal()
    table = threshold.sweep(x, labels, threshold.fine_grid())
    best = threshold.best_threshold(table, "KC")
    assert table.loc[table["threshold"] == best, "KC"].item() == table["KC"].max()
    with pytest.raises(ParameterError, match="MA"):
        threshold.best_threshold(table, "MA")


def test_learned_threshold_uses_only_training_scenes():
    rng = np.random.default_rng(0)
    x_train, l_train = bimodal(seed=1)
    x_test, l_test = bimodal(seed=2)
    tables = tables_for({"a": (x_train, l_train), "b": (x_test, l_test)})
    out = threshold.learned_vs_oracle(tables, ["a"], ["b"])
    learned = out.attrs["learned_threshold"]
    assert set(out["kind"]) == {"learned on train", "oracle"}
    assert (out.loc[out.kind == "learned on train", "threshold"] == learned).all()
    # Scrambling the test labels changes the test oracle but never the learned threshold.
    tables["b"] = threshold.sweep(x_test, rng.permutation(l_test), threshold.fine_grid())
    again = threshold.learned_vs_oracle(tables, ["a"], ["b"])
    assert again.attrs["learned_threshold"] == learned
    oracle_b = again[(again.scene == "b") & (again.kind == "oracle")].iloc[0]
    learned_b = again[(again.scene == "b") & (again.kind == "learned on train")].iloc[0]
    assert oracle_b.KC >= learned_b.KC


def test_learn_is_the_one_rule_and_saves_its_record(tmp_path):
    tables = tables_for({"a": bimodal(seed=1), "b": bimodal(seed=2), "c": bimodal(seed=3)})
    record = threshold.learn(tables, ["a", "b"], "KC", tmp_path, grid=[0, 0.7, 0.01])
    pooled = threshold.pool([tables["a"], tables["b"]])
    assert record["threshold"] == threshold.best_threshold(pooled, "KC")
    assert record["train_score"] == pooled["KC"].max()
    assert record == threshold.load_learned(tmp_path) and record["learned_on"] == ["a", "b"]
    # the test scene never moves it; learned_vs_oracle uses the same rule
    tables["c"] = threshold.sweep(*bimodal(seed=9), threshold.fine_grid())
    assert threshold.learn(tables, ["a", "b"])["threshold"] == record["threshold"]
    assert threshold.learned_vs_oracle(tables, ["a", "b"], ["c"]).attrs[
        "learned_threshold"] == record["threshold"]
    with pytest.raises(ParameterError, match="missing"):
        threshold.learn(tables, ["a", "zzz"])


def test_learned_threshold_reads_the_file_or_learns_on_the_prepared_scenes(tmp_path,
                                                                           monkeypatch):
    threshold.save_learned(tmp_path, 0.42, "KC", ["x"])
    got = threshold.learned_threshold(tmp_path, ["x"])
    assert got["threshold"] == 0.42 and got["source"].endswith("threshold.json")
    # without a file: the prepared training scenes are swept and learn() decides
    from glacierkit import prep

    scene, glacier = make_scene(60, 50, seed=4)
    labels = xr.DataArray(glacier.astype("float32"), dims=("y", "x"))
    monkeypatch.setattr(prep, "ensure_prepared", lambda *a, **k: None)
    monkeypatch.setattr(prep, "load_prepared", lambda out, name: (scene, labels))
    fresh = tmp_path / "fresh"
    got = threshold.learned_threshold(fresh, ["s"], grid=threshold.paper_grid())
    table = threshold.sweep(indices.ndsi(scene), labels, threshold.paper_grid())
    assert got["threshold"] == threshold.best_threshold(table, "KC")
    assert got["source"] == "learned now on s" and (fresh / threshold.LEARNED_FILE).is_file()


def test_stack_adds_pooled_rows():
    tables = tables_for({"a": bimodal(seed=1), "b": bimodal(seed=2)})
    long = threshold.stack(tables, pooled="both")
    assert list(dict.fromkeys(long["scene"])) == ["a", "b", "both"]
    np.testing.assert_array_equal(counts_of(long[long.scene == "both"]),
                                  counts_of(threshold.pool(list(tables.values()))))
    assert threshold.stack({}).empty


def test_pool_adds_counts():
    x, labels = bimodal()
    t = threshold.paper_grid()
    a, b = threshold.sweep(x[:500], labels[:500], t), threshold.sweep(x[500:], labels[500:], t)
    pd.testing.assert_frame_equal(threshold.pool([a, b]), threshold.sweep(x, labels, t))
    with pytest.raises(ParameterError):
        threshold.pool([a, threshold.sweep(x, labels, [0.1])])


def test_learned_file_round_trip(tmp_path):
    path = threshold.save_learned(tmp_path, np.float64(0.43), "KC", ["alps-s2/aletsch"],
                                  score=np.float32(0.7))
    assert path == tmp_path / "ndsi" / "threshold.json"
    data = threshold.load_learned(tmp_path)
    assert data["threshold"] == 0.43 and data["learned_on"] == ["alps-s2/aletsch"]
    assert {"threshold", "metric", "learned_on", "rule"} <= set(json.loads(path.read_text()))
    with pytest.raises(DataNotFoundError, match="03_ndsi_threshold"):
        threshold.load_learned(tmp_path / "elsewhere")


# --------------------------------------------------------------------------- bad input
def test_bad_input_names_the_problem():
    x = np.zeros((4, 5), dtype="float32")
    with pytest.raises(ParameterError, match=r"\(4, 5\)"):
        threshold.sweep(x, np.zeros((5, 4)), [0.1])
    with pytest.raises(ParameterError, match="non-empty"):
        threshold.sweep(x, np.zeros((4, 5)), [])
    with pytest.raises(ParameterError, match="finite"):
        threshold.sweep(x, np.zeros((4, 5)), [0.1, np.nan])
    with pytest.raises(ParameterError, match="histogram"):
        threshold.sweep(x, None, [0.1])
    with pytest.raises(ParameterError, match="step"):
        threshold.fine_grid(0, 1, 0)
    with pytest.raises(ParameterError, match="Valid"):
        threshold.sweep_scene(make_scene()[0], np.zeros((64, 48)), [0.1], index="ndvi")


def test_grids():
    assert list(threshold.paper_grid()) == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    fine = threshold.fine_grid()
    assert fine.size == 71 and fine[0] == 0.0 and fine[-1] == 0.7 and fine[30] == 0.3


# --------------------------------------------------------------------------- real data
ALPS_ORACLE = {  # ../shared/data/README.md: best threshold, OA, KC, IoU (pixel-centre labels)
    "alps-s2/aletsch": (0.3, 0.857, 0.688, 0.799),
    "alps-s2/fiescher": (0.5, 0.879, 0.753, 0.807),
    "alps-s2/gorner": (0.7, 0.976, 0.789, 0.974),
    "alps-s2/morteratsch": (0.3, 0.805, 0.601, 0.709),
}


@pytest.mark.parametrize("scene_name", list(ALPS_ORACLE))
def test_alps_oracle_matches_the_data_readme(prepared_alps, scene_name):
    from glacierkit.prep import load_prepared

    scene, labels = load_prepared(prepared_alps, scene_name)
    table = threshold.sweep(indices.ndsi(scene), labels, threshold.paper_grid())
    best = threshold.best_threshold(table, "KC")
    row = table[table.threshold == best].iloc[0]
    t, oa, kc, iou = ALPS_ORACLE[scene_name]
    assert best == t
    assert (round(row.OA, 3), round(row.KC, 3), round(row.IoU, 3)) == (oa, kc, iou)


def test_alps_every_count_equals_per_threshold(prepared_alps):
    from glacierkit.prep import load_prepared

    scene, labels = load_prepared(prepared_alps, "alps-s2/aletsch")
    ndsi = indices.ndsi(scene)
    t = threshold.fine_grid(-1, 1, 0.01)
    expected = naive(ndsi.values, labels.values, t)
    np.testing.assert_array_equal(counts_of(threshold.sweep(ndsi, labels, t)), expected)
    np.testing.assert_array_equal(counts_of(threshold.sweep_scene(scene, labels, t)), expected)
    lazy = threshold.sweep(ndsi.chunk({"y": 128, "x": 128}), labels.chunk({"y": 200}), t)
    np.testing.assert_array_equal(counts_of(lazy), expected)
