"""The option table is the one source: signatures, config keys, flags and form fields follow it.

``zipkit._options.OPTIONS`` names every keyword argument once. The public signatures stay written
out (IDEs and mypy see them), so these tests fail when any of them, a schema key, a command-line
flag or a form field drifts from the table, in name or default. The last tests check that the
modules built from it import no module that imports them back.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import zipkit
from tests.test_architecture import _graph
from zipkit import _options as opt
from zipkit._cli import _CONFIG_KEYS, build_parser
from zipkit._config import load_config
from zipkit._schema import BY_KEY, OLD_FED, PLAN_ARGS, RUN_ARGS, SCHEMA
from zipkit.widgets import _settings as st

ROOT = Path(__file__).resolve().parents[1]
EMPTY = inspect.Parameter.empty


def _params(fn: object, drop: tuple[str, ...] = ()) -> list[inspect.Parameter]:
    return [p for p in inspect.signature(fn).parameters.values() if p.name not in drop]  # type: ignore[arg-type]


@pytest.mark.parametrize(("fn", "expected", "drop"), [
    (zipkit.plan, opt.names("plan"), ()),
    (zipkit.run_plan, opt.names("run"), ("plan",)),
    (zipkit.zip_by_extension, opt.names("plan", everything=False) + opt.names("run"), ()),
])
def test_signatures_take_the_tables_options_with_its_defaults(fn, expected, drop):
    params = _params(fn, drop)
    assert [p.name for p in params] == list(expected)
    for p in params:
        o = opt.by_name(p.name)
        if p.default is EMPTY:  # source and extensions: required, positional
            assert o.positional and o.default is None, p.name
        else:
            assert p.default == o.default, f"{fn.__name__}({p.name}={p.default!r}): table {o.default!r}"
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD if o.positional else inspect.Parameter.KEYWORD_ONLY
        assert p.kind == kind, p.name


def test_archive_options_hold_the_tables_archive_options_with_its_defaults():
    fields = {f.name: f.default for f in dataclasses.fields(opt.ArchiveOptions)}
    table = {o.name: o.default for o in opt.OPTIONS if o.archive}
    assert {k: fields[k] for k in table} == table
    assert set(fields) - set(table) == {"source_date_epoch", "chunk_size", "threads"}  # set by plan/run
    assert zipkit.ArchiveOptions is opt.ArchiveOptions
    from zipkit import _plan  # the old home re-exports the same objects

    assert (_plan.ArchiveOptions, _plan.COMPRESSIONS, _plan.Compression) == (
        opt.ArchiveOptions, opt.COMPRESSIONS, opt.Compression)


def test_every_option_a_config_sets_has_its_zipkit_key_of_the_same_kind():
    for o in opt.OPTIONS:
        s = BY_KEY.get(f"zipkit.{o.name}")
        if not o.config:
            assert s is None or o.name == "executor", o.name
            continue
        assert s is not None and (s.kind, s.choices, s.feeds) == (o.kind, o.choices, o.name)
        assert s.default == (None if o.name in OLD_FED else o.default), s.key
        assert s.help.startswith(o.help)
    fed = {s.feeds for s in SCHEMA if s.used}
    assert fed == set(opt.names("plan", everything=False)) | {"workers", "executor", "progress",
                                                               "save_error_reports"}
    assert PLAN_ARGS == tuple(n for n in opt.names("plan") if n != "inputs")
    assert RUN_ARGS == opt.names("run")


def test_a_loaded_config_gives_every_plan_option_and_the_run_options_it_can_say(tmp_path):
    (tmp_path / "csv").mkdir()
    cfg = tmp_path / "c.yml"
    cfg.write_text("analysis: {input_directory: csv, filename: {extension: [csv]}}\n")
    loaded = load_config(cfg)
    assert list(loaded.plan_kwargs) == list(opt.names("plan", everything=False))
    assert list(loaded.run_kwargs) == ["workers", "executor", "progress", "save_error_reports"]
    defaults = {n: opt.by_name(n).default for n in ("match", "overwrite", "compression", "level", "verify",
                                                     "deflate_backend", "durable", "timeout")}
    assert {k: loaded.plan_kwargs[k] for k in defaults} == defaults
    assert loaded.run_kwargs["workers"] == opt.by_name("workers").default


def test_command_line_flags_kinds_and_defaults_come_from_the_table():
    parser = build_parser()
    actions = {a.dest: a for a in parser._actions}
    for o in opt.OPTIONS:
        if not o.cli:
            assert o.name not in actions or o.positional, o.name
            continue
        a = actions[o.name]
        assert tuple(a.option_strings) == o.cli
        assert a.default == (o.default if o.stage == "plan" else None), o.name
        assert tuple(a.choices or ()) == o.choices
        assert isinstance(a, argparse._StoreTrueAction) == (o.kind == "bool")
        if o.default not in (None, False, ()):
            assert f"(default: {o.default})" in a.help
    plan_flags = {o.name for o in opt.OPTIONS if o.cli and o.stage == "plan"}
    assert set(_CONFIG_KEYS) == plan_flags
    assert all(k in BY_KEY and BY_KEY[k].feeds == name for name, k in _CONFIG_KEYS.items())


def test_form_fields_named_like_options_have_their_defaults():
    fields = {f.name: f.default for f in dataclasses.fields(st.FormValues)}
    shared = {n for n in fields if n in {o.name for o in opt.OPTIONS}}
    assert {"match", "compression", "overwrite", "verify", "reproducible", "delete_sources", "workers",
            "level"} <= shared
    for name in shared - {"level", "source", "output", "extensions", "contains", "not_contains", "pattern",
                          "regex"}:  # level: -1 is the dropdown's "default"; texts start empty
        assert fields[name] == opt.by_name(name).default, name
    assert set(st.AS_IS) <= shared
    from zipkit.widgets._form import ZipForm

    for p in _params(ZipForm.__init__, ("self", "root", "config")):
        if p.name in shared and p.default is not None:
            assert p.default == opt.by_name(p.name).default, p.name


def test_the_form_accepts_exactly_the_tables_names():
    loaded = st.from_kwargs({"source": "x", "extensions": ["csv"], "durable": True, "timeout": 5},
                            {"workers": 2, "executor": "dask"})
    assert loaded.extra_plan == {"durable": True, "timeout": 5} and loaded.extra_run == {"executor": "dask"}
    with pytest.raises(zipkit.UsageError, match="unknown setting.*: bogus"):
        st.from_kwargs({"bogus": 1})


@pytest.mark.parametrize(("values", "message"), [
    ({"match": "prefx"}, "match must be one of prefix, contains, not 'prefx'; did you mean 'prefix'?"),
    ({"compression": "bzip2", "level": 0}, "level for bzip2 must be an integer from 1 to 9, not 0"),
    ({"workers": 0}, "workers must be 'auto' or an integer from 1 to 4096, not 0"),
    ({"timeout": float("nan")}, "timeout must be a finite number of seconds"),
    ({"min_size_kb": 5, "max_size_kb": 1}, "min_size_kb must be at most max_size_kb"),
    ({"deflate_backend": "pigz"}, "deflate_backend must be one of auto, zlib, isal"),
])
def test_check_values_refuses_what_the_library_refuses(values, message, tmp_path):
    with pytest.raises(opt.BadValue) as e:
        opt.check_values(values)
    assert str(e.value).startswith(message)
    (tmp_path / "a.dat").write_text("a")
    with pytest.raises(zipkit.UsageError) as lib:
        zipkit.plan(tmp_path, "dat", **values) if "workers" not in values else zipkit.zip_by_extension(
            tmp_path, "dat", progress=False, **values)
    assert str(lib.value).startswith(message)


def test_check_values_names_an_option_as_its_front_end_does():
    with pytest.raises(opt.BadValue, match=r"^--level for bzip2 must be"):
        opt.check_values({"compression": "bzip2", "level": 0}, {"level": "--level"})


def test_a_new_row_in_the_table_is_a_config_key_a_flag_and_a_documented_setting():
    code = textwrap.dedent("""
        from zipkit import _options as opt
        row = opt.Option("comment", "plan", "text", None, "An archive comment.", cli=("--comment",),
                         group="archives")
        opt.OPTIONS = opt.OPTIONS + (row,)
        opt._BY_NAME["comment"] = row
        from zipkit import _cli, _config_docs, _schema
        assert _schema.BY_KEY["zipkit.comment"].feeds == "comment" and "comment" in _schema.PLAN_ARGS
        assert "--comment" in _cli.build_parser().format_help()
        assert _cli._CONFIG_KEYS["comment"] == "zipkit.comment"
        assert "`zipkit.comment`" in _config_docs.schema_reference_markdown()
        import os, tempfile
        from zipkit._config import load_config, settings_to_yaml
        folder = tempfile.mkdtemp()
        text = settings_to_yaml({"source": folder, "extensions": ["csv"], "comment": "hi"})
        assert "comment: hi" in text, text
        with open(os.path.join(folder, "c.yml"), "w") as f:
            f.write(text)
        assert load_config(os.path.join(folder, "c.yml")).plan_kwargs["comment"] == "hi"
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


# --------------------------------------------------------------------------- imports
# The graph of the whole package (imports inside functions too) and its cycles are
# tests/test_architecture.py's; these tests add what the modules built on the table promise.
OWN = {"zipkit._options", "zipkit._kinds", "zipkit._schema", "zipkit._config", "zipkit._config_read",
       "zipkit._config_write", "zipkit._config_docs", "zipkit._cli", "zipkit.__main__", "zipkit.demo",
       "zipkit.widgets", "zipkit.widgets._form", "zipkit.widgets._layout", "zipkit.widgets._settings",
       "zipkit.widgets._render"}


def test_the_package_never_reaches_the_command_line_or_the_demo():
    graph = _graph()
    assert OWN <= set(graph)
    assert "zipkit.widgets._render" in graph["zipkit.widgets._form"]  # the graph sees these imports
    reached, todo = set(), ["zipkit"]
    while todo:
        for dep in graph[todo.pop()] - reached:
            reached.add(dep)
            todo.append(dep)
    assert not reached & {"zipkit._cli", "zipkit.demo", "zipkit.__main__"}


def test_the_modules_built_on_the_table_never_import_a_submodule_through_its_package():
    """``from . import _settings`` reads as an import of the package (whose ``__init__`` may import
    the importer back, as ``zipkit.widgets`` imports ``_form``): these modules name the module."""
    graph = _graph()
    offenders = []
    for name in sorted(OWN):
        parts = name.split(".")
        path = ROOT.joinpath(*parts[:-1], parts[-1] + ".py")
        if not path.exists():
            path = ROOT.joinpath(*parts, "__init__.py")
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level and not node.module:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                offenders += [f"{name}: from {'.' * node.level} import {a.name}" for a in node.names
                              if f"{base}.{a.name}" in graph]
    assert offenders == []


def test_the_option_table_imports_nothing_above_the_converters():
    graph = _graph()
    assert graph["zipkit._options"] == {"zipkit._kinds"}
    assert graph["zipkit._kinds"] == {"zipkit._errors"}
    assert graph["zipkit._schema"] == {"zipkit._options"}
