"""Decode one series in parts across processes: `decode_part` per part, `merge_parts` after.

Where a pool would otherwise end with one worker decoding a long compressed series alone,
`triage.ingest.stream` splits that series' files into one part per worker
(`triage.ingest.schedule.plan_series`), decodes each part's stored values in its own process
(`decode_part`), and assembles the volume in one process from the merged parts
(``load_series(..., decoded=...)``), which reads and checks every header as usual. A part
that fails to decode makes the series load whole instead, so its error is exactly the one a
plain load reports: results never depend on the plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from triage.dicom.volume.loader import LoadOptions, decode_stored
from triage.errors import TriageError


def decode_part(paths: Sequence[str], options: LoadOptions) -> dict[str, np.ndarray] | None:
    """Stored values of one part of a series' files (`decode_stored`), run in a worker.

    Args:
        paths: the part's files.
        options: the loader's options.

    Returns:
        The arrays by ``str(path)``, or None when a file fails: the whole-series load then
        reports it, with the series' own message.
    """
    try:
        return decode_stored(paths, options=options)
    except TriageError:
        return None


def merge_parts(parts: Iterable[Mapping[str, np.ndarray] | None]
                ) -> dict[str, np.ndarray] | None:
    """The decoded arrays of all parts of a series, for ``load_series(..., decoded=...)``.

    Args:
        parts: what `decode_part` returned for each part.

    Returns:
        One mapping, or None when a part failed (load the series whole instead).
    """
    merged: dict[str, np.ndarray] = {}
    for part in parts:
        if part is None:
            return None
        merged.update(part)
    return merged
