"""How inference and the ingest worker processes share the CPU in `triage run`.

On a machine without an accelerator the model's forward passes and the ingest workers
compete for the same cores. Two ways of sharing them were measured on 2 cores
(docs/benchmarks.md, run section):

- Splitting the cores (inference on the cores the workers leave free, one thread on 2
  cores) left a heavy network's forward passes at half speed while the workers, waiting on
  a full prefetch window, idled: the CPU was 57% busy.
- Giving inference every core and the workers the lowest scheduling priority lets the
  model's threads take the cores whenever they are ready, while the workers fill the time
  the model leaves idle (its Python between passes, the pipeline waiting on a batch).

`triage run` does the second: ingest workers at the lowest priority
(`triage.ingest.stream.lower_priority`), torch's full thread pool for inference, and
OpenMP threads that sleep instead of spinning when they run out of work
(`prefer_passive_openmp`), so that an idle inference thread does not hold a core a worker
could use between two parallel regions.
"""

from __future__ import annotations

import os
import sys


def available_cpus() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def prefer_passive_openmp() -> bool:
    """Ask OpenMP for sleeping, not spinning, idle threads (``OMP_WAIT_POLICY=PASSIVE``).

    The setting is read once, when torch loads its OpenMP runtime, so this must run before
    torch is first imported; a value the user set is kept.

    Returns:
        Whether the setting now applies to this process.
    """
    if "torch" in sys.modules:
        return os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return os.environ["OMP_WAIT_POLICY"].upper() == "PASSIVE"
