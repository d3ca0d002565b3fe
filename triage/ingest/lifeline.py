"""Worker processes die with their parent: a killed run leaves no orphans behind.

A `triage run` or `triage ingest` killed with SIGKILL cannot shut its pool down, and its
workers (each holding a decoded study, hundreds of MB) would wait forever for work that
never comes. Each worker therefore asks Linux to kill it when its parent dies
(``prctl(PR_SET_PDEATHSIG)``), and a watchdog thread, for other systems and for a parent
that dies before the request is made, exits once the parent is gone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading
import time

LOGGER = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1
POLL_SECONDS = 1.0


def _parent_death_signal(sig: int) -> bool:
    """Ask Linux to send `sig` to this process when its parent exits (False elsewhere)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent: int) -> None:
    while True:
        time.sleep(POLL_SECONDS)
        if os.getppid() != parent:  # reparented: the parent is gone
            os._exit(1)


def die_with_parent(parent: int | None = None) -> None:
    """Make the calling worker process exit when the process that started it dies.

    Call it first thing in a worker (a pool initializer).

    Args:
        parent: the parent's process ID, taken in the parent (``os.getpid()`` in its
            ``initargs``), so that a parent that died before the worker got here is
            noticed; default: the current parent.
    """
    parent = os.getppid() if parent is None else parent
    _parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)
    threading.Thread(target=_watch, args=(parent,), name="triage-lifeline",
                     daemon=True).start()
