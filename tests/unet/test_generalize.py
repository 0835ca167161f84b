"""Recipe options for generalization: reflectance-space augmentation, resolution
augmentation, scene normalization, the NDSI prior, glacier-free scenes, and fine-tuning a
pretrained model (init_model) with unknown labels."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from conftest import make_scene
from glacierkit.exceptions import ParameterError
from glacierkit.unet import load_model

TINY = dict(depth=2, base_filters=4, patch_size=32, stride=16, val_gap=8, batch_size=4,
            learning_rate=0.01)


def _scenes(n=2, unknown=False):
    out = {}
    for i in range(n):
        scene, glacier = make_scene(96, 80, seed=i)
        lab = glacier.astype("float32")
        if unknown:
            lab[:20, 50:] = 255  # unknown (a partial outline)
        out[f"s{i}"] = (scene, xr.DataArray(lab, dims=("y", "x")))
    return out


@pytest.mark.parametrize("normalization", ["global", "scene"])
def test_tf_features_equal_the_numpy_contract(normalization):
    """Training computes inputs from reflectance in TensorFlow (to augment on the fly);
    they must equal feature_stack + normalize, which prediction uses."""
    import tensorflow as tf

    from glacierkit.unet import InputSpec, feature_stack, normalize, scene_medians, tf_features

    scene, _ = make_scene(40, 30)
    scene = scene.copy()
    scene[4, 0, :5] = -0.01  # a negative SWIR reflectance: the NDSI leaves [-1, 1]
    scene[:, 1, 1] = np.nan
    spec = InputSpec(("swir1", "nir", "blue"), ("ndsi", "ndwi", "ndss"),
                     mean=(0.1, 0.3, 0.4, 0.5, 0.0, 0.1), std=(0.1, 0.2, 0.3, 0.4, 0.2, 0.3),
                     normalization=normalization)
    want = normalize(np.moveaxis(feature_stack(scene, spec).values, 0, -1), spec)
    raw = np.moveaxis(scene.sel(band=[scene.band.values[list(scene.role.values).index(r)]
                                      for r in spec.roles]).values, 0, -1)
    med = np.asarray(scene_medians(scene, spec.bands), "float32")
    got = tf_features(tf.constant(np.nan_to_num(raw)), spec.roles, spec, tf.constant(med)).numpy()
    ok = np.isfinite(raw).all(axis=-1)
    np.testing.assert_allclose(got[ok], want[ok], rtol=1e-5, atol=1e-5)
    ndsi = feature_stack(scene, spec).sel(channel="ndsi").values
    assert np.nanmax(ndsi) <= 1.0 and np.nanmin(ndsi) >= -1.0  # clipped


def test_photometric_augmentation_changes_gain_and_offset_per_tile():
    import tensorflow as tf

    from glacierkit.unet import photometric_augment

    raw = tf.fill([4, 4, 3], 0.5)
    a = photometric_augment(raw, ("blue", "nir", "swir1"), 1.0, tf.constant([1, 2], tf.int64))
    b = photometric_augment(raw, ("blue", "nir", "swir1"), 1.0, tf.constant([1, 2], tf.int64))
    c = photometric_augment(raw, ("blue", "nir", "swir1"), 1.0, tf.constant([1, 3], tf.int64))
    np.testing.assert_array_equal(a.numpy(), b.numpy())  # seeded
    assert not np.allclose(a.numpy(), c.numpy())
    assert np.ptp(a.numpy()[0, 0]) > 0  # bands change differently
    assert (np.ptp(a.numpy(), axis=(0, 1)) == 0).all()  # one gain/offset per tile and band
    zero = photometric_augment(raw, ("blue", "nir", "swir1"), 0.0, tf.constant([1, 2], tf.int64))
    np.testing.assert_allclose(zero.numpy(), 0.5, rtol=1e-6)


def test_resolution_augmentation_zooms_tiles():
    from glacierkit.unet import InputSpec, make_patches, training_dataset

    scene, glacier = make_scene(128, 96, res=20.0)
    p = make_patches({"s": (scene, xr.DataArray(glacier.astype("float32"), dims=("y", "x")))},
                     InputSpec(("swir1", "nir", "blue"), ("ndsi",)), patch_size=32, stride=16,
                     gap=0, tile_size=48)
    assert p.x.shape[1:3] == (48, 48) and p.raw.shape[-1] == 4 and p.resolution[0] == 20.0
    ds, _ = training_dataset(p, batch_size=4, seed=0, epochs=1, resolutions=(10.0, 30.0))
    x, y, w = next(iter(ds))
    assert x.shape == (4, 32, 32, 4) and y.shape == (4, 32, 32, 1) and w.shape == (4, 32, 32)
    assert set(np.unique(y.numpy())) <= {0.0, 1.0}
    with pytest.raises(ParameterError, match="resolutions"):
        training_dataset(p, batch_size=4, resolutions=(30.0, 10.0))


def test_config_validates_the_new_options():
    from glacierkit.unet import TrainConfig

    c = TrainConfig(prior="ndsi", resolutions=[10, 30], photometric=1.0)
    assert c.resolutions == (10.0, 30.0) and c.tile_size == 192
    assert TrainConfig().tile_size == 128
    assert TrainConfig.from_dict(c.to_dict()) == c
    for changes, message in [({"prior": "ndvi"}, "Unknown prior"),
                             ({"prior": "ndsi", "extra": []}, "add 'ndsi' to extra"),
                             ({"resolutions": [30, 10]}, "smallest, largest"),
                             ({"normalization": "tile"}, "Unknown normalization"),
                             ({"photometric": 3.0}, "photometric must be")]:
        with pytest.raises(ParameterError, match=message):
            TrainConfig(**changes)


@pytest.fixture(scope="module")
def robust(tmp_path_factory):
    """A tiny model with every option on: prior, augmentations, unknown labels."""
    from glacierkit.unet import TrainConfig, fit

    out = tmp_path_factory.mktemp("robust")
    config = TrainConfig(epochs=3, **TINY, extra=("ndsi", "ndwi"), prior="ndsi",
                         photometric=1.0, resolutions=(20.0, 40.0), residual_l2=1e-6)
    return config, fit(config, _scenes(unknown=True), out, verbose=0)


def test_prior_model_starts_as_the_ndsi_rule_and_is_saved_with_its_prior(robust):
    from glacierkit.unet import build_unet

    config, result = robust
    side = result.sidecar
    prior = side["architecture"]["prior"]
    assert prior["channel"] == 3 and prior["slope"] == 20.0 and -0.2 <= prior["threshold"] <= 0.8
    # untrained: the output is exactly the NDSI rule sigmoid(slope * (ndsi - t))
    net = build_unet(5, depth=2, base_filters=4, prior=prior)
    x = np.random.default_rng(0).normal(size=(1, 16, 16, 5)).astype("float32")
    ndsi = x[..., 3] * prior["std"] + prior["mean"]
    want = 1 / (1 + np.exp(-prior["slope"] * (ndsi - prior["threshold"])))
    np.testing.assert_allclose(np.asarray(net.predict_on_batch(x))[..., 0], want, rtol=1e-4,
                               atol=1e-5)
    model, _ = load_model(result.model_path)  # the custom layer loads in safe mode
    assert model.get_layer("prior").threshold == pytest.approx(prior["threshold"])
    dist = side["training_distribution"]
    assert dist["augmented"] and set(dist["values"]) == set(config.channels)
    assert 0 <= dist["negative_reflectance"] <= 1


def test_fine_tuning_keeps_the_inputs_and_records_the_origin(robust, tmp_path):
    from glacierkit.unet import TrainConfig, fit

    config, base = robust
    tuned_cfg = TrainConfig(epochs=2, **{**TINY, "learning_rate": 1e-3},
                            extra=("ndsi", "ndwi"))
    tuned = fit(tuned_cfg, _scenes(unknown=True), tmp_path / "tuned", verbose=0,
                init_model=base.model_path)
    side = tuned.sidecar
    assert side["inputs"]["mean"] == base.sidecar["inputs"]["mean"]  # the model's statistics
    assert side["fine_tuned_from"]["path"] == str(base.model_path)
    assert side["fine_tuned_from"]["sha256"] and side["architecture"]["prior"]
    model, _ = load_model(tuned.model_path)
    base_model, _ = load_model(base.model_path)
    assert model.count_params() == base_model.count_params()
    # resuming the same fine-tuning is allowed; another starting model is refused
    with pytest.raises(ParameterError, match="init_model"):
        fit(tuned_cfg, _scenes(unknown=True), tmp_path / "tuned", verbose=0)


def test_fine_tuning_refuses_other_inputs(robust, tmp_path):
    from glacierkit.unet import TrainConfig, fit

    _, base = robust
    with pytest.raises(ParameterError, match="takes the channels"):
        fit(TrainConfig(epochs=1, **TINY), _scenes(), tmp_path, init_model=base.model_path)


def test_unknown_labels_do_not_count_in_the_loss(robust):
    _, result = robust
    p = result.patches
    ok = p.w > 0
    assert not ok.all() and (p.y[~ok] == 0).all()


def test_glacier_free_scenes_are_labelled_zero(tmp_path):
    from glacierkit.prep import prepare_scenes
    from glacierkit.unet import load_scenes

    scene, _ = make_scene(40, 30)
    path = tmp_path / "scene.tif"
    from glacierkit.io import write_raster

    write_raster(scene, path)
    prepare_scenes([str(path)], tmp_path, sensor="landsat8")
    out = load_scenes([], tmp_path, glacier_free=["scene"])
    (_, labels), = out.values()
    assert float(np.nanmax(labels.values)) == 0.0 and np.isfinite(labels.values).all()
    with pytest.raises(Exception, match="no labels"):
        load_scenes(["scene"], tmp_path)


def test_train_only_scenes_give_tiles_but_no_validation_block():
    from glacierkit.unet import InputSpec, make_patches

    scenes = _scenes(2)
    p = make_patches(scenes, InputSpec(("swir1", "nir", "blue")), patch_size=32, stride=16,
                     gap=8, train_only=["s1"])
    assert [v.scene for v in p.validation] == ["s0"]
    kept = p.catalogue[p.catalogue["status"] == "kept"]
    assert kept[kept.scene == "s1"]["row"].max() == 96 - 32  # tiles reach the bottom edge


def test_lake_and_shadow_augmentation():
    import tensorflow as tf

    from glacierkit.unet import lake_augment, shadow_augment

    roles = ("blue", "green", "nir", "swir1")
    raw = tf.fill([64, 64, 4], 0.6)
    yw = tf.ones([64, 64, 2])
    r, y = lake_augment(raw, yw, roles, 1.0, tf.constant([1, 5], tf.int64))
    lake = y.numpy()[..., 0] == 0
    assert lake.any() and (y.numpy()[..., 1] == 1).all()
    water = r.numpy()[lake]
    assert (water[:, 2] < 0.4 * water[:, 1] + 0.01).all()  # NIR well below green
    assert (water[:, 3] < 0.05).all()
    r2, y2 = lake_augment(raw, yw, roles, 0.0, tf.constant([1, 5], tf.int64))
    np.testing.assert_array_equal(r2.numpy(), raw.numpy())
    s = shadow_augment(raw, roles, 1.0, tf.constant([2, 9], tf.int64)).numpy()
    shade = s[..., 0] != 0.6
    assert shade.any()
    px = s[shade][0]
    assert px[0] > px[1] > px[2] > px[3] and px[1] < 0.6 * 0.5 + 1e-6  # darker, bluish


def test_ensemble_averages_members_and_loads_as_one_model(robust, tmp_path):
    from glacierkit.unet import TrainConfig, fit, predict_scene, save_ensemble

    config, first = robust
    second = fit(config.replace(seed=7), _scenes(unknown=True), tmp_path / "s7", verbose=0)
    path = save_ensemble([first.model_path, second.model_path], tmp_path / "ens" / "unet.keras",
                         _scenes(unknown=True))
    model, side = load_model(path)
    assert side["architecture"]["name"] == "ensemble" and side["architecture"]["members"] == 2
    assert [m["seed"] for m in side["ensemble"]] == [42, 7]
    assert "KC" in side["metrics"]["validation"]
    scene, _ = make_scene(64, 48, seed=3)
    probs = [predict_scene(str(p), scene, progress=False, guard=False).values
             for p in (first.model_path, second.model_path, path)]
    np.testing.assert_allclose(probs[2], (probs[0] + probs[1]) / 2, atol=2e-3)
    with pytest.raises(ParameterError, match="other inputs"):
        other = fit(TrainConfig(epochs=1, **TINY), _scenes(), tmp_path / "other", verbose=0)
        save_ensemble([first.model_path, other.model_path], tmp_path / "bad.keras")


def test_haze_augmentation_is_physical():
    """A hazy tile gains most in the blue and almost nothing in the SWIR; some tiles are
    over-corrected (darker); probability 0 leaves the tile alone."""
    import tensorflow as tf

    from glacierkit.io.level import ATMOSPHERE
    from glacierkit.unet import haze_augment

    roles = ("blue", "green", "nir", "swir1")
    raw = tf.fill([8, 8, 4], 0.3)
    shifts = []
    for k in range(40):
        out = haze_augment(raw, roles, 1.0, tf.constant([3, k], tf.int64)).numpy()
        shifts.append(out[0, 0] - 0.3)
    shifts = np.array(shifts)
    hazy = shifts[:, 0] > 0
    assert hazy.sum() > 20 and (~hazy).sum() > 3  # mostly haze, some over-correction
    assert (shifts[hazy, 0] > shifts[hazy, 3]).all()  # blue gains more than SWIR1
    assert shifts[:, 0].max() <= ATMOSPHERE["blue"][1] * 1.15 + 1e-6
    assert np.abs(shifts[:, 3]).max() < 0.03  # SWIR1: transmittance only, a few %
    same = haze_augment(raw, roles, 0.0, tf.constant([3, 1], tf.int64)).numpy()
    np.testing.assert_array_equal(same, raw.numpy())


def test_bounded_correction_limits_additions_only(tmp_path):
    import keras

    from glacierkit.unet import InputSpec, TrainConfig, bound_correction, build_unet, save_model
    from glacierkit.unet.layers import BoundedCorrection

    layer = BoundedCorrection(4.0)
    x = np.array([-30.0, -1.0, 0.0, 1.0, 4.0, 50.0], dtype="float32")
    y = np.asarray(layer(x))
    np.testing.assert_allclose(y[:3], x[:3], atol=0.02)  # removal is free
    assert (y <= 4.0).all() and y[-1] == pytest.approx(4.0, abs=1e-4)
    assert y[3] == pytest.approx(1.0, abs=0.05)  # well below the bound: the correction itself
    prior = {"channel": 3, "mean": 0.4, "std": 0.5, "threshold": 0.6, "slope": 20.0}
    free = build_unet(5, depth=2, base_filters=4, prior=prior)
    free.get_layer("correction").set_weights([np.full((1, 1, 4, 1), 5.0, "float32"),
                                              np.zeros(1, "float32")])
    net = bound_correction(free, 4.0)
    assert net.get_layer("bounded").max_addition == 4.0
    again = bound_correction(net, 2.0)  # a new bound, not a second one
    assert again.get_layer("bounded").max_addition == 2.0
    assert sum(la.name == "bounded" for la in again.layers) == 1
    x = np.random.default_rng(1).normal(size=(2, 16, 16, 5)).astype("float32")
    p_free, p_bound = np.asarray(free(x)), np.asarray(net(x))
    assert (p_bound <= p_free + 1e-6).all() and (p_bound < p_free - 1e-3).any()
    ndsi = x[..., 3] * 0.5 + 0.4
    ceiling = 1 / (1 + np.exp(-(20 * (ndsi - 0.6) + 4)))  # never more than +4 over the prior
    assert (p_bound[..., 0] <= ceiling + 1e-5).all()
    with pytest.raises(ParameterError, match="no NDSI prior"):
        bound_correction(build_unet(5, depth=2, base_filters=4), 4.0)
    spec = InputSpec(("swir1", "nir", "blue"), ("ndsi", "ndwi"), (0,) * 5, (1,) * 5, 16)
    path = save_model(net, tmp_path / "b.keras", spec)
    back, _ = load_model(path)  # registered: loads in safe mode
    assert back.get_layer("bounded").max_addition == 4.0
    assert isinstance(back.get_layer("bounded"), keras.layers.Layer)
    with pytest.raises(ParameterError, match="max_addition"):
        TrainConfig(max_addition=-1)
    with pytest.raises(ParameterError, match="haze"):
        TrainConfig(haze=2)
