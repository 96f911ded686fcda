"""Run a plan on a Dask cluster: start or connect a ``distributed.Client``, hand the core an Executor.

``run_plan(plan, executor="dask")`` (or a scheduler address, or the CLI's ``--dask ADDRESS``)
comes here through the executor registry (:mod:`zipkit._executors`), which asks
:func:`backend_for`. The core stays the same: it batches, orders largest first, submits through
the :class:`DaskBackend` and records the results; this module only decides where the tasks run
and adds what a cluster needs on top:

- tasks run as ``run_batch_on_worker``, which names the worker's host in a stem's error (a path
  that one node cannot see is the usual failure on shared storage) and checks once per task
  that the output folder is visible there;
- a worker that dies is noticed from the scheduler's ``remove-worker`` events; the stems Dask
  ran again elsewhere say so in the report (``attempts`` 2, "retried"); a task that Dask gives up
  on (``KilledWorker``) reaches the core as a failed task, and the core retries its stems once;
- before the first task, the workers are checked to import zipkit (one clear error, not one
  failure per stem);
- on the way out, temp files left by killed workers are removed.

``executor=client.get_executor()`` gets the same through :func:`adapted`; any other executor is
left alone.

``distributed`` is imported only here, and only when asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.util
import inspect
import json
import logging
import os
import socket
import sys
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

from ._errors import UsageError
from ._plan import ArchiveOptions, StemPlan
from ._pool import available_cpus
from ._report import StemResult
from ._tempfiles import remove_temps
from ._worker import run_batch

__all__ = [
    "DaskBackend",
    "DaskExecutor",
    "adapted",
    "backend_for",
    "check_workers",
    "dask_executor",
    "is_dask_executor",
    "run_batch_on_worker",
]

log = logging.getLogger("zipkit")

LOCAL_SPECS = ("dask", "dask://local")
_SCHEMES = ("tcp://", "tls://", "inproc://", "ucx://", "ws://", "wss://")
_INSTALL = "pip install 'zipkit[dask]'"


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as e:
        raise UsageError(f"running on Dask needs the distributed package, which is not installed: "
                         f"{_INSTALL}") from e
    return distributed


def is_dask_executor(executor: object) -> bool:
    """True for ``client.get_executor()`` of ``distributed`` (checked without importing Dask:
    if it is not imported, the object cannot be one)."""
    cf = sys.modules.get("distributed.cfexecutor")
    return cf is not None and isinstance(executor, cf.ClientExecutor)


# -- what runs on a worker ---------------------------------------------------------------------
def run_batch_on_worker(batch: list[StemPlan], options: ArchiveOptions, run_id: str) -> list[StemResult]:
    """:func:`zipkit._worker.run_batch` on a Dask worker, with the worker's host in every error.

    A worker that cannot see the output folder fails the whole batch at once with a message
    naming the folder and the host, instead of one ``FileNotFoundError`` on a temp file per stem.
    """
    host = socket.gethostname()
    folders = {s.archive.parent for s in batch if s.action != "skip"}
    missing = sorted(str(f) for f in folders if not os.path.isdir(f))
    if missing:
        msg = (f"output folder {missing[0]} does not exist on worker host {host!r}: the output "
               "folder must be on storage that every Dask worker sees")
        return [StemResult(s.stem, None, s.names, 0, 0, 0.0, "failed", error_type="FileNotFoundError",
                           message=msg) for s in batch]
    return [_on_host(r, host) for r in run_batch(batch, options, run_id)]


def _on_host(r: StemResult, host: str) -> StemResult:
    if r.status not in ("failed", "timed_out"):
        return r
    hint = ("; is it on storage that every Dask worker sees?"
            if r.error_type in ("FileNotFoundError", "NotADirectoryError") else "")
    return dataclasses.replace(r, message=f"{r.message} (on worker host {host!r}{hint})")


def _probe() -> tuple[str, str]:
    """On a worker: zipkit's version and the host (unpickling this needs zipkit there)."""
    from . import __version__

    return __version__, socket.gethostname()


def check_workers(client: Any, probe: Callable[[], Any] = _probe) -> None:
    """Fail early, with one clear message, when the Dask workers cannot import zipkit.

    Otherwise every task would fail on its worker and each stem would be reported lost.
    A different zipkit version on a worker is logged as a warning.
    """
    from . import __version__

    try:
        seen = client.run(probe)
    except ImportError as e:
        raise UsageError(f"the Dask workers cannot import zipkit ({type(e).__name__}: {e}); install "
                         f"zipkit {__version__} in the workers' environment too") from e
    other = {w: v for w, v in seen.items() if isinstance(v, tuple) and v[0] != __version__}
    if other:
        log.warning("Dask worker(s) run another zipkit version than this process (%s): %s",
                    __version__, ", ".join(f"{w} on {h}: {v}" for w, (v, h) in sorted(other.items())))


def _ignore_event(event: Any) -> None:
    """The client's handler for the scheduler's events once no DaskExecutor listens."""


# -- the executor the core is given -------------------------------------------------------------
class DaskExecutor(Executor):
    """A ``concurrent.futures.Executor`` over a ``distributed.Client``, shaped for zipkit runs.

    Made by :func:`dask_executor` (or :func:`adapted` from ``client.get_executor()``); not shut
    down by a run, and it never closes the client it was given.

    Parameters
    ----------
    client
        A connected ``distributed.Client``.
    **submit_kwargs
        Passed to ``client.submit`` for every task: ``workers``, ``resources``, ``retries``,
        ``allow_other_workers`` (e.g. ``resources={"io": 1}`` to cap tasks per node).

    Examples
    --------
    >>> with dask_executor("tcp://scheduler:8786") as ex:  # doctest: +SKIP
    ...     report = zipkit.run_plan(p, executor=ex)
    """

    def __init__(self, client: Any, **submit_kwargs: Any):
        self._client = client
        self._submit_kwargs = submit_kwargs
        self._lock = threading.Lock()
        self._lost: dict[str, str] = {}        # task key → address of the worker that died running it
        self._pending: dict[str, Any] = {}     # our task keys still running → their Dask futures
        self._runs: set[tuple[Path, str]] = set()  # (output folder, run id) served, for temp cleanup
        self._shutdown = False
        #: what happened on the cluster that the report should say (see :class:`DaskBackend`)
        self.notes: list[str] = []
        previous = getattr(client, "_event_handlers", {}).get("all")
        self._previous_handler = None if previous is _ignore_event else previous
        client.subscribe_topic("all", self._on_event)

    def capacity(self) -> int:
        """Threads in the cluster now (0: it cannot say): the core keeps twice as many tasks in
        flight."""
        try:
            n = int(sum(self._client.nthreads().values()))
        except Exception:  # noqa: BLE001 - a cluster that cannot answer gets the core's default
            return 0
        if not n:
            log.warning("no Dask worker is connected yet; tasks wait until one joins")
        return n

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` tasks go to."""
        return self._client

    def __repr__(self) -> str:
        return f"DaskExecutor({getattr(self._client.scheduler, 'address', '?')})"

    def _on_event(self, event: tuple[float, dict[str, Any]]) -> None:
        msg = event[1] if isinstance(event, tuple) and len(event) == 2 else event
        if isinstance(msg, dict) and msg.get("action") == "remove-worker" and not msg.get("expected"):
            worker = msg.get("worker", "?")
            with self._lock:
                keys = set(msg.get("processing-tasks", ())) | set(msg.get("lost-computed-tasks", ()))
                ours = [k for k in keys if k in self._pending]
                for k in ours:
                    self._lost[k] = worker
            if ours:
                log.warning("Dask worker %s died while running %d zipkit task(s); they run again",
                            worker, len(ours))
                self.notes.append(f"Dask worker {worker} died during the run; its {len(ours)} "
                                  "task(s) were run again")
        if self._previous_handler is not None:  # someone else's handler: keep it working
            res = self._previous_handler(event)
            if inspect.isawaitable(res):
                asyncio.ensure_future(res)

    def submit_batch(self, batch: Sequence[StemPlan], options: ArchiveOptions,
                     run_id: str) -> Future[list[StemResult]]:
        """Archive ``batch`` on the cluster (:func:`run_batch_on_worker`); the temp files its
        killed workers leave are removed by :meth:`cleanup`."""
        with self._lock:
            self._runs.update((s.archive.parent, run_id) for s in batch)
        return self.submit(run_batch_on_worker, list(batch), options, run_id)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn(*args, **kwargs)`` on the cluster."""
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        key = f"zipkit-{getattr(fn, '__name__', 'task')}-{uuid.uuid4().hex}"
        outer: Future[Any] = Future()
        task = self._client.submit(fn, *args, key=key, pure=False, **{**self._submit_kwargs, **kwargs})
        with self._lock:
            self._pending[key] = task

        def pass_cancel(f: Future[Any]) -> None:
            if f.cancelled():
                task.cancel()

        outer.add_done_callback(pass_cancel)
        task.add_done_callback(lambda t: self._finish(key, t, outer))
        return outer

    def _finish(self, key: str, task: Any, outer: Future[Any]) -> None:
        """In Dask's callback thread: fetch the result, release the key, complete ``outer``."""
        with self._lock:
            self._pending.pop(key, None)
            lost = self._lost.pop(key, None)
        try:
            if task.status == "cancelled":
                if outer.cancel():
                    outer.set_running_or_notify_cancel()
                return
            try:
                result = task.result()
            except BaseException as e:  # the task failed (KilledWorker, an error outside stems)
                with contextlib.suppress(Exception):
                    outer.set_exception(e)
                return
            if lost and isinstance(result, list):
                result = [_ran_again(r, lost) if isinstance(r, StemResult) else r for r in result]
            with contextlib.suppress(Exception):  # InvalidStateError: cancelled meanwhile
                outer.set_result(result)
        finally:
            # Forget the result on the cluster now: a finished task whose result a worker still
            # holds would be run again if that worker died.
            with contextlib.suppress(Exception):
                task.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop listening to the scheduler; cancel or wait for this executor's tasks.

        The client is left open (it belongs to whoever made it).
        """
        self._shutdown = True
        with self._lock:
            pending = list(self._pending.values())
        if pending and (cancel_futures or not wait):
            with contextlib.suppress(Exception):
                self._client.cancel(pending)
        elif pending:
            from distributed import wait as wait_all

            wait_all(pending)  # type: ignore[no-untyped-call]  # distributed's wait is untyped
        with contextlib.suppress(Exception):
            if self._previous_handler is not None:
                self._client.subscribe_topic("all", self._previous_handler)
            else:
                self._client.unsubscribe_topic("all")
                # Events already on their way still arrive, and a client with no handler for
                # them logs an error: leave a no-op (distributed keeps the handler anyway).
                handlers = getattr(self._client, "_event_handlers", None)
                if handlers is not None and handlers.get("all") == self._on_event:
                    handlers["all"] = _ignore_event

    def cleanup(self) -> None:
        """Remove temp files that killed workers left for the runs this executor served."""
        with self._lock:
            runs = sorted(self._runs)
        for folder, run_id in runs:
            remove_temps(folder, run_id)


def _ran_again(r: StemResult, worker: str) -> StemResult:
    """``r`` came from a second run of its task, after ``worker`` died running the first."""
    note = f"its Dask worker {worker} died; Dask ran it again on another worker"
    if r.status in ("failed", "timed_out"):
        note = (f"{r.message}; before that, {note} (had the first run finished, its archive is "
                "in place)")
    elif r.message:
        note = r.message
    return dataclasses.replace(r, attempts=max(2, r.attempts + 1), message=note)


@contextlib.contextmanager
def adapted(executor: Executor) -> Iterator[Executor]:
    """For one run: ``client.get_executor()`` → a :class:`DaskExecutor` on the same client.

    Any other executor is yielded unchanged. The client is not closed.
    """
    if isinstance(executor, DaskExecutor) or not is_dask_executor(executor):
        yield executor
        return
    kwargs = {k: v for k, v in getattr(executor, "_kwargs", {}).items() if k != "pure"}
    client = executor._client  # type: ignore[attr-defined]  # ClientExecutor has no public one
    check_workers(client)
    ex = DaskExecutor(client, **kwargs)
    try:
        yield ex
    finally:
        ex.shutdown(wait=False, cancel_futures=True)
        ex.cleanup()


def _parse(spec: str) -> tuple[str, str]:
    """``spec`` → ("local", "") | ("address", addr) | ("file", path)."""
    s = spec.strip()
    if s.lower() in LOCAL_SPECS:
        return "local", ""
    if s.lower().endswith(".json") and "://" not in s:
        if not Path(s).is_file():
            raise UsageError(f"Dask scheduler file {s} does not exist")
        return "file", s
    if s.lower().startswith(_SCHEMES):
        return "address", s
    host, sep, port = s.rpartition(":")
    if sep and host and port.isdigit() and "/" not in s:
        return "address", f"tcp://{s}"
    raise UsageError(f"executor {spec!r}: expected 'dask' (a local cluster), a Dask scheduler address "
                     "such as 'tcp://host:8786', or a scheduler file (.json)")


def _check_reachable(where: str, kind: str, timeout: float | None) -> None:
    """Fail fast when a ``tcp://`` scheduler does not answer (a refused port fails at once).

    Checked before making a ``Client``: one that fails to connect keeps its event-loop thread.
    """
    address = where
    if kind == "file":
        try:
            address = json.loads(Path(where).read_text(encoding="utf-8"))["address"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UsageError(f"Dask scheduler file {where} cannot be read: {e}") from e
    parts = urllib.parse.urlsplit(address)
    if parts.scheme != "tcp" or not parts.hostname or not parts.port:
        return  # tls://, inproc:// …: left to Dask
    if timeout is None:
        import dask
        from dask.utils import parse_timedelta

        timeout = parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"), "s")
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=timeout).close()
    except OSError as e:
        raise UsageError(f"cannot reach the Dask scheduler at {where}"
                         + (f" ({address})" if address != where else "")
                         + f": {e.strerror or e}") from e


@contextlib.contextmanager
def dask_executor(spec: str = "dask", *, workers: int | str | None = "auto",
                  timeout: float | None = None) -> Iterator[DaskExecutor]:
    """Start or connect a Dask cluster for one run and yield an executor on it.

    Parameters
    ----------
    spec
        ``"dask"`` or ``"dask://local"``: a ``distributed.LocalCluster`` of worker processes on
        127.0.0.1 (one thread each), closed at the end. ``"tcp://host:8786"`` (or ``host:8786``,
        ``tls://…``): connect to that scheduler; only the client is closed at the end. A path to
        a scheduler file (``.json``, as written by ``dask scheduler --scheduler-file`` or
        dask-mpi/dask-jobqueue): connect to the scheduler it names.
    workers
        Local cluster only: worker processes, ``"auto"`` = the CPUs this process may use.
    timeout
        Seconds to wait for the scheduler (default: Dask's ``distributed.comm.timeouts.connect``).

    Yields
    ------
    DaskExecutor

    Raises
    ------
    UsageError
        ``distributed`` is not installed (``pip install 'zipkit[dask]'``), the spec is not
        understood, the scheduler cannot be reached, or its workers cannot import zipkit.

    Examples
    --------
    >>> with dask_executor("tcp://10.0.0.5:8786") as ex:  # doctest: +SKIP
    ...     report = zipkit.run_plan(plan, executor=ex)
    """
    kind, where = _parse(spec)
    distributed = _distributed()
    cluster = client = ex = None
    try:
        if kind == "local":
            n = available_cpus() if workers in (None, "auto") else workers
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise UsageError(f"workers must be 'auto' or a positive integer, not {workers!r}")
            try:
                cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                                   host="127.0.0.1", dashboard_address="127.0.0.1:0")
            except RuntimeError as e:
                raise UsageError(
                    f"the local Dask cluster did not start ({e}). Dask starts its workers with "
                    "spawn, which imports the main script again: in a script, put the call under "
                    "`if __name__ == '__main__':`") from e
            client = distributed.Client(cluster, set_as_default=False)
            log.info("started a local Dask cluster of %d worker(s) at %s; dashboard %s%s", n,
                     cluster.scheduler_address, client.dashboard_link,
                     "" if importlib.util.find_spec("bokeh") else " (pip install bokeh to see it)")
        else:
            kw: dict[str, Any] = {"set_as_default": False}
            if timeout is not None:
                kw["timeout"] = timeout
            _check_reachable(where, kind, timeout)
            try:
                client = (distributed.Client(scheduler_file=where, **kw) if kind == "file"
                          else distributed.Client(where, **kw))
            except (OSError, TimeoutError) as e:
                raise UsageError(f"cannot reach the Dask scheduler at {where}: {e}") from e
            log.info("connected to the Dask scheduler at %s (%d worker(s))", client.scheduler.address,
                     len(client.nthreads()))
        check_workers(client)
        ex = DaskExecutor(client)
        yield ex
    finally:
        if ex is not None:
            ex.shutdown(wait=False, cancel_futures=True)
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close()
        if ex is not None:
            ex.cleanup()


# -- the backend the core runs on (zipkit._executors' protocol) ----------------------------------
class DaskBackend:
    """A :class:`DaskExecutor` as the core's backend: its capacity, its tasks, its notes."""

    name = "DaskExecutor"

    def __init__(self, executor: DaskExecutor) -> None:
        self.executor = executor

    def capacity(self) -> int:
        return self.executor.capacity() or available_cpus()

    def submit(self, batch: Sequence[StemPlan], options: ArchiveOptions,
               run_id: str) -> Future[list[StemResult]]:
        return self.executor.submit_batch(batch, options, run_id)

    def notes(self) -> list[str]:
        return list(self.executor.notes)

    def broken(self) -> None:
        pass

    def close(self) -> None:
        pass  # whoever made the executor shuts it down and removes its temp files


@contextlib.contextmanager
def _backend(executors: contextlib.AbstractContextManager[Executor]) -> Iterator[DaskBackend]:
    with executors as ex:
        assert isinstance(ex, DaskExecutor)
        yield DaskBackend(ex)


def backend_for(executor: object,
                workers: int | str | None) -> contextlib.AbstractContextManager[DaskBackend] | None:
    """The registry's Dask entry: a spec string (a cluster for one run, :func:`dask_executor`),
    ``client.get_executor()`` (:func:`adapted`) or a :class:`DaskExecutor` (used as given); None
    for anything else."""
    if isinstance(executor, str):
        return _backend(dask_executor(executor, workers=workers))
    if isinstance(executor, DaskExecutor):
        return contextlib.nullcontext(DaskBackend(executor))
    if is_dask_executor(executor):
        assert isinstance(executor, Executor)
        return _backend(adapted(executor))
    return None
