"""Where the main process of a run spends its wall time, stage by stage.

`run_export` reports the stages in ``run_summary.json`` (``stage_seconds``), so a slow run
says whether the model waited for ingest or ingest for the model without a profiler.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


class Stopwatch:
    """Accumulates wall seconds per named stage.

    Example:
        >>> clock = Stopwatch()
        >>> with clock("inference"):
        ...     pass
        >>> list(clock.rounded())
        ['inference']
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = (self.seconds.get(stage, 0.0)
                                   + time.perf_counter() - started)

    def timed(self, items: Iterable[T], stage: str) -> Iterator[T]:
        """`items`, with the time spent waiting for each one counted as `stage`."""
        iterator = iter(items)
        try:
            while True:
                with self(stage):
                    try:
                        item = next(iterator)
                    except StopIteration:
                        return
                yield item
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:  # a generator's cleanup (a worker pool) runs now
                close()

    def rounded(self, digits: int = 3) -> dict[str, float]:
        """The stages in the order first timed, seconds rounded."""
        return {stage: round(s, digits) for stage, s in self.seconds.items()}
