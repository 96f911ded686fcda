"""The form's values ↔ the library's options (zipkit.widgets._settings), without ipywidgets or a kernel.

Everything the form checks and every message it shows beside a field is decided here, from plain
values; tests/test_widgets.py and tests/test_browser.py drive the same rules through the controls.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from zipkit import UsageError, plan
from zipkit.widgets import _settings as st


def values(demo: Path, **kw) -> st.FormValues:
    """The demo's marker job as the form would hold it."""
    args = dict(source=str(demo / "output" / "csv"), extensions=("csv",), stem_mode=st.MARKERS,
                markers=str(demo / "models"), marker_extensions=("yml",), output=str(demo / "zip"),
                workers=1, max_workers=4)
    args.update(kw)
    return st.FormValues(**args)


def test_the_settings_need_no_ipywidgets():
    # ipywidgets made unimportable: the mapping still loads and works; ZipForm alone needs it.
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('ipywidgets', 'ipykernel', 'IPython'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from zipkit.widgets import _settings as st, scan_extensions\n"
        "print(st.run_kwargs(st.FormValues(workers=2, max_workers=2)))\n"
        "try:\n"
        "    from zipkit.widgets import ZipForm\n"
        "except ImportError as e:\n"
        "    print('ZipForm:', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["{'workers': 'auto', 'save_error_reports': True}",
                                       "ZipForm: blocked: ipywidgets"]


def test_marker_values_give_the_plan_arguments(demo):
    v = values(demo, contains="FST2F, LWL ,", not_contains="345deg", pattern=" F ", regex="deg$",
               match="contains", compression="lzma", level=0, verify=True)
    kw = st.plan_kwargs(v, root=demo.resolve())
    assert kw == {
        "source": (demo / "output" / "csv").resolve(), "extensions": ["csv"],
        "output": (demo / "zip").resolve(), "overwrite": "always", "compression": "lzma", "level": 0,
        "verify": True, "delete_sources": False, "reproducible": False,
        "stems_from": (demo / "models").resolve(), "stem_extensions": ["yml"], "match": "contains",
        "contains": ["FST2F", "LWL"], "not_contains": ["345deg"], "pattern": "F", "regex": "deg$",
    }
    plan(**kw)  # the library takes them as they are


def test_own_stems_drop_the_marker_settings_and_default_level_is_none(demo):
    kw = st.plan_kwargs(values(demo, stem_mode=st.OWN, output="", regex="(bad"))
    assert "stems_from" not in kw and "regex" not in kw  # a hidden field cannot be at fault
    assert kw["output"] is None and kw["level"] is None


def test_relative_paths_are_taken_from_the_root_and_nothing_may_leave_it(demo, tmp_path):
    root = demo.resolve()
    kw = st.plan_kwargs(values(demo, source="output/csv", markers="models", output="zip"), root=root)
    assert kw["source"] == root / "output" / "csv" and kw["output"] == root / "zip"
    for escape in ("..", str(tmp_path), "output/../../.."):
        bad = st.check(values(demo, source=escape, markers=escape, output=escape), root=root)
        assert set(bad) == {"source", "markers", "output"}, bad
        assert all("outside the folder this form may use" in m for m in bad.values()), bad
    assert "source folder" in bad["source"] and "marker folder" in bad["markers"]
    assert "output folder" in bad["output"]


def test_every_field_at_fault_is_named_at_once_in_the_forms_words(demo):
    v = values(demo, source=str(demo / "nope"), extensions=(), markers=str(demo / "models" / "x.yml"),
               marker_extensions=(), regex="(unclosed", compression="bzip2", level=0)
    (demo / "models" / "x.yml").write_text("a file, not a folder")
    with pytest.raises(st.FormError) as caught:
        st.plan_kwargs(v)
    fields = caught.value.fields
    assert isinstance(caught.value, UsageError)
    assert sorted(fields) == ["extensions", "level", "marker_extensions", "markers", "regex", "source"]
    assert fields["source"] == f"source folder does not exist: {demo / 'nope'}"
    assert fields["markers"].startswith("marker folder is not a folder: ")
    assert fields["extensions"] == "pick at least one extension to archive"
    assert fields["marker_extensions"] == "pick at least one marker extension (e.g. yml)"
    assert fields["regex"].startswith("stem regex: ") and "not a valid regular expression" in fields["regex"]
    assert "bzip2" in fields["level"]
    assert "stems_from" not in str(caught.value) and "stem_extensions" not in str(caught.value)


def test_a_fixed_field_is_no_longer_at_fault(demo):
    v = values(demo, source=str(demo / "nope"))
    assert set(st.check(v)) == {"source"}
    v.source = str(demo / "output" / "csv")
    assert st.check(v) == {}


def test_library_words_become_the_forms():
    assert st.form_words("stems_from folder does not exist: /x") == "marker folder does not exist: /x"
    assert st.form_words("stems_from needs stem_extensions") == "marker folder needs marker extensions"
    assert st.form_words("not_contains: expected a string") == "stem lacks: expected a string"


@pytest.mark.parametrize(("workers", "expected"), [(1, 1), (3, 3), (4, "auto"), ("auto", "auto")])
def test_all_cpus_is_saved_as_auto(workers, expected):
    kw = st.run_kwargs(st.FormValues(workers=workers, max_workers=4), {"timeout": 5.0})
    assert kw == {"workers": expected, "save_error_reports": True, "timeout": 5.0}


@pytest.mark.parametrize(("compression", "low"), [("deflate", 0), ("bzip2", 1), ("lzma", 0), ("stored", 0)])
def test_levels_are_the_options_table(compression, low):
    from zipkit._options import LEVELS

    assert st.levels(compression) == range(low, LEVELS[compression][1] + 1)


def test_settings_map_to_values_and_back_unchanged(demo):
    kw = st.plan_kwargs(values(demo, contains="a, b", regex="deg$", compression="lzma", level=0,
                               reproducible=True, overwrite="update"))
    kw.update(timeout=30.0, durable=True)  # no controls for them: kept and passed on
    loaded = st.from_kwargs(kw, {"workers": 2, "executor": "dask", "progress": True})
    assert loaded.values.level == 0 and loaded.values.compression == "lzma"  # lzma 0 is not dropped
    assert loaded.extra_plan == {"timeout": 30.0, "durable": True}
    assert loaded.extra_run == {"executor": "dask"}
    assert loaded.values.workers == 2
    loaded.values.max_workers = 4
    again = st.plan_kwargs(loaded.values, extra=loaded.extra_plan)
    assert again == kw


def test_settings_the_library_would_refuse_are_refused_before_any_control_changes(demo):
    with pytest.raises(UsageError, match="unknown setting"):
        st.from_kwargs({"source": demo, "sauce": 1})
    with pytest.raises(UsageError, match="level"):
        st.from_kwargs({"source": demo, "compression": "bzip2", "level": 0})
    with pytest.raises(UsageError, match="timeout"):
        st.from_kwargs({"source": demo, "timeout": float("nan")})
    with pytest.raises(UsageError, match="overwrite"):
        st.from_kwargs({"source": demo, "overwrite": "alwayz"})


def test_the_folder_picker_never_leaves_the_root(demo, tmp_path):
    root = demo.resolve()
    (root / ".hidden").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "leads-out").symlink_to(outside, target_is_directory=True)
    here, choices = st.browse("", root)
    assert here == root
    assert [label for label, _ in choices] == ["models/", "output/"]  # no "..", no hidden, no way out
    here, choices = st.browse("output/csv", root)
    assert here == root / "output" / "csv" and choices == [("..", root / "output")]
    here, choices = st.browse("output/not-yet/deeper", root)  # an output folder still to be made
    assert here == root / "output" and choices[0] == ("..", root)
    for escape in ("..", str(outside), "/"):
        assert st.browse(escape, root)[0] == root


def test_the_live_view_words_time_like_tqdm_and_orders_stems_at_fault_first():
    from zipkit.widgets import _render

    assert [_render.clock(s) for s in (0, 75, 3725)] == ["00:00", "01:15", "1:02:05"]
    assert _render.timing(3 << 20, 9 << 20, 2.0) == "1.5 MiB/s, elapsed 00:02, ETA 00:04"
    assert _render.timing(0, 9 << 20, 0.0) == "0 B/s, elapsed 00:00, ETA ?"
    html = _render.stems({"a": "done", "b": "queued", "c": "zipping", "d": "failed"})
    assert html.startswith("<div class='zipkit-stems-head'>1 failed · 1 zipping · 1 queued · 1 done</div>")
    assert [m for m in re.findall(r"zipkit-stem-(\w+)'", html)] == ["failed", "zipping", "queued", "done"]
    assert _render.live_state("ok") == "done" and _render.live_state("timed_out") == "timed_out"
