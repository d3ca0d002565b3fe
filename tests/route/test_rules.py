"""The rule layer: every rule fires with its id and reason, evaluation order, priorities,
rules-file errors, the rules version, and the rule-kind registry."""

from __future__ import annotations

import math

import pytest

from triage.errors import ConfigError
from triage.route import (
    NO_RULE_ID,
    FittedThresholds,
    Priority,
    Route,
    Router,
    RuleSet,
    StudyEvidence,
    ThresholdConfig,
    create_rule,
    fit_thresholds,
    list_rules,
    load_rules,
)

from .conftest import DEFAULT_RULES


def test_default_file_loads_with_the_documented_settings():
    rules = load_rules(DEFAULT_RULES)
    assert (rules.name, rules.version) == ("default", "2")
    assert rules.thresholds == ThresholdConfig(alpha=0.01, delta=0.05, ppv_target=0.9,
                                               min_positives=299, min_negatives=100)
    assert [r.id for r in rules.rules] == [
        "ingest-failed", "inference-failed", "drift-alarm", "qc-geometry", "qc-slices",
        "qc-modality", "qc-degenerate", "unseen-device", "input-shift", "uncertified-device",
        "urgent", "routine",
        "low-confidence"]
    assert {r.kind for r in rules.rules} == set(list_rules())  # every kind is used


# (changes to the clean evidence, expected route, first rule id, expected reason start)
CASES = [
    (dict(ingest_ok=False, ingest_reasons="no DICOM files"), Route.FAILED, "ingest-failed",
     "ingest failed: no DICOM files"),
    (dict(inference_error="CUDA out of memory"), Route.FAILED, "inference-failed",
     "inference failed: CUDA out of memory"),
    (dict(p_calibrated=None), Route.FAILED, "inference-failed",
     "inference gave no calibrated probability"),
    (dict(p_calibrated=math.nan), Route.FAILED, "inference-failed",
     "inference gave a NaN probability"),
    (dict(verdict="tilt", warnings=["gantry tilt 12 deg resliced"]), Route.REVIEW,
     "qc-geometry", "geometry verdict 'tilt' must be reviewed (gantry tilt 12 deg resliced)"),
    (dict(n_slices=12), Route.REVIEW, "qc-slices", "only 12 slices (fewer than 16)"),
    (dict(modality="MR"), Route.REVIEW, "qc-modality",
     "unexpected modality 'MR' (allowed: CT)"),
    (dict(intensity_std=0.0, body_fraction=0.0), Route.REVIEW, "qc-degenerate",
     "degenerate volume: a blank or near-constant image (intensity spread 0 HU, below 5), "
     "and mostly outside the body (0.0% of voxels above -500 HU, below 5%)"),
    (dict(matrix=(1, 512, 40)), Route.REVIEW, "qc-degenerate",
     "degenerate volume: a 1 x 512 matrix (fewer than 32 columns or rows)"),
    (dict(intensity_std=math.nan), Route.REVIEW, "qc-degenerate",
     "degenerate volume: a blank or near-constant image (intensity spread not measurable"),
    (dict(body_fraction=0.01), Route.REVIEW, "qc-degenerate",
     "degenerate volume: mostly outside the body (1.0% of voxels above -500 HU, below 5%)"),
    (dict(matrix=None, intensity_std=None, body_fraction=None), Route.REVIEW,
     "qc-degenerate", "degenerate-volume measurements are missing (volume not checked)"),
    (dict(input_distance=None), Route.REVIEW, "input-shift", "input statistics unknown"),
    (dict(device_group="zenith"), Route.REVIEW, "unseen-device",
     "device group 'zenith' was not seen in training"),
    (dict(input_distance=4.5), Route.REVIEW, "input-shift",
     "input statistics are 4.5 from the training devices' (bound 3)"),
    (dict(device_group="tiny", p_calibrated=0.01), Route.REVIEW, "uncertified-device",
     "too few calibration positives for device tiny ("),
    (dict(p_calibrated=0.999), Route.URGENT, "urgent", "p=0.999 >= urgent threshold "),
    (dict(p_calibrated=0.001), Route.ROUTINE, "routine", "p=0.001 < routine threshold "),
    (dict(p_calibrated=0.5), Route.REVIEW, "low-confidence",
     "low confidence: p=0.5 is between the routine threshold ("),
]


@pytest.mark.parametrize(("changes", "route", "rule_id", "reason"), CASES,
                         ids=[c[2] + "-" + str(i) for i, c in enumerate(CASES)])
def test_every_rule_fires_with_its_id_and_reason(router, evidence, changes, route, rule_id,
                                                  reason):
    decision = router.route(evidence(**changes))
    assert decision.route is route
    assert decision.rule_ids[0] == rule_id
    assert decision.reasons[0].startswith(reason)
    assert len(decision.rule_ids) == len(decision.reasons)


def test_clean_studies_reach_every_route_and_the_reasons_cite_the_guarantee(router, evidence,
                                                                           fitted):
    acme = fitted.get("acme")
    urgent = router.route(evidence(p_calibrated=acme.t_high))
    assert urgent == router.route(evidence(p_calibrated=acme.t_high))  # deterministic
    assert (urgent.route, urgent.rule_ids, urgent.priority) == (Route.URGENT, ("urgent",), 1)
    assert urgent.reasons[0].endswith("for device acme (PPV >= 0.9 with confidence 0.95)")
    routine = router.route(evidence(p_calibrated=acme.t_low * 0.999))
    assert (routine.route, routine.rule_ids, routine.priority) == (Route.ROUTINE, ("routine",),
                                                                   5)
    assert routine.reasons[0].endswith("(miss rate <= 0.01 with confidence 0.95)")
    edge = router.route(evidence(p_calibrated=acme.t_low))  # p < t_low is routine, = is not
    assert edge.rule_ids == ("low-confidence",) and edge.priority == Priority.REVIEW


def test_failure_rules_end_evaluation(router, evidence):
    decision = router.route(evidence(ingest_ok=False, ingest_reasons="", n_slices=0,
                                     modality="", p_calibrated=None, device_group="zenith"))
    assert decision.rule_ids == ("ingest-failed",)
    assert decision.reasons == ("ingest failed: no reason was recorded",)
    assert decision.priority == Priority.FAILED == 3
    assert decision.reason_text == "ingest failed: no reason was recorded"


def test_qc_forces_review_and_all_fired_rules_are_recorded(router, evidence):
    decision = router.route(evidence(verdict="resampled-irregular", n_slices=8,
                                     p_calibrated=0.999, input_distance=9.0))
    assert decision.route is Route.REVIEW
    assert decision.rule_ids == ("qc-geometry", "qc-slices", "input-shift", "urgent")
    assert decision.priority == Priority.URGENT_REVIEW == 2  # the score says urgent
    low = router.route(evidence(n_slices=8, p_calibrated=0.001))
    assert low.rule_ids == ("qc-slices", "routine") and low.route is Route.REVIEW
    assert low.priority == Priority.REVIEW == 4
    unseen = router.route(evidence(device_group="zenith", p_calibrated=0.999))
    assert unseen.rule_ids == ("unseen-device", "uncertified-device")
    assert unseen.reasons[1] == ("no calibration studies for device zenith, so no threshold "
                                 "is certified")


def test_unknown_input_distance_is_reviewed_unless_told_otherwise(router, evidence, tmp_path,
                                                                  fitted):
    decision = router.route(evidence(input_distance=None, p_calibrated=0.001))
    assert decision.route is Route.REVIEW
    assert decision.rule_ids == ("input-shift", "routine")
    assert decision.reasons[0] == "input statistics unknown"
    text = DEFAULT_RULES.read_text()
    assert text.count("review_unknown: true") == 2
    text = text.replace("review_unknown: true", "review_unknown: false")
    (tmp_path / "r.yaml").write_text(text)
    lax = Router.from_yaml(tmp_path / "r.yaml", fitted, ["acme"])
    assert "input-shift" not in lax.route(evidence(input_distance=None)).rule_ids
    unmeasured = evidence(matrix=None, intensity_std=None, body_fraction=None)
    assert "qc-degenerate" not in lax.route(unmeasured).rule_ids


def test_no_thresholds_means_review_and_no_rule_means_review(evidence, tmp_path):
    router = Router.from_yaml(DEFAULT_RULES, {}, ["acme"])  # a bundle without routing
    assert router.route(evidence(p_calibrated=0.0)).rule_ids == ("uncertified-device",)
    (tmp_path / "qc.yaml").write_text(
        'name: qc-only\nversion: "1"\nrules:\n  - {id: slices, kind: min-slices}\n')
    decision = Router.from_yaml(tmp_path / "qc.yaml", {}, ["acme"]).route(evidence())
    assert (decision.route, decision.rule_ids) == (Route.REVIEW, (NO_RULE_ID,))


def test_thresholds_fitted_under_other_settings_are_refused(make_calibration):
    other = fit_thresholds(*make_calibration({"acme": 1000}), ThresholdConfig(alpha=0.05))
    with pytest.raises(ConfigError, match=r"certified with ThresholdConfig\(alpha=0.05.*rules "
                                          r"default@2\+[0-9a-f]{12} states .*refit"):
        Router.from_yaml(DEFAULT_RULES, other.to_dict(), ["acme"])
    with pytest.raises(ConfigError, match="not a thresholds record"):
        Router.from_yaml(DEFAULT_RULES, {"groups": {}}, ["acme"])
    assert isinstance(Router.from_yaml(DEFAULT_RULES, {}, []).thresholds, FittedThresholds)


def _write(tmp_path, body: str, name: str = "rules.yaml"):
    path = tmp_path / name
    path.write_text(body)
    return path


HEAD = 'name: t\nversion: "1"\n'


@pytest.mark.parametrize(("body", "message"), [
    (HEAD + "rules:\n  - {id: s, kind: min-slice}\n",
     r"Unknown rule kind 'min-slice'. Did you mean 'min-slices'\? Valid kinds: .*routine"),
    (HEAD + "rules:\n  - {id: s, kind: min-slices, min_slice: 3}\n",
     r"Unknown min-slices option 'min_slice' in .*rules.yaml \(rule 's', kind min-slices\). "
     r"Did you mean 'min_slices'\?"),
    (HEAD + "rules:\n  - {id: s, kind: min-slices, min_slices: 0}\n",
     r"invalid min-slices option: min_slices must be an integer >= 1, got 0."),
    (HEAD + "rules:\n  - {id: g, kind: geometry-verdict, review_verdicts: [tilted]}\n",
     r"review_verdicts holds unknown verdict 'tilted'; valid verdicts: ok, "),
    (HEAD + "rules:\n  - {id: m, kind: modality, allowed: CT}\n",
     r"allowed must be a list of non-empty strings, got 'CT'"),
    (HEAD + "rules:\n  - {id: d, kind: input-distance, max_distance: -1}\n",
     r"max_distance must be a positive number, got -1"),
    (HEAD + "rules:\n  - {kind: min-slices}\n",
     r"A rule of kind 'min-slices' in .*rules.yaml has no 'id'"),
    (HEAD + "rules:\n  - {id: a, kind: min-slices}\n  - {id: a, kind: modality}\n",
     r"rule id 'a' is used twice"),
    (HEAD + "rules:\n  - {id: r, kind: routine-threshold}\n  - {id: s, kind: min-slices}\n",
     r"rule 's' \(min-slices, a QC rule\) comes after 'r' \(SCORE\); list FAILURE rules "
     r"first"),
    (HEAD + "rules: []\n", r"'rules' must be a non-empty list"),
    ('name: t\nversion: 1\nrules:\n  - {id: s, kind: min-slices}\n',
     r"'version' must be a quoted string such as \"1\", got 1."),
    (HEAD + "rule:\n  - {id: s, kind: min-slices}\n",
     r"Unknown key 'rule' in .*rules.yaml. Did you mean 'rules'\?"),
    (HEAD + "thresholds: {alpha: 2}\nrules:\n  - {id: s, kind: min-slices}\n",
     r"invalid thresholds option: thresholds.alpha must be a number strictly between 0 and "
     r"1, got 2."),
    (HEAD + "thresholds: {min_positive: 2}\nrules:\n  - {id: s, kind: min-slices}\n",
     r"Unknown thresholds option 'min_positive'.*Did you mean 'min_positives'\?"),
    ("name: t\nversion: [\n", r"Rules file .*rules.yaml is not valid YAML"),
    ("- 1\n", r"must be a mapping with keys name, version"),
])
def test_rules_file_errors_are_clear(tmp_path, body, message):
    with pytest.raises(ConfigError, match=message):
        load_rules(_write(tmp_path, body))


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"Cannot read rules file .*nowhere.yaml"):
        load_rules(tmp_path / "nowhere.yaml")


def test_version_tracks_the_content_not_the_layout(tmp_path):
    text = DEFAULT_RULES.read_text()
    base = load_rules(_write(tmp_path, text, "a.yaml"))
    assert base.full_version == f"default@2+{base.digest[:12]}"
    flow = text.replace("  - id: urgent\n    kind: urgent-threshold",
                        "  - {kind: urgent-threshold, id: urgent}  # flow style")
    relaid = load_rules(_write(tmp_path, "# a new comment\n" + flow, "b.yaml"))
    assert relaid.full_version == base.full_version
    changed = load_rules(_write(tmp_path, text.replace("min_slices: 16", "min_slices: 20"),
                                "c.yaml"))
    assert changed.full_version != base.full_version and changed.version == "2"
    bumped = load_rules(_write(tmp_path, text.replace('version: "2"', 'version: "3"'),
                               "d.yaml"))
    assert bumped.full_version.startswith("default@3+")
    assert Router(base, {}, []).version == base.full_version


def test_create_rule_and_registry():
    rule = create_rule("modality", id="ct-only", allowed=["CT", "PT"])
    assert rule.allowed == ("CT", "PT") and rule.options() == {"allowed": ("CT", "PT")}
    assert rule.route is Route.REVIEW
    with pytest.raises(ConfigError, match="Unknown rule kind 'urgent-treshold'. Did you mean "
                                          "'urgent-threshold'"):
        create_rule("urgent-treshold", id="u")
    with pytest.raises(ConfigError, match="rule id must be a word"):
        create_rule("modality", id="has space")
    with pytest.raises(ValueError, match="already registered"):
        from triage.route import register_rule
        register_rule("modality")(type(rule))
    assert isinstance(RuleSet.from_dict({"name": "x", "version": "1",
                                         "rules": [{"id": "m", "kind": "modality"}]}), RuleSet)


def test_evidence_validation():
    with pytest.raises(ValueError, match="p_calibrated must be a probability in \\[0, 1\\] "
                                         "\\(study 1.2\\), got 1.5"):
        StudyEvidence("1.2", "acme", "CT", True, p_calibrated=1.5)
    with pytest.raises(ValueError, match="n_slices must be >= 0"):
        StudyEvidence("1.2", "acme", "CT", True, n_slices=-1)
    ev = StudyEvidence("1.2", "acme", "CT", True, warnings=["a"], p_calibrated=1)
    assert ev.warnings == ("a",) and ev.p_calibrated == 1.0 and ev.has_score
    assert [r.value for r in Route] == ["urgent", "routine", "review", "failed"]
    assert [int(p) for p in Priority] == [1, 2, 3, 4, 5]
