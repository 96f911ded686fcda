"""One stem → one archive: temp file, streaming, compression backend, verify, delete sources.

The archive is written to a temp file in the process's own temp folder inside the output
folder and renamed onto ``STEM.zip`` only when it is complete (and verified, when asked).
Whatever goes wrong, no ``STEM.zip`` is left half-written and no temp file stays behind;
sources are deleted only after the archive is in place, fsynced and verified. Small stems are
built in memory and written at once; others stream through zipfile chunk by chunk.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import stat
import struct
import threading
import time
import traceback
import zipfile
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from ._errors import ExistingArchiveError, SourceChangedError, StemError, StemTimeout, VerifyError
from ._members import Stamp, pays, sample_incompressible, stamp
from ._merge import READ_FLAGS, Existing, carry_member, copy_preamble, open_existing
from ._plan import ArchiveOptions, SourceFile, StemPlan
from ._report import StemResult
from ._tempfiles import deleting as _deleting
from ._tempfiles import fsync_dir as _fsync_dir
from ._tempfiles import temp_file as _temp_file

__all__ = ["deflate_backend", "write_archive"]

log = logging.getLogger("zipkit")

try:  # ISA-L: standard deflate streams, several times faster than zlib
    from isal import isal_zlib as _isal_zlib
except ImportError:  # pragma: no cover - exercised where isal is not installed
    _isal_zlib = None

_METHODS = {
    "deflate": zipfile.ZIP_DEFLATED,
    "stored": zipfile.ZIP_STORED,
    "bzip2": zipfile.ZIP_BZIP2,
    "lzma": zipfile.ZIP_LZMA,
}
_DEFAULT_LEVEL = 6
ByteSink = Callable[[int], None]


def _isal_level(level: int) -> int:
    """zlib level → the ISA-L level of similar intent (ISA-L has 0..3)."""
    # 6 (the default) → 3: within 3% of zip -6's size on simulation output, still ~9x faster
    return 0 if level <= 1 else 1 if level <= 3 else 2 if level <= 5 else 3


def deflate_backend(options: ArchiveOptions) -> str:
    """Name of the compressor these options use, e.g. ``'isal-3'``, ``'zlib-6'``, ``'stored'``."""
    if options.compression != "deflate":
        if options.compression == "stored" or options.level is None:
            return options.compression
        return f"{options.compression}-{options.level}"
    level = _DEFAULT_LEVEL if options.level is None else options.level
    use_isal = (
        options.deflate_backend == "isal"
        or (options.deflate_backend == "auto" and _isal_zlib is not None and level > 0)
    )
    if use_isal:
        if _isal_zlib is None:
            raise StemError("deflate_backend='isal' but the isal package is not installed")
        return f"isal-{_isal_level(level)}"
    return f"zlib-{level}"


class _LevelLZMA(zipfile.LZMACompressor):
    """zipfile's LZMA member compressor (always preset 6) with a chosen preset."""

    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def _init(self) -> bytes:
        import lzma
        import struct

        spec = {"id": lzma.FILTER_LZMA1, "preset": self.level}
        props = lzma._encode_filter_properties(spec)  # the header keeps lc/lp/pb/dictionary size
        self._comp = lzma.LZMACompressor(lzma.FORMAT_RAW, filters=[spec])
        return struct.pack("<BBH", 9, 4, len(props)) + props


def _raw_deflater(backend: str):
    """A raw-deflate compressobj (wbits=-15) for ``backend`` as named by :func:`deflate_backend`."""
    kind, level = backend.split("-")
    if kind == "isal":
        return _isal_zlib.compressobj(int(level), zlib.DEFLATED, -15)
    return zlib.compressobj(int(level), zlib.DEFLATED, -15)


_BLOCK = 1 << 20  # input bytes per parallel deflate block
_WINDOW = 32 << 10  # deflate's dictionary: the last 32 KiB of the previous block


def _deflate_block(backend: str, block: bytes, zdict: bytes, final: bool) -> bytes:
    kind, level = backend.split("-")
    mod = _isal_zlib if kind == "isal" else zlib
    c = mod.compressobj(int(level), zlib.DEFLATED, -15, **({"zdict": zdict} if zdict else {}))
    return c.compress(block) + c.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)


class _Inline:
    """Runs a submitted call at once: :class:`_BlockDeflater`'s block layout on one thread."""

    @staticmethod
    def submit(fn: Callable[..., bytes], *args: object) -> Future[bytes]:
        done: Future[bytes] = Future()
        done.set_result(fn(*args))
        return done


class _BlockDeflater:
    """pigz's method: one raw-deflate stream compressed in 1 MiB blocks on several threads.

    Each block is primed with the previous block's last 32 KiB and ends on a sync flush
    (byte-aligned, not final); the last block finishes the stream. The result is one standard
    deflate member. Stands in for zipfile's compressor (``compress``/``flush``); zipfile still
    computes the CRC and sizes. At most two blocks per thread are in flight (bounded memory).
    The bytes depend on the data only, not on the threads: with ``pool=None`` the same blocks
    are compressed on the calling thread (what a reproducible archive does on one thread).
    """

    def __init__(self, backend: str, pool: ThreadPoolExecutor | None, threads: int):
        self.backend, self.pool, self.limit = backend, pool or _Inline(), 2 * threads
        self.buf = bytearray()
        self.tail = b""
        self.pending: deque[Future[bytes]] = deque()

    def _submit(self, block: bytes, final: bool) -> None:
        self.pending.append(self.pool.submit(_deflate_block, self.backend, block, self.tail, final))
        self.tail = block[-_WINDOW:]

    def _ready(self, wait_all: bool) -> bytes:
        out = []
        while self.pending and (wait_all or self.pending[0].done() or len(self.pending) > self.limit):
            out.append(self.pending.popleft().result())
        return b"".join(out)

    def compress(self, data: bytes) -> bytes:
        self.buf += data
        while len(self.buf) >= _BLOCK:
            self._submit(bytes(self.buf[:_BLOCK]), False)
            del self.buf[:_BLOCK]
        return self._ready(False)

    def flush(self) -> bytes:
        self._submit(bytes(self.buf), True)
        self.buf = bytearray()
        return self._ready(True)


class _Packed:
    """A compressor that hands zipfile a member compressed beforehand (a small file, whole)."""

    def __init__(self, packed: bytes):
        self.packed = packed

    def compress(self, data: bytes) -> bytes:
        packed, self.packed = self.packed, b""
        return packed

    def flush(self) -> bytes:
        return b""


_THREADED = 4 * _BLOCK  # a member this big is deflated in blocks (on threads, or reproducible)


def _compressor(options: ArchiveOptions, backend: str, size: int, pool: ThreadPoolExecutor | None):
    """A fresh compressor for one member of ``size`` bytes, in the shape zipfile's writer uses."""
    if options.compression == "deflate":
        if size >= _THREADED and (pool is not None or options.reproducible):
            return _BlockDeflater(backend, pool, options.threads)
        return _raw_deflater(backend)
    if options.compression == "lzma" and options.level is not None:
        return _LevelLZMA(options.level)
    return zipfile._get_compressor(_METHODS[options.compression], options.level)


def _pack(data: bytes, method: int, compressor) -> tuple[int, bytes]:
    """A whole small member's method and bytes: compressed only if that makes it smaller."""
    if data and method != zipfile.ZIP_STORED:
        packed = compressor.compress(data) + compressor.flush()
        if pays(len(packed), len(data)):
            return method, packed
    return zipfile.ZIP_STORED, data


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    """Whether two stats show the very same, unchanged file (device, inode, size, mtime, ctime)."""
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns, a.st_ctime_ns) == (
        b.st_dev, b.st_ino, b.st_size, b.st_mtime_ns, b.st_ctime_ns)


class _Deadline:
    """Raises :class:`StemTimeout` once ``seconds`` have passed.

    Checked between chunks; in a process's main thread a timer signal also interrupts a read
    that blocks (a FIFO, a hung network mount).
    """

    def __init__(self, stem: str, seconds: float | None):
        self.stem = stem
        self.seconds = seconds
        self.at = None if seconds is None else time.monotonic() + seconds

    def check(self) -> None:
        if self.at is not None and time.monotonic() > self.at:
            raise StemTimeout(f"stem {self.stem!r} took longer than its timeout of {self.seconds:g} s",
                              stem=self.stem)

    @contextlib.contextmanager
    def armed(self) -> Iterator[None]:
        use_signal = (
            self.seconds is not None
            and hasattr(signal, "setitimer")
            and threading.current_thread() is threading.main_thread()
        )
        if not use_signal:
            yield
            return

        def _fire(signum, frame):
            self.check()

        old = signal.signal(signal.SIGALRM, _fire)
        armed_at = time.monotonic()
        caller = signal.setitimer(signal.ITIMER_REAL, self.seconds + 0.05, 0.25)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0, 0)
            signal.signal(signal.SIGALRM, old)
            if caller[0] > 0:  # give the caller's own timer back, less the time spent here
                left = caller[0] - (time.monotonic() - armed_at)
                signal.setitimer(signal.ITIMER_REAL, max(left, 0.001), caller[1])


def _open_source(f: SourceFile, stem: str) -> tuple[int, os.stat_result]:
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


def _check_unchanged(f: SourceFile, stem: str, st: os.stat_result, total: int,
                     after: os.stat_result) -> None:
    """The file read must not have changed while it was read: size, mtime and ctime."""
    if total != st.st_size or (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != (
            st.st_size, st.st_mtime_ns, st.st_ctime_ns):
        raise SourceChangedError(
            f"{f.path} changed while it was read (size {st.st_size} → {after.st_size}, "
            f"{total} bytes read); stem {stem!r} not archived", stem=stem, path=f.path)


def _stamp(st: os.stat_result, options: ArchiveOptions) -> Stamp:
    """A member's DOS time, mode bits and extra fields, as the archive will record them."""
    return stamp(st, options.reproducible, options.source_date_epoch)


def _member_info(name: str, s: Stamp, method: int, options: ArchiveOptions, size: int) -> zipfile.ZipInfo:
    zinfo = zipfile.ZipInfo(name, s.date_time)
    zinfo.external_attr = s.external_attr
    zinfo.extra = s.extra  # the same bytes in the local and the central header
    zinfo.create_system = 3
    zinfo.compress_type = method
    if options.level is not None and method in (zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2):
        zinfo._compresslevel = options.level  # zipfile's own per-member level slot
    zinfo.file_size = size  # lets zipfile choose ZIP64 up front for big members
    return zinfo


def _copy_in(zf: zipfile.ZipFile, zinfo: zipfile.ZipInfo, src, compressor, chunk: int,
             deadline: _Deadline, on_bytes: ByteSink | None) -> int:
    """Stream the open file ``src`` from its start into a new member; the bytes read."""
    src.seek(0)
    buf = bytearray(min(chunk, max(4096, zinfo.file_size + 1)))  # small file, small buffer
    view = memoryview(buf)
    total = 0
    with zf.open(zinfo, "w") as dst:
        if dst._compressor is not None:
            dst._compressor = compressor
        while n := src.readinto(buf):
            dst.write(view[:n])
            total += n
            if on_bytes is not None:
                on_bytes(n)
            deadline.check()
    return total


def _drop_last(zf: zipfile.ZipFile, zinfo: zipfile.ZipInfo) -> None:
    """Take the member just written off the end of ``zf``, to write it again another way."""
    zf.filelist.remove(zinfo)
    del zf.NameToInfo[zinfo.filename]
    zf.start_dir = zinfo.header_offset
    zf.fp.seek(zinfo.header_offset)
    zf.fp.truncate()


def _add_member(zf: zipfile.ZipFile, f: SourceFile, options: ArchiveOptions, backend: str,
                deadline: _Deadline, on_bytes: ByteSink | None, stem: str,
                pool: ThreadPoolExecutor | None) -> os.stat_result:
    """Stream one file into ``zf``; return its stat as read (for the delete step).

    A file under the chunk size is read whole and stored unless compressing it makes it
    smaller (the in-memory writer's rule, so both write the same bytes). A bigger one is
    stored without compressing when its samples do not compress; otherwise it is compressed
    as it streams, and written again, stored, if that did not make it smaller.
    """
    fd, st = _open_source(f, stem)
    with open(fd, "rb") as src:
        s = _stamp(st, options)
        method = _METHODS[options.compression]
        size = st.st_size
        if method != zipfile.ZIP_STORED and size < options.chunk_size:
            data = src.read(size + 1)  # one byte more than expected: growth shows
            method, packed = _pack(data, method, _compressor(options, backend, size, pool))
            with zf.open(_member_info(f.name, s, method, options, size), "w") as dst:
                if dst._compressor is not None:
                    dst._compressor = _Packed(packed)
                dst.write(data)
            total = len(data)
            if on_bytes is not None:
                on_bytes(total)
            deadline.check()
        else:
            if method != zipfile.ZIP_STORED and sample_incompressible(fd, size):
                method = zipfile.ZIP_STORED  # random or compressed already: copied, not compressed
            zinfo = _member_info(f.name, s, method, options, size)
            compressor = None if method == zipfile.ZIP_STORED else _compressor(options, backend, size, pool)
            total = _copy_in(zf, zinfo, src, compressor, options.chunk_size, deadline, on_bytes)
            if method != zipfile.ZIP_STORED and not pays(zinfo.compress_size, zinfo.file_size):
                log.debug("stem %s: %s did not shrink (%d -> %d bytes); storing it", stem, f.path,
                          zinfo.file_size, zinfo.compress_size)
                _drop_last(zf, zinfo)
                zinfo = _member_info(f.name, s, zipfile.ZIP_STORED, options, size)
                total = _copy_in(zf, zinfo, src, None, options.chunk_size, deadline, None)
        after = os.fstat(src.fileno())
    _check_unchanged(f, stem, st, total, after)
    return st


def _write_streaming(raw, stem: StemPlan, options: ArchiveOptions, backend: str,
                     deadline: _Deadline, on_bytes: ByteSink | None,
                     pool: ThreadPoolExecutor | None,
                     merge: _Merge | None = None) -> dict[str, os.stat_result]:
    """Write the archive through zipfile, member by member, chunk by chunk (any size).

    With ``merge``, the existing archive's members it carries are copied in as stored bytes;
    all members go in name order.
    """
    read: dict[str, os.stat_result] = {}
    new = [(f.name, f) for f in stem.files]
    carried = [(i.filename, i) for i in merge.carried] if merge is not None else []
    if merge is not None and merge.preamble:
        copy_preamble(merge.existing, raw, merge.preamble, options.chunk_size)
    with zipfile.ZipFile(raw, "w", compression=_METHODS[options.compression], allowZip64=True) as zf:
        if merge is not None and merge.comment:
            zf.comment = merge.comment
        for _, item in sorted(new + carried, key=lambda pair: pair[0]):
            if isinstance(item, SourceFile):
                read[item.name] = _add_member(zf, item, options, backend, deadline, on_bytes,
                                              stem.stem, pool)
            else:
                assert merge is not None
                carry_member(zf, merge.existing, item, options.chunk_size, deadline.check)
    return read


class _Merge:
    """The existing archive of a stem being merged: what is carried over and what is dropped."""

    def __init__(self, existing: Existing, stem: StemPlan, replace_all: bool):
        names = set(stem.names)
        others = [i for i in existing.members if i.filename not in names]
        self.existing = existing
        self.carried = [] if replace_all else others
        self.dropped = tuple(i.filename for i in others) if replace_all else ()
        # the archive's own comment (zip -z) and any bytes before its first member (a
        # self-extractor stub) are kept by a merge, as zip's update keeps them
        self.comment = b"" if replace_all else existing.zf.comment
        self.preamble = 0 if replace_all else existing.preamble

    @property
    def more(self) -> bool:
        """Whether the new archive holds more than this run's files."""
        return bool(self.carried or self.comment or self.preamble)


# A stem this small is built in memory and written with one call: the same bytes zipfile's
# streaming writer makes (tested), without its per-member seeks and Python-level bookkeeping,
# which cost more than compressing a few KiB.
_SMALL_STEM = 1 << 20
_LOCAL = struct.Struct("<4s2B4HL2L2H")  # zip's local file header, as zipfile packs it
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")  # central directory entry
_END = struct.Struct("<4s4H2LH")  # end of central directory record
_ZIP_VERSION = 20  # "2.0": deflate; what zipfile writes for deflate and stored members


def _in_memory(stem: StemPlan, options: ArchiveOptions) -> bool:
    return (
        options.compression in ("deflate", "stored")
        and stem.bytes <= _SMALL_STEM
        and len(stem.files) < 0xFFFF  # no ZIP64 end record needed
        and all(f.size < options.chunk_size for f in stem.files)  # one compress call, as streaming
    )


def _read_whole(f: SourceFile, stem: str, most: int) -> tuple[bytes, os.stat_result] | None:
    """A small source's bytes, checked unchanged while read; None, read nothing, when the file
    is now bigger than ``most`` bytes (it grew since the plan)."""
    fd, st = _open_source(f, stem)
    if st.st_size > most:
        os.close(fd)
        return None
    try:
        chunks = []
        total = 0
        while total <= st.st_size:  # ask for one byte more than expected: growth shows
            data = os.read(fd, st.st_size + 1 - total)
            if not data:
                break
            chunks.append(data)
            total += len(data)
        after = os.fstat(fd)
    finally:
        os.close(fd)
    _check_unchanged(f, stem, st, total, after)
    return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), st


def _write_in_memory(raw, stem: StemPlan, options: ArchiveOptions, backend: str,
                     deadline: _Deadline, on_bytes: ByteSink | None) -> dict[str, os.stat_result] | None:
    """Write a small stem's whole archive at once: local headers and data, central directory.

    Returns None, having written and reported nothing, when a file grew past the small-stem
    limits since the plan: the caller then streams the stem, so memory stays bounded.
    """
    method = _METHODS[options.compression]
    read: dict[str, os.stat_result] = {}
    body: list[bytes] = []
    central: list[bytes] = []
    offset = 0
    total = 0
    for f in stem.files:
        got = _read_whole(f, stem.stem, most=min(options.chunk_size - 1, _SMALL_STEM - total))
        if got is None:
            log.debug("stem %s: %s grew since the plan; streaming it", stem.stem, f.path)
            return None
        data, st = got
        total += len(data)
        read[f.name] = st
        kind, packed = _pack(data, method, _raw_deflater(backend) if method != zipfile.ZIP_STORED else None)
        crc = zlib.crc32(data)
        s = _stamp(st, options)
        dt = s.date_time
        dosdate = (dt[0] - 1980) << 9 | dt[1] << 5 | dt[2]
        dostime = dt[3] << 11 | dt[4] << 5 | (dt[5] // 2)
        try:
            name, flags = f.name.encode("ascii"), 0
        except UnicodeEncodeError:
            name, flags = f.name.encode("utf-8"), 0x800  # bit 11: the name is UTF-8
        body += (_LOCAL.pack(b"PK\x03\x04", _ZIP_VERSION, 0, flags, kind, dostime, dosdate, crc,
                             len(packed), len(data), len(name), len(s.extra)), name, s.extra, packed)
        central += (_CENTRAL.pack(b"PK\x01\x02", _ZIP_VERSION, 3, _ZIP_VERSION, 0, flags, kind,
                                  dostime, dosdate, crc, len(packed), len(data), len(name),
                                  len(s.extra), 0, 0, 0, s.external_attr, offset), name, s.extra)
        offset += _LOCAL.size + len(name) + len(s.extra) + len(packed)
        deadline.check()
    directory = b"".join(central)
    n = len(stem.files)
    body += (directory, _END.pack(b"PK\x05\x06", 0, 0, n, n, len(directory), offset, 0))
    raw.write(b"".join(body))
    if on_bytes is not None:
        on_bytes(total)
    return read


def _verify(tmp: Path, expected: dict[str, int], stem: str, chunk: int) -> None:
    """Re-read every member of ``tmp``: names, sizes and CRCs must be as written."""
    try:
        with zipfile.ZipFile(tmp) as zf:
            infos = zf.infolist()
            names = [i.filename for i in infos]
            if sorted(names) != sorted(expected):
                raise VerifyError(f"archive of stem {stem!r} holds {names}, expected {sorted(expected)}",
                                  stem=stem)
            for info in infos:
                if info.file_size != expected[info.filename]:
                    raise VerifyError(f"{info.filename} in stem {stem!r}: size {info.file_size}, "
                                      f"expected {expected[info.filename]}", stem=stem)
                got = 0
                with zf.open(info) as member:  # zipfile checks the CRC at the end of the stream
                    while data := member.read(chunk):
                        got += len(data)
                if got != info.file_size:
                    raise VerifyError(f"{info.filename} in stem {stem!r}: read {got} bytes, "
                                      f"expected {info.file_size}", stem=stem)
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise VerifyError(f"archive of stem {stem!r} failed verification: {e}", stem=stem) from e


def _exists(path: Path) -> bool:
    """Whether anything (a link too) is at ``path``; a name too long fails with that message."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            raise StemError(f"file name too long: {path}", path=path) from e
        raise
    return True


def _still_read_file(f: SourceFile, st: os.stat_result) -> bool:
    """Whether ``f.path`` is still the very file that was read (a link: to that file)."""
    try:
        now = os.lstat(f.path)
        if f.target is not None:
            if not stat.S_ISLNK(now.st_mode) or os.path.realpath(f.path) != str(f.target):
                return False
            now = os.lstat(f.target)
    except OSError:
        return False
    return _same(now, st)


def _delete_sources(stem: StemPlan, read: dict[str, os.stat_result]) -> list[str]:
    """Delete the stem's sources if each is still the very file that was read; all or none."""
    doomed = [f for f in stem.files if f.name not in stem.keep]
    for f in doomed:
        if not _still_read_file(f, read[f.name]):
            raise SourceChangedError(
                f"{f.path} changed after it was archived; no source of stem {stem.stem!r} deleted",
                stem=stem.stem, path=f.path)
    deleted = []
    for f in doomed:
        os.unlink(f.path)
        deleted.append(f.name)
    if deleted:
        _fsync_dir(stem.files[0].path.parent)
    return deleted


def write_archive(stem: StemPlan, options: ArchiveOptions, *, run_id: str = "x",
                  on_bytes: ByteSink | None = None) -> StemResult:
    """Write ``stem``'s archive and return what happened; never raises for a stem's failure.

    ``on_bytes`` is called with the number of source bytes read after each chunk.
    ``KeyboardInterrupt`` is cleaned up after and re-raised.
    """
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    names = stem.names
    if stem.action == "skip":
        return StemResult(stem.stem, stem.archive, names, stem.bytes, 0, 0.0, "skipped",
                          message=stem.reason)
    tmp: Path | None = None
    placed = False
    merge: _Merge | None = None
    deadline = _Deadline(stem.stem, options.timeout)
    threaded = options.threads > 1 and options.compression == "deflate" and stem.bytes >= 4 * _BLOCK
    pool = ThreadPoolExecutor(options.threads, thread_name_prefix="zipkit-deflate") if threaded else None
    try:
        backend = deflate_backend(options)
        if stem.action == "fail":  # the plan found a file at STEM.zip that is not a zip
            raise ExistingArchiveError(stem.reason, stem=stem.stem, path=stem.archive)
        # read now (not at plan time): what is there when it is rewritten. One that appeared
        # since a "create" plan (another job; this stem run again by Dask) is merged as well.
        existing = (open_existing(stem.archive)
                    if stem.action != "create" or _exists(stem.archive) else None)
        if existing is not None:
            merge = _Merge(existing, stem, replace_all=stem.action == "replace")
        with deadline.armed():
            fd, tmp = _temp_file(stem.archive.parent, run_id)
            with open(fd, "wb") as raw:
                read = None
                whole = not (merge and merge.more) and _in_memory(stem, options)
                if pool is None and whole:
                    read = _write_in_memory(raw, stem, options, backend, deadline, on_bytes)
                if read is None:
                    read = _write_streaming(raw, stem, options, backend, deadline, on_bytes, pool,
                                            merge)
                raw.flush()
                size_out = raw.tell()
                if options.durable or options.delete_sources:
                    os.fsync(raw.fileno())
            if options.verify:
                expected = {n: read[n].st_size for n in names}
                if merge is not None:
                    expected.update((i.filename, i.file_size) for i in merge.carried)
                _verify(tmp, expected, stem.stem, options.chunk_size)
            deadline.check()
        if merge is not None:
            merge.existing.close()
            if not merge.existing.unchanged():  # another writer: its members would be lost
                raise ExistingArchiveError(
                    f"{stem.archive} changed while it was being merged; it is kept as it is and "
                    f"stem {stem.stem!r} is not archived", stem=stem.stem, path=stem.archive)
        elif _exists(stem.archive):  # appeared since: never written over unread
            raise ExistingArchiveError(
                f"{stem.archive} appeared while stem {stem.stem!r} was being archived; it is kept "
                "as it is (run again to merge it)", stem=stem.stem, path=stem.archive)
        os.replace(tmp, stem.archive)
        tmp = None
        placed = True
        if options.durable or options.delete_sources:
            _fsync_dir(stem.archive.parent)
        if pool is not None:
            pool.shutdown(wait=True)
            pool = None
        deleted: list[str] = []
        if options.delete_sources:
            with _deleting(stem.archive.parent, run_id) as allowed:  # not once the run is closed
                deleted = _delete_sources(stem, read) if allowed else []
        return StemResult(
            stem.stem, stem.archive, names, sum(s.st_size for s in read.values()), size_out,
            time.perf_counter() - t0, "ok", verified=options.verify, deleted=tuple(deleted),
            deleted_bytes=sum(read[n].st_size for n in deleted),
            compressor=f"{backend}x{options.threads}" if threaded else backend,
            cpu_seconds=time.process_time() - cpu0, peak_rss=_peak_rss(),
            carried=len(merge.carried) if merge else 0, dropped=merge.dropped if merge else (),
        )
    except BaseException as e:
        if merge is not None:
            merge.existing.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
            pool = None
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
        if not isinstance(e, Exception):
            raise
        status = "timed_out" if isinstance(e, StemTimeout) else "failed"
        archived = placed and stem.archive.exists()
        msg = str(e)
        if isinstance(e, OSError) and not isinstance(e, StemError):
            msg = f"{e.strerror or e}: {e.filename}" if e.filename else str(e)
            if e.filename2:  # a failed rename: name the archive in the way, not the temp file
                msg = f"{e.strerror or e}: {e.filename2}"
        log.warning("%s: %s: %s", status.replace("_", " "), stem.stem, msg)
        return StemResult(
            stem.stem, stem.archive if archived else None, names, 0, 0, time.perf_counter() - t0,
            status, error_type=type(e).__name__, message=msg,
            traceback="".join(traceback.format_exception(type(e), e, e.__traceback__)),
            cpu_seconds=time.process_time() - cpu0, peak_rss=_peak_rss(),
        )


def _peak_rss() -> int:
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
