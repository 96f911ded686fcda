"""The one config schema: old zip_utilities YAML plus a ``zipkit:`` section, overrides, validation.

A config file and an optional override (a Python literal dict, as the old batch scripts pass
it) become a :class:`Config`, whose ``plan_kwargs`` and ``run_kwargs`` feed :func:`zipkit.plan`
and :func:`zipkit.run_plan`. :data:`SCHEMA` describes every key once; it drives validation,
:meth:`Config.describe`, :func:`settings_to_yaml` and :func:`schema_reference_markdown`.

Everything is checked before any work: a config that cannot be used raises
:class:`~zipkit.ConfigError` naming the key and the file, and nothing is written.
"""

from __future__ import annotations

import ast
import copy
import difflib
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from . import _options as opt
from ._errors import ConfigError, UsageError
from ._plan import COMPRESSIONS, MATCH_MODES, OVERWRITE_POLICIES

__all__ = [
    "SCHEMA",
    "Config",
    "Setting",
    "load_config",
    "run_config",
    "schema_reference_markdown",
    "settings_to_yaml",
]

if TYPE_CHECKING:  # pragma: no cover
    from ._report import Report

log = logging.getLogger("zipkit")


@dataclass(frozen=True)
class Setting:
    """One key of the config schema.

    ``key`` is the dotted path (``parallel_processing.max_workers``); ``kind`` the value type
    (see :data:`KINDS`); ``default`` the value when the key is absent or null; ``feeds`` the
    :func:`zipkit.plan` / :func:`zipkit.run_plan` argument it sets (empty for keys that are
    accepted for compatibility and not used).
    """

    key: str
    kind: str
    default: Any
    help: str
    feeds: str = ""
    choices: tuple[str, ...] = ()
    required: bool = False

    @property
    def used(self) -> bool:
        return bool(self.feeds)


#: Value types of the schema, as the docs name them (the checked ones from zipkit._options).
KINDS: dict[str, str] = {
    "path": "path",
    "extensions": "string or list of strings",
    "strings": "string or list of strings",
    "regex": "regex string or list of them",
    "text": "string",
    "bool": "true/false",
    "level": f"integer ({opt.LEVEL.expected.removeprefix('an integer ')}, per compression)",
    "kb": f"number (KiB, >= 0, at most {opt.MAX_KIB})",
    "seconds": f"number (seconds, > 0, at most {opt.MAX_TIMEOUT} = 1 week)",
    "workers": f"`auto` or integer from 1 to {opt.MAX_WORKERS}",
    "choice": "one of",
    "report": "true/false or path",
    "any": "any value",
    "mapping": "mapping (any keys)",
}

_ROUTING = "accepted for compatibility with the old tool; not used by zipkit"

#: The schema: every key a config may hold, in the order the docs and ``describe()`` list them.
SCHEMA: tuple[Setting, ...] = (
    # --- the old zip_utilities schema --------------------------------------------------------
    Setting("analysis.input_directory", "path", None,
            "Folder of the files to zip (scanned once, not recursively).", "source", required=True),
    Setting("analysis.filename.extension", "extensions", None,
            "Extensions of the files to put in the archives (`csv` or `[csv, out]`; "
            "case-insensitive, with or without a dot).", "extensions", required=True),
    Setting("file_management.input_directory", "path", None,
            "Folder of marker files whose stems name the archives. Null or absent: the data "
            "files' own stems (`run1.dat` + `run1.log` → `run1.zip`).", "stems_from"),
    Setting("file_management.filename.extension", "extensions", None,
            "Extensions of the marker files (e.g. `[yml]`); needed with "
            "`file_management.input_directory`.", "stem_extensions"),
    Setting("file_management.filename.pattern", "text", None,
            "Marker filter: keep markers matching the glob `*PATTERN*`.", "pattern"),
    Setting("file_management.filename.filters.contains", "strings", None,
            "Marker filter: keep markers whose stem contains all of these.", "contains"),
    Setting("file_management.filename.filters.not_contains", "strings", None,
            "Marker filter: drop markers whose stem contains any of these.", "not_contains"),
    Setting("file_management.filename.filters.regex", "regex", None,
            "Marker filter: keep markers whose stem matches (`re.search`; a list matches any).",
            "regex"),
    Setting("file_management.filename.filters.min_size_kb", "kb", None,
            "Marker filter: keep markers of at least this size.", "min_size_kb"),
    Setting("file_management.filename.filters.max_size_kb", "kb", None,
            "Marker filter: keep markers of at most this size (not less than `min_size_kb`).",
            "max_size_kb"),
    Setting("file_management.output_directory", "path", None,
            "Folder for the archives, created when missing. Null or absent: `results/` beside "
            "the config file.", "output"),
    Setting("parallel_processing.enabled", "bool", True,
            "`false`: run every stem in this process, one after another (workers = 1).", "workers"),
    Setting("parallel_processing.max_workers", "workers", "auto",
            "Worker processes: `auto` (the CPUs this process may use) or a number; never more "
            "than the stems to write.", "workers"),
    Setting("parallel_processing.timeout_per_file", "seconds", None,
            "Time limit per stem (archive), in seconds; a stem past it is reported as timed out "
            "and leaves nothing behind. Null: no limit.", "timeout"),
    Setting("parallel_processing.save_error_reports", "report", False,
            "`true`: write failures as JSON in the output folder; a path: write them there.",
            "save_error_reports"),
    Setting("parallel_processing.progress_reporting", "bool", True,
            "Show a progress bar weighted by bytes.", "progress"),
    Setting("default.config.overwrite.output", "bool", True,
            "`true`: write existing archives again, merged as zip does (`overwrite: always`); "
            "`false`: keep them (`overwrite: never`). `zipkit.overwrite` wins when set.", "overwrite"),
    Setting("default.log_level", "any", None, _ROUTING + " (use `-v`)."),
    Setting("meta", "mapping", None, "Run metadata (`label`, `library`, `basename` …); " + _ROUTING + "."),
    Setting("basename", "any", None, _ROUTING + "."),
    Setting("library", "any", None, _ROUTING + "."),
    Setting("analysis.flag", "any", None, _ROUTING + "."),
    Setting("analysis.type", "any", None, _ROUTING + "."),
    Setting("analysis.by", "any", None, _ROUTING + "."),
    Setting("analysis_settings", "mapping", None, "Routing of the old tool; " + _ROUTING + "."),
    Setting("file_management.flag", "any", None, _ROUTING + "."),
    # --- zipkit's own options, named as in the library ---------------------------------------
    Setting("zipkit.match", "choice", "prefix",
            "`prefix`: a file belongs to the longest stem it starts with, followed by a "
            "character that is not a letter or digit. `contains`: the old tool's substring rule "
            "(`case1` also takes `case10_x.csv`).", "match", MATCH_MODES),
    Setting("zipkit.stems", "strings", None,
            "Stem names given directly, instead of marker files.", "stems"),
    Setting("zipkit.overwrite", "choice", None,
            "`always` (merge as zip does: this run's files replace the members of the same name, "
            "every other member is kept), `update` (skip archives newer than all their files "
            "that already hold them all; otherwise merge), `never` (skip existing archives) or "
            "`replace` (rebuild from this run's files only; the members dropped are listed). "
            "Null: from `default.config.overwrite.output`.", "overwrite", OVERWRITE_POLICIES),
    Setting("zipkit.compression", "choice", "deflate", "Compression method.", "compression",
            COMPRESSIONS),
    Setting("zipkit.level", "level", None,
            "Compression level: deflate and lzma 0–9 (deflate default 6), bzip2 1–9; `stored` "
            "takes only 0.", "level"),
    Setting("zipkit.deflate_backend", "choice", "auto",
            "Deflate implementation: `auto` (ISA-L when installed), `zlib` or `isal`; the output "
            "is standard deflate either way.", "deflate_backend", ("auto", "zlib", "isal")),
    Setting("zipkit.verify", "bool", False,
            "Re-read every archive and check its CRCs before it is renamed into place.", "verify"),
    Setting("zipkit.delete_sources", "bool", False,
            "Delete a stem's files once its archive is in place, fsynced and verified.",
            "delete_sources"),
    Setting("zipkit.reproducible", "bool", False,
            "Fixed timestamps (`SOURCE_DATE_EPOCH` when set) and permissions: equal inputs give "
            "byte-identical archives.", "reproducible"),
    Setting("zipkit.durable", "bool", False, "fsync every archive and the output folder.", "durable"),
    Setting("zipkit.timeout", "seconds", None,
            "Time limit per stem in seconds; wins over `parallel_processing.timeout_per_file`.",
            "timeout"),
    Setting("zipkit.workers", "workers", None,
            "`auto` or a number; wins over `parallel_processing.enabled` / `max_workers`.",
            "workers"),
    Setting("zipkit.executor", "choice", None,
            "`process` (a process pool, the default) or `dask` (a local Dask cluster, or the "
            "scheduler at `scheduler_address`).", "executor", ("process", "dask")),
    Setting("zipkit.scheduler_address", "text", None,
            "Dask scheduler to run on (`tcp://host:8786`); implies `executor: dask`.", "executor"),
    Setting("zipkit.progress", "bool", None,
            "Progress bar; wins over `parallel_processing.progress_reporting`.", "progress"),
    Setting("zipkit.save_error_reports", "report", None,
            "Like `parallel_processing.save_error_reports`, which it wins over.",
            "save_error_reports"),
)

_BY_KEY: dict[str, Setting] = {s.key: s for s in SCHEMA}
_SECTIONS: frozenset[str] = frozenset(
    ".".join(s.key.split(".")[:i]) for s in SCHEMA for i in range(1, s.key.count(".") + 1)
)
_SECTION_HELP = {
    "": "The old zip_utilities schema, unchanged",
    "zipkit": "zipkit's own options (`zipkit:` section), named as in the library",
}


# --------------------------------------------------------------------------- reading
#: The largest config file read, in bytes (1 MiB): the old tool's configs are a few KB.
MAX_CONFIG_BYTES = 1 << 20
#: The most values a config may hold once its YAML aliases (``*name``) are expanded.
MAX_YAML_VALUES = 100_000


class _SafeLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """A safe loader (libyaml's parser when installed) that logs duplicate keys (the last one
    wins, as in the old tool)."""


def _construct_mapping(loader: _SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, str) and key in seen:
            log.warning("config: key %r appears twice (line %d); the last one is used",
                        key, key_node.start_mark.line + 1)
        if isinstance(key, str):
            seen.add(key)
    mapping: dict[Any, Any] = yaml.constructor.SafeConstructor.construct_mapping(loader, node, deep=deep)
    return mapping


_SafeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _one_line(text: object, limit: int = 200) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _yaml_error(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    problem = getattr(e, "problem", None) or str(e)
    if isinstance(e, yaml.constructor.ConstructorError):
        m = re.search(r"tag '([^']*)'", problem)
        if m:
            tag = m.group(1).replace("tag:yaml.org,2002:", "!!")
            return (f"YAML tag '{tag}'{where} refused: configs are read with a safe loader, "
                    f"which builds no Python objects and runs no code")
    return f"not valid YAML: {_one_line(problem)}{where}"


def _check_expansion(root: yaml.Node, path: Path) -> None:
    """Refuse a node graph that aliases expand past :data:`MAX_YAML_VALUES`, or that holds itself.

    Aliases share nodes, so nine aliases of nine aliases … are a few lines that expand to
    billions of values (a "billion laughs"); sizes are summed per shared node, never expanded.
    """
    size: dict[int, int] = {}
    open_nodes: set[int] = set()  # the nodes on the path from the root
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        k = id(node)
        value = node.value if isinstance(node, yaml.CollectionNode) else ()
        kids = [n for pair in value for n in pair] if isinstance(node, yaml.MappingNode) else value
        if children_done:
            open_nodes.discard(k)
            size[k] = 1 + sum(size[id(c)] for c in kids)
            if size[k] > MAX_YAML_VALUES:
                raise ConfigError(
                    f"the YAML holds more than {MAX_YAML_VALUES} values once its aliases (*name) are "
                    f"expanded (an alias bomb?); a zipkit config holds a few dozen", path=path)
            continue
        if k in size:
            continue
        if k in open_nodes:
            raise ConfigError(f"a YAML alias (line {node.start_mark.line + 1}) refers to a node that "
                              f"holds it: a config cannot contain itself", path=path)
        open_nodes.add(k)
        stack.append((node, True))
        stack.extend((c, False) for c in kids if id(c) not in size)


def _load_yaml(text: str, path: Path) -> Any:
    """The document in ``text``, built only after :func:`_check_expansion` passed."""
    loader = _SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, path)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)  # never more: a 50 MB file is refused at once
    except FileNotFoundError:
        raise ConfigError("config file not found", path=path) from None
    except IsADirectoryError:
        raise ConfigError("is a folder, not a config file", path=path) from None
    except OSError as e:
        raise ConfigError(f"cannot read the config file: {e.strerror}", path=path) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"the config file is larger than {MAX_CONFIG_BYTES} bytes (1 MiB), the most "
                          f"zipkit reads; a config is a few KB: is this the right file?", path=path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text (byte {e.start})", path=path) from None
    try:
        data = _load_yaml(text, path)
    except yaml.YAMLError as e:
        raise ConfigError(_yaml_error(e), path=path) from None
    except RecursionError:
        raise ConfigError("not usable YAML: nested too deeply", path=path) from None
    if data is None:
        raise ConfigError("the config is empty", path=path)
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping of keys at the top, got {_type_name(data)}", path=path)
    return data


def _parse_override(text: str | Mapping[str, Any] | None, path: Path) -> dict[str, Any] | None:
    """The override as a dict: a Python literal (``ast.literal_eval``, never ``eval``) or a dict."""
    if text is None:
        return None
    if isinstance(text, Mapping):
        value: Any = dict(text)
    elif isinstance(text, str):
        if not text.strip():
            return None
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
            reason = "it holds names, calls or operators, which are never evaluated" \
                if isinstance(e, ValueError) else _one_line(getattr(e, "msg", e) or e.__class__.__name__)
            raise ConfigError(
                f"the override is not a Python literal dict ({reason}): {_one_line(text, 120)}",
                path=path) from None
    else:
        raise ConfigError(f"the override must be a dict or its text, not {_type_name(text)}", path=path)
    if not isinstance(value, dict):
        raise ConfigError(f"the override must be a dict like \"{{'analysis': {{...}}}}\", not "
                          f"{_type_name(value)}: {_one_line(text, 120)}", path=path)
    return value


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: mappings merge key by key; any other value replaces."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(dict(out[k]), v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _leaf_keys(node: Mapping[str, Any], prefix: str = "") -> set[str]:
    keys = set()
    for k, v in node.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        keys.add(key)
        if isinstance(v, Mapping) and key not in _BY_KEY:
            keys |= _leaf_keys(v, key)
    return keys


# --------------------------------------------------------------------------- checking
class _Bad(Exception):
    """A value of the wrong type or range; turned into a ConfigError naming key and file."""


def _type_name(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"a boolean ({v})"
    if isinstance(v, (int, float)):
        return f"a number ({v})"
    if isinstance(v, str):
        return f"text ({_one_line(repr(v), 60)})"
    if isinstance(v, (list, tuple)):
        return "a list"
    if isinstance(v, dict):
        return "a mapping"
    return f"a {type(v).__name__}"


def _strings(v: Any, *, allow_empty: bool) -> list[str]:
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, (list, tuple)) or not all(isinstance(x, str) for x in items):
        raise _Bad(f"expected a string or a list of strings, got {_type_name(v)}")
    items = [x for x in items if x.strip()] if allow_empty else list(items)
    if not allow_empty and (not items or not all(x.strip() for x in items)):
        raise _Bad("expected at least one non-empty string")
    return list(items)


#: The kinds whose values zipkit._options checks, as the library and the CLI check them.
_CONVERTERS: dict[str, opt.Kind[Any]] = {"kb": opt.KIB, "seconds": opt.SECONDS, "workers": opt.WORKERS,
                                         "level": opt.LEVEL}


def _converted(s: Setting, v: Any) -> Any:
    try:
        if s.kind in _CONVERTERS:
            return _CONVERTERS[s.kind](v, s.key)
        if s.kind == "extensions":
            opt.EXTENSIONS(v, s.key)
            return v
        if s.kind == "regex":
            return opt.REGEX(v, s.key)
        return opt.choice(v, s.choices, s.key)
    except opt.BadValue as e:
        note = "; null means no limit" if s.kind == "seconds" else ""
        raise _Bad(e.reason + note) from None


def _check_value(s: Setting, v: Any) -> Any:
    """The value of ``s`` in its library form, or raise :class:`_Bad`."""
    kind = s.kind
    if kind in ("any", "mapping"):
        if kind == "mapping" and v is not None and not isinstance(v, dict):
            raise _Bad(f"expected a mapping, got {_type_name(v)}")
        return v
    if v is None:
        return None
    if kind == "path":
        if isinstance(v, os.PathLike):  # from an override given as a dict
            v = os.fspath(v)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            raise _Bad(f"expected a folder path, got {_type_name(v)}; quote a folder named like a "
                       f"number ('{v}')")
        if not isinstance(v, str) or not v.strip():
            raise _Bad(f"expected a folder path, got {_type_name(v)}")
        return v
    if kind == "extensions":
        return _converted(s, _strings(v, allow_empty=False))
    if kind == "strings":
        return _strings(v, allow_empty=True) or None
    if kind == "regex":
        return _converted(s, _strings(v, allow_empty=True))
    if kind == "text":
        if not isinstance(v, str):
            raise _Bad(f"expected text, got {_type_name(v)}")
        return v or None
    if kind == "bool":
        if not isinstance(v, bool):
            raise _Bad(f"expected true or false, got {_type_name(v)}")
        return v
    if kind in _CONVERTERS or kind == "choice":
        return _converted(s, v)
    if kind == "report":
        if isinstance(v, os.PathLike):
            v = os.fspath(v)
        if isinstance(v, bool) or (isinstance(v, str) and v.strip()):
            return v
        raise _Bad(f"expected true, false or a file path, got {_type_name(v)}")
    raise AssertionError(f"unknown kind {kind!r}")  # pragma: no cover


def _children(section: str) -> list[str]:
    depth = section.count(".") + 1 if section else 0
    names = {k.split(".")[depth] for k in (*_BY_KEY, *_SECTIONS)
             if (k.startswith(section + ".") if section else True) and k.count(".") >= depth}
    return sorted(names)


def _unknown_key_message(key: str) -> str:
    section, _, name = key.rpartition(".")
    siblings = _children(section)
    elsewhere = sorted(k for k in (*_BY_KEY, *_SECTIONS) if k.rsplit(".", 1)[-1] == name and k != key)
    if elsewhere:  # the right name in the wrong section
        return f"unknown key here; did you mean '{elsewhere[0]}'?"
    close = difflib.get_close_matches(name, siblings, n=1, cutoff=0.6)
    if close:
        full = f"{section}.{close[0]}" if section else close[0]
        return f"unknown key; did you mean '{full}'?"
    close = difflib.get_close_matches(key, [*_BY_KEY, *_SECTIONS], n=1, cutoff=0.75)
    if close:
        return f"unknown key; did you mean '{close[0]}'?"
    where = f"in '{section}'" if section else "at the top"
    return f"unknown key; expected {where} one of: {', '.join(siblings)}"


def _flatten(data: Mapping[str, Any], fail: Callable[[str, str], ConfigError]) -> dict[str, Any]:
    """Schema key → raw value, checking that every key is known and every section a mapping."""
    out: dict[str, Any] = {}

    def walk(node: Mapping[Any, Any], prefix: str) -> None:
        for name, value in node.items():
            if not isinstance(name, str):
                raise fail(prefix or "", f"keys must be text, found {_type_name(name)}")
            key = f"{prefix}.{name}" if prefix else name
            if key in _BY_KEY:
                out[key] = value
            elif key in _SECTIONS:
                if value is None:
                    continue
                if not isinstance(value, Mapping):
                    raise fail(key, f"expected a section of keys ({', '.join(_children(key))}), "
                                    f"got {_type_name(value)}")
                walk(value, key)
            else:
                raise fail(key, _unknown_key_message(key))

    walk(data, "")
    return out


def _resolve_path(value: str, base: Path) -> str:
    p = Path(value).expanduser()
    return os.path.abspath(p if p.is_absolute() else base / p)


# --------------------------------------------------------------------------- the config
@dataclass(frozen=True)
class Config:
    """A validated config: every schema key resolved, and the calls it stands for.

    Attributes
    ----------
    path
        The config file (absolute).
    settings
        Every schema key → its value after the override, defaults and path resolution.
    origins
        Every schema key → ``"config"``, ``"override"`` or ``"default"``.
    override
        The parsed override dict, if any.
    missing
        Folder keys whose folder does not exist (only with ``require_folders=False``).
    """

    path: Path
    settings: Mapping[str, Any]
    origins: Mapping[str, str]
    override: dict[str, Any] | None = None
    _plan_kwargs: dict[str, Any] = field(default_factory=dict, repr=False)
    _run_kwargs: dict[str, Any] = field(default_factory=dict, repr=False)
    _output_null: bool = field(default=False, repr=False)
    missing: tuple[str, ...] = ()

    @property
    def plan_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`zipkit.plan` (a fresh copy on each access)."""
        return copy.deepcopy(self._plan_kwargs)

    @property
    def run_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`zipkit.run_plan`: workers, progress, save_error_reports,
        executor (a fresh copy on each access)."""
        return copy.deepcopy(self._run_kwargs)

    def describe(self) -> str:
        """The resolved settings as text: each key, its value and where it came from, then
        the library calls the config stands for (what ``--print-config`` shows)."""
        lines = [f"zipkit config: {self.path}"]
        if self.override:
            lines.append(f"override: {_one_line(repr(self.override), 400)}")
        rows = []
        unused = []
        for s in SCHEMA:
            origin = self.origins[s.key]
            if not s.used:
                if origin != "default":
                    unused.append(s.key)
                continue
            value = self.settings[s.key]
            note = " (null: results/ beside the config)" \
                if s.key == "file_management.output_directory" and self._output_null else ""
            if s.key in self.missing:
                note += " (does not exist)"
            rows.append((s.key, _one_line(repr(value) if not isinstance(value, str) else value, 100) + note,
                         origin))
        width = max(len(r[0]) for r in rows)
        vwidth = min(60, max(len(r[1]) for r in rows))
        lines.append("")
        lines.append("settings:")
        lines += [f"  {k.ljust(width)}  {v.ljust(vwidth)}  [{o}]" for k, v, o in rows]
        if unused:
            lines.append(f"accepted, not used by zipkit: {', '.join(unused)}")
        meta = self.settings.get("meta")
        label = meta.get("label") if isinstance(meta, dict) else None
        if label is not None:
            lines.append(f"meta.label: {_one_line(label, 80)}")
        lines.append("")
        lines.append("runs:")
        lines.append("  zipkit.plan(")
        lines += [f"      {k}={v!r}," for k, v in self._plan_kwargs.items()]
        lines.append("  )")
        lines.append("  zipkit.run_plan(plan, " + ", ".join(f"{k}={v!r}" for k, v in self._run_kwargs.items())
                     + ")")
        if self._plan_kwargs["stems_from"] is not None and self._plan_kwargs["match"] == "prefix":
            lines.append("note: a data file belongs to the longest marker stem it starts with, followed by a "
                         "character that is not a letter or digit; the old tool matched stems as substrings "
                         "anywhere in the name (zipkit: {match: contains} restores that).")
        for key in self.missing:
            lines.append(f"note: {key}: folder does not exist: {self.settings[key]}; a run would stop "
                         "here (exit 2)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()


def load_config(path: str | os.PathLike[str], overrides: str | Mapping[str, Any] | None = None, *,
                require_folders: bool = True) -> Config:
    """Read and validate a YAML config (old zip_utilities schema plus a ``zipkit:`` section).

    Parameters
    ----------
    path
        The config file. Relative paths inside it resolve against its folder.
    overrides
        A dict, or its text as a Python literal (``"{'analysis': {'input_directory': 'x'}}"``,
        parsed with ``ast.literal_eval``, never ``eval``), deep-merged into the config.
    require_folders
        ``False`` (``--print-config``): a missing input folder is listed in ``missing``
        instead of raising, so the settings can still be shown.

    Returns
    -------
    Config
        ``cfg.plan_kwargs`` for :func:`zipkit.plan`, ``cfg.run_kwargs`` for
        :func:`zipkit.run_plan`, ``cfg.describe()`` for people. This is also the reverse of
        :func:`settings_to_yaml` (config file → the form's settings).

    Raises
    ------
    ConfigError
        Unreadable file, bad YAML, an unsafe tag, an unknown key (with a "did you mean"), a
        value of the wrong type, a missing folder, a malformed override. ``key`` and ``path``
        name the culprit. Nothing has been written.

    Examples
    --------
    >>> cfg = load_config("zip_config.yml", "{'meta': {'label': '03c'}}")  # doctest: +SKIP
    >>> p = zipkit.plan(**cfg.plan_kwargs)                                  # doctest: +SKIP
    """
    cfg_path = Path(os.path.abspath(Path(path).expanduser()))
    data = _read_yaml(cfg_path)
    over = _parse_override(overrides, cfg_path)
    over_keys = _leaf_keys(over) if over else set()

    def fail(key: str, message: str) -> ConfigError:
        from_override = key and any(key == k or key.startswith(k + ".") or k.startswith(key + ".")
                                    for k in over_keys)
        return ConfigError(message + (" (set by the override)" if from_override else ""),
                           key=key or None, path=cfg_path)

    file_flat = _flatten(data, fail)
    merged = _merge(data, over) if over else data
    flat = _flatten(merged, fail)

    settings: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for s in SCHEMA:
        raw = flat.get(s.key)
        origins[s.key] = ("override" if s.key in over_keys else
                          "config" if s.key in file_flat else "default")
        try:
            value = _check_value(s, raw)
        except _Bad as e:
            raise fail(s.key, str(e)) from None
        settings[s.key] = s.default if value is None else value
    base = cfg_path.parent

    def need(key: str, why: str) -> None:
        if settings[key] is None:
            raise fail(key, f"missing: {why}")

    missing: list[str] = []
    need("analysis.input_directory", "the folder of the files to zip")
    need("analysis.filename.extension", "the extensions of the files to zip (e.g. [csv])")
    for key in ("analysis.input_directory", "file_management.input_directory"):
        if settings[key] is None:
            continue
        p = _resolve_path(settings[key], base)
        if not os.path.exists(p) and not require_folders:
            missing.append(key)
        elif not os.path.exists(p):
            raise fail(key, f"folder does not exist: {p}")
        elif not os.path.isdir(p):
            raise fail(key, f"not a folder: {p}")
        settings[key] = p
    out_key = "file_management.output_directory"
    output = _resolve_path(settings[out_key], base) if settings[out_key] is not None \
        else os.path.join(str(base), "results")
    if os.path.exists(output) and not os.path.isdir(output):
        raise fail(out_key, f"not a folder: {output}")
    output_null = settings[out_key] is None
    settings[out_key] = output
    stems_from = settings["file_management.input_directory"]
    if stems_from is not None:
        need("file_management.filename.extension", "the marker files' extensions (e.g. [yml]), "
             "needed with file_management.input_directory")
        if settings["zipkit.stems"] is not None:
            raise fail("zipkit.stems",
                       "give either zipkit.stems or file_management.input_directory, not both")
    lo = settings["file_management.filename.filters.min_size_kb"]
    hi = settings["file_management.filename.filters.max_size_kb"]
    compression, level = settings["zipkit.compression"], settings["zipkit.level"]
    try:
        opt.kib_range(lo, hi)
    except opt.BadValue as e:
        raise fail("file_management.filename.filters.min_size_kb", str(e)) from None
    try:
        opt.compression_level(level, compression)
    except opt.BadValue as e:
        raise fail("zipkit.level", str(e)) from None
    for key in ("parallel_processing.save_error_reports", "zipkit.save_error_reports"):
        if isinstance(settings[key], str):
            settings[key] = _resolve_path(settings[key], base)

    # zipkit's own keys, when set, win over their old counterparts
    overwrite = settings["zipkit.overwrite"] or (
        "always" if settings["default.config.overwrite.output"] else "never")
    timeout = settings["zipkit.timeout"] or settings["parallel_processing.timeout_per_file"]
    if settings["zipkit.workers"] is not None:
        workers = settings["zipkit.workers"]
    else:
        enabled = settings["parallel_processing.enabled"]
        workers = settings["parallel_processing.max_workers"] if enabled else 1
    progress = settings["zipkit.progress"] if settings["zipkit.progress"] is not None \
        else settings["parallel_processing.progress_reporting"]
    report = settings["zipkit.save_error_reports"] if settings["zipkit.save_error_reports"] is not None \
        else settings["parallel_processing.save_error_reports"]
    executor, address = settings["zipkit.executor"], settings["zipkit.scheduler_address"]
    if address is not None and executor == "process":
        raise fail("zipkit.scheduler_address", "a scheduler address needs executor: dask, not process")
    run_executor = address if address is not None else ("dask" if executor == "dask" else None)

    plan_kwargs: dict[str, Any] = {
        "source": settings["analysis.input_directory"],
        "extensions": list(settings["analysis.filename.extension"]),
        "output": output,
        "stems_from": stems_from,
        "stem_extensions": settings["file_management.filename.extension"] if stems_from else None,
        "stems": settings["zipkit.stems"],
        "match": settings["zipkit.match"],
        "pattern": settings["file_management.filename.pattern"],
        "contains": settings["file_management.filename.filters.contains"],
        "not_contains": settings["file_management.filename.filters.not_contains"],
        "regex": settings["file_management.filename.filters.regex"],
        "min_size_kb": lo,
        "max_size_kb": hi,
        "overwrite": overwrite,
        "compression": compression,
        "level": level,
        "deflate_backend": settings["zipkit.deflate_backend"],
        "verify": settings["zipkit.verify"],
        "delete_sources": settings["zipkit.delete_sources"],
        "reproducible": settings["zipkit.reproducible"],
        "durable": settings["zipkit.durable"],
        "timeout": timeout,
    }
    run_kwargs: dict[str, Any] = {
        "workers": workers,
        "progress": progress,
        "save_error_reports": report,
        "executor": run_executor,
    }
    unused = [s.key for s in SCHEMA if not s.used and origins[s.key] != "default"]
    if unused:
        log.debug("config %s: accepted, not used: %s", cfg_path, ", ".join(unused))
    return Config(cfg_path, settings, origins, over, plan_kwargs, run_kwargs, output_null, tuple(missing))


_PLAN_ARGS = ("source", "extensions", "output", "stems_from", "stem_extensions", "stems", "match",
              "pattern", "contains", "not_contains", "regex", "min_size_kb", "max_size_kb", "overwrite",
              "compression", "level", "deflate_backend", "verify", "delete_sources", "reproducible",
              "durable", "timeout", "allow_empty")
_RUN_ARGS = ("workers", "executor", "progress", "cancel", "save_error_reports")


def run_config(path: str | os.PathLike[str], overrides: str | Mapping[str, Any] | None = None,
               **run_overrides: Any) -> Report:
    """Run a YAML config (old zip_utilities schema plus ``zipkit:``) and return the report.

    Parameters
    ----------
    path
        The config file; see :func:`load_config`.
    overrides
        A dict, or its text as a Python literal dict (as the old batch scripts pass it),
        deep-merged into the config.
    **run_overrides
        Arguments of :func:`zipkit.plan` or :func:`zipkit.run_plan` that win over the config
        (``workers=2``, ``progress=False``, ``executor=pool``, ``cancel=event`` …).

    Returns
    -------
    Report

    Raises
    ------
    ConfigError
        The config or override cannot be used; nothing was written.

    Examples
    --------
    >>> report = zipkit.run_config("zip_config.yml",
    ...     "{'analysis': {'input_directory': '../output/csv/03c_100yr'}}")  # doctest: +SKIP
    >>> report.failed  # doctest: +SKIP
    ()
    """
    from ._plan import plan
    from ._run import run_plan

    cfg = load_config(path, overrides)
    plan_kw, run_kw = cfg.plan_kwargs, cfg.run_kwargs
    for k, v in run_overrides.items():
        if k in _RUN_ARGS:
            run_kw[k] = v
        elif k in _PLAN_ARGS:
            plan_kw[k] = v
        else:
            raise UsageError(f"run_config() got an unexpected argument {k!r}")
    return run_plan(plan(**plan_kw, inputs=[cfg.path]), **run_kw)  # the config is never an output


# --------------------------------------------------------------------------- writing
def _rel(path: str | os.PathLike[str], relative_to: Path | None) -> str:
    p = os.path.abspath(Path(path).expanduser())
    if relative_to is None:
        return Path(p).as_posix()
    try:
        return Path(os.path.relpath(p, os.path.abspath(relative_to))).as_posix()
    except ValueError:  # another drive on Windows
        return Path(p).as_posix()


def _listed(v: str | list[str] | tuple[str, ...] | None) -> list[str] | None:
    if v is None:
        return None
    return [v] if isinstance(v, str) else list(v)


def _put(tree: dict[str, Any], key: str, value: Any) -> None:
    *sections, name = key.split(".")
    node = tree
    for s in sections:
        node = node.setdefault(s, {})
    node[name] = value


class _Dumper(yaml.SafeDumper):
    """Block mappings, flow lists (``extension: [csv]``), as the old configs are written."""


_Dumper.add_representer(
    list, lambda d, data: d.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True))


def settings_to_yaml(plan_kwargs: Mapping[str, Any], run_kwargs: Mapping[str, Any] | None = None, *,
                     relative_to: Path | None = None) -> str:
    """YAML config text for the given settings, which ``python -m zipkit CONFIG.yml`` runs unchanged.

    The reverse of :func:`load_config`: ``load_config(saved).plan_kwargs`` /
    ``.run_kwargs`` give the same settings back. Old-schema keys are used where the old tool
    has them; the rest go under ``zipkit:``. Only values that differ from the defaults are
    written in ``zipkit:``.

    Parameters
    ----------
    plan_kwargs
        Keyword arguments of :func:`zipkit.plan` (``source`` and ``extensions`` needed).
        ``output=None`` (the source folder, in the library) is written as the source folder.
    run_kwargs
        ``workers``, ``executor`` (``None``, ``"dask"`` or a scheduler address),
        ``progress`` (a bool; a callable is not saved), ``save_error_reports``; ``cancel`` is
        not saved (nor is ``allow_empty`` of ``plan_kwargs``).
    relative_to
        The folder the config will be saved in: paths are written relative to it (the config
        then moves with its folders). ``None``: absolute paths.

    Returns
    -------
    str

    Raises
    ------
    UsageError
        An argument that cannot be saved (an executor object, an unknown argument).

    Examples
    --------
    >>> text = settings_to_yaml({"source": "csv", "extensions": ["csv"], "output": "zip"},
    ...                         {"workers": 4}, relative_to=Path("."))  # doctest: +SKIP
    >>> Path("zip_config.yml").write_text(text)  # doctest: +SKIP
    """
    pk = dict(plan_kwargs)
    rk = dict(run_kwargs or {})
    unknown = [k for k in pk if k not in _PLAN_ARGS] + [k for k in rk if k not in _RUN_ARGS]
    if unknown:
        raise UsageError(f"settings_to_yaml: unknown argument(s) {', '.join(map(repr, unknown))}")
    for k in ("source", "extensions"):
        if pk.get(k) is None:
            raise UsageError(f"settings_to_yaml: {k!r} is needed")
    tree: dict[str, Any] = {}

    def put(key: str, value: Any) -> None:
        assert key in _BY_KEY, key
        _put(tree, key, value)

    put("default.config.overwrite.output", pk.get("overwrite", "always") != "never")
    put("analysis.input_directory", _rel(pk["source"], relative_to))
    put("analysis.filename.extension", _listed(pk["extensions"]))
    if pk.get("stems_from") is not None:
        put("file_management.input_directory", _rel(pk["stems_from"], relative_to))
        put("file_management.filename.extension", _listed(pk.get("stem_extensions")))
        put("file_management.filename.pattern", pk.get("pattern"))
        put("file_management.filename.filters.contains", _listed(pk.get("contains")) or [])
        put("file_management.filename.filters.not_contains", _listed(pk.get("not_contains")) or [])
        for k in ("regex", "min_size_kb", "max_size_kb"):
            if pk.get(k) is not None:
                put(f"file_management.filename.filters.{k}", pk[k])
    out = pk.get("output")
    put("file_management.output_directory", _rel(out if out is not None else pk["source"], relative_to))

    workers = rk.get("workers", "auto")
    put("parallel_processing.enabled", workers != 1)
    put("parallel_processing.max_workers", "auto" if workers == 1 else workers)
    put("parallel_processing.timeout_per_file", pk.get("timeout"))
    report = rk.get("save_error_reports")
    if report is not None and not isinstance(report, bool):
        report = _rel(report, relative_to)
    put("parallel_processing.save_error_reports", bool(report) if not isinstance(report, str) else report)
    progress = rk.get("progress", True)
    put("parallel_processing.progress_reporting", progress if isinstance(progress, bool) else True)

    if pk.get("overwrite") in ("update", "replace"):
        put("zipkit.overwrite", pk["overwrite"])
    if pk.get("stems") is not None:
        put("zipkit.stems", list(pk["stems"]))
    for k in ("match", "compression", "level", "deflate_backend", "verify", "delete_sources",
              "reproducible", "durable"):
        s = _BY_KEY[f"zipkit.{k}"]
        if k in pk and pk[k] != s.default and not (s.kind == "bool" and not pk[k]):
            put(s.key, pk[k])
    executor = rk.get("executor")
    if executor is not None:
        if not isinstance(executor, str):
            raise UsageError("settings_to_yaml: an executor object cannot be saved in a config; "
                             "use None, 'dask' or a scheduler address")
        if executor in ("dask", "dask://local"):
            put("zipkit.executor", "dask")
        else:
            put("zipkit.executor", "dask")
            put("zipkit.scheduler_address", executor)

    head = ("# zipkit config: the old zip_utilities schema, plus zipkit's own options under 'zipkit:'.\n"
            "# Run it with: python -m zipkit THIS_FILE.yml\n"
            "# See what it would do: zipkit --print-config THIS_FILE.yml\n")
    order = ["default", "analysis", "file_management", "parallel_processing", "zipkit"]
    ordered = {k: tree[k] for k in order if k in tree}
    return head + yaml.dump(ordered, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                            allow_unicode=True, width=1000)


# --------------------------------------------------------------------------- docs
def schema_reference_markdown() -> str:
    """The configuration reference as Markdown tables, generated from :data:`SCHEMA`."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    def default(s: Setting) -> str:
        if s.key == "file_management.output_directory":
            return "`results/` beside the config"
        if s.default is None:
            return "—" if s.used else ""
        return f"`{yaml.safe_dump(s.default, default_flow_style=True).strip().removesuffix('...').strip()}`"

    def kind(s: Setting) -> str:
        if s.kind == "choice":
            return " / ".join(f"`{c}`" for c in s.choices)
        return KINDS[s.kind]

    out = [
        "# Configuration reference",
        "",
        "`python -m zipkit CONFIG.yml [OVERRIDE]` and `zipkit.run_config(path, overrides)` read the old "
        "zip_utilities YAML schema unchanged, plus zipkit's own options under a `zipkit:` section. "
        "Relative paths resolve against the config file's folder. `OVERRIDE` is a Python literal dict "
        "(`\"{'analysis': {'input_directory': '../csv/03c'}}\"`), parsed with `ast.literal_eval` and "
        "deep-merged into the config. YAML is read with a safe loader; a config file is at most "
        f"{MAX_CONFIG_BYTES} bytes (1 MiB) and holds at most {MAX_YAML_VALUES:,} values once its aliases "
        "(`*name`) are expanded. Unknown keys, wrong types, values out of range, "
        "missing folders, unsafe tags and a malformed override stop the run before any archive is "
        "written (exit code 2). `zipkit --print-config CONFIG.yml [OVERRIDE]` shows the resolved settings.",
        "",
    ]
    for title, keep in (("Old zip_utilities keys", lambda s: not s.key.startswith("zipkit.")),
                        ("`zipkit:` section", lambda s: s.key.startswith("zipkit."))):
        out += [f"## {title}", "", "| key | type | default | library argument | meaning |",
                "|---|---|---|---|---|"]
        for s in SCHEMA:
            if keep(s):
                req = " **(required)**" if s.required else ""
                arg = f"`{s.feeds}`" if s.feeds else "not used"
                out.append(f"| `{s.key}`{req} | {cell(kind(s))} | {cell(default(s))} | {arg} "
                           f"| {cell(s.help)} |")
        out.append("")
    out += [
        "Where a `zipkit:` key and an old key set the same thing (`workers`, `timeout`, `overwrite`, "
        "`progress`, `save_error_reports`), the `zipkit:` key wins when it is not null. "
        "The old tool matched marker stems as substrings anywhere in a file name; zipkit's default "
        "is the boundary-aware prefix rule, and `zipkit: {match: contains}` restores the old one.",
        "",
    ]
    return "\n".join(out)
