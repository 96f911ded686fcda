"""A config file checked and resolved: the old zip_utilities YAML plus a ``zipkit:`` section.

A config file and an optional override (a Python literal dict, as the old batch scripts pass
it) become a :class:`Config`, whose ``plan_kwargs`` and ``run_kwargs`` feed :func:`zipkit.plan`
and :func:`zipkit.run_plan`. The keys are those of :data:`zipkit._schema.SCHEMA` (built from the
option table); the file is read by ``_config_read``, written by ``_config_write``
(:func:`settings_to_yaml`) and documented by ``_config_docs`` (:func:`schema_reference_markdown`).

Everything is checked before any work: a config that cannot be used raises
:class:`~zipkit.ConfigError` naming the key and the file, and nothing is written.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._config_docs import schema_reference_markdown
from ._config_read import (
    MAX_CONFIG_BYTES,
    MAX_YAML_VALUES,
    merge,
    one_line,
    parse_override,
    read_yaml,
    type_name,
)
from ._config_write import settings_to_yaml
from ._errors import ConfigError, UsageError
from ._options import CONVERTERS, EXTENSIONS, BadValue, choice, compression_level, kib_range
from ._options import names as option_names
from ._schema import BY_KEY, PLAN_ARGS, RUN_ARGS, SCHEMA, SECTIONS, Setting, children, unknown_key_message

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_YAML_VALUES",
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


def _leaf_keys(node: Mapping[str, Any], prefix: str = "") -> set[str]:
    keys = set()
    for k, v in node.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        keys.add(key)
        if isinstance(v, Mapping) and key not in BY_KEY:
            keys |= _leaf_keys(v, key)
    return keys


# --------------------------------------------------------------------------- checking
class _Bad(Exception):
    """A value of the wrong type or range; turned into a ConfigError naming key and file."""


def _strings(v: Any, *, allow_empty: bool) -> list[str]:
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, (list, tuple)) or not all(isinstance(x, str) for x in items):
        raise _Bad(f"expected a string or a list of strings, got {type_name(v)}")
    items = [x for x in items if x.strip()] if allow_empty else list(items)
    if not allow_empty and (not items or not all(x.strip() for x in items)):
        raise _Bad("expected at least one non-empty string")
    return list(items)


def _converted(s: Setting, v: Any) -> Any:
    """``v`` checked by the converter of its kind (zipkit._options), as the library checks it."""
    try:
        if s.kind == "extensions":
            EXTENSIONS(v, s.key)
            return v  # the library normalises them; the config keeps them as written
        if s.kind == "choice":
            return choice(v, s.choices, s.key)
        return CONVERTERS[s.kind](v, s.key)
    except BadValue as e:
        note = "; null means no limit" if s.kind == "seconds" else ""
        raise _Bad(e.reason + note) from None


def _check_value(s: Setting, v: Any) -> Any:
    """The value of ``s`` in its library form, or raise :class:`_Bad`."""
    kind = s.kind
    if kind in ("any", "mapping"):
        if kind == "mapping" and v is not None and not isinstance(v, dict):
            raise _Bad(f"expected a mapping, got {type_name(v)}")
        return v
    if v is None:
        return None
    if kind == "path":
        if isinstance(v, os.PathLike):  # from an override given as a dict
            v = os.fspath(v)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            raise _Bad(f"expected a folder path, got {type_name(v)}; quote a folder named like a "
                       f"number ('{v}')")
        if not isinstance(v, str) or not v.strip():
            raise _Bad(f"expected a folder path, got {type_name(v)}")
        return v
    if kind == "extensions":
        return _converted(s, _strings(v, allow_empty=False))
    if kind == "strings":
        return _strings(v, allow_empty=True) or None
    if kind == "regex":
        return _converted(s, _strings(v, allow_empty=True))
    if kind == "text":
        if not isinstance(v, str):
            raise _Bad(f"expected text, got {type_name(v)}")
        return v or None
    if kind == "bool":
        if not isinstance(v, bool):
            raise _Bad(f"expected true or false, got {type_name(v)}")
        return v
    if kind in CONVERTERS or kind == "choice":
        return _converted(s, v)
    if kind == "report":
        if isinstance(v, os.PathLike):
            v = os.fspath(v)
        if isinstance(v, bool) or (isinstance(v, str) and v.strip()):
            return v
        raise _Bad(f"expected true, false or a file path, got {type_name(v)}")
    raise AssertionError(f"unknown kind {kind!r}")  # pragma: no cover


def _flatten(data: Mapping[str, Any], fail: Callable[[str, str], ConfigError]) -> dict[str, Any]:
    """Schema key → raw value, checking that every key is known and every section a mapping."""
    out: dict[str, Any] = {}

    def walk(node: Mapping[Any, Any], prefix: str) -> None:
        for name, value in node.items():
            if not isinstance(name, str):
                raise fail(prefix or "", f"keys must be text, found {type_name(name)}")
            key = f"{prefix}.{name}" if prefix else name
            if key in BY_KEY:
                out[key] = value
            elif key in SECTIONS:
                if value is None:
                    continue
                if not isinstance(value, Mapping):
                    raise fail(key, f"expected a section of keys ({', '.join(children(key))}), "
                                    f"got {type_name(value)}")
                walk(value, key)
            else:
                raise fail(key, unknown_key_message(key))

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
            lines.append(f"override: {one_line(repr(self.override), 400)}")
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
            rows.append((s.key, one_line(repr(value) if not isinstance(value, str) else value, 100) + note,
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
            lines.append(f"meta.label: {one_line(label, 80)}")
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


#: Old keys whose value says its option another way: key → the option's value from the settings.
_SAID_OTHERWISE: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "analysis.filename.extension": lambda st: list(st["analysis.filename.extension"]),
    "default.config.overwrite.output":
        lambda st: "always" if st["default.config.overwrite.output"] else "never",
    "parallel_processing.enabled":
        lambda st: st["parallel_processing.max_workers"] if st["parallel_processing.enabled"] else 1,
    "zipkit.executor": lambda st: st["zipkit.scheduler_address"] or (
        "dask" if st["zipkit.executor"] == "dask" else None),
}
for _same in (("parallel_processing.max_workers", "parallel_processing.enabled"),
              ("zipkit.scheduler_address", "zipkit.executor")):
    _SAID_OTHERWISE[_same[0]] = _SAID_OTHERWISE[_same[1]]


def _option_values(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Option name → its value, from the schema keys that feed it: a ``zipkit:`` key that is set
    wins over the old key of the same option (the schema lists the old keys first)."""
    values: dict[str, Any] = {}
    for s in SCHEMA:
        if s.used and (s.feeds not in values or settings[s.key] is not None):
            said = _SAID_OTHERWISE.get(s.key)
            values[s.feeds] = said(settings) if said is not None else settings[s.key]
    return values


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
    data = read_yaml(cfg_path)
    over = parse_override(overrides, cfg_path)
    over_keys = _leaf_keys(over) if over else set()

    def fail(key: str, message: str) -> ConfigError:
        from_override = key and any(key == k or key.startswith(k + ".") or k.startswith(key + ".")
                                    for k in over_keys)
        return ConfigError(message + (" (set by the override)" if from_override else ""),
                           key=key or None, path=cfg_path)

    file_flat = _flatten(data, fail)
    merged = merge(data, over) if over else data
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
        kib_range(lo, hi)
    except BadValue as e:
        raise fail("file_management.filename.filters.min_size_kb", str(e)) from None
    try:
        compression_level(level, compression)
    except BadValue as e:
        raise fail("zipkit.level", str(e)) from None
    for key in ("parallel_processing.save_error_reports", "zipkit.save_error_reports"):
        if isinstance(settings[key], str):
            settings[key] = _resolve_path(settings[key], base)

    executor, address = settings["zipkit.executor"], settings["zipkit.scheduler_address"]
    if address is not None and executor == "process":
        raise fail("zipkit.scheduler_address", "a scheduler address needs executor: dask, not process")
    if stems_from is None:
        settings_used = {**settings, "file_management.filename.extension": None}
    else:
        settings_used = settings
    values = _option_values(settings_used)
    plan_kwargs = {name: values[name] for name in option_names("plan", everything=False)}
    run_kwargs = {name: values[name] for name in RUN_ARGS if name in values}
    unused = [s.key for s in SCHEMA if not s.used and origins[s.key] != "default"]
    if unused:
        log.debug("config %s: accepted, not used: %s", cfg_path, ", ".join(unused))
    return Config(cfg_path, settings, origins, over, plan_kwargs, run_kwargs, output_null, tuple(missing))




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
        if k in RUN_ARGS:
            run_kw[k] = v
        elif k in PLAN_ARGS:
            plan_kw[k] = v
        else:
            raise UsageError(f"run_config() got an unexpected argument {k!r}")
    return run_plan(plan(**plan_kw, inputs=[cfg.path]), **run_kw)  # the config is never an output
