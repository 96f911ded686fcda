"""Batches of stems: largest first, small stems packed into tasks sized from measured task time."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from ._plan import StemPlan
from ._report import StemResult

__all__ = ["TARGET_TASK_SECONDS", "Batcher"]

TARGET_TASK_SECONDS = 0.2  # joblib's lesson: tasks of 0.2 s amortise per-task overhead


class Batcher:
    """Hands out tasks largest stem first, packing small stems so a task takes ~0.2 s.

    Per-stem cost is learnt as results arrive (joblib's method): a fixed overhead per stem
    plus bytes over throughput.
    """

    def __init__(self, stems: Sequence[StemPlan], workers: int):
        self.queue: deque[tuple[StemPlan, int]] = deque(
            (s, 1) for s in sorted(stems, key=lambda s: (-s.bytes, s.stem)))
        self.workers = workers
        self.overhead, self.rate = 0.003, 50e6  # first guesses: 3 ms per stem, 50 MB/s
        self.bytes_left = sum(s.bytes for s in stems)

    def __bool__(self) -> bool:
        return bool(self.queue)

    def retry(self, stem: StemPlan, attempt: int) -> None:
        self.queue.appendleft((stem, attempt))
        self.bytes_left += stem.bytes

    def learn(self, results: Sequence[StemResult]) -> None:
        for r in results:
            if r.status != "ok" or r.seconds <= 0:
                continue
            if r.bytes_in >= 1 << 20:
                self.rate = 0.7 * self.rate + 0.3 * (r.bytes_in / r.seconds)
            elif r.bytes_in < 256 << 10:
                self.overhead = 0.7 * self.overhead + 0.3 * r.seconds

    def cost(self, s: StemPlan) -> float:
        return self.overhead + s.bytes / self.rate

    def _take(self) -> tuple[StemPlan, int]:
        item = self.queue.popleft()
        self.bytes_left -= item[0].bytes
        return item

    def next(self) -> list[tuple[StemPlan, int]]:
        first = self._take()
        batch = [first]
        if first[1] > 1:
            return batch
        left = self.overhead * len(self.queue) + self.bytes_left / self.rate
        target = min(TARGET_TASK_SECONDS, max(0.005, left / (4 * self.workers)))
        spent = self.cost(first[0])
        while self.queue and self.queue[0][1] == 1 and spent + self.cost(self.queue[0][0]) <= target:
            batch.append(self._take())
            spent += self.cost(batch[-1][0])
        return batch


