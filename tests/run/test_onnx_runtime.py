"""`triage run --runtime onnx` against torch on the same export: the same probabilities
(within 1e-4) and the same routes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from triage.run.pipeline import run_export


@pytest.fixture(scope="module")
def exported(tiny_model):
    from triage.export.variant import onnx_bundle
    from triage.model.runtime import export_onnx
    from triage.registry.bundle import load_bundle

    parent = load_bundle(tiny_model.bundle_dir)
    # The parent's calibration kept on purpose: parity compares the engines, not a variant.
    return parent, onnx_bundle(parent, export_onnx(parent.build_model(), parent.in_shape),
                               "none")


def test_onnx_runtime_matches_torch_probabilities_and_routes(exported, run_case, router,
                                                             tmp_path):
    parent, variant = exported
    runs = {runtime: run_export(run_case.export_dir, tmp_path / runtime, bundle=variant,
                                router=router, workers=1, batch_size=2, device="cpu",
                                runtime=runtime)
            for runtime in ("torch", "onnx")}
    torch_rows, onnx_rows = ({r.study_uid: r for r in runs[k].rows} for k in runs)
    assert runs["onnx"].summary["runtime"] == "onnx"
    assert torch_rows.keys() == onnx_rows.keys()
    scored = [uid for uid, row in torch_rows.items() if row.p_calibrated]
    assert len(scored) >= 4
    p_torch = np.array([float(torch_rows[u].p_calibrated) for u in scored])
    p_onnx = np.array([float(onnx_rows[u].p_calibrated) for u in scored])
    assert np.max(np.abs(p_torch - p_onnx)) <= 1e-4
    assert [torch_rows[u].route for u in torch_rows] == [onnx_rows[u].route for u in torch_rows]


def test_a_bundle_without_a_graph_refuses_the_onnx_runtime(exported, run_case, router,
                                                         tmp_path):
    from triage.registry.bundle import BundleError

    parent, _ = exported
    with pytest.raises(BundleError, match="triage export --model URI --format onnx"):
        run_export(run_case.export_dir, tmp_path, bundle=parent, router=router, workers=1,
                   device="cpu", runtime="onnx")


def test_the_bundle_default_runtime_is_used(exported):
    _, variant = exported
    volumes = np.random.default_rng(0).random((2, 1, *variant.in_shape), dtype=np.float32)
    on_torch = dataclasses.replace(variant, runtime="torch")
    np.testing.assert_allclose(variant.predict_proba(volumes, device="cpu"),
                               on_torch.predict_proba(volumes, device="cpu"), atol=1e-5)
    assert variant.predict_logits(volumes, device="cpu").dtype == np.float32
