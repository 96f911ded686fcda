"""Plain-text and HTML tables shared by the plan and the report."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["format_bytes", "html_table", "text_table"]


def format_bytes(n: float) -> str:
    """``1536`` → ``'1.5 KiB'``: binary units, one decimal above bytes."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _clip(rows: Sequence[Sequence[object]], max_rows: int | None) -> tuple[list[list[str]], int]:
    shown = list(rows) if max_rows is None else list(rows)[:max_rows]
    return [[str(c) for c in r] for r in shown], len(rows) - len(shown)


def text_table(headers: Sequence[str], rows: Sequence[Sequence[object]], max_rows: int | None = 50) -> str:
    """Left-aligned columns; numbers right-aligned; '… N more' when clipped."""
    cells, more = _clip(rows, max_rows)
    widths = [len(h) for h in headers]
    for r in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, r)]

    def line(r: Sequence[str]) -> str:
        out = []
        for c, w in zip(r, widths):
            numeric = c.replace(".", "", 1).replace(",", "").isdigit() or c.endswith(("B", "iB", " s"))
            out.append(c.rjust(w) if numeric and c[:1].isdigit() else c.ljust(w))
        return "  ".join(out).rstrip()

    lines = [line(list(headers)), "  ".join("-" * w for w in widths)]
    lines += [line(r) for r in cells]
    if more:
        lines.append(f"… {more} more")
    return "\n".join(lines)


def html_table(headers: Sequence[str], rows: Sequence[Sequence[object]], max_rows: int | None = 200,
               css_class: str = "zipkit-table", row_classes: Sequence[str] | None = None) -> str:
    """An HTML ``<table>`` with escaped cells; optional per-row CSS classes."""
    import html

    cells, more = _clip(rows, max_rows)
    head = "".join(f"<th style='text-align:left'>{html.escape(h)}</th>" for h in headers)
    body = []
    for i, r in enumerate(cells):
        cls = f" class='{html.escape(row_classes[i])}'" if row_classes else ""
        tds = "".join(f"<td style='text-align:left'>{html.escape(c)}</td>" for c in r)
        body.append(f"<tr{cls}>{tds}</tr>")
    if more:
        body.append(f"<tr><td colspan='{len(headers)}'>… {more} more</td></tr>")
    return f"<table class='{css_class}'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
