"""Build the :class:`Plan` of what a run would write, in named steps.

:func:`plan` checks the values, takes the stems (a marker folder, a list, or the files' own
names), scans the source once (zipkit._scan), matches files to stems (zipkit._match), decides
what to do with each archive, refuses unsafe inputs and outputs (zipkit._refusals) and returns
the plan. Nothing here writes to disk, except a probe file (created and removed at once) when
two archive names could be one file on a file system that ignores case.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from . import _options as opt
from . import _refusals as refuse
from ._actions import Action, archive_action
from ._errors import NothingToDo, SourceError, UnsafeStemError, UsageError
from ._match import Grouping, group, group_own, match_stem
from ._options import COMPRESSIONS as COMPRESSIONS  # these seven: defined in _options, re-exported
from ._options import MATCH_MODES as MATCH_MODES
from ._options import OVERWRITE_POLICIES as OVERWRITE_POLICIES
from ._options import ArchiveOptions as ArchiveOptions
from ._options import Compression as Compression
from ._options import MatchMode as MatchMode
from ._options import Overwrite as Overwrite
from ._scan import Scan, SourceFile, as_list, folder, scan, select_markers
from ._table import format_bytes, html_table, plan_notes, text_table
from ._tempfiles import TEMP_PREFIX, TEMP_SUFFIX

__all__ = [
    "TEMP_PREFIX",
    "TEMP_SUFFIX",
    "ArchiveOptions",
    "Plan",
    "SourceFile",
    "StemPlan",
    "match_stem",
    "normalize_extensions",
    "plan",
    "plan_reads",
]

log = logging.getLogger("zipkit")

class StemPlan(tuple[str, "tuple[SourceFile, ...] | SourceFile", "Path | None", "Path | None", str, str,
                     frozenset[str], tuple[str, ...], tuple[str, ...]]):
    """One stem: its files (sorted by name), its archive, and what the run will do with it.

    ``action`` is ``"create"`` (no archive yet), ``"merge"`` (an archive exists: its members
    that this run does not replace, ``kept``, are carried over), ``"replace"`` (rebuilt from
    this run's files only; ``dropped`` names the members it removes), ``"skip"``, or
    ``"fail"`` (the file at ``archive`` is not a readable zip archive: it is kept and the stem
    fails); ``reason`` says why. ``keep`` names files that are never deleted (files shared
    with other stems in ``contains`` mode).

    A frozen value, compared like a dataclass of these fields; compact (a tuple underneath; the
    archive's ``Path`` is made when asked for), as a plan may hold hundreds of thousands.
    """

    __slots__ = ()

    def __new__(cls, stem: str, files: tuple[SourceFile, ...], archive: Path, action: Action = "create",
                reason: str = "", keep: frozenset[str] = frozenset(), kept: tuple[str, ...] = (),
                dropped: tuple[str, ...] = ()) -> StemPlan:
        return tuple.__new__(cls, (stem, files, archive, None, action, reason, keep, kept, dropped))

    @classmethod
    def _in(cls, out: Path, stem: str, files: tuple[SourceFile, ...], keep: frozenset[str]) -> StemPlan:
        """A stem to create whose archive is ``out / f"{stem}.zip"`` (that ``Path`` made when asked for).

        A stem of one file holds the file itself, not a tuple of it (a stem per file is common)."""
        one: tuple[SourceFile, ...] | SourceFile = files[0] if len(files) == 1 else files
        return tuple.__new__(cls, (stem, one, None, out, "create", "", keep, (), ()))

    @property
    def stem(self) -> str:
        return self[0]

    @property
    def files(self) -> tuple[SourceFile, ...]:
        files = self[1]
        return (files,) if isinstance(files, SourceFile) else files  # one file: held as itself (_in)

    @property
    def archive(self) -> Path:
        archive, out = self[2], self[3]
        if archive is None:
            assert out is not None
            return out / f"{self[0]}.zip"
        return archive

    @property
    def action(self) -> Action:
        return self[4]  # type: ignore[return-value]  # one of Action, as made by __new__ or _in

    @property
    def reason(self) -> str:
        return self[5]

    @property
    def keep(self) -> frozenset[str]:
        return self[6]

    @property
    def kept(self) -> tuple[str, ...]:
        return self[7]

    @property
    def dropped(self) -> tuple[str, ...]:
        return self[8]

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.files)

    def _fields(self) -> tuple[object, ...]:
        return (self[0], self.files, self.archive, *self[4:])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StemPlan):
            return NotImplemented
        return self._fields() == other._fields()

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self) -> int:
        return hash(self._fields())

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return StemPlan, self._fields()

    def __repr__(self) -> str:
        return "StemPlan(" + ", ".join(f"{k}={v!r}" for k, v in zip(_STEM_FIELDS, self._fields())) + ")"


_STEM_FIELDS = ("stem", "files", "archive", "action", "reason", "keep", "kept", "dropped")


@dataclass(frozen=True, repr=False)
class Plan:
    """What a run would do, computed without writing anything.

    ``stems`` holds every stem that has files (including those to skip); ``unmatched`` the
    files that fit no stem; ``empty_stems`` the stems that have no files (no archive is made
    for them); ``contested`` the files that several stems fit, with those stems (the longest
    wins in ``prefix`` mode; in ``contains`` mode the file goes into each and is never
    deleted); ``ignored`` entries that are not used, with the reason (folders, FIFOs, links
    leaving the source folder, zipkit's own archives and temp files).
    """

    source: Path
    output: Path
    extensions: tuple[str, ...]
    match: MatchMode
    overwrite: Overwrite
    options: ArchiveOptions
    stems: tuple[StemPlan, ...]
    unmatched: tuple[Path, ...] = ()
    empty_stems: tuple[str, ...] = ()
    contested: tuple[tuple[Path, tuple[str, ...]], ...] = ()
    ignored: tuple[tuple[Path, str], ...] = ()
    marker_source: Path | None = None
    inputs: tuple[Path, ...] = ()  # other files read that could be outputs: the config, *.zip markers

    @property
    def to_write(self) -> tuple[StemPlan, ...]:
        """The stems whose archive will be (re)written."""
        return tuple(s for s in self.stems if s.action != "skip")

    @property
    def to_skip(self) -> tuple[StemPlan, ...]:
        return tuple(s for s in self.stems if s.action == "skip")

    @property
    def total_bytes(self) -> int:
        """Bytes to read (the files of the stems to write)."""
        return sum(s.bytes for s in self.to_write)

    @property
    def file_count(self) -> int:
        return sum(len(s.files) for s in self.to_write)

    def __repr__(self) -> str:
        return f"<zipkit.Plan {self.source} -> {self.output}: {self.summary_line()}>"

    def summary_line(self) -> str:
        return (
            f"{len(self.to_write)} archive(s) to write from {self.file_count} file(s) "
            f"({format_bytes(self.total_bytes)}), {len(self.to_skip)} skipped, "
            f"{len(self.unmatched)} unmatched file(s), {len(self.empty_stems)} stem(s) without files"
        )

    def to_records(self) -> list[dict[str, object]]:
        """One dict per stem: stem, archive, action, reason, files, bytes, kept, dropped."""
        return [
            {"stem": s.stem, "archive": str(s.archive), "action": s.action, "reason": s.reason,
             "files": list(s.names), "bytes": s.bytes, "kept": list(s.kept),
             "dropped": list(s.dropped)}
            for s in self.stems
        ]

    def _rows(self) -> list[list[object]]:
        return [[s.stem, len(s.files), format_bytes(s.bytes), s.action, s.reason] for s in self.stems]

    def _notes(self) -> list[str]:
        return plan_notes(self.unmatched, self.empty_stems, self.contested, self.ignored)

    def __str__(self) -> str:
        return self.to_text()

    def to_text(self, max_rows: int | None = 50) -> str:
        """The plain-text plan; ``max_rows=None`` shows every stem."""
        head = f"zipkit plan: {self.source} -> {self.output}\n{self.summary_line()}\n"
        table = text_table(["stem", "files", "size", "action", "reason"], self._rows(), max_rows=max_rows)
        return "\n".join([head + table, *self._notes()])

    def _repr_html_(self) -> str:
        import html

        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self._notes())
        return (
            f"<div class='zipkit-plan'><p><b>zipkit plan</b>: {html.escape(self.summary_line())}</p>"
            + html_table(["stem", "files", "size", "action", "reason"], self._rows(),
                         css_class="zipkit-plan-table")
            + (f"<ul>{notes}</ul>" if notes else "")
            + "</div>"
        )


def normalize_extensions(extensions: str | Iterable[str], what: str = "extensions") -> tuple[str, ...]:
    """``['CSV', '.out']`` → ``('csv', 'out')``; longest first so ``tar.gz`` beats ``gz``."""
    out = opt.EXTENSIONS(extensions, what)
    if out is None:
        raise UsageError(f"{what}: give at least one extension")
    return out


def plan_reads(p: Plan, also: Path) -> dict[str, str]:
    """Real path → what it is, for every file a run of ``p`` reads or writes (archives too)
    that could be ``also``."""
    return refuse.reads_of_run(p.stems, p.inputs, also)


def plan(
    source: str | os.PathLike[str],
    extensions: str | Sequence[str],
    output: str | os.PathLike[str] | None = None,
    *,
    stems_from: str | os.PathLike[str] | None = None,
    stem_extensions: str | Sequence[str] | None = None,
    stems: Iterable[str] | None = None,
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
    allow_empty: bool = False,
    inputs: Iterable[str | os.PathLike[str]] = (),
) -> Plan:
    """Work out which archives a run would write, without writing anything.

    Parameters
    ----------
    source
        Folder of the files to zip (scanned once, not recursively).
    extensions
        Extensions of the files to put in archives, case-insensitive, with or without a dot.
    output
        Folder for the archives (created by the run); defaults to ``source``.
    stems_from, stem_extensions
        Take the stems from marker files in this folder with these extensions instead of
        from the data files' own names.
    stems
        Give the stems directly instead (a list of names).
    match
        ``"prefix"`` (default): a file belongs to the longest stem it starts with, followed by
        a character that is not a letter or digit. ``"contains"``: the old tool's substring rule.
    pattern, contains, not_contains, regex, min_size_kb, max_size_kb
        Marker filters on the marker's stem (glob ``*pattern*``, all substrings, none of the
        substrings, ``re.search``) and size in KiB.
    overwrite
        What to do with an existing ``STEM.zip``, as Info-ZIP zip does: ``"always"`` (merge:
        this run's files replace the members of the same name, every other member is carried
        over as its stored bytes), ``"update"`` (skip an archive newer than all this run's
        files that already holds them all; otherwise merge), ``"never"`` (skip existing
        archives) or ``"replace"`` (rebuild from this run's files only; the members dropped
        are listed). A file at ``STEM.zip`` that is not a readable zip archive is never
        replaced: that stem fails.
    compression, level, deflate_backend, verify, delete_sources, reproducible, durable, timeout
        How each archive is written; see :func:`zipkit.zip_by_extension`.
    allow_empty
        Return an empty plan instead of raising :class:`NothingToDo` when no file matches.
    inputs
        Other files the run reads (e.g. its config file): like the sources and markers, they
        are never written over; an archive or error-report path that is one of them is refused.

    Returns
    -------
    Plan

    Examples
    --------
    >>> p = plan("output/csv", ["csv"], "output/zip", stems_from="models",
    ...          stem_extensions=["yml"])  # doctest: +SKIP
    >>> print(p)  # doctest: +SKIP
    """
    exts = normalize_extensions(extensions)
    options, (min_size_kb, max_size_kb), regex = _checked_values(
        match, overwrite, compression, level, deflate_backend, verify, delete_sources, reproducible,
        durable, timeout, (min_size_kb, max_size_kb), regex)
    if stems is not None and stems_from is not None:
        raise UsageError("give either stems or stems_from, not both")
    src = folder(source, "source folder")
    out = Path(output).expanduser() if output is not None else src
    if out.exists() and not out.is_dir():
        raise SourceError(f"output is not a folder: {out}", path=out)
    read_too = [Path(p) for p in inputs]
    wanted, marker_folder = _wanted_stems(stems, stems_from, stem_extensions, read_too, pattern=pattern,
                           contains=as_list(contains, "contains"),
                           not_contains=as_list(not_contains, "not_contains"), regex=regex,
                           min_size_kb=min_size_kb, max_size_kb=max_size_kb)
    with _collector_paused():
        found, out_names = _scan_folders(src, out, exts, own_stems=wanted is None)
        grouping = (group_own(found.files, found.stems) if wanted is None
                    else group(found.files, wanted, match))
        stem_plans = _stem_plans(grouping, out, out_names, overwrite, options, found.ignored)
    # Inputs are never outputs, and no two stems may write one file: refused before any work.
    refuse.refuse_inputs_as_outputs(stem_plans, read_too, extensions=exts, links=found.links)
    refuse.refuse_same_files(stem_plans, read_too, out_names)
    refuse.refuse_colliding_names(out, stem_plans)

    empty = tuple(s for s in (wanted or []) if s not in grouping.groups)
    result = Plan(
        source=src, output=out, extensions=exts, match=match, overwrite=overwrite,
        options=options, stems=tuple(stem_plans), unmatched=tuple(sorted(grouping.unmatched)),
        empty_stems=empty, contested=tuple(sorted(grouping.contested)),
        ignored=tuple(sorted(found.ignored)), marker_source=marker_folder, inputs=tuple(read_too),
    )
    for p, why in result.ignored:
        log.info("ignored %s: %s", p, why)
    if not result.stems and not allow_empty:
        what = f"no file in {src} has extension {', '.join(exts)}"
        if wanted is not None:
            what = (f"no file in {src} with extension {', '.join(exts)} matches any of "
                    f"{len(wanted)} stem(s)" if wanted else "no marker file selected any stem")
        raise NothingToDo(f"nothing to do: {what}")
    return result


def _checked_values(match: MatchMode, overwrite: Overwrite, compression: Compression, level: int | None,
                    deflate_backend: Literal["auto", "zlib", "isal"], verify: bool, delete_sources: bool,
                    reproducible: bool, durable: bool, timeout: float | None,
                    kib: tuple[float | None, float | None], regex: str | None,
                    ) -> tuple[ArchiveOptions, tuple[float | None, float | None], str | None]:
    """Step 1: every value checked before any folder is looked at (zipkit._options: one
    converter per kind): the archive options of the plan, the marker size range and regex."""
    opt.choice(match, MATCH_MODES, "match")
    opt.choice(overwrite, OVERWRITE_POLICIES, "overwrite")
    opt.choice(compression, COMPRESSIONS, "compression")
    opt.choice(deflate_backend, ("auto", "zlib", "isal"), "deflate_backend")
    level = opt.compression_level(level, compression)
    timeout = opt.SECONDS(timeout, "timeout")
    kib = opt.kib_range(*kib)
    regex = opt.REGEX(regex, "regex")
    sde = opt.source_date_epoch() if reproducible else None  # read only when it is used
    return ArchiveOptions(
        compression=compression, level=level, deflate_backend=deflate_backend,
        verify=verify or delete_sources, delete_sources=delete_sources,
        reproducible=reproducible, source_date_epoch=sde, durable=durable,
        timeout=float(timeout) if timeout is not None else None,
    ), kib, regex


def _wanted_stems(stems: Iterable[str] | None, stems_from: str | os.PathLike[str] | None,
                  stem_extensions: str | Sequence[str] | None, read_too: list[Path], *, pattern: str | None,
                  contains: Sequence[str], not_contains: Sequence[str], regex: str | None,
                  min_size_kb: float | None, max_size_kb: float | None,
                  ) -> tuple[list[str] | None, Path | None]:
    """Step 2: the stems given up front (a list, or the markers selected in ``stems_from``),
    sorted, unique and checked, and the marker folder; None for own stems. Markers named like
    archives join ``read_too``."""
    marker_folder = None
    if stems is not None:
        wanted = as_list(list(stems), "stems")
    elif stems_from is not None:
        if not stem_extensions:
            raise UsageError("stems_from needs stem_extensions (the marker files' extensions)")
        marker_folder = folder(stems_from, "stems_from folder")
        markers = select_markers(
            marker_folder, normalize_extensions(stem_extensions, "stem_extensions"), pattern=pattern,
            contains=contains, not_contains=not_contains, regex=regex,
            min_size_kb=min_size_kb, max_size_kb=max_size_kb,
        )
        wanted = [stem for stem, _ in markers]
        # only a marker named like an archive (*.zip) can be one
        read_too += [marker_folder / name for _, name in markers if name.lower().endswith(".zip")]
    else:
        return None, None
    wanted = sorted(set(wanted))
    for s in wanted:
        refuse.check_stem(s)
    return wanted, marker_folder


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector paused while the plan's values are built: a few objects
    per file and no cycle among them, which its full passes over the growing heap would walk
    again and again (measured: a third of planning 200,000 files)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _scan_folders(src: Path, out: Path, exts: Sequence[str], *, own_stems: bool) -> tuple[Scan, set[str]]:
    """Step 3: one scan of the source (each file's stem too, for own stems) and the names in
    the output folder that an archive can have, ``*.zip`` in any case (the same listing when
    it is the source)."""
    same_folder = out.is_dir() and os.path.realpath(out) == os.path.realpath(src)
    found = scan(src, exts, stems=own_stems)
    if same_folder:
        return found, found.zips
    if not out.is_dir():
        return found, set()
    with os.scandir(out) as it:
        return found, {e.name for e in it if e.name[-4:].lower() == ".zip"}


def _stem_plans(grouping: Grouping, out: Path, out_names: set[str], overwrite: Overwrite,
                options: ArchiveOptions, ignored: list[tuple[Path, str]]) -> list[StemPlan]:
    """Step 4: one StemPlan per stem with files, by stem, each with its archive's action; the
    files of a stem that would escape the output folder join ``ignored``."""
    stem_plans = []
    keys = refuse.zip_keys(out_names)
    keep = grouping.keep
    new = StemPlan._in
    for stem in sorted(grouping.groups):
        group_files = grouping.groups[stem]
        try:
            refuse.check_stem(stem)
        except UnsafeStemError:
            for f in group_files:
                ignored.append((f.path, f"stem {stem!r} would escape the output folder"))
            continue
        files = group_files if isinstance(group_files, tuple) else tuple(sorted(group_files, key=_by_name))
        name = f"{stem}.zip"
        if name in out_names or (keys and refuse.archive_exists(out / name, name, out_names, keys)):
            archive = out / name
            exists = True
            action, reason, kept_names, dropped = archive_action(archive, files, exists, overwrite,
                                                                  check_crc=options.verify)
            stem_plans.append(StemPlan(stem, files, archive, action, reason,
                                       frozenset(keep.get(stem, ())), kept_names, dropped))
        else:
            stem_plans.append(new(out, stem, files, frozenset(keep[stem]) if stem in keep else _NO_NAMES))
    return stem_plans


_NO_NAMES: frozenset[str] = frozenset()


def _by_name(f: SourceFile) -> str:
    return f.name
