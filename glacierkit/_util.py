"""Small helpers that every part of glacierkit shares, and nothing else.

- :func:`atomic_path`: write a file under a temporary name, rename it over the target only
  when complete (every file glacierkit writes goes through it).
- :func:`jsonable` / :func:`to_json` / :func:`write_json` / :func:`read_json`: the one JSON
  encoding (numpy numbers as numbers, NaN as ``null``), written atomically.
- :func:`slug`: a file-name-safe scene name.
- :data:`NODATA` (255): the unknown label and the nodata of every uint8 raster.
- :data:`UNET`, :data:`NDSI_LEARNED`, :data:`NDSI_ORACLE`: the names of the compared methods.
- :func:`lazy_exports`: the lazy re-exports of the package ``__init__`` files.
"""

from __future__ import annotations

import errno
import hashlib
import importlib
import json
import math
import os
import re
import sys
import tempfile
import unicodedata
from contextlib import contextmanager
from pathlib import Path

from .exceptions import GlacierKitError, OutputError

__all__ = ["CHECKOUT", "NODATA", "jsonable", "to_json", "write_json", "read_json", "slug", "UNET", "NDSI_LEARNED", "NDSI_ORACLE", "atomic_path", "write_failure"]

#: The folder above the package: the checkout, for an editable install (``models/``,
#: ``notebooks/``).
CHECKOUT = Path(__file__).resolve().parent.parent

#: The one nodata code of glacierkit's uint8 rasters: unknown label pixels (they count in no
#: class: metrics, sweeps, the slider, training), and nodata in the probability, mask,
#: confidence and error-class rasters.
NODATA = 255

#: Longest slug in UTF-8 bytes (file systems allow 255 bytes per name; this leaves room
#: for suffixes such as ``_labels.tif`` and for staging names).
SLUG_MAX = 100


def slug(name: str) -> str:
    """A file-name-safe version of a scene name (``alps-s2/aletsch`` -> ``alps-s2_aletsch``).

    A URL (a STAC item's) becomes its last path part, the item id. Letters and digits of
    any script are kept (``冰川.tif`` -> ``冰川``); every other run of
    characters becomes ``_``. A slug never starts with ``.`` (hidden files, ``.``/``..``)
    and is never empty: a name with nothing left (``???.tif``) becomes ``scene-<hash>``, a
    short hash of the full name, so different names never share a folder by accident.
    """
    text = str(name)
    if re.match(r"https?://", text):  # a STAC item URL: its id, the last part of the path
        text = text.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1].removesuffix(".json")
    elif os.sep in text or "/" in text:
        p = Path(text)
        if p.exists():
            stem = re.sub(r"(?i)\.(tar\.gz|tgz|tar)$", "", p.name)  # a product as downloaded
            stem = p.stem if stem == p.name else stem
            text = stem.replace("_MTL", "") if p.is_file() else p.name
    text = unicodedata.normalize("NFC", text)
    out = re.sub(r"[^\w.-]+", "_", text).strip("_").lstrip(".-")
    if len(out.encode("utf-8", "surrogateescape")) > SLUG_MAX:
        digest = hashlib.sha1(str(name).encode("utf-8", "surrogateescape")).hexdigest()[:10]
        while len(out.encode("utf-8", "surrogateescape")) > SLUG_MAX - 11:
            out = out[:-1]
        out = f"{out}-{digest}"
    if not out.strip("._-"):
        digest = hashlib.sha1(str(name).encode("utf-8", "surrogateescape")).hexdigest()[:10]
        out = f"scene-{digest}"
    return out


# --------------------------------------------------------------------------- the whole comparison
#: Display names of the compared methods.
UNET = "Deep U-Net"
NDSI_LEARNED = "NDSI, threshold learned on train"
NDSI_ORACLE = "NDSI, per-scene oracle (upper bound)"


# --------------------------------------------------------------------------- writing
def current_umask() -> int:
    """The process's umask (read without changing it for good)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; rename it over ``path`` only on success.

    A full disk (or quota) while writing becomes one :class:`OutputError` that names the
    folder and its free space (:func:`write_failure`); the temporary file is removed.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        if not _is_full(exc):
            raise
        raise write_failure(path, exc) from None
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.exists():  # mkstemp makes 0600 files: give the usual permissions
            os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except OSError as exc:
        if isinstance(exc, GlacierKitError) or not _is_full(exc):
            raise
        raise write_failure(path, exc) from None
    finally:
        if tmp.exists():
            tmp.unlink()


def _is_full(exc: BaseException) -> bool:
    """True when ``exc`` says the disk (or the quota) is full."""
    return getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or \
        "no space left" in str(exc).lower()


def _size(n: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def _visible_folder(path: Path) -> Path:
    """The nearest folder above ``path`` that is not hidden (not a staging folder)."""
    folder = path.parent
    while folder.name.startswith(".") and folder.parent != folder:
        folder = folder.parent
    return folder


def write_failure(path: str | os.PathLike, exc: BaseException, needed: int | None = None,
                  full: bool | None = None) -> OutputError:
    """One clear :class:`OutputError` for a failed write of ``path``: for a full disk the
    folder, its free space and (when known) the space needed; else the reason and the fix.

    ``needed`` is an estimate in bytes of what writing ``path`` takes; ``full`` forces the
    full-disk diagnosis (GDAL's write errors do not always carry ``ENOSPC``).
    """
    import shutil

    path = Path(path)
    folder = _visible_folder(path)
    try:
        free = shutil.disk_usage(folder if folder.exists() else folder.parent).free
    except OSError:
        free = None
    full = _is_full(exc) if full is None else full
    reason = " ".join(str(getattr(exc, "strerror", None) or exc).split()) or type(exc).__name__
    if full or (free is not None and needed is not None and free < needed):
        have = f"{_size(free)} free" if free is not None else "no space left"
        want = f"; writing {path.name} needs up to about {_size(needed)}" if needed else ""
        return OutputError(
            f"The disk holding {folder} is full ({have}{want}). Free some space there, or "
            "choose an output folder on another disk; nothing partial was left behind."
        )
    return OutputError(
        f"Cannot write {path.name} in {folder}: {reason}. Check the folder's permissions and "
        f"free space ({_size(free) if free is not None else 'unknown'} free); nothing partial "
        "was left behind."
    )


# --------------------------------------------------------------------------- JSON
def jsonable(value):
    """``value`` in plain JSON types, the one rule for every JSON file glacierkit writes.

    numpy scalars become Python numbers, arrays and tuples lists, mapping keys text; NaN and
    infinities become ``null`` (JSON has no NaN, and ``NaN`` in a file breaks strict
    readers); paths and any other object become their text.
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy
        return jsonable(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def to_json(value, indent: int | None = 2, sort_keys: bool = False) -> str:
    """:func:`jsonable` ``value`` as JSON text."""
    return json.dumps(jsonable(value), indent=indent, sort_keys=sort_keys, allow_nan=False,
                      ensure_ascii=False)


def write_json(path: str | os.PathLike, value, indent: int | None = 2) -> Path:
    """Write ``value`` as JSON (:func:`to_json`) atomically; return the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(to_json(value, indent) + "\n", encoding="utf-8")
    return path


def read_json(path: str | os.PathLike):
    """The JSON value in ``path`` (``OSError``/``ValueError`` on a missing or damaged file)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- packages
def lazy_exports(package: str, exports: dict[str, str]):
    """``(__getattr__, __dir__)`` for a package that re-exports names of its modules.

    ``exports`` maps a public name to the module (relative to ``package``) that defines it;
    a name that maps to ``.name`` is that submodule itself. Nothing is imported until a
    name is first used, so ``import glacierkit`` stays fast and TensorFlow loads only with
    the U-Net modules. A name whose module path ends in ``.name`` (``"stac": ".io.stac"``)
    is that module.
    """
    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(exports[name], package)
        value = module if exports[name].endswith(f".{name}") else getattr(module, name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
