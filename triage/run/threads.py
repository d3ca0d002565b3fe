"""How many CPU threads inference gets while ingest worker processes run beside it.

torch sizes its intra-op pool to every core. In `triage run` the ingest workers already
keep those cores busy, so a full pool oversubscribes them: OpenMP threads spin at each
barrier waiting for a sibling the scheduler has parked behind an ingest process. On 2
shared cores a batch of the demo network took 3-4x longer with 2 threads than with one
(docs/benchmarks.md, run section). Inference therefore gets the cores the workers leave
free, at least one, and never more than torch would have used.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


def available_cpus() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def inference_threads(workers: int, current: int, cpus: int | None = None) -> int:
    """Intra-op threads for inference beside `workers` ingest processes.

    Args:
        workers: ingest worker processes running at the same time (1 = ingest inline, in
            turn with inference: nothing to share).
        current: the threads torch would use (``torch.get_num_threads()``); an explicit
            lower setting (``OMP_NUM_THREADS``, ``torch.set_num_threads``) is kept.
        cpus: cores available (default: `available_cpus`).

    Example:
        >>> inference_threads(workers=2, current=2, cpus=2)
        1
        >>> inference_threads(workers=4, current=16, cpus=16)
        12
        >>> inference_threads(workers=1, current=8, cpus=8)
        8
    """
    if workers <= 1:
        return max(1, current)
    free = (cpus or available_cpus()) - workers
    return max(1, min(current, free))


@contextlib.contextmanager
def limit_inference_threads(workers: int) -> Iterator[int]:
    """Set torch's intra-op threads to `inference_threads` for the block, then restore.

    Yields:
        The thread count inference runs with.
    """
    import torch

    before = torch.get_num_threads()
    threads = inference_threads(workers, before)
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)
