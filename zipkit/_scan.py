"""One scan per folder: the regular files with the given extensions, as :class:`SourceFile` values.

Also the rules of what a scan leaves out (and says why): folders, FIFOs, sockets, links that
leave the folder or point at no regular file, names that are not UTF-8, zipkit's temp files,
the run's own archives; and the selection of marker files by the old tool's filters.

One ``stat`` per file at most (``DirEntry`` gives the kind without one); no ``Path`` object per
file: a :class:`SourceFile` holds its folder's ``Path`` (shared) and its name.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ._errors import SourceError, UsageError
from ._tempfiles import is_temp_name

__all__ = ["Scan", "SourceFile", "as_list", "folder", "list_folder", "scan", "select_markers", "split_ext"]

_Fields = tuple[Path, str, int, int, int, int, int, "Path | None"]


class SourceFile(tuple[Path, str, int, int, int, int, int, "Path | None"]):
    """One regular file as seen by the scan: where it is, how big, when last changed, which file.

    ``dev`` and ``ino`` identify the file (0: unknown); ``target`` is the file a symlink that
    the plan accepted resolves to (the file that is opened, without following links).
    A frozen value (a tuple underneath: ~100 bytes, one object per file).
    """

    __slots__ = ()

    def __new__(cls, path: Path, size: int, mtime_ns: int, dev: int = 0, ino: int = 0,
                ctime_ns: int = 0, target: Path | None = None) -> SourceFile:
        path = Path(path)
        return tuple.__new__(cls, (path.parent, path.name, size, mtime_ns, dev, ino, ctime_ns, target))

    @classmethod
    def _in(cls, fields: _Fields) -> SourceFile:
        """A SourceFile from its fields: ``(folder, name, size, mtime_ns, dev, ino, ctime_ns, target)``."""
        return tuple.__new__(cls, fields)

    def __reduce__(self) -> tuple[object, tuple[tuple[object, ...]]]:
        return _source_file, (tuple(self),)

    @property
    def path(self) -> Path:
        return self[0] / self[1]

    @property
    def folder(self) -> Path:
        return self[0]

    @property
    def name(self) -> str:
        return self[1]

    @property
    def size(self) -> int:
        return self[2]

    @property
    def mtime_ns(self) -> int:
        return self[3]

    @property
    def dev(self) -> int:
        return self[4]

    @property
    def ino(self) -> int:
        return self[5]

    @property
    def ctime_ns(self) -> int:
        return self[6]

    @property
    def target(self) -> Path | None:
        return self[7]

    def __repr__(self) -> str:
        return (f"SourceFile(path={self.path!r}, size={self.size!r}, mtime_ns={self.mtime_ns!r}, "
                f"dev={self.dev!r}, ino={self.ino!r}, ctime_ns={self.ctime_ns!r}, target={self.target!r})")


def _source_file(fields: _Fields) -> SourceFile:
    """Unpickling: a SourceFile from its fields (the folder ``Path`` pickled once for all its files)."""
    return tuple.__new__(SourceFile, fields)


def split_ext(name: str, extensions: Sequence[str]) -> str | None:
    """The stem of ``name`` if it ends in ``.ext`` for one of ``extensions`` (case-insensitive)."""
    low = name.lower()
    for ext in extensions:
        if low.endswith("." + ext) and len(name) > len(ext) + 1:
            return name[: -len(ext) - 1]
    return None


def folder(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` as a ``Path``; SourceError unless it is an existing folder."""
    p = Path(path).expanduser()
    if not p.exists():
        raise SourceError(f"{what} does not exist: {p}", path=p)
    if not p.is_dir():
        raise SourceError(f"{what} is not a folder: {p}", path=p)
    return p


def list_folder(where: Path) -> list[os.DirEntry[str]]:
    """The entries of ``where`` (one listing); SourceError naming it when it cannot be listed."""
    try:
        with os.scandir(where) as it:
            return list(it)
    except OSError as e:
        raise SourceError(f"cannot list {where}: {e.strerror}", path=where) from e


@dataclass
class Scan:
    """What one scan found: the files, the entries left out with why, the names listed that
    end in ``.zip`` in any case (the only ones an archive can have), each file's stem under
    its extension in the order of ``files`` (when asked for), and how many files are links."""

    files: list[SourceFile] = field(default_factory=list)
    ignored: list[tuple[Path, str]] = field(default_factory=list)
    zips: set[str] = field(default_factory=set)
    stems: list[str] = field(default_factory=list)
    links: int = 0  # files that are links (to a file inside the folder)


_NOT_UTF8 = "the name is not valid UTF-8 (undecodable bytes), so it cannot be written into a zip"


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def scan(where: Path, extensions: Sequence[str], *, skip_names: frozenset[str] = frozenset(),
         stems: bool = False) -> Scan:
    """One listing of ``where``: regular files whose name ends in one of ``extensions``.

    Links are followed when they point to a regular file inside ``where``'s tree; others are
    ignored with a reason, as are folders, FIFOs, sockets and zipkit's temp files. ``stems``:
    also record each file's stem (``Scan.stems``).
    """
    out = Scan()
    try:
        with os.scandir(where) as entries:  # not listed first: each entry is dropped once seen
            _scan_entries(entries, where, extensions, skip_names, stems, out)
    except OSError as e:  # the loop catches its own: this is the listing's
        raise SourceError(f"cannot list {where}: {e.strerror}", path=where) from e
    return out


def _scan_entries(entries: Iterator[os.DirEntry[str]], where: Path, extensions: Sequence[str],
                  skip_names: frozenset[str], stems: bool, out: Scan) -> None:
    dotted = tuple("." + ext for ext in extensions)  # longest first, as split_ext tries them
    exts = frozenset(extensions)
    one, cut = len(dotted) == 1, len(dotted[0])
    roots: dict[str, str] = {}
    new, sf = tuple.__new__, SourceFile
    dev0 = -1
    ignored, add, add_stem, zips = out.ignored, out.files.append, out.stems.append, out.zips
    for entry in entries:  # the loop runs once per entry: split_ext and the checks inline
        name = entry.name
        low = name.lower()
        if low.endswith(".zip"):
            zips.add(name)
        if one:
            stem = name[:-cut] if low.endswith(dotted) and len(name) > cut else None
        else:
            stem = next((name[:-len(d)] for d in dotted if low.endswith(d) and len(name) > len(d)), None)
        if stem is None:
            if name[:1] == "." and low[1:] in exts:
                ignored.append((where / name, "no stem: the name is only the extension"))
            continue
        if not name.isascii() or name[0] == "." or skip_names:  # else: nothing to leave out
            why = _left_out(name, skip_names)
            if why:
                ignored.append((where / name, why))
                continue
        try:
            if entry.is_file(follow_symlinks=False):  # the kind from the listing: no stat
                st, target = entry.stat(follow_symlinks=False), None
            else:
                got = _not_plain(entry, where, roots, ignored)
                if got is None:
                    continue
                st, target = got
                out.links += 1
        except OSError as e:  # vanished between listing and stat
            ignored.append((where / name, f"cannot stat: {e.strerror}"))
            continue
        dev, mtime, ctime = st.st_dev, st.st_mtime_ns, st.st_ctime_ns
        if dev == dev0:  # one int object per folder, not per file
            dev = dev0
        else:
            dev0 = dev
        if ctime == mtime:  # usual for files written once
            ctime = mtime
        add(new(sf, (where, name, st.st_size, mtime, dev, st.st_ino, ctime, target)))
        if stems:
            add_stem(stem)


def _left_out(name: str, skip_names: frozenset[str]) -> str:
    """Why a file of a matching name is left out ("": it is not)."""
    if not name.isascii() and not _utf8(name):
        return _NOT_UTF8
    if is_temp_name(name):
        return "zipkit temp file"
    if name in skip_names:
        return "an archive this run writes"
    return ""


def _not_plain(entry: os.DirEntry[str], where: Path, roots: dict[str, str],
               ignored: list[tuple[Path, str]]) -> tuple[os.stat_result, Path] | None:
    """An entry that is not a regular file: a link to a regular file inside ``where``'s tree
    gives its target's stat and path; anything else joins ``ignored`` (None)."""
    name = entry.name
    if entry.is_symlink():
        real_root = roots.get("")
        if real_root is None:
            real_root = roots[""] = os.path.realpath(where)
        resolved = os.path.realpath(entry.path)
        if not os.path.isfile(resolved):
            ignored.append((where / name, "symlink to something that is not a regular file"))
            return None
        if os.path.commonpath([real_root, resolved]) != real_root:
            ignored.append((where / name, "symlink to a file outside the source folder"))
            return None
        return os.stat(resolved), Path(resolved)
    kind = "folder" if entry.is_dir(follow_symlinks=False) else "not a regular file"
    ignored.append((where / name, kind))
    return None


def _marker_files(where: Path, extensions: Sequence[str], *, sized: bool) -> list[tuple[str, int]]:
    """Names and sizes of the marker files in ``where``, as :func:`scan` selects them.

    A marker is only a name: unless a size filter needs sizes, they are 0 and no file is
    stat'ed. A folder with links goes through :func:`scan`, for its link policy.
    """
    if not sized:
        entries = list_folder(where)
        if not any(e.is_symlink() for e in entries):
            return [(e.name, 0) for e in entries
                    if split_ext(e.name, extensions) is not None and not is_temp_name(e.name)
                    and e.is_file(follow_symlinks=False)]
    return [(f.name, f.size) for f in scan(where, extensions).files]


def as_list(value: str | Sequence[str] | None, what: str) -> list[str]:
    """A marker filter's value (one string, a list of them, or None) as a list; UsageError otherwise."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not all(isinstance(v, str) for v in value):
        raise UsageError(f"{what}: expected a string or a list of strings, got {value!r}")
    return list(value)


def select_markers(
    where: Path,
    extensions: Sequence[str],
    *,
    pattern: str | None,
    contains: Sequence[str],
    not_contains: Sequence[str],
    regex: str | None,
    min_size_kb: float | None,
    max_size_kb: float | None,
) -> list[tuple[str, str]]:
    """``(stem, file name)`` of the marker files in ``where`` that pass the old tool's filters."""
    try:
        rx = re.compile(regex) if regex else None
    except re.error as e:
        raise UsageError(f"regex {regex!r} is not a valid regular expression: {e}") from e
    stems = []
    sized = min_size_kb is not None or max_size_kb is not None
    for name, size in _marker_files(where, extensions, sized=sized):
        stem = split_ext(name, extensions)
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
