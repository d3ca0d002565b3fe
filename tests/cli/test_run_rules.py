"""`triage run` routes by the model's recorded rules as objects: no YAML written and re-read."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import yaml

from triage.cli.run import RECORDED_RULES, _ruleset
from triage.route.rules import DEFAULT_RULES, RuleSet, load_rules


def test_recorded_rules_are_validated_as_they_are_and_copied_for_the_record(
        tmp_path, monkeypatch):
    recorded = yaml.safe_load(DEFAULT_RULES.read_text(encoding="utf-8"))
    recorded["name"] = "recorded"

    def no_reparse(path):
        raise AssertionError(f"re-read {path}")

    monkeypatch.setattr("triage.route.rules.load_rules", no_reparse)
    ruleset, source = _ruleset(None, SimpleNamespace(rules=recorded), tmp_path)
    assert ruleset == RuleSet.from_dict(recorded, source="x")
    assert ruleset.full_version.startswith("recorded@")
    assert source == str(tmp_path / RECORDED_RULES)
    # the copy is the record: it parses to the same rules, digest included
    assert yaml.safe_load((tmp_path / RECORDED_RULES).read_text(encoding="utf-8")) == recorded


def test_rules_option_then_the_default(tmp_path):
    ruleset, source = _ruleset(DEFAULT_RULES, SimpleNamespace(rules={"name": "x"}), tmp_path)
    assert ruleset == load_rules(DEFAULT_RULES) and source == str(DEFAULT_RULES)
    ruleset, source = _ruleset(None, SimpleNamespace(rules={}), tmp_path)
    assert ruleset == load_rules(DEFAULT_RULES) and source == str(DEFAULT_RULES)
    assert not (tmp_path / RECORDED_RULES).exists()


def test_invalid_recorded_rules_name_their_source(tmp_path):
    from triage.errors import ConfigError

    with pytest.raises(ConfigError, match="the rules recorded with the model lacks 'rules'"):
        _ruleset(None, SimpleNamespace(rules={"name": "x", "version": "1"}), tmp_path)
