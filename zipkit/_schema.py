"""The config schema: every key a YAML config may hold, its kind, default and the option it sets.

The old zip_utilities keys are listed here as the old tool named them; the ``zipkit:`` section
is built from :data:`zipkit._options.OPTIONS` (one key per option, named as in the library), so
a new option is a new ``zipkit:`` key without a line here. Reading, checking, writing and
documenting a config all go by :data:`SCHEMA`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from ._options import LEVEL, MAX_KIB, MAX_TIMEOUT, MAX_WORKERS, OPTIONS, by_name
from ._options import names as option_names

__all__ = ["BY_KEY", "KINDS", "OLD_FED", "PLAN_ARGS", "RUN_ARGS", "SCHEMA", "SECTIONS", "SECTION_HELP",
           "Setting", "children", "unknown_key_message"]


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
    "level": f"integer ({LEVEL.expected.removeprefix('an integer ')}, per compression)",
    "kb": f"number (KiB, >= 0, at most {MAX_KIB})",
    "seconds": f"number (seconds, > 0, at most {MAX_TIMEOUT} = 1 week)",
    "workers": f"`auto` or integer from 1 to {MAX_WORKERS}",
    "choice": "one of",
    "report": "true/false or path",
    "any": "any value",
    "mapping": "mapping (any keys)",
}

_ROUTING = "accepted for compatibility with the old tool; not used by zipkit"

def _same(key: str, option: str, default: Any = None, *, required: bool = False) -> Setting:
    """An old key that says just what ``option`` says: its kind and help are the option's."""
    o = by_name(option)
    return Setting(key, o.kind, default, o.help, option, o.choices, required)


#: The old zip_utilities schema, as the old tool named its keys.
_OLD_KEYS: tuple[Setting, ...] = (
    _same("analysis.input_directory", "source", required=True),
    Setting("analysis.filename.extension", "extensions", None,
            "Extensions of the files to put in the archives (`csv` or `[csv, out]`; "
            "case-insensitive, with or without a dot).", "extensions", required=True),
    Setting("file_management.input_directory", "path", None,
            "Folder of marker files whose stems name the archives. Null or absent: the data "
            "files' own stems (`run1.dat` + `run1.log` → `run1.zip`).", "stems_from"),
    Setting("file_management.filename.extension", "extensions", None,
            "Extensions of the marker files (e.g. `[yml]`); needed with "
            "`file_management.input_directory`.", "stem_extensions"),
    _same("file_management.filename.pattern", "pattern"),
    _same("file_management.filename.filters.contains", "contains"),
    _same("file_management.filename.filters.not_contains", "not_contains"),
    _same("file_management.filename.filters.regex", "regex"),
    _same("file_management.filename.filters.min_size_kb", "min_size_kb"),
    _same("file_management.filename.filters.max_size_kb", "max_size_kb"),
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
    _same("parallel_processing.save_error_reports", "save_error_reports", False),
    _same("parallel_processing.progress_reporting", "progress", True),
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
)


def _own_keys(old: tuple[Setting, ...]) -> tuple[Setting, ...]:
    """The ``zipkit:`` section: one key per option that a config sets (:data:`zipkit._options.OPTIONS`).

    A key whose option an old key also sets is null by default (the old key's value is used)
    and wins over it when set; the others default to the library's default.
    """
    fed_by: dict[str, list[str]] = {}
    for s in old:
        if s.feeds:
            fed_by.setdefault(s.feeds, []).append(s.key)
    out: list[Setting] = []
    for o in OPTIONS:
        if o.config:
            olds = fed_by.get(o.name, [])
            note = f" When set, it wins over {' and '.join(f'`{k}`' for k in olds)}." if olds else ""
            out.append(Setting(f"zipkit.{o.name}", o.kind, None if olds else o.default, o.help + note,
                               o.name, o.choices))
        out.extend(_YAML_SPELLINGS.get(o.name, ()))
    return tuple(out)


#: ``zipkit:`` keys that say an option in YAML's terms (an executor object cannot be written).
_YAML_SPELLINGS: dict[str, tuple[Setting, ...]] = {
    "executor": (
        Setting("zipkit.executor", "choice", None,
                "`process` (a process pool, the default) or `dask` (a local Dask cluster, or the "
                "scheduler at `scheduler_address`).", "executor", ("process", "dask")),
        Setting("zipkit.scheduler_address", "text", None,
                "Dask scheduler to run on (`tcp://host:8786`); implies `executor: dask`.", "executor"),
    ),
}

#: The schema: every key a config may hold, in the order the docs and ``describe()`` list them.
SCHEMA: tuple[Setting, ...] = _OLD_KEYS + _own_keys(_OLD_KEYS)

BY_KEY: dict[str, Setting] = {s.key: s for s in SCHEMA}
#: The options that an old key sets too (its ``zipkit:`` key, when set, wins).
OLD_FED: frozenset[str] = frozenset(s.feeds for s in _OLD_KEYS if s.feeds)
#: Every section (``file_management``, ``file_management.filename`` …).
SECTIONS: frozenset[str] = frozenset(
    ".".join(s.key.split(".")[:i]) for s in SCHEMA for i in range(1, s.key.count(".") + 1)
)
SECTION_HELP = {
    "": "The old zip_utilities schema, unchanged",
    "zipkit": "zipkit's own options (`zipkit:` section), named as in the library",
}
#: The arguments of :func:`zipkit.plan` / :func:`zipkit.run_plan` a config run may be given.
PLAN_ARGS: tuple[str, ...] = tuple(n for n in option_names("plan") if n != "inputs")
RUN_ARGS: tuple[str, ...] = option_names("run")


def children(section: str) -> list[str]:
    """The names of the keys and sections directly in ``section`` ("" : the top)."""
    depth = section.count(".") + 1 if section else 0
    names = {k.split(".")[depth] for k in (*BY_KEY, *SECTIONS)
             if (k.startswith(section + ".") if section else True) and k.count(".") >= depth}
    return sorted(names)


def unknown_key_message(key: str) -> str:
    """Why ``key`` is refused, with a "did you mean" when a known key is close."""
    section, _, name = key.rpartition(".")
    siblings = children(section)
    elsewhere = sorted(k for k in (*BY_KEY, *SECTIONS) if k.rsplit(".", 1)[-1] == name and k != key)
    if elsewhere:  # the right name in the wrong section
        return f"unknown key here; did you mean '{elsewhere[0]}'?"
    close = difflib.get_close_matches(name, siblings, n=1, cutoff=0.6)
    if close:
        full = f"{section}.{close[0]}" if section else close[0]
        return f"unknown key; did you mean '{full}'?"
    close = difflib.get_close_matches(key, [*BY_KEY, *SECTIONS], n=1, cutoff=0.75)
    if close:
        return f"unknown key; did you mean '{close[0]}'?"
    where = f"in '{section}'" if section else "at the top"
    return f"unknown key; expected {where} one of: {', '.join(siblings)}"
