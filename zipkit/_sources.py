"""Files are read as the plan saw them: open without following links, check identity, check
nothing changed while reading, and remember what was read (for the delete step) compactly.

A source is opened with ``O_NOFOLLOW`` (a link the plan accepted: its resolved target, opened
the same way). After opening, device, inode, size and mtime must be the plan's; after reading,
size, mtime and ctime must be unchanged. A source is deleted only if it is still the very file
that was read (device, inode, size, mtime, ctime at delete time).
"""

from __future__ import annotations

import os
import stat
from array import array

from ._errors import SourceChangedError
from ._merge import READ_FLAGS
from ._plan import SourceFile

__all__ = ["ReadLog", "check_unchanged", "open_source", "read_whole", "still_read_file"]


def open_source(f: SourceFile, stem: str) -> tuple[int, os.stat_result]:
    """Open a source for reading without following links: it must be the file the plan saw.

    A symlink the plan accepted is opened as the target the plan resolved it to.
    """
    path = f.target or f.path
    try:
        fd = os.open(path, READ_FLAGS)
    except OSError as e:
        if os.path.islink(path):  # ELOOP (Linux) or EMLINK (BSD): a link now stands there
            raise SourceChangedError(f"{path} has become a symbolic link since the plan; stem "
                                     f"{stem!r} not archived", stem=stem, path=f.path) from e
        raise
    st = os.fstat(fd)
    why = None
    if not stat.S_ISREG(st.st_mode):
        why = "is no longer a regular file"
    elif f.ino and (st.st_dev, st.st_ino) != (f.dev, f.ino):
        why = "is another file than the plan saw (device or inode differ)"
    elif (st.st_size, st.st_mtime_ns) != (f.size, f.mtime_ns):
        why = (f"changed since the plan saw it (size {f.size} → {st.st_size}, "
               f"mtime {f.mtime_ns} → {st.st_mtime_ns} ns)")
    if why is not None:
        os.close(fd)
        raise SourceChangedError(f"{path} {why}; stem {stem!r} not archived", stem=stem, path=f.path)
    return fd, st


def check_unchanged(f: SourceFile, stem: str, st: os.stat_result, total: int,
                    after: os.stat_result) -> None:
    """The file read must not have changed while it was read: size, mtime and ctime."""
    if total != st.st_size or (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != (
            st.st_size, st.st_mtime_ns, st.st_ctime_ns):
        raise SourceChangedError(
            f"{f.path} changed while it was read (size {st.st_size} → {after.st_size}, "
            f"{total} bytes read); stem {stem!r} not archived", stem=stem, path=f.path)


def read_whole(f: SourceFile, stem: str) -> tuple[bytes, os.stat_result]:
    """A small source's bytes, checked unchanged while read.

    Only as many bytes as the plan saw, and one more, are read: a file that grew since the
    plan fails at :func:`open_source` (size), one that grows while read fails its check.
    """
    fd, st = open_source(f, stem)
    try:
        chunks: list[bytes] = []
        total = 0
        while total < st.st_size or not chunks:  # ask for one byte more: growth shows
            data = os.read(fd, st.st_size + 1 - total)
            if not data:
                break
            chunks.append(data)
            total += len(data)
        # all the bytes the plan saw are in hand, and no more came: no read just for the end
        # of the file, as a later growth shows in the size after reading
        after = os.fstat(fd)
    finally:
        os.close(fd)
    check_unchanged(f, stem, st, total, after)
    return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), st


def _identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


class ReadLog:
    """The identity of each source as it was read (device, inode, size, mtime, ctime), by its
    index in the stem: 40 bytes a file, not a stat result's few hundred."""

    def __init__(self, n: int):
        self._ids = array("Q", bytes(16 * n))  # device, inode
        self._times = array("q", bytes(24 * n))  # size, mtime, ctime
        self.total = 0

    def add(self, i: int, st: os.stat_result) -> None:
        ids, times = self._ids, self._times
        ids[2 * i], ids[2 * i + 1] = st.st_dev, st.st_ino
        times[3 * i], times[3 * i + 1], times[3 * i + 2] = st.st_size, st.st_mtime_ns, st.st_ctime_ns
        self.total += st.st_size

    def size(self, i: int) -> int:
        return self._times[3 * i]

    def same(self, i: int, now: os.stat_result) -> bool:
        """Whether ``now`` shows the very same, unchanged file as the one read at ``i``."""
        return _identity(now) == (self._ids[2 * i], self._ids[2 * i + 1], *self._times[3 * i:3 * i + 3])


def still_read_file(f: SourceFile, read: ReadLog, i: int) -> bool:
    """Whether ``f.path`` is still the very file that was read (a link: to that file)."""
    try:
        now = os.lstat(f.path)
        if f.target is not None:
            if not stat.S_ISLNK(now.st_mode) or os.path.realpath(f.path) != os.fspath(f.target):
                return False
            now = os.lstat(f.target)
    except OSError:
        return False
    return read.same(i, now)
