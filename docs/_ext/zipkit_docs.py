"""Sphinx extension: the reference pages generated from the code at build time.

A page holds a marker line ``<!-- zipkit-docs: generate NAME -->``; when Sphinx reads the page,
the marker is replaced by the Markdown that ``GENERATORS[NAME]`` returns:

- ``config``: the configuration reference, from :func:`zipkit._config_docs.schema_reference_markdown`
  (the schema the validator uses, ``zipkit._schema.SCHEMA``, whose ``zipkit:`` keys come from the
  option table ``zipkit._options.OPTIONS``);
- ``cli``: the command-line reference, from :func:`zipkit._cli.build_parser` (the parser the
  ``zipkit`` command uses, whose library options come from the option table);
- ``api``: the API reference, autodoc of every name in ``zipkit.__all__``.

Nothing is copied by hand, so these pages cannot drift from the code.

It also lets Markdown links reach documents in a symlinked folder: ``docs/notebooks`` links to
the repository's ``notebooks/``, and Sphinx resolves ``[text](notebooks/01_quickstart.ipynb)``
through the link to a path outside the source folder; :class:`SymlinkedDocs` maps it back.
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sphinx import addnodes
from sphinx.transforms.post_transforms import SphinxPostTransform

MARKER = re.compile(r"^<!--\s*zipkit-docs:\s*generate\s+(\w+)\s*-->\s*$", re.MULTILINE)


# --------------------------------------------------------------------------- configuration
def config_markdown() -> str:
    """The configuration reference, generated from the config schema."""
    from zipkit._config_docs import schema_reference_markdown

    return schema_reference_markdown()


# --------------------------------------------------------------------------- command line
def _cell(text: object) -> str:
    """Markdown for a table cell (the text is Markdown already)."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _plain(text: str) -> str:
    """Markdown that shows ``text`` as written: argparse help is plain text, not Markdown."""
    return re.sub(r"([\\`*_\[\]<>#])", r"\\\1", text)


def _help(action: argparse.Action, prog: str) -> str:
    text = action.help or ""
    if "%(" in text:
        text = text % {**vars(action), "prog": prog}
    return _plain(text)


def _fixed_width(prog: str) -> argparse.HelpFormatter:
    return argparse.HelpFormatter(prog, width=96)  # not the width of the terminal that builds


def _default(action: argparse.Action) -> str:
    d = action.default
    if d is None or d is False or d == argparse.SUPPRESS or isinstance(action, argparse._VersionAction):
        return ""
    if isinstance(action, argparse._CountAction) and d == 0:
        return ""
    return f"`{d}`"


def _value(action: argparse.Action) -> str:
    if action.nargs == 0:
        return ""
    if action.choices:
        return " / ".join(f"`{c}`" for c in action.choices)
    metavar = action.metavar or action.dest.upper()
    text = f"`{metavar}`"
    if action.nargs == "?":
        text += " (optional)"
    return text


def cli_markdown(parser: argparse.ArgumentParser | None = None,
                 config_keys: dict[str, str] | None = None) -> str:
    """The command-line reference, generated from the ``zipkit`` argument parser.

    ``config_keys`` maps an option's ``dest`` to the config key that sets the same thing.
    """
    if parser is None:
        from zipkit import _cli

        parser = _cli.build_parser()
        config_keys = getattr(_cli, "_CONFIG_KEYS", None)
    config_keys = config_keys or {}
    prog = parser.prog
    formatter = parser.formatter_class
    parser.formatter_class = _fixed_width
    try:
        usage, full_help = parser.format_usage().strip(), parser.format_help().rstrip()
    finally:
        parser.formatter_class = formatter
    out = [
        "# Command-line reference",
        "",
        f"`{prog}` (installed as a console script) and `python -m zipkit` are the same command; in "
        f"IPython, `%run -m zipkit …` runs it and leaves the run's `report` in the session.",
        "",
        _plain(parser.description or ""),
        "",
        "With a YAML config, the options that say *what* to zip are set in the config (the column "
        "*in a config* names the key; see the [configuration reference](config.md)); the options "
        "that say *how to run* (`-j`, `--dask`, `--dry-run`, `--no-progress`, `--error-report`, "
        "`-q`, `-v`) apply to both.",
        "",
        "```text",
        usage,
        "```",
        "",
    ]
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if not isinstance(a, argparse._HelpAction)]
        if not actions:
            continue
        title = group.title or "options"
        out += [f"## {title[0].upper()}{title[1:]}", ""]
        if group.description:
            out += [_plain(group.description), ""]
        if not actions[0].option_strings:
            out += ["| argument | meaning |", "|---|---|"]
            for a in actions:
                out.append(f"| `{a.metavar or a.dest}` | {_cell(_help(a, prog))} |")
        else:
            out += ["| option | value | default | meaning | in a config |", "|---|---|---|---|---|"]
            for a in actions:
                names = ", ".join(f"`{o}`" for o in a.option_strings)
                key = f"`{config_keys[a.dest]}`" if a.dest in config_keys else ""
                out.append(f"| {names} | {_cell(_value(a))} | {_cell(_default(a))} "
                           f"| {_cell(_help(a, prog))} | {key} |")
        out.append("")
    if parser.epilog:
        out += ["## Exit codes", "", _plain(parser.epilog), ""]
    out += ["## `zipkit --help`", "", "```text", full_help, "```", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------- API
def _kind(obj: Any) -> str:
    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    if callable(obj):
        return "function"
    return "data"


_SECTIONS = (
    ("function", "Functions", "autofunction", ""),
    ("class", "Plans, reports and options", "autoclass", "   :members:\n   :undoc-members:"),
    ("exception", "Errors", "autoexception", "   :show-inheritance:"),
)


def api_markdown() -> str:
    """The API reference: autodoc of every public name, taken from ``zipkit.__all__``."""
    import zipkit

    names = sorted(zipkit.__all__, key=str.lower)
    kinds = {name: _kind(getattr(zipkit, name)) for name in names}
    out = [
        "# API reference",
        "",
        "Everything here is importable from the top-level package (`from zipkit import …`); "
        "the list is `zipkit.__all__`. `import zipkit` is fast: it does not import YAML, "
        "ipywidgets, Dask or the notebook stack.",
        "",
        "```{eval-rst}",
        ".. currentmodule:: zipkit",
        "",
        ".. autosummary::",
        "",
        *[f"   {n}" for n in names if kinds[n] != "data"],
        "```",
        "",
    ]
    for kind, title, directive, options in _SECTIONS:
        members = [n for n in names if kinds[n] == kind]
        if not members:
            continue
        out += [f"## {title}", ""]
        for n in members:
            out += ["```{eval-rst}", f".. {directive}:: zipkit.{n}", *options.splitlines(), "```", ""]
    data = [n for n in names if kinds[n] == "data"]
    if data:
        out += ["## Data", ""]
        for n in data:
            out += [f"`zipkit.{n}`", f": `{getattr(zipkit, n)!r}`", ""]
    out += [
        "## Other modules",
        "",
        "```{eval-rst}",
        ".. autofunction:: zipkit.demo.make_demo",
        "```",
        "",
        "```{eval-rst}",
        ".. autoclass:: zipkit.widgets.ZipForm",
        "```",
        "",
    ]
    return "\n".join(out)


GENERATORS: dict[str, tuple[Callable[[], str], tuple[str, ...]]] = {
    # name: (generator, modules whose change makes the page stale)
    "config": (config_markdown, ("zipkit._config_docs", "zipkit._schema", "zipkit._options")),
    "cli": (cli_markdown, ("zipkit._cli", "zipkit._options")),
    "api": (api_markdown, ("zipkit",)),
}


def _source_read(app: Any, docname: str, source: list[str]) -> None:
    import importlib

    def generate(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            known = ", ".join(GENERATORS)
            raise ValueError(f"{docname}: unknown generated section {name!r} (known: {known})")
        func, modules = GENERATORS[name]
        for mod in modules:
            path = getattr(importlib.import_module(mod), "__file__", None)
            if path:
                app.env.note_dependency(str(Path(path).resolve()))
        return func()

    source[0] = MARKER.sub(generate, source[0])


def _signature(app: Any, what: str, name: str, obj: Any, options: Any, signature: str | None,
               return_annotation: str | None) -> tuple[str | None, str | None] | None:
    """Dataclass fields with a ``default_factory`` show ``<factory>``, which is no Python: use ``...``."""
    if signature and "<factory>" in signature:
        return signature.replace("<factory>", "..."), return_annotation
    return None


class SymlinkedDocs(SphinxPostTransform):
    """Point links to documents under a symlinked folder of the source dir back inside it."""

    default_priority = 5  # before MyST's reference resolver (9)

    def run(self, **kwargs: Any) -> None:
        srcdir = Path(self.env.srcdir)
        links = {Path(os.path.realpath(p)): p.relative_to(srcdir)
                 for p in srcdir.iterdir() if p.is_symlink() and p.is_dir()}
        if not links:
            return
        for node in self.document.findall(addnodes.pending_xref):
            target = Path(node.get("reftarget", ""))
            if node.get("refdomain") != "doc" or not target.is_absolute():
                continue
            for real, link in links.items():
                if target.is_relative_to(real):
                    node["reftarget"] = (link / target.relative_to(real)).as_posix()
                    break


def setup(app: Any) -> dict[str, Any]:
    app.add_post_transform(SymlinkedDocs)
    app.connect("source-read", _source_read)
    app.connect("autodoc-process-signature", _signature)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
