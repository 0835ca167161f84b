"""The benchmark across conditions: simulated top of atmosphere, offsets, pixel sizes, all
opened as users' files; and the committed model's worst case on one of them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, make_scene, save_untrained_model
from glacierkit.evaluate import (
    CONDITIONS,
    NDSI_LEARNED,
    UNET,
    Condition,
    benchmark,
    condition_scene,
    simulate_toa,
    worst,
)
from glacierkit.exceptions import ParameterError
from glacierkit.io.level import ATMOSPHERE

MODEL = ROOT / "models" / "unet_alps_s2.keras"


def test_simulated_toa_follows_the_atmosphere_table():
    scene, _ = make_scene(40, 30)
    toa = simulate_toa(scene, 1.0, seed=0, shape_jitter=0.0)
    roles = [str(r) for r in scene.role.values]
    for i, role in enumerate(roles):
        plo, phi, tlo, thi = ATMOSPHERE[role]
        np.testing.assert_allclose(toa.values[i], tlo * scene.values[i] + phi, rtol=1e-5)
    assert "level" not in toa.attrs and "product" not in toa.attrs  # a file that says nothing
    jittered = simulate_toa(scene, 0.5, seed=1) - simulate_toa(scene, 0.5, seed=2)
    assert float(np.abs(jittered).max()) > 0  # the haze's spectral shape varies with the seed
    with pytest.raises(ParameterError, match="haze"):
        simulate_toa(scene, 1.5)


def test_conditions_go_through_the_loader(tmp_path):
    scene, glacier = make_scene(96, 80, sensor="sentinel2")
    labels = scene.isel(band=0, drop=True).copy(data=glacier.astype("uint8"))
    by_name = {c.name: c for c in CONDITIONS}
    sc, _ = condition_scene(scene, labels, by_name["offset"], tmp_path)
    assert sc.attrs["sensor"] == "sentinel2" and sc.attrs["offset_check"].startswith("-0.1")
    np.testing.assert_allclose(sc.sel(band="B03").values, scene.sel(band="B03").values,
                               atol=1e-4)
    assert condition_scene(scene, labels, by_name["30 m"], tmp_path) is None  # its own
    sc, lab = condition_scene(scene, labels, by_name["10 m"], tmp_path)
    assert abs(sc.rio.resolution()[0]) == 10 and sc.shape[1:] == lab.shape == (288, 240)
    res, lab = condition_scene(scene, labels, Condition("60 m", resolution=60), tmp_path)
    assert res.sizes["x"] == 40 and set(np.unique(lab.values)) <= {0, 1, 255}
    landsat, _ = make_scene(96, 80)
    assert condition_scene(landsat, labels, by_name["offset"], tmp_path) is None


def test_benchmark_tables_and_worst_condition(tmp_path, sample_data):
    model = save_untrained_model(tmp_path, window=32)
    chosen = [c for c in CONDITIONS if c.name in ("surface reflectance", "toa hazy")]
    bench = benchmark(model, ndsi_threshold=0.39, conditions=chosen,
                      scenes=["athabasca/s2-2020-09-09"], spectra=False, window=64,
                      output_dir=tmp_path / "out")
    assert set(bench.table["method"]) >= {UNET, NDSI_LEARNED}
    assert list(bench.summary["condition"]) == ["surface reflectance", "toa hazy"]
    lv = bench.levels.set_index("condition")
    assert lv.loc["toa hazy", "level"] == "toa" and lv.loc["surface reflectance",
                                                           "level"] == "surface"
    assert str(lv.loc["toa hazy", "correction"]).startswith("dark-object subtraction")
    w = worst(bench.summary)
    assert w["margin"] == bench.summary["margin"].min()
    for name in ("conditions.csv", "conditions_summary.csv", "conditions_levels.csv"):
        assert (tmp_path / "out" / name).is_file()
    back = pd.read_csv(tmp_path / "out" / "conditions_summary.csv")
    np.testing.assert_allclose(back["model_KC"], bench.summary["model_KC"])


@pytest.mark.slow
def test_committed_model_holds_on_a_hazy_top_of_atmosphere_scene(sample_data):
    """Issue 17's bar on one condition: a top-of-atmosphere Athabasca (which the model
    never saw) mapped at least as well as NDSI at the learned threshold minus 0.02."""
    chosen = [c for c in CONDITIONS if c.name == "toa hazy"]
    bench = benchmark(MODEL, ndsi_threshold=0.39, conditions=chosen,
                      scenes=["athabasca/s2-2020-09-11"], spectra=False)
    row = bench.summary.iloc[0]
    assert row["model_KC"] >= row["ndsi_KC"] - 0.02, row.to_dict()


def test_conditions_by_name_and_a_mistyped_one():
    from glacierkit.evaluate.conditions import get_conditions

    assert [c.name for c in get_conditions(["toa hazy", "20 m"])] == ["toa hazy", "20 m"]
    with pytest.raises(ParameterError, match=r"'toa hazzy'.*'toa hazy'"):
        get_conditions(["toa hazzy"])
