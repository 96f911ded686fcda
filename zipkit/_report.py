"""The outcome of a run as a value: per-stem results, totals, tables and the JSON error report."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from ._errors import UsageError
from ._plan import Plan
from ._table import NOTHING, format_bytes, html_table, plan_notes, text_table

__all__ = ["Report", "StemResult", "check_error_report_path"]

_REPORT_KEYS = {"started", "summary", "failed"}  # what every zipkit error report holds


def _is_error_report(path: Path) -> bool:
    """Whether the file at ``path`` is a JSON error report that zipkit wrote (by its content)."""
    import json

    try:
        with open(path, "rb") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and _REPORT_KEYS <= set(doc) and isinstance(doc["failed"], list)


ADVICE_AFTER_SECONDS = 10.0  # shorter runs get no tuning advice


def check_error_report_path(path: str | os.PathLike[str], reads: dict[str, str]) -> Path:
    """Refuse, before any work, an error-report path that cannot or must not be written.

    ``reads`` maps the real paths of the files the run reads or writes (sources, markers, the
    config, archives) to what they are. An existing file there is replaced only if it is a
    zipkit error report. Raises :class:`UsageError` naming the path.
    """
    p = Path(path).expanduser()
    what = reads.get(os.path.realpath(p))
    if what is not None:
        raise UsageError(f"error report path {p} is {what}: an input is never an output")
    if p.is_dir():
        raise UsageError(f"error report path {p} is a folder")
    if os.path.lexists(p):
        if p.is_symlink() or not p.is_file() or not _is_error_report(p):
            raise UsageError(f"error report path {p} exists and is not a zipkit error report; "
                             "it is not overwritten")
        try:
            os.close(os.open(p, os.O_WRONLY | os.O_APPEND))  # writable? (nothing written)
        except OSError as e:
            raise UsageError(f"error report path {p} cannot be written: {e.strerror}") from e
        return p
    folder = p.parent
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise UsageError(f"error report path {p}: {folder} is not a folder")
    if folder == p.parent:
        try:  # can a file be made there? (made and removed at once)
            os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.unlink(p)
        except OSError as e:
            raise UsageError(f"error report path {p} cannot be written: {e.strerror}") from e
    elif not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"error report path {p}: folder {folder} is not writable")
    return p


Status = Literal["ok", "skipped", "failed", "timed_out", "cancelled"]


@dataclass(frozen=True)
class StemResult:
    """What happened to one stem.

    ``status`` is ``ok``, ``skipped``, ``failed``, ``timed_out`` or ``cancelled``; failures carry
    ``error_type``, ``message`` and ``traceback``. ``attempts`` > 1 means the stem was run again
    after its worker died. ``deleted`` names the sources deleted (``delete_sources``), whose
    sizes add up to ``deleted_bytes``. ``carried`` counts the members of the existing archive carried over
    into the new one (merged); ``dropped`` names those that ``overwrite="replace"`` removed.
    """

    stem: str
    archive: Path | None
    files: tuple[str, ...]
    bytes_in: int
    bytes_out: int
    seconds: float
    status: Status
    error_type: str | None = None
    message: str = ""
    traceback: str = ""
    verified: bool = False
    deleted: tuple[str, ...] = ()
    compressor: str = ""
    attempts: int = 1
    cpu_seconds: float = 0.0
    peak_rss: int = 0
    carried: int = 0
    dropped: tuple[str, ...] = ()
    deleted_bytes: int = 0

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "skipped")

    def to_record(self) -> dict[str, object]:
        d = asdict(self)
        d["archive"] = str(self.archive) if self.archive else None
        d["files"] = list(self.files)
        d["deleted"] = list(self.deleted)
        d["dropped"] = list(self.dropped)
        return d


@dataclass(frozen=True, repr=False)
class Report:
    """The result of a run: one :class:`StemResult` per stem, and the :class:`Plan` it ran
    (what the plan left out: ``unmatched``, ``empty_stems``, ``contested``, ``ignored``).

    In Jupyter it renders as a table; ``print(report)`` gives a text table. ``report.failed``
    lists failed and timed-out stems; ``report.to_records()`` gives plain dicts. ``started`` is
    when the run began (ISO 8601, local time, seconds).
    """

    results: tuple[StemResult, ...]
    seconds: float
    workers: int
    executor: str
    plan: Plan | None = None
    notes: tuple[str, ...] = ()
    error_report: Path | None = None
    started: str = field(default_factory=lambda: datetime.now().isoformat(timespec="seconds"))

    # --- what the plan says -----------------------------------------------------------------
    @property
    def source(self) -> Path | None:
        """The folder the plan read."""
        return self.plan.source if self.plan is not None else None

    @property
    def output(self) -> Path | None:
        """The folder of the archives."""
        return self.plan.output if self.plan is not None else None

    @property
    def unmatched(self) -> tuple[Path, ...]:
        """Files that fit no stem."""
        return self.plan.unmatched if self.plan is not None else ()

    @property
    def empty_stems(self) -> tuple[str, ...]:
        """Stems with no files (no archive)."""
        return self.plan.empty_stems if self.plan is not None else ()

    @property
    def contested(self) -> tuple[tuple[Path, tuple[str, ...]], ...]:
        """Files that several stems fit, with those stems."""
        return self.plan.contested if self.plan is not None else ()

    @property
    def ignored(self) -> tuple[tuple[Path, str], ...]:
        """Entries the scan ignored, with why."""
        return self.plan.ignored if self.plan is not None else ()

    # --- selections -------------------------------------------------------------------------
    def _with(self, *statuses: str) -> tuple[StemResult, ...]:
        return tuple(r for r in self.results if r.status in statuses)

    @property
    def ok(self) -> tuple[StemResult, ...]:
        """Stems whose archive was written."""
        return self._with("ok")

    @property
    def skipped(self) -> tuple[StemResult, ...]:
        return self._with("skipped")

    @property
    def failed(self) -> tuple[StemResult, ...]:
        """Stems that failed or timed out."""
        return self._with("failed", "timed_out")

    @property
    def timed_out(self) -> tuple[StemResult, ...]:
        return self._with("timed_out")

    @property
    def cancelled(self) -> tuple[StemResult, ...]:
        return self._with("cancelled")

    @property
    def success(self) -> bool:
        """True when no stem failed, timed out or was cancelled."""
        return not self.failed and not self.cancelled

    def __getitem__(self, stem: str) -> StemResult:
        for r in self.results:
            if r.stem == stem:
                return r
        raise KeyError(stem)

    def __len__(self) -> int:
        return len(self.results)

    # --- totals -----------------------------------------------------------------------------
    @property
    def bytes_in(self) -> int:
        return sum(r.bytes_in for r in self.ok)

    @property
    def bytes_out(self) -> int:
        return sum(r.bytes_out for r in self.ok)

    @property
    def throughput(self) -> float:
        """Bytes of input archived per second of wall time."""
        return self.bytes_in / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_utilisation(self) -> float:
        """Worker CPU seconds over ``workers × wall seconds`` (0..1)."""
        cpu = sum(r.cpu_seconds for r in self.results)
        return min(1.0, cpu / (self.workers * self.seconds)) if self.seconds > 0 and self.workers else 0.0

    @property
    def peak_rss(self) -> int:
        """Largest resident memory seen in one worker, in bytes."""
        return max((r.peak_rss for r in self.results), default=0)

    @property
    def advice(self) -> str | None:
        """One line of tuning advice when the run was bound by something the user can change."""
        done = [r for r in self.results if r.status == "ok"]
        ran = [r for r in self.results if r.status not in ("skipped", "cancelled")]
        if not done or self.seconds < ADVICE_AFTER_SECONDS or self.cancelled:  # short or stopped: no tuning
            return None
        compressors = {r.compressor for r in done}
        if len(ran) < self.workers and self.workers > 1:
            return (f"only {len(ran)} stem(s) for {self.workers} workers: the extra workers idled; "
                    f"use workers={len(ran)} or split the data into more stems")
        if any(c.startswith("zlib-") for c in compressors) and self.cpu_utilisation > 0.7:
            return ("compression-bound with zlib: install isal (pip install isal) for a deflate "
                    "several times faster, or lower the level")
        if any(c.startswith(("bzip2", "lzma")) for c in compressors) and self.cpu_utilisation > 0.7:
            return "compression-bound: bzip2/lzma are slow; deflate is several times faster"
        import statistics

        median = statistics.median(r.bytes_in for r in done)
        if len(done) >= 1000 and median < 64 * 1024:
            return (f"{len(done)} tiny stems (median {format_bytes(median)}): creating files dominates; "
                    "fewer, larger stems are faster")
        if self.cpu_utilisation < 0.4 and self.throughput > 0:
            return (f"I/O-bound: workers were busy {self.cpu_utilisation:.0%} of the time at "
                    f"{format_bytes(self.throughput)}/s; more workers will not help")
        return None

    @property
    def deleted_files(self) -> int:
        """Source files the run deleted (``delete_sources``)."""
        return sum(len(r.deleted) for r in self.results)

    @property
    def deleted_bytes(self) -> int:
        """Bytes of the source files the run deleted."""
        return sum(r.deleted_bytes for r in self.results)

    def deletion_line(self) -> str | None:
        """``"12 source file(s) deleted (3.4 MiB)"``, or None when nothing was deleted."""
        if not self.deleted_files:
            return None
        return f"{self.deleted_files} source file(s) deleted ({format_bytes(self.deleted_bytes)})"

    def __repr__(self) -> str:
        return f"<zipkit.Report: {self.summary_line()}>"

    # --- rendering --------------------------------------------------------------------------
    def summary_line(self) -> str:
        parts = [f"{len(self.ok)} ok"]
        for label, group in (("skipped", self.skipped), ("failed", self._with("failed")),
                             ("timed out", self.timed_out), ("cancelled", self.cancelled)):
            if group:
                parts.append(f"{len(group)} {label}")
        ratio = f" ({self.bytes_out / self.bytes_in:.0%})" if self.bytes_in else ""
        deleted = self.deletion_line()
        return (f"{', '.join(parts)} of {len(self.results)} stem(s); {format_bytes(self.bytes_in)} → "
                f"{format_bytes(self.bytes_out)}{ratio} in {self.seconds:.2f} s "
                f"({format_bytes(self.throughput)}/s, {self.workers} worker(s), {self.executor})"
                + (f"; {deleted}" if deleted else ""))

    def _in_table_order(self) -> list[StemResult]:
        """Failures first (failed, timed out), then the rest in the order of the plan."""
        return sorted(self.results, key=lambda r: r.status not in ("failed", "timed_out"))

    def _rows(self) -> list[list[object]]:
        rows = []
        for r in self._in_table_order():
            note = r.message if r.status != "ok" else ("retried" if r.attempts > 1 else "")
            if r.status == "ok" and (r.carried or r.dropped):
                merged = (f"replace: {len(r.dropped)} member(s) dropped" if r.dropped
                          else f"merge: {r.carried} member(s) kept")
                note = f"{merged}; {note}" if note else merged
            ran = r.status not in ("skipped", "cancelled")  # "—" for what did not happen
            rows.append([r.stem, r.status.replace("_", " "), len(r.files),
                         format_bytes(r.bytes_in) if ran else NOTHING,
                         format_bytes(r.bytes_out) if r.status == "ok" else NOTHING,
                         f"{r.seconds:.2f} s" if ran else NOTHING, note])
        return rows

    _HEADERS = ("stem", "status", "files", "in", "out", "time", "note")

    def _notes(self) -> list[str]:
        out = list(self.notes)
        out += plan_notes(self.unmatched, self.empty_stems, self.contested, self.ignored)
        dropped = [r for r in self.ok if r.dropped]
        for r in dropped[:10]:
            out.append(f"{r.stem}: replace dropped {len(r.dropped)} member(s): "
                       + ", ".join(r.dropped[:10]) + (" …" if len(r.dropped) > 10 else ""))
        if len(dropped) > 10:
            out.append(f"… {len(dropped) - 10} more stems had members dropped")
        if self.ok and self.seconds > 0:
            out.append(f"performance: {format_bytes(self.throughput)}/s, workers "
                       f"{self.cpu_utilisation:.0%} busy, peak memory of a zipping process "
                       f"{format_bytes(self.peak_rss)}")
        if self.error_report:
            out.append(f"error report: {self.error_report}")
        if self.advice:
            out.append(f"advice: {self.advice}")
        return out

    def __str__(self) -> str:
        return self.to_text()

    def to_text(self, max_rows: int | None = 50) -> str:
        """The plain-text report; ``max_rows=None`` shows every stem."""
        lines = [f"zipkit report: {self.summary_line()}",
                 text_table(self._HEADERS, self._rows(), max_rows=max_rows)]
        lines += self._notes()
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import html

        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self._notes())
        failures = "".join(
            f"<details class='zipkit-failure'><summary>{html.escape(r.stem)}: "
            f"{html.escape(r.error_type or r.status)}: {html.escape(r.message)}</summary>"
            f"<pre>{html.escape(r.traceback)}</pre></details>"
            for r in self.failed
        )
        line = self.deletion_line()  # what a run deleted is always said, and seen
        deleted = (f"<p class='zipkit-deleted'><b>{html.escape(line)}</b>, each after its archive was "
                   "written, fsynced and verified</p>") if line else ""
        return (
            "<div class='zipkit-report'>"
            f"<p><b>zipkit report</b>: {html.escape(self.summary_line())}</p>" + deleted
            + html_table(self._HEADERS, self._rows(), css_class="zipkit-report-table",
                         row_classes=[f"zipkit-{r.status}" for r in self._in_table_order()])
            + (f"<ul>{notes}</ul>" if notes else "") + failures + "</div>"
        )

    def to_records(self) -> list[dict[str, object]]:
        """One plain dict per stem (JSON-serialisable), e.g. for ``pandas.DataFrame``."""
        return [r.to_record() for r in self.results]

    def save_error_report(self, path: str | os.PathLike[str]) -> Path:
        """Write the failed stems (with tracebacks) and the run's totals as JSON to ``path``."""
        import json

        p = Path(path)
        doc = {
            "zipkit_error_report": 1,
            "started": self.started,
            "summary": self.summary_line(),
            "source": str(self.source) if self.source else None,
            "output": str(self.output) if self.output else None,
            "failed": [r.to_record() for r in self.failed],
            "cancelled": [r.stem for r in self.cancelled],
            "unmatched": [str(u) for u in self.unmatched],
            "empty_stems": list(self.empty_stems),
            "notes": list(self.notes),
        }
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(doc, indent=2, ensure_ascii=False), encoding="utf-8")
        return p

