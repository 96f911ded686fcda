"""Same-run comparison of two zipkit checkouts on first runs (empty output folders).

Round-robin (run k of each tree, order alternating), medians of wall seconds and of CPU seconds
(user + sys of the zipkit process and its workers, the steadier figure on a busy machine)::

    python -m benchmarks.corpora /tmp/bench --only small5000 --only mixed256 --scale 0.25
    python -m benchmarks.compare_trees /tmp/bench /work/main . -k 11

Used to show that a change (here: merging into existing archives) does not slow first runs.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES = {"small5000": ["--ext", "csv"], "mixed256": ["--ext", "csv", "--ext", "bin"]}


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path, help="folder holding the corpora (benchmarks.corpora)")
    ap.add_argument("trees", nargs=2, help="two checkouts: baseline, candidate")
    ap.add_argument("-k", type=int, default=7, help="runs per tree and corpus")
    args = ap.parse_args(argv)
    trees = {Path(t).resolve().name or t: str(Path(t).resolve()) for t in args.trees}
    names = list(trees)
    wall: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    for k in range(args.k):
        for case, exts in CASES.items():
            if not (args.root / case).is_dir():
                continue
            for name in (names if k % 2 == 0 else names[::-1]):
                out = args.root / f"out-{name}"
                shutil.rmtree(out, ignore_errors=True)
                os.sync()
                env = dict(os.environ, PYTHONPATH=trees[name])
                c0, t0 = _children_cpu(), time.perf_counter()
                subprocess.run([sys.executable, "-m", "zipkit", str(args.root / case / "data"), *exts,
                                "-o", str(out), "-q", "--stems-from", str(args.root / case / "markers"),
                                "--stem-ext", "yml", "-j", "2"], env=env, check=True, capture_output=True)
                wall.setdefault((case, name), []).append(time.perf_counter() - t0)
                cpu.setdefault((case, name), []).append(_children_cpu() - c0)
    base, cand = names
    for case in CASES:
        for label, d in (("wall", wall), ("cpu", cpu)):
            if (case, base) not in d:
                continue
            b, c = statistics.median(d[(case, base)]), statistics.median(d[(case, cand)])
            print(f"{case:10} {label:4} median: {base} {b:.3f} s, {cand} {c:.3f} s, ratio {c / b:.3f}")


if __name__ == "__main__":
    main()
