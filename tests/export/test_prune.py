"""Pruned variants: physically fewer channels, still running, recalibrated on their own
scores, registered with lineage."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tests.export.conftest import export_of, register_parent

pytestmark = pytest.mark.filterwarnings("error:input's size at dim=1")

SHAPE = (32, 32, 16)
NETWORKS = {
    "blob-fcn": {"channels": [16, 8], "strides": [1, 1], "kernel": 1, "pool": "max",
                 "context": [9, 9, 5], "downsample": [2, 2, 2], "contrast_prior": 1.0},
    "blob-fcn-maxavg": {"pool": "maxavg"},
    "cnn-small": {"channels": [8, 16, 32]},
    "densenet-small": {"block_config": [2, 2]},
    "resnet10": {"widen_factor": 0.25},
}


@pytest.mark.parametrize(("name", "ratio"), [(n, 0.5) for n in sorted(NETWORKS)]
                         + [("blob-fcn", 0.3), ("blob-fcn", 0.7), ("cnn-small", 0.7)])
def test_prune_channels_removes_the_ratio_and_the_network_still_runs(name, ratio):
    from triage.export.prune import channel_count, parameter_count, prune_channels
    from triage.model import create_model
    from triage.model.config import ModelConfig
    from triage.model.widths import fit_widths

    config = ModelConfig(name.removesuffix("-maxavg"), NETWORKS[name])
    model = create_model(config, SHAPE, seed=0).eval()
    channels, params = channel_count(model), parameter_count(model)
    pruned = prune_channels(model, SHAPE, ratio)
    out = pruned(torch.randn(2, 1, *SHAPE))
    assert out.shape == (2, 2) and torch.isfinite(out).all()
    # every layer but the outputs loses `ratio` of its channels (rounded per layer)
    kept = channel_count(pruned) / channels
    assert kept == pytest.approx(1 - ratio, abs=0.12)
    assert parameter_count(pruned) < params * (1 - ratio) + 1000
    # the bundle's loader rebuilds it from the config and the narrower weights
    rebuilt = fit_widths(create_model(config, SHAPE), pruned.state_dict(), SHAPE)
    rebuilt.load_state_dict(pruned.state_dict())
    x = torch.randn(2, 1, *SHAPE)
    torch.testing.assert_close(rebuilt.eval()(x), pruned(x))


def test_bad_ratio_is_refused():
    from triage.errors import ConfigError
    from triage.export.prune import check_ratio

    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        check_ratio(1.0)


def test_pruned_variant_has_its_own_calibration_and_round_trips(tiny_model, tmp_path,
                                                                monkeypatch):
    import triage.route
    from tests.run.conftest import routing_for
    from triage.calibrate import fit_temperature, probabilities
    from triage.configs import config_path
    from triage.export import prune as mod
    from triage.export.variant import export_data, load_volumes
    from triage.registry.bundle import load_bundle, save_bundle

    parent = load_bundle(tiny_model.bundle_dir)
    parent = dataclasses.replace(parent, temperature=7.0,
                                 routing=routing_for(config_path("rules")))
    seen = {}
    real = triage.route.fit_thresholds

    def spy(p, labels, groups, config=None):
        seen["p"] = np.asarray(p)
        return real(p, labels, groups, config)

    monkeypatch.setattr(triage.route, "fit_thresholds", spy)
    data = export_data(parent, *export_of(tiny_model))
    variant = mod.make_pruned_variant(parent, data, ratio=0.5, finetune_epochs=1)
    bundle = variant.bundle
    record = bundle.pruning
    assert variant.method == "prune" and bundle.runtime == "torch"
    assert record["channels_after"] < record["channels_before"]
    assert record["params_after"] < 0.5 * record["params_before"]
    assert set(variant.forward_ms) == {"torch", "pruned"}
    assert variant.tags["lineage.ratio"] == "0.5"
    # temperature and thresholds fitted on the pruned network's own calibration scores
    logits = bundle.predict_logits(load_volumes(data, data.calib), device="cpu")
    y = np.array([s.label for s in data.calib])
    expected_t = fit_temperature(logits, y) if len(set(y)) == 2 else 1.0
    assert bundle.temperature == pytest.approx(expected_t) != parent.temperature
    np.testing.assert_allclose(seen["p"], probabilities(logits, bundle.temperature))
    assert bundle.routing != parent.routing
    # the saved bundle loads into the narrower network and scores the same
    loaded = load_bundle(save_bundle(bundle, tmp_path / "pruned"))
    np.testing.assert_allclose(loaded.predict_logits(load_volumes(data, data.calib[:2]),
                                                     device="cpu"), logits[:2], atol=1e-5)
    with pytest.raises(mod.ConfigError, match="prune its torch parent"):
        mod.make_pruned_variant(dataclasses.replace(bundle, runtime="onnx", onnx_model=b"x"),
                                data, ratio=0.3)


def test_cli_prune_registers_a_version_with_lineage(tiny_model, tmp_path, monkeypatch):
    from triage.cli import main
    from triage.registry.pyfunc import load_bundle_from_uri
    from triage.registry.tracking import client_for

    parent = register_parent(tiny_model, tmp_path, monkeypatch, "tiny-prune")
    manifest, ingest = export_of(tiny_model)
    code = main(["export", "--model", f"models:/tiny-prune/{parent}", "--prune", "0.3",
                 "--finetune-epochs", "0", "--manifest", str(manifest), "--ingest",
                 str(ingest), "--json"])
    assert code == 0
    version = str(int(parent) + 1)
    tags = client_for(tiny_model.tracking_uri).get_model_version("tiny-prune", version).tags
    assert tags["lineage.parent_version"] == str(parent)
    assert tags["lineage.method"] == "prune" and tags["lineage.runtime"] == "torch"
    assert tags["lineage.ratio"] == "0.3" and "->" in tags["lineage.params"]
    bundle = load_bundle_from_uri(f"models:/tiny-prune/{version}",
                                  tracking_uri=tiny_model.tracking_uri)
    assert bundle.pruning["ratio"] == 0.3
    assert bundle.predict_logits(np.zeros((1, *bundle.in_shape), np.float32),
                                 device="cpu").shape == (1, 2)
    assert main(["export", "--model", f"models:/tiny-prune/{parent}", "--prune", "0.3",
                 "--quantize", "int8", "--manifest", str(manifest), "--ingest",
                 str(ingest)]) == 2
