"""How worker processes start: from a forkserver, not by forking the caller.

A worker forked from the caller shares every page the caller holds (a loaded network, an
export's scan, MLflow's modules) copy-on-write, and each page the caller changes afterwards
stays behind as the worker's own copy: the workers' memory grew with the size of the export
(docs/benchmarks.md, "`triage run`: throughput and memory"). A forkserver is a small process
that imports the workers' modules once and forks each worker from itself. Forking no
process that runs threads (torch, MLflow) is also the safe way to start them.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import BaseContext


def forkserver_available() -> bool:
    """Whether this platform starts processes from a forkserver (Linux, macOS)."""
    return "forkserver" in multiprocessing.get_all_start_methods()


# What the forkserver imports once for every worker it starts: the export scan's reader and
# the ingest (numpy, pydicom, SimpleITK, the loader). A process has one forkserver, started
# by its first pool, so one list serves every pool.
WORKER_MODULES = ("triage.dicom.scan.scan", "triage.ingest.study", "triage.ingest.parallel_load")


def worker_context() -> BaseContext:
    """The context worker pools start their processes with: the forkserver (importing
    `WORKER_MODULES` when it starts) where the platform has one, else the default."""
    if not forkserver_available():
        return multiprocessing.get_context()
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(WORKER_MODULES))
    return context
