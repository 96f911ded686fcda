"""Scan folders once, match files to stems, and build the :class:`Plan` of what would be written.

Nothing in this module writes to disk, except a probe file (created and removed at once) when
two archive names could be one file on a file system that ignores case.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import logging
import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from . import _options as opt
from ._errors import NothingToDo, SourceError, UnsafeStemError, UsageError
from ._options import COMPRESSIONS as COMPRESSIONS  # these seven: defined in _options, re-exported
from ._options import MATCH_MODES as MATCH_MODES
from ._options import OVERWRITE_POLICIES as OVERWRITE_POLICIES
from ._options import ArchiveOptions as ArchiveOptions
from ._options import Compression as Compression
from ._options import MatchMode as MatchMode
from ._options import Overwrite as Overwrite
from ._table import format_bytes, html_table, plan_notes, text_table

__all__ = [
    "ArchiveOptions",
    "Plan",
    "SourceFile",
    "StemPlan",
    "match_stem",
    "normalize_extensions",
    "plan",
]

log = logging.getLogger("zipkit")

Action = Literal["create", "merge", "replace", "skip", "fail"]
TEMP_PREFIX = ".zipkit-"
TEMP_SUFFIX = ".tmp"


@dataclass(frozen=True)
class SourceFile:
    """One regular file as seen by the scan: where it is, how big, when last changed, which file.

    ``dev`` and ``ino`` identify the file (0: unknown); ``target`` is the file a symlink that
    the plan accepted resolves to (the file that is opened, without following links).
    """

    path: Path
    size: int
    mtime_ns: int
    dev: int = 0
    ino: int = 0
    ctime_ns: int = 0
    target: Path | None = None

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class StemPlan:
    """One stem: its files (sorted by name), its archive, and what the run will do with it.

    ``action`` is ``"create"`` (no archive yet), ``"merge"`` (an archive exists: its members
    that this run does not replace, ``kept``, are carried over), ``"replace"`` (rebuilt from
    this run's files only; ``dropped`` names the members it removes), ``"skip"``, or
    ``"fail"`` (the file at ``archive`` is not a readable zip archive: it is kept and the stem
    fails); ``reason`` says why. ``keep`` names files that are never deleted (files shared
    with other stems in ``contains`` mode).
    """

    stem: str
    files: tuple[SourceFile, ...]
    archive: Path
    action: Action = "create"
    reason: str = ""
    keep: frozenset[str] = frozenset()
    kept: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()

    @functools.cached_property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)

    @functools.cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.files)


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


def _split_ext(name: str, extensions: Sequence[str]) -> str | None:
    """The stem of ``name`` if it ends in ``.ext`` for one of ``extensions`` (case-insensitive)."""
    low = name.lower()
    for ext in extensions:
        if low.endswith("." + ext) and len(name) > len(ext) + 1:
            return name[: -len(ext) - 1]
    return None


def match_stem(name: str, stems: frozenset[str] | set[str]) -> list[str]:
    """Every stem that ``name`` belongs to under the prefix rule, longest first.

    ``name`` belongs to ``S`` when it starts with ``S`` followed by a character that is not a
    letter or digit (``S.csv``, ``S_x.csv``, ``S-x``, ``S x``).
    """
    fits = []
    for i in range(len(name) - 1, 0, -1):
        if not name[i].isalnum() and name[:i] in stems:
            fits.append(name[:i])
    return fits


def _match_contains(name: str, stems: Sequence[str]) -> list[str]:
    """The old tool's rule: every stem that occurs anywhere in ``name``, longest first."""
    return sorted((s for s in stems if s in name), key=len, reverse=True)


def _check_stem(stem: str) -> None:
    bad = (
        not stem
        or stem in (".", "..")
        or any(c in stem for c in ("/", "\\", "\0"))
        or os.path.isabs(stem)
    )
    if bad:
        raise UnsafeStemError(f"stem {stem!r} would escape the output folder; refused", stem=stem)


def _folder(path: str | os.PathLike[str], what: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise SourceError(f"{what} does not exist: {p}", path=p)
    if not p.is_dir():
        raise SourceError(f"{what} is not a folder: {p}", path=p)
    return p


@dataclass
class _Scan:
    files: list[SourceFile] = field(default_factory=list)
    ignored: list[tuple[Path, str]] = field(default_factory=list)
    names: set[str] = field(default_factory=set)


def _list(folder: Path) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(folder))
    except OSError as e:
        raise SourceError(f"cannot list {folder}: {e.strerror}", path=folder) from e


def _is_temp(name: str) -> bool:
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


def _scan(folder: Path, extensions: Sequence[str], *, skip_names: frozenset[str] = frozenset()) -> _Scan:
    """One listing of ``folder``: regular files whose name ends in one of ``extensions``.

    Links are followed when they point to a regular file inside ``folder``'s tree; others are
    ignored with a reason, as are folders, FIFOs, sockets and zipkit's temp files.
    """
    out = _Scan()
    real_root = os.path.realpath(folder)
    entries = _list(folder)
    out.names = {e.name for e in entries}
    # pathlib's own child constructor (what iterdir uses) skips re-parsing the folder per file;
    # Path(entry.path) cost ~30% of a scan of 15,000 files
    child = getattr(folder, "_make_child_relpath", folder.joinpath)
    for entry in entries:
        name = entry.name
        if _split_ext(name, extensions) is None:
            if name[:1] == "." and name[1:].lower() in extensions:
                out.ignored.append((child(name), "no stem: the name is only the extension"))
            continue
        path = child(name)
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            out.ignored.append((path, "the name is not valid UTF-8 (undecodable bytes), so it "
                                      "cannot be written into a zip"))
            continue
        if _is_temp(name):
            out.ignored.append((path, "zipkit temp file"))
            continue
        if name in skip_names:
            out.ignored.append((path, "an archive this run writes"))
            continue
        resolved = None
        try:
            if entry.is_symlink():
                target = os.path.realpath(entry.path)
                inside = os.path.commonpath([real_root, target]) == real_root
                if not os.path.isfile(target):
                    out.ignored.append((path, "symlink to something that is not a regular file"))
                    continue
                if not inside:
                    out.ignored.append((path, "symlink to a file outside the source folder"))
                    continue
                resolved = Path(target)
                st = os.stat(target)
            elif entry.is_file(follow_symlinks=False):
                st = entry.stat(follow_symlinks=False)
            else:
                kind = "folder" if entry.is_dir(follow_symlinks=False) else "not a regular file"
                out.ignored.append((path, kind))
                continue
        except OSError as e:  # vanished between listing and stat
            out.ignored.append((path, f"cannot stat: {e.strerror}"))
            continue
        out.files.append(SourceFile(path, st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino,
                                    st.st_ctime_ns, resolved))
    return out


def _marker_files(folder: Path, extensions: Sequence[str], *, sized: bool) -> list[tuple[str, int]]:
    """Names and sizes of the marker files in ``folder``, as :func:`_scan` selects them.

    A marker is only a name: unless a size filter needs sizes, they are 0 and no file is
    stat'ed. A folder with links goes through _scan, for its link policy.
    """
    if not sized:
        entries = _list(folder)
        if not any(e.is_symlink() for e in entries):
            return [(e.name, 0) for e in entries
                    if _split_ext(e.name, extensions) is not None and not _is_temp(e.name)
                    and e.is_file(follow_symlinks=False)]
    return [(f.name, f.size) for f in _scan(folder, extensions).files]


def _select_markers(
    folder: Path,
    extensions: Sequence[str],
    *,
    pattern: str | None,
    contains: Sequence[str],
    not_contains: Sequence[str],
    regex: str | None,
    min_size_kb: float | None,
    max_size_kb: float | None,
) -> list[tuple[str, str]]:
    """``(stem, file name)`` of the marker files in ``folder`` that pass the old tool's filters."""
    try:
        rx = re.compile(regex) if regex else None
    except re.error as e:
        raise UsageError(f"regex {regex!r} is not a valid regular expression: {e}") from e
    stems = []
    sized = min_size_kb is not None or max_size_kb is not None
    for name, size in _marker_files(folder, extensions, sized=sized):
        stem = _split_ext(name, extensions)
        assert stem is not None
        if pattern and not fnmatch.fnmatchcase(stem, f"*{pattern}*"):
            continue
        if any(c not in stem for c in contains) or any(c in stem for c in not_contains):
            continue
        if rx and not rx.search(stem):
            continue
        kb = size / 1024
        if (min_size_kb is not None and kb < min_size_kb) or (max_size_kb is not None and kb > max_size_kb):
            continue
        stems.append((stem, name))
    return stems


def _as_list(value: str | Sequence[str] | None, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not all(isinstance(v, str) for v in value):
        raise UsageError(f"{what}: expected a string or a list of strings, got {value!r}")
    return list(value)


def _members_word(n: int) -> str:
    return f"{n} member{'s' if n != 1 else ''}"


class _RealPaths:
    """Real paths of files, resolving each folder once (a realpath per file costs a stat per
    path component)."""

    def __init__(self) -> None:
        self.folders: dict[str, str] = {}

    def __call__(self, path: str | os.PathLike[str]) -> str:
        head, name = os.path.split(os.fspath(path))
        folder = self.folders.get(head)
        if folder is None:
            folder = self.folders[head] = os.path.realpath(head or ".")
        return os.path.join(folder, name)


def _reads(stem_plans: Sequence[StemPlan], others: Sequence[Path], real: _RealPaths,
           names: set[str]) -> dict[str, str]:
    """Real path → what it is, for the files the run reads (sources, markers, the config)
    whose base name is one of ``names`` (only those can be one of the run's outputs).

    A source that is a link is known by its resolved target; the link itself is never written.
    """
    reads: dict[str, str] = {}
    for sp in stem_plans:
        for f, name in zip(sp.files, sp.names):  # names: cached, the run needs them too
            if f.target is None:
                if name in names:
                    reads.setdefault(real(f.path), f"a source of stem {sp.stem!r} ({f.path})")
            elif f.target.name in names:
                reads.setdefault(str(f.target), f"a source of stem {sp.stem!r} ({f.path})")
    for p in others:
        if p.name in names or p.is_symlink():
            reads.setdefault(os.path.realpath(p), f"a file this run reads ({p})")
    return reads


def plan_reads(p: Plan, also: Path) -> dict[str, str]:
    """Real path → what it is, for every file a run of ``p`` reads or writes (archives too)
    that could be ``also``."""
    real = _RealPaths()
    names = {os.path.basename(os.path.realpath(also)), also.name}
    reads = _reads(p.stems, p.inputs, real, names)
    there = Path(os.path.realpath(also))
    folded = {name_key(n, True, True) for n in names}
    for sp in p.stems:
        if sp.archive.name in names:
            reads.setdefault(real(sp.archive), f"the archive of stem {sp.stem!r}")
        elif (name_key(sp.archive.name, True, True) in folded  # RUN1.ZIP for run1.zip: one file?
              and os.path.realpath(sp.archive.parent) == str(there.parent)
              and _folds(there.parent, sp.archive.name, there.name)):
            reads.setdefault(str(there), f"the archive of stem {sp.stem!r} ({sp.archive.name}) "
                                         "on a file system that ignores case or normalisation")
    try:  # an existing file there may be one of them under another name (a hard link)
        st = os.stat(also)
    except OSError:
        return reads
    ids = _identities(p.stems, p.inputs)
    for sp in p.stems:
        if sp.action != "create":
            with contextlib.suppress(OSError):
                there = os.stat(sp.archive)
                ids.setdefault((there.st_dev, there.st_ino), f"the archive of stem {sp.stem!r}")
    what = ids.get((st.st_dev, st.st_ino))
    if what is not None:
        reads.setdefault(os.path.realpath(also), f"{what} under another name ({_ANOTHER_NAME})")
    return reads


_ANOTHER_NAME = "a link, or a spelling that this file system takes for it"


def _identities(stem_plans: Sequence[StemPlan], others: Sequence[Path]) -> dict[tuple[int, int], str]:
    """(device, inode) → what it is, for the run's sources and ``others`` (markers, the config)."""
    ids: dict[tuple[int, int], str] = {}
    for sp in stem_plans:
        for f in sp.files:
            if f.ino:
                ids.setdefault((f.dev, f.ino), f"a source of stem {sp.stem!r} ({f.path})")
    for p in others:
        with contextlib.suppress(OSError):
            st = os.stat(p)
            ids.setdefault((st.st_dev, st.st_ino), f"a file this run reads ({p})")
    return ids


def _refuse_inputs_as_outputs(stem_plans: Sequence[StemPlan], others: Sequence[Path]) -> None:
    """UsageError when a stem's archive is a file this run reads (a source, marker, config)."""
    real = _RealPaths()
    reads = _reads(stem_plans, others, real, {f"{sp.stem}.zip" for sp in stem_plans})
    if not reads:
        return
    for sp in stem_plans:
        what = reads.get(real(sp.archive))
        if what is not None:
            raise UsageError(f"the archive of stem {sp.stem!r}, {sp.archive}, is {what}: an input "
                             "is never an output; choose another output folder or extensions")


def _refuse_same_files(stem_plans: Sequence[StemPlan], others: Sequence[Path], out_names: set[str]) -> None:
    """UsageError when an existing archive is, under another name, a file this run reads: a
    hard link or a symlink to a source, marker or the config, or (on a file system that folds
    case) ``A.ZIP`` read as a source where ``A.zip`` is written. Only archives whose name is in
    the output folder (folded) are looked at: one ``stat`` each."""
    present = _zip_keys(out_names)
    suspects = [sp for sp in stem_plans if sp.action != "create"
                or name_key(sp.archive.name, True, True) in present]
    if not suspects:
        return
    ids = _identities(stem_plans, others)
    for sp in suspects:
        try:
            st = os.stat(sp.archive)
        except OSError:
            continue
        what = ids.get((st.st_dev, st.st_ino))
        if what is not None:
            raise UsageError(f"the archive of stem {sp.stem!r}, {sp.archive}, is {what} under another "
                             f"name ({_ANOTHER_NAME}): an input is never an output; choose another "
                             "output folder")


def _zip_keys(out_names: Iterable[str]) -> set[str]:
    """The ``*.zip`` names in the output folder, folded as :func:`name_key` folds them."""
    return {name_key(n, True, True) for n in out_names if n[-4:].lower() == ".zip"}


def _archive_exists(archive: Path, out_names: set[str], zip_keys: set[str]) -> bool:
    """Whether ``archive`` is there: by name in the listing, or (on a file system that folds
    case or normalisation, e.g. ``RUN1.zip`` for stem ``run1``) by a ``lstat`` of that name."""
    return archive.name in out_names or (name_key(archive.name, True, True) in zip_keys
                                         and os.path.lexists(archive))


def name_key(name: str, fold_case: bool, fold_normalization: bool) -> str:
    """``name`` as a file system that folds case and/or Unicode normalisation compares it."""
    if fold_normalization:
        name = unicodedata.normalize("NFC", name)
    return name.casefold() if fold_case else name


def colliding(names: Iterable[str], fold_case: bool, fold_normalization: bool) -> list[tuple[str, str]]:
    """Pairs of distinct ``names`` that such a file system takes for the same file."""
    seen: dict[str, str] = {}
    pairs = []
    for n in names:
        k = name_key(n, fold_case, fold_normalization)
        if k in seen and seen[k] != n:
            pairs.append((seen[k], n))
        seen.setdefault(k, n)
    return pairs


def _folds(folder: Path, a: str, b: str) -> bool:
    """Whether the file system of ``folder`` takes names ``a`` and ``b`` for one file (a probe)."""
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent  # the output folder does not exist yet: probe where it will be
    tag = f"{TEMP_PREFIX}probe-{os.getpid()}-{os.urandom(4).hex()}-"
    probe = folder / f"{tag}{a}{TEMP_SUFFIX}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        return False  # cannot probe (read-only): the run cannot write there either
    os.close(fd)
    try:
        os.lstat(folder / f"{tag}{b}{TEMP_SUFFIX}")
        return True
    except OSError:
        return False
    finally:
        os.unlink(probe)


def _refuse_colliding_names(out: Path, stem_plans: Sequence[StemPlan]) -> None:
    """UsageError when two archive names are one file on the output folder's file system."""
    names = [f"{sp.stem}.zip" for sp in stem_plans]
    if not colliding(names, True, True):  # nothing could collide: no probe
        return
    fold_case = _folds(out, "Aa", "aA")
    fold_norm = _folds(out, "\u00e9", "e\u0301")
    pairs = colliding(names, fold_case, fold_norm)
    if pairs:
        a, b = pairs[0]
        more = f" (and {len(pairs) - 1} more pair(s))" if len(pairs) > 1 else ""
        raise UsageError(f"archives {a!r} and {b!r} would be the same file in {out}, whose file "
                         f"system ignores case or Unicode normalisation; stems {a[:-4]!r} and "
                         f"{b[:-4]!r} collide{more}")


def _archive_action(archive: Path, files: tuple[SourceFile, ...], exists: bool,
                    overwrite: Overwrite, check_crc: bool = False,
                    ) -> tuple[Action, str, tuple[str, ...], tuple[str, ...]]:
    """What to do with ``archive``: action, reason, members to keep, members to drop.

    An existing archive is read (its directory; every CRC too when ``check_crc``): anything
    there that is not a readable zip archive fails the stem under every policy.
    """
    if not exists:
        return "create", "", (), ()
    from ._errors import ExistingArchiveError
    from ._merge import read_existing, uncheckable

    try:
        got = read_existing(archive)
    except ExistingArchiveError as e:
        return "fail", str(e), (), ()
    if got is None:  # gone since the listing
        return "create", "", (), ()
    infos, st = got
    names = {f.name for f in files}
    kept = tuple(i.filename for i in infos if i.filename not in names)
    if overwrite == "never":
        return "skip", "archive exists", (), ()
    if overwrite == "replace":
        return "replace", f"replace: {_members_word(len(kept))} dropped", (), kept
    # a member the merge would carry but cannot check fails the stem: said now, not at run time
    why = next((w for i in infos if i.filename not in names and (w := uncheckable(i, archive))), None)
    merge = f"merge: {_members_word(len(kept))} kept"

    def merging(reason: str) -> tuple[Action, str, tuple[str, ...], tuple[str, ...]]:
        return ("fail", why, (), ()) if why else ("merge", reason, kept, ())

    if overwrite == "always":
        return merging(merge)
    # update: skip only an archive newer than every file of this run that holds all their names
    sizes = {i.filename: i.file_size for i in infos}
    if not names <= set(sizes):
        return merging(f"{merge} (new members)")
    if any(sizes[f.name] != f.size for f in files):
        return merging(f"{merge} (a member's size differs)")
    if any(f.mtime_ns > st.st_mtime_ns for f in files):
        return merging(f"{merge} (a member is newer)")
    if check_crc:  # verify on: trust no archive unread
        import zipfile
        import zlib

        try:
            with zipfile.ZipFile(archive) as zf:
                bad = zf.testzip()
        except (OSError, zipfile.BadZipFile, ValueError, zlib.error, EOFError, RuntimeError,
                NotImplementedError) as e:  # RuntimeError: encrypted; NotImplementedError: a method
            bad = f"? ({type(e).__name__})"
        if bad is not None:  # rebuilt: this run's files replace it, others are checked as carried
            return merging(f"{merge} (existing archive corrupt: bad CRC in {bad})")
    return "skip", "up to date", (), ()


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
    # Every value checked before any folder is looked at (zipkit._options: one converter per kind)
    exts = normalize_extensions(extensions)
    opt.choice(match, MATCH_MODES, "match")
    opt.choice(overwrite, OVERWRITE_POLICIES, "overwrite")
    opt.choice(compression, COMPRESSIONS, "compression")
    opt.choice(deflate_backend, ("auto", "zlib", "isal"), "deflate_backend")
    level = opt.compression_level(level, compression)
    timeout = opt.SECONDS(timeout, "timeout")
    min_size_kb, max_size_kb = opt.kib_range(min_size_kb, max_size_kb)
    regex = opt.REGEX(regex, "regex")
    sde = opt.source_date_epoch() if reproducible else None  # read only when it is used
    if stems is not None and stems_from is not None:
        raise UsageError("give either stems or stems_from, not both")
    src = _folder(source, "source folder")
    out = Path(output).expanduser() if output is not None else src
    if out.exists() and not out.is_dir():
        raise SourceError(f"output is not a folder: {out}", path=out)

    options = ArchiveOptions(
        compression=compression, level=level, deflate_backend=deflate_backend,
        verify=verify or delete_sources, delete_sources=delete_sources,
        reproducible=reproducible, source_date_epoch=sde, durable=durable,
        timeout=float(timeout) if timeout is not None else None,
    )

    # Stems given up front (marker folder or list)
    marker_folder = None
    wanted: list[str] | None = None
    read_too = [Path(p) for p in inputs]
    if stems is not None:
        wanted = _as_list(list(stems), "stems")
    elif stems_from is not None:
        if not stem_extensions:
            raise UsageError("stems_from needs stem_extensions (the marker files' extensions)")
        marker_folder = _folder(stems_from, "stems_from folder")
        markers = _select_markers(
            marker_folder, normalize_extensions(stem_extensions, "stem_extensions"),
            pattern=pattern, contains=_as_list(contains, "contains"),
            not_contains=_as_list(not_contains, "not_contains"), regex=regex,
            min_size_kb=min_size_kb, max_size_kb=max_size_kb,
        )
        wanted = [stem for stem, _ in markers]
        # only a marker named like an archive (*.zip) can be one
        read_too += [marker_folder / name for _, name in markers if name.lower().endswith(".zip")]
    if wanted is not None:
        wanted = sorted(set(wanted))
        for s in wanted:
            _check_stem(s)

    same_folder = out.is_dir() and os.path.realpath(out) == os.path.realpath(src)
    scan = _scan(src, exts)
    out_names = scan.names if same_folder else ({e.name for e in os.scandir(out)} if out.is_dir() else set())

    groups: dict[str, list[SourceFile]] = {}
    unmatched: list[Path] = []
    contested: list[tuple[Path, tuple[str, ...]]] = []
    keep: dict[str, set[str]] = {}
    if wanted is None:
        for f in scan.files:
            stem = _split_ext(f.name, exts)
            assert stem is not None
            groups.setdefault(stem, []).append(f)
    else:
        stem_set = frozenset(wanted)
        for f in scan.files:
            fits = match_stem(f.name, stem_set) if match == "prefix" else _match_contains(f.name, wanted)
            if not fits:
                unmatched.append(f.path)
                continue
            if len(fits) > 1:
                contested.append((f.path, tuple(fits)))
            targets = fits[:1] if match == "prefix" else fits
            for s in targets:
                groups.setdefault(s, []).append(f)
                if len(targets) > 1:
                    keep.setdefault(s, set()).add(f.name)

    stem_plans = []
    zip_keys = _zip_keys(out_names)
    for stem in sorted(groups):
        try:
            _check_stem(stem)
        except UnsafeStemError:
            for f in groups[stem]:
                scan.ignored.append((f.path, f"stem {stem!r} would escape the output folder"))
            continue
        files = tuple(sorted(groups[stem], key=lambda f: f.name))
        archive = out / f"{stem}.zip"
        action, reason, kept_names, dropped = _archive_action(
            archive, files, _archive_exists(archive, out_names, zip_keys), overwrite,
            check_crc=options.verify)
        stem_plans.append(StemPlan(stem, files, archive, action, reason, frozenset(keep.get(stem, ())),
                                   kept_names, dropped))
    # Inputs are never outputs, and no two stems may write one file: refused before any work.
    _refuse_inputs_as_outputs(stem_plans, read_too)
    _refuse_same_files(stem_plans, read_too, out_names)
    _refuse_colliding_names(out, stem_plans)

    empty = tuple(s for s in (wanted or []) if s not in groups)
    result = Plan(
        source=src, output=out, extensions=exts, match=match, overwrite=overwrite,
        options=options, stems=tuple(stem_plans), unmatched=tuple(sorted(unmatched)),
        empty_stems=empty, contested=tuple(sorted(contested)),
        ignored=tuple(sorted(scan.ignored)), marker_source=marker_folder, inputs=tuple(read_too),
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
