"""One converter per kind of value: what the library, the CLI, the YAML config and the form accept.

The options themselves (each one's name, kind, default and help) are listed once in
:mod:`zipkit._options`, which names the converter of each.

Each converter (an instance of a :class:`Kind` subclass) turns a Python value into the value
zipkit uses, or refuses it with one line that names the option and the unit::

    >>> SECONDS(2.5, "timeout")
    2.5
    >>> WORKERS(0, "workers")
    Traceback (most recent call last):
    zipkit._kinds.BadValue: workers must be 'auto' or an integer from 1 to 4096, not 0

Python values are checked as they are: text is never taken for a number, nor a boolean for an
integer (``timeout="5"`` and ``workers=True`` are refused). Command-line text goes through
:meth:`Kind.from_text` first, which parses it and then applies the same check
(:meth:`Kind.argparse_type` makes that an argparse ``type=``). Like click's ``ParamType``:
one definition serves every front end, so a value refused in one is refused in all.

The bounds are where zipkit's machinery stops working, rounded to a documented limit:
``setitimer`` and ``threading`` take at most ~2**63 ns (292 years) and raise ``OverflowError``
beyond it, so a timeout is capped at one week; a zip archive stores dates from 1980-01-01 to
2107-12-31; a file size fits 63 bits (2**53 KiB).
"""

from __future__ import annotations

import difflib
import math
import numbers
import operator
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from ._errors import UsageError

__all__ = [
    "EPOCH",
    "EPOCH_MAX",
    "EPOCH_MIN",
    "EXTENSIONS",
    "KIB",
    "LEVEL",
    "LEVELS",
    "MAX_KIB",
    "MAX_TIMEOUT",
    "MAX_WORKERS",
    "MIN_TIMEOUT",
    "REGEX",
    "SECONDS",
    "WORKERS",
    "BadValue",
    "Kind",
    "choice",
    "compression_level",
    "kib_range",
    "source_date_epoch",
]

T = TypeVar("T")

MAX_TIMEOUT = 7 * 24 * 3600  #: 604800 s (one week): the longest per-stem ``timeout``
MIN_TIMEOUT = 0.001  #: 1 ms: the shortest; 1e-300 s once passed and timed out every stem (exit 1)
MAX_WORKERS = 4096  #: the most worker processes one run may ask for
MAX_KIB = 2**53  #: the largest size filter, in KiB (2**63 bytes, the largest file size)
EPOCH_MIN = 315532800  #: 1980-01-01T00:00:00Z, the earliest date a zip entry stores
EPOCH_MAX = 4354819199  #: 2107-12-31T23:59:59Z, the latest
#: Compression levels each method takes (inclusive); ``stored`` takes only 0.
LEVELS: Mapping[str, tuple[int, int]] = {"deflate": (0, 9), "bzip2": (1, 9), "lzma": (0, 9),
                                         "stored": (0, 0)}


class BadValue(UsageError):
    """A value a converter refused: ``name`` (option or key), ``reason`` (``must be … not …``)."""

    def __init__(self, name: str, reason: str):
        self.name = name
        self.reason = reason
        super().__init__(f"{name} {reason}" if reason.startswith("must ") else f"{name}: {reason}")


class _Refused(Exception):
    """Raised inside a converter; :class:`Kind` turns it into a :class:`BadValue`.

    ``detail`` is added to the usual ``must be …, not …``; with ``whole`` it replaces it.
    """

    def __init__(self, detail: str = "", *, whole: bool = False):
        self.detail, self.whole = detail, whole
        super().__init__(detail)


def show(value: object) -> str:
    """A value as a message shows it: short, with its type where the text would hide it."""
    if isinstance(value, bool):
        return f"a boolean ({value})"
    if isinstance(value, float):
        return repr(value)  # nan, inf, 1e+20
    if isinstance(value, int):
        text = str(value) if value.bit_length() < 200 else f"an integer of {len(str(abs(value)))} digits"
        return text
    text = repr(value)
    return text if len(text) <= 80 else text[:79] + "…"


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class Kind(Generic[T]):
    """A kind of value: ``expected`` says what it takes; calling it checks a Python value."""

    expected: str = ""

    def convert(self, value: Any) -> T:
        """The value zipkit uses, or raise :class:`_Refused`; ``value`` is not None."""
        raise NotImplementedError

    def parse(self, text: str) -> Any:
        """Command-line text as a Python value (before :meth:`convert`)."""
        return text

    def __call__(self, value: Any, name: str) -> T | None:
        """``value`` checked (None stays None, "not set"); :class:`BadValue` names ``name``."""
        if value is None:
            return None
        try:
            return self.convert(value)
        except _Refused as e:
            raise BadValue(name, e.detail if e.whole else self.reason(value, e.detail)) from None

    def reason(self, value: object, detail: str = "") -> str:
        return f"must be {self.expected}, not {show(value)}" + (f" ({detail})" if detail else "")

    def from_text(self, text: str, name: str) -> T:
        """Command-line text, parsed then checked; a refusal shows the text as it was given."""
        try:
            value = self.parse(text)
        except (ValueError, OverflowError):
            raise BadValue(name, self.reason(text)) from None
        try:
            out = self.convert(value)
        except _Refused as e:
            raise BadValue(name, e.detail if e.whole else self.reason(text, e.detail)) from None
        return out

    def argparse_type(self) -> Callable[[str], T]:
        """An argparse ``type=``: argparse then names the option (``argument --timeout: …``)."""
        import argparse

        def convert(text: str) -> T:
            try:
                return self.from_text(text, "")
            except BadValue as e:
                raise argparse.ArgumentTypeError(e.reason) from None

        convert.__name__ = type(self).__name__.lower()  # argparse names the type on a ValueError
        return convert


class _Number(Kind[float]):
    """A finite number (int or float, not bool) in ``[low, high]`` (``low`` excluded if ``open``)."""

    def __init__(self, unit: str, low: float, high: int, *, open_low: bool, note: str = ""):
        self.low, self.high, self.open_low = low, high, open_low
        op = ">" if open_low else ">="
        self.expected = f"a finite number of {unit} {op} {low:g} and at most {high}{note}"

    def parse(self, text: str) -> float:
        return float(text.strip())

    def convert(self, value: Any) -> float:
        if not _is_number(value):
            raise _Refused
        if _is_int(value):
            n = operator.index(value)  # compared as an integer: 10**400 has no float
            if n > self.high or n < self.low or (self.open_low and n == self.low):
                raise _Refused
            return n
        x = float(value)
        if not math.isfinite(x) or x > self.high or x < self.low or (self.open_low and x == self.low):
            raise _Refused
        return x


#: Seconds: a per-stem ``timeout``.
SECONDS = _Number("seconds", MIN_TIMEOUT, MAX_TIMEOUT, open_low=False, note=" (1 week)")
#: A size in KiB: ``min_size_kb`` / ``max_size_kb``.
KIB = _Number("KiB", 0, MAX_KIB, open_low=False)


class _Workers(Kind["int | str"]):
    expected = f"'auto' or an integer from 1 to {MAX_WORKERS}"

    def parse(self, text: str) -> int | str:
        text = text.strip()
        return text if text == "auto" else int(text)

    def convert(self, value: Any) -> int | str:
        if value == "auto" and isinstance(value, str):
            return "auto"
        if not _is_int(value) or not 1 <= operator.index(value) <= MAX_WORKERS:
            raise _Refused
        return operator.index(value)


#: Worker processes: ``"auto"`` or 1 … :data:`MAX_WORKERS`.
WORKERS = _Workers()


class _Level(Kind[int]):
    """A compression level of any method (0 … 9); :func:`compression_level` narrows it per method."""

    expected = "an integer from 0 to 9"

    def parse(self, text: str) -> int:
        return int(text.strip())

    def convert(self, value: Any) -> int:
        if not _is_int(value) or not 0 <= operator.index(value) <= 9:
            raise _Refused
        return operator.index(value)


LEVEL = _Level()


def compression_level(level: Any, compression: str, name: str = "level") -> int | None:
    """``level`` checked against :data:`LEVELS` for ``compression`` (None: the method's default)."""
    if level is None:
        return None
    low, top = LEVELS[compression]
    if not _is_int(level) or not low <= operator.index(level) <= top:
        what = "only 0" if low == top else f"an integer from {low} to {top}"
        raise BadValue(f"{name} for {compression}", f"must be {what}, not {show(level)}")
    return operator.index(level)


class _Epoch(Kind[int]):
    expected = (f"an integer number of seconds since 1970 from {EPOCH_MIN} (1980-01-01) to "
                f"{EPOCH_MAX} (2107-12-31), the dates a zip archive stores")

    def parse(self, text: str) -> int:
        t = text.strip()
        if not re.fullmatch(r"-?[0-9]{1,30}", t):  # ASCII digits only; int() would take "1_0" and "٣"
            raise ValueError(text)
        return int(t)

    def convert(self, value: Any) -> int:
        if not _is_int(value) or not EPOCH_MIN <= operator.index(value) <= EPOCH_MAX:
            raise _Refused
        return operator.index(value)


#: ``SOURCE_DATE_EPOCH``: seconds since 1970, within the dates a zip archive stores.
EPOCH = _Epoch()


def source_date_epoch(environ: Mapping[str, str] | None = None) -> int | None:
    """``SOURCE_DATE_EPOCH`` from the environment, checked; None when unset or empty."""
    raw = (os.environ if environ is None else environ).get("SOURCE_DATE_EPOCH")
    if not raw:
        return None
    return EPOCH.from_text(raw, "SOURCE_DATE_EPOCH")


class _Extensions(Kind["tuple[str, ...]"]):
    """Extensions: a string or strings; lower-case, without the dot, longest first."""

    expected = "an extension or a list of them (csv, .CSV; no /, \\, * or NUL)"

    def convert(self, value: Any) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, Iterable) or isinstance(items, (bytes, Mapping)):
            raise _Refused
        out: list[str] = []
        for ext in items:
            if not isinstance(ext, str):
                raise _Refused(f"expected text, got {show(ext)}", whole=True)
            e = ext.strip().lstrip(".").lower()
            if not e or any(c in e for c in "/\\*\0"):
                raise _Refused(f"invalid extension {ext!r}", whole=True)
            if e not in out:
                out.append(e)
        if not out:
            raise _Refused("give at least one extension", whole=True)
        return tuple(sorted(out, key=len, reverse=True))


#: Extensions of data or marker files.
EXTENSIONS = _Extensions()


class _Regex(Kind[str]):
    """A regular expression, or a list of them (matching any); returns one pattern."""

    expected = "a regular expression or a list of them"

    def convert(self, value: Any) -> str:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(x, str) for x in items):
            raise _Refused
        for rx in items:
            try:
                re.compile(rx)
            except re.error as e:
                raise _Refused(f"{rx!r} is not a valid regular expression: {e}", whole=True) from None
        items = [x for x in items if x]
        if len(items) <= 1:
            return items[0] if items else ""
        return "|".join(f"(?:{rx})" for rx in items)

    def __call__(self, value: Any, name: str) -> str | None:
        return super().__call__(value, name) or None  # "" or [] means no filter


#: The marker filter ``regex``.
REGEX = _Regex()


def choice(value: Any, choices: Sequence[str], name: str) -> str:
    """``value`` if it is one of ``choices``; else a :class:`BadValue` with a "did you mean"."""
    if isinstance(value, str) and value in choices:
        return value
    close = difflib.get_close_matches(str(value), choices, n=1) if isinstance(value, str) else []
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise BadValue(name, f"must be one of {', '.join(choices)}, not {show(value)}{hint}")


def kib_range(low: Any, high: Any, names: tuple[str, str] = ("min_size_kb", "max_size_kb"),
              ) -> tuple[float | None, float | None]:
    """The size filters checked, each and together (``low`` <= ``high``)."""
    lo, hi = KIB(low, names[0]), KIB(high, names[1])
    if lo is not None and hi is not None and lo > hi:
        raise BadValue(names[0], f"must be at most {names[1]} ({hi:g} KiB), not {lo:g} KiB: no marker "
                                 f"could be selected")
    return lo, hi
