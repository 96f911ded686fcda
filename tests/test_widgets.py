"""The widget form's logic, driven from Python through its traits and ``Button.click()``.

The browser test (tests/test_browser.py) drives the same form in Chromium; these tests cover
every control, the run thread, Cancel, the delete confirmation, the root and YAML.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from zipkit import UsageError
from zipkit._run import available_cpus
from zipkit.widgets import ZipForm, scan_extensions

ipywidgets = pytest.importorskip("ipywidgets")  # the notebook extra; installed in CI

CASES = 8


def marker_form(demo: Path, **kw) -> ZipForm:
    """A form on the demo data set: CSV files by case, marker files from ``models``."""
    args = dict(root=demo, source=demo / "output" / "csv", extensions=["csv"],
                stems_from=demo / "models", stem_extensions=["yml"], output=demo / "zip", workers=1)
    args.update(kw)
    return ZipForm(**args)


def run(form: ZipForm, timeout: float = 60):
    form.zip_button.click()
    return form.wait(timeout)


def text_like(path: Path, n: int) -> None:
    """``n`` bytes of digits and separators: cheap to make, slow for bzip2 -9 to squeeze."""
    table = bytes(b"0123456789,.-\n"[i % 14] for i in range(256))
    path.write_bytes(os.urandom(n).translate(table))


def all_widgets(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from all_widgets(child)


# --- import and construction ---------------------------------------------------------------------
def test_import_zipkit_does_not_import_ipywidgets():
    code = "import sys, zipkit; print('ipywidgets' in sys.modules, 'zipkit.widgets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_import_and_defaults_do_not_depend_on_the_folder_at_import(tmp_path):
    # os.getcwd() at import time would raise in a deleted folder; defaults come at call time.
    gone = tmp_path / "gone"
    gone.mkdir()
    # ipywidgets first: Python 3.13.0 itself cannot import socket (which ipywidgets needs) once
    # the working folder is gone (SystemError in os._get_exports_list); zipkit's own import is
    # what this test is about.
    code = ("import ipywidgets, os; os.rmdir(os.getcwd()); import zipkit.widgets as w; "
            "f = w.ZipForm(); print(repr(f.source.value), f.workers.max)")
    out = subprocess.run([sys.executable, "-c", code], cwd=gone, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["''", str(available_cpus())]


def test_every_control_has_its_own_stable_css_class(demo):
    form = marker_form(demo)
    found: dict[str, int] = {}
    for wdg in all_widgets(form.widget):
        for cls in getattr(wdg, "_dom_classes", ()):
            if cls.startswith("zipkit-"):
                found[cls] = found.get(cls, 0) + 1
    assert set(ZipForm.CSS_CLASSES) <= set(found), set(ZipForm.CSS_CLASSES) - set(found)
    assert all(found[c] == 1 for c in ZipForm.CSS_CLASSES), found
    controls = [wdg for wdg in all_widgets(form.widget)
                if isinstance(wdg, (ipywidgets.ValueWidget, ipywidgets.Button))]
    untagged = [wdg for wdg in controls if not any(c.startswith("zipkit-") for c in wdg._dom_classes)]
    assert not untagged, untagged


def test_display_bundle_is_the_widget_with_a_short_text(demo):
    form = marker_form(demo)
    bundle = form._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == form.widget.model_id
    assert bundle["text/plain"] == f"ZipForm(root={str(demo.resolve())!r})"


# --- source folder and extensions ----------------------------------------------------------------
def test_scan_extensions_counts_regular_files_per_extension(tmp_path):
    (tmp_path / "a.CSV").write_bytes(b"x" * 10)
    (tmp_path / "b.csv").write_bytes(b"x" * 5)
    (tmp_path / "c.dat").write_bytes(b"")
    (tmp_path / "README").write_text("no extension")
    (tmp_path / ".zipkit-abc-def.tmp").write_bytes(b"temp")
    (tmp_path / "folder.csv").mkdir()
    os.mkfifo(tmp_path / "pipe.csv")
    assert scan_extensions(tmp_path) == [("csv", 2, 15), ("dat", 1, 0)]


def test_extensions_are_offered_with_counts_and_sizes_and_follow_the_folder(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    for i in range(3):
        (runs / f"run{i}.dat").write_bytes(b"d" * 2048)
        (runs / f"run{i}.log").write_bytes(b"l" * 10)
    form = ZipForm(source=runs)
    assert form.extensions.options == (("dat — 3 files, 6.0 KiB", "dat"), ("log — 3 files, 30 B", "log"))
    assert form.extensions.value == ()
    form.extensions.value = ("dat",)
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.dat").write_bytes(b"1")
    (other / "x.sim").write_bytes(b"1")
    form.source.value = str(other)  # typing a new folder rescans it; the choice is kept
    assert [v for _, v in form.extensions.options] == ["dat", "sim"]
    assert form.extensions.options[0][0] == "dat — 1 file, 1 B"
    assert form.extensions.value == ("dat",)
    (other / "y.out").write_bytes(b"1")
    form.scan_button.click()
    assert "out" in [v for _, v in form.extensions.options]


def test_own_stems_preview_and_zip(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    for i in range(3):
        for ext in ("dat", "sim", "log"):
            (runs / f"run{i}.{ext}").write_text(f"{i}{ext}" * 100)
    form = ZipForm(source=runs, extensions=["dat", "sim"], workers=1)
    assert form.stem_mode.value == "own"
    assert form.markers_box.layout.display == "none"
    form.preview_button.click()
    assert [s.stem for s in form.plan.stems] == ["run0", "run1", "run2"]
    assert not list(runs.glob("*.zip")), "Preview must write nothing"
    report = run(form)
    assert report.success and len(report.ok) == 3
    with zipfile.ZipFile(runs / "run1.zip") as zf:  # output empty: next to the sources
        assert zf.namelist() == ["run1.dat", "run1.sim"]


def test_missing_folder_and_missing_extension_are_said_not_raised(tmp_path):
    form = ZipForm(source=tmp_path / "nope")
    assert form.message.startswith("error: source folder does not exist: ")
    assert form.marked() == {"source": form.message.removeprefix("error: ")}  # said beside the field
    form.source.value = str(tmp_path)
    form.preview_button.click()
    assert form.message == "error: pick at least one extension to archive"
    assert form.plan is None


# --- root -----------------------------------------------------------------------------------------
def test_root_refuses_paths_outside_it(demo, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.csv").write_text("1")
    form = marker_form(demo)
    form.source.value = str(outside)
    assert "outside the folder this form may use" in form.message
    assert [v for _, v in form.extensions.options] == ["csv"]  # only the wanted one, with no files
    with pytest.raises(UsageError, match="outside the folder"):
        form.plan_kwargs()
    for escape in ("../outside", str(demo / ".." / "outside")):
        form.source.value = escape
        form.preview_button.click()
        assert "outside the folder this form may use" in form.message
    (demo / "link").symlink_to(outside, target_is_directory=True)  # a link inside, leading out
    form.source.value = "link"
    form.zip_button.click()
    assert "outside the folder this form may use" in form.message
    assert form.wait(5) is None
    form.source.value = "output/csv"  # relative paths are taken from the root
    form.output.value = str(outside / "zips")
    form.preview_button.click()
    assert "output folder" in form.message and "refused" in form.message
    form.output.value = "zips"
    form.preview_button.click()
    assert form.plan.output == demo.resolve() / "zips"
    assert not (outside / "zips").exists()


# --- marker stems ---------------------------------------------------------------------------------
def test_marker_mode_filters_and_match(demo):
    form = ZipForm(root=demo, source="output/csv", extensions=["csv"], output="zip")
    form.stem_mode.value = "markers"
    assert form.markers_box.layout.display == ""
    form.markers.value = "models"
    assert form.marker_extensions.options == (("yml — 8 files, 504 B", "yml"),)
    form.preview_button.click()
    assert form.message == "error: pick at least one marker extension (e.g. yml)"
    form.marker_extensions.value = ("yml",)
    form.contains.value = "FST2F, LWL"
    form.not_contains.value = "345deg"
    form.preview_button.click()
    assert [s.stem for s in form.plan.stems] == [
        "FST2F_FST1F_LWL_000deg", "FST2F_FST1F_LWL_045deg", "FST2F_FST1F_LWL_090deg"]
    kw = form.plan_kwargs()
    assert kw["contains"] == ["FST2F", "LWL"] and kw["not_contains"] == ["345deg"]
    assert "plan" in form.result.value and "zipkit-plan-table" in form.result.value
    form.regex.value = r"0[04]\d?deg$"
    form.preview_button.click()
    assert [s.stem for s in form.plan.stems] == ["FST2F_FST1F_LWL_000deg", "FST2F_FST1F_LWL_045deg"]
    form.match.value = "contains"
    assert form.plan_kwargs()["match"] == "contains"
    form.stem_mode.value = "own"  # back to own stems: the marker settings no longer apply
    assert "stems_from" not in form.plan_kwargs()


# --- options --------------------------------------------------------------------------------------
def test_levels_follow_the_compression(demo):
    form = marker_form(demo, compression="deflate", level=9)
    assert [v for _, v in form.level.options] == [-1, *range(10)]
    assert form.plan_kwargs()["level"] == 9
    form.compression.value = "bzip2"
    assert [v for _, v in form.level.options] == [-1, *range(1, 10)]
    assert form.level.value == 9
    form.compression.value = "lzma"  # the form offers what the library takes: one table
    assert [v for _, v in form.level.options] == [-1, *range(10)]
    assert form.level.value == 9
    form.compression.value = "stored"
    assert form.level.options == (("default", -1), ("0", 0))
    assert form.level.value == -1  # 9 is not a stored level: back to the default
    assert form.plan_kwargs()["level"] is None and form.plan_kwargs()["compression"] == "stored"
    report = run(form)
    assert report.success
    with zipfile.ZipFile(demo / "zip" / "FST2F_FST1F_LWL_000deg.zip") as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}


def test_workers_slider_is_one_to_cpus_and_all_cpus_means_auto(demo):
    form = marker_form(demo, workers=None)
    cpus = available_cpus()
    assert (form.workers.min, form.workers.max, form.workers.value) == (1, cpus, cpus)
    assert form.run_kwargs() == {"workers": "auto", "save_error_reports": True}
    form.workers.value = 1
    assert form.run_kwargs()["workers"] == 1
    assert marker_form(demo, workers=4096).workers.value == cpus
    for bad in (0, 4097, 10**9, True, 2.5, "many"):
        with pytest.raises(UsageError, match=r"workers must be 'auto' or an integer from 1 to 4096"):
            marker_form(demo, workers=bad)


@pytest.mark.skipif(available_cpus() < 2, reason="a pool of two needs two CPUs")
def test_zip_in_a_process_pool(demo):
    form = marker_form(demo, workers=2)
    report = run(form)
    assert report.success and report.workers == 2 and report.executor == "process pool"
    assert len(list((demo / "zip").glob("*.zip"))) == CASES


def test_overwrite_verify_and_reproducible(demo, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    form = marker_form(demo, verify=True, reproducible=True)
    first = run(form)
    assert first.success and all(r.verified for r in first.ok)
    blob = (demo / "zip" / "FST2L_FST1L_HWL_090deg.zip").read_bytes()
    with zipfile.ZipFile(demo / "zip" / "FST2L_FST1L_HWL_090deg.zip") as zf:
        assert {i.date_time for i in zf.infolist()} == {(2023, 11, 14, 22, 13, 20)}
    form.overwrite.value = "never"
    form.preview_button.click()
    assert {s.action for s in form.plan.stems} == {"skip"}
    assert "archive exists" in form.result.value
    assert len(run(form).skipped) == CASES
    form.overwrite.value = "always"
    form.reproducible.value = True
    again = run(form)
    assert len(again.ok) == CASES
    assert (demo / "zip" / "FST2L_FST1L_HWL_090deg.zip").read_bytes() == blob


# --- the run: progress, failures, cancel ----------------------------------------------------------
def test_zip_shows_progress_report_and_resets_buttons(demo):
    form = marker_form(demo)
    events = []
    form.progress.observe(lambda change: events.append(change["new"]), "value")
    report = run(form)
    assert report is form.report and report.success
    assert form.message.startswith("done: 8 ok of 8 stem(s)")
    assert "zipkit-report-table" in form.result.value and "zipkit-ok" in form.result.value
    assert form.progress.value == form.progress.max == form.plan.total_bytes
    assert form.progress.bar_style == "success"
    assert events and events == sorted(events)  # the bar only moves forward
    assert not form.zip_button.disabled and not form.preview_button.disabled
    assert form.cancel_button.disabled
    assert sorted(p.name for p in (demo / "zip").iterdir()) == sorted(
        f"{p.stem}.zip" for p in (demo / "models").iterdir())


def test_failures_are_shown_with_the_error_report(demo):
    blocked = demo / "zip" / "FST2F_FST1F_LWL_045deg.zip"
    blocked.mkdir(parents=True)  # a folder where an archive should go: that stem fails
    (blocked / "x").write_text("in the way")
    form = marker_form(demo)
    report = run(form)
    assert [r.stem for r in report.failed] == ["FST2F_FST1F_LWL_045deg"]
    assert form.message.startswith("done with failures: 7 ok, 1 failed")
    assert form.progress.bar_style == "danger"
    assert report.error_report is not None and report.error_report.is_file()
    assert str(report.error_report) in form.result.value
    assert "zipkit-failure" in form.result.value and "ExistingArchiveError" in form.result.value


@pytest.mark.parametrize("workers", [1, 2])
def test_cancel_stops_the_run_and_leaves_nothing_half_written(tmp_path, workers):
    if workers > available_cpus():
        pytest.skip("a pool of two needs two CPUs")
    src = tmp_path / "big"
    src.mkdir()
    for i in range(4):
        text_like(src / f"sim{i}.dat", 6 << 20)
    out = tmp_path / "out"
    form = ZipForm(source=src, extensions=["dat"], output=out, compression="bzip2", level=9,
                   workers=workers)
    t0 = time.monotonic()
    form.zip_button.click()
    assert time.monotonic() - t0 < 1, "Zip must return at once: the job runs in a thread"
    assert form.zip_button.disabled and not form.cancel_button.disabled
    form.preview_button.click()  # the form answers while the job runs
    deadline = time.monotonic() + 30
    while form.progress.value <= 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert form.progress.value > 0, form.message
    assert form.message.startswith("zipping: ")
    t0 = time.monotonic()
    form.cancel_button.click()
    report = form.wait(10)
    assert time.monotonic() - t0 < 5
    assert report.cancelled, report
    assert form.message.startswith("cancelled: ")
    assert form.progress.bar_style == "warning"
    names = sorted(p.name for p in out.iterdir())
    assert not [n for n in names if n.endswith(".tmp")], names
    zips = [n for n in names if n.endswith(".zip")]
    assert sorted(zips) == sorted(f"{r.stem}.zip" for r in report.ok)
    for name in zips:
        with zipfile.ZipFile(out / name) as zf:
            assert zf.testzip() is None
    assert len(list(src.iterdir())) == 4
    assert not form.zip_button.disabled and form.cancel_button.disabled


def test_cancel_with_nothing_running_is_harmless(demo):
    form = marker_form(demo)
    form.cancel()
    assert form.message == "nothing to cancel"


# --- delete sources -------------------------------------------------------------------------------
def test_delete_sources_needs_an_explicit_confirmation(demo):
    csv = demo / "output" / "csv"
    form = marker_form(demo)
    form.delete_sources.value = True
    form.zip_button.click()
    assert form.confirm_box.layout.display == ""
    assert "Delete 32 source file(s)" in form.confirm_text.value
    assert form.wait(1) is None and not (demo / "zip").exists()  # nothing ran yet
    form.keep_sources.click()
    assert form.confirm_box.layout.display == "none" and "sources kept" in form.message
    assert len(list(csv.iterdir())) == 33

    form.zip_button.click()
    form.verify.value = True  # any change withdraws the question
    assert form.confirm_box.layout.display == "none"
    form.confirm_delete.click()
    assert "nothing to confirm" in form.message and not (demo / "zip").exists()

    form.zip_button.click()
    form.confirm_delete.click()
    report = form.wait(60)
    assert report.success
    assert all(r.verified and len(r.deleted) == 4 for r in report.ok)
    assert [p.name for p in csv.iterdir()] == ["campaign_summary.csv"]  # unmatched: never touched
    assert len(list((demo / "zip").glob("*.zip"))) == CASES


# --- YAML -----------------------------------------------------------------------------------------
def test_save_yaml_runs_unchanged_in_batch_and_loads_back(demo):
    form = marker_form(demo, contains=["HWL"], compression="bzip2", level=5, overwrite="update",
                       verify=True)
    form.config_path.value = "jobs/hwl.yml"
    form.save_button.click()
    cfg = demo / "jobs" / "hwl.yml"
    assert form.message.startswith(f"saved {cfg}")
    assert "../output/csv" in cfg.read_text()  # folders relative to the config: it can move

    again = ZipForm(root=demo, config=cfg)
    assert again.plan_kwargs() == form.plan_kwargs()
    assert again.run_kwargs() == {"workers": 1, "save_error_reports": True}
    assert (again.stem_mode.value, again.contains.value, again.level.value) == ("markers", "HWL", 5)

    done = subprocess.run([sys.executable, "-m", "zipkit", str(cfg), "--no-progress"],
                          capture_output=True, text=True, cwd=demo.parent)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (demo / "zip").glob("*.zip")) == [
        f"FST2L_FST1L_HWL_{d}deg.zip" for d in ("000", "045", "090", "345")]


@pytest.mark.parametrize(("compression", "level"), [("lzma", 9), ("lzma", 0), ("bzip2", 1), ("deflate", 0),
                                                 ("stored", 0)])
def test_a_saved_level_survives_save_and_load(demo, compression, level):
    form = marker_form(demo, compression=compression, level=level)
    assert form.plan_kwargs()["level"] == level
    cfg = form.save_yaml(demo / "jobs" / "level.yml")
    again = ZipForm(root=demo, config=cfg)
    assert not again.message.startswith("error"), again.message
    assert (again.compression.value, again.level.value) == (compression, level)
    assert again.plan_kwargs() == form.plan_kwargs()


def test_load_an_old_tool_config(demo):
    cfg = demo / "zip_config.yml"
    cfg.write_text(
        "meta: {label: old}\n"
        "analysis:\n  input_directory: output/csv\n  filename: {extension: [CSV]}\n"
        "file_management:\n  input_directory: models\n"
        "  filename:\n    extension: [yml]\n    filters: {contains: [FST2L], not_contains: []}\n"
        "  output_directory: zips\n"
        "parallel_processing: {enabled: true, max_workers: 1, timeout_per_file: 120}\n"
        "default: {config: {overwrite: {output: false}}}\n")
    form = ZipForm(root=demo)
    form.config_path.value = "zip_config.yml"
    form.load_button.click()
    assert form.message.startswith(f"loaded {cfg}"), form.message
    assert "timeout=120" in form.message  # kept, though the form has no control for it
    assert form.source.value == str(demo / "output" / "csv")
    assert form.extensions.value == ("csv",)
    assert (form.stem_mode.value, form.marker_extensions.value, form.contains.value) == (
        "markers", ("yml",), "FST2L")
    assert (form.overwrite.value, form.workers.value) == ("never", 1)
    kw = form.plan_kwargs()
    assert kw["timeout"] == 120 and kw["output"] == demo / "zips"
    report = run(form)
    assert len(report.ok) == 4


def test_yaml_paths_outside_root_and_bad_configs_are_refused(demo, tmp_path):
    form = marker_form(demo)
    form.config_path.value = str(tmp_path / "job.yml")
    form.save_button.click()
    assert "outside the folder this form may use" in form.message
    assert not (tmp_path / "job.yml").exists()
    form.config_path.value = "job.txt"
    form.save_button.click()
    assert "must end in .yml or .yaml" in form.message
    bad = demo / "bad.yml"
    bad.write_text("analysis:\n  input_directory: output/csv\n  filename: {extension: [csv]}\n"
                   "parallel_processing: {max_worker: 2}\n")
    form.config_path.value = "bad.yml"
    form.load_button.click()
    assert form.message.startswith("error: ") and "parallel_processing.max_worker" in form.message
    assert form.source.value == str(demo / "output" / "csv")  # the form is unchanged
    escaping = demo / "escaping.yml"
    escaping.write_text(f"analysis:\n  input_directory: {tmp_path}\n  filename: {{extension: [csv]}}\n")
    form.config_path.value = "escaping.yml"
    form.load_button.click()
    assert "outside the folder this form may use" in form.message
    form.preview_button.click()
    assert "refused" in form.message


def test_bad_choices_are_usage_errors(tmp_path):
    for kw, what in ((dict(match="substring"), "match must be one of prefix, contains"),
                     (dict(compression="zstd"), "compression must be one of"),
                     (dict(overwrite="sometimes"), "overwrite must be one of always, update, never, replace"),
                     (dict(compression="bzip2", level=0), "level for bzip2 must be an integer from 1 to 9"),
                     (dict(compression="stored", level=9), "level for stored must be only 0, not 9")):
        with pytest.raises(UsageError, match=what):
            ZipForm(source=tmp_path, **kw)


def test_apply_sets_controls_and_keeps_every_valid_level(demo):
    form = ZipForm(root=demo)
    notes = form.apply({"source": "output/csv", "extensions": ["csv"], "compression": "lzma", "level": 9,
                        "durable": True, "deflate_backend": "auto"}, {"workers": 1, "progress": True})
    assert notes == []
    kw = form.plan_kwargs()
    assert (kw["compression"], kw["level"], kw["durable"]) == ("lzma", 9, True)  # lzma 9 is kept
    assert "deflate_backend" not in kw  # the default is not carried as an extra
    for bad, what in (({"colour": "blue"}, {}), "unknown setting(s): colour"), \
                     (({}, {"workers": 0}), "workers must be"), \
                     (({}, {"workers": 5000}), "workers must be 'auto' or an integer from 1 to 4096"), \
                     (({"compression": "bzip2", "level": 0}, {}), "level for bzip2 must be"), \
                     (({"timeout": float("nan")}, {}), "timeout must be a finite number of seconds"), \
                     (({"min_size_kb": -1}, {}), "min_size_kb must be a finite number of KiB >= 0"), \
                     (({"min_size_kb": 5, "max_size_kb": 1}, {}), "min_size_kb must be at most"), \
                     (({"regex": "("}, {}), "'(' is not a valid regular expression"), \
                     (({"overwrite": "sometimes"}, {}), "overwrite must be"):
        with pytest.raises(UsageError, match=re.escape(what)):
            form.apply({"source": "other", "extensions": ["dat"], **bad[0]}, bad[1])
        assert form.source.value == "output/csv"  # a bad setting leaves the form as it was
