"""Which stored labels form a valid calibration sample for one model (docs/feedback.md).

The sample is the set of labelled studies that a run put in its *calibration sample*:
studies that reached the score rules (every rule that fired, the audit aside, is a SCORE
rule: they passed the FAILURE and QC rules, as the studies the thresholds are certified
for) and whose audit draw is below the run's audit fraction F. For an auto-routed study
that draw is what sent it to review (the audit); a review-routed study with the same draw
is read anyway. Either way inclusion depends on the study UID's hash only, never on the
image, the score or the finding, so the sample is a uniform Bernoulli(F) sample of the
studies that reached the score rules: exchangeable with them, as `fit_temperature` and
`fit_thresholds` assume, and used without weights.

A run whose calibration sample has an unlabelled study, or one whose readers' decisions
conflict, is left out entirely (its labels wait until the decisions for the rest are
imported, or the conflict is resolved): dropping single studies would let whatever made
a reader skip them, or readers disagree on them, bias the sample.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from triage.feedback.store import Label, SampledStudy
from triage.route.audit import AUDIT_RULE_ID, AuditDesign
from triage.route.rules import Stage

#: Why a label is not in the sample, in the order they are checked.
SKIP_REASONS = ("other model", "other rules", "not sampled", "not scored past QC",
                "incomplete run", "already used", "conflict", "duplicate")


@dataclass(frozen=True)
class CalibrationSample:
    """The labels to calibrate on, and why the others were left out.

    Attributes:
        labels: one label per study.
        skipped: reason (`SKIP_REASONS`) -> number of labels.
        incomplete_runs: runs left out because sampled studies lack a label or have
            conflicting ones.
        missing: those unlabelled sampled studies.
    """

    labels: list[Label]
    skipped: dict[str, int] = field(default_factory=dict)
    incomplete_runs: int = 0
    missing: int = 0


def passed_qc(rule_ids: str, stages: Mapping[str, Stage]) -> bool:
    """True when every rule that fired (the audit aside) is a SCORE rule of `stages`.

    Example:
        >>> stages = {"qc-slices": Stage.QC, "routine": Stage.SCORE}
        >>> passed_qc("audit; routine", stages), passed_qc("qc-slices; routine", stages)
        (True, False)
    """
    ids = [i for i in rule_ids.split("; ") if i and i != AUDIT_RULE_ID]
    return bool(ids) and all(stages.get(i) is Stage.SCORE for i in ids)


def select_sample(labels: Iterable[Label], sampled: Iterable[SampledStudy], *,
                  model_name: str, versions: Collection[str], rules_version: str,
                  stages: Mapping[str, Stage], consumed: Collection[str] = (),
                  conflicts: Collection[tuple[str, str, str]] = ()) -> CalibrationSample:
    """The valid calibration sample of one model (see the module docstring).

    Args:
        labels: the stored labels.
        sampled: the stored calibration-sample studies of every imported run.
        model_name: the registered model.
        versions: its versions that share the weights being recalibrated (labels scored
            by another network say nothing about this one's logits).
        rules_version: the rules (without audit suffix) whose thresholds are refitted.
        stages: rule id -> stage, of those rules.
        consumed: study UIDs that already calibrated a version.
        conflicts: (study UID, model name, version) keys with conflicting decisions.
    """
    labels = list(labels)
    ours = [s for s in sampled if s.model_name == model_name and s.model_version in versions
            and passed_qc(s.rule_ids, stages)]
    labelled = {lb.key for lb in labels}
    missing = [s for s in ours if (s.study_uid, s.model_name, s.model_version) not in labelled]
    findings: dict[str, set[int]] = {}
    for lb in labels:
        if lb.model_name == model_name and lb.model_version in versions:
            findings.setdefault(lb.study_uid, set()).add(lb.finding)
    conflicted = {k[0] for k in conflicts} | {u for u, f in findings.items() if len(f) > 1}
    # A sampled study whose readers disagree holds its run back as an unlabelled one does:
    # disagreement gathers on hard, often positive, low-score studies, and dropping just
    # those would take misses out of the sample.
    incomplete = {s.run_key for s in missing} | {s.run_key for s in ours
                                                  if s.study_uid in conflicted}

    skipped: Counter[str] = Counter()
    chosen: dict[str, Label] = {}
    for lb in labels:
        reason = _skip_reason(lb, model_name, versions, rules_version, stages, incomplete,
                              consumed, conflicted)
        if reason is None and lb.study_uid in chosen:
            reason = "duplicate"  # the study was triaged again by a sibling version
            if lb.processed_at > chosen[lb.study_uid].processed_at:
                lb, chosen[lb.study_uid] = chosen[lb.study_uid], lb
        if reason is None:
            chosen[lb.study_uid] = lb
        else:
            skipped[reason] += 1
    return CalibrationSample(sorted(chosen.values(), key=lambda lb: lb.study_uid),
                             {r: skipped[r] for r in SKIP_REASONS if skipped[r]},
                             len(incomplete), len(missing))


def _skip_reason(lb: Label, model_name: str, versions: Collection[str], rules_version: str,
                 stages: Mapping[str, Stage], incomplete: set[str], consumed: Collection[str],
                 conflicted: set[str]) -> str | None:
    if lb.model_name != model_name or lb.model_version not in versions:
        return "other model"
    if AuditDesign.parse(lb.rules_version).rules_version != rules_version:
        return "other rules"
    if not lb.sampled:
        return "not sampled"
    if lb.p_calibrated is None or lb.temperature is None or not passed_qc(lb.rule_ids, stages):
        return "not scored past QC"
    if lb.run_key in incomplete:
        return "incomplete run"
    if lb.study_uid in consumed:
        return "already used"
    if lb.study_uid in conflicted:
        return "conflict"
    return None
