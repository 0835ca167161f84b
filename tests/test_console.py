"""A quiet console: without TensorFlow's quieting variables, what glacierkit prints on
stderr is its own (``glacierkit:`` lines, progress bars), each warning once, errors alone.

``glacierkit run --scenes`` and the README's other commands are checked the same way in
``tests/test_readme.py``; notebook 05's cells in ``tests/notebooks/test_nb05.py``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import rasterio

from conftest import ROOT, foreign_stderr_lines
from glacierkit import console
from glacierkit.exceptions import DomainShiftWarning

MODEL = ROOT / "models" / "unet_alps_s2.keras"


def _env() -> dict[str, str]:
    """This environment without the variables that quiet TensorFlow."""
    return {k: v for k, v in os.environ.items() if k not in (*console.QUIET_ENV, "PYTHONWARNINGS")}


def _glacierkit(*args, cwd=None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("glacierkit")
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True,
                          env=_env(), cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def landsat_tar(sample_data):
    """The Landsat 8 sample as downloaded: the product's .tar.gz."""
    from glacierkit.data import samples

    return samples.fetch_product("landsat8-l2sp", unpack=False)


def test_import_tensorflow_after_glacierkit_prints_nothing():
    code = ("import glacierkit, tensorflow as tf, keras\n"
            "print(float(tf.reduce_sum(tf.constant([1.0, 2.0]) * 2)), len(tf.config.list_physical_devices()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=_env(), timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "6.0"
    assert out.stderr == "", out.stderr  # no absl/CUDA/cpu_feature_guard lines


def test_predict_a_landsat_tar_quietly_and_a_late_error_alone(landsat_tar, tmp_path):
    """The product as downloaded (.tar.gz) opens directly; success prints only glacierkit's
    lines; a wrong --sensor (found when the scene is opened) is the only line printed."""
    out = _glacierkit("predict", MODEL, landsat_tar, tmp_path / "tar")
    assert out.returncode == 0, out.stderr
    assert foreign_stderr_lines(out.stderr) == [], out.stderr
    assert "mask: " in out.stdout
    with rasterio.open(tmp_path / "tar" / "mask.tif") as src:  # georeferenced from the MTL
        assert src.crs.to_epsg() == 32623 and src.shape == (300, 400)
    bad = _glacierkit("predict", MODEL, landsat_tar, tmp_path / "bad", "--sensor", "sentinel2")
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("glacierkit: error: sensor='sentinel2'"), \
        bad.stderr


def test_errors_before_tensorflow_loads(landsat_tar, tmp_path):
    """A missing model and a wrong --sensor are found before TensorFlow is imported."""
    code = ("import sys\nfrom glacierkit.pipeline import main\n"
            f"rc = main(['predict', {str(tmp_path / 'nope.keras')!r}, {str(landsat_tar)!r}, "
            f"{str(tmp_path / 'a')!r}])\n"
            f"rc2 = main(['predict', {str(MODEL)!r}, {str(landsat_tar)!r}, "
            f"{str(tmp_path / 'b')!r}, '--sensor', 'landsat7'])\n"
            "print(rc, rc2, 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=_env(), timeout=300)
    assert out.stdout.split() == ["2", "2", "False"], out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 2 and all(ln.startswith("glacierkit: error: ") for ln in lines)
    assert "Model not found" in lines[0] and "landsat7" in lines[1]


def test_warnings_are_one_glacierkit_line_once(capsys):
    logger = logging.getLogger("glacierkit.labels")
    with console.command_line_logging():
        for _ in range(3):
            logger.warning("1 of the %d outlines are invalid polygons; repaired", 1961)
        logger.warning("another note")
        warnings.warn("Domain-shift guard: 18% negative reflectance", DomainShiftWarning,
                      stacklevel=1)
        logger.error("an error shows every time")
        logger.error("an error shows every time")
    err = capsys.readouterr().err.splitlines()
    assert err == ["glacierkit: warning: 1 of the 1961 outlines are invalid polygons; repaired",
                   "glacierkit: warning: another note",
                   "glacierkit: warning: Domain-shift guard: 18% negative reflectance",
                   "glacierkit: error: an error shows every time",
                   "glacierkit: error: an error shows every time"]
    # the state before is back: pytest's own handlers get glacierkit's records again
    assert logging.getLogger("glacierkit").propagate
    with pytest.warns(DomainShiftWarning):  # still a warning for code that checks
        warnings.warn("guard", DomainShiftWarning, stacklevel=1)


def test_collected_warnings_are_not_printed(capsys):
    with console.command_line_logging(), console.collect_warnings() as caught:
        logging.getLogger("glacierkit.x").warning("seen   once")
        logging.getLogger("glacierkit.x").warning("seen once")
    assert caught == ["seen once"]
    assert capsys.readouterr().err == ""


def test_stderr_to_log_catches_what_c_code_writes(caplog):
    with caplog.at_level(logging.DEBUG, logger="glacierkit.console"):
        with console.stderr_to_log():
            os.write(2, b"E0000 00:00 cuda_platform.cc:52] failed call to cuInit\n")
    assert any("failed call to cuInit" in r.getMessage() for r in caplog.records)


def test_quiet_environment_keeps_a_users_choice(monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    assert console.quiet_environment()["TF_CPP_MIN_LOG_LEVEL"] == "0"
    assert console.quiet_environment({})["TF_CPP_MIN_LOG_LEVEL"] == "3"
