"""Startup (``import zipkit``, ``zipkit --help``) and raw deflate speed per codec on one core."""

from __future__ import annotations

import functools
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import REPO, Json, _target, _target_lines
from .corpora import MiB, binary_bytes, text_bytes

__all__ = ["bench_codecs", "bench_startup", "codecs_text", "startup_text"]


def _wall(argv: list[str], repeat: int) -> list[float]:
    walls = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, cwd=REPO)
        walls.append(time.perf_counter() - t0)
    return walls


def bench_startup(repeat: int) -> Json:
    """``import zipkit`` (``-X importtime`` total and wall) and ``zipkit --help`` wall."""
    totals, heavy = [], {}
    for _ in range(repeat):
        err = subprocess.run([sys.executable, "-X", "importtime", "-c", "import zipkit"], capture_output=True,
                             text=True, check=True, cwd=REPO).stderr
        rows = [m.groups() for m in re.finditer(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", err)]
        totals.append(next(int(cum) for _, cum, ind, name in rows if name == "zipkit" and not ind) / 1e3)
        heavy = {name: int(cum) / 1e3 for _, cum, ind, name in rows if len(ind) <= 2}
    script = Path(sys.executable).with_name("zipkit")
    helpcmd = [str(script), "--help"] if script.exists() else [sys.executable, "-m", "zipkit", "--help"]
    bare = statistics.median(_wall([sys.executable, "-c", "pass"], repeat))
    imp = statistics.median(_wall([sys.executable, "-c", "import zipkit"], repeat))
    hlp = statistics.median(_wall(helpcmd, repeat))
    top = dict(sorted(heavy.items(), key=lambda kv: -kv[1])[:8])
    return {
        "importtime_ms": statistics.median(totals), "import_wall_ms": imp * 1e3,
        "python_bare_wall_ms": bare * 1e3, "help_wall_ms": hlp * 1e3, "help_command": helpcmd,
        "top_level_imports_ms": top,
        "targets": [_target("import zipkit, -X importtime total, ms", statistics.median(totals), "<=", 150),
                    _target("zipkit --help wall, ms", hlp * 1e3, "<=", 300)],
    }


def _codecs() -> dict[str, Callable[[bytes], int]]:
    import zlib

    out: dict[str, Callable[[bytes], int]] = {}
    for lvl in (1, 6, 9):
        out[f"zlib-{lvl}"] = functools.partial(_size, zlib, lvl)
    try:
        from zlib_ng import zlib_ng  # type: ignore[import-not-found]  # optional, not a dependency

        for lvl in (1, 6):
            out[f"zlib-ng-{lvl}"] = functools.partial(_size, zlib_ng, lvl)
    except ImportError:
        pass
    try:
        from isal import isal_zlib

        for lvl in (0, 1, 2, 3):
            out[f"isal-{lvl}"] = functools.partial(_size, isal_zlib, lvl)
    except ImportError:
        pass
    return out


def _size(mod: Any, level: int, data: bytes) -> int:
    """Bytes of ``data`` raw-deflated by ``mod`` (zlib, zlib_ng or isal_zlib) at ``level``."""
    c = mod.compressobj(level, mod.DEFLATED, -15)
    return len(c.compress(data)) + len(c.flush())


def bench_codecs(scale: float) -> Json:
    """Raw deflate on one core, data in memory: MB/s of input and output/input, per codec."""
    n = max(1 * MiB, round(16 * MiB * min(1.0, scale * 8)))
    data = {"text": text_bytes(n, 11), "binary": binary_bytes(n, 12)}
    res: dict[str, Json] = {}
    for name, fn in _codecs().items():
        row = {}
        for kind, d in data.items():
            dt = float("inf")
            for _ in range(3):  # best of 3: the least disturbed by other load
                t0 = time.perf_counter()
                size = fn(d)
                dt = min(dt, time.perf_counter() - t0)
            row[kind] = {"mb_per_s": len(d) / dt / 1e6, "ratio": size / len(d)}
        res[name] = row
    return {"bytes_per_kind": n, "codecs": res}


def startup_text(s: Json) -> str:
    return "\n".join([
        "== startup",
        f"  import zipkit: -X importtime total {s['importtime_ms']:.1f} ms; "
        f"wall {s['import_wall_ms']:.0f} ms "
        f"(bare python {s['python_bare_wall_ms']:.0f} ms); zipkit --help wall {s['help_wall_ms']:.0f} ms",
        "  heaviest imports (cumulative ms): " + ", ".join(f"{k} {v:.1f}"
                                                           for k, v in s["top_level_imports_ms"].items()),
        *_target_lines(s["targets"]),
    ])


def codecs_text(c: Json) -> str:
    lines = [f"== codecs: raw deflate on one core, {c['bytes_per_kind'] / MiB:g} MiB in memory, best of 3 "
             "(MB/s of input / output÷input)",
             f"  {'codec':10s} {'CSV-like text':>18s} {'float64 binary':>18s}"]
    for name, row in c["codecs"].items():
        cells = [f"{row[k]['mb_per_s']:7.0f} / {row[k]['ratio']:.3f}" for k in ("text", "binary")]
        lines.append(f"  {name:10s} {cells[0]:>18s} {cells[1]:>18s}")
    return "\n".join(lines)

