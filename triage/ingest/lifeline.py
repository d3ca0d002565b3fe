"""Worker processes die with their parent: a killed run leaves no orphans behind.

A `triage run` or `triage ingest` killed with SIGKILL cannot shut its pool down, and its
workers (each holding a decoded study, hundreds of MB) would wait forever for work that
never comes. Each worker therefore asks Linux to kill it when its parent dies
(``prctl(PR_SET_PDEATHSIG)``), and a watchdog thread, for other systems and for a parent
that dies before the request is made, exits once the parent is gone. A worker started by
a forkserver (`triage.processes`) watches the process that owns its pool instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import select
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


def _watch_process(parent: int) -> None:
    """Exit once process `parent` (not this process's parent) has ended."""
    try:
        fd = os.pidfd_open(parent)  # Linux: readable once the process has exited
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):  # no pidfd here: poll for the process
        while True:
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass  # alive, another user's: cannot happen for our own starter
            time.sleep(POLL_SECONDS)
    select.select([fd], [], [])
    os._exit(1)


def die_with_parent(parent: int | None = None) -> None:
    """Make the calling worker process exit when the process that started it dies.

    Call it first thing in a worker (a pool initializer).

    Args:
        parent: the ID of the process whose death ends this worker, taken there
            (``os.getpid()`` in the pool's ``initargs``), so that one that died before the
            worker got here is noticed; default: the current parent. A worker started by
            a forkserver has the server as its parent, which outlives the pool's owner
            while a worker holds its pipe: it watches the owner itself (`_watch_process`).
    """
    if parent is not None and parent != os.getppid():
        watch = _watch_process
    else:
        parent = os.getppid() if parent is None else parent
        _parent_death_signal(signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the request was made
            os._exit(1)
        watch = _watch
    threading.Thread(target=watch, args=(parent,), name="triage-lifeline",
                     daemon=True).start()
