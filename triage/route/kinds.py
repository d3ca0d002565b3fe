"""The built-in rule kinds (docs/rules.md lists each with its options and reason)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from triage.dicom.verdict import GeometryVerdict
from triage.route.guarantee import high_statement, label_parts, low_statement
from triage.route.rules import Rule, RuleContext, Stage, register_rule
from triage.route.thresholds import GroupThresholds
from triage.route.types import Route, StudyEvidence

_VERDICTS = [v.value for v in GeometryVerdict]


def _texts(values: tuple, option: str) -> tuple[str, ...]:
    if isinstance(values, str) or not all(isinstance(v, str) and v for v in values):
        raise ValueError(f"{option} must be a list of non-empty strings, got {values!r}.")
    return tuple(values)


@register_rule("ingest-failure")
@dataclass(frozen=True)
class IngestFailure(Rule):
    """Failed: no volume could be built from the study."""

    route = Route.FAILED
    stage = Stage.FAILURE

    def check(self, evidence: StudyEvidence, context: RuleContext) -> str | None:
        if evidence.ingest_ok:
            return None
        return f"ingest failed: {evidence.ingest_reasons or 'no reason was recorded'}"


@register_rule("inference-error")
@dataclass(frozen=True)
class InferenceError(Rule):
    """Failed: inference raised, or gave no finite calibrated probability."""

    route = Route.FAILED
    stage = Stage.FAILURE

    def check(self, evidence: StudyEvidence, context: RuleContext) -> str | None:
        if not evidence.ingest_ok:
            return None
        if evidence.inference_error:
            return f"inference failed: {evidence.inference_error}"
        if evidence.p_calibrated is None:
            return "inference gave no calibrated probability"
        if math.isnan(evidence.p_calibrated):
            return "inference gave a NaN probability"
        return None


@register_rule("geometry-verdict")
@dataclass(frozen=True)
class GeometryReview(Rule):
    """Review: the series' geometry verdict is one that a reader must check."""

    route = Route.REVIEW
    stage = Stage.QC
    review_verdicts: tuple[str, ...] = ("resampled-irregular", "tilt", "mixed-localizer")

    def __post_init__(self) -> None:
        super().__post_init__()
        verdicts = _texts(self.review_verdicts, "review_verdicts")
        unknown = [v for v in verdicts if v not in _VERDICTS]
        if unknown:
            raise ValueError(f"review_verdicts holds unknown verdict '{unknown[0]}'; valid "
                             f"verdicts: {', '.join(_VERDICTS)}.")

    def check(self, evidence: StudyEvidence, context: RuleContext) -> str | None:
        if evidence.verdict not in self.review_verdicts:
            return None
        notes = f" ({'; '.join(evidence.warnings)})" if evidence.warnings else ""
        return f"geometry verdict '{evidence.verdict}' must be reviewed{notes}"


@register_rule("min-slices")
@dataclass(frozen=True)
class MinSlices(Rule):
    """Review: the series used has fewer than `min_slices` slices."""

    route = Route.REVIEW
    stage = Stage.QC
    min_slices: int = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.min_slices, bool) or not isinstance(self.min_slices, int) \
                or self.min_slices < 1:
            raise ValueError(f"min_slices must be an integer >= 1, got {self.min_slices!r}.")

    def check(self, evidence: StudyEvidence, context: RuleContext) -> str | None:
        if evidence.n_slices >= self.min_slices:
            return None
        return f"only {evidence.n_slices} slices (fewer than {self.min_slices})"


@register_rule("modality")
@dataclass(frozen=True)
class UnexpectedModality(Rule):
    """Review: the series' modality is not among `allowed`."""

    route = Route.REVIEW
    stage = Stage.QC
    allowed: tuple[str, ...] = ("CT",)

    def __post_init__(self) -> None:
        super().__post_init__()
        _texts(self.allowed, "allowed")

    def check(self, evidence: StudyEvidence, context: RuleContext) -> str | None:
        if evidence.modality in self.allowed:
            return None
        shown = f"'{evidence.modality}'" if evidence.modality else "(unknown)"
        return f"unexpected modality {shown} (allowed: {', '.join(self.allowed)})"


@register_rule("unseen-device")
@dataclass(frozen=True)
class UnseenDevice(Rule):
    """Review: the study's device group was not among the model's training devices."""

    route = Route.REVIEW
    stage = Stage.QC

    def check(self, evidence: StudyEvidence, context: RuleContext) -> str | None:
        if evidence.device_group in context.train_devices:
            return None
        return f"device group '{evidence.device_group}' was not seen in training"


@register_rule("input-distance")
@dataclass(frozen=True)
class InputDistance(Rule):
    """Review: the input statistics are farther than `max_distance` from the training
    devices'; an unknown distance fires only with `review_unknown`."""

    route = Route.REVIEW
    stage = Stage.QC
    max_distance: float = 3.0
    review_unknown: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        bound = self.max_distance
        if isinstance(bound, bool) or not isinstance(bound, int | float) \
                or not math.isfinite(bound) or bound <= 0:
            raise ValueError(f"max_distance must be a positive number, got {bound!r}.")
        if not isinstance(self.review_unknown, bool):
            raise ValueError(f"review_unknown must be true or false, got "
                             f"{self.review_unknown!r}.")

    def check(self, evidence: StudyEvidence, context: RuleContext) -> str | None:
        distance = evidence.input_distance
        if distance is None or math.isnan(distance):
            return "input statistics unknown" if self.review_unknown else None
        if distance <= self.max_distance:
            return None
        return (f"input statistics are {distance:.3g} from the training devices' "
                f"(bound {self.max_distance:g})")


def _number(value: object, option: str, low: float, high: float | None = None) -> None:
    ok = not isinstance(value, bool) and isinstance(value, int | float) \
        and math.isfinite(value) and value >= low and (high is None or value <= high)
    if not ok:
        span = f"between {low:g} and {high:g}" if high is not None else f">= {low:g}"
        raise ValueError(f"{option} must be a number {span}, got {value!r}.")


@register_rule("degenerate-volume")
@dataclass(frozen=True)
class DegenerateVolume(Rule):
    """Review: the volume is no usable image (near-constant, a tiny matrix, or mostly air).

    Its probability is a number the model produced from nothing: never let it clear a
    study. A volume whose measurements are missing fires with `review_unknown`.
    """

    route = Route.REVIEW
    stage = Stage.QC
    min_intensity_std: float = 5.0
    min_matrix: int = 32
    min_body_fraction: float = 0.05
    review_unknown: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        _number(self.min_intensity_std, "min_intensity_std", 0.0)
        if isinstance(self.min_matrix, bool) or not isinstance(self.min_matrix, int) \
                or self.min_matrix < 1:
            raise ValueError(f"min_matrix must be an integer >= 1, got {self.min_matrix!r}.")
        _number(self.min_body_fraction, "min_body_fraction", 0.0, 1.0)
        if not isinstance(self.review_unknown, bool):
            raise ValueError(f"review_unknown must be true or false, got "
                             f"{self.review_unknown!r}.")

    def check(self, evidence: StudyEvidence, context: RuleContext) -> str | None:
        if not evidence.ingest_ok:
            return None
        matrix, std, body = evidence.matrix, evidence.intensity_std, evidence.body_fraction
        # A measurement that is missing, or that no volume can have, is no evidence that
        # the volume is usable (the body fraction is None for modalities without HU).
        unknown = [name for name, bad in (
            ("matrix", matrix is None or len(matrix) < 2),
            ("intensity spread", std is None or math.isinf(std)),
            ("body fraction", body is not None and not 0.0 <= body <= 1.0))  # NaN too
            if bad]
        if unknown and (matrix is None or len(matrix) < 2) and std is None:
            return ("degenerate-volume measurements are missing (volume not checked)"
                    if self.review_unknown else None)
        found = []
        if matrix is not None and len(matrix) >= 2 and min(matrix[:2]) < self.min_matrix:
            cols, rows = matrix[:2]
            found.append(f"a {cols} x {rows} matrix (fewer than {self.min_matrix} columns or "
                         f"rows)")
        if std is not None and not (std >= self.min_intensity_std):  # NaN included
            shown = f"{std:.3g} HU" if math.isfinite(std) else "not measurable"
            found.append(f"a blank or near-constant image (intensity spread {shown}, below "
                         f"{self.min_intensity_std:g})")
        if body is not None and body < self.min_body_fraction:
            found.append(f"mostly outside the body ({body:.1%} of voxels above -500 HU, below "
                         f"{self.min_body_fraction:.0%})")
        if found:
            return "degenerate volume: " + ", and ".join(found)
        if unknown and self.review_unknown:
            return (f"degenerate-volume measurements missing or impossible "
                    f"({', '.join(unknown)}): the volume is not known to be usable")
        return None


def _group(evidence: StudyEvidence, context: RuleContext) -> GroupThresholds | None:
    return context.thresholds.get(evidence.device_group)


@register_rule("uncertified-device")
@dataclass(frozen=True)
class UncertifiedDevice(Rule):
    """Review: the device group has no certified threshold (too few calibration data)."""

    route = Route.REVIEW
    stage = Stage.SCORE

    def check(self, evidence: StudyEvidence, context: RuleContext) -> str | None:
        if not evidence.has_score:
            return None
        group = _group(evidence, context)
        if group is None:
            return (f"no calibration studies for device {evidence.device_group}, so no "
                    f"threshold is certified")
        if group.certified:
            return None
        return group.low_reason or group.high_reason


@register_rule("urgent-threshold")
@dataclass(frozen=True)
class UrgentThreshold(Rule):
    """Urgent: the probability is at or above the device's certified urgent threshold."""

    route = Route.URGENT
    stage = Stage.SCORE

    def check(self, evidence: StudyEvidence, context: RuleContext) -> str | None:
        group = _group(evidence, context)
        if not evidence.has_score or group is None or group.t_high is None:
            return None
        if evidence.p_calibrated < group.t_high:
            return None
        cfg = context.thresholds.config
        promise = high_statement(*label_parts(group.high_guarantee, cfg.guarantee),
                                 ppv_target=cfg.ppv_target, delta=cfg.delta,
                                 urgent_fpr=cfg.urgent_fpr)
        return (f"p={evidence.p_calibrated:.4g} >= urgent threshold {group.t_high:.4g} for "
                f"device {group.group} ({promise})")


@register_rule("routine-threshold")
@dataclass(frozen=True)
class RoutineThreshold(Rule):
    """Routine: the probability is below the device's certified routine threshold."""

    route = Route.ROUTINE
    stage = Stage.SCORE

    def check(self, evidence: StudyEvidence, context: RuleContext) -> str | None:
        group = _group(evidence, context)
        if not evidence.has_score or group is None or group.t_low is None:
            return None
        if evidence.p_calibrated >= group.t_low:
            return None
        cfg = context.thresholds.config
        promise = low_statement(*label_parts(group.low_guarantee, cfg.guarantee), cfg.alpha,
                                cfg.delta)
        return (f"p={evidence.p_calibrated:.4g} < routine threshold {group.t_low:.4g} for "
                f"device {group.group} ({promise})")


@register_rule("low-confidence")
@dataclass(frozen=True)
class LowConfidence(Rule):
    """Review: a certified device, but the probability is in neither certified region."""

    route = Route.REVIEW
    stage = Stage.SCORE

    def check(self, evidence: StudyEvidence, context: RuleContext) -> str | None:
        group = _group(evidence, context)
        if not evidence.has_score or group is None or not group.certified:
            return None
        p = evidence.p_calibrated
        if (group.t_high is not None and p >= group.t_high) or (
                group.t_low is not None and p < group.t_low):
            return None
        low = f"{group.t_low:.4g}" if group.t_low is not None else "none"
        high = f"{group.t_high:.4g}" if group.t_high is not None else "none"
        return (f"low confidence: p={p:.4g} is between the routine threshold ({low}) and the "
                f"urgent threshold ({high}) certified for device {group.group}")
