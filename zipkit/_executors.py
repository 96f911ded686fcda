"""Where a run's tasks run: one small protocol, and a registry that picks a backend for ``executor=``.

A :class:`Backend` is what the run needs from any place that runs tasks:

- ``name``: what the report calls it (``"ThreadPoolExecutor"``, ``"DaskExecutor"``, …);
- ``capacity()``: how many tasks it runs at once (the run keeps twice as many in flight);
- ``submit(batch, options, run_id)``: the task function, applied where the tasks run; a future of
  one :class:`StemResult` per stem;
- ``notes()``: what happened there that the report should say (e.g. a Dask worker that died);
- ``broken()``: called once when it broke, before its unfinished stems run in this process
  (waits until its workers are gone, so none of them can still put an archive in place);
- ``close()``: clean-up after the run (what the caller gave is never shut down).

:func:`open_backend` turns ``executor=`` into one, asking the registry in order: ``None`` is
:class:`LocalPool` (the run starts, supervises and replaces process pools of its own:
:mod:`zipkit._pool`); a string is a Dask spec; an object of a library in the registry gets that
library's backend; any other ``concurrent.futures.Executor`` is used as given. A registry entry
imports its library only when the object given could be one of its (the library is already
imported): ``import zipkit`` stays light.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future
from typing import Literal, Protocol

from ._options import WORKERS
from ._plan import ArchiveOptions, StemPlan
from ._pool import available_cpus, limit_workers
from ._report import StemResult
from ._worker import run_batch

__all__ = ["Backend", "GivenExecutor", "LocalPool", "open_backend"]

log = logging.getLogger("zipkit")

Workers = int | Literal["auto"]


class Backend(Protocol):
    """Where the tasks of one run go (see the module's docstring)."""

    name: str

    def capacity(self) -> int: ...

    def submit(self, batch: Sequence[StemPlan], options: ArchiveOptions,
               run_id: str) -> Future[list[StemResult]]: ...

    def notes(self) -> list[str]: ...

    def broken(self) -> None: ...

    def close(self) -> None: ...


class LocalPool:
    """The default: process pools of the run's own, of ``workers`` processes (``"auto"``: the CPUs
    this process may use), capped by the tasks and by what the process limits hold. One worker
    (or one task) runs in this process."""

    name = "process pool"

    def __init__(self, workers: Workers, tasks: int) -> None:
        self.asked = workers
        n = max(1, min(available_cpus() if workers == "auto" else workers, tasks))
        self.limited = False
        if n > 1:
            fit, why = limit_workers(n)
            if why is not None:
                log.warning("zipkit: %d workers asked for, %s; running %d", n, why, fit)
                n, self.limited = fit, True
        self.workers = n
        self.inline = n <= 1 or tasks <= 1

    def capacity(self) -> int:
        return self.workers

    def threads(self, tasks: int) -> int:
        """Threads per stem for big members: the CPUs the stems leave idle, shared out."""
        asked = available_cpus() if self.asked == "auto" else int(self.asked)
        budget = self.workers if self.limited else asked
        return max(1, budget // max(1, min(self.workers, tasks)))

    def notes(self) -> list[str]:
        return [f"workers lowered to {self.workers} by the process limits"] if self.limited else []


class GivenExecutor:
    """A caller's ``concurrent.futures.Executor`` (thread pool, process pool, mpi4py's), used as
    given and never shut down; tasks run :func:`zipkit._worker.run_batch`."""

    def __init__(self, executor: Executor, size: Callable[[], int] | None = None) -> None:
        self.executor, self.name = executor, type(executor).__name__
        self._size = size

    def capacity(self) -> int:
        """What it says: ``size`` (a registry entry's), the stdlib pools' ``_max_workers``, a
        ``num_workers``; else the CPUs here."""
        if self._size is not None and self._size() > 0:
            return self._size()
        for attr in ("_max_workers", "num_workers"):
            n = getattr(self.executor, attr, None)
            if isinstance(n, int) and not isinstance(n, bool) and n > 0:
                return n
        return available_cpus()

    def submit(self, batch: Sequence[StemPlan], options: ArchiveOptions,
               run_id: str) -> Future[list[StemResult]]:
        return self.executor.submit(run_batch, list(batch), options, run_id)

    def notes(self) -> list[str]:
        return []

    def broken(self) -> None:
        """A given process pool broke: wait (10 s at most) until its worker processes are gone."""
        from multiprocessing.connection import wait as wait_for

        with contextlib.suppress(Exception):
            alive = [p.sentinel for p in (getattr(self.executor, "_processes", None) or {}).values()]
            end = time.monotonic() + 10
            while alive and time.monotonic() < end:  # wait() returns as soon as one is ready
                gone = wait_for(alive, timeout=max(0.0, end - time.monotonic()))
                alive = [s for s in alive if s not in gone]

    def close(self) -> None:
        pass


# -- the registry ---------------------------------------------------------------------------
# Each entry: given ``executor=`` and ``workers=``, a context yielding its backend, or None when
# the object is not its library's. Entries are asked in order; a later one never sees a match.
Entry = Callable[[object, Workers], "contextlib.AbstractContextManager[Backend] | None"]


def _dask(executor: object, workers: Workers) -> contextlib.AbstractContextManager[Backend] | None:
    """Dask: a spec string (``"dask"``, an address, a scheduler file), ``client.get_executor()``
    or a :class:`zipkit._dask.DaskExecutor`."""
    if not isinstance(executor, str) and "distributed" not in sys.modules:
        return None  # not imported: the object cannot be one of its
    from . import _dask

    return _dask.backend_for(executor, workers)


def _mpi(executor: object, workers: Workers) -> contextlib.AbstractContextManager[Backend] | None:
    """mpi4py: an ``MPIPoolExecutor``, whose size is its ``num_workers``."""
    futures = sys.modules.get("mpi4py.futures")
    if futures is None or not isinstance(executor, futures.MPIPoolExecutor):
        return None
    pool = executor

    def size() -> int:
        n = getattr(pool, "_max_workers", None)  # what it was asked for, without waiting for it
        return n if isinstance(n, int) and n > 0 else int(pool.num_workers)

    return contextlib.nullcontext(GivenExecutor(pool, size))


REGISTRY: list[Entry] = [_dask, _mpi]


@contextlib.contextmanager
def open_backend(executor: Executor | str | None, workers: Workers,
                 tasks: int) -> Iterator[LocalPool | Backend]:
    """The backend for ``executor=`` for one run (see the module's docstring); closed after it."""
    if executor is None:
        yield LocalPool(workers, tasks)
        return
    for entry in REGISTRY:
        opened = entry(executor, workers)
        if opened is not None:
            with opened as backend:
                try:
                    yield backend
                finally:
                    backend.close()
            return
    yield GivenExecutor(executor)  # type: ignore[arg-type]  # a str went to Dask's entry


def check_workers(workers: object) -> Workers:
    """``workers`` checked (the options' one checker); ``None`` is ``"auto"``."""
    checked = WORKERS(workers, "workers")
    return "auto" if checked in (None, "auto") else int(checked)
