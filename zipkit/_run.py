"""Many stems: executor choice, batching, largest-first, progress events, cancel, pool recovery."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, Executor, Future, wait
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from . import _pool
from ._errors import RunInterrupted, SourceError, WorkerLost
from ._options import WORKERS
from ._plan import Compression, MatchMode, Overwrite, Plan, StemPlan, plan, plan_reads
from ._pool import mp_context as _mp_context
from ._report import Report, StemResult, check_error_report_path
from ._signals import Stopped, end_like_signal_if_uncaught, signal_name, stop_on_signals
from ._table import format_bytes
from ._tempfiles import RunTemps
from ._tempfiles import remove_temps as _cleanup_temps  # noqa: F401 - _dask imports it from here

if TYPE_CHECKING:  # pragma: no cover
    from concurrent.futures import ProcessPoolExecutor

__all__ = ["ProgressEvent", "available_cpus", "run_plan", "zip_by_extension"]

log = logging.getLogger("zipkit")

MAX_ATTEMPTS = 2          # a stem whose worker dies is run once more, then reported as lost
MAX_RESTARTS = 3          # pools replaced after a worker died, per run; then the rest runs in-process
TARGET_TASK_SECONDS = 0.2  # joblib's lesson: tasks of 0.2 s amortise per-task overhead


@dataclass(frozen=True)
class ProgressEvent:
    """Sent to a ``progress`` callable as the run goes; ``result`` is set when a stem ends."""

    bytes_done: int
    bytes_total: int
    stems_done: int
    stems_total: int
    failed: int
    result: StemResult | None = None
    stem: str | None = None  #: the stem whose bytes were just read (None when a stem ends)


class Cancelled(BaseException):
    """Raised inside an in-process run when the cancel event is set (cleaned up like Ctrl-C)."""


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _resolve_workers(workers: int | str | None, n_stems: int) -> int:
    workers = WORKERS(workers, "workers")
    if workers in (None, "auto"):
        return max(1, min(available_cpus(), n_stems))
    return max(1, min(workers, n_stems))


def _limit_workers(n: int) -> int | None:
    """``n`` lowered to what the process limits hold, with one warning; None if it fits."""
    fit, why = _pool.limit_workers(n)
    if why is None:
        return None
    log.warning("zipkit: %d workers asked for, %s; running %d", n, why, fit)
    return fit


class _Progress:
    """Byte-weighted progress: a tqdm.auto bar, a callable, or nothing."""

    def __init__(self, progress: bool | Callable[[ProgressEvent], Any] | None, total: int, stems: int):
        self.total, self.stems_total = total, stems
        self.done = self.stems_done = self.failed = 0
        self.partial: dict[str, int] = {}
        self.callback = progress if callable(progress) else None
        self.bar = None
        if progress is True and sys.stderr is not None:  # None: stderr closed (2>&-) or pythonw
            from tqdm.auto import tqdm

            class _Bar(tqdm):  # no monitor thread: a later pool could then still fork
                monitor_interval = 0

                @property
                def format_dict(self) -> dict[str, Any]:  # sizes in binary units, as the report
                    d = super().format_dict
                    rate = d["rate"] or (d["n"] / d["elapsed"] if d["elapsed"] and d["n"] else None)
                    d.update(size_done=format_bytes(d["n"]), size_total=format_bytes(d["total"] or 0),
                             size_rate=f"{format_bytes(rate)}/s" if rate else "?/s")
                    return d

            self._draw(lambda: setattr(self, "bar", _Bar(
                total=total, unit="B", desc="zipkit", smoothing=0.1, dynamic_ncols=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {size_done}/{size_total} "
                           "[{elapsed}<{remaining}, {size_rate}{postfix}]")))
            self._postfix()

    def _draw(self, step: Callable[[], Any]) -> None:
        """One write of the bar; a broken or full stderr (``2>&1 | head``, ``2>/dev/full``) ends the
        bar, never the run: the bar is a courtesy, as the CLI's printing is."""
        try:
            step()
        except (OSError, ValueError) as e:  # ValueError: the stream was closed
            log.debug("zipkit: progress bar off: cannot write to stderr: %s", e)
            bar, self.bar = self.bar, None
            if bar is not None:
                bar.disable = True  # tqdm's own close and finaliser then write nothing

    def _postfix(self) -> None:
        if self.bar is not None:
            fix = {"stems": f"{self.stems_done}/{self.stems_total}"}
            if self.failed:
                fix["failed"] = str(self.failed)
            self._draw(lambda: self.bar.set_postfix(fix, refresh=False))

    def _emit(self, result: StemResult | None = None, stem: str | None = None) -> None:
        if self.callback is not None:
            self.callback(ProgressEvent(self.done, self.total, self.stems_done, self.stems_total,
                                        self.failed, result, stem))

    def add(self, stem: str, n: int) -> None:
        """``n`` more bytes of ``stem`` were read."""
        self.partial[stem] = self.partial.get(stem, 0) + n
        self.done += n
        if self.bar is not None:
            self._draw(lambda: self.bar.update(n))
        self._emit(stem=stem)

    def forget(self, stem: str) -> None:
        """``stem`` will run again: take back the bytes it had reported."""
        n = self.partial.pop(stem, 0)
        self.done -= n
        if self.bar is not None and n:
            self._draw(lambda: self.bar.update(-n))

    def finish(self, result: StemResult, planned_bytes: int) -> None:
        n = planned_bytes - self.partial.pop(result.stem, 0)
        self.done += n
        self.stems_done += 1
        if result.status in ("failed", "timed_out"):
            self.failed += 1
        if self.bar is not None:
            self._postfix()
        if self.bar is not None:
            self._draw(lambda: self.bar.update(n))
        self._emit(result)

    def close(self) -> None:
        if self.bar is not None:
            self._draw(self.bar.close)


class _Batcher:
    """Hands out tasks largest stem first, packing small stems so a task takes ~0.2 s.

    Per-stem cost is learnt as results arrive (joblib's method): a fixed overhead per stem
    plus bytes over throughput.
    """

    def __init__(self, stems: Sequence[StemPlan], workers: int):
        self.queue: deque[tuple[StemPlan, int]] = deque(
            (s, 1) for s in sorted(stems, key=lambda s: (-s.bytes, s.stem)))
        self.workers = workers
        self.overhead, self.rate = 0.003, 50e6  # first guesses: 3 ms per stem, 50 MB/s
        self.bytes_left = sum(s.bytes for s in stems)

    def __bool__(self) -> bool:
        return bool(self.queue)

    def retry(self, stem: StemPlan, attempt: int) -> None:
        self.queue.appendleft((stem, attempt))
        self.bytes_left += stem.bytes

    def learn(self, results: Sequence[StemResult]) -> None:
        for r in results:
            if r.status != "ok" or r.seconds <= 0:
                continue
            if r.bytes_in >= 1 << 20:
                self.rate = 0.7 * self.rate + 0.3 * (r.bytes_in / r.seconds)
            elif r.bytes_in < 256 << 10:
                self.overhead = 0.7 * self.overhead + 0.3 * r.seconds

    def cost(self, s: StemPlan) -> float:
        return self.overhead + s.bytes / self.rate

    def _take(self) -> tuple[StemPlan, int]:
        item = self.queue.popleft()
        self.bytes_left -= item[0].bytes
        return item

    def next(self) -> list[tuple[StemPlan, int]]:
        first = self._take()
        batch = [first]
        if first[1] > 1:
            return batch
        left = self.overhead * len(self.queue) + self.bytes_left / self.rate
        target = min(TARGET_TASK_SECONDS, max(0.005, left / (4 * self.workers)))
        spent = self.cost(first[0])
        while self.queue and self.queue[0][1] == 1 and spent + self.cost(self.queue[0][0]) <= target:
            batch.append(self._take())
            spent += self.cost(batch[-1][0])
        return batch


def _kill_pool(pool: ProcessPoolExecutor) -> None:
    """Stop a pool's workers now (Ctrl-C, cancel, a stem that will not stop, a failed start)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for p in procs:
        with contextlib.suppress(Exception):
            p.kill()
    for p in procs:  # a pool whose start failed has no manager thread to reap them
        with contextlib.suppress(Exception):
            p.join(5)
    manager = getattr(pool, "_executor_manager_thread", None)
    if manager is not None and manager.ident is None:  # it could not start (a thread limit): no join
        pool._executor_manager_thread = None
    pool.shutdown(wait=True, cancel_futures=True)
    log.debug("killed %d worker process(es)", len(procs))


class _CannotStart(Exception):
    """Workers of this run cannot start; the message says why, for the fallback's warning.

    ``guard``: the likely fix is an ``if __name__ == "__main__":`` guard. ``starved``: the
    process could not make a process or thread (a limit), so the rest runs on one thread.
    """

    def __init__(self, cause: str, *, guard: bool = False, starved: bool = False, fix: str | None = None):
        super().__init__(cause)
        self.guard, self.starved, self.fix = guard, starved, fix


class _OwnPool:
    """One process pool of a run: its progress queue, its start method, what it was given.

    Tasks run :func:`zipkit._pool.run_marked`, which marks each stem in ``marks`` (one shared
    int per stem of the plan) with its worker's pid as it starts, and as ended when it ends, so
    that a lost worker charges an attempt only to the stems it was running.
    """

    def __init__(self, run: _Run, ctx, marks) -> None:
        from concurrent.futures import ProcessPoolExecutor

        self.run, self.marks = run, marks
        self.forked = ctx.get_start_method() == "fork"
        self.threads_before = set(threading.enumerate())
        self.queue = ctx.Queue()
        args = (self.queue, marks, run.plan.stems, run.options) if self.forked else (self.queue, marks)
        self.pool = ProcessPoolExecutor(run.workers, mp_context=ctx, initializer=_pool.init_pool_worker,
                                        initargs=args)
        _pool.watch_manager_thread(self.pool)
        self.procs = self.pool._processes  # filled as workers start; kept when the pool shuts down
        self.given: list[int] = []  # plan indices of the stems submitted to this pool
        self.returned = False  # a task of this pool returned
        self.died: set[int] = set()  # pids of workers that died by themselves (set by close)

    def submit(self, batch: list[tuple[StemPlan, int]]) -> Future:
        """Submit; :class:`_CannotStart` (after killing the workers started) if a worker cannot."""
        idx = [self.run.index[s.stem] for s, _ in batch]
        for i in idx:
            self.marks[i] = _pool.NOT_STARTED
        self.given += idx
        try:
            if self.forked:
                return self.pool.submit(_pool.run_marked, idx, None, None, self.run.run_id)
            return self.pool.submit(_pool.run_marked, idx, [s for s, _ in batch], self.run.options,
                                    self.run.run_id)
        except BrokenExecutor:  # a worker died: not a failed start
            raise
        except (OSError, EOFError, RuntimeError) as e:  # fork/spawn failed; a thread could not start
            self.close(kill=True)
            why = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            raise _CannotStart(f"worker processes could not be started ({why})", starved=True) from e

    def ran_any(self) -> bool:
        """Whether any worker of this pool got as far as starting a stem."""
        return self.returned or any(self.marks[i] != _pool.NOT_STARTED for i in self.given)

    def state(self, stem: StemPlan) -> int:
        """NOT_STARTED, ENDED, RUNNING (on a worker that died) or STOPPED (on a worker the pool
        stopped because another one died); after :meth:`close`."""
        mark = self.marks[self.run.index[stem.stem]]
        if mark <= 0:
            return mark
        return _pool.RUNNING if not self.died or mark in self.died else _pool.STOPPED

    def close(self, kill: bool) -> None:
        """Shut down (``kill``: kill the workers first), take the last messages, and join the
        threads the pool started, so that the next start method is decided on a quiet process."""
        if kill:
            _kill_pool(self.pool)
        else:
            self.pool.shutdown(wait=True)
        self.run._drain(self.queue)
        self.queue.close()
        self.queue.join_thread()
        for t in set(threading.enumerate()) - self.threads_before:
            if t.name == "QueueFeederThread" or type(t).__name__ == "_ExecutorManagerThread":
                t.join(5)
        # alive, or stopped by the pool for another's death: by SIGTERM, or by a handler of it
        # that exits (0, 143); a worker that dies by itself is killed or crashes
        stopped = (None, 0, -signal.SIGTERM, 128 + signal.SIGTERM)
        self.died = {pid for pid, p in list(self.procs.items()) if p.exitcode not in stopped}


class _Run:
    """State of one run of a plan: what is finished, what is in flight, what to say."""

    def __init__(self, plan: Plan, workers: int, progress: _Progress, cancel: threading.Event | None):
        self.plan, self.workers, self.progress, self.cancel = plan, workers, progress, cancel
        self.options = plan.options
        self.run_id = os.urandom(6).hex()
        self.results: dict[str, StemResult] = {}
        self.attempts: dict[str, int] = {}
        self.notes: list[str] = []
        self.restarts = 0  # pools replaced because a worker died
        self.index = {s.stem: i for i, s in enumerate(plan.stems)}
        self.ran_in_pool = False  # a task of an own pool returned
        self.given: Executor | None = None  # the executor given to pooled(), if any
        self.fell_back = False  # the remaining stems ran in this process: workers could not
        self.by_name = {s.stem: s for s in plan.stems}
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
    def inline(self, batcher: _Batcher) -> None:
        from ._worker import run_batch

        def send(msg: tuple[str, int]) -> None:
            self.progress.add(*msg)
            self._check_cancel()

        while batcher:
            self._check_cancel()
            for stem, attempt in batcher.next():
                self.record(run_batch([stem], self.options, self.run_id, send=send), attempt)

    # -- in an executor ----------------------------------------------------------------------
    def pooled(self, batcher: _Batcher, executor: Executor | None, ctx) -> None:
        """Run the batches in ``executor`` or, when it is None, in process pools of this run's
        own: the first started with ``ctx``, each later one with the start method that is safe
        at its start. A pool whose worker died is replaced up to MAX_RESTARTS times; when
        workers cannot start, or died more often, the remaining stems run in this process."""
        from ._worker import run_batch

        own = executor is None
        self.given = executor
        current: _OwnPool | None = None
        if own:
            marks = ctx.RawArray("i", max(1, len(self.plan.stems)))
            try:
                current = self._start_pool(ctx, marks)
            except _CannotStart as e:
                self._fall_back(e, batcher)
                return
        timeout = self.options.timeout
        cap = self.workers if timeout else 2 * self.workers
        in_flight: dict[Future, list[tuple[StemPlan, int]]] = {}
        started: dict[Future, float] = {}
        overdue: set[Future] = set()
        try:
            while batcher or in_flight:
                self._check_cancel()
                broken = False
                while batcher and len(in_flight) < cap and not broken:
                    batch = batcher.next()
                    try:
                        fut = (current.submit(batch) if current is not None else
                               executor.submit(run_batch, [s for s, _ in batch], self.options, self.run_id))
                    except BrokenExecutor:  # broke before we saw it: the batch never ran
                        for stem, attempt in batch:
                            batcher.retry(stem, attempt)
                        if not own:  # a given executor that broke earlier: finish here
                            self._finish_inline(in_flight, batcher)
                            return
                        broken = True
                        continue
                    except _CannotStart as e:  # the pool is killed: nothing of it ran to the end
                        for stem, attempt in batch:
                            batcher.retry(stem, attempt)
                        self._abandon(current, in_flight, batcher, e)
                        current = None
                        return
                    in_flight[fut] = batch
                done, _ = wait(list(in_flight), timeout=0.1, return_when=FIRST_COMPLETED)
                if current is not None:
                    self._drain(current.queue)
                    dead = _pool.manager_thread_error(current.pool)
                    if dead is not None and not done:  # no task of this pool will ever end
                        why = f"{type(dead).__name__}: {dead}" if str(dead) else type(dead).__name__
                        current.close(kill=True)
                        self._abandon(current, in_flight, batcher, _CannotStart(
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
                if broken and not own:  # not ours to replace: run what is left in this process
                    self._finish_inline(in_flight, batcher)
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
                        cause = _CannotStart("the worker processes exited before they started any stem",
                                             guard=not current.forked)
                    elif not overdue:
                        if self.restarts >= MAX_RESTARTS:
                            cause = _CannotStart(f"worker processes died {self.restarts + 1} times (a run "
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
                    except _CannotStart as e:
                        self._fall_back(e, batcher)
                        return
                if timeout and current is not None:
                    self._watch_deadlines(in_flight, started, overdue, timeout, current.pool)
        finally:
            if current is not None:
                current.close(kill=self.cancel is not None and self.cancel.is_set() or bool(in_flight))
            elif not own:
                for fut in in_flight:
                    fut.cancel()
            for fut in in_flight:  # tasks that finished before the stop but were not recorded
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    for r in fut.result():
                        self.results.setdefault(r.stem, r)

    def _abandon(self, pool: _OwnPool, in_flight: dict, batcher: _Batcher, why: _CannotStart) -> None:
        """``pool`` could not run its tasks and is killed: what was in flight runs again here, at no
        cost (what finished on disk counts as done), with the rest."""
        for lost in in_flight.values():
            self._lost(lost, batcher, why, overdue=False, blameless=True, state=pool.state)
        in_flight.clear()
        self._fall_back(why, batcher)

    def _start_pool(self, ctx, marks) -> _OwnPool:
        """A fresh pool, started by ``ctx`` or the start method safe now; :class:`_CannotStart`
        when its workers could not run this call's stems."""
        ctx = ctx or _mp_context()
        unreadable = _pool.unreadable_main() if ctx.get_start_method() != "fork" else None
        if unreadable is not None:
            raise _CannotStart(
                f"the process has {threading.active_count()} threads, so workers cannot be forked, and the "
                f"script's file {unreadable!r}, which they would re-import, does not exist",
                fix="run the script from a file or pass workers=1")
        if ctx.get_start_method() != "fork" and _pool.reimport_reruns_this_call():
            raise _CannotStart(
                "this script calls zipkit outside an `if __name__ == \"__main__\":` guard and the process "
                f"has {threading.active_count()} threads, so workers cannot be forked and would re-run "
                "the script", guard=True)
        try:
            started = _OwnPool(self, ctx, marks)
            log.debug("a pool of %d worker(s) starts by %s (%d thread(s) in this process)",
                      self.workers, ctx.get_start_method(), threading.active_count())
            return started
        except (OSError, RuntimeError) as e:
            raise _CannotStart(f"worker processes could not be started ({type(e).__name__}: {e})",
                               starved=True) from e

    def _fall_back(self, why: _CannotStart, batcher: _Batcher) -> None:
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

    def _finish_inline(self, in_flight: dict, batcher: _Batcher) -> None:
        """The given executor broke: its unfinished stems and the rest run in this process.

        Once its worker processes (a given process pool's) are gone: one still finishing a stem
        could otherwise put that stem's archive in place while it runs again here.
        """
        from multiprocessing.connection import wait as wait_for

        with contextlib.suppress(Exception):
            alive = [p.sentinel for p in (getattr(self.given, "_processes", None) or {}).values()]
            end = time.monotonic() + 10
            while alive and time.monotonic() < end:  # wait() returns as soon as one is ready
                gone = wait_for(alive, timeout=max(0.0, end - time.monotonic()))
                alive = [s for s in alive if s not in gone]
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

    def _drain(self, queue) -> None:
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

    def _lost(self, batch, batcher: _Batcher, error: BaseException, *, overdue: bool,
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
            charged = state is None or state(stem) == _pool.RUNNING
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
        return StemResult(s.stem, s.archive, s.names, s.bytes, st.st_size, 0.0, "ok", message=message,
                          deleted=tuple(f.name for f in gone), deleted_bytes=sum(f.size for f in gone))

    def _watch_deadlines(self, in_flight, started, overdue, timeout: float, pool) -> None:
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
            for p in (getattr(pool, "_processes", None) or {}).values():
                with contextlib.suppress(Exception):
                    p.kill()

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
        rep = Report(tuple(results), seconds, workers, executor_name, source=self.plan.source,
                     output=self.plan.output, unmatched=self.plan.unmatched,
                     empty_stems=self.plan.empty_stems, contested=self.plan.contested,
                     ignored=self.plan.ignored, notes=tuple(notes))
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


def run_plan(
    plan: Plan,
    *,
    workers: int | Literal["auto"] = "auto",
    executor: Executor | str | None = None,
    progress: bool | Callable[[ProgressEvent], Any] = True,
    cancel: threading.Event | None = None,
    save_error_reports: bool | str | os.PathLike[str] | None = None,
) -> Report:
    """Write the archives of a :class:`Plan` and return the :class:`Report`.

    Parameters
    ----------
    plan
        From :func:`zipkit.plan`.
    workers
        ``"auto"`` (CPUs this process may use, capped by the number of stems) or an int.
        One worker or one stem runs in this process.
    executor
        Any ``concurrent.futures.Executor`` (thread pool, Dask's ``client.get_executor()``,
        mpi4py's); used as given and not shut down. Default: a process pool of ``workers``.
        ``"dask"`` starts a local Dask cluster; ``"tcp://host:8786"`` connects to a scheduler
        (``pip install zipkit[dask]``).
    progress
        ``True``: a ``tqdm.auto`` bar weighted by bytes; ``False``: silent; a callable:
        receives :class:`ProgressEvent` s.
    cancel
        A ``threading.Event``; setting it stops the run (workers stopped, temp files removed)
        and the report marks unfinished stems ``cancelled``.
    save_error_reports
        ``True`` (a JSON file in the output folder) or a path: write failures as JSON when any.

    Raises
    ------
    RunInterrupted
        On Ctrl-C, SIGTERM or SIGHUP (run in the main thread, each stops the run the same way),
        after cleaning up; ``.report`` holds what finished, ``.exit_code`` is 130, 143 or 129.

    Examples
    --------
    >>> p = zipkit.plan("runs", ["dat", "log"])  # doctest: +SKIP
    >>> zipkit.run_plan(p, workers=4).failed     # doctest: +SKIP
    ()
    """
    workers = WORKERS(workers, "workers") or "auto"  # refused before the output folder is made
    if save_error_reports and save_error_reports is not True:
        check_error_report_path(save_error_reports, plan_reads(plan, Path(save_error_reports)))
    if isinstance(executor, str):  # "dask", "dask://local" or a scheduler address
        from ._dask import dask_executor

        with dask_executor(executor, workers=workers) as ex:
            return run_plan(plan, workers=workers, executor=ex, progress=progress, cancel=cancel,
                            save_error_reports=save_error_reports)
    if type(executor).__name__ == "ClientExecutor" and type(executor).__module__.startswith("distributed"):
        from ._dask import adapted  # Dask's own executor: host names in errors, "retried" marks

        with adapted(executor) as ex:
            return run_plan(plan, workers=workers, executor=ex, progress=progress, cancel=cancel,
                            save_error_reports=save_error_reports)
    todo = plan.to_write
    n = _resolve_workers(workers, len(todo)) if executor is None else (
        workers if isinstance(workers, int) and not isinstance(workers, bool) else _capacity(executor))
    try:
        plan.output.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SourceError(f"cannot create output folder {plan.output}: {e.strerror}", path=plan.output) from e
    limited = _limit_workers(n) if executor is None and n > 1 else None
    if limited:
        n = limited
    bar = _Progress(progress, plan.total_bytes, len(plan.stems))
    run = _Run(plan, n, bar, cancel)
    if limited:
        run.notes.append(f"workers lowered to {n} by the process limits")
    if executor is None:  # CPUs the stems leave idle compress blocks of big members in parallel
        budget = n if limited else available_cpus() if workers == "auto" else int(workers)
        run.options = replace(run.options, threads=max(1, budget // max(1, min(n, len(todo)))))
    run.record([StemResult(s.stem, s.archive, s.names, s.bytes, 0, 0.0, "skipped", message=s.reason)
                for s in plan.to_skip])
    batcher = _Batcher(todo, n)
    inline = executor is None and (n <= 1 or len(todo) <= 1)
    name = "in-process" if inline else ("process pool" if executor is None else type(executor).__name__)
    t0 = time.perf_counter()
    interrupted = None
    signum: int | None = None
    temps = RunTemps(plan.output, run.run_id)
    with stop_on_signals() as stop:  # SIGINT, SIGTERM, SIGHUP: Stopped, here in the main thread
        try:
            temps.open()
            if inline:
                run.inline(batcher)
            else:
                run.pooled(batcher, executor, _mp_context() if executor is None else None)
        except Cancelled:
            interrupted = "cancelled before it finished"
        except KeyboardInterrupt as e:  # Ctrl-C without our handler (IPython's, a caller's) too
            signum = e.signum if isinstance(e, Stopped) else signal.SIGINT
        finally:
            stop.defer()  # a signal from now on waits until the temp files are gone
            bar.close()
            temps.close()
        if signum is None and stop.first is not None:  # arrived as the work ended
            signum = stop.first
        if signum is not None:
            interrupted = _stopped_by(signum)
        if interrupted is None and cancel is not None and cancel.is_set():
            interrupted = "cancelled before it finished"
        run.notes.extend(getattr(executor, "notes", ()))  # e.g. Dask: workers that died
        rep = run.report(time.perf_counter() - t0, name, save_error_reports, interrupted)
        log.info("%s", rep.summary_line())
    if signum is not None:
        error = RunInterrupted(rep, signum)
        end_like_signal_if_uncaught(error, signum)
        raise error
    return rep


def _stopped_by(signum: int) -> str:
    if signum == signal.SIGINT:
        return "interrupted (Ctrl-C) before it finished"
    why = {"SIGTERM": "sent by a scheduler, systemd or timeout", "SIGHUP": "its terminal closed"}
    name = signal_name(signum)
    return f"stopped by {name} ({why.get(name, 'a signal')}) before it finished"


def _capacity(executor: Executor) -> int:
    """How many tasks a given executor runs at once: what it says (stdlib pools and mpi4py's
    ``_max_workers``, mpi4py's ``num_workers``), else the CPUs here."""
    for attr in ("_max_workers", "num_workers"):
        n = getattr(executor, attr, None)
        if isinstance(n, int) and not isinstance(n, bool) and n > 0:
            return n
    return available_cpus()


def zip_by_extension(
    source: str | os.PathLike[str],
    extensions: str | Sequence[str],
    output: str | os.PathLike[str] | None = None,
    *,
    stems_from: str | os.PathLike[str] | None = None,
    stem_extensions: str | Sequence[str] | None = None,
    stems: Sequence[str] | None = None,
    match: MatchMode = "prefix",
    pattern: str | None = None,
    contains: str | Sequence[str] | None = None,
    not_contains: str | Sequence[str] | None = None,
    regex: str | None = None,
    min_size_kb: float | None = None,
    max_size_kb: float | None = None,
    overwrite: Overwrite = "always",
    compression: Compression = "deflate",
    level: int | None = None,
    deflate_backend: Literal["auto", "zlib", "isal"] = "auto",
    verify: bool = False,
    delete_sources: bool = False,
    reproducible: bool = False,
    durable: bool = False,
    timeout: float | None = None,
    workers: int | Literal["auto"] = "auto",
    executor: Executor | str | None = None,
    progress: bool | Callable[[ProgressEvent], Any] = True,
    cancel: threading.Event | None = None,
    save_error_reports: bool | str | os.PathLike[str] | None = None,
) -> Report:
    """Zip the files of ``source`` into one archive per stem, in parallel, and report.

    Plans with :func:`zipkit.plan` (same grouping parameters) and runs the plan with
    :func:`zipkit.run_plan` (same execution parameters).

    Parameters
    ----------
    source, extensions, output
        Folder to read, extensions to archive (``"csv"``, ``".CSV"`` alike), folder for the
        archives (default: ``source``).
    stems_from, stem_extensions, stems, match
        Where stems come from: the files' own names (default), marker files, or a list;
        ``match="prefix"`` (longest stem followed by a non-alphanumeric) or ``"contains"``.
    pattern, contains, not_contains, regex, min_size_kb, max_size_kb
        Marker-file filters (the old tool's).
    overwrite
        An existing ``STEM.zip``: ``"always"`` (default; merged as zip does: other members
        kept), ``"update"`` (skipped when up to date, else merged), ``"never"`` (skipped) or
        ``"replace"`` (rebuilt from this run's files; dropped members listed).
    compression, level, deflate_backend
        ``deflate`` (default; ISA-L when installed, standard deflate either way), ``stored``,
        ``bzip2``, ``lzma``; ``level`` 0–9 (deflate default 6).
    verify
        Re-read every archive and check its CRCs before it is renamed into place.
    delete_sources
        Delete a stem's sources once its archive is in place, fsynced and verified.
    reproducible
        Fixed timestamps (``SOURCE_DATE_EPOCH`` if set) and permissions: byte-identical output.
    durable
        fsync every archive and the output folder.
    timeout
        Seconds per stem; a stem past it is reported ``timed_out`` and leaves nothing behind.
    workers, executor, progress, cancel, save_error_reports
        See :func:`zipkit.run_plan`.

    Returns
    -------
    Report

    Examples
    --------
    >>> report = zip_by_extension("output/csv", ["csv"], "output/zip",
    ...                           stems_from="models", stem_extensions=["yml"])  # doctest: +SKIP
    >>> report.failed  # doctest: +SKIP
    ()
    """
    WORKERS(workers, "workers")  # before the scan: a bad value is refused before any work
    p = plan(source, extensions, output, stems_from=stems_from, stem_extensions=stem_extensions,
             stems=stems, match=match, pattern=pattern, contains=contains, not_contains=not_contains,
             regex=regex, min_size_kb=min_size_kb, max_size_kb=max_size_kb, overwrite=overwrite,
             compression=compression, level=level, deflate_backend=deflate_backend, verify=verify,
             delete_sources=delete_sources, reproducible=reproducible, durable=durable,
             timeout=timeout)
    return run_plan(p, workers=workers, executor=executor, progress=progress, cancel=cancel,
                    save_error_reports=save_error_reports)
