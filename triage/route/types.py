"""What the rule layer reads (`StudyEvidence`) and what it decides (`Route`, `RouteDecision`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum, StrEnum


class Route(StrEnum):
    """Where a study goes; the value is what the worklist CSVs hold."""

    URGENT = "urgent"
    ROUTINE = "routine"
    REVIEW = "review"
    FAILED = "failed"


class Priority(IntEnum):
    """Reading priority of a study: lower is read sooner.

    `review_worklist.csv` holds the `review` and `failed` studies sorted by this value
    (then by calibrated probability, highest first, unknown last). The scale:

    1. `URGENT`: routed urgent (a certified confident finding).
    2. `SUSPECTED`: routed review, but a suspected positive: its probability is at least the
       rules file's ``priority.suspect_p`` (default 0.5), even on an uncertified device, or
       at or above the device's certified urgent threshold while a QC or shift rule sent it
       to review. Read first among reviews (CADt-style prioritization: the order changes,
       the route does not). `URGENT_REVIEW` is the old name of this value.
    3. `FAILED`: no usable model output (ingest or inference failed): unknown content that
       must be read without help, and often a re-export is needed, so it comes early.
    4. `REVIEW`: every other review (low confidence, QC, unseen device, uncertified device).
    5. `ROUTINE`: routed routine (certified confident no finding).
    """

    URGENT = 1
    SUSPECTED = 2
    URGENT_REVIEW = 2  # alias of SUSPECTED (its name before suspect_p)
    FAILED = 3
    REVIEW = 4
    ROUTINE = 5


@dataclass(frozen=True)
class StudyEvidence:
    """Everything the rules need to know about one study.

    Attributes:
        study_uid: Study Instance UID (never a patient identifier).
        device_group: the study's device group (manufacturer/model key).
        modality: DICOM Modality of the series used (``"CT"``); empty when unknown.
        ingest_ok: False when no volume could be built from the study.
        ingest_reasons: why ingest failed (or what it noted), human-readable.
        verdict: the geometry verdict of the series used (``GeometryVerdict`` value).
        warnings: the loader's QC warnings, human-readable.
        n_slices: number of slices of the series used.
        p_calibrated: calibrated probability of a finding; None when there is none.
        inference_error: why inference failed; empty when it did not.
        input_distance: how far the study's input intensity statistics are from the
            training devices' (computed elsewhere); None when unknown.
        matrix: the native volume's shape (columns, rows, slices); None when unknown.
        intensity_std: standard deviation of the volume's intensity (HU for CT); None
            when unknown, NaN when it could not be measured.
        body_fraction: fraction of voxels above -500 HU (inside the body); None when
            unknown or not CT.

    Raises:
        ValueError: `p_calibrated` is a number outside [0, 1] (NaN is accepted and treated
            as an inference failure by the rules), or `n_slices` is negative.
    """

    study_uid: str
    device_group: str
    modality: str
    ingest_ok: bool
    ingest_reasons: str = ""
    verdict: str = ""
    warnings: tuple[str, ...] = ()
    n_slices: int = 0
    p_calibrated: float | None = None
    inference_error: str = ""
    input_distance: float | None = None
    matrix: tuple[int, ...] | None = None
    intensity_std: float | None = None
    body_fraction: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "warnings", tuple(str(w) for w in self.warnings))
        if self.matrix is not None:
            object.__setattr__(self, "matrix", tuple(int(n) for n in self.matrix))
        p = self.p_calibrated
        if p is not None:
            p = float(p)
            if not math.isnan(p) and not 0.0 <= p <= 1.0:
                raise ValueError(f"StudyEvidence p_calibrated must be a probability in [0, 1] "
                                 f"(study {self.study_uid}), got {self.p_calibrated!r}.")
            object.__setattr__(self, "p_calibrated", p)
        if self.n_slices < 0:
            raise ValueError(f"StudyEvidence n_slices must be >= 0 (study {self.study_uid}), "
                             f"got {self.n_slices!r}.")

    @property
    def has_score(self) -> bool:
        """True when the study has a finite calibrated probability."""
        return self.p_calibrated is not None and not math.isnan(self.p_calibrated)


@dataclass(frozen=True)
class RouteDecision:
    """The route of one study and why.

    Attributes:
        route: the route, decided by the first rule that fired.
        priority: reading priority, lower = sooner (see `Priority`).
        rule_ids: ids of every rule that fired, in evaluation order; the first decided.
        reasons: one sentence per fired rule, aligned with `rule_ids`.
        guarantee: the guarantee that covers an `urgent` or `routine` route, e.g.
            ``pac/device a=0.01 d=0.05``; empty for review and failed.
        priority_reason: the priority in plain words.
    """

    route: Route
    priority: int
    rule_ids: tuple[str, ...]
    reasons: tuple[str, ...]
    guarantee: str = ""
    priority_reason: str = ""

    @property
    def reason_text(self) -> str:
        """The reasons joined with ``"; "`` (one CSV cell)."""
        return "; ".join(self.reasons)
