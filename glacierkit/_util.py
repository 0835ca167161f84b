"""TODO docstring: _util (from prep, evaluate, io)."""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import sys
import tempfile
import unicodedata
from contextlib import contextmanager
from pathlib import Path

__all__ = ["CHECKOUT", "slug", "UNET", "NDSI_LEARNED", "NDSI_ORACLE", "atomic_path"]

#: The folder above the package: the checkout, for an editable install (``models/``,
#: ``notebooks/``).
CHECKOUT = Path(__file__).resolve().parent.parent

#: Longest slug in UTF-8 bytes (file systems allow 255 bytes per name; this leaves room
#: for suffixes such as ``_labels.tif`` and for staging names).
SLUG_MAX = 100


def slug(name: str) -> str:
    """A file-name-safe version of a scene name (``alps-s2/aletsch`` -> ``alps-s2_aletsch``).

    Letters and digits of any script are kept (``冰川.tif`` -> ``冰川``); every other run of
    characters becomes ``_``. A slug never starts with ``.`` (hidden files, ``.``/``..``)
    and is never empty: a name with nothing left (``???.tif``) becomes ``scene-<hash>``, a
    short hash of the full name, so different names never share a folder by accident.
    """
    text = str(name)
    if os.sep in text or "/" in text:
        p = Path(text)
        if p.exists():
            text = p.stem.replace("_MTL", "") if p.is_file() else p.name
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
def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; rename it over ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.exists():  # mkstemp makes 0600 files: give the usual permissions
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# --------------------------------------------------------------------------- packages
def lazy_exports(package: str, exports: dict[str, str]):
    """``(__getattr__, __dir__)`` for a package that re-exports names of its modules.

    ``exports`` maps a public name to the module (relative to ``package``) that defines it;
    a name that maps to ``.name`` is that submodule itself. Nothing is imported until a
    name is first used, so ``import glacierkit`` stays fast and TensorFlow loads only with
    the U-Net modules.
    """
    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(exports[name], package)
        value = module if exports[name] == f".{name}" else getattr(module, name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
