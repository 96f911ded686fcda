"""What runs inside a worker process: a batch of stems, with byte progress sent home.

Module-level functions only, so that spawn and forkserver workers can import them.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Sequence
from typing import Any

from ._archive import write_archive
from ._plan import ArchiveOptions, StemPlan
from ._report import StemResult

__all__ = ["init_worker", "run_batch", "run_indexed"]

_queue: Any = None  # a multiprocessing queue set by init_worker, or None
_stems: Sequence[StemPlan] = ()  # the plan's stems, inherited by a forked worker
_options: ArchiveOptions | None = None
_PROGRESS_EVERY = 0.2  # seconds between byte-progress messages from one worker


def init_worker(queue: Any, stems: Sequence[StemPlan] = (), options: ArchiveOptions | None = None) -> None:
    """Pool initializer: leave Ctrl-C to the parent; send progress and zipkit's log records home.

    Log records travel on the progress queue so that they appear in the parent (in Jupyter: in
    the cell that runs), not on the worker's stderr at some later time. ``stems`` and
    ``options`` are given to forked workers, which inherit them without pickling; tasks then
    name stems by index (:func:`run_indexed`).
    """
    global _queue, _stems, _options
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _queue, _stems, _options = queue, stems, options
    if queue is not None:
        from logging.handlers import QueueHandler

        log = logging.getLogger("zipkit")
        log.handlers[:] = [QueueHandler(queue)]
        log.propagate = False


class _Ticker:
    """Adds up bytes read and sends ``(stem, bytes)`` to the parent at most every 0.2 s."""

    def __init__(self, stem: str, send):
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
              send=None) -> list[StemResult]:
    """Archive each stem of ``batch`` in turn; one stem's failure does not stop the others."""
    if send is None and _queue is not None:
        send = _queue.put
    out = []
    for stem in batch:
        tick = _Ticker(stem.stem, send) if send is not None else None
        out.append(write_archive(stem, options, run_id=run_id, on_bytes=tick))
        # no final flush: the parent counts a finished stem's bytes from its result
    return out


def run_indexed(indices: list[int], run_id: str) -> list[StemResult]:
    """:func:`run_batch` for the stems at ``indices`` of the plan given to :func:`init_worker`."""
    assert _options is not None, "run_indexed needs a worker initialised with the plan"
    return run_batch([_stems[i] for i in indices], _options, run_id)
