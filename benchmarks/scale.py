"""The scale case: how time and memory grow with the number of files (issue 17).

Two shapes of tiny files, at 25k, 50k, 100k and 200k files each (own folders):

- ``one-stem``: one marker stem, every file a member of its one archive;
- ``pairs``: own stems of two files each (``pNNNNNNN.csv`` + ``pNNNNNNN.txt``): 100,000 stems
  at 200,000 files.

Each measurement is a fresh process (peak RSS from ``wait4``, the largest process of its tree):

- ``scandir``: ``os.scandir`` + ``DirEntry.stat()`` of the folder, the bare system calls;
- ``plan``: ``zipkit.plan(...)`` alone (seconds inside the process, after ``import zipkit``);
- ``run``: ``zipkit.zip_by_extension(...)`` with its defaults (the process's wall seconds);
- ``zip-r``: Info-ZIP ``zip -r -q`` of the folder into one archive (one-stem shape only).

Printed per size: seconds, microseconds per file, growth ÷ the previous size (2.00 is linear for
a doubling) and peak RSS; plus the marginal memory of a planned file (the plan's RSS growth
between the two largest sizes ÷ the files added)::

    python -m benchmarks.scale                            # 25k..200k, median of 3
    python -m benchmarks.scale --sizes 2000,4000 --repeat 1 --json s.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from .common import (
    REPO,
    Json,
    _fmt,
    _target,
    _target_lines,
    aligned,
    launch,
    pressure,
    purge_later,
    set_aside,
)

__all__ = ["SHAPES", "SIZES", "bench_scale", "build_folder", "scale_text"]

SIZES = (25_000, 50_000, 100_000, 200_000)
SHAPES = ("one-stem", "pairs")
KINDS = ("scandir", "plan", "run", "zip-r")
VERSION = 1
MiB = 1 << 20

# Run in a fresh process: the measurement, its own seconds and what it found, as JSON in argv[2].
_CHILD = r"""
import json, os, sys, time
kind, res, data, out, markers = sys.argv[1:6]
kw = {"stems_from": markers, "stem_extensions": ["yml"]} if markers else {}
if kind == "scandir":
    t0 = time.perf_counter()
    n = 0
    with os.scandir(data) as it:
        for e in it:
            e.stat()
            n += 1
    info = {"seconds": time.perf_counter() - t0, "files": n}
else:
    import zipkit
    t0 = time.perf_counter()
    if kind == "plan":
        p = zipkit.plan(data, ["csv", "txt"], out, **kw)
        info = {"stems": len(p.stems), "files": sum(len(s.files) for s in p.stems)}
    else:
        r = zipkit.zip_by_extension(data, ["csv", "txt"], out, progress=False, **kw)
        info = {"stems": len(r.ok), "failed": len(r.failed)}
    info["seconds"] = time.perf_counter() - t0
with open(res, "w") as f:
    json.dump(info, f)
"""


def _names(shape: str, n: int) -> list[str]:
    if shape == "one-stem":
        return [f"big_{i:07d}.csv" for i in range(n)]
    return [f"p{i // 2:07d}.{'csv' if i % 2 == 0 else 'txt'}" for i in range(n)]


def build_folder(root: Path, shape: str, n: int, log: Callable[[str], None] = lambda s: None) -> Path:
    """``root/scale-SHAPE-N`` with ``data/`` (``n`` tiny files) and, for one-stem, ``markers/``."""
    folder = root / f"scale-{shape}-{n}"
    manifest = folder / "manifest.json"
    want = {"version": VERSION, "shape": shape, "files": n}
    try:
        if json.loads(manifest.read_text()) == want and len(os.listdir(folder / "data")) == n:
            return folder
    except (OSError, ValueError):
        pass
    log(f"writing {n:,} tiny files ({shape}) in {folder}")
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "data").mkdir(parents=True)
    if shape == "one-stem":
        (folder / "markers").mkdir()
        (folder / "markers" / "big.yml").write_text("case: big\n")
    for name in _names(shape, n):
        fd = os.open(folder / "data" / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, f"{name},1.0,2.0,3.0\n".encode() * 3)
        os.close(fd)
    manifest.write_text(json.dumps(want))
    return folder


def _measure(kind: str, folder: Path, out: Path, scratch: Path) -> Json | str:
    """The measurement's seconds, peak RSS and what it found; or why it failed."""
    data, markers = folder / "data", folder / "markers"
    res, log = scratch / "child.json", scratch / "child.log"
    res.unlink(missing_ok=True)
    os.sync()
    if kind == "zip-r":
        argv, cwd = ["zip", "-r", "-q", str(out / "big.zip"), "."], data
    else:
        argv = [sys.executable, "-c", _CHILD, kind, str(res), str(data), str(out),
                str(markers) if markers.exists() else ""]
        cwd = REPO
    with open(log, "wb") as err:
        t = launch(argv, cwd=cwd, stats=scratch / "launch.stats", stderr=err)
    if t.rc != 0:
        return f"exit code {t.rc}: {log.read_text(errors='replace').strip()[-400:]}"
    info = json.loads(res.read_text()) if res.exists() else {}
    return {"wall_s": t.wall, "seconds": info.pop("seconds", t.wall), "peak_rss_bytes": t.maxrss, **info}


def _check(kind: str, shape: str, n: int, m: Json, out: Path) -> str | None:
    """Why the measurement's result is wrong (files, stems or archives miscounted), or None."""
    stems = 1 if shape == "one-stem" else (n + 1) // 2
    bad = (kind == "scandir" and m["files"] != n or kind == "plan" and (m["stems"], m["files"]) != (stems, n)
           or kind == "run" and (m["stems"], m["failed"]) != (stems, 0)
           or kind in ("run", "zip-r") and len(os.listdir(out)) != stems)
    return f"wrong result: {m}, {len(os.listdir(out))} outputs" if bad else None


def bench_scale(root: Path, sizes: tuple[int, ...] = SIZES, *, repeat: int = 3,
                say: Callable[[str], None] = lambda s: None) -> Json:
    """Time every kind on every shape and size, ``repeat`` rounds; medians, growth and targets."""
    folders = {(s, n): build_folder(root, s, n, say) for s in SHAPES for n in sizes}
    zip_ok = shutil.which("zip") is not None
    runs: dict[tuple[str, int, str], list[Json]] = {}
    errors: dict[str, str] = {}  # "shape/kind/N" -> why; that measurement is not repeated
    scratch = Path(tempfile.mkdtemp(prefix=".scale-", dir=root))
    psi0, count = pressure().get("cpu"), itertools.count()
    try:
        for rep in range(repeat):
            for (shape, n), folder in folders.items():
                for kind in KINDS:
                    key = f"{shape}/{kind}/{n}"
                    if kind == "zip-r" and (shape != "one-stem" or not zip_ok) or key in errors:
                        continue
                    # each run into a new folder; earlier ones are deleted only at the end (see run.py)
                    out = scratch / f"out-{next(count)}"
                    out.mkdir()
                    m = _measure(kind, folder, out, scratch)
                    why = m if isinstance(m, str) else _check(kind, shape, n, m, out)
                    if isinstance(m, str) or why is not None:
                        errors[key] = str(why)
                        say(f"  scale {key}: FAILED ({why})")
                        continue
                    runs.setdefault((shape, n, kind), []).append(m)
                    say(f"  scale {rep + 1}/{repeat} {shape:8s} {n:>8,} {kind:8s} {m['seconds']:8.3f} s "
                        f"{m['peak_rss_bytes'] / MiB:6.0f} MiB")
    finally:
        set_aside(scratch)  # deleted when the benchmark ends (see common.set_aside)
    rows: dict[str, dict[str, Json]] = {}
    for (shape, n, kind), ms in runs.items():
        secs = [m["seconds"] if kind in ("plan", "scandir") else m["wall_s"] for m in ms]
        rows.setdefault(f"{shape}/{kind}", {})[str(n)] = {
            "median_s": statistics.median(secs), "min_s": min(secs), "runs": secs,
            "peak_rss_bytes": max(m["peak_rss_bytes"] for m in ms),
            "us_per_file": statistics.median(secs) / n * 1e6}
    for sizes_ in rows.values():
        ns = sorted(sizes_, key=int)
        for a, b in zip(ns, ns[1:]):
            sizes_[b]["growth"] = sizes_[b]["median_s"] / sizes_[a]["median_s"]
            sizes_[b]["size_growth"] = int(b) / int(a)
    res = {"sizes": list(sizes), "repeat": repeat, "zip": zip_ok, "rows": rows, "errors": errors,
           "cpu_pressure_before": psi0, "cpu_pressure_after": pressure().get("cpu")}
    res["targets"] = scale_targets(res)
    return res


def _marginal_bytes(row: Json) -> float | None:
    ns = sorted(row, key=int)
    if len(ns) < 2:
        return None
    a, b = ns[-2], ns[-1]
    return float(row[b]["peak_rss_bytes"] - row[a]["peak_rss_bytes"]) / (int(b) - int(a))


def scale_targets(res: Json) -> list[Json]:
    """Issue 17's scale targets, at the largest size measured."""
    rows, top = res["rows"], str(max(res["sizes"]))
    out = []

    def at(key: str, field: str = "median_s") -> float | None:
        v = rows.get(key, {}).get(top, {}).get(field)
        return None if v is None else float(v)

    for shape in SHAPES:
        plan, scan = at(f"{shape}/plan"), at(f"{shape}/scandir")
        out.append(_target(f"scale {shape}: plan of {int(top):,} files / scandir+stat (x its time)",
                           plan / scan if plan and scan else None, "<=", 2))
        mem = _marginal_bytes(rows.get(f"{shape}/plan", {}))
        out.append(_target(f"scale {shape}: memory per planned file, bytes (RSS growth / files added)",
                           mem, "<=", 500))
        for kind, what in (("plan", "plan"), ("run", "full run")):
            growth = [v["growth"] / v["size_growth"] * 2 for v in rows.get(f"{shape}/{kind}", {}).values()
                      if "growth" in v]
            out.append(_target(f"scale {shape}: {what}, worst growth per doubling of files (2 = linear)",
                               max(growth) if growth else None, "<=", 2.2))
    run, zipr = at("one-stem/run"), at("one-stem/zip-r")
    out.append(_target(f"scale one-stem: {int(top):,} members, zipkit / zip -r (x its time)",
                       run / zipr if run and zipr else None, "<=", 1.0))
    rss = at("one-stem/run", "peak_rss_bytes")
    out.append(_target(f"scale one-stem: {int(top):,} members, zipkit peak RSS, MiB",
                       rss / MiB if rss else None, "<=", 150))
    return out


def scale_text(res: Json) -> str:
    """The scale table: one line per shape, measurement and size."""
    head = ["shape", "measurement", "files", "median s", "min s", "us/file", "growth", "peak MiB"]
    body = []
    for key, row in res["rows"].items():
        shape, kind = key.split("/")
        for n in sorted(row, key=int):
            v = row[n]
            body.append([shape, kind, f"{int(n):,}", f"{v['median_s']:.3f}", f"{v['min_s']:.3f}",
                         f"{v['us_per_file']:.1f}", _fmt(v.get("growth"), ".2f", "x"),
                         f"{v['peak_rss_bytes'] / MiB:.0f}"])
    lines = [f"== scale: tiny files, medians of {res['repeat']}; growth = time / time at the previous size "
             "(2.00x is linear for a doubling); plan and scandir: seconds inside the process, run and zip-r: "
             f"its wall seconds (CPU pressure {_fmt(res['cpu_pressure_before'], '.0f')}% -> "
             f"{_fmt(res['cpu_pressure_after'], '.0f')}%)", *aligned(head, body, left=2)]
    if not res["zip"]:
        lines.append("  skipped zip-r: zip not found on PATH")
    lines += [f"  {key}: error: {why}" for key, why in res.get("errors", {}).items()]
    return "\n".join(lines + _target_lines(res["targets"]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default=",".join(map(str, SIZES)), help="file counts (default 25k..200k)")
    p.add_argument("--repeat", type=int, default=3, help="rounds, the median is reported (default 3)")
    p.add_argument("--corpora", type=Path, help="folder for the file trees, kept and reused (default: temp)")
    p.add_argument("--json", type=Path, default=Path("zipkit-scale.json"), help="where to write the results")
    args = p.parse_args(argv)
    root = args.corpora or Path(tempfile.mkdtemp(prefix="zipkit-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        res = bench_scale(root, tuple(int(n) for n in args.sizes.split(",")), repeat=args.repeat,
                          say=lambda s: print(s, file=sys.stderr, flush=True))
    finally:
        purge_later(*([] if args.corpora else [root]), say=lambda s: print(s, file=sys.stderr))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=1))
    print(scale_text(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
