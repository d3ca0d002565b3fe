"""Guarantee modes and strata: labels, pooled and auto thresholds, the shift check, records
from before guarantee modes, suspected-positive priority and the certification status."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import yaml
from scipy.stats import beta as beta_dist

from triage.errors import ConfigError
from triage.route import (
    POOLED_NAME,
    FittedThresholds,
    Priority,
    Route,
    Router,
    RuleSet,
    ThresholdConfig,
    fit_thresholds,
)
from triage.route.status import certification_status, status_lines
from triage.route.thresholds import GroupThresholds

from .conftest import DEFAULT_RULES

MARGINAL = {"guarantee": "marginal", "alpha": 0.01, "urgent_fpr": 0.05}
# A real CT volume's measurements, so the degenerate-volume rule stays quiet.
MEASURED = {"matrix": (512, 512, 40), "intensity_std": 300.0, "body_fraction": 0.4}


def _scores(rng, n, pos_shift=0.0):
    """n studies, half positive; logits N(+-1.5 - pos_shift for positives, 1)."""
    y = (np.arange(n) % 2).astype(int)
    logits = np.where(y == 1, 1.5 - pos_shift, -1.5) + rng.normal(size=n)
    return 1 / (1 + np.exp(-logits)), y


def _mix(parts, seed=0):
    rng = np.random.default_rng(seed)
    ps, ys, gs = [], [], []
    for name, n, shift in parts:
        p, y = _scores(rng, n, shift)
        ps.append(p), ys.append(y), gs.append(np.full(n, name))
    return np.concatenate(ps), np.concatenate(ys), np.concatenate(gs)


def test_config_rejects_unknown_modes():
    with pytest.raises(ValueError, match="thresholds.guarantee must be one of pac, marginal, "
                                         "got 'conformal'"):
        ThresholdConfig(guarantee="conformal")
    with pytest.raises(ValueError, match="thresholds.stratify must be one of device, pooled, "
                                         "auto"):
        ThresholdConfig(stratify="site")
    cfg = ThresholdConfig(**MARGINAL)
    assert (cfg.required_positives, cfg.required_negatives) == (99, 19)
    assert ThresholdConfig().required_positives == 299


def test_marginal_device_certifies_with_99_positives_and_labels_both_sides():
    p, y, g = _mix([("acme", 200, 0.0), ("tiny", 100, 0.0)])
    fitted = fit_thresholds(p, y, g, ThresholdConfig(**MARGINAL))
    acme, tiny = fitted.get("acme"), fitted.get("tiny")
    assert acme.low_guarantee == "marginal/device a=0.01"
    assert acme.high_guarantee == "marginal/device fpr=0.05"
    assert acme.t_low == np.sort(p[(g == "acme") & (y == 1)])[0]  # k = floor(0.01 * 101) = 1
    assert tiny.t_low is None and "(50 < 99)" in tiny.low_reason
    assert tiny.t_high is not None  # 50 negatives >= 19: the urgent side stands alone
    assert fitted.pooled is None


def test_pooled_gives_every_device_the_pool_thresholds_with_pooled_labels():
    p, y, g = _mix([("acme", 150, 0.0), ("tiny", 60, 0.0)])
    fitted = fit_thresholds(p, y, g, ThresholdConfig(**MARGINAL, stratify="pooled"))
    assert fitted.pooled.group == POOLED_NAME and fitted.pooled.n_pos == 105
    for name in ("acme", "tiny"):
        group = fitted.get(name)
        assert group.t_low == fitted.pooled.t_low and group.t_high == fitted.pooled.t_high
        assert group.low_guarantee == "marginal/pooled a=0.01"
    assert fitted.get("tiny").n_pos == 30  # the device's own counts stay


def test_pooled_marginal_holds_for_the_mix_not_for_a_low_scoring_device():
    # Two devices, 70 % / 30 % of the calibration (and deployment) mix; the small one's
    # positives score lower. The pooled threshold keeps E[miss rate of the mix] <= alpha,
    # while the small device alone misses far more: why `pooled` says so in its label.
    rng = np.random.default_rng(3)
    alpha, draws, n = 0.05, 1000, 200
    cfg = ThresholdConfig(guarantee="marginal", stratify="pooled", alpha=alpha)
    a_dist, b_dist = (5, 2), (2, 2)  # positives' scores
    mix, small = [], []
    for _ in range(draws):
        p = np.concatenate([rng.beta(*a_dist, size=140), rng.beta(*b_dist, size=60)])
        g = np.array(["a"] * 140 + ["b"] * 60)
        t = fit_thresholds(p, np.ones(n, int), g, cfg).get("b").t_low
        rate_a, rate_b = beta_dist.cdf(t, *a_dist), beta_dist.cdf(t, *b_dist)
        mix.append(0.7 * rate_a + 0.3 * rate_b), small.append(rate_b)
    mix, small = np.array(mix), np.array(small)
    assert mix.mean() <= alpha + 3 * mix.std() / np.sqrt(draws)
    assert small.mean() > 2 * alpha


def test_auto_own_where_enough_pooled_where_the_check_allows_review_where_shifted():
    p, y, g = _mix([("acme", 240, 0.0), ("borealis", 60, 0.0), ("cygnus", 60, 3.0),
                    ("ember", 6, 0.0)], seed=1)
    fitted = fit_thresholds(p, y, g, ThresholdConfig(**MARGINAL, stratify="auto"))
    acme, borealis = fitted.get("acme"), fitted.get("borealis")
    cygnus, ember = fitted.get("cygnus"), fitted.get("ember")
    assert acme.low_guarantee == "marginal/device a=0.01" and acme.low_check == ""
    assert borealis.low_guarantee == "marginal/pooled a=0.01"
    assert borealis.t_low == fitted.pooled.t_low
    assert "not shown to score lower" in borealis.low_check
    assert cygnus.t_low is None
    assert "its positives score lower than the other devices' (one-sided Mann–Whitney p=" \
        in cygnus.low_reason
    assert cygnus.high_guarantee == "marginal/device fpr=0.05"  # 30 negatives: its own
    assert ember.t_low is None and "too few (3 < 5) to check" in ember.low_reason
    # the uncertified side of a shifted device routes nothing routine
    router = Router(RuleSet.from_dict(_rules(stratify="auto")), fitted,
                    ["acme", "borealis", "cygnus", "ember"])
    from triage.route import StudyEvidence

    low = router.route(StudyEvidence("1.2", "cygnus", "CT", ingest_ok=True, verdict="ok",
                                     n_slices=40, p_calibrated=1e-4, input_distance=0.1,
                                     **MEASURED))
    assert low.route is Route.REVIEW and low.guarantee == ""
    pooled = router.route(StudyEvidence("1.3", "borealis", "CT", ingest_ok=True,
                                        verdict="ok", n_slices=40, p_calibrated=1e-6,
                                        input_distance=0.1, **MEASURED))
    assert pooled.route is Route.ROUTINE and pooled.guarantee == "marginal/pooled a=0.01"
    assert "expected miss rate <= 0.01, pooled over the calibration devices" \
        in pooled.reasons[0]


def _rules(**thresholds):
    data = yaml.safe_load(DEFAULT_RULES.read_text(encoding="utf-8"))
    data["thresholds"] = {k: v for k, v in data["thresholds"].items()
                          if k != "min_positives"} | MARGINAL | thresholds
    return data


def test_a_record_from_before_guarantee_modes_reads_as_pac_device(fitted):
    old = fitted.to_dict()
    old["format"] = 1
    del old["pooled"]
    for name in ("guarantee", "stratify", "urgent_fpr", "shift_level", "shift_min_count"):
        del old["config"][name]
    for group in old["groups"].values():
        for name in ("fpr_bound", "low_guarantee", "high_guarantee", "low_check",
                     "high_check"):
            del group[name]
    read = FittedThresholds.from_dict(old)
    assert read.config == fitted.config and read.config.guarantee == "pac"
    assert read.get("acme").low_guarantee == "pac/device a=0.01 d=0.05"
    assert read.get("acme").high_guarantee == "pac/device ppv=0.9 d=0.05"
    assert read.get("tiny").low_guarantee == ""
    router = Router.from_yaml(DEFAULT_RULES, old, ["acme", "tiny"])
    from triage.route import StudyEvidence

    decision = router.route(StudyEvidence("1.2", "acme", "CT", ingest_ok=True, verdict="ok",
                                          n_slices=40, p_calibrated=1e-4,
                                          input_distance=0.1, **MEASURED))
    assert decision.route is Route.ROUTINE
    assert decision.guarantee == "pac/device a=0.01 d=0.05"
    assert "(miss rate <= 0.01 with confidence 0.95)" in decision.reasons[0]


def test_suspected_positives_come_first_even_on_an_uncertified_device(router, evidence):
    suspected = router.route(evidence(device_group="tiny", p_calibrated=0.8))
    assert suspected.route is Route.REVIEW and suspected.priority == Priority.SUSPECTED == 2
    assert suspected.priority_reason == ("suspected finding: p=0.8 >= 0.5, in review by "
                                         "'uncertified-device'; read before other reviews")
    calm = router.route(evidence(device_group="tiny", p_calibrated=0.2))
    assert calm.priority == Priority.REVIEW == 4
    assert calm.priority_reason == ("needs a reader ('uncertified-device'); no suspected "
                                    "finding (p=0.2 < 0.5)")
    failed = router.route(evidence(ingest_ok=False, ingest_reasons="no files"))
    assert failed.priority == 3 and failed.priority_reason.startswith("no usable model output")
    urgent = router.route(evidence(p_calibrated=0.999))
    assert urgent.priority == 1 and urgent.guarantee == "pac/device ppv=0.9 d=0.05"


def test_suspect_p_is_configurable_and_validated(fitted, evidence):
    data = yaml.safe_load(DEFAULT_RULES.read_text(encoding="utf-8"))
    router = Router(RuleSet.from_dict(data | {"priority": {"suspect_p": None}}), fitted,
                    ["acme", "tiny"])
    assert router.route(evidence(device_group="tiny", p_calibrated=0.8)).priority == 4
    with pytest.raises(ConfigError, match="suspect_p must be a probability in"):
        RuleSet.from_dict(data | {"priority": {"suspect_p": 2}})
    with pytest.raises(ConfigError, match="Did you mean 'suspect_p'"):
        RuleSet.from_dict(data | {"priority": {"suspect": 0.5}})


def test_status_says_what_each_mode_needs_and_how_many_more_positives(fitted):
    status = certification_status(fitted, ["acme", "tiny", "zenith"])
    rows = {row["group"]: row for row in status["groups"]}
    assert rows["acme"]["routine"] == "pac/device a=0.01 d=0.05"
    assert rows["acme"]["needs"] == {"pac": {"positives": 299, "negatives": 100},
                                     "marginal": {"positives": 99, "negatives": 19}}
    tiny = rows["tiny"]
    assert tiny["more_positives"] == 299 - tiny["positives"] > 0
    assert tiny["to_certify"] == (f"{299 - tiny['positives']} more reviewed positives to "
                                  f"certify a routine threshold (pac/device)")
    assert rows["zenith"]["positives"] == 0 and rows["zenith"]["more_positives"] == 299
    lines = status_lines(status)
    assert lines[0] == "guarantee pac, stratify device, alpha 0.01, delta 0.05"
    assert any(line.startswith("| tiny |") for line in lines)


def test_the_status_names_the_version_whose_certificate_a_carried_threshold_keeps():
    label = "pac/device a=0.01 d=0.05"
    group = GroupThresholds("acme", 12, 90, t_low=0.02, low_guarantee=label)
    fitted = FittedThresholds(ThresholdConfig(), {"acme": group})
    assert certification_status(fitted)["groups"][0]["routine"] == label
    carried = FittedThresholds(ThresholdConfig(), {"acme": replace(group, low_carried_from="3")})
    row = certification_status(carried)["groups"][0]
    assert row["routine"] == f"{label} (certified by version 3)"
    assert row["to_certify"] == ""
