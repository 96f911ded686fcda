"""Baseline: what a user writes with the standard library alone.

One scan of the data folder, files grouped under the marker stems (the stem followed by a
character that is not a letter or digit), then one ``ZipFile(..., ZIP_DEFLATED,
compresslevel=6)`` per stem with ``ZipFile.write``, one future per stem on a
``ProcessPoolExecutor``. ``--backend isal`` swaps zipfile's deflate compressor for ISA-L's
raw-deflate ``compressobj`` (still standard deflate), to show what the codec alone is worth.

Run ``python -m benchmarks.plain_zipfile SOURCE MARKERS OUTPUT --ext csv --workers N``.
"""

from __future__ import annotations

import argparse
import os
import zipfile
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

__all__ = ["group", "run", "zip_one"]


def _has_ext(name: str, extensions: tuple[str, ...]) -> bool:
    low = name.lower()
    return any(low.endswith("." + e) for e in extensions)


def group(source: str, stems: list[str], extensions: tuple[str, ...]) -> dict[str, list[str]]:
    """One listing of ``source``: file names by the longest stem each starts with."""
    wanted = set(stems)
    out: dict[str, list[str]] = {}
    for name in sorted(os.listdir(source)):
        if not _has_ext(name, extensions):
            continue
        for i in range(len(name) - 1, 0, -1):
            if not name[i].isalnum() and name[:i] in wanted:
                out.setdefault(name[:i], []).append(name)
                break
    return out


def _use_isal(level: int) -> None:
    from isal import isal_zlib

    def compressor(compress_type: int, compresslevel: int | None = None) -> Any:
        if compress_type == zipfile.ZIP_DEFLATED:
            return isal_zlib.compressobj(level, zlib.DEFLATED, -15)
        return _stock(compress_type, compresslevel)

    # zipfile's private compressor hook is the point of this baseline: the stubs do not have it
    _stock = zipfile._get_compressor  # type: ignore[attr-defined]
    zipfile._get_compressor = compressor  # type: ignore[attr-defined]


def _init(backend: str, isal_level: int) -> None:
    if backend == "isal":
        _use_isal(isal_level)


def zip_one(stem: str, source: str, names: list[str], output: str, level: int) -> str:
    """Write ``output/STEM.zip`` from ``names`` in ``source``."""
    with zipfile.ZipFile(os.path.join(output, f"{stem}.zip"), "w", zipfile.ZIP_DEFLATED,
                         compresslevel=level) as zf:
        for n in names:
            zf.write(os.path.join(source, n), arcname=n)
    return stem


def run(source: str, markers: str, output: str, extensions: tuple[str, ...], *, workers: int,
        level: int = 6, backend: str = "zlib", isal_level: int = 2) -> int:
    """Archive every stem with ``workers`` processes, one future per stem; return the count."""
    os.makedirs(output, exist_ok=True)
    stems = sorted(os.path.splitext(n)[0] for n in os.listdir(markers) if n.lower().endswith(".yml"))
    groups = group(source, stems, extensions)
    with ProcessPoolExecutor(workers, initializer=_init, initargs=(backend, isal_level)) as pool:
        futures = [pool.submit(zip_one, s, source, names, output, level) for s, names in groups.items()]
        for fut in as_completed(futures):
            fut.result()
    return len(groups)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.plain_zipfile", description=__doc__.split("\n")[0])
    p.add_argument("source")
    p.add_argument("markers")
    p.add_argument("output")
    p.add_argument("--ext", action="append", required=True)
    p.add_argument("--workers", type=int, default=os.cpu_count())
    p.add_argument("--level", type=int, default=6)
    p.add_argument("--backend", choices=["zlib", "isal"], default="zlib")
    p.add_argument("--isal-level", type=int, default=2)
    args = p.parse_args(argv)
    exts = tuple(e.lower().lstrip(".") for e in args.ext)
    n = run(args.source, args.markers, args.output, exts, workers=args.workers, level=args.level,
            backend=args.backend, isal_level=args.isal_level)
    return 0 if n else 1


if __name__ == "__main__":
    raise SystemExit(main())
