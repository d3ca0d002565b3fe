"""ONNX variants (fp32 and int8): recalibrated on their own scores, never the parent's."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.export.conftest import export_of, register_parent


@pytest.fixture(scope="module")
def parent(tiny_model):
    from tests.run.conftest import routing_for
    from triage.configs import config_path
    from triage.registry.bundle import load_bundle

    bundle = load_bundle(tiny_model.bundle_dir)
    # Sentinel calibration: a variant that kept any of it would show it.
    return dataclasses.replace(bundle, temperature=7.0,
                               routing=routing_for(config_path("rules")))


def test_int8_variant_refits_temperature_and_thresholds_on_its_own_scores(
        parent, tiny_model, monkeypatch):
    import triage.route
    from triage.calibrate import fit_temperature, probabilities
    from triage.export import variant as mod

    seen = {}
    real = triage.route.fit_thresholds

    def spy(p, labels, groups, config=None):
        seen["p"] = np.asarray(p)
        return real(p, labels, groups, config)

    monkeypatch.setattr(triage.route, "fit_thresholds", spy)
    data = mod.export_data(parent, *export_of(tiny_model))
    variant = mod.make_variant(parent, data, quantize="int8")
    bundle = variant.bundle
    assert variant.method == "onnx-int8" and bundle.runtime == "onnx" and bundle.quantized
    assert set(variant.forward_ms) == {"torch", "onnx", "onnx-int8"}
    # the thresholds were fitted on the int8 graph's calibrated scores of the calib split
    logits = bundle.predict_logits(mod.load_volumes(data, data.calib), device="cpu")
    y = np.array([s.label for s in data.calib])
    expected_t = fit_temperature(logits, y) if len(set(y)) == 2 else 1.0
    assert bundle.temperature == pytest.approx(expected_t)
    np.testing.assert_allclose(seen["p"], probabilities(logits, bundle.temperature))
    assert bundle.temperature != parent.temperature
    assert bundle.routing != parent.routing
    assert "calib.cal.all.ece" in bundle.metrics
    with pytest.raises(mod.ConfigError, match="already a quantized variant"):
        mod.make_variant(bundle, data)


def test_cli_export_registers_a_version_with_lineage(tiny_model, tmp_path, monkeypatch):
    from triage.cli import main
    from triage.registry.pyfunc import load_bundle_from_uri
    from triage.registry.tracking import client_for

    parent = register_parent(tiny_model, tmp_path, monkeypatch, "tiny-export")
    manifest, ingest = export_of(tiny_model)
    code = main(["export", "--model", f"models:/tiny-export/{parent}", "--format", "onnx",
                 "--manifest", str(manifest), "--ingest", str(ingest), "--json"])
    assert code == 0
    client = client_for(tiny_model.tracking_uri)
    version = str(int(parent) + 1)
    tags = client.get_model_version("tiny-export", version).tags
    assert tags["lineage.parent_version"] == str(parent)
    assert tags["lineage.method"] == "onnx" and tags["lineage.runtime"] == "onnx"
    bundle = load_bundle_from_uri(f"models:/tiny-export/{version}",
                                  tracking_uri=tiny_model.tracking_uri)
    assert bundle.runtime == "onnx" and bundle.onnx_model and not bundle.quantized
    assert main(["export", "--model", str(tiny_model.bundle_dir), "--manifest",
                 str(manifest), "--ingest", str(ingest)]) == 2  # local: needs --out
