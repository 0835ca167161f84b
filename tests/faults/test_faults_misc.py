"""Fault suite, the rest: damaged models and sidecars, thresholds on degenerate data, a
damaged sample cache, Landsat products with a wrong sensor or without their MTL.

Rule: a correct result, or a GlacierKitError naming the value and the fix.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import save_untrained_model, write_scene
from glacierkit.exceptions import (
    ChecksumError,
    CorruptFileError,
    DataNotFoundError,
    GlacierKitError,
    NotGeoreferencedError,
    ParameterError,
)

keras = pytest.importorskip("keras")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save_untrained_model(tmp_path_factory.mktemp("model"))


def _copy_model(model, folder):
    shutil.copy(model, folder / "m.keras")
    shutil.copy(model.with_suffix(".json"), folder / "m.json")
    return folder / "m.keras"


# --------------------------------------------------------------------------- item 17, 15
@pytest.mark.parametrize("damage", ["truncated", "text", "empty"])
def test_damaged_keras_file_says_damaged_not_missing(model, tmp_path, capsys, damage):
    from glacierkit.pipeline import main

    m = _copy_model(model, tmp_path)
    blob = m.read_bytes()
    m.write_bytes({"truncated": blob[: len(blob) // 2], "text": b"hello", "empty": b""}[damage])
    scene = write_scene(tmp_path / "s.tif")
    assert main(["predict", str(m), str(scene), str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("glacierkit: error:") == 1 and "Traceback" not in err
    assert "not a .keras model file" in err and "not found" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("sidecar", ['{"format": ', "[1, 2]", '{"format": "glacierkit-model/1"}',
                                     '{"format": "glacierkit-model/1", "inputs": {"x": 1}}',
                                     "\udcff"])
def test_damaged_sidecar(model, tmp_path, sidecar):
    from glacierkit.unet import load_model

    m = _copy_model(model, tmp_path)
    m.with_suffix(".json").write_bytes(sidecar.encode("utf-8", "surrogateescape"))
    with pytest.raises(GlacierKitError, match="m.json"):
        load_model(m)


# --------------------------------------------------------------------------- item 13
def test_thresholds_on_a_constant_index_or_one_class_labels():
    from glacierkit.ndsi import best_threshold, otsu, sweep

    rng = np.random.default_rng(0)
    labels = (rng.random((30, 30)) > 0.5).astype("float32")
    constant = np.full((30, 30), 0.35, dtype="float32")
    with pytest.raises(ParameterError, match="does not separate"):
        best_threshold(sweep(constant, labels))
    with pytest.raises(ParameterError, match="does not separate"):
        best_threshold(sweep(constant, labels), metric="IoU")
    with pytest.raises(ParameterError, match="constant"):
        otsu(constant)
    index = rng.uniform(-0.5, 0.9, (30, 30)).astype("float32")
    for one in (np.ones_like(labels), np.zeros_like(labels)):
        with pytest.raises(ParameterError, match="one class"):
            best_threshold(sweep(index, one))
    # a perfectly separable index is fine: any threshold in the gap, the lowest one
    separable = np.where(labels > 0, 0.8, -0.3).astype("float32")
    assert best_threshold(sweep(separable, labels)) == 0.0
    assert 0.0 <= otsu(separable) <= 0.8


# --------------------------------------------------------------------------- item 14
@pytest.fixture
def own_cache(tmp_path, monkeypatch, sample_data):
    """The Landsat sample extracted into a cache of this test's own."""
    from glacierkit.data import samples as data

    tarball = data.fetch(data._PRODUCTS["landsat8-l2sp"])
    rel = data._PRODUCTS["landsat8-l2sp"]
    cache = tmp_path / "cache"
    (cache / rel).parent.mkdir(parents=True)
    shutil.copy(tarball, cache / rel)
    monkeypatch.setenv("GLACIERKIT_CACHE_DIR", str(cache))
    monkeypatch.setenv("GLACIERKIT_DATA_DIR", str(tmp_path / "no-mirror"))
    return data.fetch_product("landsat8-l2sp")


@pytest.mark.parametrize("damage", ["deleted", "replaced", "added", "no manifest"])
def test_extracted_sample_is_verified(own_cache, damage):
    from glacierkit.data import samples as data
    from glacierkit.io import open_scene

    folder = own_cache
    reference = open_scene(folder).values
    band = next(folder.glob("*_SR_B3.TIF"))
    if damage == "deleted":
        band.unlink()
    elif damage == "replaced":
        band.write_bytes(band.read_bytes()[:-10] + b"0123456789")
    elif damage == "added":
        (folder / "extra.TIF").write_bytes(b"x")
    else:
        (folder / data.MANIFEST).unlink()
    again = data.fetch_product("landsat8-l2sp")
    assert again == folder and (folder / data.MANIFEST).is_file()
    np.testing.assert_array_equal(open_scene(again).values, reference)
    assert not (folder / "extra.TIF").exists()
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]


def test_a_mirror_with_wrong_content_is_a_checksum_error(tmp_path, monkeypatch):
    from glacierkit.data import samples as data

    rel = next(iter(data.registry()))
    mirror = tmp_path / "mirror"
    (mirror / rel).parent.mkdir(parents=True)
    (mirror / rel).write_bytes(b"not the pinned file")
    monkeypatch.setenv("GLACIERKIT_DATA_DIR", str(mirror))
    monkeypatch.setenv("GLACIERKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GLACIERKIT_DATA_URL", "http://127.0.0.1:9")
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        data.fetch(rel)
    assert issubclass(ChecksumError, DataNotFoundError)


# --------------------------------------------------------------------------- items 9, 17
def _landsat(folder, *, mtl: bool, georef: bool):
    """A tiny Landsat 8 L2SP product (the MTL of tests/test_io.py)."""
    from test_io import _landsat_product

    folder, mtl_path = _landsat_product(folder, georef=georef)
    if not mtl:
        mtl_path.unlink()
    return folder


def test_sensor_that_contradicts_the_mtl(tmp_path):
    from glacierkit.io import open_scene

    folder = _landsat(tmp_path / "p", mtl=True, georef=True)
    with pytest.raises(ParameterError, match="sensor='landsat7' contradicts.*landsat8"):
        open_scene(folder, sensor="landsat7")
    assert open_scene(folder, sensor="L8").attrs["sensor"] == "landsat8"  # an alias agrees
    with pytest.raises(ParameterError, match="scale"):
        open_scene(folder, scale=1e-4)  # the MTL gives the scaling


def test_sample_with_a_contradicting_sensor(sample_data):
    from glacierkit.io import open_scene

    with pytest.raises(ParameterError, match="contradicts the sample registry"):
        open_scene("alps-s2/gorner", sensor="landsat8")


def test_landsat_folder_without_its_mtl(tmp_path, capsys, model):
    from glacierkit.io import open_scene
    from glacierkit.pipeline import main

    bare = _landsat(tmp_path / "bare", mtl=False, georef=False)
    with pytest.raises(NotGeoreferencedError, match="no _MTL.txt"):
        open_scene(bare)
    assert main(["predict", str(model), str(bare), str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "no _MTL.txt" in err and "no CRS" not in err
    geo = _landsat(tmp_path / "geo", mtl=False, georef=True)
    assert open_scene(geo).attrs["sensor"] == "landsat8"  # georeferenced: default scaling


@pytest.mark.parametrize("overlap", ["0.5", "half", True])
def test_overlap_as_text_or_flag_names_the_value_and_the_choices(model, tmp_path, overlap):
    """A notebook 05 or pipeline parameter given as text (a quoted YAML number, a word) or a
    flag: a ParameterError that names the value and what to give instead, before any window
    is predicted."""
    from glacierkit.unet import predict_scene

    scene = write_scene(tmp_path / "scene.tif")
    with pytest.raises(ParameterError, match=rf"overlap={overlap!r}.*None for the default plan"):
        predict_scene(model, scene, overlap=overlap, progress=False)


def test_predict_cli_offers_what_its_errors_suggest():
    from glacierkit.pipeline.cli import build_parser

    text = build_parser()._subparsers._group_actions[0].choices["predict"].format_help()
    for flag in ("--sensor", "--band-names", "--scale", "--offset", "--baseline", "--force"):
        assert flag in text


def test_corrupt_json_files_of_a_run(tmp_path):
    from glacierkit.ndsi import load_learned

    (tmp_path / "ndsi").mkdir()
    from glacierkit.ndsi import LEARNED_FILE

    (tmp_path / LEARNED_FILE).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / LEARNED_FILE).write_text("{broken")
    with pytest.raises(CorruptFileError, match="threshold"):
        load_learned(tmp_path)


def test_corrupt_prepared_manifest(tmp_path):
    from glacierkit.prep import load_manifest

    (tmp_path / "prepared").mkdir()
    (tmp_path / "prepared" / "manifest.csv").write_bytes(b"\x00\xff\x00garbage\n\"unclosed")
    with pytest.raises(GlacierKitError, match="manifest.csv"):
        load_manifest(tmp_path)
    (tmp_path / "prepared" / "manifest.csv").write_text("a,b\n1,2\n")
    with pytest.raises(GlacierKitError, match="manifest.csv"):
        load_manifest(tmp_path)


def test_result_json_written_by_batch_is_valid_json(model, tmp_path):
    from glacierkit.pipeline import RESULT_FILE, process_scene

    scene = write_scene(tmp_path / "s.tif")
    process_scene(str(scene), model, tmp_path / "run", outlines=False,
                  predict_kwargs={"window": 32})
    json.loads((tmp_path / "run" / "scenes" / "s" / RESULT_FILE).read_text())
