import json

import numpy as np
import pytest

from conftest import make_scene
from glacierkit.evaluate import (
    area_error,
    block_counts,
    bootstrap_ci,
    comparison_table,
    error_map,
    evaluate_scene,
    failure_table,
    save_results,
    surface_classes,
    table4,
)
from glacierkit.metrics import Counts, confusion


def test_block_counts_sum_to_the_confusion_counts():
    rng = np.random.default_rng(1)
    ref = (rng.random((70, 45)) > 0.5).astype("float32")
    pred = (rng.random((70, 45)) > 0.4).astype("float32")
    ref[0, :5] = np.nan
    pred[3, 3] = np.nan
    blocks = block_counts(pred, ref, block=16)
    assert blocks.shape == (5 * 3, 4)  # partial edge blocks kept
    c = confusion(pred, ref)
    assert tuple(blocks.sum(axis=0).astype(int)) == (c.tp, c.fp, c.fn, c.tn)


def test_bootstrap_ci_brackets_the_estimate_and_pairs_methods():
    rng = np.random.default_rng(2)
    ref = (rng.random((128, 128)) > 0.5).astype("float32")
    good = np.where(rng.random(ref.shape) < 0.95, ref, 1 - ref)
    bad = np.where(rng.random(ref.shape) < 0.75, ref, 1 - ref)
    blocks = {"good": [block_counts(good, ref, 16)], "bad": [block_counts(bad, ref, 16)]}
    ci = bootstrap_ci(blocks, n_boot=300).set_index("method")
    for name, pred in (("good", good), ("bad", bad)):
        oa = float((pred == ref).mean())
        assert ci.loc[name, "OA_lo"] <= oa <= ci.loc[name, "OA_hi"]
        assert ci.loc[name, "OA_hi"] - ci.loc[name, "OA_lo"] < 0.05
    assert ci.loc["good", "KC_lo"] > ci.loc["bad", "KC_hi"]


def test_evaluate_scores_every_method_on_the_same_pixels():
    ref = np.zeros((40, 40), "float32")
    ref[:, :20] = 1
    a = ref.copy()
    b = ref.copy()
    b[:5, :] = np.nan  # b has nodata: those pixels are dropped for a as well
    a[:5, 20:] = 1      # a's errors sit only inside b's nodata
    results = evaluate_scene("s", ref, {"a": a, "b": b}, block=10)
    assert results[0].counts == results[1].counts == Counts(700, 0, 0, 700)
    table = comparison_table(results, n_boot=50)
    pooled = table[table.scene == "pooled"].set_index("method")
    assert pooled.loc["a", "KC"] == pytest.approx(1.0)
    t4 = table4(table)
    assert {"MA", "FA", "OA", "KC"} <= set(t4.columns)
    assert "paper: Deep U-Net" in set(t4.method)
    assert t4.set_index("method").loc["a", "OA"] == 100.0


def test_area_error():
    assert area_error(Counts(tp=80, fp=30, fn=20, tn=0)) == pytest.approx(10.0)
    assert np.isnan(area_error(Counts(0, 5, 0, 10)))


def test_error_map_codes():
    ref = np.array([[0, 1], [0, 1]], "float32")
    pred = np.array([[0, 1], [1, 0]], "float32")
    em = error_map(pred, ref)
    assert em.values.tolist() == [[0, 1], [2, 3]]
    pred[0, 0] = np.nan
    assert np.isnan(error_map(pred, ref).values[0, 0])


def test_surface_classes_find_the_planted_lake_and_ndsi_water_errors():
    scene, glacier = make_scene()
    classes = surface_classes(scene, glacier.astype("float32"))
    lake = np.zeros_like(glacier)
    lake[16:22, 36:42] = True
    assert classes["water"][lake].all() and not classes["water"][~lake].any()
    ndsi_pred = glacier | lake  # what NDSI does: calls the lake glacier
    ft = failure_table("syn", classes, glacier.astype("float32"), {"ndsi": ndsi_pred})
    water = ft[(ft.surface == "water")].iloc[0]
    assert water["FP"] == lake.sum() and water["FP % of class"] == 100.0


def test_save_results_writes_json_with_provenance(tmp_path):
    ref = np.zeros((20, 20), "float32")
    ref[:, :10] = 1
    table = comparison_table(evaluate_scene("s", ref, {"m": ref}, block=5), n_boot=20)
    path = save_results(tmp_path, table, {"model": "models/x.keras", "scenes": ["s"]})
    doc = json.loads(path.read_text())
    assert doc["provenance"]["model"] == "models/x.keras"
    assert doc["pooled"]["m"]["KC"] == pytest.approx(1.0)
    assert (tmp_path / "comparison.csv").is_file()


def test_score_methods_scores_the_three_methods_on_the_same_pixels():
    from glacierkit import NODATA, indices
    from glacierkit.evaluate import NDSI_LEARNED, NDSI_ORACLE, UNET, score_methods
    from glacierkit.ndsi import best_threshold, fine_grid, sweep

    scene, glacier = make_scene(80, 64, seed=5)
    index = indices.ndsi(scene)
    rng = np.random.default_rng(0)
    prob = np.clip(glacier + rng.normal(0, 0.3, glacier.shape), 0, 1).astype("float32")
    prob[:4] = np.nan  # U-Net nodata: excluded for every method
    labels = glacier.astype("uint8")
    labels[10:14] = NODATA  # unknown labels: excluded too
    scored = score_methods("s", prob, index, labels, unet_threshold=0.5, ndsi_threshold=0.3)
    oracle = best_threshold(sweep(index, labels, fine_grid()), "KC")
    assert scored.thresholds == {UNET: 0.5, NDSI_LEARNED: 0.3, NDSI_ORACLE: oracle}
    n = {r.method: r.counts.n for r in scored.results}
    assert len(set(n.values())) == 1 and n[UNET] == 80 * 64 - 8 * 64  # same pixels
    ok = np.isfinite(scored.reference)
    assert not ok[:4].any() and not ok[10:14].any()
    for r in scored.results:  # each result is the confusion of its map on those pixels
        assert r.counts == confusion(scored.maps[r.method], scored.reference)
    learned = scored.maps[NDSI_LEARNED]
    np.testing.assert_array_equal(learned[ok], (index.values > np.float32(0.3))[ok])
