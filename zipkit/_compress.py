"""Compressors for one member: the deflate backend (ISA-L or zlib), pigz-style block deflate on
threads, LZMA at a chosen preset, and the rule that a member is kept compressed only if that pays.

Every compressor has the shape zipfile's member writer uses (``compress``/``flush``), so the
streaming writer and the direct writer compress the same way and write the same bytes.
"""

from __future__ import annotations

import lzma
import struct
import zipfile
import zlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import ModuleType
from typing import Protocol

from ._errors import StemError
from ._members import pays
from ._options import ArchiveOptions

__all__ = ["BLOCK", "METHODS", "Compressor", "Packed", "compressor", "compressor_name", "pack",
           "raw_deflater"]

_isal_zlib: ModuleType | None
try:  # ISA-L: standard deflate streams, several times faster than zlib
    from isal import isal_zlib as _isal_zlib
except ImportError:  # pragma: no cover - exercised where isal is not installed
    _isal_zlib = None

METHODS = {
    "deflate": zipfile.ZIP_DEFLATED,
    "stored": zipfile.ZIP_STORED,
    "bzip2": zipfile.ZIP_BZIP2,
    "lzma": zipfile.ZIP_LZMA,
}
_DEFAULT_LEVEL = 6


class Compressor(Protocol):
    """What zipfile's member writer calls: bytes in, compressed bytes out, then the rest."""

    def compress(self, data: bytes, /) -> bytes: ...

    def flush(self) -> bytes: ...


def _isal_level(level: int) -> int:
    """zlib level → the ISA-L level of similar intent (ISA-L has 0..3)."""
    # 6 (the default) → 3: within 3% of zip -6's size on simulation output, still ~9x faster
    return 0 if level <= 1 else 1 if level <= 3 else 2 if level <= 5 else 3


def compressor_name(options: ArchiveOptions) -> str:
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


class _LevelLZMA:
    """zipfile's LZMA member compressor (always preset 6) with a chosen preset: the same
    header (version 9.4, the filter's properties) before the raw LZMA1 stream."""

    def __init__(self, level: int):
        self.level = level
        self._comp: lzma.LZMACompressor | None = None

    def _start(self) -> tuple[bytes, lzma.LZMACompressor]:
        spec = {"id": lzma.FILTER_LZMA1, "preset": self.level}
        # the header keeps lc/lp/pb/dictionary size
        props = bytes(lzma._encode_filter_properties(spec))  # type: ignore[attr-defined]
        self._comp = lzma.LZMACompressor(lzma.FORMAT_RAW, filters=[spec])
        return struct.pack("<BBH", 9, 4, len(props)) + props, self._comp

    def compress(self, data: bytes, /) -> bytes:
        if self._comp is None:
            head, comp = self._start()
            return head + comp.compress(data)
        return self._comp.compress(data)

    def flush(self) -> bytes:
        if self._comp is None:
            head, comp = self._start()
            return head + comp.flush()
        return self._comp.flush()


def _module(kind: str) -> ModuleType:
    if kind == "isal":
        assert _isal_zlib is not None  # compressor_name names isal only where it is installed
        return _isal_zlib
    return zlib


def raw_deflater(backend: str) -> Compressor:
    """A raw-deflate compressobj (wbits=-15) for ``backend`` as named by :func:`compressor_name`."""
    kind, level = backend.split("-")
    c: Compressor = _module(kind).compressobj(int(level), zlib.DEFLATED, -15)
    return c


BLOCK = 1 << 20  # input bytes per parallel deflate block
_WINDOW = 32 << 10  # deflate's dictionary: the last 32 KiB of the previous block


def _deflate_block(backend: str, block: bytes, zdict: bytes, final: bool) -> bytes:
    kind, level = backend.split("-")
    c = _module(kind).compressobj(int(level), zlib.DEFLATED, -15, **({"zdict": zdict} if zdict else {}))
    out: bytes = c.compress(block) + c.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)
    return out


class _Inline:
    """Runs a submitted call at once: :class:`_BlockDeflater`'s block layout on one thread."""

    @staticmethod
    def submit(fn: Callable[[str, bytes, bytes, bool], bytes], backend: str, block: bytes,
               zdict: bytes, final: bool) -> Future[bytes]:
        done: Future[bytes] = Future()
        done.set_result(fn(backend, block, zdict, final))
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
        self.backend, self.limit = backend, 2 * threads
        self.pool: ThreadPoolExecutor | _Inline = pool or _Inline()
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

    def compress(self, data: bytes, /) -> bytes:
        self.buf += data
        while len(self.buf) >= BLOCK:
            self._submit(bytes(self.buf[:BLOCK]), False)
            del self.buf[:BLOCK]
        return self._ready(False)

    def flush(self) -> bytes:
        self._submit(bytes(self.buf), True)
        self.buf = bytearray()
        return self._ready(True)


class Packed:
    """A compressor that hands zipfile a member compressed beforehand (a small file, whole)."""

    def __init__(self, packed: bytes):
        self.packed = packed

    def compress(self, data: bytes, /) -> bytes:
        packed, self.packed = self.packed, b""
        return packed

    def flush(self) -> bytes:
        return b""


_THREADED = 4 * BLOCK  # a member this big is deflated in blocks (on threads, or reproducible)


def compressor(options: ArchiveOptions, backend: str, size: int,
               pool: ThreadPoolExecutor | None) -> Compressor:
    """A fresh compressor for one member of ``size`` bytes, in the shape zipfile's writer uses."""
    if options.compression == "deflate":
        if size >= _THREADED and (pool is not None or options.reproducible):
            return _BlockDeflater(backend, pool, options.threads)
        return raw_deflater(backend)
    if options.compression == "lzma" and options.level is not None:
        return _LevelLZMA(options.level)
    c: Compressor = zipfile._get_compressor(  # type: ignore[attr-defined]  # zipfile's own choice
        METHODS[options.compression], options.level)
    return c


def pack(data: bytes, method: int, c: Compressor | None) -> tuple[int, bytes]:
    """A whole small member's method and bytes: compressed only if that makes it smaller."""
    if data and method != zipfile.ZIP_STORED and c is not None:
        packed = c.compress(data) + c.flush()
        if pays(len(packed), len(data)):
            return method, packed
    return zipfile.ZIP_STORED, data
