"""A demo data set like simulation output, and the main job run on it.

``python -m zipkit.demo [FOLDER]`` writes marker files (``models/*.yml``) and several CSV
time series per case (``output/csv``), zips them by case into ``output/zip`` and prints the
report.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from pathlib import Path

__all__ = ["CASES", "MEMBERS", "make_demo", "main"]

CASES = [f"FST2{a}_FST1{a}_{wl}_{deg:03d}deg" for a, wl in (("F", "LWL"), ("L", "HWL"))
         for deg in (0, 45, 90, 345)]
MEMBERS = ["Jacket1", "Jacket2", "Strut1", "Mooring1"]


def make_demo(folder: str | Path, *, rows: int = 2000, seed: int = 7) -> Path:
    """Write the demo data set under ``folder`` (deterministic for a given ``seed``); return it."""
    root = Path(folder)
    models, csv = root / "models", root / "output" / "csv"
    models.mkdir(parents=True, exist_ok=True)
    csv.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for case in CASES:
        heading = int(case[-6:-3])
        (models / f"{case}.yml").write_text(
            f"case: {case}\nheading_deg: {heading}\nduration_s: {rows / 10}\n", encoding="utf-8")
        for member in MEMBERS:
            amp, period = rng.uniform(0.5, 3.0), rng.uniform(6.0, 14.0)
            lines = ["time_s,tension_kN,bending_kNm"]
            for i in range(rows):
                t = i / 10
                wave = amp * math.sin(2 * math.pi * t / period + math.radians(heading))
                lines.append(f"{t:.1f},{1000 + 150 * wave + rng.gauss(0, 5):.3f},"
                             f"{40 * wave + rng.gauss(0, 1):.3f}")
            (csv / f"{case}_{member}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (csv / "campaign_summary.csv").write_text("case,max_tension_kN\n", encoding="utf-8")
    return root


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m zipkit.demo",
        description="Write a small data set like simulation output (8 load cases: marker files in "
        "FOLDER/models, 4 CSV time series per case in FOLDER/output/csv), zip it by case into "
        "FOLDER/output/zip and print the report.")
    p.add_argument("folder", nargs="?", default="zipkit-demo",
                   help="where to write the demo (default: ./zipkit-demo)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Make the demo in FOLDER (default ``./zipkit-demo``), zip it by case, print the report."""
    import logging

    from . import zip_by_extension

    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="zipkit: %(message)s")
    root = make_demo(args.folder).resolve()
    csv, models, out = root / "output" / "csv", root / "models", root / "output" / "zip"
    print(f"demo data in {root}: {len(CASES)} cases x {len(MEMBERS)} CSV files")
    report = zip_by_extension(csv, ["csv"], out, stems_from=models, stem_extensions=["yml"])
    print(report)
    print(f"\narchives written to {out}\n"
          "try next:\n"
          f"  zipkit {csv} --ext csv -o {out} --stems-from {models} --stem-ext yml --dry-run\n"
          f"  unzip -l {out / (CASES[0] + '.zip')}\n"
          "  in Jupyter (pip install 'zipkit[notebook]'): notebooks/01_quickstart.ipynb, and the "
          "form in notebooks/02_form.ipynb")
    return 0 if report.success else 1


if __name__ == "__main__":
    sys.exit(main())
