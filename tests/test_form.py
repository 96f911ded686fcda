"""The form's task layout (issue 16), driven from Python: marks on the fields at fault, results
cleared by a change, inputs locked while running, live progress, what was deleted, Cancel.

tests/test_browser.py checks the same in Chromium, as a person sees it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import zipkit
from zipkit.widgets import ZipForm

pytest.importorskip("ipywidgets")


def marker_form(demo: Path, **kw) -> ZipForm:
    args = dict(root=demo, source=demo / "output" / "csv", extensions=["csv"],
                stems_from=demo / "models", stem_extensions=["yml"], output=demo / "zip", workers=1)
    args.update(kw)
    return ZipForm(**args)


def slow_form(tmp_path: Path, stems: int = 4, mib: int = 6, **kw) -> ZipForm:
    src = tmp_path / "big"
    src.mkdir()
    table = bytes(b"0123456789,.-\n"[i % 14] for i in range(256))
    for i in range(stems):
        (src / f"sim{i}.dat").write_bytes(os.urandom(mib << 20).translate(table))
    return ZipForm(source=src, extensions=["dat"], output=tmp_path / "out", compression="bzip2",
                   level=9, workers=1, **kw)


def wait_for(test, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not test():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_a_field_at_fault_is_marked_and_the_mark_clears_when_fixed(demo):
    form = marker_form(demo)
    form.source.value = str(demo / "nope")
    assert form.marked() == {"source": f"source folder does not exist: {demo / 'nope'}"}
    assert "zipkit-invalid" in form.source._dom_classes
    assert form.field_errors["source"].layout.display == ""
    form.source.value = str(demo / "output" / "csv")
    assert form.marked() == {} and "zipkit-invalid" not in form.source._dom_classes
    assert form.field_errors["source"].layout.display == "none"
    assert not form.message.startswith("error:")


def test_every_field_at_fault_is_marked_at_once_in_the_forms_words(demo):
    form = marker_form(demo)
    form.extensions.value = ()
    form.marker_extensions.value = ()
    form.regex.value = "(unclosed"
    assert form.filters.selected_index is None  # the filters start folded
    form.preview_button.click()
    assert sorted(form.marked()) == ["extensions", "marker_extensions", "regex"]
    assert form.message == "error: fix the 3 marked fields (extensions, marker extensions, stem regex)"
    assert form.marked()["regex"].startswith("stem regex: ")
    assert form.filters.selected_index == 0  # unfolded: the message beside the regex shows
    assert form.plan is None
    form.regex.value = "deg$"  # fixing one field clears its mark only
    assert sorted(form.marked()) == ["extensions", "marker_extensions"]
    form.extensions.value = ("csv",)
    form.marker_extensions.value = ("yml",)
    assert form.marked() == {} and form.message == ""
    form.preview_button.click()
    assert form.plan is not None and form.message.startswith("preview: ")


def test_the_marker_folder_is_called_so(demo, tmp_path):
    form = marker_form(demo)
    form.markers.value = str(tmp_path / "elsewhere")
    assert form.marked()["markers"].startswith("marker folder ")
    assert "stems_from" not in form.message


def test_a_change_clears_results_that_no_longer_describe_the_form(demo):
    form = marker_form(demo)
    form.preview_button.click()
    assert "zipkit-plan-table" in form.result.value
    form.verify.value = True
    assert form.result.value == "" and form.message == ""
    report = (form.zip_button.click(), form.wait(60))[1]
    assert report.success and "zipkit-report-table" in form.result.value
    assert form.downloads.value  # links to the archives
    form.output.value = str(demo / "elsewhere")
    assert form.result.value == form.downloads.value == "" and form.progress.value == 0


def test_inputs_are_locked_while_running_and_cancel_writes_no_error_report(tmp_path):
    form = slow_form(tmp_path)
    form.zip_button.click()
    wait_for(lambda: form.progress.value > 0)
    locked = [c for c in form.inputs() if not c.disabled]
    assert not locked, locked
    assert form.zip_button.disabled and form.preview_button.disabled and not form.cancel_button.disabled
    # live: rate, elapsed and ETA, and which stem is being zipped
    wait_for(lambda: "zipkit-stem-zipping" in form.stems.value)
    assert "/s, elapsed " in form.progress_text.value and "ETA " in form.progress_text.value
    assert "/s, elapsed " in form.message and "ETA" in form.message
    assert "queued" in form.stems.value
    form.cancel_button.click()
    report = form.wait(10)
    assert report.cancelled and not report.failed
    assert report.error_report is None
    assert not list((tmp_path / "out").glob("zipkit-errors-*.json"))  # nothing failed: no JSON
    assert "press Zip again" in form.message and "advice" not in form.result.value
    assert "zipkit-stem-cancelled" in form.stems.value
    assert not [c for c in form.inputs() if c.disabled]


def test_failures_still_write_the_error_report(demo):
    blocked = demo / "zip" / "FST2F_FST1F_LWL_045deg.zip"
    blocked.mkdir(parents=True)
    (blocked / "x").write_text("in the way")
    form = marker_form(demo)
    form.zip_button.click()
    report = form.wait(60)
    assert report.error_report is not None and report.error_report.is_file()
    assert report.error_report.parent == (demo / "zip").resolve()
    assert "zipkit-stem-failed" in form.stems.value
    shown = form.result.value
    assert shown.index("<tr class='zipkit-failed'>") < shown.index("<tr class='zipkit-ok'>")


def test_a_delete_run_says_what_it_deleted_and_the_extension_counts_follow(demo):
    form = marker_form(demo)
    assert form.extensions.options[0][0] == "csv — 33 files, 1.3 MiB"
    form.delete_sources.value = True
    form.zip_button.click()
    form.confirm_delete.click()
    report = form.wait(60)
    assert report.success
    size = sum(f.size for s in form.plan.stems for f in s.files)
    summary = f"32 source file(s) deleted ({zipkit._table.format_bytes(size)})"
    assert form.message.endswith(summary), form.message
    assert f"<p class='zipkit-deleted'><b>{summary}</b>" in form.result.value  # the report says it too
    assert form.extensions.options[0][0] == "csv — 1 file, " + zipkit._table.format_bytes(
        (demo / "output" / "csv" / "campaign_summary.csv").stat().st_size)
    assert "zipkit-report-table" in form.result.value  # the refreshed list did not clear the report


def test_the_level_is_kept_when_the_new_compression_has_it(demo):
    form = marker_form(demo, compression="deflate", level=9)
    form.compression.value = "bzip2"
    assert form.level.value == 9
    form.compression.value = "stored"
    assert form.level.value == -1 and form.level.label == "default"
    form.compression.value = "lzma"
    form.level.value = 0
    form.compression.value = "bzip2"  # bzip2 has no level 0: back to the default, never blank
    assert form.level.value == -1 and form.level.label == "default"


def test_progress_events_name_the_stem_being_read(tmp_path):
    from safety_helpers import text_bytes

    src = tmp_path / "src"
    src.mkdir()
    for i, stem in enumerate(("a", "b")):  # zlib -9 reads this text at ~30 MB/s, chunk by chunk:
        (src / f"{stem}.dat").write_bytes(text_bytes(32 << 20, i))  # ~1 s a stem, events every 0.2 s
    events = []
    zipkit.zip_by_extension(src, ["dat"], tmp_path / "out", progress=events.append, workers=1,
                            deflate_backend="zlib", level=9)
    read = {e.stem for e in events if e.result is None}
    assert read == {"a", "b"}
    assert all(e.stem is None for e in events if e.result is not None)


def test_the_folder_picker_sets_the_field_and_stays_inside_the_root(demo):
    form = marker_form(demo, source=demo)
    labels = [label for label, _ in form.pickers["source"].options]
    assert labels == ["browse…", "models/", "output/"]
    form.pickers["source"].value = str(demo.resolve() / "output")
    assert form.source.value == str(demo.resolve() / "output")
    assert form.pickers["source"].value == ""  # ready for the next pick
    assert [label for label, _ in form.pickers["source"].options] == ["browse…", "..", "csv/"]
    form.pickers["source"].value = str(demo.resolve() / "output" / "csv")
    assert form.extensions.options[0][0].startswith("csv — 33 files")
    form.pickers["source"].value = str(demo.resolve() / "output")
    form.pickers["source"].value = str(demo.resolve())
    assert ".." not in [label for label, _ in form.pickers["source"].options]


def test_archives_up_to_8_mib_are_offered_as_downloads_larger_ones_named(tmp_path):
    import base64
    import re

    src = tmp_path / "src"
    src.mkdir()
    (src / "small.dat").write_bytes(b"small " * 1000)
    (src / "big.dat").write_bytes(os.urandom(9 << 20))  # incompressible: a 9 MiB archive
    form = ZipForm(source=src, extensions=["dat"], output=tmp_path / "out", workers=1)
    form.zip_button.click()
    assert form.wait(60).success
    links = re.findall(r"<a class='zipkit-download' download='([^']+)' href='data:application/zip;"
                       r"base64,([^']+)'>", form.downloads.value)
    assert [name for name, _ in links] == ["small.zip"]
    assert base64.b64decode(links[0][1]) == (tmp_path / "out" / "small.zip").read_bytes()
    assert "<span class='zipkit-too-big'" in form.downloads.value
    assert "big.zip (9.0 MiB)" in form.downloads.value  # named, with its folder above
