"""An existing archive is data too: read ``STEM.zip`` and carry its members into the new one.

Members are copied as their stored (compressed) bytes, never recompressed; while they are
copied they are decompressed on the side and their CRC and size checked, so a damaged member
fails the stem instead of being passed on. Each carried member keeps its metadata: DOS time,
attributes, comment, and the extra fields of its local and central headers (zip64 fields are
rewritten for the member's new place). Memory stays bounded by the chunk size.
"""

from __future__ import annotations

import bz2
import errno
import os
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ._errors import ExistingArchiveError, StemError

__all__ = ["Existing", "carry_member", "copy_preamble", "open_existing", "read_existing", "uncheckable"]

_LOCAL_HEAD = struct.Struct("<4s5H3L2H")  # local file header up to the name
# read only, never through a symlink; O_NONBLOCK: a FIFO put there must not block open() forever
READ_FLAGS = (os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
              | getattr(os, "O_BINARY", 0))
_ENCRYPTED, _DATA_DESCRIPTOR = 0x1, 0x8
_ZIP64_EXTRA = 0x0001
try:
    from lzma import LZMAError as _LZMAError
except ImportError:  # pragma: no cover - Python built without lzma
    _LZMAError = ValueError  # type: ignore[misc,assignment]
_ZIP_LZMA: Any = getattr(zipfile, "LZMADecompressor")  # noqa: B009  # not in zipfile's type stubs
_CHECKABLE = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)


@dataclass
class Existing:
    """An open existing archive: its members, and its identity when it was opened."""

    path: Path
    zf: zipfile.ZipFile
    st: os.stat_result

    @property
    def members(self) -> list[zipfile.ZipInfo]:
        return self.zf.infolist()

    @property
    def preamble(self) -> int:
        """How many bytes come before the first member (a self-extractor stub; usually 0)."""
        return min([i.header_offset for i in self.members] + [self.zf.start_dir])

    def close(self) -> None:
        self.zf.close()

    def unchanged(self) -> bool:
        """True while ``path`` is still the very file that was opened and read."""
        try:
            now = os.lstat(self.path)
        except OSError:
            return False
        return (now.st_dev, now.st_ino, now.st_size, now.st_mtime_ns, now.st_ctime_ns) == (
            self.st.st_dev, self.st.st_ino, self.st.st_size, self.st.st_mtime_ns, self.st.st_ctime_ns)


def _refuse(path: Path, why: str) -> ExistingArchiveError:
    return ExistingArchiveError(f"{path} exists and {why}; it is kept as it is and the stem is "
                                "not archived", path=path)


def open_existing(path: Path) -> Existing | None:
    """The archive at ``path`` opened for merging; None when there is nothing at ``path``.

    Raises :class:`ExistingArchiveError` for anything there that is not a readable zip
    archive: a symlink, a folder, a FIFO, garbage, a truncated file, a name held twice.
    """
    try:
        fd = os.open(path, READ_FLAGS)
    except FileNotFoundError:
        if os.path.lexists(path):  # a dangling symlink
            raise _refuse(path, "is a symbolic link") from None
        return None
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            raise StemError(f"file name too long: {path}", path=path) from e
        if os.path.islink(path):
            raise _refuse(path, "is a symbolic link") from None
        if os.path.isdir(path):
            raise _refuse(path, "is a folder") from None
        raise _refuse(path, f"cannot be read ({e.strerror})") from e
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise _refuse(path, "is a folder" if stat.S_ISDIR(st.st_mode) else "is not a regular file")
    f = os.fdopen(fd, "rb")
    try:
        try:
            zf = zipfile.ZipFile(f)
            names = set()
            for info in zf.infolist():
                if info.filename in names:
                    raise _refuse(path, f"holds member {info.filename!r} twice")
                names.add(info.filename)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError,
                NotImplementedError) as e:
            raise _refuse(path, f"is not a readable zip archive ({e})") from e
    except BaseException:
        f.close()
        raise
    return Existing(path, zf, st)


def read_existing(path: Path) -> tuple[list[zipfile.ZipInfo], os.stat_result] | None:
    """The members and stat of the archive at ``path`` (None when there is none); the plan's view."""
    ex = open_existing(path)
    if ex is None:
        return None
    try:
        return ex.members, ex.st
    finally:
        ex.close()


def _strip_zip64(extra: bytes) -> bytes:
    """``extra`` without its zip64 field (zipfile writes a new one where the member needs it)."""
    out, i = [], 0
    while i + 4 <= len(extra):
        tag, n = struct.unpack_from("<HH", extra, i)
        if tag != _ZIP64_EXTRA:
            out.append(extra[i:i + 4 + n])
        i += 4 + n
    return b"".join(out) + extra[i:] if i < len(extra) else b"".join(out)


class _Checker:
    """Decompresses a member's stored bytes on the side: its CRC and size, in bounded memory."""

    def __init__(self, method: int, limit: int):
        self.crc, self.size, self.limit, self.method = 0, 0, limit, method
        self.d: Any = None  # zlib's, bz2's or zipfile's LZMA decompressor
        if method == zipfile.ZIP_DEFLATED:
            self.d = zlib.decompressobj(-15)
        elif method == zipfile.ZIP_BZIP2:
            self.d = bz2.BZ2Decompressor()
        elif method == zipfile.ZIP_LZMA:
            self.d = _ZIP_LZMA()  # zipfile's: reads the LZMA properties header zip puts first

    def _take(self, data: bytes) -> None:
        self.crc = zlib.crc32(data, self.crc)
        self.size += len(data)

    def feed(self, data: bytes) -> None:
        if self.method == zipfile.ZIP_STORED:
            self._take(data)
        elif self.method == zipfile.ZIP_DEFLATED:
            while data:
                self._take(self.d.decompress(data, self.limit))
                data = self.d.unconsumed_tail
        elif self.method == zipfile.ZIP_BZIP2:
            self._take(self.d.decompress(data, self.limit))
            while not self.d.needs_input and not self.d.eof:
                self._take(self.d.decompress(b"", self.limit))
        else:
            self._take(self.d.decompress(data))

    def finish(self) -> None:
        if self.method == zipfile.ZIP_DEFLATED:
            self._take(self.d.flush())


def uncheckable(info: zipfile.ZipInfo, path: Path) -> str | None:
    """Why member ``info`` of the archive at ``path`` cannot be carried over (checked); None if it can."""
    where = f"member {info.filename!r} of {path}"
    if info.flag_bits & _ENCRYPTED:
        return (f"{where} is encrypted: zipkit cannot check it, so it does not merge it; {path} is "
                "kept as it is")
    if info.compress_type not in _CHECKABLE:
        return (f"{where} uses compression method {info.compress_type}, which zipkit cannot check; "
                f"{path} is kept as it is")
    return None


def copy_preamble(ex: Existing, raw: BinaryIO, size: int, chunk: int) -> None:
    """Copy the first ``size`` bytes of ``ex`` (what comes before its members) to ``raw``."""
    src = ex.zf.fp
    assert src is not None
    src.seek(0)
    while size:
        data = src.read(min(chunk, size))
        if not data:
            raise ExistingArchiveError(f"{ex.path} is truncated; it is kept as it is", path=ex.path)
        raw.write(data)
        size -= len(data)


def carry_member(out: zipfile.ZipFile, ex: Existing, info: zipfile.ZipInfo, chunk: int,
                 check: Callable[[], None] | None = None) -> int:
    """Copy member ``info`` of ``ex`` into ``out`` (a ZipFile being written) as its stored bytes.

    Its CRC and size are checked while it is copied; returns its uncompressed size. Raises
    :class:`ExistingArchiveError` for a member that cannot be checked or does not check.
    """
    where = f"member {info.filename!r} of {ex.path}"
    why = uncheckable(info, ex.path)
    if why is not None:
        raise ExistingArchiveError(why, path=ex.path)
    src = ex.zf.fp
    assert src is not None and out.fp is not None
    src.seek(info.header_offset)
    head = src.read(_LOCAL_HEAD.size)
    if len(head) != _LOCAL_HEAD.size or head[:4] != b"PK\x03\x04":
        raise ExistingArchiveError(f"{where}: bad local header; {ex.path} is kept as it is", path=ex.path)
    name_len, extra_len = _LOCAL_HEAD.unpack(head)[-2:]
    src.read(name_len)
    local_extra = src.read(extra_len)

    z = zipfile.ZipInfo(info.filename, info.date_time)
    for attr in ("compress_type", "comment", "create_system", "create_version", "extract_version",
                 "reserved", "flag_bits", "volume", "internal_attr", "external_attr", "CRC",
                 "compress_size", "file_size"):
        setattr(z, attr, getattr(info, attr))
    z.flag_bits &= ~_DATA_DESCRIPTOR  # the sizes go into the local header itself
    z.extra = _strip_zip64(local_extra)
    out.fp.seek(out.start_dir)
    z.header_offset = out.start_dir
    out.fp.write(z.FileHeader())  # zip64 when the member's sizes need it

    checker = _Checker(info.compress_type, chunk)
    left = info.compress_size
    try:
        while left:
            data = src.read(min(chunk, left))
            if not data:
                raise ExistingArchiveError(f"{where} is truncated; {ex.path} is kept as it is",
                                           path=ex.path)
            left -= len(data)
            out.fp.write(data)
            checker.feed(data)
            if check is not None:
                check()
        checker.finish()
    except (zlib.error, OSError, EOFError, ValueError, _LZMAError) as e:
        if isinstance(e, OSError) and e.errno is not None:  # a read error, not bad data
            raise
        raise ExistingArchiveError(f"{where} does not decompress ({e}); {ex.path} is kept as it is",
                                   path=ex.path) from e
    if checker.crc != info.CRC or checker.size != info.file_size:
        raise ExistingArchiveError(f"{where} fails its CRC check; {ex.path} is kept as it is",
                                   path=ex.path)
    z.extra = _strip_zip64(info.extra)  # the central header's own extra fields
    out.start_dir = out.fp.tell()
    out.filelist.append(z)
    out.NameToInfo[z.filename] = z
    out._didModify = True  # type: ignore[attr-defined]  # zipfile's "write the directory on close"
    return info.file_size
