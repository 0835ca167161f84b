"""Notebooks 02 and 03 run headlessly (papermill) on the prepared sample scenes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from conftest import (
    assert_views_can_render,
    holoviews_outputs,
    notebook_outputs,
    path_reprs,
    run_notebook,
)
from glacierkit import indices
from glacierkit.ndsi import threshold
from glacierkit.prep import load_prepared

pytestmark = [pytest.mark.notebook, pytest.mark.slow]

TRAIN, TEST = ["alps-s2/fiescher"], ["alps-s2/morteratsch"]


@pytest.fixture
def run_dir(tmp_path, prepared_alps):
    """A fresh output folder that sees the session's prepared scenes (absolute paths)."""
    (tmp_path / "prepared").mkdir()
    shutil.copy(Path(prepared_alps) / "prepared" / "manifest.csv", tmp_path / "prepared")
    return tmp_path


def test_notebook_03_learns_on_train_and_writes_its_tables(run_dir):
    nb = run_notebook("03_ndsi_threshold", run_dir, train_scenes=TRAIN, test_scenes=TEST,
                      grid_step=0.05, slider_scene="alps-s2/morteratsch", max_pixels=5000)
    assert len(holoviews_outputs(nb)) >= 2  # histograms and sweep curves (and the slider map)
    assert_views_can_render(nb)
    # the matplotlib figures are shown too (HoloViews' PNG rendering used to switch pyplot's
    # interactive mode off): the error maps and the slider's static figure
    assert len(notebook_outputs(nb, "image/png")) >= 2
    assert path_reprs(nb) == []  # no cell shows the path of the file it saved
    out = run_dir / "ndsi"
    for name in ("table4_train", "table4_test", "sweep_fine_train", "sweep_fine_test", "otsu",
                 "learned_vs_oracle", "water_called_glacier"):
        assert (out / f"{name}.csv").is_file(), name
    learned = json.loads((out / "threshold.json").read_text())
    assert {"threshold", "metric", "learned_on", "rule", "train_score"} <= set(learned)
    assert learned["learned_on"] == TRAIN and learned["metric"] == "KC"
    # The threshold comes from the training scene alone, on the notebook's grid.
    scene, labels = load_prepared(run_dir, TRAIN[0])
    table = threshold.sweep(indices.ndsi(scene), labels, threshold.fine_grid(0, 0.7, 0.05))
    assert learned["threshold"] == threshold.best_threshold(table, "KC")
    table4 = pd.read_csv(out / "table4_test.csv")
    assert sorted(table4["threshold"].unique()) == pytest.approx(list(threshold.paper_grid()))
    assert list(table4.columns) == ["scene", *threshold.COLUMNS]
    result = pd.read_csv(out / "learned_vs_oracle.csv")
    assert set(result["kind"]) == {"learned on train", "oracle"}
    for fig in ("03_ndsi_histograms", "03_ndsi_curves", "03_ndsi_error_maps",
                "03_ndsi_slider_static"):
        assert (run_dir / "figures" / f"{fig}.png").is_file()


def test_notebook_02_ranks_combinations_on_train(run_dir):
    nb = run_notebook("02_band_combinations", run_dir, train_scenes=TRAIN, test_scenes=TEST,
                      max_pixels=4000)
    combos = pd.read_csv(run_dir / "bands" / "combinations_train.csv")
    assert len(combos) == 20 and combos["paper"].sum() == 1
    single = pd.read_csv(run_dir / "bands" / "single_features_train.csv")
    assert {"ndsi", "swir1", "blue"} <= set(single["feature"])
    assert (run_dir / "figures" / "02_composites.png").is_file()
    assert "6-5-2 (swir1-nir-blue) ranks" in Path(nb).read_text()
