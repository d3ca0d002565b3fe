"""Device groups: a stable, readable key for the scanner model that made a series."""

from __future__ import annotations

import re
from functools import lru_cache

UNKNOWN_DEVICE = "unknown"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.strip().lower()).strip("-")


@lru_cache(maxsize=1024)  # a few scanner models per export, met on every file
def device_group(manufacturer: str | None, model_name: str | None) -> str:
    """Device group from Manufacturer and ManufacturerModelName, normalized.

    Scanners of one model share reconstruction, noise and calibration behaviour, so the
    group is the (manufacturer, model) pair; StationName names one machine and is kept as
    provenance only. A manifest may override the group.

    Example:
        >>> device_group("SIEMENS ", "SOMATOM Definition AS+")
        'siemens-somatom-definition-as'
        >>> device_group(None, "")
        'unknown'
    """
    parts = [_slug(p) for p in (manufacturer or "", model_name or "") if p and _slug(p)]
    return "-".join(parts) if parts else UNKNOWN_DEVICE
