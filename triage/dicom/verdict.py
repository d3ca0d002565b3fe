"""`GeometryVerdict`: what the loader concluded about a series' geometry.

Shared by every stage that can judge a geometry: the per-slice header reads
(`triage.dicom.pixels`), the stack analysis (`triage.dicom.geometry`) and the volume
(`triage.dicom.volume`); reports, caches and rules record its string value.
"""

from __future__ import annotations

from enum import StrEnum


class GeometryVerdict(StrEnum):
    """What the loader concluded about a series' geometry; recorded in every report."""

    OK = "ok"
    RESAMPLED_IRREGULAR = "resampled-irregular"
    TILT = "tilt"
    GAPS = "gaps"
    DUPLICATES = "duplicates"
    MIXED_LOCALIZER = "mixed-localizer"
    MISSING_POSITIONS = "missing-positions"
    MALFORMED = "malformed-values"
    #: Slices disagree on size, pixel spacing or orientation beyond a stray localizer.
    INCONSISTENT = "inconsistent-slices"
    #: Irregular spacing that the options forbade resampling.
    IRREGULAR = "irregular-spacing"

    @property
    def trustworthy(self) -> bool:
        """True when the volume's geometry can be used for classification.

        `RESAMPLED_IRREGULAR`, `MIXED_LOCALIZER` and `TILT` are trustworthy but flagged:
        the loader resampled onto a regular grid, set the stray localizer aside, or
        resliced the gantry tilt onto an orthogonal grid (see docs/geometry.md).
        """
        return self in _TRUSTWORTHY


_TRUSTWORTHY = {GeometryVerdict.OK, GeometryVerdict.RESAMPLED_IRREGULAR,
                GeometryVerdict.MIXED_LOCALIZER, GeometryVerdict.TILT}
