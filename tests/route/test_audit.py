"""The random audit: deterministic per study, the right fraction, only auto-routed studies."""

from __future__ import annotations

import pytest

from tests.feedback.conftest import route_studies
from triage.errors import ConfigError
from triage.route.audit import (
    AUDIT_RULE_ID,
    AuditDesign,
    AuditedRouter,
    audit_draw,
    in_sample,
    with_audit,
)

UIDS = [f"1.2.826.0.1.3680043.10.5.{i}" for i in range(1000)]


def test_about_a_fraction_f_of_studies_is_drawn_and_the_draw_is_fixed_per_study():
    drawn = [uid for uid in UIDS if in_sample(uid, 0.1, seed=0)]
    assert 70 <= len(drawn) <= 130  # Binomial(1000, 0.1): mean 100, sd 9.5
    assert drawn == [uid for uid in reversed(UIDS) if in_sample(uid, 0.1, 0)][::-1]
    other_seed = {uid for uid in UIDS if in_sample(uid, 0.1, seed=1)}
    assert other_seed != set(drawn) and 70 <= len(other_seed) <= 130
    # nested: a larger fraction with the same seed audits a superset
    assert set(drawn) <= {uid for uid in UIDS if in_sample(uid, 0.3, 0)}
    assert not any(in_sample(uid, 0.0, 0) for uid in UIDS)
    assert all(in_sample(uid, 1.0, 0) for uid in UIDS)
    assert all(0 <= audit_draw(uid, 0) < 1 for uid in UIDS)


def test_only_urgent_and_routine_studies_are_sent_to_review_as_audit():
    plain, _, _ = route_studies(1000, fraction=0.0, seed=7)
    audited, _, router = route_studies(1000, fraction=0.1, seed=7)
    assert isinstance(router, AuditedRouter)
    changed = 0
    for before, after in zip(plain, audited, strict=True):
        if before.route in ("review", "failed") or not in_sample(before.study_uid, 0.1, 7):
            assert (after.route, after.rule_ids, after.priority) == (
                before.route, before.rule_ids, before.priority)
            continue
        changed += 1
        assert after.route == "review"
        assert after.rule_ids == f"{AUDIT_RULE_ID}; {before.rule_ids}"
        assert after.reasons.startswith("random audit: 0.1 of the studies the rules would "
                                        f"route {before.route}")
        assert after.priority == (2 if before.route == "urgent" else 4)
    auto = sum(r.route in ("urgent", "routine") for r in plain)
    assert 0.06 * auto <= changed <= 0.14 * auto
    # a resumed run (a fresh router, studies in another order) makes the same choices
    again, _, _ = route_studies(1000, fraction=0.1, seed=7)
    assert [r.rule_ids for r in again] == [r.rule_ids for r in audited]


def test_the_rules_version_records_the_audit_design():
    _, _, router = route_studies(3, fraction=0.25, seed=5)
    base = router.rules_router.version
    assert router.version == f"{base}+audit=0.25:seed=5"
    assert AuditDesign.parse(router.version) == AuditDesign(base, 0.25, 5)
    assert AuditDesign.parse(base) == AuditDesign(base, 0.0, 0)
    _, _, plain = route_studies(3, fraction=0.0, seed=5)
    assert with_audit(plain, 0.0) is plain and plain.version == base


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "a lot"])
def test_a_fraction_outside_0_1_is_refused(bad):
    _, _, router = route_studies(1, fraction=0.0, seed=0)
    with pytest.raises(ConfigError, match="audit fraction must be a number in"):
        with_audit(router, bad)


def test_triage_run_refuses_a_bad_audit_fraction(tmp_path, capsys):
    from triage.cli import main

    (tmp_path / "export").mkdir()
    code = main(["run", str(tmp_path / "export"), "--model", str(tmp_path / "none"),
                 "--out", str(tmp_path / "out"), "--audit-fraction", "1.5"])
    assert code == 2
    assert "audit fraction must be a number in [0, 1]" in capsys.readouterr().err
