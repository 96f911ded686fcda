"""``run_plan`` and ``zip_by_extension``: the glue between a plan, a backend, progress and the report.

Where the tasks run: :mod:`zipkit._executors`; the supervised run: :mod:`zipkit._supervise`;
the bar and events: :mod:`zipkit._progress`; batches: :mod:`zipkit._batching`.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import replace
from pathlib import Path
from typing import Literal

from ._batching import Batcher
from ._errors import RunInterrupted, SourceError
from ._executors import Backend, LocalPool, check_workers, open_backend
from ._options import WORKERS
from ._plan import Compression, MatchMode, Overwrite, Plan, plan, plan_reads
from ._pool import available_cpus
from ._progress import Progress, ProgressEvent, ProgressSink
from ._report import Report, StemResult, check_error_report_path
from ._signals import Stopped, end_like_signal_if_uncaught, signal_name, stop_on_signals
from ._supervise import Cancelled, Run
from ._tempfiles import RunTemps

__all__ = ["ProgressEvent", "available_cpus", "run_plan", "zip_by_extension"]

log = logging.getLogger("zipkit")


def run_plan(
    plan: Plan,
    *,
    workers: int | Literal["auto"] = "auto",
    executor: Executor | str | None = None,
    progress: bool | ProgressSink = True,
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
    workers = check_workers(workers)  # refused before the output folder is made
    if save_error_reports and save_error_reports is not True:
        check_error_report_path(save_error_reports, plan_reads(plan, Path(save_error_reports)))
    with open_backend(executor, workers, len(plan.to_write)) as backend:
        return _run(plan, backend, workers, progress, cancel, save_error_reports)


def _run(plan: Plan, backend: LocalPool | Backend, workers: int | Literal["auto"],
         progress: bool | ProgressSink, cancel: threading.Event | None,
         save_error_reports: bool | str | os.PathLike[str] | None) -> Report:
    """One run of ``plan`` on ``backend``: signals caught, temp files cleaned up, the report made."""
    todo = plan.to_write
    local = backend if isinstance(backend, LocalPool) else None
    if local is not None:
        n = local.workers
    else:  # a given executor: the workers asked for, else what it says it runs at once
        n = workers if isinstance(workers, int) and not isinstance(workers, bool) else backend.capacity()
    try:
        plan.output.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SourceError(f"cannot create output folder {plan.output}: {e.strerror}", path=plan.output) from e
    bar = Progress(progress, plan.total_bytes, len(plan.stems))
    run = Run(plan, n, bar, cancel)
    if local is not None:  # CPUs the stems leave idle compress blocks of big members in parallel
        run.options = replace(run.options, threads=local.threads(len(todo)))
    run.record([StemResult(s.stem, s.archive, s.names, s.bytes, 0, 0.0, "skipped", message=s.reason)
                for s in plan.to_skip])
    batcher = Batcher(todo, n)
    inline = local is not None and local.inline
    name = "in-process" if inline else backend.name
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
                run.pooled(batcher, backend)
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
        run.notes.extend(backend.notes())  # e.g. Dask: workers that died
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
    progress: bool | ProgressSink = True,
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
