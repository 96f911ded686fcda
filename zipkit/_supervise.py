"""One run of a plan, supervised: batches in flight, results recorded, lost workers' stems run
again, pools replaced, the fallback to this process, and the report.

Where the tasks run is a backend (:mod:`zipkit._executors`); the run's own pools are
:class:`zipkit._pool.OwnPool`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, Future, wait
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from ._batching import Batcher
from ._errors import WorkerLost
from ._executors import Backend, LocalPool
from ._plan import Plan, StemPlan
from ._pool import (
    RUNNING,
    CannotStart,
    OwnPool,
    PoolTask,
    manager_thread_error,
    mp_context,
    reimport_reruns_this_call,
    unreadable_main,
)
from ._progress import Progress
from ._report import Report, StemResult
from ._worker import run_batch

__all__ = ["MAX_ATTEMPTS", "MAX_RESTARTS", "Cancelled", "Run"]

log = logging.getLogger("zipkit")

MAX_ATTEMPTS = 2          # a stem whose worker dies is run once more, then reported as lost
MAX_RESTARTS = 3          # pools replaced after a worker died, per run; then the rest runs in-process

Batch = list[tuple[StemPlan, int]]  # stems of one task, each with its attempt
InFlight = dict[Future[list[StemResult]], Batch]


class Cancelled(BaseException):
    """Raised inside an in-process run when the cancel event is set (cleaned up like Ctrl-C)."""


class Run:
    """State of one run of a plan: what is finished, what is in flight, what to say."""

    def __init__(self, plan: Plan, workers: int, progress: Progress, cancel: threading.Event | None) -> None:
        self.plan, self.workers, self.progress, self.cancel = plan, workers, progress, cancel
        self.options = plan.options
        self.run_id = os.urandom(6).hex()
        self.results: dict[str, StemResult] = {}
        self.attempts: dict[str, int] = {}
        self.notes: list[str] = []
        self.restarts = 0  # pools replaced because a worker died
        self.index = {s.stem: i for i, s in enumerate(plan.stems)}
        self.ran_in_pool = False  # a task of an own pool returned
        self.fell_back = False  # the remaining stems ran in this process: workers could not
        self.by_name = {s.stem: s for s in plan.stems}
        self.started = datetime.now().isoformat(timespec="seconds")  # the report's ``started``
        self.started_ns = time.time_ns() - 50_000_000  # minus a coarse filesystem clock tick

    def record(self, results: Sequence[StemResult], attempt: int = 1) -> None:
        results = [replace(r, attempts=attempt) if attempt > 1 else r for r in results]
        for r in results:  # all kept before a progress callback may raise (Ctrl-C, cancel)
            self.results[r.stem] = r
        for r in results:
            self.progress.finish(r, 0 if r.status == "skipped" else self.by_name[r.stem].bytes)

    def _check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled()

    # -- in this process ---------------------------------------------------------------------
    def inline(self, batcher: Batcher) -> None:
        def send(msg: tuple[str, int]) -> None:
            self.progress.add(*msg)
            self._check_cancel()

        while batcher:
            self._check_cancel()
            for stem, attempt in batcher.next():
                self.record(run_batch([stem], self.options, self.run_id, send=send), attempt)

    # -- in an executor ----------------------------------------------------------------------
    def pooled(self, batcher: Batcher, backend: LocalPool | Backend) -> None:
        """Run the batches on ``backend`` or, for a :class:`LocalPool`, in process pools of this
        run's own, each started with the start method that is safe at its start. A pool whose
        worker died is replaced up to MAX_RESTARTS times; when workers cannot start, or died
        more often, the remaining stems run in this process."""
        given = None if isinstance(backend, LocalPool) else backend
        own = given is None
        current: OwnPool | None = None
        marks: Any = None
        if own:
            ctx = mp_context()
            marks = ctx.RawArray("i", max(1, len(self.plan.stems)))
            try:
                current = self._start_pool(ctx, marks)
            except CannotStart as e:
                self._fall_back(e, batcher)
                return
        timeout = self.options.timeout
        cap = self.workers if timeout else 2 * self.workers
        in_flight: InFlight = {}
        started: dict[Future[list[StemResult]], float] = {}
        overdue: set[Future[list[StemResult]]] = set()
        raised = False
        try:
            while batcher or in_flight:
                self._check_cancel()
                broken = False
                while batcher and len(in_flight) < cap and not broken:
                    batch = batcher.next()
                    stems = [s for s, _ in batch]
                    try:
                        if current is not None:
                            fut = current.submit(stems)
                        else:
                            assert given is not None
                            fut = given.submit(stems, self.options, self.run_id)
                    except BrokenExecutor:  # broke before we saw it: the batch never ran
                        for stem, attempt in batch:
                            batcher.retry(stem, attempt)
                        if given is not None:  # a given executor that broke earlier: finish here
                            self._finish_inline(given, in_flight, batcher)
                            return
                        broken = True
                        continue
                    except CannotStart as e:  # the pool is killed: nothing of it ran to the end
                        for stem, attempt in batch:
                            batcher.retry(stem, attempt)
                        assert current is not None
                        self._abandon(current, in_flight, batcher, e)
                        current = None
                        return
                    in_flight[fut] = batch
                done, _ = wait(list(in_flight), timeout=0.1, return_when=FIRST_COMPLETED)
                if current is not None:
                    self._drain(current.queue)
                    if not done:
                        current.unstick()
                    dead = manager_thread_error(current.pool)
                    if dead is not None and not done:  # no task of this pool will ever end
                        why = f"{type(dead).__name__}: {dead}" if str(dead) else type(dead).__name__
                        current.close(kill=True)
                        self._abandon(current, in_flight, batcher, CannotStart(
                            f"worker processes could not be started ({why})", starved=True))
                        current = None
                        return
                for fut in done:
                    batch = in_flight[fut]  # popped once recorded: a stop before then harvests it
                    started.pop(fut, None)
                    try:
                        results = fut.result()
                    except BaseException as e:  # the task, not a stem, failed: worker lost
                        if isinstance(e, KeyboardInterrupt):
                            raise
                        broken |= isinstance(e, BrokenExecutor)
                        if broken:
                            continue  # settled below, with the pool's other tasks
                        del in_flight[fut]
                        self._lost(batch, batcher, e, overdue=fut in overdue, blameless=bool(overdue))
                        continue
                    if current is not None:
                        current.returned = self.ran_in_pool = True
                    batcher.learn(results)
                    self.record(results, max(a for _, a in batch))
                    del in_flight[fut]
                if broken and given is not None:  # not ours to replace: run what is left here
                    self._finish_inline(given, in_flight, batcher)
                    return
                if broken and current is not None:
                    current.close(kill=False)  # its workers are gone: marks and exit codes are final
                    for fut, batch in in_flight.items():
                        if fut.done() and not fut.cancelled() and fut.exception() is None:
                            current.returned = self.ran_in_pool = True  # returned before the break
                            self.record(fut.result(), max(a for _, a in batch))
                            continue
                        self._lost(batch, batcher, BrokenExecutor("pool broken"), overdue=fut in overdue,
                                   blameless=bool(overdue), state=current.state)
                    in_flight.clear()
                    started.clear()
                    cause, restart = None, False
                    if not current.ran_any():  # a forked worker re-imports nothing: no guard to add
                        cause = CannotStart("the worker processes exited before they started any stem",
                                             guard=not current.forked)
                    elif not overdue:
                        if self.restarts >= MAX_RESTARTS:
                            cause = CannotStart(f"worker processes died {self.restarts + 1} times (a run "
                                                 f"restarts its pool at most {MAX_RESTARTS} times)")
                        restart = cause is None
                    overdue.clear()
                    current = None
                    try:
                        if cause is not None:
                            raise cause
                        current = self._start_pool(None, marks)
                        if restart:  # counted once started: a fresh pool that cannot start is no restart
                            self.restarts += 1
                            log.warning("worker process died; restarting the pool (%d of at most %d "
                                        "restarts)", self.restarts, MAX_RESTARTS)
                    except CannotStart as e:
                        self._fall_back(e, batcher)
                        return
                if timeout and current is not None:
                    self._watch_deadlines(in_flight, started, overdue, timeout, current)
        except BaseException:  # a stop, maybe raised as a submit returned, its task not in flight yet:
            raised = True      # the pool is killed, not waited for
            raise
        finally:
            if current is not None:
                cancelled = self.cancel is not None and self.cancel.is_set()
                current.close(kill=raised or cancelled or bool(in_flight))
            elif not own:
                for fut in in_flight:
                    fut.cancel()
            for fut in in_flight:  # tasks that finished before the stop but were not recorded
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    for r in fut.result():
                        self.results.setdefault(r.stem, r)

    def _abandon(self, pool: OwnPool, in_flight: InFlight, batcher: Batcher, why: CannotStart) -> None:
        """``pool`` could not run its tasks and is killed: what was in flight runs again here, at no
        cost (what finished on disk counts as done), with the rest."""
        for lost in in_flight.values():
            self._lost(lost, batcher, why, overdue=False, blameless=True, state=pool.state)
        in_flight.clear()
        self._fall_back(why, batcher)

    def _start_pool(self, ctx: Any, marks: Any) -> OwnPool:
        """A fresh pool, started by ``ctx`` or the start method safe now; :class:`CannotStart`
        when its workers could not run this call's stems."""
        ctx = ctx or mp_context()
        unreadable = unreadable_main() if ctx.get_start_method() != "fork" else None
        if unreadable is not None:
            raise CannotStart(
                f"the process has {threading.active_count()} threads, so workers cannot be forked, and the "
                f"script's file {unreadable!r}, which they would re-import, does not exist",
                fix="run the script from a file or pass workers=1")
        if ctx.get_start_method() != "fork" and reimport_reruns_this_call():
            raise CannotStart(
                "this script calls zipkit outside an `if __name__ == \"__main__\":` guard and the process "
                f"has {threading.active_count()} threads, so workers cannot be forked and would re-run "
                "the script", guard=True)
        try:
            task = PoolTask(self.plan.stems, self.options, self.run_id, self.index)
            started = OwnPool(self.workers, ctx, marks, task, self._drain)
            log.debug("a pool of %d worker(s) starts by %s (%d thread(s) in this process)",
                      self.workers, ctx.get_start_method(), threading.active_count())
            return started
        except (OSError, RuntimeError) as e:
            raise CannotStart(f"worker processes could not be started ({type(e).__name__}: {e})",
                               starved=True) from e

    def _fall_back(self, why: CannotStart, batcher: Batcher) -> None:
        """Workers cannot run this run's stems: say so once, then zip the rest here, one at a time."""
        fix = why.fix or ('put the script\'s zipkit call under `if __name__ == "__main__":` or pass workers=1'
                          if why.guard else "pass workers=1")
        log.warning("zipkit: sequential fallback: %s; zipping the remaining %d stem(s) in this process "
                    "(%s to run in-process without this warning)", why, len(batcher.queue), fix)
        self.notes.append(f"sequential fallback: {why}")
        self.fell_back = True
        if why.starved:  # no thread to spare either: big members are deflated on this one
            self.options = replace(self.options, threads=1)
        self.inline(batcher)

    def _finish_inline(self, given: Backend, in_flight: InFlight, batcher: Batcher) -> None:
        """The given executor broke: its unfinished stems and the rest run in this process.

        Once its workers are gone (:meth:`Backend.broken`): one still finishing a stem could
        otherwise put that stem's archive in place while it runs again here.
        """
        given.broken()
        for fut, batch in in_flight.items():
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self.record(fut.result(), max(a for _, a in batch))  # returned before the break
                continue
            fut.cancel()
            self._lost(batch, batcher, BrokenExecutor("executor broken"), overdue=False)
        in_flight.clear()
        self.notes.append("the executor broke (a worker died); the unfinished stems were run "
                          "again in this process")
        log.warning("executor broken; running the remaining stems in this process")
        self.inline(batcher)

    def _drain(self, queue: Any) -> None:
        import queue as _q

        while True:
            try:
                msg = queue.get_nowait()
            except (_q.Empty, OSError, ValueError, EOFError):
                return
            if isinstance(msg, logging.LogRecord):  # a worker's log record
                logging.getLogger(msg.name).handle(msg)
            elif msg[0] not in self.results:
                self.progress.add(*msg)

    def _lost(self, batch: Batch, batcher: Batcher, error: BaseException, *, overdue: bool,
              blameless: bool = False, state: Callable[[StemPlan], int] | None = None) -> None:
        """The task running ``batch`` died before it returned.

        Stems whose archive is already in place count as done. ``state`` (own pools) tells
        which stems the worker was running when it died: only those are charged; the rest of
        the batch (not started, or ended but its result lost) runs again at no cost. In an
        ``overdue`` task (killed by the watchdog) the running stem (without ``state``: the first
        unfinished) is the one that hung: it timed out, the rest run again at no cost.
        Otherwise each charged stem runs once more, unless ``blameless`` (killed for another
        task's timeout, or by a failed pool start), then it is reported lost.
        """
        hung_found = False
        for stem, attempt in batch:
            if stem.stem in self.results:
                continue
            self.progress.forget(stem.stem)
            done = self._finished_on_disk(stem, "finished before its worker was stopped")
            charged = state is None or state(stem) == RUNNING
            if done is not None:
                self.record([done], attempt)
            elif overdue and not hung_found and charged:
                hung_found = True
                msg = (f"stem {stem.stem!r} ran past its timeout of {self.options.timeout:g} s and "
                       "did not stop; its worker was replaced")
                self._record_failure(StemResult(stem.stem, None, stem.names, 0, 0, self.options.timeout or 0,
                                                "timed_out", error_type="StemTimeout", message=msg), attempt)
            elif blameless or overdue or not charged:
                batcher.retry(stem, attempt)
            elif attempt < MAX_ATTEMPTS:
                batcher.retry(stem, attempt + 1)
            else:
                msg = (f"the worker running stem {stem.stem!r} died twice "
                       f"({type(error).__name__}: {error}); sources kept")
                self._record_failure(StemResult(stem.stem, None, stem.names, 0, 0, 0.0, "failed",
                                                error_type=WorkerLost.__name__, message=msg), attempt)

    def _record_failure(self, result: StemResult, attempt: int) -> None:
        """A failure found here, not in a worker (which logs its own): said once, as they are."""
        log.warning("%s: %s: %s", result.status.replace("_", " "), result.stem, result.message)
        self.record([result], attempt)

    def _finished_on_disk(self, s: StemPlan, message: str) -> StemResult | None:
        """The stem's archive if this run put it in place (the rename is atomic, so it is whole):
        written since the run began, and holding every file of the stem at its planned size
        (another job's archive at that path, written meanwhile, does not count)."""
        import zipfile

        try:
            st = s.archive.stat()
            if st.st_mtime_ns < self.started_ns:
                return None
            with zipfile.ZipFile(s.archive) as zf:
                sizes = {i.filename: i.file_size for i in zf.infolist()}
        except (OSError, zipfile.BadZipFile, ValueError, EOFError):
            return None
        if any(sizes.get(f.name) != f.size for f in s.files):
            return None
        gone = [f for f in s.files if not os.path.lexists(f.path)]  # the worker deleted them
        new = {f.name for f in s.files}
        # what the worker would have said of the old archive's members, as the archive shows it
        carried = sum(1 for n in s.kept if n in sizes and n not in new) if s.action == "merge" else 0
        dropped = tuple(n for n in s.dropped if n not in sizes) if s.action == "replace" else ()
        return StemResult(s.stem, s.archive, s.names, s.bytes, st.st_size, 0.0, "ok", message=message,
                          deleted=tuple(f.name for f in gone), deleted_bytes=sum(f.size for f in gone),
                          carried=carried, dropped=dropped)

    def _watch_deadlines(self, in_flight: InFlight, started: dict[Future[list[StemResult]], float],
                         overdue: set[Future[list[StemResult]]], timeout: float, pool: OwnPool) -> None:
        """Kill the pool when a task overruns its stems' timeouts by far and its worker did not stop."""
        now = time.monotonic()
        for fut in in_flight:
            if fut.running():
                started.setdefault(fut, now)
        grace = 2.0 + 0.2 * timeout  # the worker's own alarm should have fired well before
        late = [f for f, t0 in started.items()
                if now - t0 > timeout * len(in_flight[f]) + grace and f not in overdue]
        if late:
            overdue.update(late)
            log.warning("%d stem(s) did not stop at their timeout; replacing the workers", len(late))
            pool.kill_workers()

    def _unfinished(self, s: StemPlan, interrupted: str | None) -> StemResult:
        """A stem with no result: done if its archive was put in place before the stop, else
        cancelled."""
        done = self._finished_on_disk(s, "finished as the run stopped")
        if done is not None:
            return done
        return StemResult(s.stem, None, s.names, 0, 0, 0.0, "cancelled", message=interrupted or "not run")

    # -- the report --------------------------------------------------------------------------
    def report(self, seconds: float, executor_name: str, error_report: str | os.PathLike[str] | bool | None,
               interrupted: str | None = None) -> Report:
        results = [self.results.get(s.stem) or self._unfinished(s, interrupted) for s in self.plan.stems]
        notes = list(self.notes)
        if self.restarts:
            notes.append(f"a worker process died; the pool was restarted {self.restarts} time(s) (at most "
                         f"{MAX_RESTARTS}) and the stems its workers were running were run again")
        if interrupted:
            notes.append(interrupted)
        workers = self.workers
        if self.fell_back and not self.ran_in_pool:  # no worker ran a stem: say what ran them
            workers, executor_name = 1, "in-process"
        rep = Report(tuple(results), seconds, workers, executor_name, plan=self.plan, notes=tuple(notes),
                     started=self.started)
        if error_report and (rep.failed or rep.cancelled):
            path = (self.plan.output / f"zipkit-errors-{datetime.now():%Y%m%d-%H%M%S}.json"
                    if error_report is True else Path(error_report))
            try:
                rep = replace(rep, error_report=rep.save_error_report(path))
            except OSError as e:
                log.warning("could not write the error report %s: %s", path, e.strerror or e)
                rep = replace(rep, notes=(*rep.notes, f"could not write the error report {path}: "
                                                      f"{e.strerror or e}"))
        return rep
