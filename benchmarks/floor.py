"""The compute floor: read every file, raw-deflate it with ISA-L and CRC it, in N processes.

Nothing is written: no archive, no temp file, no headers. What is left is the work no zip
tool can skip — reading the bytes, deflating them at the level zipkit uses, and the CRC-32
every member needs — so the time of this program is the lower bound a zipkit run is measured
against (issue 17: the 256 MiB corpus within 1.15x of this floor on 2 processes)::

    python -m benchmarks.floor DATA --list FILES.txt --workers 2 --isal-level 3
    python -m benchmarks.floor DATA --list FILES.txt --report floor.json   # per-file CRC and sizes

Files are read in chunks of zipkit's chunk size (1 MiB) into one reused buffer, each file
through its own raw deflate stream (``wbits=-15``) and ``isal_zlib.crc32``. The files are
shared out before the workers start, largest first to the least-loaded worker (what a perfect
scheduler could do with whole files); the workers are forked once, after ``isal`` is imported.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["deflate_files", "main", "share"]

CHUNK = 1 << 20  # zipkit's ArchiveOptions.chunk_size


def share(sizes: dict[str, int], workers: int) -> list[list[str]]:
    """The names in ``sizes`` split into ``workers`` lists of about equal bytes (largest first)."""
    loads = [0] * workers
    parts: list[list[str]] = [[] for _ in range(workers)]
    for name in sorted(sizes, key=lambda n: (-sizes[n], n)):
        k = loads.index(min(loads))
        parts[k].append(name)
        loads[k] += sizes[name]
    return parts


def deflate_files(folder: str, names: list[str], level: int, chunk: int = CHUNK) -> list[list[Any]]:
    """``[name, crc32, size, deflated size]`` of each file, read and deflated, nothing kept."""
    from isal import isal_zlib

    buf = bytearray(chunk)
    view = memoryview(buf)
    out = []
    for name in names:
        comp = isal_zlib.compressobj(level, isal_zlib.DEFLATED, -15)
        crc = size = packed = 0
        with open(os.path.join(folder, name), "rb", buffering=0) as f:
            while n := f.readinto(buf):
                data = view[:n]
                crc = isal_zlib.crc32(data, crc)
                packed += len(comp.compress(data))
                size += n
        packed += len(comp.flush())
        out.append([name, crc, size, packed])
    return out


def _forked(folder: str, parts: list[list[str]], level: int) -> list[list[Any]]:
    """Run :func:`deflate_files` on each part in its own forked process; all their rows."""
    children = []
    for part in parts:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: no threads in this program, so forking is safe
            os.close(r)
            code = 0
            try:
                with os.fdopen(w, "w") as pipe:
                    json.dump(deflate_files(folder, part, level), pipe)
            except BaseException:  # noqa: BLE001 - reported by the exit code
                code = 1
            os._exit(code)
        os.close(w)
        children.append((pid, r))
    rows: list[list[Any]] = []
    failed = 0
    for pid, r in children:
        with os.fdopen(r) as pipe:
            text = pipe.read()
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            failed += 1
        else:
            rows += json.loads(text)
    if failed:
        raise SystemExit(f"{failed} floor worker(s) failed")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.floor", description=__doc__.split("\n")[0])
    p.add_argument("folder", help="folder of the files")
    p.add_argument("--list", type=Path, required=True, help="file with one file name (in FOLDER) per line")
    p.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    p.add_argument("--isal-level", type=int, default=3, help="ISA-L level (default 3: zipkit's level 6)")
    p.add_argument("--report", type=Path, help="write per-file [name, crc32, size, deflated size] as JSON")
    args = p.parse_args(argv)
    import isal.isal_zlib  # noqa: F401 - imported once, before the fork

    names = [n for n in args.list.read_text().splitlines() if n]
    t0 = time.perf_counter()
    sizes = {n: os.stat(os.path.join(args.folder, n)).st_size for n in names}
    parts = [part for part in share(sizes, max(1, args.workers)) if part]
    rows = _forked(args.folder, parts, args.isal_level)
    seconds = time.perf_counter() - t0
    total, packed = sum(r[2] for r in rows), sum(r[3] for r in rows)
    if args.report:
        args.report.write_text(json.dumps({"workers": len(parts), "isal_level": args.isal_level,
                                           "seconds": seconds, "files": rows}))
    print(f"{len(rows)} files, {total} bytes -> {packed} deflated in {seconds:.3f} s "
          f"({len(parts)} processes, ISA-L {args.isal_level})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
