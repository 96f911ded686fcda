"""Plain-text and HTML tables shared by the plan and the report.

The HTML tables carry their own style (:data:`TABLE_CSS`, scoped to ``div.zipkit-table``) so
that they look the same in a notebook, in the form and in Voilà: padded cells, numbers aligned
right, a marked header, status colours, monospace tracebacks. The alignment is ``!important``:
JupyterLab right-aligns every output table cell with a more specific rule of its own. Where
styles are stripped (GitHub's notebook view) the ``align`` attributes still right-align numbers.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import PurePath

__all__ = ["NOTHING", "TABLE_CSS", "format_bytes", "html_table", "plan_notes", "text_table"]

NOTHING = "—"  #: a cell for what did not happen (no time for a skipped stem, no size for a cancelled one)

TABLE_CSS = (
    "div.zipkit-table table{border-collapse:collapse;margin:.4em 0;font-size:13px;"
    "font-variant-numeric:tabular-nums}"
    "div.zipkit-table th,div.zipkit-table td{padding:.25em .8em;border:none;"
    "border-bottom:1px solid #e0e0e0;text-align:left!important;vertical-align:top}"
    "div.zipkit-table th{font-weight:600;background:#f3f4f6;border-bottom:2px solid #9e9e9e;"
    "white-space:nowrap}"
    "div.zipkit-table td.zipkit-num,div.zipkit-table th.zipkit-num{text-align:right!important;"
    "white-space:nowrap}"
    "div.zipkit-table tbody tr:nth-child(even){background:#fafafa}"
    "div.zipkit-table tbody tr:hover{background:#eef3fb}"
    "div.zipkit-table td.zipkit-col-status{font-weight:600;white-space:nowrap}"
    "div.zipkit-table tr.zipkit-ok td.zipkit-col-status{color:#1b5e20}"
    "div.zipkit-table tr.zipkit-skipped td.zipkit-col-status{color:#616161}"
    "div.zipkit-table tr.zipkit-failed td.zipkit-col-status{color:#b00020}"
    "div.zipkit-table tr.zipkit-timed_out td.zipkit-col-status{color:#b34700}"
    "div.zipkit-table tr.zipkit-cancelled td.zipkit-col-status{color:#8d6e00}"
    "div.zipkit-table tbody tr.zipkit-failed,div.zipkit-table tbody tr.zipkit-timed_out{background:#fdecee}"
    "div.zipkit-table td.zipkit-nothing{color:#9e9e9e}"
    ".zipkit-failure{margin:.3em 0}.zipkit-failure summary{cursor:pointer;color:#b00020}"
    ".zipkit-failure pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;"
    "font-size:12px;background:#f6f8fa;padding:.5em;overflow-x:auto;max-height:20em;margin:.3em 0}"
)

_NUMBER = re.compile(r"^-?\d[\d,]*(\.\d+)?( ?(B|KiB|MiB|GiB|TiB|s|%)(/s)?)?$")


def format_bytes(n: float) -> str:
    """``1536`` → ``'1.5 KiB'``: binary units, one decimal above bytes."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _is_number(cell: str) -> bool:
    """A count, a size, a time or a percentage: ``12``, ``1.5 KiB``, ``0.12 s``, ``46%``."""
    return bool(_NUMBER.match(cell))


def _clip(rows: Sequence[Sequence[object]], max_rows: int | None) -> tuple[list[list[str]], int]:
    shown = list(rows) if max_rows is None else list(rows)[:max_rows]
    return [[str(c) for c in r] for r in shown], len(rows) - len(shown)


def _numeric_columns(headers: Sequence[str], cells: list[list[str]]) -> list[bool]:
    """Columns whose every cell is a number or :data:`NOTHING` (and at least one a number)."""
    out = []
    for i in range(len(headers)):
        col = [r[i] for r in cells if i < len(r) and r[i] not in ("", NOTHING)]
        out.append(bool(col) and all(_is_number(c) for c in col))
    return out


def text_table(headers: Sequence[str], rows: Sequence[Sequence[object]], max_rows: int | None = 50) -> str:
    """Left-aligned columns; numbers right-aligned; '… N more' when clipped."""
    cells, more = _clip(rows, max_rows)
    widths = [len(h) for h in headers]
    for r in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, r)]
    numeric = _numeric_columns(headers, cells)

    def line(r: Sequence[str], head: bool = False) -> str:
        out = []
        for c, w, num in zip(r, widths, numeric):
            out.append(c.rjust(w) if num and not head else c.ljust(w))
        return "  ".join(out).rstrip()

    lines = [line(list(headers), head=True), "  ".join("-" * w for w in widths)]
    lines += [line(r) for r in cells]
    if more:
        lines.append(f"… {more} more")
    return "\n".join(lines)


def _column_class(header: str) -> str:
    return "zipkit-col-" + re.sub(r"[^a-z0-9]+", "-", header.lower()).strip("-")


def html_table(headers: Sequence[str], rows: Sequence[Sequence[object]], max_rows: int | None = 200,
               css_class: str = "zipkit-table", row_classes: Sequence[str] | None = None) -> str:
    """An HTML ``<table>`` with escaped cells, its own style, numbers right-aligned; optional
    per-row CSS classes (``zipkit-ok`` … colour the status column)."""
    cells, more = _clip(rows, max_rows)
    numeric = _numeric_columns(headers, cells)
    classes = [_column_class(h) for h in headers]

    def attrs(i: int, cell: str | None = None) -> str:
        cls = [classes[i]]
        if numeric[i]:
            cls.append("zipkit-num")
        if cell == NOTHING:
            cls.append("zipkit-nothing")
        align = " align='right'" if numeric[i] else ""
        return f" class='{' '.join(cls)}'{align}"

    head = "".join(f"<th{attrs(i)}>{html.escape(h)}</th>" for i, h in enumerate(headers))
    body = []
    for n, r in enumerate(cells):
        cls = f" class='{html.escape(row_classes[n])}'" if row_classes else ""
        tds = "".join(f"<td{attrs(i, c)}>{html.escape(c)}</td>" for i, c in enumerate(r))
        body.append(f"<tr{cls}>{tds}</tr>")
    if more:
        body.append(f"<tr><td colspan='{len(headers)}'>… {more} more</td></tr>")
    return (f"<div class='zipkit-table'><style>{TABLE_CSS}</style><table class='{html.escape(css_class)}'>"
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>")


def plan_notes(unmatched: Sequence[PurePath], empty_stems: Sequence[str],
               contested: Sequence[tuple[PurePath, Sequence[str]]],
               ignored: Sequence[tuple[PurePath, str]]) -> list[str]:
    """What a plan left out, one line each: the plan's notes and its report's (one renderer)."""
    notes = []
    if unmatched:
        names = ", ".join(p.name for p in unmatched[:10])
        more = f" … and {len(unmatched) - 10} more" if len(unmatched) > 10 else ""
        notes.append(f"unmatched files ({len(unmatched)}): {names}{more}")
    if empty_stems:
        names = ", ".join(empty_stems[:10])
        more = f" … and {len(empty_stems) - 10} more" if len(empty_stems) > 10 else ""
        notes.append(f"stems without files, no archive ({len(empty_stems)}): {names}{more}")
    for path, stems in contested[:10]:
        notes.append(f"{path.name} fits several stems: {', '.join(stems)}")
    if len(contested) > 10:
        notes.append(f"… {len(contested) - 10} more files fit several stems")
    for path, why in ignored[:10]:
        notes.append(f"ignored {path.name}: {why}")
    if len(ignored) > 10:
        notes.append(f"… {len(ignored) - 10} more ignored entries")
    return notes
