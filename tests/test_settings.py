"""Every float setting of every typed config rejects NaN and infinity, naming the key.

YAML reads ``.nan`` and ``.inf`` as floats and every comparison with NaN is False, so a
range check alone (``gap_factor <= 1``) once let ``load.gap_factor: .nan`` through and
turned gap detection off. The cases below are enumerated from the dataclasses themselves,
so a float field added later is covered without editing this file.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from triage.data.synth.config import SynthConfig
from triage.dicom.select.selection_rules import SelectionRules
from triage.dicom.volume.loader import LoadOptions
from triage.errors import ConfigError
from triage.ingest.config import DEFAULT_CONFIG as INGEST_YAML
from triage.ingest.config import IngestConfig
from triage.preprocess.config import PreprocessConfig
from triage.registry.gates import GateConfig
from triage.route.rules import RuleSet, list_rules, rule_class
from triage.route.thresholds import ThresholdConfig
from triage.settings import dataclass_from_mapping
from triage.train.config import SECTIONS as TRAIN_SECTIONS
from triage.train.config import TrainConfig

BAD = [float("nan"), float("inf"), float("-inf")]


def _float_fields(cls: type) -> list[tuple[str, Any]]:
    """(name, a value of the field's shape) for each field typed with float."""
    out = []
    for f in dataclasses.fields(cls):
        if "float" not in str(f.type):
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else 1.0)
        out.append((f.name, default))
    return out


def _poisoned(default: Any, bad: float) -> Any:
    """`bad` in the shape of `default`: the number itself, or the first item of a list."""
    if isinstance(default, tuple | list) and default and not isinstance(default[0], tuple):
        return [bad, *list(default)[1:]]
    if isinstance(default, tuple | list) and default:  # pairs such as splits
        first = list(default[0])
        return [[first[0], bad], *[list(p) for p in default[1:]]]
    return bad


def _mapping_cases() -> list:
    """(id, build(mapping-with-one-bad-key), key) for every config read from YAML."""
    cases = []
    for section, cls in (("selection", SelectionRules), ("load", LoadOptions),
                         ("preprocess", PreprocessConfig)):
        for name, default in _float_fields(cls):
            cases.append((f"ingest.{section}.{name}", section, name, default,
                          lambda data, s=section: IngestConfig.from_dict({s: data}, "x.yaml")))
    for section, cls in TRAIN_SECTIONS.items():
        for name, default in _float_fields(cls):
            cases.append((f"train.{section}.{name}", section, name, default,
                          lambda data, s=section: TrainConfig.from_dict({s: data}, "x.yaml")))
    rules = yaml.safe_load(open(_rules_yaml(), encoding="utf-8"))
    for kind in list_rules():
        for name, default in _float_fields(rule_class(kind)):
            def build(data: dict, kind: str = kind) -> Any:
                doc = dict(rules)
                doc["rules"] = [{"id": "probe", "kind": kind, **data}]
                return RuleSet.from_dict(doc, source="x.yaml")
            cases.append((f"rules.{kind}.{name}", kind, name, default, build))
    for name, default in _float_fields(ThresholdConfig):
        cases.append((f"rules.thresholds.{name}", "thresholds", name, default,
                      lambda data: ThresholdConfig.from_dict(data, source="x.yaml")))
    for name, default in _float_fields(GateConfig):
        cases.append((f"gates.{name}", "gates", name, default,
                      lambda data: _gates_from(data)))
    return cases


def _rules_yaml() -> str:
    return str(INGEST_YAML.parents[1] / "rules" / "default.yaml")


def _gates_from(data: dict) -> GateConfig:
    return dataclass_from_mapping(GateConfig, data, what="gate", source="x.yaml")


MAPPING_CASES = _mapping_cases()


def test_every_config_has_float_settings_under_test() -> None:
    sections = {case[0].split(".")[0] for case in MAPPING_CASES}
    assert {"ingest", "train", "rules", "gates"} <= sections
    assert "ingest.load.gap_factor" in {case[0] for case in MAPPING_CASES}


@pytest.mark.parametrize("bad", BAD, ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize(("case_id", "section", "name", "default", "build"), MAPPING_CASES,
                         ids=[c[0] for c in MAPPING_CASES])
def test_mapping_rejects_non_finite(case_id: str, section: str, name: str, default: Any,
                                    build: Callable[[dict], Any], bad: float) -> None:
    with pytest.raises(ConfigError) as info:
        build({name: _poisoned(default, bad)})
    message = str(info.value)
    assert "\n" not in message
    assert f"'{name}" in message, message


@pytest.mark.parametrize("bad", BAD, ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize(("name", "default"), _float_fields(SynthConfig),
                         ids=[n for n, _ in _float_fields(SynthConfig)])
def test_synth_config_rejects_non_finite(name: str, default: Any, bad: float) -> None:
    if name == "device_noise":  # empty by default: (device, HU) pairs
        default = ((SynthConfig().device_names[0], 10.0),)
    with pytest.raises(ConfigError) as info:
        SynthConfig(**{name: _poisoned(default, bad)})
    assert "\n" not in str(info.value) and name in str(info.value)


@pytest.mark.parametrize("cls", [LoadOptions, SelectionRules])
def test_direct_construction_rejects_non_finite(cls: type) -> None:
    for name, default in _float_fields(cls):
        with pytest.raises(ValueError, match=rf"{cls.__name__}\.{name}(\[0\])? is nan"):
            cls(**{name: _poisoned(default, math.nan)})


def test_yaml_nan_gap_factor_is_rejected(tmp_path) -> None:
    path = tmp_path / "ingest.yaml"
    path.write_text("load:\n  gap_factor: .nan\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"load option 'gap_factor' is nan; it must be a "
                                          r"finite number"):
        IngestConfig.from_yaml(path)


def test_check_finite_names_nested_keys() -> None:
    from triage.settings import check_finite

    with pytest.raises(ConfigError, match=r"option 'alpha\[1\]' is inf"):
        check_finite({"alpha": [1.0, math.inf]}, "loss option", "x.yaml")
    check_finite({"flag": True, "n": 3, "x": 0.5, "name": "nan"}, "option", "x.yaml")


@pytest.mark.parametrize("text,where", [
    ("foo: [1, 2\n", "line 2, column 1: did not find expected ',' or ']'"),
    ("a: b: c\n", "line 1, column 5: mapping values are not allowed"),
    ("key: 'open\n", "line 2, column 1: found unexpected end of stream"),
    ("\tkey: 1\n", "line 1, column 1: found character"),
], ids=["flow", "mapping", "quote", "tab"])
def test_invalid_yaml_is_one_line_naming_file_line_and_column(tmp_path, text, where) -> None:
    # libyaml (CSafeLoader) and PyYAML word some problems differently; the place is the same
    from triage.settings import load_yaml

    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_yaml(path, "ingest config")
    message = str(err.value)
    assert message.startswith(f"Ingest config {path} is not valid YAML: {where}"), message
    assert "\n" not in message and "<unicode string>" not in message


@pytest.mark.parametrize("name", ["", "   ", "x" * 501])
def test_train_config_refuses_an_experiment_name_mlflow_refuses(name) -> None:
    with pytest.raises(ConfigError, match=r"x.yaml: invalid runtime option: Train option "
                                          r"'runtime.experiment'"):
        TrainConfig.from_dict({"runtime": {"experiment": name}}, source="x.yaml")
