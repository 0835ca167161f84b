"""A quiet console: what glacierkit's users see is glacierkit's, once.

TensorFlow writes C++ and absl log lines straight to the process's standard error, most
of them before its own log level applies ("All log messages before absl::InitializeLog()
is called are written to STDERR", "Could not find cuda drivers", "failed call to cuInit"
...). None of them is for a glaciologist. :func:`quiet_tensorflow`, called by
``import glacierkit``, silences them *before* TensorFlow is imported:

- it sets ``TF_CPP_MIN_LOG_LEVEL=3`` in the environment (unless it is set already), which
  TensorFlow reads when it loads, and which kernels and Dask workers inherit
  (:func:`quiet_environment` gives the same variables for a child process);
- the first import of ``tensorflow`` or ``keras`` runs with the process's standard error
  (file descriptor 2) sent to a temporary file; what TensorFlow wrote there is logged at
  DEBUG level on ``glacierkit.console`` (``glacierkit -v`` does not show it; a logging
  configuration at DEBUG does);
- TensorFlow's Python logger is set to ERROR (its ``tf.function`` retracing hints are
  about glacierkit's own code, not the user's).

:func:`configure_logging` gives glacierkit's log records one line each on standard error,
``glacierkit: warning: ...``, and shows each distinct warning once per process (the RGI
repair note, for example, is logged each time the outlines are read). glacierkit's own
warning classes (:class:`~glacierkit.exceptions.DomainShiftWarning` ...) are shown the same
way, as one line instead of Python's two (file, line and source). ``import glacierkit``
installs it; it steps aside while the program has configured logging itself (handlers on
the root logger). The command line forces it.
"""

from __future__ import annotations

import importlib.abc
import logging
import os
import sys
import tempfile
import threading
import warnings
from collections.abc import Mapping
from contextlib import contextmanager

__all__ = ["QUIET_ENV", "quiet_environment", "quiet_tensorflow", "stderr_to_log", "configure_logging", "OnceFilter", "collect_warnings", "command_line_logging"]

log = logging.getLogger(__name__)

#: Environment variables that keep TensorFlow's C++ logging quiet in this process and in
#: the processes it starts (the notebook kernels of ``glacierkit run``, Dask workers).
QUIET_ENV: dict[str, str] = {"TF_CPP_MIN_LOG_LEVEL": "3"}

_TF_MODULES = ("tensorflow", "keras")
_lock = threading.Lock()


def quiet_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's environment) with :data:`QUIET_ENV` added where the
    variables are not set, for starting a child process."""
    out = dict(os.environ if env is None else env)
    for key, value in QUIET_ENV.items():
        out.setdefault(key, value)
    return out


@contextmanager
def stderr_to_log(logger: logging.Logger = log, level: int = logging.DEBUG):
    """Send everything written to file descriptor 2 (C and C++ code included) to ``logger``
    instead of the terminal, for the duration of the block."""
    try:
        fd = sys.__stderr__.fileno() if sys.__stderr__ is not None else 2
    except (AttributeError, OSError, ValueError):  # no real stderr (embedded interpreters)
        yield
        return
    with _lock:
        for stream in (sys.stderr, sys.__stderr__):
            try:
                stream.flush()
            except (AttributeError, OSError, ValueError):
                pass
        saved = os.dup(fd)
        sink = tempfile.TemporaryFile()
        os.dup2(sink.fileno(), fd)
    try:
        yield
    finally:
        with _lock:
            try:
                sys.__stderr__.flush()
            except (AttributeError, OSError, ValueError):
                pass
            os.dup2(saved, fd)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace")
            sink.close()
        for line in text.splitlines():
            if line.strip():
                logger.log(level, "stderr: %s", line)


class _QuietLoader(importlib.abc.Loader):
    """Runs another loader's ``exec_module`` inside :func:`stderr_to_log`."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        with stderr_to_log():
            self._loader.exec_module(module)
        if module.__name__ == "tensorflow":
            logging.getLogger("tensorflow").setLevel(logging.ERROR)

    def __getattr__(self, name):  # resources, source, is_package ... of the real loader
        return getattr(self._loader, name)


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` and ``keras`` like the other finders do, and loads them with
    :class:`_QuietLoader`. Removes itself once both are imported."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in _TF_MODULES:
            return None
        if all(name in sys.modules for name in _TF_MODULES):
            self.remove()
        spec = None
        for finder in sys.meta_path:
            if finder is self or isinstance(finder, _QuietImport):
                continue
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                break
        if spec is None or spec.loader is None:
            return None
        spec.loader = _QuietLoader(spec.loader)
        return spec

    def remove(self) -> None:
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass


def quiet_tensorflow() -> None:
    """Silence TensorFlow's start-up logging for this process and its children, if
    TensorFlow is not imported yet (see the module's description). Safe to call again."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    if "tensorflow" in sys.modules and "keras" in sys.modules:
        return
    if not any(isinstance(f, _QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())


class OnceFilter(logging.Filter):
    """Lets each distinct WARNING (or INFO, DEBUG) message through once per process;
    errors always pass."""

    def __init__(self):
        super().__init__()
        self._seen: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        key = (record.name, record.getMessage())
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = " ".join(record.getMessage().split())
        level = record.levelname.lower()
        line = (f"glacierkit: {level}: {record.name}: {text}" if record.levelno < logging.WARNING
                else f"glacierkit: {level}: {text}")
        if record.exc_info:  # the traceback of -v, after the line
            line += "\n" + self.formatException(record.exc_info)
        return line


_HANDLER_FLAG = "_glacierkit_console"


def _program_handlers() -> list[logging.Handler]:
    """The root logger's handlers that the program set up: not absl's, which importing
    TensorFlow adds and which shows nothing before absl's flags are parsed."""
    return [h for h in logging.getLogger().handlers
            if not type(h).__module__.startswith("absl")]


class _StderrHandler(logging.StreamHandler):
    """A stream handler that writes to ``sys.stderr`` as it is at each record (a notebook
    kernel, pytest and the command line all replace it). Unless ``forced``, it steps aside
    while the program has handlers of its own on the root logger (they get the records)."""

    def __init__(self, forced: bool):
        super().__init__(sys.stderr)
        self.forced = forced
        self.collecting: list[str] | None = None

    def filter(self, record):
        if self.collecting is not None and logging.WARNING <= record.levelno < logging.ERROR:
            text = " ".join(record.getMessage().split())
            if text not in self.collecting:
                self.collecting.append(text)
            return False
        if not self.forced and _program_handlers():
            return False
        return super().filter(record)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # set by StreamHandler.__init__; the property decides
        pass


@contextmanager
def command_line_logging(level: int = logging.WARNING):
    """:func:`configure_logging` forced at ``level`` for the duration of a command (the
    ``glacierkit`` command line); the logging state before it is restored afterwards, so
    a program that calls the command line in-process keeps its own configuration."""
    logger = logging.getLogger("glacierkit")
    configure_logging()
    handler = next(h for h in logger.handlers if getattr(h, _HANDLER_FLAG, False))
    saved = (logger.level, logger.propagate, handler.level, handler.forced)
    configure_logging(level, force=True)
    try:
        yield
    finally:
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        handler.setLevel(saved[2])
        handler.forced = saved[3]


@contextmanager
def collect_warnings():
    """Collect glacierkit's warnings (logged, or its warning classes) into the yielded
    list instead of printing them, e.g. in a Dask worker, whose parent prints them once.
    Distinct messages, in order; errors are still printed."""
    configure_logging()
    handler = next(h for h in logging.getLogger("glacierkit").handlers
                   if getattr(h, _HANDLER_FLAG, False))
    saved, handler.collecting = handler.collecting, []
    caught = handler.collecting
    try:
        yield caught
    finally:
        handler.collecting = saved


def configure_logging(level: int | None = None, *, force: bool = False) -> None:
    """One ``glacierkit: <level>: <message>`` line on standard error per log record of
    glacierkit, each distinct warning once per process.

    Parameters
    ----------
    level
        Records of glacierkit below this level are not shown (default WARNING when the
        handler is installed; an installed handler keeps its level unless one is given).
    force
        Print glacierkit's records here even when the program has configured logging
        itself, and only here (the command line does this); otherwise the handler steps
        aside while the root logger has handlers, which then get the records.
    """
    logger = logging.getLogger("glacierkit")
    mine = [h for h in logger.handlers if getattr(h, _HANDLER_FLAG, False)]
    if not mine:
        handler = _StderrHandler(forced=force)
        setattr(handler, _HANDLER_FLAG, True)
        handler.setFormatter(_Formatter())
        handler.addFilter(OnceFilter())
        handler.setLevel(logging.WARNING)
        logger.addHandler(handler)
        mine = [handler]
    if force:
        mine[0].forced = True
        logger.propagate = False  # the program's own handlers would print it again
    if level is not None:
        mine[0].setLevel(level)
        logger.setLevel(level)
    if not getattr(warnings.showwarning, _HANDLER_FLAG, False):
        warnings.showwarning = _glacierkit_warnings_as_lines(warnings.showwarning)


def _glacierkit_warnings_as_lines(show):
    """A ``warnings.showwarning`` that shows glacierkit's own warning classes (the
    domain-shift guard's, a leaky split ...) as one logged ``glacierkit: warning:`` line,
    and every other warning as ``show`` does. ``warnings.catch_warnings(record=True)``
    and ``pytest.warns`` still see them as warnings."""

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if getattr(category, "__module__", "").startswith("glacierkit"):
            logging.getLogger("glacierkit").warning("%s", message)
        else:
            show(message, category, filename, lineno, file, line)

    setattr(showwarning, _HANDLER_FLAG, True)
    return showwarning
