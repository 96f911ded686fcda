"""The run's own process pool: how workers start, what the process limits allow, what each worker
is running, and one pool of a run (:class:`OwnPool`).

The supervision loop lives in :mod:`zipkit._supervise`; this module answers its questions:

- which start method is safe now (:func:`mp_context`, asked again at every pool start);
- whether workers could start at all (:func:`reimport_reruns_this_call`: a script without an
  ``if __name__ == "__main__":`` guard re-runs its zipkit call in every spawned worker);
- how many workers the process limits hold (:func:`limit_workers`);
- which stems a worker was running when it died (:func:`init_pool_worker` and
  :func:`run_marked` keep one int per stem in shared memory, written before and after each
  stem, so a SIGKILL cannot lose the mark).
"""

from __future__ import annotations

import ast
import contextlib
import logging
import os
import signal
import sys
import threading
import time
import tokenize
import types
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import BrokenExecutor, Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import _worker
from ._plan import ArchiveOptions, StemPlan
from ._report import StemResult

if TYPE_CHECKING:  # pragma: no cover
    from concurrent.futures import ProcessPoolExecutor

__all__ = ["ENDED", "NOT_STARTED", "RUNNING", "STOPPED", "CannotStart", "OwnPool", "PoolTask",
           "available_cpus", "init_pool_worker", "kill_pool", "limit_workers", "manager_thread_error",
           "mp_context", "reimport_reruns_this_call", "run_marked", "unreadable_main",
           "watch_manager_thread"]

log = logging.getLogger("zipkit")

# A stem's mark, written by the worker that runs it: NOT_STARTED, the worker's pid while it runs
# the stem, ENDED after. The parent reads a pid mark as RUNNING when that worker died by itself,
# STOPPED when the pool stopped it because another worker died.
NOT_STARTED, ENDED, RUNNING, STOPPED = 0, -1, 1, 2

PARENT_FDS_PER_WORKER = 3  # measured: 2 per live worker (sentinel, pipe) + 1 while it starts
WORKER_TASKS = 2  # a worker process and its queue feeder thread count against RLIMIT_NPROC
FD_RESERVE = 32  # the parent's own files: the plan's folders, logging, an in-process stem
TASK_RESERVE = 4  # the parent's pool threads and the forkserver

_marks: Any = None  # this worker's view of the run's marks (a shared byte array)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def mp_context(forkable: bool = True) -> Any:
    """fork on Linux while this process has one thread (fast, and scripts without a
    ``__main__`` guard work); else forkserver (spawn where there is none).

    Asked at every pool start: a thread started since the last pool (a Dask client, a deflate
    thread pool, a library's helper, a native thread) rules fork out. ``forkable=False`` also
    rules it out.
    """
    import multiprocessing

    if forkable and sys.platform.startswith("linux") and threading.active_count() == 1 and _one_os_thread():
        return multiprocessing.get_context("fork")  # macOS system libraries are not fork-safe
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["zipkit._pool"])  # workers start with zipkit imported
        return ctx
    return multiprocessing.get_context("spawn")


def _one_os_thread(wait: float = 0.25) -> bool:
    """Whether the kernel sees one thread in this process (what Python 3.12's fork warning
    counts): a native thread (a BLAS pool) rules fork out, and so does a thread that Python
    has joined but that is still exiting, unless it is gone within ``wait`` seconds."""
    end = time.monotonic() + wait
    while True:
        try:
            n = len(os.listdir("/proc/self/task"))
        except OSError:
            return True  # cannot tell: threading's count stands
        if n <= 1:
            return True
        if time.monotonic() > end:
            return False
        time.sleep(0.005)


# -- can workers start? ---------------------------------------------------------------------

WORKER_NAME = "__mp_main__"  # the name a spawn or forkserver worker re-imports the script under


def _in_worker(test: ast.expr) -> bool | None:
    """The value of an ``if`` test in a worker, where ``__name__`` is ``"__mp_main__"``: True,
    False, or None when it depends on more than ``__name__`` (``__name__ == "__main__"``, its
    mirror, ``!=``, ``in``/``not in`` a literal tuple, ``not``, ``and``, ``or``)."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        inner = _in_worker(test.operand)
        return None if inner is None else not inner
    if isinstance(test, ast.BoolOp):
        values = [_in_worker(v) for v in test.values]
        decisive = isinstance(test.op, ast.Or)  # True decides an `or`, False an `and`
        if decisive in values:
            return decisive
        return None if None in values else not decisive
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return None
    left, op, right = test.left, test.ops[0], test.comparators[0]
    if isinstance(right, ast.Name) and isinstance(op, (ast.Eq, ast.NotEq)):
        left, right = right, left  # "__main__" == __name__
    if not (isinstance(left, ast.Name) and left.id == "__name__"):
        return None
    try:
        value = ast.literal_eval(right)
    except ValueError:
        return None
    if isinstance(op, (ast.Eq, ast.NotEq)):
        return bool(WORKER_NAME == value) == isinstance(op, ast.Eq)
    if isinstance(op, (ast.In, ast.NotIn)) and isinstance(value, (tuple, list, set, frozenset)):
        return (WORKER_NAME in value) == isinstance(op, ast.In)
    return None


def _guarded(source: str, line: int) -> bool:
    """Whether ``line`` of a module's source sits under an ``if`` that is false in a worker (at
    any depth, in a function's body too): a worker re-importing the module would not reach it."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return True  # cannot tell: let the workers try
    body: list[ast.stmt] = tree.body
    while True:
        node = next((s for s in body if s.lineno <= line <= (s.end_lineno or s.lineno)), None)
        if node is None:  # the line is the header of the statement entered last (or unknown)
            return False
        if isinstance(node, ast.If):
            in_body = any(s.lineno <= line <= (s.end_lineno or s.lineno) for s in node.body)
            in_else = any(s.lineno <= line <= (s.end_lineno or s.lineno) for s in node.orelse)
            value = _in_worker(node.test)
            if value is not None and (in_body or in_else) and value != in_body:
                return True
            body = node.body if in_body else node.orelse
        else:
            body = [s for f in ("body", "orelse", "finalbody", "handlers") for s in getattr(node, f, [])]
            if not body:
                return False


def reimport_reruns_this_call() -> bool:
    """True when a spawn or forkserver worker, which re-imports ``__main__`` as multiprocessing
    does, would run this very call again: it comes from unguarded module-level code of the
    main script (or of a ``python -m module``). Such workers die at start-up."""
    main = sys.modules.get("__main__")
    if main is None:
        return False
    spec_name = getattr(getattr(main, "__spec__", None), "name", None)
    if spec_name is not None:  # multiprocessing re-runs a module, not a package's __main__
        if spec_name == "__main__" or spec_name.endswith(".__main__"):
            return False
    else:
        path = getattr(main, "__file__", None)
        if path is None or os.path.splitext(os.path.basename(path))[0] == "ipython":
            return False
    frames: list[tuple[str, int, bool]] = []
    frame: types.FrameType | None = sys._getframe(1)  # the script's frames on the way to this call
    while frame is not None:
        if frame.f_globals is vars(main):
            frames.append((frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name == "<module>"))
        frame = frame.f_back
    if not any(at_import for _, _, at_import in frames):
        return False  # called later (a callback, a thread), not while the script is imported
    sources: dict[str, str] = {}
    for filename, line, _ in frames:
        try:
            if filename not in sources:
                with tokenize.open(filename) as f:  # honours a coding declaration
                    sources[filename] = f.read()
        except (OSError, SyntaxError, UnicodeDecodeError):
            return False
        if _guarded(sources[filename], line):
            return False  # a worker's import stops short of this call (guarded here or above)
    return True


def unreadable_main() -> str | None:
    """The path a spawn or forkserver worker would re-run as ``__main__`` when no such file
    exists (``python - < script.py`` names it ``<stdin>``): every such worker dies at start-up,
    guard or not. None when workers can start."""
    from multiprocessing import process

    main = sys.modules.get("__main__")
    if main is None or getattr(getattr(main, "__spec__", None), "name", None) is not None:
        return None  # re-imported by module name (or a package's __main__: not at all)
    path = getattr(main, "__file__", None)
    if path is None or os.path.splitext(os.path.basename(path))[0] == "ipython":
        return None
    original: str | None = getattr(process, "ORIGINAL_DIR", None)  # where multiprocessing started
    full = path if os.path.isabs(path) else os.path.join(original or os.getcwd(), path)
    return None if os.path.isfile(full) else path


# -- what the process limits hold --------------------------------------------------------

def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 16


def _tasks_of_this_user() -> int:
    """Processes and threads whose real uid is this process's (what RLIMIT_NPROC counts)."""
    uid, n = os.getuid(), 0
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if int(fields.get("Uid", "-1").split()[0]) == uid:
            n += int(fields.get("Threads", "1"))
    return n


def limit_workers(n: int) -> tuple[int, str | None]:
    """``n`` lowered to what RLIMIT_NOFILE and RLIMIT_NPROC leave room for, and why (None if
    not lowered)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return n, None
    why = None
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY:
        room = max(1, (soft - _open_fds() - FD_RESERVE) // PARENT_FDS_PER_WORKER)
        if room < n:
            n, why = room, f"the open-file limit (ulimit -n {soft}) holds {room}"
    soft = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    if soft != resource.RLIM_INFINITY and os.getuid() != 0 and sys.platform.startswith("linux"):
        room = max(1, (soft - _tasks_of_this_user() - TASK_RESERVE) // WORKER_TASKS)
        if room < n:
            n, why = room, f"the process limit (ulimit -u {soft}) holds {room}"
    return n, why


# -- a pool's threads in this process -----------------------------------------------------

_watched: Any = None  # a WeakKeyDictionary: a run's own pool -> what its manager thread died of
_hook_installed = False


def watch_manager_thread(pool: Any) -> None:
    """Keep what kills ``pool``'s manager thread (``can't start new thread`` at a process
    limit: the thread that feeds the workers their tasks could not start) for
    :func:`manager_thread_error`, instead of a traceback on stderr. Call before the first
    submit: the thread starts there. Other threads' errors go to the hook there was."""
    global _watched, _hook_installed
    import weakref

    if _watched is None:
        _watched = weakref.WeakKeyDictionary()
    _watched[pool] = None
    if not _hook_installed:
        _hook_installed = True
        previous = threading.excepthook

        def hook(args: Any) -> None:
            ref = getattr(args.thread, "executor_reference", None)
            pool = ref() if callable(ref) else None
            if pool is not None and pool in _watched:
                _watched[pool] = args.exc_value
                log.debug("the pool's manager thread died: %r", args.exc_value)
                return
            previous(args)

        threading.excepthook = hook


def manager_thread_error(pool: Any) -> BaseException | None:
    """What killed ``pool``'s manager thread (so that no task of it will ever end), or None
    while it runs (or before it starts, or after a clean shutdown)."""
    thread = getattr(pool, "_executor_manager_thread", None)
    if thread is None or thread.is_alive() or _watched is None:
        return None
    error: BaseException | None = _watched.get(pool)
    return error


# -- in a worker ---------------------------------------------------------------------------

def init_pool_worker(queue: Any, marks: Any, stems: Sequence[StemPlan] = (),
                     options: ArchiveOptions | None = None) -> None:
    """Pool initializer: :func:`zipkit._worker.init_worker`, and keep the run's stem marks.

    SIGTERM gets its default action back (a forked worker inherits the run's stop handler):
    a pool stops the workers left when one dies with SIGTERM, and an exit by SIGTERM is how
    the run tells a stopped worker from the one that died. A forked worker starts with the stop
    signals blocked (:func:`_signals_held`); a SIGTERM sent meanwhile ends it here.
    """
    global _marks
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _worker.init_worker(queue, stems, options)  # SIGINT and SIGHUP: ignored, the parent's to take
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _HELD)
    _marks = marks


def run_marked(indices: Sequence[int], batch: Sequence[StemPlan] | None, options: ArchiveOptions | None,
               run_id: str) -> list[StemResult]:
    """Archive the stems at ``indices`` (given in ``batch``, or inherited by a forked worker),
    marking each with this worker's pid before it starts and ENDED when it ends."""
    stems = batch if batch is not None else [_worker._stems[i] for i in indices]
    opts = options if options is not None else _worker._options
    assert opts is not None, "run_marked needs options, given or inherited"
    out = []
    for i, stem in zip(indices, stems):
        _marks[i] = os.getpid()
        out += _worker.run_batch([stem], opts, run_id)
        _marks[i] = ENDED
    return out


# -- one pool of a run, in the parent ------------------------------------------------------

@dataclass(frozen=True)
class PoolTask:
    """What every pool of a run is given: the plan's stems (their index is a stem's mark), the
    archive options and the run's id."""

    stems: Sequence[StemPlan]
    options: ArchiveOptions
    run_id: str
    index: dict[str, int]


STUCK_AFTER = 1.0  # s a worker may be dead with its pool not broken before the pool is taken for stuck


def _close_result_pipe(pool: ProcessPoolExecutor) -> None:
    """Close this process's write end of ``pool``'s result pipe (it never writes there): once its
    workers are gone too, the manager thread reads the end of the pipe instead of waiting."""
    queue = getattr(pool, "_result_queue", None)
    with contextlib.suppress(Exception):
        queue._writer.close()  # type: ignore[union-attr]


def kill_pool(pool: ProcessPoolExecutor) -> None:
    """Stop a pool's workers now (Ctrl-C, cancel, a stem that will not stop, a failed start)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for p in procs:
        with contextlib.suppress(Exception):
            p.kill()
    for p in procs:  # a pool whose start failed has no manager thread to reap them
        with contextlib.suppress(Exception):
            p.join(5)
    _close_result_pipe(pool)  # a manager thread waiting for the rest of a dead worker's result ends
    manager = getattr(pool, "_executor_manager_thread", None)
    if manager is not None and manager.ident is None:  # it could not start (a thread limit): no join
        pool._executor_manager_thread = None  # type: ignore[assignment]  # so shutdown skips the join
    pool.shutdown(wait=True, cancel_futures=True)
    log.debug("killed %d worker process(es)", len(procs))


_HELD = {getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)}


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP are blocked in this thread while the block runs, and so in the
    workers it forks until their initializer has set their actions. Until then a forked worker
    has the run's stop handler, which turns a SIGTERM into a flag that the handler's reset then
    drops: a pool that broke as it started (a thread it could not start) stopped such a worker,
    which lived on, and waited for it forever. Held, the signal waits and ends the worker. One to
    this process meanwhile waits too (its handler runs as the block ends: the run then kills the
    pool), or goes to a thread that takes it."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class CannotStart(Exception):
    """Workers of this run cannot start; the message says why, for the fallback's warning.

    ``guard``: the likely fix is an ``if __name__ == "__main__":`` guard. ``starved``: the
    process could not make a process or thread (a limit), so the rest runs on one thread.
    """

    def __init__(self, cause: str, *, guard: bool = False, starved: bool = False, fix: str | None = None):
        super().__init__(cause)
        self.guard, self.starved, self.fix = guard, starved, fix


class OwnPool:
    """One process pool of a run: its progress queue, its start method, what it was given.

    Tasks run :func:`run_marked`, which marks each stem in ``marks`` (one shared
    int per stem of the plan) with its worker's pid as it starts, and as ended when it ends, so
    that a lost worker charges an attempt only to the stems it was running.
    """

    def __init__(self, workers: int, ctx: Any, marks: Any, task: PoolTask,
                 drain: Callable[[Any], None]) -> None:
        from concurrent.futures import ProcessPoolExecutor

        self.marks, self.task, self.drain = marks, task, drain
        self.forked = ctx.get_start_method() == "fork"
        self.threads_before = set(threading.enumerate())
        self.queue = ctx.Queue()
        args = (self.queue, marks, task.stems, task.options) if self.forked else (self.queue, marks)
        self.pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=init_pool_worker,
                                        initargs=args)
        watch_manager_thread(self.pool)
        self.procs = self.pool._processes  # filled as workers start; kept when the pool shuts down
        self.given: list[int] = []  # plan indices of the stems submitted to this pool
        self.returned = False  # a task of this pool returned
        self.died: set[int] = set()  # pids of workers that died by themselves (set by close)
        self.dead_since: float | None = None  # when unstick() first saw a dead worker

    def submit(self, batch: Sequence[StemPlan]) -> Future[list[StemResult]]:
        """Submit; :class:`CannotStart` (after killing the workers started) if a worker cannot."""
        idx = [self.task.index[s.stem] for s in batch]
        for i in idx:
            self.marks[i] = NOT_STARTED
        self.given += idx
        try:
            if self.forked:  # a submit may fork workers
                with _signals_held():
                    return self.pool.submit(run_marked, idx, None, None, self.task.run_id)
            return self.pool.submit(run_marked, idx, list(batch), self.task.options, self.task.run_id)
        except BrokenExecutor:  # a worker died: not a failed start
            raise
        except (OSError, EOFError, RuntimeError) as e:  # fork/spawn failed; a thread could not start
            self.close(kill=True)
            why = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            raise CannotStart(f"worker processes could not be started ({why})", starved=True) from e

    def unstick(self) -> None:
        """Break a pool that a dead worker left stuck (call while no task ends).

        A worker killed while it sent a result leaves half a message in the result pipe: the
        pool's manager thread waits for the rest forever, the other workers wait for the pipe's
        lock, and the pool never breaks. Once a worker has been dead for :data:`STUCK_AFTER`
        seconds and the pool is not broken, the others are stopped (SIGTERM: not charged) and
        this process's end of the pipe closed, so that the manager thread reads its end and
        breaks the pool as for any lost worker.
        """
        if self.pool._broken or not any(p.exitcode is not None for p in list(self.procs.values())):
            self.dead_since = None
            return
        now = time.monotonic()
        if self.dead_since is None:
            self.dead_since = now
        elif now - self.dead_since >= STUCK_AFTER:
            log.debug("a dead worker left the pool stuck (half a result in its pipe); breaking it")
            self.dead_since = float("inf")  # once
            for p in list(self.procs.values()):
                with contextlib.suppress(Exception):
                    p.terminate()
            for p in list(self.procs.values()):
                with contextlib.suppress(Exception):
                    p.join(5)
            _close_result_pipe(self.pool)

    def kill_workers(self) -> None:
        """Kill the workers, leaving the pool to notice (a task that will not stop)."""
        for p in list(self.procs.values()):
            with contextlib.suppress(Exception):
                p.kill()

    def ran_any(self) -> bool:
        """Whether any worker of this pool got as far as starting a stem."""
        return self.returned or any(self.marks[i] != NOT_STARTED for i in self.given)

    def state(self, stem: StemPlan) -> int:
        """NOT_STARTED, ENDED, RUNNING (on a worker that died) or STOPPED (on a worker the pool
        stopped because another one died); after :meth:`close`."""
        mark: int = self.marks[self.task.index[stem.stem]]
        if mark <= 0:
            return mark
        return RUNNING if not self.died or mark in self.died else STOPPED

    def close(self, kill: bool) -> None:
        """Shut down (``kill``: kill the workers first), take the last messages, and join the
        threads the pool started, so that the next start method is decided on a quiet process."""
        procs = list(self.procs.values())
        if kill or not getattr(self.pool, "_broken", False) and any(p.exitcode is not None for p in procs):
            # a worker that died unnoticed (killed idle as the last result came in) may hold the task
            # queue's lock: a shutdown's sentinels would wait for it, and the pool with them, forever
            kill_pool(self.pool)
        else:
            self.pool.shutdown(wait=True)
        self.drain(self.queue)
        self.queue.close()
        self.queue.join_thread()
        for t in set(threading.enumerate()) - self.threads_before:
            if t.name == "QueueFeederThread" or type(t).__name__ == "_ExecutorManagerThread":
                t.join(5)
        # alive, or stopped by the pool for another's death: by SIGTERM, or by a handler of it
        # that exits (0, 143); a worker that dies by itself is killed or crashes
        stopped = (None, 0, -signal.SIGTERM, 128 + signal.SIGTERM)
        self.died = {pid for pid, p in list(self.procs.items()) if p.exitcode not in stopped}
