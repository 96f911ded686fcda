"""The process pool's edges: how workers start, what the process limits allow, what each worker
is running.

The supervision loop lives in :mod:`zipkit._run`; this module answers its questions:

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
import logging
import os
import signal
import sys
import threading
import time
import tokenize
from collections.abc import Sequence
from typing import Any

from . import _worker
from ._plan import ArchiveOptions, StemPlan
from ._report import StemResult

__all__ = ["ENDED", "NOT_STARTED", "RUNNING", "init_pool_worker", "limit_workers", "mp_context",
           "manager_thread_error", "reimport_reruns_this_call", "run_marked",
           "unreadable_main", "watch_manager_thread"]

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


def mp_context(forkable: bool = True):
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
        return (WORKER_NAME == value) == isinstance(op, ast.Eq)
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
    frames, frame = [], sys._getframe(1)  # the script's frames on the way to this call
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
    full = path if os.path.isabs(path) else os.path.join(process.ORIGINAL_DIR or os.getcwd(), path)
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
    return _watched.get(pool)


# -- in a worker ---------------------------------------------------------------------------

def init_pool_worker(queue: Any, marks: Any, stems: Sequence[StemPlan] = (),
                     options: ArchiveOptions | None = None) -> None:
    """Pool initializer: :func:`zipkit._worker.init_worker`, and keep the run's stem marks.

    SIGTERM gets its default action back (a forked worker inherits the run's stop handler):
    a pool stops the workers left when one dies with SIGTERM, and an exit by SIGTERM is how
    the run tells a stopped worker from the one that died.
    """
    global _marks
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _worker.init_worker(queue, stems, options)
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
