"""Fault suite, outputs: no lost results, no outputs of two runs mixed in one folder.

Scene names that reduce to nothing, a predict into a folder with an earlier run, prefixes
with path separators, two scenes with one name, a staging clean-up that must not touch a
neighbour's in-progress folder, output folders that are files or read-only.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import rasterio
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import save_untrained_model, write_scene
from glacierkit import slug
from glacierkit.exceptions import OutputError, OutputExistsError, ParameterError

keras = pytest.importorskip("keras")

WINDOW = 32
PREDICT_OPTS = ["--window", str(WINDOW), "-q"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save_untrained_model(tmp_path_factory.mktemp("model"), window=WINDOW)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scenes")
    return {"a": write_scene(folder / "a.tif", 48, 40, seed=1),
            "b": write_scene(folder / "b.tif", 40, 56, seed=2),
            "冰川": write_scene(folder / "冰川.tif", 40, 40, seed=3),
            "???": write_scene(folder / "???.tif", 32, 40, seed=4)}


def _tree(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` (hidden ones too) with its size."""
    return {str(p.relative_to(folder)): p.stat().st_size
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _styled(*names: str) -> set[str]:
    """The file names plus the QGIS style (``.qml``) written beside every GeoTIFF."""
    return set(names) | {n[:-4] + ".qml" for n in names if n.endswith(".tif")}


def _cli(capsys, *argv) -> tuple[int, str]:
    from glacierkit.pipeline import main

    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def _one_line_error(err: str) -> str:
    # one error line; warnings (such as the domain-shift guard's) may come before it
    lines = [line for line in err.splitlines()
             if line.strip() and not line.startswith("glacierkit: warning: ")]
    assert len(lines) == 1 and lines[0].startswith("glacierkit: error: "), err
    assert "Traceback" not in err
    return lines[0]


# --------------------------------------------------------------------------- item 1
@settings(max_examples=300, deadline=None)
@given(st.text(min_size=0, max_size=300))
def test_slug_is_never_empty_hidden_or_a_path(name):
    s = slug(name)
    assert s and s not in (".", "..") and not s.startswith((".", "-"))
    assert "/" not in s and "\\" not in s and "\0" not in s
    assert len(s.encode("utf-8", "surrogateescape")) <= 100
    assert slug(name) == s  # deterministic


def test_slug_keeps_unicode_and_ascii_names_as_before():
    assert slug("alps-s2/aletsch") == "alps-s2_aletsch"
    assert slug("LC08_L2SP_140041_20200101") == "LC08_L2SP_140041_20200101"
    assert slug("冰川") == "冰川"
    assert slug("???") != slug("!!!")  # hashed fallbacks differ
    assert slug("???").startswith("scene-")


def test_batch_scene_with_a_unicode_or_empty_name_keeps_the_others(model, scenes, tmp_path):
    from glacierkit.pipeline import RESULT_FILE, process_scene

    out = tmp_path / "run"
    for name in ("a", "冰川", "???"):
        process_scene(str(scenes[name]), model, out, outlines=False,
                      predict_kwargs={"window": WINDOW})
    folders = sorted(p.name for p in (out / "scenes").iterdir())
    assert folders == sorted(["a", "冰川", slug(str(scenes["???"]))])
    before = _tree(out / "scenes" / "a")
    # overwriting the unicode scene must leave every other scene's folder as it was
    process_scene(str(scenes["冰川"]), model, out, outlines=False, overwrite=True,
                  predict_kwargs={"window": WINDOW})
    assert _tree(out / "scenes" / "a") == before
    assert sorted(p.name for p in (out / "scenes").iterdir()) == folders
    for f in folders:
        assert (out / "scenes" / f / RESULT_FILE).is_file()


def test_notebook01_writes_a_named_file_for_a_unicode_scene(scenes, tmp_path):
    from glacierkit.prep import prepare_scenes

    table = prepare_scenes([str(scenes["冰川"]), str(scenes["???"])], tmp_path)
    names = sorted(p.name for p in (tmp_path / "prepared").iterdir())
    assert "冰川.tif" in names and ".tif" not in names
    assert all(Path(p).name != ".tif" for p in table["scene_path"])


# --------------------------------------------------------------------------- items 2, 3
def test_predict_writes_one_complete_set_and_refuses_to_mix(model, scenes, tmp_path, capsys):
    out = tmp_path / "out"
    rc, err = _cli(capsys, "predict", model, scenes["a"], out, "--tta", "--outlines",
                   *PREDICT_OPTS)
    assert rc == 0, err
    first = set(_tree(out))
    assert first == _styled("probability.tif", "mask.tif", "confidence.tif", "outlines.gpkg")
    # another scene into the same folder: refused without --force, nothing changed
    before = _tree(out)
    rc, err = _cli(capsys, "predict", model, scenes["b"], out, *PREDICT_OPTS)
    line = _one_line_error(err)
    assert rc == 2 and "--force" in line and "mask.tif" in line
    assert "overwrite=" not in line and "prefix=" not in line  # the CLI's words, not the API's
    assert _tree(out) == before
    # with --force the whole earlier set goes: no confidence/outlines of scene a remain
    rc, err = _cli(capsys, "predict", model, scenes["b"], out, "--force", *PREDICT_OPTS)
    assert rc == 0, err
    assert set(_tree(out)) == _styled("probability.tif", "mask.tif")
    with rasterio.open(out / "mask.tif") as m, rasterio.open(out / "probability.tif") as p:
        assert m.shape == p.shape == (40, 56)


def test_predict_failing_while_writing_leaves_the_old_set(model, scenes, tmp_path, capsys,
                                                          monkeypatch):
    import glacierkit.io.write as gio

    out = tmp_path / "out"
    assert _cli(capsys, "predict", model, scenes["a"], out, *PREDICT_OPTS)[0] == 0
    before = _tree(out)
    real = gio.write_raster

    def fail_on_mask(da, path, **kw):
        if Path(path).name == "mask.tif":
            raise OSError(28, "No space left on device", str(path))
        return real(da, path, **kw)

    monkeypatch.setattr(gio, "write_raster", fail_on_mask)
    rc, err = _cli(capsys, "predict", model, scenes["b"], out, "--force", *PREDICT_OPTS)
    assert rc == 2 and "No space left" in _one_line_error(err)
    assert _tree(out) == before  # the old set, complete; no staging folder left


def test_other_prefixes_in_the_folder_are_kept(model, scenes, tmp_path, capsys):
    out = tmp_path / "out"
    assert _cli(capsys, "predict", model, scenes["a"], out, "--prefix", "a_", "--tta",
                *PREDICT_OPTS)[0] == 0
    assert _cli(capsys, "predict", model, scenes["b"], out, "--prefix", "b_",
                *PREDICT_OPTS)[0] == 0
    assert _cli(capsys, "predict", model, scenes["b"], out, "--force", *PREDICT_OPTS)[0] == 0
    assert set(_tree(out)) == _styled("a_probability.tif", "a_mask.tif", "a_confidence.tif",
                                      "b_probability.tif", "b_mask.tif", "probability.tif",
                                      "mask.tif")


def test_write_prediction_replaces_the_whole_set(model, scenes, tmp_path):
    from glacierkit.unet import predict_scene, write_prediction

    prob = predict_scene(model, scenes["a"], window=WINDOW, tta=True, progress=False)
    write_prediction(prob, tmp_path)
    (tmp_path / "outlines.gpkg").write_bytes(b"old")
    (tmp_path / "notes.txt").write_text("mine")
    plain = predict_scene(model, scenes["b"], window=WINDOW, progress=False)
    with pytest.raises(OutputExistsError, match="confidence.tif"):
        write_prediction(plain, tmp_path, overwrite=False)
    paths = write_prediction(plain, tmp_path)
    assert set(paths) == {"probability", "mask"} and all(p.parent == tmp_path
                                                          for p in paths.values())
    assert set(_tree(tmp_path)) == _styled("probability.tif", "mask.tif", "notes.txt")


# --------------------------------------------------------------------------- item 4
def test_batch_cleanup_touches_only_this_scenes_staging(model, tmp_path):
    from glacierkit.pipeline import process_scene

    folder = tmp_path / "in"
    folder.mkdir()
    scene = write_scene(folder / "scene.tif", seed=5)
    root = tmp_path / "run" / "scenes"
    root.mkdir(parents=True)
    neighbours = [root / ".staging-scene-2.abcd1234", root / ".staging-scene.x.abcd1234",
                  root / ".old-scene-2.abcd1234", root / ".staging-scene-2-abcd1234"]
    for n in neighbours:
        n.mkdir()
        (n / "probability.tif").write_bytes(b"in progress")
    stale = root / ".staging-scene.k3j4h5g6"  # this scene's own, left by a killed attempt
    stale.mkdir()
    process_scene(str(scene), model, tmp_path / "run", outlines=False,
                  predict_kwargs={"window": WINDOW})
    assert all((n / "probability.tif").read_bytes() == b"in progress" for n in neighbours)
    assert not stale.exists() and (root / "scene" / "result.json").is_file()


def test_batch_restores_a_result_set_aside_by_a_killed_overwrite(model, tmp_path):
    from glacierkit.pipeline import process_scene

    scene = write_scene(tmp_path / "scene.tif", seed=6)
    out = tmp_path / "run"
    process_scene(str(scene), model, out, outlines=False, predict_kwargs={"window": WINDOW})
    root = out / "scenes"
    before = _tree(root / "scene")
    (root / "scene").rename(root / ".old-scene.0a1b2c3d")  # killed between the renames
    record = process_scene(str(scene), model, out, outlines=False,
                           predict_kwargs={"window": WINDOW})
    assert record["skipped"]  # restored, so done before: nothing lost, nothing redone
    assert _tree(root / "scene") == before and sorted(os.listdir(root)) == ["scene"]


def test_batch_redoes_a_scene_whose_record_is_corrupt(model, tmp_path):
    from glacierkit.pipeline import RESULT_FILE, process_scene

    scene = write_scene(tmp_path / "scene.tif", seed=7)
    out = tmp_path / "run"
    process_scene(str(scene), model, out, outlines=False, predict_kwargs={"window": WINDOW})
    (out / "scenes" / "scene" / RESULT_FILE).write_text('{"scene": ')
    record = process_scene(str(scene), model, out, outlines=False,
                           predict_kwargs={"window": WINDOW})
    assert not record["skipped"]
    assert json.loads((out / "scenes" / "scene" / RESULT_FILE).read_text())["scene"]


def test_batch_result_folders_respect_the_umask(model, tmp_path):
    from glacierkit.pipeline import process_scene

    scene = write_scene(tmp_path / "scene.tif", seed=8)
    old = os.umask(0o022)
    try:
        process_scene(str(scene), model, tmp_path / "run", outlines=False,
                      predict_kwargs={"window": WINDOW})
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "run" / "scenes" / "scene").stat().st_mode)
    assert mode == 0o755


# --------------------------------------------------------------------------- item 5
@pytest.mark.parametrize("prefix", ["../escape_", "sub/x_", "..", "/abs_", "a\\b_"])
def test_prefix_with_path_separators_is_refused(model, scenes, tmp_path, capsys, prefix):
    out = tmp_path / "box" / "out"
    rc, err = _cli(capsys, "predict", model, scenes["a"], out, "--prefix", prefix,
                   *PREDICT_OPTS)
    assert rc == 2 and "prefix" in _one_line_error(err)
    assert not (tmp_path / "box").exists()  # nothing written anywhere, not even the folder
    from glacierkit.unet import write_prediction

    with pytest.raises(ParameterError, match="prefix"):
        write_prediction(None, out, prefix=prefix)


# --------------------------------------------------------------------------- item 6
def test_notebook01_refuses_two_scenes_with_one_name(tmp_path):
    from glacierkit.prep import prepare_scenes

    for d in ("x", "y"):
        (tmp_path / d).mkdir()
        write_scene(tmp_path / d / "scene.tif", seed=ord(d))
    out = tmp_path / "run"
    with pytest.raises(ParameterError, match="both be written to"):
        prepare_scenes([str(tmp_path / "x" / "scene.tif"), str(tmp_path / "y" / "scene.tif")],
                       out)
    assert not (out / "prepared").exists()
    prepare_scenes([str(tmp_path / "x" / "scene.tif")], out)
    before = _tree(out / "prepared")
    with pytest.raises(ParameterError, match="already prepared"):
        prepare_scenes([str(tmp_path / "y" / "scene.tif")], out)
    assert _tree(out / "prepared") == before
    # the same scene again (even written another way) is fine
    again = prepare_scenes([str(tmp_path / "x" / ".." / "x" / "scene.tif")], out)
    assert len(again) == 1


# --------------------------------------------------------------------------- item 15
def test_output_folder_that_is_a_file_fails_before_predicting(model, scenes, tmp_path, capsys,
                                                              monkeypatch):
    import glacierkit.unet.predict as gp

    def never(*a, **k):  # the prediction must not even start
        raise AssertionError("predicted before checking the output folder")

    monkeypatch.setattr(gp, "predict_scene", never)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc, err = _cli(capsys, "predict", model, scenes["a"], blocker, *PREDICT_OPTS)
    assert rc == 2 and "is a file" in _one_line_error(err)
    rc, err = _cli(capsys, "predict", model, scenes["a"], blocker / "sub", *PREDICT_OPTS)
    assert rc == 2 and f"{blocker} is a file" in _one_line_error(err)
    assert blocker.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(model, scenes, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        rc, err = _cli(capsys, "predict", model, scenes["a"], ro, *PREDICT_OPTS)
        assert rc == 2 and "Cannot write" in _one_line_error(err)
    finally:
        ro.chmod(0o755)


@pytest.fixture
def small_disk(tmp_path):
    """A 256 kB tmpfs (a full disk within a few writes); only as root, else skipped."""
    import subprocess

    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "small-disk"
    disk.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)],
                       check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False, capture_output=True,
                       timeout=30)


def test_full_disk_while_writing_is_one_error_naming_folder_and_space(model, tmp_path,
                                                                       capsys, small_disk):
    """The prediction fits in memory but not on the disk: one error line that names the
    folder, its free space and what the file needs; nothing partial is left, the input is
    unchanged, and no GDAL/libtiff message reaches the terminal."""
    scene = write_scene(tmp_path / "big.tif", 320, 320, seed=5)
    before = scene.read_bytes()
    out = small_disk / "out"
    rc, err = _cli(capsys, "predict", model, scene, out, "--float32", *PREDICT_OPTS)
    assert rc == 2
    line = _one_line_error(err)
    assert f"The disk holding {out} is full" in line, line
    assert " free; writing probability.tif needs up to about " in line and " MB" in line
    assert "_tiffWriteProc" not in err and "TIFFAppendToStrip" not in err
    assert _tree(small_disk) == {}  # not even the output folder it created
    assert scene.read_bytes() == before


def test_full_disk_for_tables_and_json_too(small_disk):
    import pandas as pd

    from glacierkit._util import write_json
    from glacierkit.io import write_table

    with pytest.raises(OutputError, match=f"The disk holding {small_disk}/run is full"):
        write_json(small_disk / "run" / "metrics.json", {"x": "y" * 400_000})
    with pytest.raises(OutputError, match="is full"):
        write_table(pd.DataFrame({"a": ["z" * 1000] * 400}), small_disk / "run" / "t.csv")
    assert [p for p in small_disk.rglob("*") if p.is_file()] == []


def test_unwritable_output_folder_is_checked_first(tmp_path, monkeypatch):
    """Read-only, immutable or full: the probe write fails, so the check fails (simulated,
    since the tests may run as root, which writes into read-only folders)."""
    import tempfile

    from glacierkit.staging import check_output_dir

    def refuse(*a, **k):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(OutputError, match="Operation not permitted"):
        check_output_dir(tmp_path / "new" / "out")
    assert not (tmp_path / "new").exists()  # what it created for the probe is gone


def test_staging_is_invisible_until_complete(tmp_path):
    from glacierkit.staging import output_set

    (tmp_path / "mask.tif").write_bytes(b"old mask")
    (tmp_path / "probability.tif").write_bytes(b"old prob")
    with pytest.raises(RuntimeError):
        with output_set(tmp_path) as staging:
            (staging / "probability.tif").write_bytes(b"new")
            assert (tmp_path / "probability.tif").read_bytes() == b"old prob"
            raise RuntimeError("killed while writing the mask")
    assert _tree(tmp_path) == {"mask.tif": 8, "probability.tif": 8}
    with output_set(tmp_path) as staging:
        (staging / "probability.tif").write_bytes(b"new")
    assert _tree(tmp_path) == {"probability.tif": 3}
    with pytest.raises(OutputError, match="do not belong"):
        with output_set(tmp_path) as staging:
            (staging / "other.txt").write_text("x")
    assert _tree(tmp_path) == {"probability.tif": 3}


def test_set_membership_is_exact():
    from glacierkit.staging import _belongs

    stems = ("probability", "mask")
    assert _belongs("mask.tif", "", stems) and _belongs("mask.tif.aux.xml", "", stems)
    assert _belongs("a_probability.qml", "a_", stems)
    assert not _belongs("mask.probability.tif", "", stems)  # prefix "mask." owns it
    assert not _belongs("masks.tif", "", stems) and not _belongs("a_mask.tif", "", stems)
    assert not _belongs("mask.tif.1.tmp", "", stems)


def test_interrupted_commit_is_finished_by_the_next_call(tmp_path):
    """A journal (the commit point) and a half-moved set, as SIGKILL mid-commit leaves
    them: the next call into the folder finishes the commit before anything else."""
    from glacierkit.staging import _set_id, existing_set, output_set

    sid = _set_id("")
    staging = tmp_path / f".gk-staging-{sid}-0123abcd"
    staging.mkdir()
    (staging / "mask.tif").write_bytes(b"new mask")
    (tmp_path / "probability.tif").write_bytes(b"new prob")  # moved before the kill
    (tmp_path / f".gk-commit-{sid}.json").write_text(json.dumps(
        {"staging": staging.name, "remove": ["confidence.tif"],
         "move": ["mask.tif", "probability.tif"]}))
    (tmp_path / ".mask.tif.abc.tmp").write_bytes(b"junk")  # an atomic_path temporary
    with output_set(tmp_path, overwrite=True) as new:
        assert _tree(tmp_path) == {"mask.tif": 8, "probability.tif": 8}
        (new / "mask.tif").write_bytes(b"newest")
    assert [p.name for p in existing_set(tmp_path)] == ["mask.tif"]
    assert _tree(tmp_path) == {"mask.tif": 6}
