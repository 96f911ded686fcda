"""One stem → one archive: temp file, write, verify, replace, delete sources.

The archive is written to a temp file in the process's own temp folder inside the output
folder and renamed onto ``STEM.zip`` only when it is complete (and verified, when asked).
Whatever goes wrong, no ``STEM.zip`` is left half-written and no temp file stays behind;
sources are deleted only after the archive is in place, fsynced and verified. A stem whose
files are all small (under the chunk size; deflate or stored) is written member by member
by :class:`~zipkit._zipwriter.ZipWriter`; others stream through zipfile chunk by chunk. Both
give the same bytes.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import threading
import time
import traceback
import zipfile
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import IO, Any, BinaryIO, Literal

from ._compress import BLOCK, METHODS, Compressor, Packed, compressor, compressor_name, pack
from ._errors import ExistingArchiveError, SourceChangedError, StemError, StemTimeout, VerifyError
from ._members import Stamp, pays, sample_incompressible, stamp
from ._merge import Existing, carry_member, copy_preamble, open_existing
from ._options import ArchiveOptions
from ._plan import SourceFile, StemPlan
from ._report import StemResult
from ._sources import ReadLog, check_unchanged, open_source, read_whole, still_read_file
from ._tempfiles import deleting as _deleting
from ._tempfiles import fsync_dir as _fsync_dir
from ._tempfiles import temp_file as _temp_file
from ._zipwriter import ZipWriter

__all__ = ["write_archive"]

log = logging.getLogger("zipkit")

ByteSink = Callable[[int], None]


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
        seconds = self.seconds
        use_signal = (
            seconds is not None
            and hasattr(signal, "setitimer")
            and threading.current_thread() is threading.main_thread()
        )
        if seconds is None or not use_signal:
            yield
            return

        def _fire(signum: int, frame: FrameType | None) -> None:
            self.check()

        old = signal.signal(signal.SIGALRM, _fire)
        armed_at = time.monotonic()
        caller = signal.setitimer(signal.ITIMER_REAL, seconds + 0.05, 0.25)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0, 0)
            signal.signal(signal.SIGALRM, old)
            if caller[0] > 0:  # give the caller's own timer back, less the time spent here
                left = caller[0] - (time.monotonic() - armed_at)
                signal.setitimer(signal.ITIMER_REAL, max(left, 0.001), caller[1])

def _stamp(st: os.stat_result, options: ArchiveOptions) -> Stamp:
    """A member's DOS time, mode bits and extra fields, as the archive will record them."""
    return stamp(st, options.reproducible, options.source_date_epoch)


def _member_info(name: str, s: Stamp, method: int, options: ArchiveOptions, size: int) -> zipfile.ZipInfo:
    zinfo = zipfile.ZipInfo(name, s.date_time)
    slots: Any = zinfo  # zipfile's own per-member level slot is not in its type stubs
    zinfo.external_attr = s.external_attr
    zinfo.extra = s.extra  # the same bytes in the local and the central header
    zinfo.create_system = 3
    zinfo.compress_type = method
    if options.level is not None and method in (zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2):
        slots._compresslevel = options.level
    zinfo.file_size = size  # lets zipfile choose ZIP64 up front for big members
    return zinfo


def _open_member(zf: zipfile.ZipFile, zinfo: zipfile.ZipInfo, c: Compressor | None) -> IO[bytes]:
    """A new member of ``zf`` open for writing, compressed by ``c`` (None: stored)."""
    dst: Any = zf.open(zinfo, "w")  # zipfile's member writer; its compressor slot is private
    if dst._compressor is not None:
        dst._compressor = c
    member: IO[bytes] = dst
    return member


def _copy_in(zf: zipfile.ZipFile, zinfo: zipfile.ZipInfo, src: BinaryIO, c: Compressor | None,
             chunk: int, deadline: _Deadline, on_bytes: ByteSink | None) -> int:
    """Stream the open file ``src`` from its start into a new member; the bytes read."""
    src.seek(0)
    buf = bytearray(min(chunk, max(4096, zinfo.file_size + 1)))  # small file, small buffer
    view = memoryview(buf)
    total = 0
    with _open_member(zf, zinfo, c) as dst:
        while n := src.readinto(buf):  # type: ignore[attr-defined]  # an open(fd, "rb") file
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
    zf.start_dir = zinfo.header_offset  # zipfile's write position
    assert zf.fp is not None
    zf.fp.seek(zinfo.header_offset)
    zf.fp.truncate()


def _add_member(zf: zipfile.ZipFile, f: SourceFile, options: ArchiveOptions, backend: str,
                deadline: _Deadline, on_bytes: ByteSink | None, stem: str,
                pool: ThreadPoolExecutor | None) -> os.stat_result:
    """Stream one file into ``zf``; return its stat as read (for the delete step).

    A file under the chunk size is read whole and stored unless compressing it makes it
    smaller (the direct writer's rule, so both write the same bytes). A bigger one is
    stored without compressing when its samples do not compress; otherwise it is compressed
    as it streams, and written again, stored, if that did not make it smaller.
    """
    fd, st = open_source(f, stem)
    with open(fd, "rb") as src:
        s = _stamp(st, options)
        method = METHODS[options.compression]
        size = st.st_size
        if method != zipfile.ZIP_STORED and size < options.chunk_size:
            data = src.read(size + 1)  # one byte more than expected: growth shows
            method, packed = pack(data, method, compressor(options, backend, size, pool))
            with _open_member(zf, _member_info(f.name, s, method, options, size), Packed(packed)) as dst:
                dst.write(data)
            total = len(data)
            if on_bytes is not None:
                on_bytes(total)
            deadline.check()
        else:
            if method != zipfile.ZIP_STORED and sample_incompressible(fd, size):
                method = zipfile.ZIP_STORED  # random or compressed already: copied, not compressed
            zinfo = _member_info(f.name, s, method, options, size)
            c = None if method == zipfile.ZIP_STORED else compressor(options, backend, size, pool)
            total = _copy_in(zf, zinfo, src, c, options.chunk_size, deadline, on_bytes)
            if method != zipfile.ZIP_STORED and not pays(zinfo.compress_size, zinfo.file_size):
                log.debug("stem %s: %s did not shrink (%d -> %d bytes); storing it", stem, f.path,
                          zinfo.file_size, zinfo.compress_size)
                _drop_last(zf, zinfo)
                zinfo = _member_info(f.name, s, zipfile.ZIP_STORED, options, size)
                total = _copy_in(zf, zinfo, src, None, options.chunk_size, deadline, None)
        after = os.fstat(src.fileno())
    check_unchanged(f, stem, st, total, after)
    return st


def _write_streaming(raw: BinaryIO, stem: StemPlan, options: ArchiveOptions, backend: str,
                     deadline: _Deadline, on_bytes: ByteSink | None,
                     pool: ThreadPoolExecutor | None, merge: _Merge | None = None) -> ReadLog:
    """Write the archive through zipfile, member by member, chunk by chunk (any size).

    With ``merge``, the existing archive's members it carries are copied in as stored bytes;
    all members go in name order.
    """
    read = ReadLog(len(stem.files))
    members: list[tuple[str, int | zipfile.ZipInfo]] = [(f.name, i) for i, f in enumerate(stem.files)]
    if merge is not None:
        members += [(i.filename, i) for i in merge.carried]
    if merge is not None and merge.preamble:
        copy_preamble(merge.existing, raw, merge.preamble, options.chunk_size)
    with zipfile.ZipFile(raw, "w", compression=METHODS[options.compression], allowZip64=True) as zf:
        if merge is not None and merge.comment:
            zf.comment = merge.comment
        for _, item in sorted(members, key=lambda pair: pair[0]):
            if isinstance(item, int):
                read.add(item, _add_member(zf, stem.files[item], options, backend, deadline,
                                           on_bytes, stem.stem, pool))
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



# A stem of small files is written by ZipWriter: the same bytes zipfile's streaming writer
# makes (tested), without its per-member objects, seeks and header rewrites, which cost more
# than compressing a few KiB. False: every stem streams through zipfile (the tests' reference).
_DIRECT = True


def _direct(stem: StemPlan, options: ArchiveOptions) -> bool:
    return (
        _DIRECT
        and options.compression in ("deflate", "stored")
        and all(f.size < options.chunk_size for f in stem.files)  # read whole, as streaming
    )


def _write_direct(raw: BinaryIO, stem: StemPlan, options: ArchiveOptions, backend: str,
                  deadline: _Deadline, on_bytes: ByteSink | None,
                  pool: ThreadPoolExecutor | None) -> ReadLog:
    """Write a stem of small files member by member: each read whole, compressed if that pays,
    written with its local header; then the central directory."""
    method = METHODS[options.compression]
    read = ReadLog(len(stem.files))
    out = ZipWriter(raw)
    stamps: dict[tuple[float, int, int, int], Stamp] = {}  # files of one second share one
    for i, (f, name) in enumerate(zip(stem.files, stem.names)):
        data, st = read_whole(f, stem.stem)
        read.add(i, st)
        key = (st.st_mtime // 1, st.st_mode, st.st_uid, st.st_gid)  # all that a stamp records
        s = stamps.get(key)
        if s is None:
            if len(stamps) > 4096:
                stamps.clear()
            s = stamps[key] = _stamp(st, options)
        c = compressor(options, backend, len(data), pool) if method != zipfile.ZIP_STORED else None
        kind, packed = pack(data, method, c)
        out.add(name, s, kind, zlib.crc32(data), packed, len(data))
        if on_bytes is not None:
            on_bytes(len(data))
        deadline.check()
    out.close()
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

def _delete_sources(stem: StemPlan, read: ReadLog) -> tuple[list[str], int]:
    """Delete the stem's sources if each is still the very file that was read; all or none.
    The names deleted and their bytes."""
    doomed = [(i, f) for i, f in enumerate(stem.files) if f.name not in stem.keep]
    for i, f in doomed:
        if not still_read_file(f, read, i):
            raise SourceChangedError(
                f"{f.path} changed after it was archived; no source of stem {stem.stem!r} deleted",
                stem=stem.stem, path=f.path)
    deleted, size = [], 0
    for i, f in doomed:
        os.unlink(f.path)
        deleted.append(f.name)
        size += read.size(i)
    if deleted:
        _fsync_dir(Path(os.path.dirname(stem.files[0].path)))
    return deleted, size


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
    threaded = options.threads > 1 and options.compression == "deflate" and stem.bytes >= 4 * BLOCK
    pool = ThreadPoolExecutor(options.threads, thread_name_prefix="zipkit-deflate") if threaded else None
    try:
        backend = compressor_name(options)
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
                if not (merge and merge.more) and _direct(stem, options):
                    read = _write_direct(raw, stem, options, backend, deadline, on_bytes, pool)
                else:
                    read = _write_streaming(raw, stem, options, backend, deadline, on_bytes, pool,
                                            merge)
                raw.flush()
                size_out = raw.tell()
                if options.durable or options.delete_sources:
                    os.fsync(raw.fileno())
            if options.verify:
                expected = {f.name: read.size(i) for i, f in enumerate(stem.files)}
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
        deleted_bytes = 0
        if options.delete_sources:
            with _deleting(stem.archive.parent, run_id) as allowed:  # not once the run is closed
                if allowed:
                    deleted, deleted_bytes = _delete_sources(stem, read)
        return StemResult(
            stem.stem, stem.archive, names, read.total, size_out,
            time.perf_counter() - t0, "ok", verified=options.verify, deleted=tuple(deleted),
            deleted_bytes=deleted_bytes,
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
        status: Literal["timed_out", "failed"] = "timed_out" if isinstance(e, StemTimeout) else "failed"
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
