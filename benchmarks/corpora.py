"""Deterministic benchmark corpora: simulation-like CSV text and float64 binary, laid out by stem.

Every corpus is a folder with ``data/`` (the files to zip, named ``STEM_part.ext``) and
``markers/`` (one ``STEM.yml`` per stem, as the old tool's users have), plus a
``manifest.json`` so that a second run reuses the files instead of writing them again.

The content is generated from fixed seeds with Python's ``random`` (Mersenne Twister, stable
across Python versions), so the same corpus has the same bytes on every machine:

- *text*: CSV rows of a time counter and five slowly varying float columns with a few noisy
  trailing digits; zlib level 6 keeps about 0.245 of it, as with the reference corpus of
  issue 8;
- *binary*: little-endian float64 values whose sign/exponent byte is skewed as in normally
  distributed data; deflate keeps about 0.97 of it;
- *random*: uniformly random bytes, standing for data that is compressed already (images,
  video, compressed HDF5); deflate cannot shrink it.

Run ``python -m benchmarks.corpora --help`` to write corpora without timing anything.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CORPORA",
    "Corpus",
    "CorpusSpec",
    "binary_bytes",
    "build",
    "random_bytes",
    "text_bytes",
]

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
VERSION = 1  # bump when the content changes, so that cached corpora are rewritten
PIECE = 16 * MiB  # files are written in pieces of this size: memory stays bounded

# One CSV row: c = counter digit, s = sign (long runs), a = leading digit (runs of ~100 rows),
# b = next digit (runs of ~8 rows), # = noisy digit. Tuned so that zlib -6 keeps ~0.245.
_ROW = "ccccccc.cc,sa.ab###E-03,sa.ab##E+01,sa.ab##E+00,sa.ab###E+02\n"
_ROW_BYTES = (_ROW.replace("c", "0").replace("s", " ").replace("a", "0").replace("b", "0")
              .replace("#", "0").encode())
_DIGITS = bytes(48 + b % 10 for b in range(256))
# float64 top byte (sign + high exponent bits) of values around 1: mostly 0x3f/0xbf
_TOP_BYTE = bytes((0x3F, 0xBF)[b & 1] if b < 240 else (0x40, 0xC0)[b & 1] for b in range(256))


def _runs(rng: random.Random, rows: int, mean: float, alphabet: bytes) -> bytes:
    """``rows`` bytes from ``alphabet`` in runs of exponentially distributed length."""
    out, n = [], 0
    while n < rows:
        r = 1 + int(rng.expovariate(1 / mean))
        out.append(alphabet[rng.randrange(len(alphabet))].to_bytes(1, "little") * r)
        n += r
    return b"".join(out)[:rows]


def _counter_digit(row0: int, rows: int, k: int) -> bytes:
    """Digit ``k`` (0 = units) of the row numbers ``row0 .. row0 + rows - 1``, as ASCII."""
    per: int = 10**k
    if per <= rows:
        cycle = b"".join(bytes([48 + d]) * per for d in range(10))
        start = row0 % len(cycle)
        reps = (start + rows) // len(cycle) + 1
        return (cycle * reps)[start:start + rows]
    d0, left = (row0 // per) % 10, per - row0 % per  # the digit, and rows until it changes
    if left >= rows:
        return bytes([48 + d0]) * rows
    return bytes([48 + d0]) * left + bytes([48 + (d0 + 1) % 10]) * (rows - left)


def text_bytes(n: int, seed: int, row0: int = 0) -> bytes:
    """``n`` bytes of CSV-like text; rows are numbered from ``row0``."""
    rng = random.Random(seed)
    width = len(_ROW_BYTES)
    rows = -(-n // width)
    buf = bytearray(_ROW_BYTES * rows)
    counter = [p for p, ch in enumerate(_ROW) if ch == "c"]
    for p, ch in enumerate(_ROW):
        if ch == "#":
            buf[p::width] = rng.randbytes(rows).translate(_DIGITS)
        elif ch == "s":
            buf[p::width] = _runs(rng, rows, 300, b" -")
        elif ch == "a":
            buf[p::width] = _runs(rng, rows, 100, b"0123456789")
        elif ch == "b":
            buf[p::width] = _runs(rng, rows, 8, b"0123456789")
    for k, p in enumerate(reversed(counter)):
        buf[p::width] = _counter_digit(row0, rows, k)
    del buf[n:]
    return bytes(buf)


def binary_bytes(n: int, seed: int) -> bytes:
    """``n`` bytes of float64-like binary data."""
    rng = random.Random(seed)
    n8 = -(-n // 8) * 8
    buf = bytearray(rng.randbytes(n8))
    buf[7::8] = rng.randbytes(n8 // 8).translate(_TOP_BYTE)
    del buf[n:]
    return bytes(buf)


def random_bytes(n: int, seed: int) -> bytes:
    """``n`` uniformly random bytes (incompressible, like data compressed already)."""
    return random.Random(seed).randbytes(n)


_CONTENT = {"binary": binary_bytes, "random": random_bytes}


def write_file(path: Path, kind: str, size: int, seed: int) -> None:
    """Write ``size`` bytes of ``kind`` (``"text"``, ``"binary"`` or ``"random"``) content to ``path``."""
    width = len(_ROW_BYTES)
    piece = PIECE - PIECE % width  # whole rows per piece, so the counter runs on
    with open(path, "wb") as f:
        done = i = 0
        while done < size:
            n = min(piece, size - done)
            s = seed * 1_000_003 + i
            f.write(text_bytes(n, s, row0=done // width) if kind == "text" else _CONTENT[kind](n, s))
            done += n
            i += 1


@dataclass(frozen=True)
class FileSpec:
    name: str
    kind: str  # "text", "binary" or "random"
    size: int


@dataclass(frozen=True)
class CorpusSpec:
    """What a corpus holds: ``stems`` maps each stem to its files."""

    name: str
    title: str
    stems: tuple[tuple[str, tuple[FileSpec, ...]], ...]
    extensions: tuple[str, ...] = ("csv", "bin")

    @property
    def total_bytes(self) -> int:
        return sum(f.size for _, files in self.stems for f in files)


@dataclass(frozen=True)
class Corpus:
    """A corpus on disk: ``data`` (files to zip), ``markers`` (``STEM.yml``) and the stems."""

    name: str
    title: str
    root: Path
    data: Path
    markers: Path
    extensions: tuple[str, ...]
    stems: tuple[tuple[str, tuple[str, ...]], ...]  # (stem, file names)
    total_bytes: int

    @property
    def file_count(self) -> int:
        return sum(len(files) for _, files in self.stems)

    def paths(self) -> list[Path]:
        """Every data file, stem by stem."""
        return [self.data / n for _, files in self.stems for n in files]


def _mixed(scale: float, n: int = 32, name: str = "mixed256") -> CorpusSpec:
    size = max(4 * KiB, round(2 * MiB * scale))
    stems = tuple(
        (f"run{i:03d}", (FileSpec(f"run{i:03d}_forces.csv", "text", size),
                         FileSpec(f"run{i:03d}_loads.csv", "text", size),
                         FileSpec(f"run{i:03d}_motions.csv", "text", size),
                         FileSpec(f"run{i:03d}_series.bin", "binary", size)))
        for i in range(1, n + 1))
    return CorpusSpec(name, f"{n * 4 * size / MiB:g} MiB: {n} stems x 4 files of "
                      f"{size / MiB:g} MiB (3 CSV-like text + 1 float64 binary)", stems)


def _incompressible(scale: float, n: int = 32) -> CorpusSpec:
    """Like ``mixed256`` plus one random-bytes file per stem: 30% of the bytes do not compress."""
    size = max(4 * KiB, round(2 * MiB * scale))
    noise = round(size * 4 * 0.3 / 0.7)
    stems = tuple(
        (f"run{i:03d}", (FileSpec(f"run{i:03d}_forces.csv", "text", size),
                         FileSpec(f"run{i:03d}_loads.csv", "text", size),
                         FileSpec(f"run{i:03d}_motions.csv", "text", size),
                         FileSpec(f"run{i:03d}_series.bin", "binary", size),
                         FileSpec(f"run{i:03d}_frames.bin", "random", noise)))
        for i in range(1, n + 1))
    spec = CorpusSpec("incompressible", "", stems)
    return CorpusSpec("incompressible", f"{spec.total_bytes / MiB:.0f} MiB: {n} stems x 3 CSV-like text + "
                      f"1 float64 binary of {size / MiB:g} MiB + 1 random file of {noise / MiB:.2f} MiB "
                      "(30% of the bytes incompressible)", stems)


def _small(scale: float) -> CorpusSpec:
    n = max(20, min(5000, round(5000 * scale * 8)))  # quick (1/32): 1,250 stems
    stems = tuple(
        (f"case{i:05d}", tuple(FileSpec(f"case{i:05d}_{p}.csv", "text", 2 * KiB) for p in "abc"))
        for i in range(1, n + 1))
    return CorpusSpec("small5000", f"{n:,} stems x 3 files x 2 KiB", stems, ("csv",))


def _huge(scale: float) -> CorpusSpec:
    size = max(64 * KiB, round(256 * MiB * scale))
    stems = tuple((f"big{i}", (FileSpec(f"big{i}_series.csv", "text", size),)) for i in (1, 2))
    return CorpusSpec("huge", f"2 stems x 1 CSV-like file of {size / MiB:g} MiB", stems, ("csv",))


def _longtail(scale: float) -> CorpusSpec:
    rng = random.Random(8)
    n = 400
    sizes = [max(KiB, round(64 * MiB * scale * (i ** -1.3))) for i in range(1, n + 1)]
    rng.shuffle(sizes)
    stems = []
    for i, total in enumerate(sizes, 1):
        parts = rng.randint(1, 5)
        cuts = sorted(rng.random() for _ in range(parts - 1))
        bounds = [0, *(round(c * total) for c in cuts), total]
        files = []
        for j in range(parts):
            kind = "text" if rng.random() < 0.75 else "binary"
            ext = "csv" if kind == "text" else "bin"
            files.append(FileSpec(f"lt{i:03d}_p{j}.{ext}", kind, max(1, bounds[j + 1] - bounds[j])))
        stems.append((f"lt{i:03d}", tuple(files)))
    spec = CorpusSpec("longtail", "", tuple(stems))
    return CorpusSpec("longtail", f"long tail: {n} stems of 1-5 files, {spec.total_bytes / MiB:.0f} MiB, "
                      f"largest {max(sizes) / MiB:.1f} MiB, median {sorted(sizes)[n // 2] / KiB:.0f} KiB",
                      spec.stems)


def _rss(scale: float) -> CorpusSpec:
    size = max(MiB, round(2 * GiB * scale))
    return CorpusSpec("rss", f"one stem, one float64 binary file of {size / MiB:g} MiB",
                      (("giant", (FileSpec("giant_series.bin", "binary", size),)),), ("bin",))


CORPORA: dict[str, Callable[[float], CorpusSpec]] = {
    "mixed256": _mixed,
    "incompressible": _incompressible,
    "small5000": _small,
    "huge": _huge,
    "longtail": _longtail,
    "rss": _rss,
    "scale512": lambda scale: _mixed(scale, 64, "scale512"),  # for scaling.py
}


def _intact(data: Path, spec: CorpusSpec) -> bool:
    """Every file of ``spec`` is in ``data`` with its size, and nothing else is."""
    try:
        sizes = {e.name: e.stat().st_size for e in data.iterdir()}
    except OSError:
        return False
    return sizes == {f.name: f.size for _, files in spec.stems for f in files}


def build(name: str, root: Path, scale: float = 1.0, *,
          log: Callable[[str], None] = lambda s: None) -> Corpus:
    """Write corpus ``name`` at ``scale`` under ``root/name`` (reused when already there)."""
    spec = CORPORA[name](scale)
    folder = Path(root) / name
    data, markers = folder / "data", folder / "markers"
    manifest = folder / "manifest.json"
    want = {"version": VERSION, "name": name, "scale": scale, "total_bytes": spec.total_bytes,
            "files": sum(len(f) for _, f in spec.stems)}
    corpus = Corpus(name, spec.title, folder, data, markers, spec.extensions,
                    tuple((stem, tuple(f.name for f in files)) for stem, files in spec.stems),
                    spec.total_bytes)
    try:
        have = json.loads(manifest.read_text())
    except (OSError, ValueError):
        have = None
    if have == want and _intact(data, spec):
        return corpus
    log(f"writing corpus {name} ({spec.total_bytes / MiB:.1f} MiB) in {folder}")
    if folder.exists():
        shutil.rmtree(folder)
    data.mkdir(parents=True)
    markers.mkdir()
    for k, (stem, files) in enumerate(spec.stems):
        (markers / f"{stem}.yml").write_text(f"case: {stem}\n")
        for j, f in enumerate(files):
            write_file(data / f.name, f.kind, f.size, seed=k * 16 + j + 1)
    manifest.write_text(json.dumps(want, indent=1))
    return corpus


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.corpora", description=__doc__.split("\n")[0])
    p.add_argument("root", type=Path, help="folder to write the corpora in")
    p.add_argument("--only", action="append", choices=sorted(CORPORA), help="corpus to write (repeat)")
    p.add_argument("--scale", type=float, default=1.0, help="size factor (1 = full size)")
    args = p.parse_args(argv)
    for name in args.only or ["mixed256", "small5000", "huge", "longtail"]:
        c = build(name, args.root, args.scale, log=print)
        print(f"{name}: {c.title}; {len(c.stems)} stems, {c.file_count} files, "
              f"{c.total_bytes / MiB:.1f} MiB in {c.data}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
