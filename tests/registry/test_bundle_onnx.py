"""Bundles with an ONNX graph: round trip, digest, checksums and which runtime may run them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.registry.conftest import GRID
from triage.registry.bundle import (
    ONNX_FILE,
    BundleError,
    bundle_digest,
    load_bundle,
    save_bundle,
)


@pytest.fixture
def onnx_bundle(make_bundle):
    from triage.export.variant import onnx_bundle as with_graph
    from triage.model.runtime import export_onnx

    parent = make_bundle()
    return parent, with_graph(parent, export_onnx(parent.build_model(), GRID), "none")


def test_round_trip_keeps_the_graph_and_the_runtime(onnx_bundle, volumes, tmp_path):
    parent, variant = onnx_bundle
    folder = save_bundle(variant, tmp_path / "variant")
    meta = json.loads((folder / "bundle.json").read_text())
    assert meta["runtime"] == "onnx" and meta["onnx"]["file"] == ONNX_FILE
    assert len(meta["onnx"]["sha256"]) == 64 and meta["onnx"]["quantization"] == "none"
    back = load_bundle(folder)
    assert back.onnx_model == variant.onnx_model and back.runtime == "onnx"
    np.testing.assert_allclose(back.predict_proba(volumes, device="cpu"),
                               parent.predict_proba(volumes, device="cpu"), atol=1e-5)


def test_the_graph_is_covered_by_the_digest_and_its_checksum(onnx_bundle, tmp_path):
    parent, variant = onnx_bundle
    plain = save_bundle(parent, tmp_path / "parent")
    folder = save_bundle(variant, tmp_path / "variant")
    assert json.loads((plain / "bundle.json").read_text())["onnx"] == {}
    digest = bundle_digest(folder)
    assert digest != bundle_digest(plain)
    graph = folder / ONNX_FILE
    graph.write_bytes(graph.read_bytes() + b"\0")
    assert bundle_digest(folder) != digest
    with pytest.raises(BundleError, match="model.onnx does not match its checksum"):
        load_bundle(folder)


def test_runtime_checks(onnx_bundle, make_bundle, volumes):
    parent, variant = onnx_bundle
    with pytest.raises(BundleError, match="holds no ONNX graph"):
        parent.predict_logits(volumes, runtime="onnx")
    with pytest.raises(BundleError, match="Unknown runtime 'tensorrt'"):
        parent.check_runtime("tensorrt")
    int8 = variant.__class__(**{**{f: getattr(variant, f) for f in (
        "model_config", "state_dict", "in_shape", "preprocess_config", "ingest_config",
        "train_config", "appearances", "device_stats", "train_devices", "onnx_model")},
        "runtime": "onnx", "onnx": {"quantization": "int8"}})
    with pytest.raises(BundleError, match="int8 variant .* run it with --runtime onnx"):
        int8.check_runtime("torch")
    assert variant.check_runtime("torch") == "torch"  # fp32: the same network either way
    with pytest.raises(ValueError, match="runtime 'onnx' needs an ONNX graph"):
        make_bundle(runtime="onnx")
