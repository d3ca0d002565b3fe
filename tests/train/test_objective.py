"""The objective's loss terms and the consistency term between two views."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.train.factories import fake_perturbation, tiny_config
from triage.errors import ConfigError
from triage.model import create_model
from triage.train.augment import Augmentation
from triage.train.config import AugmentConfig, ConsistencyConfig
from triage.train.loop import fit
from triage.train.objective import (
    ConsistencyTerm,
    StepOutputs,
    SupervisedTerm,
    build_terms,
    probability_mse,
)


def outputs(a, b=None):
    return StepOutputs(torch.zeros(2, 1), a, torch.tensor([0, 1]), b, {})


def test_terms_are_a_list_the_consistency_term_joins_when_weighted():
    criterion = torch.nn.CrossEntropyLoss()
    assert [t.name for t in build_terms(criterion, ConsistencyConfig())] == ["loss"]
    terms = build_terms(criterion, ConsistencyConfig(weight=0.3, kind="mse"))
    assert [(t.name, t.weight, t.needs_second_view) for t in terms] == [
        ("loss", 1.0, False), ("consistency", 0.3, True)]
    a, b = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([[0.0, 2.0], [0.0, 1.0]])
    assert float(SupervisedTerm(criterion)(outputs(a))) == pytest.approx(
        float(criterion(a, torch.tensor([0, 1]))))
    mse = ConsistencyTerm(ConsistencyConfig(weight=1, kind="mse"))
    assert float(mse(outputs(a, a))) == pytest.approx(0.0)
    assert float(mse(outputs(a, b))) == pytest.approx(float(probability_mse(b, a)))
    assert float(mse(outputs(a, b))) > 0
    with pytest.raises(ValueError, match="second view"):
        mse(outputs(a))


def test_consistency_config_is_validated():
    with pytest.raises(ConfigError, match="consistency.kind"):
        tiny_config(consistency={"kind": "js"})
    with pytest.raises(ConfigError, match="consistency.views"):
        tiny_config(consistency={"views": "three"})
    with pytest.raises(ConfigError, match="moved to consistency.weight"):
        tiny_config(perturb={"consistency_weight": 1.0})


def train(config, train_ds, out_dir):
    model = create_model(config.model, (24, 24, 12), seed=config.runtime.seed)
    counts = np.bincount(train_ds.labels(), minlength=2).tolist()
    return model, fit(model, train_ds, None, config, out_dir, class_counts=counts,
                      progress=False)


@pytest.mark.parametrize("kind", ["kl", "mse"])
def test_two_augmented_views_without_the_perturbation(make_dataset, tmp_path, kind):
    # Generic augmentation only (no device perturbation): intensity jitter on every sample
    # makes the two draws differ.
    augment = Augmentation(AugmentConfig(enabled=True, p_intensity=1.0, intensity_scale=0.5))
    config = tiny_config(optim={"epochs": 1}, consistency={"weight": 1.0, "kind": kind,
                                                           "views": "augmented"})
    train_ds = make_dataset("train", transform=augment, second_view=True)
    item = train_ds[0]
    assert not torch.equal(item["image"], item["view2"])
    np.testing.assert_array_equal(item["image"], make_dataset("train", transform=augment)[0]
                                  ["image"])  # the first view does not move
    _, result = train(config, train_ds, tmp_path)
    entry = result.history[0]
    assert entry.train_consistency > 0
    assert set(entry.terms) == {"loss", "consistency"}
    assert entry.terms["consistency"] == entry.train_consistency


def test_consistency_changes_the_training(make_dataset, tmp_path):
    def weights(weight):
        config = tiny_config(optim={"epochs": 1},
                             consistency={"weight": weight, "views": "clean"})
        ds = make_dataset("train", transform=fake_perturbation, return_clean=weight > 0)
        model, _ = train(config, ds, tmp_path / str(weight))
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert not torch.equal(weights(0.0), weights(5.0))


def test_augmented_views_need_the_second_view(make_dataset, tmp_path):
    config = tiny_config(consistency={"weight": 1.0, "views": "augmented"})
    with pytest.raises(ConfigError, match="second_view=True"):
        train(config, make_dataset("train", transform=fake_perturbation), tmp_path)
