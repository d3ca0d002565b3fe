"""The configurable rules of series selection, and the codes of their rejections.

`SelectionRules` says which series may be classified (`triage.dicom.select.series_check` applies
it to one series); `Rejection` is the stable code each broken rule gives. docs/ingest.md
lists the rules in the order they are checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from triage.settings import require_finite

SECONDARY_CAPTURE_CLASSES = frozenset(
    "1.2.840.10008.5.1.4.1.1.7" + suffix for suffix in ("", ".1", ".2", ".3", ".4")
)


class Rejection(StrEnum):
    """Why a series was not chosen; the value is the stable code reports carry."""

    UNREADABLE = "unreadable"
    MODALITY = "modality"
    SECONDARY_CAPTURE = "secondary-capture"
    NO_PIXEL_DATA = "no-pixel-data"
    LOCALIZER = "localizer"
    IMAGE_TYPE = "image-type"
    ORIENTATION = "orientation"
    TOO_FEW_SLICES = "too-few-slices"
    NOT_PREFERRED = "not-preferred"


@dataclass(frozen=True)
class SelectionRules:
    """Which series may be classified, and which one is preferred.

    Attributes:
        allowed_modalities: DICOM Modality values accepted (upper-cased); ``"*"`` accepts
            every modality, a missing one included (for surveys of an archive).
        require_original_primary: ImageType must start ``ORIGINAL\\PRIMARY``; reformats,
            MIPs and other derived series are rejected.
        reject_localizers: reject series whose images are all ImageType LOCALIZER or whose
            SeriesDescription matches `localizer_pattern`.
        localizer_pattern: case-insensitive regular expression for scout descriptions.
        min_slices: fewest slices (frames, for multi-frame) in the dominant orientation.
        orientation_tolerance: largest difference between direction cosines of images that
            share an orientation.

    Raises:
        ValueError: on an empty modality list, `min_slices` < 1, a tolerance outside
            (0, 1) or a pattern that does not compile.

    Example:
        >>> SelectionRules(allowed_modalities=("ct", "mr"), min_slices=8).allowed_modalities
        ('CT', 'MR')
    """

    allowed_modalities: tuple[str, ...] = ("CT",)
    require_original_primary: bool = True
    reject_localizers: bool = True
    localizer_pattern: str = r"scout|topogram|locali[sz]er|surview|scanogram"
    min_slices: int = 16
    orientation_tolerance: float = 1e-3

    def __post_init__(self) -> None:
        modalities = self.allowed_modalities
        modalities = (modalities,) if isinstance(modalities, str) else tuple(modalities)
        modalities = tuple(m.strip().upper() for m in modalities if m.strip())
        if not modalities:
            raise ValueError("SelectionRules.allowed_modalities must name at least one "
                             "modality, e.g. ('CT',).")
        object.__setattr__(self, "allowed_modalities", modalities)
        require_finite(self)
        if not isinstance(self.min_slices, int) or self.min_slices < 1:
            raise ValueError(f"SelectionRules.min_slices must be an integer >= 1, got "
                             f"{self.min_slices!r}.")
        if not 0 < self.orientation_tolerance < 1:
            raise ValueError("SelectionRules.orientation_tolerance must be in (0, 1), got "
                             f"{self.orientation_tolerance!r}.")
        try:
            re.compile(self.localizer_pattern)
        except re.error as err:
            raise ValueError(f"SelectionRules.localizer_pattern {self.localizer_pattern!r} "
                             f"is not a regular expression: {err}.") from err

    def allows(self, modality: str | None) -> bool:
        """Whether a series of `modality` may be classified.

        Example:
            >>> SelectionRules(allowed_modalities=("*",)).allows(None)
            True
        """
        return "*" in self.allowed_modalities or modality in self.allowed_modalities
