"""The form's values ↔ the arguments of :func:`zipkit.plan` and :func:`zipkit.run_plan`.

No ipywidgets here: the controls' values are plain Python values in a :class:`FormValues`, so
that the mapping, its checks and its error messages are tested without a kernel or a browser.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._errors import UsageError, ZipkitError
from .._options import LEVELS, REGEX, WORKERS, by_name, check_values, compression_level
from .._options import names as option_names
from .._tempfiles import is_temp_name

__all__ = ["DEFAULT_LEVEL", "FIELD_WORDS", "MARKERS", "OWN", "FormError", "FormValues", "Loaded", "as_list",
           "browse", "check", "folder", "form_words", "from_kwargs", "levels", "plan_kwargs", "resolve_path",
           "run_kwargs", "scan_extensions", "words"]

DEFAULT_LEVEL = -1  # the level dropdown's "default" entry (the compressor's own default)
OWN, MARKERS = "own", "markers"  # the stem modes


def scan_extensions(folder: str | os.PathLike[str]) -> list[tuple[str, int, int]]:
    """The extensions of the regular files directly in ``folder``: ``(ext, count, bytes)``.

    Extensions are lower-case and without the dot, sorted by name; files without an
    extension and zipkit's temp files are left out.

    Examples
    --------
    >>> scan_extensions("output/csv")  # doctest: +SKIP
    [('csv', 33, 2011234)]
    """
    found: dict[str, list[int]] = {}
    with os.scandir(folder) as entries:
        for e in entries:
            name = e.name
            if is_temp_name(name) or "." not in name.lstrip("."):  # the planner's own rule
                continue
            try:
                if not e.is_file():
                    continue
                size = e.stat().st_size
            except OSError:  # vanished or unreadable: not offered
                continue
            ext = name.rsplit(".", 1)[1].lower()
            if not ext:
                continue
            slot = found.setdefault(ext, [0, 0])
            slot[0] += 1
            slot[1] += size
    return [(ext, n, size) for ext, (n, size) in sorted(found.items())]


def words(text: str) -> list[str]:
    """``"a, b ,,c"`` → ``['a', 'b', 'c']``."""
    return [t.strip() for t in text.split(",") if t.strip()]


def as_list(value: str | os.PathLike[str] | Sequence[str] | None) -> list[str]:
    """``None`` → ``[]``, one string or path → a list of it, a sequence → a list of strings."""
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [str(value)]
    return [str(v) for v in value]


def levels(compression: str) -> range:
    """The levels the level dropdown offers for ``compression``: zipkit._options.LEVELS."""
    low, top = LEVELS[compression]
    return range(low, top + 1)


#: The library's names for what the form calls otherwise, longest first: messages use the form's words.
FIELD_WORDS: tuple[tuple[str, str], ...] = (
    ("stems_from folder", "marker folder"),
    ("stem_extensions", "marker extensions"),
    ("stems_from", "marker folder"),
    ("not_contains", "stem lacks"),
    ("min_size_kb", "minimum marker size (KiB)"),
    ("max_size_kb", "maximum marker size (KiB)"),
)


def form_words(message: str) -> str:
    """``message`` with the library's option names replaced by the form's labels."""
    for api, form in FIELD_WORDS:
        message = message.replace(api, form)
    return message


class FormError(UsageError):
    """Fields whose values cannot work: ``fields`` maps a :class:`FormValues` field to its message."""

    def __init__(self, fields: dict[str, str]):
        self.fields = dict(fields)
        super().__init__("; ".join(self.fields.values()))


def resolve_path(text: str, what: str, root: Path | None) -> Path:
    """The folder or file named in a field, made absolute; refused when outside ``root``."""
    raw = text.strip()
    if not raw:
        raise UsageError(f"{what}: give a path")
    p = Path(raw).expanduser()
    if not p.is_absolute():
        p = (root if root is not None else Path.cwd()) / p
    p = p.resolve()
    if root is not None and not p.is_relative_to(root):
        raise UsageError(f"{what} {p} is outside the folder this form may use ({root}); refused")
    return p


def folder(text: str, what: str, root: Path | None) -> Path:
    """:func:`resolve_path`, and the folder must exist."""
    p = resolve_path(text, what, root)
    if not p.exists():
        raise UsageError(f"{what} does not exist: {p}")
    if not p.is_dir():
        raise UsageError(f"{what} is not a folder: {p}")
    return p


def browse(text: str, root: Path | None, limit: int = 500) -> tuple[Path, list[tuple[str, Path]]]:
    """What a folder picker offers for a field holding ``text``: the folder it shows and its
    choices, ``("..", parent)`` first (never above ``root``), then the sub-folders by name
    (hidden ones and zipkit's temp folders left out; at most ``limit``).

    The folder shown is the field's when it is a folder inside ``root``, else its nearest
    existing parent inside ``root``, else ``root`` (or the working folder when there is none).
    """
    try:
        base = root if root is not None else Path.cwd()
    except OSError:  # the working folder is gone
        base = Path.home()
    here = base
    if text.strip():
        try:
            here = resolve_path(text, "folder", root)
        except (UsageError, OSError):
            here = base
    while not here.is_dir() and here != here.parent and (root is None or here != root):
        here = here.parent
    if not here.is_dir() or (root is not None and not here.is_relative_to(root)):
        here = base
    choices: list[tuple[str, Path]] = []
    if here.parent != here and (root is None or here != root):
        choices.append(("..", here.parent))
    try:
        with os.scandir(here) as entries:
            names = sorted(e.name for e in entries if not e.name.startswith(".")
                           and _is_folder(e))
    except OSError:
        names = []
    inside = [n for n in names if root is None or (here / n).resolve().is_relative_to(root)]
    choices += [(f"{n}/", here / n) for n in inside[:limit]]
    return here, choices


def _is_folder(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _default(name: str) -> Any:
    return by_name(name).default


@dataclasses.dataclass
class FormValues:
    """What the form's controls hold, as plain values (texts as typed, choices as chosen).

    A field named like an option of :data:`zipkit._options.OPTIONS` holds that option (its
    default is the option's); the others say an option the form's way (``markers`` is
    ``stems_from``, ``marker_extensions`` ``stem_extensions``, ``level`` -1 the default level).
    """

    source: str = ""
    extensions: tuple[str, ...] = ()
    stem_mode: str = OWN
    markers: str = ""
    marker_extensions: tuple[str, ...] = ()
    contains: str = ""
    not_contains: str = ""
    pattern: str = ""
    regex: str = ""
    match: str = _default("match")
    output: str = ""
    compression: str = _default("compression")
    level: int = DEFAULT_LEVEL
    workers: int | str = _default("workers")  #: 1 … max_workers, or "auto"
    max_workers: int = 1
    overwrite: str = _default("overwrite")
    verify: bool = _default("verify")
    reproducible: bool = _default("reproducible")
    delete_sources: bool = _default("delete_sources")


#: The :class:`FormValues` fields that hold an option of the same name as it is (choices, flags).
AS_IS: tuple[str, ...] = ("match", "compression", "overwrite", "verify", "reproducible", "delete_sources")


def plan_kwargs(v: FormValues, root: Path | None = None,
                extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The arguments of :func:`zipkit.plan` that the form's values give (``extra`` fills the rest).

    Raises
    ------
    zipkit.UsageError
        A folder is missing or outside ``root``, or no extension is picked.
    """
    bad = check(v, root)
    if bad:
        raise FormError(bad)
    kw: dict[str, Any] = {
        "source": resolve_path(v.source, "source folder", root),
        "extensions": list(v.extensions),
        "output": resolve_path(v.output, "output folder", root) if v.output.strip() else None,
        "level": None if v.level == DEFAULT_LEVEL else v.level,
        **{name: getattr(v, name) for name in AS_IS if name != "match"},
    }
    if v.stem_mode == MARKERS:
        kw.update(
            stems_from=resolve_path(v.markers, "marker folder", root),
            stem_extensions=list(v.marker_extensions),
            match=v.match,
            contains=words(v.contains) or None,
            not_contains=words(v.not_contains) or None,
            pattern=v.pattern.strip() or None,
            regex=v.regex.strip() or None,
        )
    for key, value in (extra or {}).items():
        kw.setdefault(key, value)
    return kw


def check(v: FormValues, root: Path | None = None) -> dict[str, str]:
    """What is wrong with the form's values, field by field, in the form's words (empty: all well)."""
    bad: dict[str, str] = {}

    def attempt(name: str, test: Any) -> None:
        try:
            test()
        except ZipkitError as e:
            bad[name] = form_words(str(e))

    attempt("source", lambda: folder(v.source, "source folder", root))
    if not v.extensions:
        bad["extensions"] = "pick at least one extension to archive"
    if v.output.strip():
        attempt("output", lambda: resolve_path(v.output, "output folder", root))
    if v.stem_mode == MARKERS:
        attempt("markers", lambda: folder(v.markers, "marker folder", root))
        if not v.marker_extensions:
            bad["marker_extensions"] = "pick at least one marker extension (e.g. yml)"
        attempt("regex", lambda: REGEX(v.regex.strip() or None, "stem regex"))
    attempt("level", lambda: compression_level(None if v.level == DEFAULT_LEVEL else v.level,
                                                   v.compression))
    return bad


def run_kwargs(v: FormValues, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The arguments of :func:`zipkit.run_plan` that the form gives (not progress or cancel)."""
    n = v.workers
    kw: dict[str, Any] = {"workers": "auto" if n == "auto" or int(n) >= v.max_workers else int(n),
                          "save_error_reports": True}
    for key, value in (extra or {}).items():
        kw.setdefault(key, value)
    return kw


@dataclasses.dataclass
class Loaded:
    """Settings checked and split for the form: values for its controls, and the rest kept."""

    values: FormValues
    stems_from: str | None  #: the marker folder, None for own stems
    extra_plan: dict[str, Any]  #: plan() settings the form has no control for (kept, passed on)
    extra_run: dict[str, Any]  #: run_plan() settings likewise


def from_kwargs(plan_kw: dict[str, Any], run_kw: dict[str, Any] | None = None) -> Loaded:
    """Check :func:`zipkit.plan` / :func:`zipkit.run_plan` arguments and map them to form values.

    Raises
    ------
    zipkit.UsageError
        An unknown setting, or a value the library would refuse (checked here, not at Zip).
    """
    kw = dict(plan_kw)
    run = dict(run_kw or {})
    plan_names, run_names = set(option_names("plan")), set(option_names("run"))
    unknown = sorted(set(kw) - plan_names) + sorted(set(run) - run_names)
    if unknown:
        raise UsageError(f"unknown setting(s): {', '.join(unknown)}")
    for name in ("match", "overwrite", "compression"):  # None: the option's default
        if kw.get(name) is None:
            kw[name] = _default(name)
    check_values(kw)  # refused now, not at Zip (timeout, sizes … are kept for the run, as given)
    match, overwrite, compression = kw.pop("match"), kw.pop("overwrite"), kw.pop("compression")
    workers = WORKERS(run.pop("workers", None), "workers") or "auto"

    source, output, stems_from = kw.pop("source", None), kw.pop("output", None), kw.pop("stems_from", None)
    level = kw.pop("level", None)
    values = FormValues(
        source="" if source is None else str(source),
        extensions=tuple(as_list(kw.pop("extensions", None))),
        stem_mode=MARKERS if stems_from is not None else OWN,
        markers="" if stems_from is None else str(stems_from),
        marker_extensions=tuple(as_list(kw.pop("stem_extensions", None))),
        contains=", ".join(as_list(kw.pop("contains", None))),
        not_contains=", ".join(as_list(kw.pop("not_contains", None))),
        pattern=kw.pop("pattern", None) or "",
        regex=kw.pop("regex", None) or "",
        match=match,
        output="" if output is None else str(output),
        compression=compression,
        level=DEFAULT_LEVEL if level is None else level,
        workers=workers,
        overwrite=overwrite,
        verify=bool(kw.pop("verify", False)),
        reproducible=bool(kw.pop("reproducible", False)),
        delete_sources=bool(kw.pop("delete_sources", False)),
    )
    for key in ("progress", "cancel", "save_error_reports"):  # the form sets these itself
        run.pop(key, None)
    return Loaded(values=values, stems_from=None if stems_from is None else str(stems_from),
                  extra_plan={k: v for k, v in kw.items() if v != _default(k)},
                  extra_run={k: v for k, v in run.items() if v is not None})
