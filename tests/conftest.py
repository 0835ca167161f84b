"""Shared fixtures: small synthetic rasters with planted values, and the sample data."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import rioxarray  # noqa: F401  (the .rio accessor)
import xarray as xr
from affine import Affine

ROOT = Path(__file__).resolve().parent.parent

# Point at the local mirror when it exists and nothing else was chosen (the Makefile does
# the same), so the real-data tests run offline.
if not os.environ.get("GLACIERKIT_DATA_DIR"):
    candidate = ROOT.parent / "shared" / "data"
    if (candidate / "SHA256SUMS").is_file():
        os.environ["GLACIERKIT_DATA_DIR"] = str(candidate)

import glacierkit  # noqa: E402,F401  (quiets TensorFlow before any test imports it)

#: A tqdm progress line ("predict:  50%|#####     | 1/2 [...]") or its clearing.
_PROGRESS = re.compile(r"^[^|]*\d+%\|.*\|")


#: What papermill itself (not the notebook) writes on stderr: its progress and log lines, and
#: the TCP notice of the kernel it starts (glacierkit's own runner uses IPC instead).
PAPERMILL_LINES = ("Input Notebook:", "Output Notebook:", "Working directory:",
                   "Executing notebook with kernel:",
                   "[IPKernelApp] WARNING | Kernel is running over TCP without encryption")


def foreign_stderr_lines(text: str, tool: tuple[str, ...] = ()) -> list[str]:
    """The lines of ``text`` (a process's stderr) that are not glacierkit's own: not a
    ``glacierkit:`` line, not a progress bar, not blank, and not starting with one of
    ``tool`` (what the program the user called, such as papermill, says itself)."""
    lines = [ln.strip() for ln in re.split(r"[\r\n]", text)]
    return [ln for ln in lines if ln and not ln.startswith(("glacierkit:", *tool))
            and not _PROGRESS.match(ln)]


def notebook_outputs(notebook, kind: str) -> list[str]:
    """The outputs of an executed notebook's cells of one ``kind``: a MIME type
    (``"image/png"``), or ``"stderr"`` for the lines the cells wrote to stderr."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if kind == "stderr" and out.get("name") == "stderr":
                found += [ln for ln in out.get("text", "").splitlines() if ln.strip()]
            elif kind in out.get("data", {}):
                found.append(out["data"][kind])
    return found


def assert_views_can_render(notebook) -> None:
    """The executed notebook loads BokehJS once, inline, and no later output asks a CDN for
    it: a second loader that fetches Bokeh from cdn.bokeh.org (which hvplot's import used to
    write) never finishes offline, and every view after it stays blank in JupyterLab."""
    loaders = [str(js) for js in notebook_outputs(notebook, "application/javascript")
               if "Bokeh" in str(js)]
    assert loaders, "no BokehJS loader in the notebook"
    cdn = [js[:200] for js in loaders if "cdn.bokeh.org" in js or "cdn.holoviz.org" in js]
    assert not cdn, f"{len(cdn)} outputs load BokehJS from a CDN"


def path_reprs(notebook) -> list[str]:
    """The cell results of an executed notebook that are a path's repr (``PosixPath('...')``):
    a cell ending with a call that returns the file it saved, where the text promises a
    figure."""
    return [str(t) for t in notebook_outputs(notebook, "text/plain")
            if str(t).startswith(("PosixPath(", "WindowsPath(", "PurePosixPath("))]


def notebook_stderr(notebook) -> list[str]:
    """The foreign stderr lines (:func:`foreign_stderr_lines`) of an executed notebook's
    cells: what a person sees in the pink boxes."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    text = "\n".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                     for out in cell.get("outputs", [])
                     if out.get("output_type") == "stream" and out.get("name") == "stderr")
    return foreign_stderr_lines(text)


def make_scene(height: int = 64, width: int = 48, sensor: str = "landsat8", seed: int = 0,
               crs: str = "EPSG:32632", res: float = 30.0, x0: float = 400_000.0,
               y0: float = 5_100_000.0) -> tuple[xr.DataArray, np.ndarray]:
    """A synthetic reflectance scene with a planted glacier (left half) and a lake.

    Glacier pixels: bright in the visible, dark in SWIR (NDSI ~0.8). Rock: NDSI ~ -0.2.
    Lake (a small square in the rock): green 0.08, nir 0.02, swir1 0.01 (NDSI ~0.78).
    Returns the scene and the true glacier mask.
    """
    from glacierkit.bands import get_sensor

    rng = np.random.default_rng(seed)
    s = get_sensor(sensor)
    names = [s.band_for_role(r) for r in ("blue", "green", "red", "nir", "swir1", "swir2")]
    glacier = np.zeros((height, width), dtype=bool)
    glacier[:, : width // 2] = True
    lake = np.zeros_like(glacier)
    lake[height // 4: height // 4 + 6, width - 12: width - 6] = True
    ice = {"blue": 0.80, "green": 0.78, "red": 0.75, "nir": 0.60, "swir1": 0.08, "swir2": 0.05}
    rock = {"blue": 0.10, "green": 0.12, "red": 0.15, "nir": 0.22, "swir1": 0.18, "swir2": 0.14}
    water = {"blue": 0.09, "green": 0.08, "red": 0.05, "nir": 0.02, "swir1": 0.01, "swir2": 0.01}
    roles = ("blue", "green", "red", "nir", "swir1", "swir2")
    data = np.empty((len(roles), height, width), dtype="float32")
    for i, r in enumerate(roles):
        band = np.where(glacier, ice[r], rock[r]).astype("float32")
        band[lake] = water[r]
        data[i] = band + rng.normal(0, 0.005, band.shape).astype("float32")
    da = xr.DataArray(
        data,
        dims=("band", "y", "x"),
        coords={
            "band": names,
            "role": ("band", list(roles)),
            "y": y0 - res * (np.arange(height) + 0.5),
            "x": x0 + res * (np.arange(width) + 0.5),
        },
        # its only dark pixels are a 6 x 6 lake, too few for glacierkit.io.level's offset
        # check on larger scenes: it is marked checked (tests/io/test_level.py drops that)
        attrs={"sensor": sensor, "scene_id": "synthetic", "product": "l2sp",
               "offset_check": "none (a synthetic test scene)"},
        name="reflectance",
    )
    da = da.rio.write_crs(crs).rio.write_transform(Affine(res, 0, x0, 0, -res, y0))
    return da, glacier


@pytest.fixture
def synthetic_scene():
    return make_scene()


@pytest.fixture(scope="session")
def sample_data():
    """Skip when the sample data is neither mirrored, cached nor downloadable."""
    from glacierkit import data
    from glacierkit.exceptions import DataNotFoundError

    try:
        data.fetch(next(iter(k for k in data.registry() if k.endswith("Aletsch/3.jp2"))))
    except DataNotFoundError as exc:
        pytest.skip(f"sample data unavailable: {exc}")
    return data


def assert_same_grid(out: xr.DataArray, ref: xr.DataArray) -> None:
    """The one reusable check that an output kept the input's grid and CRS."""
    assert out.sizes["y"] == ref.sizes["y"] and out.sizes["x"] == ref.sizes["x"]
    np.testing.assert_allclose(out["x"].values, ref["x"].values)
    np.testing.assert_allclose(out["y"].values, ref["y"].values)
    assert out.rio.crs == ref.rio.crs
    assert tuple(out.rio.transform())[:6] == pytest.approx(tuple(ref.rio.transform())[:6])


def run_notebook(name: str, output_dir: Path, **parameters) -> Path:
    """Execute notebooks/<name>.ipynb headlessly with papermill (parameters checked)."""
    from glacierkit.pipeline import NOTEBOOK_DIR, execute_notebook

    out = Path(output_dir) / "notebooks" / f"{name}.ipynb"
    return execute_notebook(NOTEBOOK_DIR / f"{name}.ipynb", out,
                            {"output_dir": str(output_dir), **parameters})


def holoviews_outputs(notebook: Path) -> list[str]:
    """The HTML of every HoloViews (Bokeh) view an executed notebook displayed."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    return [out["data"].get("text/html", "") for cell in nb.cells if cell.cell_type == "code"
            for out in cell.get("outputs", [])
            if "application/vnd.holoviews_exec.v0+json" in out.get("data", {})
            and "text/plain" in out["data"]]  # a view; hv.extension's outputs have no text


def write_notebook(path: Path, percent_script: str) -> Path:
    """Write a test notebook from Jupytext percent-format text (``# %%`` cells)."""
    import jupytext

    nb = jupytext.reads(percent_script.strip("\n") + "\n", fmt="py:percent")
    nb.metadata["kernelspec"] = {"name": "glacierkit", "display_name": "Python (glacierkit)",
                                 "language": "python"}
    jupytext.write(nb, str(path), fmt="ipynb")
    return Path(path)


@pytest.fixture(scope="session")
def prepared_alps(tmp_path_factory, sample_data):
    """The four labelled Alps scenes and MerDeGlace, prepared once per test session."""
    from glacierkit.prep import prepare_scenes

    out = tmp_path_factory.mktemp("prepared")
    prepare_scenes(["alps-s2/aletsch", "alps-s2/fiescher", "alps-s2/morteratsch",
                    "alps-s2/gorner", "alps-s2/merdeglace"], out)
    return out


def tiny_unet(channels: int, base: int = 8):
    """A two-pool U-Net-like fully convolutional Keras model (spatial dims None)."""
    import keras
    from keras import layers

    conv = {"padding": "same", "activation": "relu"}
    inp = keras.Input((None, None, channels))
    a = layers.Conv2D(base, 3, **conv)(inp)
    b = layers.Conv2D(base * 2, 3, **conv)(layers.MaxPooling2D()(a))
    c = layers.Conv2D(base * 2, 3, **conv)(layers.MaxPooling2D()(b))
    u = layers.Conv2D(base, 3, **conv)(layers.Concatenate()([layers.UpSampling2D()(c), b]))
    u = layers.Conv2D(base, 3, **conv)(layers.Concatenate()([layers.UpSampling2D()(u), a]))
    return keras.Model(inp, layers.Conv2D(1, 1, activation="sigmoid")(u))


def fit_tiny_model(folder: Path, *, size: tuple[int, int], window: int, n_tiles: int,
                   epochs: int, seed: int, optimizer="adam", name: str = "tiny"):
    """A tiny U-Net fitted for a few seconds on a planted synthetic scene, saved with its
    sidecar; returns ``(path, model, spec)``."""
    import keras

    from glacierkit.unet import InputSpec, feature_stack, normalize, save_model

    keras.utils.set_random_seed(seed)
    scene, glacier = make_scene(*size, seed=3)
    spec = InputSpec(("green", "swir1", "nir"), ("ndsi",), patch_size=window)
    raw = feature_stack(scene, spec).values
    spec = spec.with_stats(np.nanmean(raw, axis=(1, 2)), np.nanstd(raw, axis=(1, 2)))
    x = normalize(raw, spec, axis=0).transpose(1, 2, 0)
    corners = np.random.default_rng(0).integers(0, min(size) - window, size=(n_tiles, 2))
    xs = np.stack([x[r: r + window, c: c + window] for r, c in corners])
    ys = np.stack([glacier[r: r + window, c: c + window, None] for r, c in corners])
    model = tiny_unet(spec.n_channels)
    model.compile(optimizer, "binary_crossentropy")
    model.fit(xs, ys.astype("float32"), epochs=epochs, batch_size=16, verbose=0)
    path = save_model(model, Path(folder) / f"{name}.keras", spec, name=name)
    return path, model, spec


def save_untrained_model(folder: Path, *, window: int = 32, seed: int = 4,
                         name: str = "untrained") -> Path:
    """The tiny U-Net with random weights (no fitting: about a second), saved with a
    sidecar whose statistics come from the planted scene; returns the ``.keras`` path.
    Its outputs spread around 0.5, so any change in the inputs shows in them."""
    import keras

    from glacierkit.unet import InputSpec, feature_stack, save_model

    keras.utils.set_random_seed(seed)
    scene, _ = make_scene(64, 64, seed=3)
    spec = InputSpec(("green", "swir1", "nir"), ("ndsi",), patch_size=window)
    raw = feature_stack(scene, spec).values
    spec = spec.with_stats(np.nanmean(raw, axis=(1, 2)), np.nanstd(raw, axis=(1, 2)))
    return save_model(tiny_unet(spec.n_channels), Path(folder) / f"{name}.keras", spec,
                      name=name)


def write_scene(path: Path, height: int = 48, width: int = 40, seed: int = 0, **kw) -> Path:
    """A planted synthetic scene (:func:`make_scene`) as a GeoTIFF that open_scene reads
    back by band name (descriptions) and sensor (tag)."""
    from glacierkit.io import write_raster

    scene, _ = make_scene(height, width, seed=seed, **kw)
    return write_raster(scene, path, tags={"sensor": scene.attrs["sensor"],
                                           "product": scene.attrs["product"]})


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A tiny U-Net fitted for a few seconds on a synthetic scene (64-px tiles), saved with
    its sidecar: ``(path, keras_model, InputSpec)``."""
    return fit_tiny_model(tmp_path_factory.mktemp("model"), size=(256, 240), window=64,
                          n_tiles=64, epochs=3, seed=1, name="tiny-test-unet")


@pytest.fixture(scope="session")
def local_stac(tmp_path_factory, sample_data):
    """A real STAC API (``rustac serve``) and a range-request file server on 127.0.0.1,
    over three items built from Athabasca's sample COGs (``tests/stac_local.py``)."""
    from stac_local import LocalStac

    stac = LocalStac(tmp_path_factory.mktemp("stac"))
    yield stac
    stac.close()
