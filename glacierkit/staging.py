"""Outputs that appear as one complete set, or not at all.

A call that writes several files (``glacierkit predict``: probability, mask, confidence,
outlines) writes them into a hidden staging folder inside the output folder and moves them
in together when all are complete (:func:`output_set`):

1. the staging folder ``.gk-staging-<set>-<random>/`` receives every file;
2. a journal ``.gk-commit-<set>.json`` names the files of the old set to remove and the
   new ones to move in (written atomically: this is the commit point);
3. the old set's files are removed first, then the new ones renamed in (same file system,
   so each rename is atomic), then the staging folder and the journal are deleted.

A process killed before step 2 leaves only its staging folder; one killed during step 3
leaves the journal. Either way the folder never holds files of two runs side by side, and
the next call into the same folder finishes the commit (journal) or deletes the stale
staging folder first. ``<set>`` is a short hash of the file-name prefix, so calls with
other prefixes into the same folder are never touched.

For tests, the environment variable ``GLACIERKIT_FAULT_POINT`` names a point (see
:func:`fault_point`) at which the process kills itself with SIGKILL, so the fault suite
can stop a run exactly there without timing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import signal
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ._util import current_umask, read_json, to_json
from .exceptions import OutputError, OutputExistsError, ParameterError

log = logging.getLogger(__name__)

__all__ = ["output_set", "check_target", "check_output_dir", "check_prefix", "existing_set", "make_private_dir", "fault_point", "PREDICTION_STEMS", "FAULT_ENV"]

#: The environment variable naming a fault point (tests only).
FAULT_ENV = "GLACIERKIT_FAULT_POINT"
#: The file stems of one prediction set (``<prefix><stem>.<suffix>``, any suffix: ``.tif``,
#: ``.gpkg``, ``.qml``, ``.tif.aux.xml`` ...).
PREDICTION_STEMS = ("probability", "mask", "confidence", "outlines")


_PASSES: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Kill this process with SIGKILL when ``GLACIERKIT_FAULT_POINT`` names this point.

    ``GLACIERKIT_FAULT_POINT=commit:moving`` kills at the first pass through the point,
    ``commit:moving#2`` at the second (points inside nested calls are passed more than
    once). A no-op otherwise: the fault-injection tests use it to stop a run at an exact
    point, with no timing involved.
    """
    wanted = os.environ.get(FAULT_ENV)
    if not wanted or not wanted.startswith(name):
        return
    _PASSES[name] = _PASSES.get(name, 0) + 1
    target, _, nth = wanted.partition("#")
    if target == name and _PASSES[name] == int(nth or 1):
        log.warning("Fault point %s reached: killing this process (SIGKILL).", wanted)
        os.kill(os.getpid(), signal.SIGKILL)


def make_private_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """``tempfile.mkdtemp`` in ``parent``, then the usual permissions (``0777 & ~umask``).

    ``mkdtemp`` makes ``drwx------`` folders; a staging folder that becomes a result
    folder must look like any other folder the user creates.
    """
    path = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    os.chmod(path, 0o777 & ~current_umask())
    return path


def check_prefix(prefix: str) -> str:
    """A file-name prefix must stay inside its folder: no path separators, no ``..``."""
    prefix = "" if prefix is None else str(prefix)
    seps = {"/", "\\", os.sep} | ({os.altsep} if os.altsep else set())
    if any(s in prefix for s in seps) or "\0" in prefix or prefix in (".", ".."):
        raise ParameterError(
            f"prefix={prefix!r} would write outside the output folder. A prefix is the start "
            "of a file name (e.g. 'merdeglace_'): no '/', '\\' or '..'. To write elsewhere, "
            "give another output folder."
        )
    return prefix


def _missing_parents(path: Path) -> list[Path]:
    out = []
    p = path
    while not p.exists() and p != p.parent:
        out.append(p)
        p = p.parent
    return out


def check_output_dir(folder: str | os.PathLike) -> list[Path]:
    """Make sure ``folder`` is (or can become) a writable folder, before any long work.

    Creates it if needed and tries writing a probe file in it. Returns the folders it
    created (deepest first), so a caller can remove them again on failure.

    Raises
    ------
    OutputError
        When ``folder`` is a file, cannot be created, or cannot be written to (read-only,
        immutable, no space), with the reason and the fix.
    """
    folder = Path(folder)
    created = _missing_parents(folder)
    existing = created[-1].parent if created else folder
    if existing.exists() and not existing.is_dir():
        where = "The output folder" if existing == folder else "A parent of the output folder,"
        raise OutputError(
            f"{where} {existing} is a file. Give a folder path (it is created if needed), or "
            "move the file away."
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".gk-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        _remove_empty(created)
        what = exc.strerror or type(exc).__name__
        raise OutputError(
            f"Cannot write to the output folder {folder}: {what}. Choose another folder, or "
            "fix its permissions (read-only or immutable folders and full disks are refused "
            "before any work is done)."
        ) from None
    return created


def _remove_empty(folders: Sequence[Path]) -> None:
    for f in folders:  # deepest first
        try:
            f.rmdir()
        except OSError:
            break


def _set_id(prefix: str) -> str:
    return hashlib.sha1(prefix.encode("utf-8", "surrogateescape")).hexdigest()[:8]


#: What may follow ``<prefix><stem>`` in a file of a set: a raster, vector, style or
#: sidecar suffix, possibly chained (``.tif``, ``.gpkg``, ``.qml``, ``.tif.aux.xml`` ...).
_SET_SUFFIX = re.compile(r"(?:\.(?:tif|tiff|gpkg|qml|aux|xml|ovr|json|msk|sld))+",
                         re.IGNORECASE)


def _belongs(name: str, prefix: str, stems: Sequence[str]) -> bool:
    """``name`` is ``<prefix><stem><suffix>`` (so ``mask.probability.tif``, the file of the
    prefix ``mask.``, is not the ``mask`` of the prefix ``""``)."""
    return any(name.startswith(prefix + stem)
               and _SET_SUFFIX.fullmatch(name[len(prefix + stem):]) is not None
               for stem in stems)


def _journal(folder: Path, sid: str) -> Path:
    return folder / f".gk-commit-{sid}.json"


def _staging_re(sid: str) -> re.Pattern:
    return re.compile(rf"\.gk-staging-{sid}-[0-9a-f]{{8}}")


def _recover(folder: Path, prefix: str, stems: Sequence[str]) -> None:
    """Finish a commit that a killed call left half done; delete its stale staging folders
    and temporary files. Only this set's names (exact prefix) are touched."""
    sid = _set_id(prefix)
    journal = _journal(folder, sid)
    if journal.is_file():
        try:
            plan = read_json(journal)
            staging = folder / str(plan["staging"])
            remove, move = list(plan["remove"]), list(plan["move"])
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("Ignoring the unreadable commit journal %s.", journal)
            plan = None
        if plan is not None and _staging_re(sid).fullmatch(staging.name):
            log.warning("Finishing the commit of %s that an interrupted run left in %s.",
                        ", ".join(move), folder)
            for name in remove:
                name = Path(name).name
                moved_in = name in move and not (staging / name).exists()
                if not moved_in:  # an old file (a new one of that name is not in yet)
                    (folder / name).unlink(missing_ok=True)
            for name in move:
                src = staging / Path(name).name
                if src.exists():
                    os.replace(src, folder / Path(name).name)
        journal.unlink(missing_ok=True)
    pattern = _staging_re(sid)
    # atomic_path's temporaries of this set's files, and a half-written journal
    tmp = re.compile(r"\.(?:" + "|".join(re.escape(prefix + s) for s in stems)
                     + r")\..*\.tmp(?:\.gtiff)?")
    part = re.compile(re.escape(journal.name) + r"\.[0-9a-f]{8}\.part")
    for entry in folder.iterdir():
        if entry.is_dir() and pattern.fullmatch(entry.name):
            log.info("Removing %s, left by an interrupted run.", entry)
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.is_file() and (tmp.fullmatch(entry.name) or part.fullmatch(entry.name)):
            entry.unlink(missing_ok=True)


def existing_set(folder: str | os.PathLike, prefix: str = "",
                 stems: Sequence[str] = PREDICTION_STEMS) -> list[Path]:
    """The files of the set ``prefix`` + ``stems`` that are in ``folder`` now."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and _belongs(p.name, prefix, stems))


@contextmanager
def output_set(folder: str | os.PathLike, prefix: str = "", *, overwrite: bool = True,
               stems: Sequence[str] = PREDICTION_STEMS) -> Iterator[Path]:
    """Write a set of files into a staging folder; move them into ``folder`` together.

    Parameters
    ----------
    folder
        The output folder (created if needed; checked for writing before anything else).
    prefix
        The file-name prefix of the set (no path separators).
    overwrite
        Replace an earlier set with the same prefix (all its files, including ones the new
        set does not have). ``False``: raise :class:`OutputExistsError` if there is one.
    stems
        The file stems that make up the set (see :data:`PREDICTION_STEMS`).

    Yields
    ------
    pathlib.Path
        The staging folder: write the files there, with their final names.

    Examples
    --------
    >>> with output_set("runs/x", prefix="a_") as tmp:  # doctest: +SKIP
    ...     write_raster(prob, tmp / "a_probability.tif")
    """
    folder = Path(folder)
    prefix = check_prefix(prefix)
    created = check_output_dir(folder)
    _recover(folder, prefix, stems)
    if not overwrite:
        try:
            check_target(folder, prefix, overwrite=False, stems=stems)
        except OutputExistsError:
            _remove_empty(created)
            raise
    sid = _set_id(prefix)
    staging = folder / f".gk-staging-{sid}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        yield staging
        fault_point("commit:staged")
        names = sorted(p.name for p in staging.iterdir())
        strays = [n for n in names if not _belongs(n, prefix, stems)]
        if strays:
            raise OutputError(
                f"Files {strays} do not belong to the set {prefix!r} + {list(stems)}; "
                "they cannot be committed with it."
            )
        old = existing_set(folder, prefix, stems)
        # Every old file goes first, then the new ones come in: a kill in between leaves
        # part of the new set (finished by the next call), never an old file beside a new one.
        plan = {"staging": staging.name, "remove": [p.name for p in old], "move": names}
        journal = _journal(folder, sid)
        tmp = journal.with_name(journal.name + f".{uuid.uuid4().hex[:8]}.part")
        tmp.write_text(to_json(plan, indent=None))
        os.replace(tmp, journal)  # the commit point
        fault_point("commit:journal")
        for name in plan["remove"]:
            (folder / name).unlink(missing_ok=True)
        for i, name in enumerate(names):
            os.replace(staging / name, folder / name)
            if i == 0:
                fault_point("commit:moving")
        journal.unlink()
    except BaseException:
        if _journal(folder, sid).is_file():  # past the commit point: finish it
            _recover(folder, prefix, stems)
        shutil.rmtree(staging, ignore_errors=True)
        if not existing_set(folder, prefix, stems):
            _remove_empty(created)
        raise
    shutil.rmtree(staging, ignore_errors=True)


def check_target(folder: str | os.PathLike, prefix: str = "", *, overwrite: bool = True,
                 stems: Sequence[str] = PREDICTION_STEMS, cli: bool = False) -> None:
    """Every check :func:`output_set` makes, without writing anything: call it before a
    long computation so that a bad output folder fails first, not last. ``cli`` words the
    error for the command line (``--force``, ``--prefix``) instead of Python."""
    prefix = check_prefix(prefix)
    created = check_output_dir(folder)
    try:
        _recover(Path(folder), prefix, stems)  # a commit a killed call left half done
        if not overwrite:
            old = existing_set(folder, prefix, stems)
            if old:
                force, other = ("--force", "--prefix") if cli else ("overwrite=True", "prefix=")
                raise OutputExistsError(
                    f"{folder} already holds the outputs of an earlier run "
                    f"({', '.join(p.name for p in old)}). Use {force} to replace that whole "
                    f"set, another output folder, or another {other}."
                )
    finally:
        _remove_empty(created)
