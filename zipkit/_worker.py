"""What runs inside a worker process: a batch of stems, with byte progress sent home.

Module-level functions only, so that spawn and forkserver workers can import them.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import _tempfiles
from ._archive import write_archive
from ._options import ArchiveOptions
from ._plan import StemPlan
from ._report import StemResult

__all__ = ["init_worker", "run_batch", "run_indexed"]

_queue: Any = None  # a multiprocessing queue set by init_worker, or None
_stems: Sequence[StemPlan] = ()  # the plan's stems, inherited by a forked worker
_options: ArchiveOptions | None = None
_PROGRESS_EVERY = 0.2  # seconds between byte-progress messages from one worker
_parent: int | None = None  # the OS parent a pool worker must keep (its run's process, or the forkserver)
_WATCH_EVERY = 0.2  # seconds between a worker's looks at its parent, where there is no parent-death signal
_PR_SET_PDEATHSIG = 1
Send = Callable[[tuple[str, int]], object]  # puts a (stem, bytes read) progress message home


def _find_prctl() -> Any:
    """libc's ``prctl``, looked up in the parent at import: a forked child then calls it without
    dlopen/dlsym, whose locks another thread of the parent may have held at the fork."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError, ImportError):  # pragma: no cover - no prctl in this libc
        return None


_prctl = _find_prctl()


def _set_parent_death_signal() -> bool:
    """Linux: have the kernel SIGKILL this process when its parent dies (``prctl``).

    ``ZIPKIT_TEST_NO_PDEATHSIG=1`` leaves it out, so that the tests can try the parent watch
    that other systems rely on.
    """
    if _prctl is None or os.environ.get("ZIPKIT_TEST_NO_PDEATHSIG"):
        return False
    done: int = _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    return done == 0


def _watch_parent() -> None:
    while os.getppid() == _parent:
        time.sleep(_WATCH_EVERY)
    os._exit(1)  # the run is gone: stop at once, delete nothing more


def _bind_to_parent() -> None:
    """A pool worker never outlives its run: it dies with its parent (a parent-death signal, or a
    thread that watches the parent where there is none), and it checks that its parent is still
    the run's process right after arranging that, so a parent that died before is caught too."""
    global _parent
    import multiprocessing

    owner = multiprocessing.parent_process()
    signalled = _set_parent_death_signal()
    parent = os.getppid()
    if owner is not None and owner.pid is not None and parent != owner.pid:
        try:  # a forkserver's child: the owner must be alive
            os.kill(owner.pid, 0)
        except ProcessLookupError:
            os._exit(1)
        except OSError:
            pass
    if parent == 1:
        os._exit(1)
    _parent = parent
    _tempfiles.watch_run(lambda: os.getppid() == parent)  # no deletion once the run is gone
    if not signalled:
        threading.Thread(target=_watch_parent, name="zipkit-parent-watch", daemon=True).start()


def _run_gone(run_id: str, folder: Path) -> bool:
    """Between stems: the worker's parent died (pool workers), or the run was closed (given executors)."""
    if _parent is not None:
        return os.getppid() != _parent
    return not _tempfiles.run_open(folder, run_id)


def init_worker(queue: Any, stems: Sequence[StemPlan] = (), options: ArchiveOptions | None = None) -> None:
    """Pool initializer: leave Ctrl-C and SIGHUP to the parent, which stops the pool;
    die with the parent; send progress and zipkit's log records home.

    Log records travel on the progress queue so that they appear in the parent (in Jupyter: in
    the cell that runs), not on the worker's stderr at some later time. ``stems`` and
    ``options`` are given to forked workers, which inherit them without pickling; tasks then
    name stems by index (:func:`run_indexed`).
    """
    global _queue, _stems, _options
    # SIGTERM keeps its default: concurrent.futures stops the workers of a broken pool with it
    for name in ("SIGINT", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    _bind_to_parent()
    _queue, _stems, _options = queue, stems, options
    if queue is not None:
        from logging.handlers import QueueHandler

        log = logging.getLogger("zipkit")
        log.handlers[:] = [QueueHandler(queue)]
        log.propagate = False


class _Ticker:
    """Adds up bytes read and sends ``(stem, bytes)`` to the parent at most every 0.2 s."""

    def __init__(self, stem: str, send: Send):
        self.stem, self.send, self.pending, self.last = stem, send, 0, time.monotonic()

    def __call__(self, n: int) -> None:
        self.pending += n
        now = time.monotonic()
        if now - self.last >= _PROGRESS_EVERY:
            self.flush()
            self.last = now

    def flush(self) -> None:
        if self.pending:
            self.send((self.stem, self.pending))
            self.pending = 0


def run_batch(batch: list[StemPlan], options: ArchiveOptions, run_id: str,
              send: Send | None = None) -> list[StemResult]:
    """Archive each stem of ``batch`` in turn; one stem's failure does not stop the others.

    Stops before the next stem when the run is gone (its process died, or it was stopped while
    this task was still queued in a given executor): no archive begun, no source deleted.
    """
    if send is None and _queue is not None:
        send = _queue.put
    out: list[StemResult] = []
    with _tempfiles.supervised(run_id):
        for stem in batch:
            if _run_gone(run_id, stem.archive.parent):
                if _parent is not None:
                    os._exit(1)
                break
            tick = _Ticker(stem.stem, send) if send is not None else None
            out.append(write_archive(stem, options, run_id=run_id, on_bytes=tick))
            # no final flush: the parent counts a finished stem's bytes from its result
    return out


def run_indexed(indices: list[int], run_id: str) -> list[StemResult]:
    """:func:`run_batch` for the stems at ``indices`` of the plan given to :func:`init_worker`."""
    assert _options is not None, "run_indexed needs a worker initialised with the plan"
    return run_batch([_stems[i] for i in indices], _options, run_id)
