"""Landsat products as they are downloaded: ``.tar`` and ``.tar.gz`` archives, read in place.

USGS EarthExplorer delivers a Collection 2 product as one ``LC08_..._T1.tar`` (sometimes
compressed). :func:`open_scene` opens it as it opens the unpacked folder: the MTL is read
from the archive with :mod:`tarfile` and the band files through GDAL's ``/vsitar/``
virtual file system, so nothing is unpacked to disk. A compressed archive (``.tar.gz``)
has to be decompressed from its start to reach a file, which GDAL does as it reads; for
large scenes an uncompressed ``.tar`` (or the unpacked folder) is faster.

:class:`ArchiveMember` and :class:`ArchiveFolder` offer the few :class:`pathlib.Path`
methods the Landsat reader uses (``name``, ``suffix``, ``parent``, ``/``, ``is_file``,
``iterdir``, ``glob``, ``read_text``), and :func:`os.fspath` of a member is its
``/vsitar/`` path, which rasterio opens.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import posixpath
import tarfile
from pathlib import Path, PurePosixPath

from ..exceptions import CorruptFileError, DataNotFoundError

__all__ = ["ARCHIVE_SUFFIXES", "is_archive", "ArchiveMember", "ArchiveFolder", "archive_mtl", "is_vsi"]

#: File name endings of the archives :func:`glacierkit.open_scene` opens in place.
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")


def is_archive(path: str | os.PathLike) -> bool:
    """True if ``path`` names a tar archive by its ending (``.tar``, ``.tar.gz``, ``.tgz``)."""
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def is_vsi(path) -> bool:
    """True for a GDAL virtual file system path (``/vsitar/...``), which is not a local file."""
    return os.fspath(path).startswith("/vsi") if isinstance(path, (str, os.PathLike)) else False


@functools.lru_cache(maxsize=8)
def _members(archive: str, mtime_ns: int, size: int) -> tuple[str, ...]:
    """The regular files in ``archive`` (cached while the file is unchanged)."""
    try:
        with tarfile.open(archive) as tar:
            return tuple(m.name for m in tar.getmembers() if m.isfile())
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise CorruptFileError(
            f"Cannot read the archive {archive} ({type(exc).__name__}: {exc}). It is damaged "
            "or truncated: download it again, or unpack it and give the folder."
        ) from exc


def _list(archive: Path) -> tuple[str, ...]:
    st = archive.stat()
    return _members(str(archive), st.st_mtime_ns, st.st_size)


class ArchiveFolder:
    """A folder inside a tar archive (``prefix`` ``""`` is the archive's top)."""

    def __init__(self, archive: str | os.PathLike, prefix: str = ""):
        self.archive = Path(archive).resolve()
        self.prefix = prefix.strip("/")

    def __truediv__(self, name: str) -> ArchiveMember:
        return ArchiveMember(self.archive, posixpath.join(self.prefix, str(name)))

    def iterdir(self):
        """The files directly in this folder."""
        for name in _list(self.archive):
            if posixpath.dirname(name.strip("/")) == self.prefix:
                yield ArchiveMember(self.archive, name)

    def glob(self, pattern: str):
        """The files of this folder whose names match ``pattern`` (no recursion)."""
        return (m for m in self.iterdir() if fnmatch.fnmatch(m.name, pattern))

    def is_dir(self) -> bool:
        return True

    def __str__(self) -> str:
        return str(self.archive) + (f"/{self.prefix}" if self.prefix else "")

    def __repr__(self) -> str:
        return f"ArchiveFolder({str(self)!r})"


class ArchiveMember(os.PathLike):
    """One file inside a tar archive; ``os.fspath`` gives its GDAL ``/vsitar/`` path."""

    def __init__(self, archive: str | os.PathLike, name: str):
        self.archive = Path(archive).resolve()
        self.member = str(name).lstrip("/")
        self._pure = PurePosixPath(self.member)

    name = property(lambda self: self._pure.name)
    suffix = property(lambda self: self._pure.suffix)
    stem = property(lambda self: self._pure.stem)

    @property
    def parent(self) -> ArchiveFolder:
        return ArchiveFolder(self.archive, posixpath.dirname(self.member))

    def with_name(self, name: str) -> ArchiveMember:
        return ArchiveMember(self.archive, posixpath.join(posixpath.dirname(self.member), name))

    def is_file(self) -> bool:
        return self.member in _list(self.archive)

    exists = is_file

    def read_bytes(self) -> bytes:
        with tarfile.open(self.archive) as tar:
            try:
                f = tar.extractfile(self.member)
            except KeyError:
                f = None
            if f is None:
                raise DataNotFoundError(f"{self} is not a file in the archive {self.archive}.")
            return f.read()

    def read_text(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return self.read_bytes().decode(encoding, errors)

    def __fspath__(self) -> str:
        return f"/vsitar/{self.archive}/{self.member}"  # /vsitar//abs/path.tar/member

    def __str__(self) -> str:
        return f"{self.archive}/{self.member}"

    def __repr__(self) -> str:
        return f"ArchiveMember({str(self)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, ArchiveMember) and (self.archive, self.member) == (
            other.archive, other.member)

    def __hash__(self) -> int:
        return hash((self.archive, self.member))


def archive_mtl(archive: str | os.PathLike) -> ArchiveMember:
    """The ``_MTL.txt`` of the Landsat product in a tar archive, as an :class:`ArchiveMember`.

    Raises
    ------
    DataNotFoundError
        If the archive holds no ``_MTL.txt`` (it is not a Landsat Collection 2 product).
    """
    archive = Path(archive).expanduser()
    if not archive.is_file():
        raise DataNotFoundError(f"Archive not found: {archive}. Check the path.")
    mtls = sorted(n for n in _list(archive) if n.upper().endswith("_MTL.TXT"))
    if not mtls:
        raise DataNotFoundError(
            f"{archive} holds no _MTL.txt, so it is not a Landsat Collection 2 product as "
            "EarthExplorer delivers it. Unpack it and open the band files (a list of paths, "
            "or the folder)."
        )
    return ArchiveMember(archive, mtls[0])
