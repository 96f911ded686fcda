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
        ├── ExistingArchiveError a file at STEM.zip that cannot be merged (kept as it is)
        └── WorkerLost        the process running the stem died (SIGKILL, OOM killer)

:class:`RunInterrupted` is a :class:`KeyboardInterrupt` that carries the partial report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "ConfigError",
    "ExistingArchiveError",
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


def _rebuild(cls: type[StemError], args: tuple[Any, ...], stem: str | None, path: Path | None) -> StemError:
    return cls(*args, stem=stem, path=path)


class UnsafeStemError(StemError, UsageError):
    """A stem whose archive name would leave the output folder (``/``, ``..``, NUL, absolute)."""


class SourceChangedError(StemError):
    """A source file changed size or modification time while it was being archived."""


class StemTimeout(StemError, TimeoutError):
    """A stem took longer than its ``timeout``; nothing of it was left behind."""


class VerifyError(StemError):
    """The written archive failed its read-back check (names, sizes or CRCs)."""


class ExistingArchiveError(StemError):
    """The file at ``STEM.zip`` is not a zip archive that can be merged (not a regular file,
    not a zip, a member whose CRC fails); it is left exactly as it is."""


class WorkerLost(StemError):
    """The worker process running this stem died before it finished."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT), SIGTERM or SIGHUP stopped the run; ``report`` (a :class:`zipkit.Report`)
    says what finished before it.

    ``signal`` is the signal's number, ``exit_code`` the status a program stopped by it exits
    with (130, 143, 129).
    """

    # ``report`` is typed Any: zipkit._report sits above this module (it raises UsageError), so
    # naming Report here, even for the type checker, would make an import cycle.
    def __init__(self, report: Any, signal: int = 2) -> None:
        self.report = report
        self.signal = signal
        self.exit_code = 128 + signal
        super().__init__(f"interrupted: {report.summary_line()}")
