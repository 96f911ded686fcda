"""Every option once: its name, kind, default, choices, help, command-line flags and config key.

:data:`OPTIONS` is the one list of the keyword arguments of :func:`zipkit.plan`,
:func:`zipkit.run_plan` and :func:`zipkit.zip_by_extension`. The config schema
(``zipkit._schema``), the ``zipkit:`` section, the command line (``zipkit._cli``), the form's
mapping (``zipkit.widgets._settings``) and the reference docs are built from it, and
``tests/test_options.py`` fails when a signature, a schema key, a flag or a form field drifts
from it. Each option's value is checked by the converter of its kind (:mod:`zipkit._kinds`,
one converter per kind of value): :func:`check_values` is the check every front end calls.

Adding an option: a row here, a parameter in the signatures that take it (``plan`` and
``zip_by_extension``, or ``run_plan`` and ``zip_by_extension``), and a field of
:class:`ArchiveOptions` when it changes how an archive is written; the config key, the flag,
the docs and the drift checks follow from the row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ._kinds import (
    EPOCH,
    EPOCH_MAX,
    EPOCH_MIN,
    EXTENSIONS,
    KIB,
    LEVEL,
    LEVELS,
    MAX_KIB,
    MAX_TIMEOUT,
    MAX_WORKERS,
    MIN_TIMEOUT,
    REGEX,
    SECONDS,
    WORKERS,
    BadValue,
    Kind,
    choice,
    compression_level,
    kib_range,
    show,
    source_date_epoch,
)

__all__ = [
    "COMPRESSIONS", "DEFLATE_BACKENDS", "EPOCH", "EPOCH_MAX", "EPOCH_MIN", "EXTENSIONS", "KIB", "LEVEL",
    "LEVELS", "MATCH_MODES", "MAX_KIB", "MAX_TIMEOUT", "MAX_WORKERS", "MIN_TIMEOUT", "OPTIONS",
    "OVERWRITE_POLICIES", "REGEX", "SECONDS", "WORKERS", "ArchiveOptions", "BadValue", "Compression",
    "DeflateBackend", "Kind", "MatchMode", "Option", "Overwrite", "by_name", "check_values", "choice",
    "compression_level", "kib_range", "names", "show", "source_date_epoch",
]

MatchMode = Literal["prefix", "contains"]
Overwrite = Literal["always", "update", "never", "replace"]
Compression = Literal["deflate", "stored", "bzip2", "lzma"]
DeflateBackend = Literal["auto", "zlib", "isal"]

MATCH_MODES: tuple[str, ...] = ("prefix", "contains")
OVERWRITE_POLICIES: tuple[str, ...] = ("always", "update", "never", "replace")
COMPRESSIONS: tuple[str, ...] = ("deflate", "stored", "bzip2", "lzma")
DEFLATE_BACKENDS: tuple[str, ...] = ("auto", "zlib", "isal")


@dataclass(frozen=True)
class ArchiveOptions:
    """How each archive is written; the same for every stem of a plan."""

    compression: Compression = "deflate"
    level: int | None = None
    deflate_backend: DeflateBackend = "auto"
    verify: bool = False
    delete_sources: bool = False
    reproducible: bool = False
    source_date_epoch: int | None = None
    durable: bool = False
    timeout: float | None = None
    chunk_size: int = 1 << 20
    threads: int = 1  # deflate threads per member (set by the run when stems < CPUs)


#: The converter of each kind that has one; other kinds are taken as given by the library
#: (paths, texts, booleans; the config reader checks those itself, strictly).
CONVERTERS: dict[str, Kind[Any]] = {"extensions": EXTENSIONS, "regex": REGEX, "kb": KIB,
                                    "seconds": SECONDS, "workers": WORKERS, "level": LEVEL}


@dataclass(frozen=True)
class Option:
    """One keyword argument of the library.

    ``stage``: the function that takes it (``plan`` or ``run``; :func:`zipkit.zip_by_extension`
    takes both, except the ``plan_only`` ones). ``kind``: the kind of value, as the config
    schema names it (its converter is :data:`CONVERTERS` ``[kind]``). ``cli``: the flags of the
    ``zipkit`` command (none: not on the command line). ``config``: the ``zipkit:`` section has
    a key of the same name. ``archive``: a field of :class:`ArchiveOptions`. ``group``: the
    group of the command-line help.
    """

    name: str
    stage: Literal["plan", "run"]
    kind: str
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    cli: tuple[str, ...] = ()
    metavar: str | None = None
    group: str = ""
    config: bool = True
    archive: bool = False
    plan_only: bool = False
    positional: bool = False

    def check(self, value: Any, name: str | None = None) -> Any:
        """``value`` as the library uses it, or :class:`BadValue` naming ``name`` (default: the option)."""
        label = self.name if name is None else name
        if self.kind == "choice":
            return choice(value, self.choices, label)
        converter = CONVERTERS.get(self.kind)
        return value if converter is None else converter(value, label)


_S, _A, _R = "stems", "archives", "run"

#: Every option, in the order of the signatures.
OPTIONS: tuple[Option, ...] = (
    Option("source", "plan", "path", None, "Folder of the files to zip (scanned once, not recursively).",
           positional=True, config=False),
    Option("extensions", "plan", "extensions", None,
           "Extensions of the files to put in the archives; case-insensitive, with or without a dot.",
           cli=("-e", "--ext"), metavar="EXT", positional=True, config=False),
    Option("output", "plan", "path", None, "Folder for the archives, created when missing (default: SOURCE).",
           cli=("-o", "--output"), positional=True, config=False),
    Option("stems_from", "plan", "path", None, "Take the stems from marker files in this folder.",
           cli=("--stems-from",), metavar="DIR", group=_S, config=False),
    Option("stem_extensions", "plan", "extensions", None, "Extensions of the marker files.",
           cli=("--stem-ext",), metavar="EXT", group=_S, config=False),
    Option("stems", "plan", "strings", None, "Stem names given directly, instead of marker files.",
           cli=("--stems",), metavar="NAME", group=_S),
    Option("match", "plan", "choice", "prefix",
           "`prefix`: a file belongs to the longest stem it starts with, followed by a character that "
           "is not a letter or digit. `contains`: the old tool's substring rule (`case1` also takes "
           "`case10_x.csv`).", MATCH_MODES, cli=("--match",), group=_S),
    Option("pattern", "plan", "text", None, "Marker filter: keep markers matching the glob `*PATTERN*`.",
           cli=("--pattern",), group=_S, config=False),
    Option("contains", "plan", "strings", None,
           "Marker filter: keep markers whose stem contains all of these.",
           cli=("--contains",), metavar="TEXT", group=_S, config=False),
    Option("not_contains", "plan", "strings", None,
           "Marker filter: drop markers whose stem contains any of these.",
           cli=("--not-contains",), metavar="TEXT", group=_S, config=False),
    Option("regex", "plan", "regex", None,
           "Marker filter: keep markers whose stem matches (`re.search`; a list matches any).",
           cli=("--regex",), group=_S, config=False),
    Option("min_size_kb", "plan", "kb", None, "Marker filter: keep markers of at least this size (KiB).",
           cli=("--min-size-kb",), metavar="KIB", group=_S, config=False),
    Option("max_size_kb", "plan", "kb", None,
           "Marker filter: keep markers of at most this size (KiB; not less than `min_size_kb`).",
           cli=("--max-size-kb",), metavar="KIB", group=_S, config=False),
    Option("overwrite", "plan", "choice", "always",
           "`always` (merge as zip does: this run's files replace the members of the same name, every "
           "other member is kept), `update` (skip archives newer than all their files that already hold "
           "them all; otherwise merge), `never` (skip existing archives) or `replace` (rebuild from this "
           "run's files only; the members dropped are listed). A file there that is not a zip archive is "
           "never replaced: its stem fails.", OVERWRITE_POLICIES, cli=("--overwrite",), group=_A),
    Option("compression", "plan", "choice", "deflate", "Compression method.", COMPRESSIONS,
           cli=("-c", "--compression"), group=_A, archive=True),
    Option("level", "plan", "level", None,
           "Compression level: deflate and lzma 0–9 (deflate default 6), bzip2 1–9 (default 9); "
           "`stored` takes only 0.", cli=("-l", "--level"), group=_A, archive=True),
    Option("deflate_backend", "plan", "choice", "auto",
           "Deflate implementation: `auto` (ISA-L when installed), `zlib` or `isal`; the output is "
           "standard deflate either way.", DEFLATE_BACKENDS, group=_A, archive=True),
    Option("verify", "plan", "bool", False,
           "Re-read every archive and check its CRCs before it is renamed into place.",
           cli=("--verify",), group=_A, archive=True),
    Option("delete_sources", "plan", "bool", False,
           "Delete a stem's files once its archive is in place, fsynced and verified.",
           cli=("--delete-sources",), group=_A, archive=True),
    Option("reproducible", "plan", "bool", False,
           "Fixed timestamps (`SOURCE_DATE_EPOCH` when set) and permissions: equal inputs give "
           "byte-identical archives.", cli=("--reproducible",), group=_A, archive=True),
    Option("durable", "plan", "bool", False, "fsync every archive and the output folder.",
           cli=("--durable",), group=_A, archive=True),
    Option("timeout", "plan", "seconds", None,
           f"Time limit per stem in seconds (at least {MIN_TIMEOUT}, at most {MAX_TIMEOUT} = 1 week); a "
           "stem past it is reported as timed out and leaves nothing behind; none by default.",
           cli=("--timeout",), metavar="SECONDS", group=_A, archive=True),
    Option("allow_empty", "plan", "bool", False,
           "Return an empty plan instead of raising `NothingToDo` when no file matches.",
           config=False, plan_only=True),
    Option("inputs", "plan", "paths", (),
           "Other files the run reads (its config file): never written over.", config=False, plan_only=True),
    Option("workers", "run", "workers", "auto",
           f"`auto` (the CPUs this process may use, capped by the stems) or a number from 1 to "
           f"{MAX_WORKERS}.", cli=("-j", "--workers"), group=_R),
    Option("executor", "run", "executor", None,
           "Where stems run: a process pool of `workers` (default), any `concurrent.futures.Executor`, "
           "`dask` or a Dask scheduler address.", config=False),
    Option("progress", "run", "bool", True, "Show a progress bar weighted by bytes."),
    Option("cancel", "run", "event", None, "A `threading.Event` that stops the run when set.", config=False),
    Option("save_error_reports", "run", "report", None,
           "`true`: write failures as JSON in the output folder; a path: write them there."),
)

_BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}


def by_name(name: str) -> Option:
    """The option called ``name`` (``KeyError`` if there is none)."""
    return _BY_NAME[name]


def names(stage: str, *, everything: bool = True) -> tuple[str, ...]:
    """The names of the options ``stage`` (``plan`` or ``run``) takes; without ``everything``,
    only those :func:`zipkit.zip_by_extension` and a config take too (not ``allow_empty``, ``inputs``)."""
    return tuple(o.name for o in OPTIONS if o.stage == stage and (everything or not o.plan_only))


def check_values(values: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The options in ``values`` checked by their kinds, and together (size range, level per
    compression): the same values as the library uses them. ``labels`` names an option as the
    caller's user knows it (``--level``); :class:`BadValue` names the first one at fault."""
    labels = labels or {}
    joint = ("level",)  # checked below, per compression: "level for bzip2 must be …"
    out = {name: by_name(name).check(v, labels.get(name)) if name in _BY_NAME and name not in joint else v
           for name, v in values.items()}
    if "min_size_kb" in out or "max_size_kb" in out:
        out["min_size_kb"], out["max_size_kb"] = kib_range(
            out.get("min_size_kb"), out.get("max_size_kb"),
            (labels.get("min_size_kb", "min_size_kb"), labels.get("max_size_kb", "max_size_kb")))
    if out.get("level") is not None:
        out["level"] = compression_level(out["level"], out.get("compression", "deflate"),
                                         labels.get("level", "level"))
    return out
