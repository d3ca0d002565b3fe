"""Collect what pydicom warns and logs while reading, instead of letting it reach stderr.

pydicom reports oddities twice: with `warnings.warn` and on its ``pydicom`` logger (e.g.
"Expected explicit VR, but found implicit VR - using implicit VR for reading"). On an
ingest of thousands of files both end up on stderr as noise, detached from the file or
study they concern. `capture_pydicom` gathers both into a list the caller turns into
report warnings; captures nest, an inner one passing its notes on to the outer one.
pydicom's texts may quote element values (a patient's name), so every quoted value is
replaced by ``'…'`` before a note leaves this module.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

_QUOTED = re.compile(r"""b?'[^']*'|b?"[^"]*\"""")
#: An object's address in its repr (``<_io.BytesIO object at 0x7f…>``): new on every run.
ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_STACK: list[list[str]] = []


def redact(message: str) -> str:
    """`message` on one line with every quoted value replaced by ``'…'`` and object
    addresses dropped (so that a rerun writes the same text).

    Example:
        >>> redact("Invalid value for VR PN: 'Doe^John'")
        "Invalid value for VR PN: '…'"
        >>> redact("cannot identify image file <_io.BytesIO object at 0x7f32a2b775b0>")
        'cannot identify image file <_io.BytesIO object>'
    """
    return " ".join(ADDRESS.sub("", _QUOTED.sub("'…'", message)).split())


class _Collector(logging.Handler):
    def __init__(self, notes: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.notes = notes

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.notes.append(redact(record.getMessage()))


@contextmanager
def capture_pydicom() -> Iterator[list[str]]:
    """Collect pydicom's warnings and WARNING log records in the block, none to stderr.

    Yields:
        A list that holds, once the block ends, pydicom's messages redacted and without
        repeats, in order. Warnings raised by other libraries are passed on unchanged.
    """
    notes: list[str] = []
    logger = logging.getLogger("pydicom")
    handler = _Collector(notes)
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    _STACK.append(notes)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield notes
    finally:
        _STACK.pop()
        logger.removeHandler(handler)
        logger.propagate = propagate
        for item in caught:
            if "pydicom" in item.filename.replace("\\", "/").split("/"):
                notes.append(redact(str(item.message)))
            else:
                warnings.warn_explicit(item.message, item.category, item.filename,
                                       item.lineno)
        unique = list(dict.fromkeys(notes))
        notes[:] = unique
        if _STACK:
            _STACK[-1].extend(unique)
