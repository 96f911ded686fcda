"""The plan's and report's tables: their own style, numbers right-aligned, failures first, "—"."""

from __future__ import annotations

import re

import zipkit
from zipkit._table import NOTHING, TABLE_CSS, html_table, text_table


def test_html_tables_carry_their_style_and_align_numbers_right():
    out = html_table(["stem", "files", "size", "time", "note"],
                     [["a", 3, "1.5 KiB", "0.12 s", "fine"], ["b", 12, "10 B", NOTHING, ""]],
                     css_class="zipkit-plan-table", row_classes=["zipkit-ok", "zipkit-skipped"])
    assert out.startswith(f"<div class='zipkit-table'><style>{TABLE_CSS}</style>"
                          "<table class='zipkit-plan-table'>")
    head = re.findall(r"<th class='([^']*)'( align='right')?>", out)
    assert [(cls.split()[0], bool(right)) for cls, right in head] == [
        ("zipkit-col-stem", False), ("zipkit-col-files", True), ("zipkit-col-size", True),
        ("zipkit-col-time", True), ("zipkit-col-note", False)]
    assert "<td class='zipkit-col-time zipkit-num zipkit-nothing' align='right'>—</td>" in out
    assert "<tr class='zipkit-skipped'>" in out
    for needed in ("padding:", "text-align:right", "font-family:ui-monospace", "tr.zipkit-failed",
                   "tr.zipkit-timed_out", "tr.zipkit-cancelled", "tr.zipkit-skipped", "tr.zipkit-ok"):
        assert needed in TABLE_CSS, needed


def test_cells_are_escaped():
    out = html_table(["stem"], [["<b>&"]])
    assert "<td class='zipkit-col-stem'>&lt;b&gt;&amp;</td>" in out


def test_text_tables_right_align_number_columns_only():
    out = text_table(["stem", "files", "in"], [["run1", 2, "19.5 KiB"], ["run10", 12, NOTHING]])
    assert out.splitlines() == [
        "stem   files  in",
        "-----  -----  --------",
        "run1       2  19.5 KiB",
        "run10     12         —",
    ]


def test_report_table_puts_failures_first_and_dashes_what_did_not_happen(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    for stem in ("a", "b", "c"):
        (src / f"{stem}.dat").write_text(stem * 1000)
    zipkit.zip_by_extension(src, ["dat"], out, progress=False, workers=1)
    (out / "a.zip").unlink()
    (out / "b.zip").unlink()
    (out / "b.zip").mkdir()  # in the way: b fails
    (out / "b.zip" / "x").write_text("x")
    report = zipkit.zip_by_extension(src, ["dat"], out, progress=False, workers=1, overwrite="update")
    assert {r.stem: r.status for r in report.results} == {"a": "ok", "b": "failed", "c": "skipped"}
    lines = str(report).splitlines()
    rows = [ln.split() for ln in lines[3:6]]
    assert [r[:2] for r in rows] == [["b", "failed"], ["a", "ok"], ["c", "skipped"]]
    skipped = rows[2]
    assert skipped[3:6] == [NOTHING, NOTHING, NOTHING], lines  # no "0 B", no "0.00 s"
    html = report._repr_html_()
    assert html.index("<tr class='zipkit-failed'>") < html.index("<tr class='zipkit-ok'>") \
        < html.index("<tr class='zipkit-skipped'>")
    assert "<pre>" in html and "zipkit-failure" in html  # the traceback, in the monospace style


def test_the_progress_bar_speaks_binary_units_as_the_report_does(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.dat").write_bytes(b"x" * (3 << 20))
    report = zipkit.zip_by_extension(src, ["dat"], tmp_path / "out", progress=True, workers=1)
    err = capsys.readouterr().err
    final = err.replace("\r", "\n").strip().splitlines()[-1]
    assert re.search(r"100%\|.*\| 3\.0 MiB/3\.0 MiB \[\d\d:\d\d<\d\d:\d\d, [\d.]+ [KMG]iB/s, stems=1/1\]$",
                     final), final
    assert "3.0 MiB" in report.summary_line()


def test_the_reports_html_says_what_the_run_deleted(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for stem in ("a", "b"):
        (src / f"{stem}.dat").write_text(stem * 1500)
        (src / f"{stem}.log").write_text(stem * 500)
    report = zipkit.zip_by_extension(src, ["dat", "log"], tmp_path / "out", progress=False, workers=1,
                                     delete_sources=True)
    assert report.success and not list(src.iterdir())
    assert "<p class='zipkit-deleted'><b>4 source file(s) deleted (3.9 KiB)</b>" in report._repr_html_()
    kept = zipkit.zip_by_extension(tmp_path / "out", ["zip"], tmp_path / "again", progress=False)
    assert "zipkit-deleted" not in kept._repr_html_()  # nothing deleted: nothing said
