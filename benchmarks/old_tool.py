"""The old zip_utilities algorithm, re-implemented from its description, as a baseline.

What the old tool did, and this module does on purpose (it is the thing zipkit replaces):

- stems are the marker files' names minus their extension;
- for every stem, one ``os.listdir`` of the whole data folder;
- a file belongs to a stem when the stem occurs anywhere in its name (substring match) and
  its extension is one of those asked for;
- one ``STEM.zip`` per stem, written in place with ``ZIP_STORED`` (no compression) by
  ``ZipFile.write``;
- sequentially, or with a ``ProcessPoolExecutor`` and one future per stem.

Run ``python -m benchmarks.old_tool SOURCE MARKERS OUTPUT --ext csv [--workers N]``.
"""

from __future__ import annotations

import argparse
import os
import zipfile
from concurrent.futures import ProcessPoolExecutor, as_completed

__all__ = ["marker_stems", "run", "zip_stem"]


def _has_ext(name: str, extensions: tuple[str, ...]) -> bool:
    low = name.lower()
    return any(low.endswith("." + e) for e in extensions)


def marker_stems(markers: str, marker_extensions: tuple[str, ...]) -> list[str]:
    """Stems of the marker files in ``markers`` (names minus extension), sorted."""
    return sorted(os.path.splitext(n)[0] for n in os.listdir(markers) if _has_ext(n, marker_extensions))


def zip_stem(stem: str, source: str, extensions: tuple[str, ...], output: str) -> tuple[str, int]:
    """Archive every file of ``source`` whose name contains ``stem``; return (stem, file count)."""
    names = sorted(n for n in os.listdir(source) if stem in n and _has_ext(n, extensions))
    if not names:
        return stem, 0
    with zipfile.ZipFile(os.path.join(output, f"{stem}.zip"), "w", zipfile.ZIP_STORED) as zf:
        for n in names:
            zf.write(os.path.join(source, n), arcname=n)
    return stem, len(names)


def run(source: str, markers: str, output: str, extensions: tuple[str, ...],
        marker_extensions: tuple[str, ...] = ("yml",), workers: int | None = None) -> dict[str, int]:
    """Archive every stem; ``workers`` None: sequentially, else one future per stem on a pool."""
    os.makedirs(output, exist_ok=True)
    stems = marker_stems(markers, marker_extensions)
    if workers is None:
        return dict(zip_stem(s, source, extensions, output) for s in stems)
    done: dict[str, int] = {}
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(zip_stem, s, source, extensions, output) for s in stems]
        for fut in as_completed(futures):
            stem, n = fut.result()
            done[stem] = n
    return done


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.old_tool", description=__doc__.split("\n")[0])
    p.add_argument("source", help="folder of the files to zip")
    p.add_argument("markers", help="folder of the marker files (one per stem)")
    p.add_argument("output", help="folder for the archives")
    p.add_argument("--ext", action="append", required=True, help="data file extension (repeat)")
    p.add_argument("--marker-ext", action="append", help="marker extension (repeat; default yml)")
    p.add_argument("--workers", type=int, help="process pool size (default: sequential)")
    args = p.parse_args(argv)
    exts = tuple(e.lower().lstrip(".") for e in args.ext)
    mexts = tuple(e.lower().lstrip(".") for e in (args.marker_ext or ["yml"]))
    done = run(args.source, args.markers, args.output, exts, mexts, args.workers)
    return 0 if done else 1


if __name__ == "__main__":
    raise SystemExit(main())
