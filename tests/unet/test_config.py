"""TrainConfig's constructors for fine-tuning and for notebook 04's parameters."""

from __future__ import annotations

import pytest

from conftest import ROOT
from glacierkit.exceptions import ParameterError
from glacierkit.unet import TrainConfig, read_sidecar

PRETRAINED = ROOT / "models" / "unet_alps_s2.keras"


def test_from_pretrained_keeps_the_models_recipe_and_inputs():
    sidecar = read_sidecar(PRETRAINED)
    config = TrainConfig.from_pretrained(PRETRAINED, epochs=20, learning_rate=1e-4)
    assert config.channels == sidecar["inputs"].channels
    assert (config.epochs, config.learning_rate) == (20, 1e-4)
    recipe = sidecar["config"]
    assert (config.prior, config.lakes, config.preset) == (recipe["prior"], recipe["lakes"],
                                                           recipe["preset"])
    # a model name resolves like a path (models/ of the checkout)
    assert TrainConfig.from_pretrained("unet_alps_s2.keras") == TrainConfig.from_pretrained(
        PRETRAINED)
    same = TrainConfig.from_pretrained(PRETRAINED, bands=list(sidecar["inputs"].bands))
    assert same.bands == sidecar["inputs"].bands
    with pytest.raises(ParameterError, match="fine-tuning keeps a model's inputs"):
        TrainConfig.from_pretrained(PRETRAINED, bands=["green", "swir1"])


def test_from_pretrained_reads_old_sidecars_with_fields_off(tmp_path):
    import json
    import shutil

    shutil.copy(PRETRAINED, tmp_path / "old.keras")
    side = json.loads(PRETRAINED.with_suffix(".json").read_text())
    for field in ("lakes", "prior", "photometric"):
        side["config"].pop(field)
    (tmp_path / "old.json").write_text(json.dumps(side))
    config = TrainConfig.from_pretrained(tmp_path / "old.keras")
    assert (config.lakes, config.prior, config.photometric) == (0.0, "", 0.0)


def test_from_parameters_takes_the_config_fields_of_a_notebook():
    params = {"bands": ["swir1", "nir", "blue"], "extra": [], "epochs": 3, "scenes": ["x"],
              "output_dir": "runs/x", "init_model": "", "seed": 7}
    config = TrainConfig.from_parameters(params)
    assert config == TrainConfig(bands=("swir1", "nir", "blue"), extra=(), epochs=3, seed=7)
    tuned = TrainConfig.from_parameters({**params, "extra": ["ndsi"], "epochs": 2},
                                        init_model=str(PRETRAINED))
    assert tuned.channels == read_sidecar(PRETRAINED)["inputs"].channels  # the model's inputs
    assert (tuned.epochs, tuned.seed) == (2, 7)  # the rest from the parameters
    with pytest.raises(ParameterError, match="epochs"):
        TrainConfig.from_parameters({**params, "epochs": 0})
