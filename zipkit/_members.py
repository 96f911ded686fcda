"""What one member records besides its bytes, and whether compressing it pays.

Members carry what Info-ZIP ``zip`` writes: the DOS date and time (local time, even seconds,
odd seconds rounded *up* as zip rounds them), the extended-timestamp extra field (0x5455,
mtime in UTC seconds) and the Unix uid/gid extra field (0x7875), so that unzip, 7-Zip and
bsdtar restore the exact mtime in any time zone and ``unzip -X`` the owner.

The extra fields are the same bytes in the local and the central header: with only the mtime
flag set, Info-ZIP's central 0x5455 (flags + mtime) equals its local one, and 0x7875 is the
same in both (Info-ZIP's ``proginfo/extrafld.txt``). zipfile writes one ``extra`` into both
headers, so the streaming writer and the in-memory writer record the same.

Compression is paid only where it pays: an empty file is stored, a member that compression
would not make smaller is stored, and a big file whose samples do not compress (random data,
PNG, MP4, compressed HDF5) is stored without being compressed at all.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from typing import NamedTuple

__all__ = ["Stamp", "dos_time", "extra_fields", "fixed_time", "pays", "sample_incompressible", "stamp"]

DosTime = tuple[int, int, int, int, int, int]
_DOS_FIRST = (1980, 1, 1, 0, 0, 0)
_DOS_LAST = (2107, 12, 31, 23, 59, 58)
_EPOCH_1980 = 315532800  # 1980-01-01 00:00:00 UTC: the fixed time of reproducible archives
_UT = struct.Struct("<HHBl")  # 0x5455, size 5, flags (bit 0: mtime), mtime (signed 32-bit)
_UX = struct.Struct("<HHBBLBL")  # 0x7875, size 11, version 1, 4, uid, 4, gid
_UT_MTIME = 0x01


def dos_time(seconds: float) -> DosTime:
    """``seconds`` (a POSIX time) as the DOS date and time zip writes: local time, an odd second
    rounded up to the next even one, clamped to 1980..2107."""
    t = (int(seconds // 1) + 1) & ~1  # zip: ((t + 1) & ~1), so 12:00:01 is recorded as 12:00:02
    try:
        lt = time.localtime(t)
    except (OverflowError, OSError, ValueError):
        return _DOS_FIRST if t < 0 else _DOS_LAST
    if lt.tm_year < 1980:
        return _DOS_FIRST
    if lt.tm_year > 2107:
        return _DOS_LAST
    return tuple(lt[:6])  # type: ignore[return-value]


def fixed_time(epoch: int | None) -> tuple[DosTime, int]:
    """The DOS time (in UTC, as SOURCE_DATE_EPOCH tools write it) and the POSIX time that a
    reproducible archive records: ``epoch``, or 1980-01-01 when None."""
    t = _EPOCH_1980 if epoch is None else max(int(epoch), _EPOCH_1980)
    g = time.gmtime((t + 1) & ~1)
    return (tuple(g[:6]) if g.tm_year <= 2107 else _DOS_LAST), t  # type: ignore[return-value]


def extra_fields(mtime: int, uid: int, gid: int) -> bytes:
    """The 0x5455 (mtime) and 0x7875 (uid/gid) extra fields, as Info-ZIP writes them.

    An mtime outside the field's signed 32-bit range (before 1970, after January 2038) is left
    out, as is a uid or gid that does not fit 32 bits: readers then use the DOS time, and the
    extracting user as owner.
    """
    out = b""
    if 0 <= mtime < 1 << 31:
        out += _UT.pack(0x5455, 5, _UT_MTIME, mtime)
    if 0 <= uid < 1 << 32 and 0 <= gid < 1 << 32:
        out += _UX.pack(0x7875, 11, 1, 4, uid, 4, gid)
    return out


class Stamp(NamedTuple):
    """What a member's headers record about its file: DOS time, mode bits, extra fields."""

    date_time: DosTime
    external_attr: int
    extra: bytes


def stamp(st: os.stat_result, reproducible: bool, epoch: int | None) -> Stamp:
    """The member's stamp for a file with stat ``st``; fixed time, 0644 and 0/0 if reproducible."""
    if reproducible:
        dt, t = fixed_time(epoch)
        return Stamp(dt, 0o100644 << 16, extra_fields(t, 0, 0))
    return Stamp(dos_time(st.st_mtime), (st.st_mode & 0xFFFF) << 16,
                 extra_fields(int(st.st_mtime // 1), st.st_uid, st.st_gid))


def pays(compressed: int, size: int) -> bool:
    """Whether a member of ``size`` bytes is worth keeping compressed at ``compressed`` bytes."""
    return compressed < size


_SAMPLE = 16 << 10  # bytes per sample
_SAMPLES = 4  # at the middle of each quarter: clear of headers at the start and indexes at the end
_INCOMPRESSIBLE = 0.99  # deflate -1 takes less than 1% off: compressed already, or random


def sample_incompressible(fd: int, size: int) -> bool:
    """Whether samples of the file open at ``fd`` (of ``size`` bytes) show that deflate cannot
    shrink it: random or already compressed data (PNG, MP4, compressed HDF5 chunks).

    Up to four 16 KiB samples, at the middle of each quarter of the file, are deflated at level
    1; the file counts as incompressible only if none of them shrinks by 1% or more. Text stops
    at the first sample. Reads with ``pread`` (the file position is left alone); the answer
    depends on the bytes only.
    """
    if size < _SAMPLE * _SAMPLES or not hasattr(os, "pread"):
        return False  # small: compressed whole, kept only if smaller (Windows: the same, by rewrite)
    for k in range(_SAMPLES):
        data = os.pread(fd, _SAMPLE, (size * (2 * k + 1)) // (2 * _SAMPLES) - _SAMPLE // 2)
        c = zlib.compressobj(1, zlib.DEFLATED, -15)
        if len(c.compress(data)) + len(c.flush()) < _INCOMPRESSIBLE * len(data):
            return False
    return True
