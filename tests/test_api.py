"""The public surface: explicit, complete, cheap to import; the bundled demo works."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import zipkit


def test_all_is_complete_and_exact():
    public = {n for n in dir(zipkit) if not n.startswith("_")} | {"__version__", "run_config"}
    modules = {n for n in public if type(getattr(zipkit, n, None)).__name__ == "module"}
    assert set(zipkit.__all__) == public - modules
    for name in zipkit.__all__:
        assert getattr(zipkit, name) is not None


def test_errors_form_one_hierarchy():
    for name in zipkit.__all__:
        obj = getattr(zipkit, name)
        if isinstance(obj, type) and issubclass(obj, BaseException) and obj is not zipkit.RunInterrupted:
            assert issubclass(obj, zipkit.ZipkitError), name
    assert issubclass(zipkit.RunInterrupted, KeyboardInterrupt)


def test_import_is_light():
    code = ("import sys, zipkit; heavy = ['ipywidgets', 'tqdm', 'yaml', 'distributed', 'dask', 'IPython',"
            " 'zipkit.widgets']; print(json.dumps([m for m in heavy if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", "import json;" + code], capture_output=True, text=True,
                         check=True)
    assert json.loads(out.stdout) == []


def test_public_functions_have_docstrings_with_examples():
    for fn in (zipkit.plan, zipkit.run_plan, zipkit.zip_by_extension):
        assert fn.__doc__ and "Examples" in fn.__doc__ and "Parameters" in fn.__doc__


def test_demo_command_makes_data_and_zips_it(tmp_path):
    out = subprocess.run([sys.executable, "-m", "zipkit.demo", str(tmp_path / "demo")], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "8 ok of 8 stem(s)" in out.stdout and "campaign_summary.csv" in out.stdout
    archives = sorted((tmp_path / "demo" / "output" / "zip").glob("*.zip"))
    assert len(archives) == 8
    with zipfile.ZipFile(archives[0]) as zf:
        assert zf.namelist() == [f"{archives[0].stem}_{m}.csv" for m in sorted(zipkit.demo.MEMBERS)]


import zipkit.demo  # noqa: E402  (kept last: the import-lightness test runs in a subprocess)
