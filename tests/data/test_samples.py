"""Sample data: mirror, cache, and download (against a local HTTP server)."""

import functools
import http.server
import shutil
import threading

import pytest

from glacierkit import data
from glacierkit.exceptions import DataNotFoundError

SMALL = next(k for k in data.registry() if k.endswith("Everest_Landsat/LE71400412000304SGS00_B4.tif"))


def test_registry_covers_every_sample_file():
    reg = data.registry()
    for scene in data.SCENES.values():
        for rel in scene.files.values():
            assert rel.split("#")[0] in reg
    assert all(len(sha) == 64 for sha in reg.values())


def test_registry_matches_the_mirror_checksums(sample_data):
    mirror = data.mirror_dir()
    if mirror is None or not (mirror / "SHA256SUMS").is_file():
        pytest.skip("no local mirror")
    lines = (mirror / "SHA256SUMS").read_text().split("\n")
    theirs = dict(reversed(line.split(maxsplit=1)) for line in lines if line.strip())
    assert {k.strip(): v for k, v in theirs.items()} == data.registry()


def test_split_is_the_benchmark_split():
    s = data.split("alps-s2")
    assert s["train"] == ["alps-s2/aletsch", "alps-s2/fiescher"]
    assert set(s["test"]) == {"alps-s2/morteratsch", "alps-s2/gorner"}
    assert not set(s["train"]) & set(s["test"])


def test_unknown_scene_lists_the_valid_ones():
    with pytest.raises(DataNotFoundError, match="alps-s2/aletsch"):
        data.get_scene("alps-s2/nowhere")


@pytest.fixture
def served_mirror(tmp_path, sample_data):
    """A copy of part of the mirror served over HTTP on 127.0.0.1."""
    src = data.fetch(SMALL)
    root = tmp_path / "served"
    dest = root / SMALL.split("/", 1)[1]
    dest.parent.mkdir(parents=True)
    shutil.copy(src, dest)
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", dest
    server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_download_path_checks_the_checksum(served_mirror, tmp_path, monkeypatch):
    url, served_file = served_mirror
    monkeypatch.setenv("GLACIERKIT_DATA_URL", url)
    monkeypatch.setenv("GLACIERKIT_DATA_DIR", str(tmp_path / "no-mirror"))
    monkeypatch.setenv("GLACIERKIT_CACHE_DIR", str(tmp_path / "cache"))
    got = data.fetch(SMALL)
    assert got == tmp_path / "cache" / SMALL
    assert got.read_bytes() == served_file.read_bytes()
    # Second call: from the cache, no server needed.
    served_file.unlink()
    assert data.fetch(SMALL) == got


def test_download_with_wrong_content_is_refused(served_mirror, tmp_path, monkeypatch):
    url, served_file = served_mirror
    served_file.write_bytes(b"not the pinned file")
    monkeypatch.setenv("GLACIERKIT_DATA_URL", url)
    monkeypatch.delenv("GLACIERKIT_DATA_DIR", raising=False)
    monkeypatch.setenv("GLACIERKIT_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DataNotFoundError, match="(?s)everest-l7.*Tried.*download"):
        data.fetch(SMALL)
    assert not (tmp_path / "cache" / SMALL).exists()


def test_nothing_works_error_names_places_and_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("GLACIERKIT_DATA_URL", "http://127.0.0.1:9")  # discard port: refused
    monkeypatch.setenv("GLACIERKIT_DATA_DIR", str(tmp_path / "empty-mirror"))
    monkeypatch.setenv("GLACIERKIT_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DataNotFoundError) as info:
        data.fetch(SMALL)
    msg = str(info.value)
    assert "everest-l7" in msg
    assert "empty-mirror" in msg and "cache" in msg and "127.0.0.1:9" in msg
    assert "GLACIERKIT_DATA_DIR" in msg  # how to fix


def test_outlines_are_geodataframes(sample_data):
    alps = data.outlines("alps-s2")
    assert len(alps) == 1961 and alps.crs.to_epsg() == 4326 and "RGIId" in alps.columns
    everest = data.outlines("everest-l7")
    assert len(everest) == 86 and everest.crs is not None
    with pytest.raises(DataNotFoundError, match="Datasets with outlines"):
        data.outlines("greenland")


def test_landsat_product_extracts_once(sample_data):
    folder = data.fetch_product("landsat8-l2sp")
    assert len(list(folder.glob("*_SR_B*.TIF"))) == 6
    assert len(list(folder.glob("*_MTL.txt"))) == 1
    assert data.fetch_product("landsat8-l2sp") == folder
