"""Time zipkit against the tools a user would pick instead, on deterministic corpora.

One command generates the corpora (see :mod:`benchmarks.corpora`), runs every method as a
whole process, median of K runs with a warm page cache, each into a new empty folder (synced
before it starts), prints one table per corpus and writes everything to JSON::

    python -m benchmarks.run                      # full size, K=5 (tens of minutes on 2 cores)
    python -m benchmarks.run --quick              # scaled down, K=3: a smoke run
    python -m benchmarks.run --only mixed256 --only startup
    python -m benchmarks.run --only rss           # peak RSS while zipping a 2 GiB file (opt-in)

Methods run round-robin (run 1 of every method, then run 2 …) so that load from other
processes on a shared machine spreads over all of them; ratios measured in the same run are
more trustworthy than absolute seconds. Baselines whose programs are missing are skipped with
a note.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .common import (
    REPO,
    Json,
    _fmt,
    _seven_zip,
    _target,
    _target_lines,
    _versions,
    _warm,
    aligned,
    available_cpus,
    launch,
    pressure,
    purge_later,
    set_aside,
)
from .corpora import Corpus, MiB, build
from .micro import bench_codecs, bench_startup, codecs_text, startup_text

__all__ = ["METHODS", "main"]


QUICK_SCALE = 1 / 32
CASES = ("startup", "codecs", "mixed256", "incompressible", "small5000", "huge", "longtail", "rss")
DEFAULT_CASES = CASES[:-1]  # rss writes 2 GiB: opt-in


# -- methods -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ctx:
    """What a method needs to build its command for one corpus."""

    corpus: Corpus
    out: Path
    workers: int
    stem_list: Path  # one line per stem: "OUT/STEM.zip name1 name2 …" (for xargs -L1)
    file_list: Path  # one data file name per line
    archive_list: Path  # one archive path per line


@dataclass(frozen=True)
class Cmd:
    argv: list[str]
    cwd: Path
    stdin: Path | None = None
    discard_stdout: bool = False  # the command's output is data (cat), not a log


@dataclass(frozen=True)
class Method:
    key: str
    label: Callable[[int], str]
    make: Callable[[Ctx], Cmd]
    needs: tuple[str, ...] = ()
    archives: bool = True  # writes one archive per stem


def _py(module: str, ctx: Ctx, *extra: str) -> Cmd:
    c = ctx.corpus
    exts = [a for e in c.extensions for a in ("--ext", e)]
    return Cmd([sys.executable, "-m", module, str(c.data), str(c.markers), str(ctx.out), *exts, *extra], REPO)


def _zipkit(ctx: Ctx, *extra: str) -> Cmd:
    c = ctx.corpus
    exts = [a for e in c.extensions for a in ("-e", e)]
    return Cmd([sys.executable, "-m", "zipkit", str(c.data), *exts, "-o", str(ctx.out), "--stems-from",
                str(c.markers), "--stem-ext", "yml", "--no-progress", "-q", *extra], REPO)


_ZLIB_API = (
    "import sys, zipkit\n"
    "r = zipkit.zip_by_extension(sys.argv[1], sys.argv[2].split(','), sys.argv[3], stems_from=sys.argv[4],"
    " stem_extensions=['yml'], deflate_backend='zlib', progress=False)\n"
    "sys.exit(1 if r.failed else 0)\n"
)


def _backend(level: int | None) -> str:
    try:
        from zipkit import ArchiveOptions
        from zipkit._compress import compressor_name

        return compressor_name(ArchiveOptions(level=level))
    except Exception:  # noqa: BLE001 - a label only
        return "?"


def _floor(ctx: Ctx, workers: int) -> Cmd:
    """:mod:`benchmarks.floor` at zipkit's default ISA-L level (3 if it cannot be read)."""
    label = _backend(None)
    level = label.split("-")[1] if label.startswith("isal-") else "3"
    return Cmd([sys.executable, "-m", "benchmarks.floor", str(ctx.corpus.data), "--list", str(ctx.file_list),
                "--workers", str(workers), "--isal-level", level], REPO)


METHODS: dict[str, Method] = {m.key: m for m in [
    Method("cat", lambda n: "cat of all inputs (I/O floor)",
           lambda x: Cmd(["xargs", "cat"], x.corpus.data, x.file_list, discard_stdout=True),
           ("xargs", "cat"), archives=False),
    Method("touch", lambda n: "touch one empty STEM.zip per stem (file-creation floor)",
           lambda x: Cmd(["xargs", "touch"], x.out, x.archive_list), ("xargs", "touch"), archives=False),
    Method("zip-seq", lambda n: "Info-ZIP zip -6 per stem, sequential",
           lambda x: Cmd(["xargs", "-L", "1", "zip", "-q", "-j", "-6"], x.corpus.data, x.stem_list),
           ("xargs", "zip")),
    Method("zip-par", lambda n: f"Info-ZIP zip -6 per stem, xargs -P{n}",
           lambda x: Cmd(["xargs", "-P", str(x.workers), "-L", "1", "zip", "-q", "-j", "-6"],
                         x.corpus.data, x.stem_list), ("xargs", "zip")),
    Method("7z-par", lambda n: f"7-Zip -tzip -mx=5 per stem, xargs -P{n}",
           lambda x: Cmd(["xargs", "-P", str(x.workers), "-L", "1", _seven_zip() or "7zz", "a", "-tzip",
                          "-mx=5", "-bd", "-bso0", "-bsp0"], x.corpus.data, x.stem_list),
           ("xargs", "7zz|7z|7za")),
    Method("old-seq", lambda n: "old tool (listdir/stem, substring, stored), sequential",
           lambda x: _py("benchmarks.old_tool", x)),
    Method("old-par", lambda n: f"old tool, ProcessPoolExecutor({n}), future per stem",
           lambda x: _py("benchmarks.old_tool", x, "--workers", str(x.workers))),
    Method("zipfile-par", lambda n: f"zipfile deflate-6, ProcessPoolExecutor({n}), future/stem",
           lambda x: _py("benchmarks.plain_zipfile", x, "--workers", str(x.workers))),
    Method("zipfile-isal-par", lambda n: f"zipfile + ISA-L level 2, ProcessPoolExecutor({n})",
           lambda x: _py("benchmarks.plain_zipfile", x, "--workers", str(x.workers), "--backend", "isal")),
    Method("zipkit", lambda n: f"zipkit, defaults [{_backend(None)}]", lambda x: _zipkit(x)),
    Method("zipkit-j1", lambda n: f"zipkit -j 1 [{_backend(None)}]", lambda x: _zipkit(x, "-j", "1")),
    # -l 4 (ISA-L 2): the faster, slightly larger setting; -l 7 would repeat the defaults (ISA-L 3)
    Method("zipkit-l4", lambda n: f"zipkit -l 4 [{_backend(4)}]", lambda x: _zipkit(x, "-l", "4")),
    # fastzip (PyPI, pigz-style: 1 MiB blocks deflated by zlib-6 in threads), once per stem as a user
    # would drive it: one process per stem, N threads each
    Method("fastzip", lambda n: f"fastzip per stem, --threads {n} [zlib-6]",
           lambda x: Cmd(["xargs", "-L", "1", sys.executable, "-m", "fastzip", "-c", "--threads",
                          str(x.workers), "-o"], x.corpus.data, x.stem_list), ("xargs", "py:fastzip")),
    Method("floor", lambda n: f"compute floor: read + {_backend(None)} + CRC, {n} processes, no output",
           lambda x: _floor(x, x.workers), ("py:isal",), archives=False),
    Method("floor-j1", lambda n: f"compute floor, 1 process [{_backend(None)}]",
           lambda x: _floor(x, 1), ("py:isal",), archives=False),
    Method("zipkit-zlib", lambda n: "zipkit, deflate_backend='zlib' [zlib-6]",
           lambda x: Cmd([sys.executable, "-c", _ZLIB_API, str(x.corpus.data), ",".join(x.corpus.extensions),
                          str(x.out), str(x.corpus.markers)], REPO)),
]}
RSS_METHODS = ("zipkit", "zipfile-isal-par")


def reference_methods(repo: Path) -> list[Method]:
    """``zipkit-ref`` and ``zipkit-ref-zlib``: the zipkit of another checkout (run by its
    ``.venv``), e.g. main before a change, timed like ``zipkit`` and ``zipkit-zlib`` in the
    same rounds."""
    python = str(repo / ".venv" / "bin" / "python")

    def like(own: Callable[[Ctx], Cmd]) -> Callable[[Ctx], Cmd]:
        # run from the checkout's own folder: -m zipkit / -c import its code, not this one's
        return lambda x: Cmd([python, *own(x).argv[1:]], repo)

    return [Method("zipkit-ref", lambda n: f"zipkit of {repo}, defaults", like(METHODS["zipkit"].make),
                   (python,)),
            Method("zipkit-ref-zlib", lambda n: f"zipkit of {repo}, deflate_backend='zlib'",
                   like(METHODS["zipkit-zlib"].make), (python,))]


def _missing(m: Method) -> str | None:
    for need in m.needs:
        if need.startswith("py:"):
            if importlib.util.find_spec(need[3:]) is None:
                return f"Python package {need[3:]} not installed (pip install -e '.[bench]')"
            continue
        if not any(shutil.which(alt) for alt in need.split("|")):
            return f"{need.replace('|', ' / ')} not found on PATH"
    return None


# -- one timed run -----------------------------------------------------------------------------
@dataclass
class Outcome:
    wall: float
    cpu: float
    maxrss: int
    rc: int
    output_bytes: int
    archives: int
    log: str = ""


def _run_once(cmd: Cmd, out: Path, scratch: Path) -> Outcome:
    # Each run gets a new empty folder; earlier runs' output is set aside, not deleted, until the
    # benchmark ends (common.set_aside): thousands of files deleted just before a run make ext4
    # (without a journal, as here) skip the freed inodes when it allocates new ones, which charges
    # every tool ~0.1-0.3 ms per file it creates, a cost of the benchmark rather than of any tool.
    if out.exists():
        kept = scratch / "kept"
        kept.mkdir(exist_ok=True)
        out.rename(kept / f"{out.name}-{len(os.listdir(kept))}")
    out.mkdir(parents=True)
    os.sync()  # earlier runs' writeback must not land in this run's time
    log, stats = scratch / "last.log", scratch / "last.stats"
    with open(cmd.stdin or os.devnull, "rb") as stdin, open(log, "wb") as so:
        ran = launch(cmd.argv, cwd=cmd.cwd, stats=stats, stdin=stdin,
                     stdout=subprocess.DEVNULL if cmd.discard_stdout else so, stderr=so)
    sizes = [e.stat().st_size for e in os.scandir(out) if e.name.endswith(".zip")]
    return Outcome(ran.wall, ran.cpu, ran.maxrss, ran.rc, sum(sizes), len(sizes),
                   log.read_text(errors="replace")[-2000:] if ran.rc else "")


def _check(corpus: Corpus, out: Path, o: Outcome) -> str | None:
    """Why the archives in ``out`` are wrong, or None: one per stem, right names, CRCs good."""
    if o.archives != len(corpus.stems):
        return f"{o.archives} archives for {len(corpus.stems)} stems"
    by_size = sorted(corpus.stems, key=lambda s: -sum((corpus.data / n).stat().st_size for n in s[1]))
    for stem, names in {corpus.stems[0], corpus.stems[-1], by_size[0]}:
        try:
            with zipfile.ZipFile(out / f"{stem}.zip") as zf:
                if sorted(zf.namelist()) != sorted(names):
                    return f"{stem}.zip holds {sorted(zf.namelist())}, expected {sorted(names)}"
                bad = zf.testzip()
                if bad:
                    return f"{stem}.zip: bad CRC in {bad}"
        except (OSError, zipfile.BadZipFile) as e:
            return f"{stem}.zip unreadable: {e}"
    return None


# -- a corpus ----------------------------------------------------------------------------------
@dataclass
class MethodResult:
    key: str
    label: str
    runs: list[Outcome] = field(default_factory=list)
    error: str | None = None

    @property
    def median(self) -> float:
        return statistics.median(r.wall for r in self.runs)

    def summary(self, total_bytes: int) -> Json:
        if not self.runs:
            return {"label": self.label, "error": self.error}
        walls = [r.wall for r in self.runs]
        return {
            "label": self.label, "error": self.error, "runs": len(walls), "wall_s": walls,
            "median_s": self.median, "min_s": min(walls), "max_s": max(walls),
            "mb_per_s": total_bytes / self.median / 1e6,
            "cpu_s": statistics.median(r.cpu for r in self.runs),
            "peak_rss_bytes": max(r.maxrss for r in self.runs),
            "output_bytes": self.runs[-1].output_bytes, "archives": self.runs[-1].archives,
        }


def _lists(corpus: Corpus, out: Path, scratch: Path) -> tuple[Path, Path, Path]:
    stem_list, file_list, archive_list = (scratch / f"{corpus.name}-{k}.txt"
                                          for k in ("stems", "files", "zips"))
    stem_list.write_text("".join(f"{out / stem}.zip {' '.join(names)}\n" for stem, names in corpus.stems))
    file_list.write_text("".join(f"{n}\n" for _, names in corpus.stems for n in names))
    archive_list.write_text("".join(f"{out / stem}.zip\n" for stem, _ in corpus.stems))
    return stem_list, file_list, archive_list


def bench_corpus(corpus: Corpus, keys: list[str], *, repeat: int, workers: int, scratch: Path,
                 budget: float, say: Callable[[str], None]) -> Json:
    """Time ``keys`` on ``corpus``, round-robin, ``repeat`` runs each.

    A method stops repeating once its runs took more than ``budget`` s after at least 3 runs,
    or more than 3 x ``budget`` s in all (a very slow baseline); the table says how many ran.
    """
    out = scratch / "out"
    ctx = Ctx(corpus, out, workers, *_lists(corpus, out, scratch))
    results = {k: MethodResult(k, METHODS[k].label(workers)) for k in keys}
    skipped = {}
    for k in keys:
        why = _missing(METHODS[k])
        if why:
            skipped[k] = why
            say(f"  skip {k}: {why}")
    live = [k for k in keys if k not in skipped]
    _warm(corpus)
    load0, psi0 = os.getloadavg(), pressure()
    for rep in range(repeat):
        for k in live:
            r = results[k]
            spent = sum(x.wall for x in r.runs)
            if r.error or (len(r.runs) >= 3 and spent > budget) or spent > 3 * budget:
                continue
            o = _run_once(METHODS[k].make(ctx), out, scratch)
            if o.rc != 0:
                r.error = f"exit code {o.rc}: {o.log.strip()[-500:]}"
                say(f"  {k}: FAILED ({r.error})")
                continue
            if rep == 0 and METHODS[k].archives:
                r.error = _check(corpus, out, o)
                if r.error:
                    say(f"  {k}: WRONG OUTPUT ({r.error})")
                    continue
            r.runs.append(o)
            say(f"  run {rep + 1}/{repeat} {k:18s} {o.wall:8.3f} s  {o.output_bytes / 1e6:9.2f} MB")
    set_aside(out)  # deleted when the benchmark ends (see common.set_aside)
    set_aside(scratch / "kept")
    methods = {k: r.summary(corpus.total_bytes) for k, r in results.items() if k not in skipped}
    _ratios(methods)
    return {
        "title": corpus.title, "stems": len(corpus.stems), "files": corpus.file_count,
        "input_bytes": corpus.total_bytes, "workers": workers, "repeat": repeat,
        "loadavg_before": load0, "loadavg_after": os.getloadavg(),
        "cpu_pressure_before": psi0.get("cpu"), "cpu_pressure_after": pressure().get("cpu"),
        "methods": methods, "skipped": skipped, "targets": _targets(corpus.name, methods, workers),
    }


BASELINES = {"zip-par": "zip -P{n}", "old-par": "old -P{n}", "zipkit-j1": "zipkit -j1",
             "zipkit-ref": "zipkit ref", "zipkit-ref-zlib": "ref zlib", "floor": "floor",
             "fastzip": "fastzip"}


def _ratios(methods: Json) -> None:
    """Add speed-ups against the baselines and output size vs ``zip -6``.

    ``speedup_vs``: baseline median wall / method median wall; ``speedup_min_vs``: the same
    with each one's fastest run (closest to an idle machine); ``cpu_ratio_vs``: baseline CPU
    seconds / method CPU seconds (least sensitive to other load, blind to parallelism).
    """
    zip_out = next((methods[k].get("output_bytes") for k in ("zip-seq", "zip-par")
                    if methods.get(k, {}).get("median_s")), None)
    for m in methods.values():
        if not m.get("median_s"):
            continue
        have = [b for b in BASELINES if methods.get(b, {}).get("median_s")]
        m["speedup_vs"] = {b: methods[b]["median_s"] / m["median_s"] for b in have}
        m["speedup_min_vs"] = {b: methods[b]["min_s"] / m["min_s"] for b in have}
        m["cpu_ratio_vs"] = {b: methods[b]["cpu_s"] / m["cpu_s"] for b in have if m["cpu_s"] > 0}
        if zip_out and m.get("output_bytes"):
            m["size_vs_zip6"] = m["output_bytes"] / zip_out


def _targets(name: str, methods: Json, n: int) -> list[Json]:
    zk = methods.get("zipkit", {})
    sp, sm = zk.get("speedup_vs", {}), zk.get("speedup_min_vs", {})

    def faster(what: str, base: str, limit: float) -> Json:
        return _target(what, sp.get(base), ">=", limit, sm.get(base))

    def slower(what: str, base: str, limit: float) -> Json:  # method / baseline
        value, best = sp.get(base), sm.get(base)
        return _target(what, value and 1 / value, "<=", limit, best and 1 / best)

    # issue 8's targets, with issue 17's where it raised them (zip -P N on tiny stems 4 -> 5x,
    # 2 workers vs 1 1.8 -> 1.85x) or added them (the compute floor, the huge stems)
    if name == "mixed256":
        return [faster(f"zipkit vs zip -6 under xargs -P{n} (x faster)", "zip-par", 5),
                _target("zipkit output / zip -6 output", zk.get("size_vs_zip6"), "<=", 1.05),
                faster("zipkit vs zipkit -j 1 (x faster)", "zipkit-j1", 1.85),
                slower(f"zipkit / compute floor of {n} processes (x its time)", "floor", 1.15)]
    if name == "small5000":
        return [faster(f"zipkit vs old tool's parallel version, {n} processes (x faster)", "old-par", 8),
                faster(f"zipkit vs zip -6 under xargs -P{n} (x faster)", "zip-par", 5),
                faster("zipkit vs zipkit -j 1 (x faster; never slower)", "zipkit-j1", 1.0)]
    if name == "huge":
        return [faster("zipkit vs zipkit -j 1 on 2 huge stems (x faster)", "zipkit-j1", 1.85)]
    if name == "rss":
        rss = zk.get("peak_rss_bytes")
        return [_target("zipkit peak RSS of any process, MiB", rss / MiB if rss else None, "<=", 100)]
    return []


# -- printing ----------------------------------------------------------------------------------
def table(name: str, res: Json) -> str:
    """The text table of one corpus."""
    n = res["workers"]
    base = [b for b in BASELINES if res["methods"].get(b, {}).get("median_s")]
    cpu_base = "zip-par" if "zip-par" in base else None
    head = ["method", "runs", "median s", "min s", "MB/s", "cpu s", "peak MiB", "output MB", "size/zip6",
            *(f"x {BASELINES[b].format(n=n)}" for b in base), *(["zip cpu/cpu"] if cpu_base else [])]
    rows = []
    for m in res["methods"].values():
        if not m.get("median_s"):
            rows.append([m["label"], "-", f"error: {m['error']}"[:60]])
            continue
        sp = m.get("speedup_vs", {})
        rows.append([m["label"], str(m["runs"]), _fmt(m["median_s"], ".3f"), _fmt(m["min_s"], ".3f"),
                     _fmt(m["mb_per_s"], ".1f"), _fmt(m["cpu_s"], ".2f"),
                     _fmt(m["peak_rss_bytes"] / MiB, ".0f"),
                     _fmt(m["output_bytes"] / 1e6, ".2f") if m["output_bytes"] else "",
                     _fmt(m.get("size_vs_zip6"), ".3f"), *(_fmt(sp.get(b), ".2f", "x") for b in base),
                     *([_fmt(m.get("cpu_ratio_vs", {}).get(cpu_base), ".2f", "x")] if cpu_base else [])])
    lines = [f"== {name}: {res['title']} ({res['input_bytes'] / 1e6:.1f} MB, {res['stems']} stems, "
             f"{res['files']} files; load average {res['loadavg_before'][0]:.1f} -> "
             f"{res['loadavg_after'][0]:.1f} on {available_cpus()} CPUs{_psi(res)})"]
    lines += aligned(head, rows)
    for s, why in res["skipped"].items():
        lines.append(f"  skipped {s}: {why}")
    lines += _target_lines(res.get("targets", []))
    return "\n".join(lines)


def _psi(res: Json) -> str:
    a, b = res.get("cpu_pressure_before"), res.get("cpu_pressure_after")
    return "" if a is None or b is None else f"; CPU pressure {a:.0f}% -> {b:.0f}%"


def show(result: Json) -> str:
    """The tables of a result (ratios and targets recomputed from the runs)."""
    out = []
    for case, res in result["cases"].items():
        if case == "startup":
            out.append(startup_text(res))
        elif case == "codecs":
            out.append(codecs_text(res))
        else:
            _ratios(res["methods"])
            res["targets"] = _targets(case, res["methods"], res["workers"])
            out.append(table(case, res))
    return "\n\n".join(out)


# -- main --------------------------------------------------------------------------------------
def _names(values: list[str] | None, allowed: tuple[str, ...] | list[str], what: str) -> list[str] | None:
    if not values:
        return None
    names = [n for v in values for n in v.split(",") if n]
    bad = [n for n in names if n not in allowed]
    if bad:
        raise SystemExit(f"unknown {what}: {', '.join(bad)} (choose from {', '.join(allowed)})")
    return names


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0],
                                epilog=f"cases: {', '.join(CASES)}; methods: {', '.join(METHODS)}")
    p.add_argument("--quick", action="store_true", help=f"scale corpora by {QUICK_SCALE:g}, K=3")
    p.add_argument("--scale", type=float, help="corpus size factor (1 = full size; overrides --quick)")
    p.add_argument("--only", action="append", metavar="NAME", help="case to run (repeat or comma-separate)")
    p.add_argument("--methods", action="append", metavar="KEY", help="methods to run (default: all)")
    p.add_argument("--repeat", "-k", type=int, help="runs per method, median reported (default 5; quick 3)")
    p.add_argument("--workers", type=int, default=available_cpus(),
                   help="N for the parallel baselines (default: CPUs available)")
    p.add_argument("--budget", type=float, default=60.0,
                   help="seconds per method and corpus after which it stops repeating: after 3 runs, "
                        "or after any run once 3x this is spent (default 60)")
    p.add_argument("--corpora", type=Path,
                   help="folder for the corpora, kept and reused (default: a temp folder, removed)")
    p.add_argument("--json", type=Path, default=Path("zipkit-bench.json"), help="where to write the results")
    p.add_argument("--show", type=Path, metavar="JSON", help="print the tables of an earlier run and exit")
    p.add_argument("--ref", type=Path, metavar="REPO",
                   help="also time method zipkit-ref: the zipkit of checkout REPO (run by REPO/.venv)")
    args = p.parse_args(argv)
    if args.ref:
        METHODS.update((m.key, m) for m in reference_methods(args.ref.resolve()))
    if args.show:
        print(show(json.loads(args.show.read_text())))
        return 0
    scale = args.scale if args.scale is not None else QUICK_SCALE if args.quick else 1.0
    repeat = args.repeat or (3 if args.quick else 5)
    cases = _names(args.only, CASES, "case") or list(DEFAULT_CASES)
    keys = _names(args.methods, list(METHODS), "method") or list(METHODS)

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    root = args.corpora or Path(tempfile.mkdtemp(prefix="zipkit-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".scratch-", dir=root))
    result: Json = {
        "meta": {"started": datetime.now().isoformat(timespec="seconds"), "scale": scale, "repeat": repeat,
                 "workers": args.workers, "cpus": available_cpus(), "versions": _versions(),
                 "note": "whole processes, warm page cache, each run into a new empty folder after a sync, "
                         "methods round-robin; MB = 1e6 bytes; speedup = baseline median / method median"},
        "cases": {},
    }

    def save() -> None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=str))

    try:
        for case in cases:
            say(f"-- {case}")
            if case == "startup":
                res = bench_startup(max(repeat, 5))
                text = startup_text(res)
            elif case == "codecs":
                res = bench_codecs(scale)
                text = codecs_text(res)
            else:
                corpus = build(case, root, scale, log=say)
                ks = [k for k in keys if k in RSS_METHODS] if case == "rss" else keys
                res = bench_corpus(corpus, ks, repeat=1 if case == "rss" else repeat, workers=args.workers,
                                   scratch=scratch, budget=args.budget, say=say)
                text = table(case, res)
            result["cases"][case] = res
            print(text + "\n", flush=True)
            save()
    finally:
        purge_later(scratch, *([] if args.corpora else [root]), say=say)
    say(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
