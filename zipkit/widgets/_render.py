"""What the form shows as HTML while and after a run: timings, each stem's state, downloads.

Plain functions of values (no ipywidgets): the controller puts their text into its widgets.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from pathlib import Path

from .._report import Report
from .._table import format_bytes

__all__ = ["DOWNLOAD_MAX", "DOWNLOAD_TOTAL", "clock", "downloads", "live_state", "stems", "timing"]

DOWNLOAD_MAX = 8 << 20  #: archives up to this size are offered as downloads (data: links)
DOWNLOAD_TOTAL = 32 << 20  #: and at most this much in all (the links travel to the browser)
MAX_CHIPS = 200  #: stems shown one by one in the live status; the rest are counted
ORDER = ("failed", "timed_out", "zipping", "queued", "done", "skipped", "cancelled")


def _esc(text: object) -> str:
    return html.escape(str(text))


def clock(seconds: float) -> str:
    """``75`` → ``'01:15'``, ``3725`` → ``'1:02:05'`` (tqdm's way)."""
    m, s = divmod(int(seconds + 0.5), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def timing(done: int, total: int, elapsed: float) -> str:
    """``'1.5 MiB/s, elapsed 00:03, ETA 00:12'``: the rate so far and the time left at that rate."""
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = clock((total - done) / rate) if rate > 0 else "?"
    return f"{format_bytes(rate)}/s, elapsed {clock(elapsed)}, ETA {eta}"


def live_state(status: str) -> str:
    """A stem's status in the report → its state in the live view (``ok`` → ``done``)."""
    return "done" if status == "ok" else status


def stems(states: Mapping[str, str]) -> str:
    """The live per-stem status: counts, then one chip per stem (those at fault or at work first)."""
    counts = {k: sum(1 for v in states.values() if v == k) for k in ORDER}
    head = " · ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.items() if n)
    order = sorted(states, key=lambda s: ORDER.index(states[s]) if states[s] in ORDER else 0)
    chips = "".join(f"<span class='zipkit-stem zipkit-stem-{states[s]}' title='{_esc(states[s])}'>"
                    f"{_esc(s)}</span>" for s in order[:MAX_CHIPS])
    more = f" … {len(order) - MAX_CHIPS} more" if len(order) > MAX_CHIPS else ""
    return f"<div class='zipkit-stems-head'>{_esc(head)}</div><div>{chips}{more}</div>"


def downloads(report: Report) -> str:
    """Downloads of the archives written, so that they can be had from a served form (Voilà).

    Voilà serves no files outside its notebook folder by default, so small archives are
    offered as ``data:`` links (the browser saves them; nothing is served); larger ones are
    named with their folder."""
    written = [r for r in report.ok if r.status == "ok" and r.archive is not None]
    if not written:
        return ""
    links, budget = [], DOWNLOAD_TOTAL
    for r in written:
        path = Path(r.archive)  # type: ignore[arg-type]  # written ones have an archive
        try:
            size = path.stat().st_size
        except OSError:
            continue
        name = _esc(path.name)
        if size <= min(DOWNLOAD_MAX, budget):
            budget -= size
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            links.append(f"<a class='zipkit-download' download='{name}' "
                         f"href='data:application/zip;base64,{data}'>{name}</a>")
        else:
            links.append(f"<span class='zipkit-too-big' title='{_esc(path)}'>{name} "
                         f"({_esc(format_bytes(size))})</span>")
    folder = _esc(Path(written[0].archive).parent)  # type: ignore[arg-type]
    return (f"<div><b>download</b> ({len(written)} archive{'s' if len(written) != 1 else ''} in "
            f"<code>{folder}</code>; those over {format_bytes(DOWNLOAD_MAX)} only there): "
            + " ".join(links) + "</div>")
