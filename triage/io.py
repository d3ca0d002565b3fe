"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from triage.errors import ConfigError


@contextlib.contextmanager
def atomic_open(path: Path | str, mode: str = "w", *, durable: bool = True,
                **kwargs) -> Iterator[IO]:
    """Open a temporary file beside `path`; on success fsync it and rename it over `path`.

    The rename alone makes the write atomic for readers and survives a killed process;
    the fsync before it also survives a power cut. ``durable=False`` skips the fsync, for
    files whose damage is detected on reading and costs only recomputation (the volume
    cache: its entries carry a checksum).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> with atomic_open(p) as fh:
        ...     _ = fh.write("hello")
        >>> p.read_text()
        'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates the file 0600; give it the mode a plain open() would (umask).
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path | str, text: str, encoding: str = "utf-8", *,
                      durable: bool = True) -> None:
    """Write `text` to `path` atomically (`atomic_open`)."""
    with atomic_open(path, "w", durable=durable, encoding=encoding, newline="") as fh:
        fh.write(text)


def prepare_out_dir(out_dir: Path | str, option: str = "--out") -> Path:
    """Create the output folder `out_dir` if needed and check that files can be written in it.

    Raises:
        ConfigError: it is a file, lies under a file, or cannot be created or written
            (read-only file system, permissions).
    """
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as err:
        why = os.strerror(err.errno) if err.errno else type(err).__name__
        if isinstance(err, FileExistsError) or out_dir.is_file():
            why = "it is a file, not a folder"
        raise ConfigError(f"Output folder {out_dir} cannot be used: {why}. Give {option} a "
                          f"folder that can be created and written.") from err
    return out_dir


def check_out_file(path: Path | str, option: str) -> Path:
    """Check that the file `path` (given as `option`) can be written, before any work.

    Raises:
        ConfigError: it is a folder, or a folder on its way is a file.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder; give a file path.")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{option} {path} cannot be written: {parent} is a file, "
                                  f"not a folder.")
            break
    return path


LOCK_NAME = ".triage.lock"
#: `atomic_open`'s temporary files: ``.<name>.<8 random characters of mkstemp>.tmp``.
_TEMP = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")
#: Folders this process holds the lock of: resolved path -> [file descriptor, holders].
_HELD: dict[str, list[int]] = {}


def lock_out_dir(out_dir: Path | str) -> Callable[[], None]:
    """Take the exclusive lock of the output folder `out_dir`; return its release.

    Two processes writing one run's journal would each redo every study and could both
    write its header. The lock is an advisory ``flock`` on ``OUT/.triage.lock``: the OS
    drops it when its process dies, so a killed run never leaves the folder locked. Within
    one process the lock is shared (taken again, it counts holders). Where the filesystem
    has no locks (some NFS mounts) a warning says so and the run goes on unlocked.

    Raises:
        ConfigError: another process holds the lock.
    """
    import fcntl

    out_dir = Path(out_dir)
    key = str(out_dir.resolve())
    if key in _HELD:
        _HELD[key][1] += 1
        return lambda: _release(key)
    fd = os.open(out_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(f"Output folder {out_dir} is in use by another triage process; "
                          f"wait for it to finish, or give another --out.") from None
    except OSError as err:  # ENOLCK, EOPNOTSUPP: a filesystem without locks
        logging.getLogger(__name__).warning(
            "Output folder %s cannot be locked (%s); do not start a second run on it.",
            out_dir, err.strerror)
    _HELD[key] = [fd, 1]
    return lambda: _release(key)


def _release(key: str) -> None:
    held = _HELD.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] <= 0:
        del _HELD[key]
        os.close(held[0])  # drops the flock


def remove_stale_temp(folder: Path | str) -> int:
    """Remove the temporary files `atomic_open` left in `folder` (and below) when its
    process was killed mid-write; return how many. Call it only while holding the
    folder's lock (`lock_out_dir`): another process's temporary files are live."""
    removed = 0
    for path in Path(folder).rglob(".*.tmp"):
        if _TEMP.fullmatch(path.name) and path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed
