"""Exception types raised by zipkit.

Every error that zipkit raises on purpose is a :class:`ZipkitError`, so one ``except`` clause
catches them all::

    ZipkitError
    ├── UsageError            bad arguments to a public function or the CLI
    │   └── ConfigError       a YAML config or override that cannot be used (names key and file)
    ├── SourceError           a folder that is missing or is not a folder
    ├── NothingToDo           no file matched: there is no archive to write
    └── StemError             one stem could not be archived (kept in the report, not raised)
        ├── UnsafeStemError   a stem name that would escape the output folder
        ├── SourceChangedError a file changed size or mtime while it was read
        ├── StemTimeout       a stem ran past its ``timeout``
        ├── VerifyError       the written archive did not read back as written
        └── WorkerLost        the process running the stem died (SIGKILL, OOM killer)

:class:`RunInterrupted` is a :class:`KeyboardInterrupt` that carries the partial report.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ._report import Report

__all__ = [
    "ConfigError",
    "NothingToDo",
    "RunInterrupted",
    "SourceChangedError",
    "SourceError",
    "StemError",
    "StemTimeout",
    "UnsafeStemError",
    "UsageError",
    "VerifyError",
    "WorkerLost",
    "ZipkitError",
]


class ZipkitError(Exception):
    """Base class of every error zipkit raises on purpose."""


class UsageError(ZipkitError, ValueError):
    """Arguments that zipkit cannot act on (unknown option, bad value)."""


class ConfigError(UsageError):
    """A YAML config or override that is invalid; ``key`` and ``path`` name the culprit."""

    def __init__(self, message: str, *, key: str | None = None, path: str | Path | None = None):
        self.key = key
        self.path = Path(path) if path is not None else None
        where = []
        if path is not None:
            where.append(str(path))
        if key:
            where.append(f"key '{key}'")
        prefix = f"{': '.join(where)}: " if where else ""
        super().__init__(prefix + message)


class SourceError(ZipkitError, FileNotFoundError):
    """A source, marker or output folder that does not exist or is not a folder."""

    def __init__(self, message: str, *, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        super().__init__(message)


class NothingToDo(ZipkitError):
    """No file matched the extensions (and stems): nothing would be written."""


class StemError(ZipkitError):
    """One stem could not be archived; recorded in the report rather than raised."""

    def __init__(self, message: str, *, stem: str | None = None, path: str | Path | None = None):
        self.stem = stem
        self.path = Path(path) if path is not None else None
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:  # keep keyword attributes across processes
        return (_rebuild, (type(self), self.args, self.stem, self.path))


def _rebuild(cls: type[StemError], args: tuple[Any, ...], stem: str | None, path: Path | None):
    return cls(*args, stem=stem, path=path)


class UnsafeStemError(StemError, UsageError):
    """A stem whose archive name would leave the output folder (``/``, ``..``, NUL, absolute)."""


class SourceChangedError(StemError):
    """A source file changed size or modification time while it was being archived."""


class StemTimeout(StemError, TimeoutError):
    """A stem took longer than its ``timeout``; nothing of it was left behind."""


class VerifyError(StemError):
    """The written archive failed its read-back check (names, sizes or CRCs)."""


class WorkerLost(StemError):
    """The worker process running this stem died before it finished."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or a cancel stopped the run; ``report`` says what finished before it."""

    def __init__(self, report: Report):
        self.report = report
        super().__init__(f"interrupted: {report.summary_line()}")
