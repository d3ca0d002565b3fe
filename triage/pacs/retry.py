"""Retry a network call with exponential backoff; tell transient failures from final ones."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
LOGGER = logging.getLogger(__name__)
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
"""HTTP statuses worth asking again (timeouts, throttling, a server restarting)."""


def http_status(err: BaseException) -> int | None:
    """The HTTP status of a requests error (``err.response.status_code``), else None."""
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None) if response is not None else None


def is_transient(err: BaseException) -> bool:
    """A connection failure, a timeout, an answer cut off mid-body or a transient HTTP
    status: try again.

    A body cut off by the network shows as requests' ``ChunkedEncodingError`` (urllib3's
    ``ProtocolError`` or ``IncompleteRead`` inside), or as those raised as they are.

    Example:
        >>> import http.client
        >>> is_transient(http.client.IncompleteRead(b"half"))
        True
        >>> is_transient(ValueError("not a multipart answer"))
        False
    """
    status = http_status(err)
    if status is not None:
        return status in TRANSIENT_STATUS
    import http.client

    import requests
    import urllib3

    return isinstance(err, requests.ConnectionError | requests.Timeout
                      | requests.exceptions.ChunkedEncodingError
                      | urllib3.exceptions.ProtocolError | urllib3.exceptions.TimeoutError
                      | http.client.IncompleteRead | ConnectionError | TimeoutError)


@dataclass(frozen=True)
class Backoff:
    """How often and how patiently to retry.

    Attributes:
        attempts: tries in all (1 = no retry).
        first_wait: seconds before the second try; doubled each time, up to `max_wait`.
        max_wait: the longest wait between two tries.
    """

    attempts: int = 5
    first_wait: float = 0.5
    max_wait: float = 8.0

    def call(self, fn: Callable[[], T], what: str) -> T:
        """`fn()`, retried while it fails transiently; the last error is raised as is."""
        wait = self.first_wait
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except Exception as err:
                if attempt == self.attempts or not is_transient(err):
                    raise
                LOGGER.warning("%s failed (%s, try %d of %d); retrying in %.1f s.", what,
                               _describe(err), attempt, self.attempts, wait)
                time.sleep(wait)
                wait = min(wait * 2, self.max_wait)
        raise AssertionError("unreachable")  # pragma: no cover


def _describe(err: BaseException) -> str:
    status = http_status(err)
    return f"HTTP {status}" if status is not None else type(err).__name__
