"""Model bundle: save/load round trip, predictions, temperature, atomic writes, bad bundles."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import triage
from triage.registry.bundle import (
    BUNDLE_FORMAT,
    BUNDLE_JSON,
    WEIGHTS_FILE,
    BundleDigestError,
    BundleError,
    bundle_digest,
    load_bundle,
    save_bundle,
)


def test_round_trip_keeps_weights_metadata_and_predictions(make_bundle, volumes, tmp_path):
    bundle = make_bundle(temperature=1.7)
    path = save_bundle(bundle, tmp_path / "bundle")
    assert sorted(p.name for p in path.iterdir()) == [BUNDLE_JSON, WEIGHTS_FILE]
    loaded = load_bundle(path)
    assert loaded.state_dict.keys() == bundle.state_dict.keys()
    for key, tensor in bundle.state_dict.items():
        assert torch.equal(loaded.state_dict[key], tensor)
    assert loaded.metadata() == bundle.metadata()
    assert loaded.in_shape == (16, 16, 8) and loaded.class_names == ("negative", "positive")
    assert loaded.code_version.startswith(triage.__version__)
    np.testing.assert_array_equal(loaded.predict_logits(volumes, device="cpu"),
                                  bundle.predict_logits(volumes, device="cpu"))
    np.testing.assert_array_equal(loaded.predict_proba(volumes), bundle.predict_proba(volumes))
    assert json.loads((path / BUNDLE_JSON).read_text())["format"] == BUNDLE_FORMAT


def test_predictions_shapes_and_temperature(make_bundle, volumes):
    bundle = make_bundle()
    logits = bundle.predict_logits(volumes, batch_size=2)
    assert logits.shape == (3, 2) and logits.dtype == np.float32
    proba = bundle.predict_proba(volumes[:, 0])  # (N, X, Y, Z) is accepted too
    expected = torch.softmax(torch.from_numpy(logits), 1)[:, 1].numpy()
    np.testing.assert_allclose(proba, expected, rtol=1e-5)
    hot = bundle.with_temperature(4.0)
    assert hot.temperature == 4.0 and bundle.temperature == 1.0
    assert hot.state_dict is bundle.state_dict
    assert np.all(np.abs(hot.predict_proba(volumes) - 0.5) <= np.abs(proba - 0.5) + 1e-7)
    assert bundle.predict_proba(list(volumes)).shape == (3,)
    with pytest.raises(ValueError, match=r"Expected volumes of shape \(N, 1, 16, 16, 8\)"):
        bundle.predict_proba(np.zeros((1, 1, 8, 8, 8), np.float32))
    with pytest.raises(ValueError, match="temperature must be a positive finite number"):
        bundle.with_temperature(0.0)


def test_save_replaces_a_bundle_but_not_other_folders(make_bundle, tmp_path):
    target = save_bundle(make_bundle(seed=0), tmp_path / "b")
    save_bundle(make_bundle(seed=1), target)
    again = load_bundle(target)
    fresh = make_bundle(seed=1)
    assert all(torch.equal(again.state_dict[k], v) for k, v in fresh.state_dict.items())
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # no temp or old dirs left
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(BundleError, match="exists and is not a model bundle"):
        save_bundle(make_bundle(), other)
    assert (other / "keep.txt").read_text() == "x"


@pytest.fixture
def saved(make_bundle, tmp_path):
    return save_bundle(make_bundle(), tmp_path / "bundle")


def _edit_json(path, **changes):
    meta = json.loads((path / BUNDLE_JSON).read_text())
    meta.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del meta[key]
    (path / BUNDLE_JSON).write_text(json.dumps(meta))


def test_load_errors_name_the_path_and_the_problem(saved, tmp_path):
    with pytest.raises(BundleError, match=r"nowhere: is not a directory"):
        load_bundle(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BundleError, match="bundle.json is missing"):
        load_bundle(empty)
    _edit_json(saved, format=BUNDLE_FORMAT + 1)
    with pytest.raises(BundleError, match=f"format {BUNDLE_FORMAT + 1} is newer .*upgrade"):
        load_bundle(saved)
    _edit_json(saved, format=BUNDLE_FORMAT, train_devices=None)
    with pytest.raises(BundleError, match="lacks field\\(s\\) train_devices"):
        load_bundle(saved)
    (saved / BUNDLE_JSON).write_text("{not json")
    with pytest.raises(BundleError, match=f"{saved}: bundle.json is not valid JSON"):
        load_bundle(saved)


def test_corrupt_or_missing_weights(saved):
    weights = saved / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(BundleError, match="weights.pt does not match its checksum"):
        load_bundle(saved)
    _edit_json(saved, weights_sha256=None)
    with pytest.raises(BundleError, match="weights.pt cannot be read as weights"):
        load_bundle(saved)
    weights.unlink()
    with pytest.raises(BundleError, match="the weights file weights.pt is missing"):
        load_bundle(saved)


@pytest.mark.parametrize("name", ["../weights.pt", "/tmp/weights.pt", "sub/../../w.pt",
                                  "..", ""])
def test_weights_named_outside_the_bundle_are_refused(saved, tmp_path, name):
    import shutil

    shutil.copy(saved / WEIGHTS_FILE, tmp_path / "weights.pt")  # a real file out there
    _edit_json(saved, weights=name)
    with pytest.raises(BundleError, match="names weights .* outside the bundle folder"):
        load_bundle(saved)


def test_weights_linked_outside_the_bundle_are_refused(saved, tmp_path):
    outside = tmp_path / "elsewhere.pt"
    (saved / WEIGHTS_FILE).rename(outside)
    (saved / WEIGHTS_FILE).symlink_to(outside)
    with pytest.raises(BundleError, match="links outside the bundle folder"):
        load_bundle(saved)


def test_a_pickled_payload_is_refused_even_with_a_matching_checksum(saved):
    from fractions import Fraction

    from triage.registry.bundle import _sha256

    weights = saved / WEIGHTS_FILE
    torch.save({"w": Fraction(1, 3)}, weights)  # arbitrary objects need full unpickling
    _edit_json(saved, weights_sha256=_sha256(weights))
    with pytest.raises(BundleError, match="weights.pt cannot be read as weights "
                                          r"\(UnpicklingError: Weights only load failed"):
        load_bundle(saved)


def test_the_digest_covers_every_file(saved):
    digest = bundle_digest(saved)
    assert load_bundle(saved, expected_digest=digest).temperature == 1.0
    _edit_json(saved, temperature=2.0)
    with pytest.raises(BundleDigestError, match="do not match the digest recorded"):
        load_bundle(saved, expected_digest=digest)
    _edit_json(saved, temperature=1.0)
    edited = bundle_digest(saved)
    (saved / "extra.txt").write_text("x")
    added = bundle_digest(saved)
    (saved / "extra.txt").rename(saved / "extra2.txt")
    assert len({edited, added, bundle_digest(saved)}) == 3  # added, then renamed


def test_weights_that_do_not_fit_the_network(make_bundle, volumes):
    bundle = make_bundle(model_config={"name": "cnn-small",
                                       "options": {"channels": [8, 8], "strides": [2, 2]}})
    with pytest.raises(BundleError, match="the weights do not fit network 'cnn-small'"):
        bundle.predict_proba(volumes)


def test_routing_thresholds_round_trip_and_old_bundles_load_empty(make_bundle, tmp_path):
    from triage.route import FittedThresholds, fit_thresholds

    rng = np.random.default_rng(3)
    p = rng.uniform(size=1500)
    y = (rng.uniform(size=1500) < p).astype(int)
    fitted = fit_thresholds(p, y, np.where(p > 0.5, "acme", "borealis"))
    path = save_bundle(make_bundle(routing=fitted.to_dict()), tmp_path / "bundle")
    loaded = load_bundle(path)
    assert loaded.routing == json.loads(json.dumps(fitted.to_dict()))
    assert FittedThresholds.from_dict(loaded.routing) == fitted
    _edit_json(path, routing=None)  # a bundle written before the field existed
    assert load_bundle(path).routing == {}
    assert json.loads((path / BUNDLE_JSON).read_text())["format"] == BUNDLE_FORMAT == 1
    with pytest.raises(ValueError, match="routing must be a dict"):
        make_bundle(routing=[1])


def test_weights_left_encoded_are_checked_now_and_decoded_where_used(saved, volumes):
    import pickle

    from triage.registry.bundle import EncodedWeights

    decoded = load_bundle(saved)
    lazy = load_bundle(saved, decode_weights=False)
    assert isinstance(lazy.state_dict, EncodedWeights)
    assert lazy.metadata() == decoded.metadata()
    shipped = pickle.loads(pickle.dumps(lazy))  # what an inference actor receives
    assert isinstance(shipped.state_dict, EncodedWeights)
    for key, tensor in decoded.state_dict.items():
        assert torch.equal(shipped.state_dict[key], tensor)
    np.testing.assert_array_equal(shipped.predict_logits(volumes, device="cpu"),
                                  decoded.predict_logits(volumes, device="cpu"))
    # the checksum is still checked when the bundle is loaded, not when it is used
    weights = saved / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(BundleError, match="weights.pt does not match its checksum"):
        load_bundle(saved, decode_weights=False)
    _edit_json(saved, weights_sha256=None)  # no checksum: a garbled file fails where used
    garbled = load_bundle(saved, decode_weights=False)
    with pytest.raises(BundleError, match="weights.pt cannot be read as weights"):
        garbled.state_dict.decode()


def test_a_bundle_with_encoded_weights_loads_without_torch(saved):
    import subprocess
    import sys

    code = ("import sys; from triage.registry.bundle import load_bundle; "
            f"b = load_bundle({str(saved)!r}, decode_weights=False); "
            "assert b.check_runtime() == 'torch'; print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.strip() == "False"
