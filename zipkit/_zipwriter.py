"""A zip archive written member by member straight to its file, byte for byte as zipfile's
writer makes it, without zipfile's per-member objects.

zipfile keeps a ``ZipInfo`` (a few hundred bytes) per member until the archive is closed and
spends several Python calls, seeks and header rewrites on each; on a stem of 200,000 tiny
files that is most of the time and memory. Here a member whose bytes are in hand (a small
file read whole, compressed or stored) is written once, local header and data, and leaves
only its central-directory entry behind (about 90 bytes). The headers, the ZIP64 fields and
versions and the end records follow zipfile's rules (``ZipFile._open_to_write``,
``ZipInfo.FileHeader``, ``ZipFile._write_end_record``), so both writers give the same bytes:
ZIP64 for a member whose size ×1.05 passes the 4 GiB limit (local), a size or offset past it
(central), more than 65,535 members or a directory past it (end records).
"""

from __future__ import annotations

import struct
import zipfile
from typing import BinaryIO

from ._members import Stamp

__all__ = ["ZipWriter"]

_LOCAL = struct.Struct("<4s2B4HL2L2H")  # zip's local file header, as zipfile packs it
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")  # central directory entry
_END = struct.Struct("<4s4H2LH")  # end of central directory record
_END64 = struct.Struct("<4sQ2H2L4Q")  # ZIP64 end of central directory record
_LOCATOR64 = struct.Struct("<4sLQL")  # ZIP64 end of central directory locator
_VERSION = 20  # "2.0": deflate; what zipfile writes for deflate and stored members
_ZIP64_VERSION = 45
_UTF8_NAME = 0x800  # flag bit 11: the name is UTF-8


def _dos(s: Stamp) -> tuple[int, int]:
    dt = s.date_time
    return (dt[0] - 1980) << 9 | dt[1] << 5 | dt[2], dt[3] << 11 | dt[4] << 5 | (dt[5] // 2)


def _name(name: str) -> tuple[bytes, int]:
    try:
        return name.encode("ascii"), 0
    except UnicodeEncodeError:
        return name.encode("utf-8"), _UTF8_NAME


class ZipWriter:
    """Writes deflate or stored members whose bytes are in hand to ``raw`` (from its current
    position, which must be 0: no preamble), then the central directory and end records."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.offset = 0  # where the next local header goes
        self.count = 0
        self._central = bytearray()

    def add(self, name: str, s: Stamp, method: int, crc: int, data: bytes, size: int) -> None:
        """Write one member: ``data`` is its bytes as stored (compressed by ``method`` or not),
        ``size`` and ``crc`` those of the file."""
        assert method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
        limit = zipfile.ZIP64_LIMIT  # read here, so that a test can lower it for both writers
        dosdate, dostime = _dos(s)
        encoded, flags = _name(name)
        csize = len(data)
        version, local_extra, sizes = _VERSION, s.extra, (csize, size)
        if size * 1.05 > limit:  # zipfile: ZIP64 in the local header, decided up front
            version = _ZIP64_VERSION
            local_extra = s.extra + struct.pack("<HHQQ", 1, 16, size, csize)
            sizes = (0xFFFFFFFF, 0xFFFFFFFF)
        self.raw.write(b"".join((
            _LOCAL.pack(b"PK\x03\x04", version, 0, flags, method, dostime, dosdate, crc, *sizes,
                        len(encoded), len(local_extra)),
            encoded, local_extra, data)))
        wide = [size, csize] if size > limit or csize > limit else []
        sizes = (0xFFFFFFFF, 0xFFFFFFFF) if wide else (csize, size)
        offset = self.offset
        if offset > limit:
            wide.append(offset)
            offset = 0xFFFFFFFF
        extra = s.extra
        if wide:  # zipfile's central ZIP64 field: the sizes and/or the offset that do not fit
            extra = struct.pack(f"<HH{len(wide)}Q", 1, 8 * len(wide), *wide) + s.extra
            version = _ZIP64_VERSION
        self._central += _CENTRAL.pack(
            b"PK\x01\x02", version, 3, version, 0, flags, method, dostime, dosdate, crc, *sizes,
            len(encoded), len(extra), 0, 0, 0, s.external_attr, offset)
        self._central += encoded
        self._central += extra
        self.offset += _LOCAL.size + len(encoded) + len(local_extra) + csize
        self.count += 1

    def close(self) -> int:
        """Write the central directory and the end records; the archive's size."""
        start = self.offset
        self.raw.write(self._central)
        size = len(self._central)
        self._central = bytearray()
        end = start + size
        count, offset = self.count, start
        if (count > zipfile.ZIP_FILECOUNT_LIMIT or offset > zipfile.ZIP64_LIMIT
                or size > zipfile.ZIP64_LIMIT):
            self.raw.write(_END64.pack(b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, size, offset))
            self.raw.write(_LOCATOR64.pack(b"PK\x06\x07", 0, end, 1))
            count, size, offset = min(count, 0xFFFF), min(size, 0xFFFFFFFF), min(offset, 0xFFFFFFFF)
            end += _END64.size + _LOCATOR64.size
        self.raw.write(_END.pack(b"PK\x05\x06", 0, 0, count, count, size, offset, 0))
        return end + _END.size
