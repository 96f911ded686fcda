"""Refusals before any work: inputs are never outputs, and no two archives are one file.

- an archive path that is a file the run reads (a source, a marker, the config), by real path;
- an existing archive that is such a file under another name (a hard link, a symlink, or a
  spelling that a file system folding case or normalisation takes for it), by device and inode;
- two archive names that the output folder's file system takes for one file (a probe).

Only names that could be an output are looked at, so the checks cost a set lookup per file and
a ``stat`` per suspect, not per file. Nothing here writes, except the probe (made and removed at once).
"""

from __future__ import annotations

import contextlib
import os
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from ._errors import UnsafeStemError, UsageError
from ._scan import SourceFile
from ._tempfiles import TEMP_PREFIX, TEMP_SUFFIX

__all__ = ["ANOTHER_NAME", "archive_exists", "check_stem", "colliding", "folds", "identities", "name_key",
           "reads", "reads_of_run", "refuse_colliding_names", "refuse_inputs_as_outputs", "refuse_same_files",
           "zip_keys"]

_NT = os.name == "nt"  # elsewhere a path is absolute only when it starts with "/", refused anyway
ANOTHER_NAME = "a link, or a spelling that this file system takes for it"


class StemLike(Protocol):
    """What the refusals read of a stem's plan (``zipkit.StemPlan``)."""

    @property
    def stem(self) -> str: ...
    @property
    def files(self) -> tuple[SourceFile, ...]: ...
    @property
    def archive(self) -> Path: ...
    @property
    def action(self) -> str: ...


class RealPaths:
    """Real paths of files, resolving each folder once (a realpath per file costs a stat per
    path component)."""

    def __init__(self) -> None:
        self.folders: dict[str, str] = {}

    def __call__(self, path: str | os.PathLike[str]) -> str:
        head, name = os.path.split(os.fspath(path))
        where = self.folders.get(head)
        if where is None:
            where = self.folders[head] = os.path.realpath(head or ".")
        return os.path.join(where, name)


def reads(stem_plans: Sequence[StemLike], others: Sequence[Path], real: RealPaths,
          names: set[str], *, sources: bool = True) -> dict[str, str]:
    """Real path → what it is, for the files the run reads (sources, markers, the config)
    whose base name is one of ``names`` (only those can be one of the run's outputs).

    A source that is a link is known by its resolved target; the link itself is never written.
    ``sources=False``: the caller knows that no source can be one (the sources are not looked at).
    """
    found: dict[str, str] = {}
    for sp in stem_plans if sources else ():
        for f in sp.files:
            target = f.target
            if target is None:
                if f.name in names:
                    found.setdefault(real(f.path), f"a source of stem {sp.stem!r} ({f.path})")
            elif target.name in names:
                found.setdefault(str(target), f"a source of stem {sp.stem!r} ({f.path})")
    for p in others:
        if p.name in names or p.is_symlink():
            found.setdefault(os.path.realpath(p), f"a file this run reads ({p})")
    return found


def identities(stem_plans: Sequence[StemLike], others: Sequence[Path]) -> dict[tuple[int, int], str]:
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


def refuse_inputs_as_outputs(stem_plans: Sequence[StemLike], others: Sequence[Path], *,
                             extensions: Sequence[str] | None = None, links: int = 0) -> None:
    """UsageError when a stem's archive is a file this run reads (a source, marker, config).

    ``extensions`` (of the sources) and ``links`` (how many sources are links): without links,
    a source can be an archive only when its name can end in ``.zip``, so only then are the
    sources looked at.
    """
    sources = (extensions is None or links > 0
               or any(e == "zip" or e.endswith(".zip") for e in extensions))
    if not sources and not others:
        return
    real = RealPaths()
    names = {f"{sp.stem}.zip" for sp in stem_plans}
    found = reads(stem_plans, others, real, names, sources=sources)
    if not found:
        return
    for sp in stem_plans:
        what = found.get(real(sp.archive))
        if what is not None:
            raise UsageError(f"the archive of stem {sp.stem!r}, {sp.archive}, is {what}: an input "
                             "is never an output; choose another output folder or extensions")


def refuse_same_files(stem_plans: Sequence[StemLike], others: Sequence[Path], out_names: set[str]) -> None:
    """UsageError when an existing archive is, under another name, a file this run reads: a
    hard link or a symlink to a source, marker or the config, or (on a file system that folds
    case) ``A.ZIP`` read as a source where ``A.zip`` is written. Only archives whose name is in
    the output folder (folded) are looked at: one ``stat`` each."""
    present = zip_keys(out_names)
    suspects = [sp for sp in stem_plans if sp.action != "create"
                or (present and name_key(f"{sp.stem}.zip", True, True) in present)]
    if not suspects:
        return
    ids = identities(stem_plans, others)
    for sp in suspects:
        try:
            st = os.stat(sp.archive)
        except OSError:
            continue
        what = ids.get((st.st_dev, st.st_ino))
        if what is not None:
            raise UsageError(f"the archive of stem {sp.stem!r}, {sp.archive}, is {what} under another "
                             f"name ({ANOTHER_NAME}): an input is never an output; choose another "
                             "output folder")


def reads_of_run(stem_plans: Sequence[StemLike], inputs: Sequence[Path], also: Path) -> dict[str, str]:
    """Real path → what it is, for every file a run of these stems reads or writes (archives
    too) that could be ``also`` (the error-report path)."""
    real = RealPaths()
    names = {os.path.basename(os.path.realpath(also)), also.name}
    found = reads(stem_plans, inputs, real, names)
    there = Path(os.path.realpath(also))
    folded = {name_key(n, True, True) for n in names}
    for sp in stem_plans:
        if sp.archive.name in names:
            found.setdefault(real(sp.archive), f"the archive of stem {sp.stem!r}")
        elif (name_key(sp.archive.name, True, True) in folded  # RUN1.ZIP for run1.zip: one file?
              and os.path.realpath(sp.archive.parent) == str(there.parent)
              and folds(there.parent, sp.archive.name, there.name)):
            found.setdefault(str(there), f"the archive of stem {sp.stem!r} ({sp.archive.name}) "
                                         "on a file system that ignores case or normalisation")
    try:  # an existing file there may be one of them under another name (a hard link)
        st = os.stat(also)
    except OSError:
        return found
    ids = identities(stem_plans, inputs)
    for sp in stem_plans:
        if sp.action != "create":
            with contextlib.suppress(OSError):
                there_st = os.stat(sp.archive)
                ids.setdefault((there_st.st_dev, there_st.st_ino), f"the archive of stem {sp.stem!r}")
    what = ids.get((st.st_dev, st.st_ino))
    if what is not None:
        found.setdefault(os.path.realpath(also), f"{what} under another name ({ANOTHER_NAME})")
    return found


def check_stem(stem: str) -> None:
    """UnsafeStemError unless ``stem`` names a file inside the output folder."""
    if (not stem or stem in (".", "..") or "/" in stem or "\\" in stem or "\0" in stem
            or (_NT and os.path.isabs(stem))):
        raise UnsafeStemError(f"stem {stem!r} would escape the output folder; refused", stem=stem)


def zip_keys(out_names: Iterable[str]) -> set[str]:
    """The ``*.zip`` names in the output folder, folded as :func:`name_key` folds them."""
    return {name_key(n, True, True) for n in out_names if n[-4:].lower() == ".zip"}


def archive_exists(archive: Path, name: str, out_names: set[str], keys: set[str]) -> bool:
    """Whether ``archive`` (base name ``name``) is there: by name in the listing, or (on a file
    system that folds case or normalisation, e.g. ``RUN1.zip`` for stem ``run1``) by a ``lstat``
    of that name."""
    return name in out_names or (bool(keys) and name_key(name, True, True) in keys
                                 and os.path.lexists(archive))


def name_key(name: str, fold_case: bool, fold_normalization: bool) -> str:
    """``name`` as a file system that folds case and/or Unicode normalisation compares it."""
    if name.isascii():  # NFC leaves ASCII as it is, and casefold() is lower() there
        return name.lower() if fold_case else name
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


def folds(where: Path, a: str, b: str) -> bool:
    """Whether the file system of ``where`` takes names ``a`` and ``b`` for one file (a probe)."""
    while not where.is_dir() and where != where.parent:
        where = where.parent  # the output folder does not exist yet: probe where it will be
    tag = f"{TEMP_PREFIX}probe-{os.getpid()}-{os.urandom(4).hex()}-"
    probe = where / f"{tag}{a}{TEMP_SUFFIX}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        return False  # cannot probe (read-only): the run cannot write there either
    os.close(fd)
    try:
        os.lstat(where / f"{tag}{b}{TEMP_SUFFIX}")
        return True
    except OSError:
        return False
    finally:
        os.unlink(probe)


def refuse_colliding_names(out: Path, stem_plans: Sequence[StemLike]) -> None:
    """UsageError when two archive names are one file on the output folder's file system."""
    joined = "/".join([sp.stem for sp in stem_plans])  # no stem holds a "/"
    if joined.isascii() and len(set(joined.lower().split("/"))) == len(stem_plans):
        return  # ASCII stems that differ in lower case: nothing could collide (a quick look)
    names = [f"{sp.stem}.zip" for sp in stem_plans]
    if not colliding(names, True, True):  # nothing could collide: no probe
        return
    fold_case = folds(out, "Aa", "aA")
    fold_norm = folds(out, "\u00e9", "e\u0301")
    pairs = colliding(names, fold_case, fold_norm)
    if pairs:
        a, b = pairs[0]
        more = f" (and {len(pairs) - 1} more pair(s))" if len(pairs) > 1 else ""
        raise UsageError(f"archives {a!r} and {b!r} would be the same file in {out}, whose file "
                         f"system ignores case or Unicode normalisation; stems {a[:-4]!r} and "
                         f"{b[:-4]!r} collide{more}")
