"""Tests of `PreprocessConfig`: validation, YAML loading, did-you-mean, fingerprint."""

from __future__ import annotations

import pytest

from triage.configs import config_path
from triage.errors import ConfigError
from triage.preprocess.config import PreprocessConfig

DEFAULT_YAML = config_path("ingest")


def test_default_yaml_matches_dataclass_defaults():
    """One shipped home of the preprocessing values: the ingest config's section."""
    assert PreprocessConfig.from_yaml(DEFAULT_YAML, section="preprocess") == PreprocessConfig()
    with pytest.raises(FileNotFoundError):
        config_path("preprocess")  # no second file to drift from it


def test_fingerprint_is_stable_across_number_types_and_sequences():
    a = PreprocessConfig(target_spacing=(4, 4, 5), ct_window=[-200, 300])
    b = PreprocessConfig.from_dict({"target_spacing": [4.0, 4.0, 5.0]})
    assert a == b
    assert a.fingerprint() == b.fingerprint() == PreprocessConfig().fingerprint()
    assert len(a.fingerprint()) == 16


@pytest.mark.parametrize("change", [
    {"target_spacing": [3, 3, 3]}, {"target_shape": [64, 64, 32]}, {"orientation": "LPS"},
    {"interpolation": "nearest"}, {"anti_aliasing": False}, {"ct_window": [-160, 240]},
    {"mr_percentiles": [1, 99]},
])
def test_every_option_changes_the_fingerprint(change):
    assert PreprocessConfig.from_dict(change).fingerprint() != PreprocessConfig().fingerprint()


def test_round_trip_through_dict():
    config = PreprocessConfig(target_shape=(64, 64, 32), orientation="lps")
    assert config.orientation == "LPS"
    assert PreprocessConfig.from_dict(config.to_dict()) == config


def test_unknown_key_is_rejected_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"Unknown preprocess option 'target_spacng' in "
                       r"x\.yaml\. Did you mean 'target_spacing'\? Known options: "):
        PreprocessConfig.from_dict({"target_spacng": [4, 4, 4]}, source="x.yaml")


@pytest.mark.parametrize(("data", "message"), [
    ({"target_spacing": [4, 0, 4]}, r"'target_spacing' must be positive mm"),
    ({"target_spacing": [4, 4]}, r"'target_spacing' must be a list of 3 numbers"),
    ({"target_spacing": [4, 4, ".nan"]}, r"'target_spacing' must be a list of 3 numbers"),
    ({"target_shape": [96, 96.5, 48]}, r"'target_shape' must be 3 positive integers"),
    ({"orientation": "RAR"}, r"'orientation' is 'RAR': it needs one letter from each"),
    ({"interpolation": "cubic"}, r"'interpolation' is 'cubic'; choose one of trilinear"),
    ({"ct_window": [300, -200]}, r"'ct_window' must be \[low, high\] HU with low < high"),
    ({"mr_percentiles": [5, 101]}, r"'mr_percentiles' must satisfy 0 <= low < high <= 100"),
    ({"anti_aliasing": "yes"}, r"'anti_aliasing' must be true or false"),
])
def test_bad_values_name_the_option(data, message):
    with pytest.raises(ConfigError, match=message):
        PreprocessConfig.from_dict(data)


def test_yaml_section_and_errors(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text("preprocess:\n  target_shape: [64, 64, 32]\nother: 1\n")
    assert PreprocessConfig.from_yaml(path, section="preprocess").target_shape == (64, 64, 32)
    with pytest.raises(ConfigError, match=r"has no top-level 'align' section"):
        PreprocessConfig.from_yaml(path, section="align")
    with pytest.raises(ConfigError, match=r"Unknown preprocess option 'preprocess'"):
        PreprocessConfig.from_yaml(path)
    path.write_text("target_shape: [64, 64\n")
    with pytest.raises(ConfigError, match=r"is not valid YAML"):
        PreprocessConfig.from_yaml(path)
    with pytest.raises(ConfigError, match=r"Cannot read preprocess config .*missing\.yaml"):
        PreprocessConfig.from_yaml(tmp_path / "missing.yaml")
