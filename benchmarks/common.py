"""What the benchmark scripts share: CPU count, the timing launcher, machine load, target checks."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .corpora import Corpus

__all__ = ["Json", "Launched", "aligned", "available_cpus", "launch", "pressure", "purge_later", "set_aside"]

REPO = Path(__file__).resolve().parent.parent
Json = dict[str, Any]  # a JSON object of the results


def available_cpus() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# A small launcher times the command and reads its rusage: wait4's peak RSS of a child counts
# the memory of the process that spawned it, so the spawner must be small (python -S: ~8 MiB),
# not this benchmark process. ru_maxrss is that of the largest process of the tree.
_LAUNCH = """
import os, sys, time
t0 = time.perf_counter()
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t0
with open(sys.argv[1], "w") as f:
    f.write(f"{wall} {ru.ru_utime + ru.ru_stime} {ru.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


@dataclass(frozen=True)
class Launched:
    """One process run by :func:`launch`: wall and CPU seconds, peak RSS in bytes, exit code."""

    wall: float
    cpu: float
    maxrss: int
    rc: int


def launch(argv: list[str], *, cwd: Path, stats: Path, stdin: IO[bytes] | None = None,
           stdout: IO[bytes] | int | None = subprocess.DEVNULL,
           stderr: IO[bytes] | int | None = subprocess.DEVNULL) -> Launched:
    """Run ``argv`` in a fresh process tree; ``stats`` is a scratch file for the launcher."""
    subprocess.run([sys.executable, "-S", "-c", _LAUNCH, str(stats), *argv], stdin=stdin,
                   stdout=stdout, stderr=stderr, cwd=cwd, check=True)
    wall, cpu, maxrss, rc = stats.read_text().split()
    return Launched(float(wall), float(cpu), int(maxrss) * 1024, int(rc))


def _seven_zip() -> str | None:
    return next((exe for exe in ("7zz", "7z", "7za") if shutil.which(exe)), None)


def _versions() -> Json:
    v: dict[str, str | None] = {"python": sys.version.split()[0], "platform": platform.platform()}
    for mod in ("zipkit", "isal", "zlib_ng"):
        try:
            v[mod] = __import__(mod).__version__
        except (ImportError, AttributeError):
            v[mod] = None
    import zlib

    v["zlib"] = zlib.ZLIB_RUNTIME_VERSION
    for exe, args in (("zip", ["-v"]), (_seven_zip(), [])):
        if exe and shutil.which(exe):
            text = subprocess.run([exe, *args], capture_output=True, text=True).stdout
            v[exe] = next((ln.strip() for ln in text.splitlines() if re.search(r"\d\.\d", ln)), "")
    return v


_SET_ASIDE: list[Path] = []


def set_aside(path: Path) -> None:
    """Rename ``path`` out of the way, to be deleted by :func:`purge_later` when the benchmark ends.

    On a disk mounted with ``discard`` (as here) deleting a written file costs a TRIM, 1-2 ms:
    the 65,000 archives of one small-stem case take a minute to delete, the scale case's
    560,000 many minutes. Deleted after the last measurement, in the background, they count in
    no measurement and do not hold up the run.
    """
    if path.exists():
        dest = path.with_name(f".aside-{os.getpid()}-{len(_SET_ASIDE)}-{path.name}")
        path.rename(dest)
        _SET_ASIDE.append(dest)


_PURGE = "import os, shutil, sys\nos.nice(19)\nfor p in sys.argv[1:]:\n    shutil.rmtree(p, True)\n"


def purge_later(*paths: Path, say: Callable[[str], None] = lambda s: None) -> None:
    """Delete ``paths`` and what was set aside in a detached, low-priority process."""
    todo = [str(p) for p in [*_SET_ASIDE, *paths] if p.exists()]
    _SET_ASIDE.clear()
    if not todo:
        return
    idle = [exe, "-c", "3"] if (exe := shutil.which("ionice")) else []  # idle I/O class where there is one
    proc = subprocess.Popen([*idle, sys.executable, "-c", _PURGE, *todo], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    say(f"deleting the outputs in the background (pid {proc.pid}): {' '.join(todo)}")


def pressure() -> dict[str, float]:
    """Linux pressure stall information: % of the last 60 s some task waited for CPU / I/O."""
    out = {}
    for what in ("cpu", "io"):
        try:
            line = Path(f"/proc/pressure/{what}").read_text().splitlines()[0]
            out[what] = float(re.search(r"avg60=([\d.]+)", line).group(1))  # type: ignore[union-attr]
        except (OSError, AttributeError, IndexError):  # AttributeError: no avg60 in the line
            pass
    return out


def _warm(corpus: Corpus) -> None:
    for p in corpus.paths():
        with open(p, "rb", buffering=0) as f:
            while f.read(1 << 20):
                pass


def _target(what: str, value: float | None, op: str, limit: float, best: float | None = None) -> Json:
    """A target check; ``best`` is the same ratio from the fastest runs, for information."""
    ok = None if value is None else (value >= limit if op == ">=" else value <= limit)
    return {"what": what, "value": value, "op": op, "limit": limit, "ok": ok, "best_runs_value": best}


def _fmt(v: float | None, spec: str, suffix: str = "") -> str:
    return "-" if v is None else f"{v:{spec}}{suffix}"


def _target_lines(targets: list[Json]) -> list[str]:
    out = []
    for t in targets:
        verdict = "n/a" if t["ok"] is None else "PASS" if t["ok"] else "MISS"
        best = t.get("best_runs_value")
        extra = f"; fastest runs: {best:.3g}" if best is not None else ""
        out.append(f"  target {t['what']}: {_fmt(t['value'], '.3g')} "
                   f"(want {t['op']} {t['limit']:g}) {verdict}{extra}")
    return out


def aligned(head: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
    """``head`` and ``rows`` as text lines, the first ``left`` columns left-aligned, the others right."""
    widths = [max(len(str(r[i])) for r in [head, *rows] if i < len(r)) for i in range(len(head))]
    return ["  ".join(str(c).ljust(w) if i < left else str(c).rjust(w)
                      for i, (c, w) in enumerate(zip(r, widths))) for r in [head, *rows]]
