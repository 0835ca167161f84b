"""Class separability: AUC and Jeffries-Matusita on planted distributions, band rankings."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_scene
from glacierkit.exceptions import AllNodataError, ParameterError
from glacierkit.ndsi import separability as sp


def brute_auc(values, y):
    pos, neg = values[y], values[~y]
    diff = pos[:, None] - neg[None, :]
    return ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / (pos.size * neg.size)


def test_auc_equals_pair_counting_with_ties():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 5, 300).astype(float)  # many ties
    y = rng.random(300) > 0.4
    assert sp.auc(values, y) == pytest.approx(brute_auc(values, y))


def test_auc_extremes():
    y = np.array([0, 0, 1, 1], dtype=bool)
    assert sp.auc([0.1, 0.2, 0.8, 0.9], y) == 1.0
    assert sp.auc([0.9, 0.8, 0.2, 0.1], y) == 0.0
    assert sp.auc([1, 1, 1, 1], y) == 0.5
    with pytest.raises(ParameterError, match="both classes"):
        sp.auc([1, 2], [1, 1])


def test_jm_matches_the_gaussian_formula():
    rng = np.random.default_rng(1)
    n = 400_000
    y = np.arange(n) < n // 2
    x = np.where(y, rng.normal(1.0, 0.5, n), rng.normal(0.0, 0.5, n))
    b = 1.0 ** 2 / (8 * 0.5 ** 2)  # equal variances: B = dm^2 / (8 s^2)
    assert sp.jeffries_matusita(x, y) == pytest.approx(2 * (1 - np.exp(-b)), abs=0.01)
    same = rng.normal(0, 1, n)
    assert sp.jeffries_matusita(same, y) == pytest.approx(0.0, abs=0.01)
    far = np.where(y, 100.0, 0.0) + rng.normal(0, 1, n)
    assert sp.jeffries_matusita(far, y) == pytest.approx(2.0, abs=1e-6)


def test_jm_and_lda_use_every_band_of_a_combination():
    rng = np.random.default_rng(2)
    n = 20_000
    y = rng.random(n) > 0.5
    useless = rng.normal(0, 1, (n, 2))
    useful = np.where(y, 2.0, 0.0) + rng.normal(0, 1, n)
    x = np.column_stack([useless, useful])
    assert sp.jeffries_matusita(x, y) > sp.jeffries_matusita(useless, y) + 0.5
    assert sp.lda_auc(x, y) > 0.9 > 0.6 > sp.lda_auc(useless, y)


def test_pixel_table_keeps_labelled_finite_pixels():
    scene, glacier = make_scene()
    labels = glacier.astype("float32")
    labels[:4] = np.nan
    table = sp.pixel_table(scene, labels, max_pixels=None)
    assert len(table) == labels.size - 4 * labels.shape[1]
    assert set(sp.OLI_ROLES) | {"ndsi", "ndwi", "red_swir_ratio", "glacier"} == set(table)
    assert len(sp.pixel_table(scene, labels, max_pixels=100)) == 100
    with pytest.raises(AllNodataError):
        sp.pixel_table(scene, np.full(labels.shape, np.nan))


def test_rankings_on_the_planted_scene():
    scene, glacier = make_scene(height=60, width=60, seed=4)
    table = sp.pixel_table(scene, glacier.astype("float32"))
    single = sp.rank_features(table)
    assert list(single["rank"]) == list(range(1, 10))
    swir1 = single.set_index("feature").loc["swir1"]
    assert swir1["glacier"] == "lower" and swir1["separability"] > 0.95  # lake is dark too
    combos = sp.rank_combinations(table)
    assert len(combos) == 20 and combos["bands"].is_unique
    assert combos["paper"].sum() == 1 and combos["true_colour"].sum() == 1
    paper = combos[combos.paper].iloc[0]
    assert paper["bands"] == "swir1-nir-blue" and paper["oli"] == "6-5-2"
    assert list(combos["rank_JM"]) == list(range(1, 21))
    assert (np.diff(combos["JM"]) <= 0).all()
    text = sp.describe_rank(combos)
    assert text.startswith(f"6-5-2 (swir1-nir-blue) ranks {paper['rank_JM']} of 20")
    assert "4-3-2" in sp.describe_rank(combos, ("red", "green", "blue"))


def test_oli_numbers_and_profiles():
    assert sp.oli_numbers(("swir1", "nir", "blue")) == "6-5-2"
    assert sp.oli_numbers(("red", "green", "blue")) == "4-3-2"
    scene, glacier = make_scene()
    prof = sp.spectral_profiles(scene, glacier.astype("float32"))
    assert len(prof) == 12
    ice = prof[(prof["class"] == "glacier")].set_index("role")
    rock = prof[(prof["class"] == "other")].set_index("role")
    assert ice.loc["green", "mean"] == pytest.approx(0.78, abs=0.01)
    assert ice.loc["swir1", "mean"] < rock.loc["swir1", "mean"]
    assert (ice["n"] == glacier.sum()).all()
