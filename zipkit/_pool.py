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
from collections.abc import Sequence
from typing import Any

from . import _worker
from ._plan import ArchiveOptions, StemPlan
from ._report import StemResult

__all__ = ["ENDED", "NOT_STARTED", "RUNNING", "init_pool_worker", "limit_workers", "mp_context",
           "reimport_reruns_this_call", "run_marked"]

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

def _is_main_guard(test: ast.expr) -> bool | None:
    """True for ``__name__ == "__main__"``, False for ``!=``, None for anything else."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return None
    sides = {type(x).__name__: x for x in (test.left, test.comparators[0])}
    name, const = sides.get("Name"), sides.get("Constant")
    if name is None or const is None or name.id != "__name__" or const.value != "__main__":
        return None
    if isinstance(test.ops[0], ast.Eq):
        return True
    return False if isinstance(test.ops[0], ast.NotEq) else None


def _guarded(source: str, line: int) -> bool:
    """Whether ``line`` of a module's source runs only when the module is ``__main__``."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return True  # cannot tell: let the workers try
    body: list[ast.stmt] = tree.body
    top = True
    while True:
        node = next((s for s in body if s.lineno <= line <= (s.end_lineno or s.lineno)), None)
        if node is None:  # the line is the header of the statement entered last (or unknown)
            return top
        top = False
        if isinstance(node, ast.If):
            guard = _is_main_guard(node.test)
            in_body = any(s.lineno <= line <= (s.end_lineno or s.lineno) for s in node.body)
            if guard is not None and guard == in_body:
                return True
            body = node.body if in_body else node.orelse
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return True  # a decorator or default value: not the call we look for
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
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals is vars(main):
            try:
                with open(frame.f_code.co_filename, encoding="utf-8") as f:
                    source = f.read()
            except (OSError, UnicodeDecodeError):
                return False
            return not _guarded(source, frame.f_lineno)
        frame = frame.f_back
    return False


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
