"""Progress of a run: the byte-weighted ``tqdm.auto`` bar and the events a ``progress`` callable gets."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from ._report import StemResult
from ._table import format_bytes

__all__ = ["Progress", "ProgressEvent", "ProgressSink"]

log = logging.getLogger("zipkit")


@dataclass(frozen=True)
class ProgressEvent:
    """Sent to a ``progress`` callable as the run goes; ``result`` is set when a stem ends."""

    bytes_done: int
    bytes_total: int
    stems_done: int
    stems_total: int
    failed: int
    result: StemResult | None = None
    stem: str | None = None  #: the stem whose bytes were just read (None when a stem ends)


ProgressSink = Callable[[ProgressEvent], Any]  #: a ``progress=`` callable


class Progress:
    """Byte-weighted progress: a tqdm.auto bar, a callable, or nothing."""

    def __init__(self, progress: bool | ProgressSink | None, total: int, stems: int) -> None:
        self.total, self.stems_total = total, stems
        self.done = self.stems_done = self.failed = 0
        self.partial: dict[str, int] = {}
        self.callback = progress if callable(progress) else None
        self.bar: Any = None  # a tqdm bar while it draws
        if progress is True and sys.stderr is not None:  # None: stderr closed (2>&-) or pythonw
            from tqdm.auto import tqdm

            # No monitor thread: a later pool could then still fork. (tqdm is generic only in
            # its stubs, and cannot be subscripted here.)
            class _Bar(tqdm):  # type: ignore[type-arg]
                monitor_interval = 0

                @property
                def format_dict(self) -> MutableMapping[str, Any]:  # sizes in binary units, as the report
                    d = super().format_dict
                    rate = d["rate"] or (d["n"] / d["elapsed"] if d["elapsed"] and d["n"] else None)
                    d.update(size_done=format_bytes(d["n"]), size_total=format_bytes(d["total"] or 0),
                             size_rate=f"{format_bytes(rate)}/s" if rate else "?/s")
                    return d

            self._draw(lambda: setattr(self, "bar", _Bar(
                total=total, unit="B", desc="zipkit", smoothing=0.1, dynamic_ncols=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {size_done}/{size_total} "
                           "[{elapsed}<{remaining}, {size_rate}{postfix}]")))
            self._postfix()

    def _draw(self, step: Callable[[], Any]) -> None:
        """One write of the bar; a broken or full stderr (``2>&1 | head``, ``2>/dev/full``) ends the
        bar, never the run: the bar is a courtesy, as the CLI's printing is."""
        try:
            step()
        except (OSError, ValueError) as e:  # ValueError: the stream was closed
            log.debug("zipkit: progress bar off: cannot write to stderr: %s", e)
            bar, self.bar = self.bar, None
            if bar is not None:
                bar.disable = True  # tqdm's own close and finaliser then write nothing

    def _postfix(self) -> None:
        if self.bar is not None:
            fix = {"stems": f"{self.stems_done}/{self.stems_total}"}
            if self.failed:
                fix["failed"] = str(self.failed)
            self._draw(lambda: self.bar.set_postfix(fix, refresh=False))

    def _emit(self, result: StemResult | None = None, stem: str | None = None) -> None:
        if self.callback is not None:
            self.callback(ProgressEvent(self.done, self.total, self.stems_done, self.stems_total,
                                        self.failed, result, stem))

    def add(self, stem: str, n: int) -> None:
        """``n`` more bytes of ``stem`` were read."""
        self.partial[stem] = self.partial.get(stem, 0) + n
        self.done += n
        if self.bar is not None:
            self._draw(lambda: self.bar.update(n))
        self._emit(stem=stem)

    def forget(self, stem: str) -> None:
        """``stem`` will run again: take back the bytes it had reported."""
        n = self.partial.pop(stem, 0)
        self.done -= n
        if self.bar is not None and n:
            self._draw(lambda: self.bar.update(-n))

    def finish(self, result: StemResult, planned_bytes: int) -> None:
        n = planned_bytes - self.partial.pop(result.stem, 0)
        self.done += n
        self.stems_done += 1
        if result.status in ("failed", "timed_out"):
            self.failed += 1
        if self.bar is not None:
            self._postfix()
        if self.bar is not None:
            self._draw(lambda: self.bar.update(n))
        self._emit(result)

    def close(self) -> None:
        if self.bar is not None:
            self._draw(self.bar.close)


