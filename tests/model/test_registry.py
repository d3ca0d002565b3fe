"""The network registry: every registered network builds and runs; bad names/options fail."""

from __future__ import annotations

import pytest
import torch

from triage.errors import ConfigError
from triage.model import create_model, get_model_spec, list_models, register_model
from triage.model.registry import _REGISTRY
from triage.train.config import ModelConfig

SLOW = {"densenet121", "resnet18"}
# DenseNets halve the grid five times: 32 is the smallest size that fits.
SMOKE_SHAPE = (32, 32, 32)


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in list_models()])
def test_every_registered_model_gives_finite_two_class_logits(name):
    model = create_model(ModelConfig(name), SMOKE_SHAPE, seed=0)
    x = torch.randn(2, 1, *SMOKE_SHAPE, generator=torch.Generator().manual_seed(0))
    out = model(x)
    assert out.shape == (2, 2)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_builtin_networks_are_registered():
    assert {"densenet121", "densenet-small", "resnet10", "resnet18",
            "cnn-small", "blob-fcn"} <= set(list_models())
    assert "growth_rate" in get_model_spec("densenet-small").options


def test_unknown_network_names_the_choices_and_suggests():
    with pytest.raises(ConfigError, match=r"Unknown network 'densenet-smal' \(model.name\)\. "
                                          r"Did you mean 'densenet-small'\? Registered "
                                          r"networks: .*densenet121"):
        create_model(ModelConfig("densenet-smal"), (32, 32, 32))


def test_unknown_option_is_rejected_with_a_suggestion():
    with pytest.raises(ConfigError, match="Unknown densenet-small option 'growth_rat' in "
                                          "model.options. Did you mean 'growth_rate'"):
        create_model(ModelConfig("densenet-small", {"growth_rat": 4}), (32, 32, 32))


def test_bad_option_value_is_a_config_error():
    with pytest.raises(ConfigError, match="Network 'densenet-small' cannot be built for "
                                          "input shape .* growth_rate=-3"):
        create_model(ModelConfig("densenet-small", {"growth_rate": -3}), (32, 32, 32))


def test_grid_too_small_for_the_network_is_a_config_error():
    with pytest.raises(ConfigError, match=r"cannot process \(24, 24, 12\) volumes.*larger "
                                          r"preprocess target_shape"):
        create_model(ModelConfig("densenet-small"), (24, 24, 12))


def test_options_from_yaml_lists_are_accepted():
    model = create_model(ModelConfig("densenet-small", {"block_config": [2, 2],
                                                        "init_features": 8}), (24, 24, 12))
    assert model(torch.zeros(2, 1, 24, 24, 12)).shape == (2, 2)


def test_seed_makes_weights_reproducible_and_leaves_the_global_generator_alone():
    config = ModelConfig("cnn-small", {"channels": [4, 8], "strides": [2, 2]})
    torch.manual_seed(1)
    before = torch.get_rng_state()
    a = create_model(config, (24, 24, 12), seed=5)
    assert torch.equal(torch.get_rng_state(), before)
    b = create_model(config, (24, 24, 12), seed=5)
    c = create_model(config, (24, 24, 12), seed=6)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    assert any(not torch.equal(va, vc) for va, vc in zip(a.state_dict().values(),
                                                          c.state_dict().values(),
                                                          strict=True))


def test_register_model_adds_a_builder_and_refuses_duplicates():
    @register_model("test-linear")
    def linear(in_shape, bias: bool = True):
        """Flatten and one linear layer."""
        n = in_shape[0] * in_shape[1] * in_shape[2]
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(n, 2, bias=bias))

    try:
        assert "test-linear" in list_models()
        spec = get_model_spec("test-linear")
        assert spec.options == {"bias": True}
        assert spec.description == "Flatten and one linear layer."
        model = create_model(ModelConfig("test-linear", {"bias": False}), (4, 4, 2))
        assert model[1].bias is None
        with pytest.raises(ValueError, match="already registered"):
            register_model("test-linear")(linear)
    finally:
        _REGISTRY.pop("test-linear", None)


def test_builder_returning_the_wrong_shape_is_rejected():
    @register_model("test-three")
    def three(in_shape):
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(3))

    try:
        with pytest.raises(ConfigError, match=r"returned shape \(1, 3\).*expected \(1, 2\)"):
            create_model(ModelConfig("test-three"), (4, 4, 2))
    finally:
        _REGISTRY.pop("test-three", None)


@pytest.mark.parametrize("pool", ["lse", "max", "mean"])
def test_blob_fcn_pools_an_evidence_map_into_antisymmetric_logits(pool):
    model = create_model(ModelConfig("blob-fcn", {"channels": [4, 8], "strides": [2, 1],
                                                  "pool": pool}), (24, 20, 12), seed=0)
    x = torch.randn(3, 1, 24, 20, 12, generator=torch.Generator().manual_seed(0))
    model.eval()
    out = model(x)
    assert out.shape == (3, 2)
    assert torch.allclose(out[:, 0], -out[:, 1])
    assert model.evidence(x).shape == (3, 1, 12, 10, 6)


def test_blob_fcn_rejects_an_unknown_pool():
    with pytest.raises(ConfigError, match="pool"):
        create_model(ModelConfig("blob-fcn", {"pool": "median"}), (32, 32, 32))


def _tissue_with_blob(blob: bool) -> torch.Tensor:
    """Homogeneous tissue (0.5, light noise) with an optional dark 5-voxel cube."""
    x = 0.5 + 0.01 * torch.randn(1, 1, 32, 32, 16, generator=torch.Generator().manual_seed(1))
    if blob:
        x[..., 20:25, 8:13, 6:11] -= 0.2
    return x


def test_blob_fcn_contrast_prior_starts_as_a_dark_blob_detector():
    model = create_model(ModelConfig("blob-fcn", {"channels": [8], "strides": [1],
                                                  "pool": "max", "context": [9, 9, 5],
                                                  "contrast_prior": 1.0}), (32, 32, 16),
                         seed=0).eval()
    with torch.no_grad():
        evidence = model.evidence(_tissue_with_blob(True))[0, 0]
        x_index, yz = divmod(int(evidence.argmax()), 32 * 16)
        assert 20 <= x_index < 25 and 8 <= yz // 16 < 13 and 6 <= yz % 16 < 11
        with_blob = torch.softmax(model(_tissue_with_blob(True)), 1)[0, 1]
        without = torch.softmax(model(_tissue_with_blob(False)), 1)[0, 1]
    assert with_blob - without > 0.2
    # The learned layers start at zero; the prior's weight is a trainable parameter.
    last = model.features[-1]
    assert float(last.weight.abs().sum()) == 0.0 and model.prior.requires_grad


def test_blob_fcn_contrast_prior_needs_the_context_front_end():
    with pytest.raises(ConfigError, match="contrast_prior"):
        create_model(ModelConfig("blob-fcn", {"context": None, "contrast_prior": 1.0}),
                     (32, 32, 16))


@pytest.mark.parametrize("mask", ["voxel", "median"])
def test_blob_fcn_tissue_floor_keeps_the_contrast_of_a_blob_next_to_fat(mask):
    """A dark blob one voxel from an organ's edge (fat beyond it): with fat in its
    context the plain detector's standard deviation swells and the blob scores like
    plain tissue; leaving fat out of the context keeps it clearly above."""
    x = 0.5 + 0.01 * torch.randn(1, 1, 32, 32, 16, generator=torch.Generator().manual_seed(2))
    x[..., 25:, :, :] = 0.15  # fat: below the floor
    edge = x.clone()
    edge[..., 21:24, 8:12, 6:10] -= 0.15  # the blob, one voxel from the fat
    config = {"channels": [8], "strides": [1], "pool": "max", "context": [9, 9, 5],
              "contrast_prior": 1.0}
    scores = {}
    for floor in (None, 0.25):
        model = create_model(ModelConfig("blob-fcn", {**config, "tissue_floor": floor,
                                                      "tissue_mask": mask}),
                             (32, 32, 16), seed=0).eval()
        with torch.no_grad():
            blob = float(model.evidence(edge)[0, 0, 21:24, 8:12, 6:10].max())
            tissue = float(model.evidence(x)[0, 0, 4:18].max())  # away from the edge
            fat_edge = float(model.evidence(x)[0, 0, 20:30].max())  # the edge itself
        scores[floor] = (blob, tissue, fat_edge)
    blob, tissue, fat_edge = scores[0.25]
    assert blob > 3 * max(tissue, fat_edge, 0.5)
    plain_blob, _, plain_edge = scores[None]
    assert blob > 2 * plain_blob  # the plain detector loses most of the blob's contrast
    assert plain_edge > plain_blob  # and scores the bare edge above the blob
    with pytest.raises(ConfigError, match="tissue_floor"):
        create_model(ModelConfig("blob-fcn", {"context": None, "tissue_floor": 0.25}),
                     (32, 32, 16))
    with pytest.raises(ConfigError, match=r"tissue_floor must lie in \[0, 1\)"):
        create_model(ModelConfig("blob-fcn", {"tissue_floor": 1.5}), (32, 32, 16))
    with pytest.raises(ConfigError, match="tissue_mask"):
        create_model(ModelConfig("blob-fcn", {"tissue_floor": 0.25, "tissue_mask": "mean"}),
                     (32, 32, 16))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_blob_fcn_tissue_mask_on_the_median_survives_noise(seed):
    """50 HU of noise (0.1 on the [-200, 300] window) moves single tissue voxels below the
    floor: a per-voxel mask drops them and zeroes the contrast of every box holding one,
    so a dark blob in the middle of an organ scores below plain tissue; judged on the
    3x3x3 median, the blob keeps the score it has without any floor."""
    x = 0.5 + 0.1 * torch.randn(1, 1, 48, 48, 24,
                                generator=torch.Generator().manual_seed(seed))
    x[..., 40:, :, :] -= 0.35  # fat at one side
    blob = x.clone()
    blob[..., 18:22, 18:22, 10:14] -= 0.15
    config = {"channels": [8], "strides": [1], "pool": "max", "context": [9, 9, 5],
              "contrast_prior": 1.0, "downsample": [2, 2, 2]}
    scores = {}
    for name, options in (("none", {}), ("voxel", {"tissue_floor": 0.25}),
                          ("median", {"tissue_floor": 0.25, "tissue_mask": "median"})):
        model = create_model(ModelConfig("blob-fcn", {**config, **options}), (48, 48, 24),
                             seed=0).eval()
        with torch.no_grad():
            scores[name] = (float(model.evidence(blob)[0, 0, 8:12, 8:12, 4:8].max()),
                            float(model.evidence(x)[0, 0, 2:18].max()))
    assert scores["voxel"][0] < scores["voxel"][1]  # the blob lost to plain tissue
    assert scores["median"][0] > scores["median"][1]
    assert scores["median"][0] == pytest.approx(scores["none"][0], abs=0.02)


def test_median3_keeps_a_step_edge_and_removes_a_lone_spike():
    from triage.model.nets import _median3

    v = torch.zeros(1, 1, 8, 6, 5)
    v[..., 4:, :, :] = 1.0  # a step along the first axis
    v[0, 0, 1, 3, 2] = 5.0  # a lone spike in the flat part
    out = _median3(v)
    expected = torch.zeros_like(v)
    expected[..., 4:, :, :] = 1.0
    assert torch.equal(out, expected)


@pytest.mark.parametrize("size", [(3, 3, 3), (9, 9, 5), (1, 7, 3), (13, 3, 11), (1, 1, 1)])
def test_box_mean_is_the_in_grid_mean(size):
    """The contrast front end's box mean: each voxel averages the voxels of its box that lie
    inside the grid (border voxels fewer), for boxes smaller and larger than the grid; the
    same values as avg_pool3d without the padding in its count."""
    from torch.nn import functional as F

    from triage.model.nets import _box_mean

    v = torch.rand(2, 3, 12, 10, 8, generator=torch.Generator().manual_seed(0))
    original = v.clone()
    expected = v
    for axis, k in enumerate(size):
        dim, n, half = axis + 2, v.shape[axis + 2], k // 2
        expected = torch.stack([expected.narrow(dim, max(0, i - half),
                                                min(n, i + half + 1) - max(0, i - half)
                                                ).mean(dim) for i in range(n)], dim)
    assert torch.allclose(_box_mean(v, size), expected, atol=1e-6)
    assert torch.equal(v, original)  # the scaling in place falls on a copy
    if size == (9, 9, 5):
        pooled = v
        for axis, k in enumerate(size):
            shape = [1, 1, 1]
            shape[axis] = k
            pooled = F.avg_pool3d(pooled, tuple(shape), stride=1,
                                  padding=tuple(s // 2 for s in shape),
                                  count_include_pad=False)
        assert torch.allclose(_box_mean(v, size), pooled, atol=1e-6)


@pytest.mark.parametrize("factors", [(2, 2, 2), (3, 2, 1), (1, 1, 1), (4, 1, 3)])
@pytest.mark.parametrize("shape", [(12, 10, 8), (13, 11, 7)])
def test_block_mean_is_avg_pool3d(factors, shape):
    """The front end's downsampling: block means with a trailing remainder dropped, as
    avg_pool3d gives them (odd grids included), and the input left as it was."""
    from torch.nn import functional as F

    from triage.model.nets import _block_mean

    v = torch.rand(2, 3, *shape, generator=torch.Generator().manual_seed(1))
    original = v.clone()
    out = _block_mean(v, factors)
    assert out.shape == F.avg_pool3d(v, factors).shape
    assert torch.allclose(out, F.avg_pool3d(v, factors), atol=1e-6)
    assert torch.equal(v, original)


@pytest.mark.parametrize("floor", [None, 0.3])
def test_blob_fcn_onnx_graph_gives_the_torch_logits(floor):
    """The shipped network (context front end, contrast prior) exports to ONNX: the graph
    takes the pooling path of the box mean and plain memory layout, and gives torch's
    logits."""
    from triage.model.runtime import OnnxSession, export_onnx

    options = {"channels": [16, 8], "strides": [1, 1], "kernel": 1, "pool": "max",
               "context": [9, 9, 5], "downsample": [2, 2, 2], "contrast_prior": 1.0}
    if floor is not None:
        options |= {"tissue_floor": floor, "tissue_mask": "median"}
    model = create_model(ModelConfig("blob-fcn", options), (24, 20, 12), seed=0).eval()
    x = torch.rand(3, 1, 24, 20, 12, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x).numpy()
    graph = export_onnx(model, (24, 20, 12))
    out = OnnxSession(graph, device="cpu", threads=1).run(x.numpy())
    assert out.shape == (3, 2)
    assert abs(out - expected).max() < 1e-4


def test_box_mean_cached_in_inference_mode_serves_a_training_step():
    """The in-grid counts are cached per grid: made during a scoring pass (inference mode),
    they still serve a later step that differentiates through the box mean."""
    from triage.model.nets import _box_mean, _inverse_counts

    _inverse_counts.cache_clear()
    v = torch.rand(1, 1, 7, 6, 5)
    with torch.inference_mode():
        _box_mean(v, (3, 3, 3))
    w = v.clone().requires_grad_()
    _box_mean(w, (3, 3, 3)).sum().backward()
    assert w.grad is not None and torch.isfinite(w.grad).all()
