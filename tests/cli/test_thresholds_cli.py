"""`triage thresholds status`: the per-device certification table of a bundle, as text and
JSON, and the exit code for a bad model."""

from __future__ import annotations

import json

import numpy as np

from tests.registry.conftest import make_bundle  # noqa: F401 - the bundle factory fixture
from triage.cli import main


def _bundle_dir(tmp_path, make_bundle, **config):  # noqa: F811
    from triage.registry.bundle import save_bundle
    from triage.route import ThresholdConfig, fit_thresholds

    rng = np.random.default_rng(0)
    n = {"acme": 400, "borealis": 60}
    p = np.concatenate([rng.uniform(size=k) for k in n.values()])
    y = (rng.uniform(size=p.size) < p).astype(int)
    groups = np.repeat(list(n), list(n.values()))
    fitted = fit_thresholds(p, y, groups, ThresholdConfig(**config))
    return save_bundle(make_bundle(routing=fitted.to_dict()), tmp_path / "bundle")


def test_status_table_names_the_certificate_and_what_is_missing(tmp_path, make_bundle,  # noqa: F811
                                                                 capsys):
    bundle = _bundle_dir(tmp_path, make_bundle, guarantee="marginal")
    assert main(["thresholds", "status", "--model", str(bundle)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("guarantee marginal, stratify device, alpha 0.01, delta 0.05")
    acme = next(line for line in out.splitlines() if line.startswith("| acme |"))
    assert "marginal/device a=0.01" in acme and "299/100 | 99/19" in acme
    borealis = next(line for line in out.splitlines() if line.startswith("| borealis |"))
    assert "more reviewed positives to certify a routine threshold (marginal/device)" \
        in borealis


def test_status_json(tmp_path, make_bundle, capsys):  # noqa: F811
    bundle = _bundle_dir(tmp_path, make_bundle, guarantee="marginal", stratify="auto")
    assert main(["thresholds", "status", "-m", str(bundle), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = {row["group"]: row for row in data["groups"]}
    assert data["stratify"] == "auto" and data["pooled"]["group"] == "(pooled)"
    assert rows["acme"]["certified"] and rows["acme"]["routine"] == "marginal/device a=0.01"
    assert rows["borealis"]["routine"] in ("marginal/pooled a=0.01", "")
    assert rows["borealis"]["check"]


def test_status_of_a_missing_model_exits_two(tmp_path, capsys):
    assert main(["thresholds", "status", "--model", str(tmp_path / "nope")]) == 2
    assert "error:" in capsys.readouterr().err
