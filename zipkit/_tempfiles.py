"""A run's temp area in an output folder: temp files, the run's live mark, the closing gate.

Layout, all inside the output folder (names that the planner never takes as inputs)::

    .zipkit-RUN.lock.tmp          the run's live mark: held (flock, shared) by the run's process
    .zipkit-RUN.closing.tmp       while the run closes: held by its process till its temp folders go
    .zipkit-RUN-PID.tmp/          one temp folder per process that writes archives
        .zipkit-RUN-PID-N.tmp     an archive being written, renamed onto STEM.zip when whole

A task of a run (:func:`supervised`) may create a temp file only while its run is open. The
run's process closes the run (:meth:`RunTemps.close`) by unlinking the live mark, waiting for
tasks that are creating a temp file at that moment (a shared flock each, against the closer's
exclusive one; a lock and a "closed" mark in the run's own process), and only then removing the
temp folders, which a closing mark, held from before the unlink, covers meanwhile: once closed,
no task of the run — in a given thread pool, a given process pool, anywhere — can make a temp
file that the clean-up would miss.

A run whose process is gone leaves its live mark unlocked: the next run into the same folder
(:func:`remove_stale`) removes that run's temp folders; a live mark that is still locked is a
live run and is left alone.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ._errors import StemError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no file locks, no stale-run detection
    fcntl = None  # type: ignore[assignment]

__all__ = ["TEMP_PREFIX", "TEMP_SUFFIX", "RunClosed", "RunTemps", "deleting", "is_temp_name", "remove_stale",
           "remove_temps", "run_open", "supervised", "temp_file"]

log = logging.getLogger("zipkit")

TEMP_PREFIX = ".zipkit-"
TEMP_SUFFIX = ".tmp"


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is one of zipkit's temp names (``.zipkit-….tmp``): never an input, never offered.

    The one rule for the planner, the form's extension scan and the clean-up of runs that are gone.
    """
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)

LOCK_SUFFIX = ".lock" + TEMP_SUFFIX
CLOSING_SUFFIX = ".closing" + TEMP_SUFFIX  # held by a run's process while it closes
_NO_LOCKS = {errno.ENOLCK, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS, errno.EBADF}
CLOSE_WAIT = 2.0  # seconds the closer waits for tasks creating a temp file or deleting sources


class RunClosed(StemError):
    """A task of a run that has been closed (stopped, cancelled, finished) tried to write."""


_temp_numbers = itertools.count()
_made_folders: set[Path] = set()  # temp folders this process made (one per output folder and run)
_lock = threading.Lock()  # temp-file creation vs. closing, within this process
_owned: dict[str, int] = {}  # run id → pid of its owner (a forked child inherits this, but is no owner)
_closed: set[str] = set()  # runs of this process that are closed
_local = threading.local()  # the run id whose task this thread is running (see supervised)
_busy: dict[str, int] = {}  # run id → its tasks in this process deleting sources right now
_idle = threading.Condition(_lock)
_live_marks: set[int] = set()  # descriptors of this process's held live marks
_run_alive: list[Callable[[], bool]] = []  # a pool worker's check that its run's process is still its parent


def watch_run(alive: Callable[[], bool]) -> None:
    """In a pool worker: ``alive()`` says whether the run's process lives; once it is false, the
    gates refuse new temp files and deletions, even though the dead run's live mark is still there."""
    _run_alive[:] = [alive]


def _run_lives() -> bool:
    return all(alive() for alive in _run_alive)


def _drop_inherited_marks() -> None:
    """In a forked child (a pool worker): close the run's live marks it inherited.

    A flock belongs to the open file, shared by every process that has it open: a worker that
    kept its copy would keep a killed run "live" while it is dying, and a run started right
    after the kill would leave that run's temp folders behind.
    """
    for fd in _live_marks:
        with contextlib.suppress(OSError):
            os.close(fd)
    _live_marks.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_inherited_marks)


def _owns(run_id: str) -> bool:
    return _owned.get(run_id) == os.getpid()


def lock_path(folder: Path, run_id: str) -> Path:
    return folder / f"{TEMP_PREFIX}{run_id}{LOCK_SUFFIX}"


def closing_path(folder: Path, run_id: str) -> Path:
    return folder / f"{TEMP_PREFIX}{run_id}{CLOSING_SUFFIX}"


def _flock(fd: int, how: int) -> bool:
    """flock ``fd``; False where the file system has no locks (then nothing is locked)."""
    if fcntl is None:
        return False
    try:
        fcntl.flock(fd, how)
        return True
    except OSError as e:
        if e.errno in _NO_LOCKS:
            return False
        raise


@contextlib.contextmanager
def supervised(run_id: str) -> Iterator[None]:
    """Mark the calling thread as running a task of run ``run_id``: its temp files need the run open."""
    before = getattr(_local, "run", None)
    _local.run = run_id
    try:
        yield
    finally:
        _local.run = before


def run_open(folder: Path, run_id: str) -> bool:
    """Whether run ``run_id`` (writing into ``folder``) is still open and its process alive.

    In the run's own process: not closed. Elsewhere: its live mark exists and is locked by
    someone (a live mark that anyone may lock exclusively belongs to a run that is gone).
    """
    if run_id in _closed:
        return False
    if _owns(run_id):
        return True
    try:
        fd = os.open(lock_path(folder, run_id), os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot tell: carry on as before live marks existed
    try:
        if fcntl is None or not _flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB):
            return os.fstat(fd).st_nlink > 0
        return False  # nobody holds it: the run's process is gone (or it is closing)
    except BlockingIOError:
        return os.fstat(fd).st_nlink > 0
    finally:
        os.close(fd)


def temp_file(folder: Path, run_id: str) -> tuple[int, Path]:
    """Create ``.zipkit-RUN-PID-N.tmp`` (mode 0666 less the umask, as zip does) in this
    process's own temp folder ``.zipkit-RUN-PID.tmp`` inside ``folder``.

    Creating a file locks its folder: with one temp folder per worker, workers create their
    temp files in parallel, and only the rename onto ``STEM.zip`` takes the output folder's lock.
    In a task of a run (:func:`supervised`) the file is made only while the run is open, else
    :class:`RunClosed` is raised and nothing is made.
    """
    if getattr(_local, "run", None) != run_id:
        return _create(folder, run_id)
    if _owns(run_id):
        with _lock:
            if run_id in _closed:
                raise RunClosed(f"run {run_id} was stopped before this stem began; nothing written")
            return _create(folder, run_id)
    try:
        if run_id in _closed or not _run_lives():  # a dead run's mark is not even held for a moment
            raise FileNotFoundError
        gate = os.open(lock_path(folder, run_id), os.O_RDONLY)
    except FileNotFoundError:
        raise RunClosed(f"run {run_id} was stopped before this stem began; nothing written") from None
    try:
        if fcntl is not None:
            _flock(gate, fcntl.LOCK_SH)  # waits while the run's process is removing its temp folders
        if os.fstat(gate).st_nlink == 0 or not _run_lives():
            raise RunClosed(f"run {run_id} was stopped before this stem began; nothing written")
        return _create(folder, run_id)
    finally:
        os.close(gate)  # releases the shared lock


@contextlib.contextmanager
def deleting(folder: Path, run_id: str) -> Iterator[bool]:
    """Around a task's deletion of its sources: yields whether the run is still open.

    Closing the run waits for deletions under way (a few seconds at most), so that the run's
    report, made after the close, names every source that is gone; once closed, nothing more
    is deleted.
    """
    if getattr(_local, "run", None) != run_id:
        yield True
        return
    if _owns(run_id):
        with _lock:
            allowed = run_id not in _closed
            if allowed:
                _busy[run_id] = _busy.get(run_id, 0) + 1
        try:
            yield allowed
        finally:
            if allowed:
                with _lock:
                    _busy[run_id] -= 1
                    _idle.notify_all()
        return
    if not _run_lives() or not run_open(folder, run_id):  # a killed run's mark is there, but unheld
        yield False
        return
    try:
        gate = os.open(lock_path(folder, run_id), os.O_RDONLY)
    except FileNotFoundError:
        yield False
        return
    try:
        if fcntl is not None:
            _flock(gate, fcntl.LOCK_SH)
        yield os.fstat(gate).st_nlink > 0 and _run_lives()
    finally:
        os.close(gate)


def _create(folder: Path, run_id: str) -> tuple[int, Path]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    tag = f"{TEMP_PREFIX}{run_id}-{os.getpid()}"
    own = folder / f"{tag}{TEMP_SUFFIX}"
    while True:
        path = own / f"{tag}-{next(_temp_numbers)}{TEMP_SUFFIX}"
        try:
            return os.open(path, flags, 0o666), path
        except FileExistsError:  # left by an earlier process with the same pid
            continue
        except FileNotFoundError:
            if not folder.is_dir():
                raise
            with contextlib.suppress(FileExistsError):
                os.mkdir(own)  # 0777 less the umask, so that the run (maybe another user) can remove it
            _made_folders.add(own)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_folder(path: str) -> None:
    os.rmdir(path)  # a seam: the tests run a task's temp-file creation right here


def remove_temps(output: Path, run_id: str) -> int:
    """Remove run ``run_id``'s temp folders (one per process) and any temp file left in them."""
    n = 0
    mine = f"{TEMP_PREFIX}{run_id}-"
    with contextlib.suppress(OSError):
        for e in os.scandir(output):
            if not (e.name.startswith(mine) and e.name.endswith(TEMP_SUFFIX)):
                continue
            if e.is_dir(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    for f in os.scandir(e.path):
                        with contextlib.suppress(OSError):
                            os.unlink(f.path)
                            n += 1
                with contextlib.suppress(OSError):
                    _remove_folder(e.path)
                _made_folders.discard(Path(e.path))
            else:
                with contextlib.suppress(OSError):
                    os.unlink(e.path)
                    n += 1
    if n:
        log.info("removed %d temp file(s) left by stopped workers", n)
    return n


def _run_of(name: str) -> str | None:
    """The run id in a temp-area name (``.zipkit-RUN-…tmp`` or ``.zipkit-RUN.lock.tmp``)."""
    if not is_temp_name(name):
        return None
    rest = name[len(TEMP_PREFIX):]
    cut = min((i for i in (rest.find("-"), rest.find(".")) if i > 0), default=-1)
    return rest[:cut] if cut > 0 else None


STALE_GRACE = 0.25  # s: how long another process may hold a gone run's mark for a moment


def _lock_within(fd: int, seconds: float) -> bool:
    """Lock a live mark exclusively, waiting up to ``seconds`` for others' holds to end;
    BlockingIOError if one lasts longer (a live run's process holds its mark for the whole run;
    a worker passing its gate, or another process probing the mark, for a moment)."""
    assert fcntl is not None
    deadline = time.monotonic() + seconds
    while True:
        try:
            return _flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.002)


def remove_stale(output: Path, keep: str) -> list[str]:
    """Remove the temp folders of runs into ``output`` whose process is gone; return their ids.

    A run is gone when its live mark (or, while it closes, its closing mark) can be locked
    exclusively (nobody holds it), or when it has temp folders and neither mark. The run ``keep``
    (the caller's) is never touched.
    """
    try:
        names = os.listdir(output)
    except OSError:
        return []
    runs: dict[str, list[str]] = {}  # run id → its temp-area names
    for name in names:
        run = _run_of(name)
        if run is not None and run != keep and not _owns(run):
            runs.setdefault(run, []).append(name)
    gone = []
    held: dict[str, int] = {}  # run id → its open mark, held by another process right now
    for run, its in sorted(runs.items()):
        marks = [p for p in (lock_path(output, run), closing_path(output, run)) if p.name in its]
        if not marks:
            n = remove_temps(output, run)
            gone.append(run)
            log.debug("removed the temp folder(s) of run %s (no live mark; %d temp file(s))", run, n)
            continue
        for mark in marks:  # the live mark, else the closing one (a run unlinks the first as it closes)
            try:
                held[run] = os.open(mark, os.O_RDONLY)
                break
            except OSError:
                continue
    # one grace for all marks: a live run's mark stays held, a gone run's brief holds end
    deadline = time.monotonic() + STALE_GRACE
    try:
        while held:
            for run, fd in list(held.items()):
                try:
                    locked = fcntl is not None and _flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                del held[run]
                try:
                    if not locked:
                        continue  # no locks here: cannot tell a live run from a gone one
                    if os.fstat(fd).st_nlink == 0:
                        continue  # the run is closing itself
                    n = remove_temps(output, run)
                    for mark in (lock_path(output, run), closing_path(output, run)):
                        with contextlib.suppress(OSError):
                            os.unlink(mark)
                    gone.append(run)
                    log.debug("removed the temp folder(s) of run %s, whose process is gone (%d temp "
                              "file(s))", run, n)
                finally:
                    os.close(fd)
            if not held or time.monotonic() >= deadline:
                break
            time.sleep(0.002)
    finally:
        for run, fd in held.items():
            log.debug("temp folder(s) of run %s kept: that run is live", run)
            os.close(fd)
    return sorted(gone)


def _create_held(path: Path) -> int:
    """Create the live mark ``path`` and hold it (a shared flock). On Linux the file is made
    unnamed (``O_TMPFILE``), locked, then linked into place, so that no sweep ever sees it
    unheld; elsewhere, or where the file system cannot, it is created, then locked."""
    unnamed = getattr(os, "O_TMPFILE", 0)
    if unnamed and fcntl is not None and os.path.isdir("/proc/self/fd"):
        try:
            fd = os.open(path.parent, unnamed | os.O_RDWR, 0o666)
        except OSError:
            fd = -1  # no O_TMPFILE on this file system
        if fd >= 0:
            folder = -1
            try:
                _flock(fd, fcntl.LOCK_SH)
                folder = os.open(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
                # linkat(..., AT_SYMLINK_FOLLOW), which a dir_fd makes os.link call: plain link()
                # links /proc's symlink itself and fails (EXDEV)
                os.link(f"/proc/self/fd/{fd}", path.name, dst_dir_fd=folder)
            except FileExistsError:
                os.close(fd)
                raise
            except OSError:
                os.close(fd)  # cannot link it into place here: the plain way below
            else:
                return fd
            finally:
                if folder >= 0:
                    os.close(folder)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
    if fcntl is not None:
        _flock(fd, fcntl.LOCK_SH)
    return fd


class RunTemps:
    """The temp area of one run in one output folder: opened before any task, closed after."""

    def __init__(self, output: Path, run_id: str):
        self.output, self.run_id = output, run_id
        self.path = lock_path(output, run_id)
        self.fd: int | None = None

    def open(self) -> None:
        """Create and hold the live mark, then remove what runs that are gone left behind."""
        with _lock:
            _owned[self.run_id] = os.getpid()
            _closed.discard(self.run_id)
        for _ in range(5):
            try:
                fd = _create_held(self.path)
            except FileExistsError:
                os.unlink(self.path)  # a run with the same id? only after a crash: it is ours now
                continue
            except OSError as e:
                log.debug("no live mark for run %s in %s: %s", self.run_id, self.output, e)
                break
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:  # another run took it for a gone run's mark in between
                same = False
            if same:
                self.fd = fd
                _live_marks.add(fd)
                break
            os.close(fd)
        remove_stale(self.output, self.run_id)

    def close(self) -> int:
        """Close the run: no task of it makes a temp file from now on; remove its temp folders."""
        with _lock:
            _closed.add(self.run_id)
            _owned.pop(self.run_id, None)
            fd, self.fd = self.fd, None
            if fd is not None:
                _live_marks.discard(fd)
            _idle.wait_for(lambda: not _busy.get(self.run_id), timeout=CLOSE_WAIT)
            _busy.pop(self.run_id, None)
            closing = None
            if fd is not None:
                # held until the temp folders are gone: a sweep never sees them without a held mark
                with contextlib.suppress(OSError):
                    closing = _create_held(closing_path(self.output, self.run_id))
                with contextlib.suppress(OSError):
                    os.unlink(self.path)  # tasks elsewhere see the run closed
                if fcntl is not None:  # wait for tasks that passed the gate before the unlink
                    try:
                        _lock_within(fd, CLOSE_WAIT)
                    except BlockingIOError:
                        log.debug("run %s: a task kept its temp-file lock; cleaning up anyway", self.run_id)
            try:
                return remove_temps(self.output, self.run_id)
            finally:
                if closing is not None:
                    with contextlib.suppress(OSError):
                        os.unlink(closing_path(self.output, self.run_id))
                    os.close(closing)
                if fd is not None:
                    os.close(fd)
