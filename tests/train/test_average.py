"""Weight averaging (`average.*`): the shipped weights are the mean of the tail of training."""

from __future__ import annotations

import pytest
import torch

from tests.train.factories import tiny_config
from tests.train.test_loop import Interrupted, nll, same_weights, train
from triage.errors import ConfigError
from triage.train.checkpoint import load_checkpoint
from triage.train.config import AverageConfig, TrainConfig
from triage.train.loop import EpochLog

# One step per epoch: each epoch's checkpoint holds the weights of one step.
ONE_STEP = {"optim": {"epochs": 4, "batch_size": 4, "lr": 3e-3, "warmup_epochs": 0.5},
            "sampling": {"epoch_size": 4}}


def raw_weights_per_epoch(out_dir):
    """An `on_epoch` hook that keeps the raw (not averaged) weights of every epoch, read
    back from the checkpoint written just before it is called."""
    kept: list[dict[str, torch.Tensor]] = []

    def keep(entry: EpochLog) -> None:
        kept.append(load_checkpoint(out_dir / "checkpoint.pt")["model"])

    return kept, keep


def test_shipped_weights_are_the_mean_of_the_averaged_steps(make_dataset, tmp_path):
    config = tiny_config(**ONE_STEP, average={"enabled": True, "start": 0.5})
    kept, keep = raw_weights_per_epoch(tmp_path)
    model, result = train(config, make_dataset("train"), make_dataset("val"), tmp_path,
                          on_epoch=keep)
    assert len(kept) == 4
    shipped = model.state_dict()
    averaged_any = False
    for name, value in shipped.items():
        if not value.is_floating_point():
            continue
        mean = (kept[2][name] + kept[3][name]) / 2  # epochs 3 and 4 of 4
        torch.testing.assert_close(value, mean, rtol=1e-6, atol=1e-7)
        averaged_any |= not torch.equal(kept[3][name], kept[2][name])
    assert averaged_any  # the two steps' weights differ, so the mean is not either one
    assert int(load_checkpoint(tmp_path / "checkpoint.pt")["average"]["n_averaged"]) == 2
    # Validation after an averaged epoch scores the averaged weights, which are shipped.
    assert result.history[-1].val["nll"] == pytest.approx(nll(model, make_dataset("val")),
                                                          rel=1e-5)


def test_averaging_leaves_the_training_trajectory_alone(make_dataset, tmp_path):
    plain, _ = train(tiny_config(**ONE_STEP), make_dataset("train"), None, tmp_path / "a")
    averaged, _ = train(tiny_config(**ONE_STEP, average={"enabled": True}),
                        make_dataset("train"), None, tmp_path / "b")
    raw = load_checkpoint(tmp_path / "b" / "checkpoint.pt")["model"]
    assert all(torch.equal(raw[k], v) for k, v in plain.state_dict().items())
    assert not same_weights(plain, averaged)


def test_resume_inside_the_averaged_epochs_is_bit_identical(make_dataset, tmp_path):
    config = tiny_config(optim={"epochs": 4}, average={"enabled": True, "start": 0.25})
    straight, _ = train(config, make_dataset("train"), None, tmp_path / "straight")

    def stop_after_three(entry: EpochLog) -> None:
        if entry.epoch == 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        train(config, make_dataset("train"), None, tmp_path / "resumed",
              on_epoch=stop_after_three)
    resumed, again = train(config, make_dataset("train"), None, tmp_path / "resumed")
    assert again.resumed_from == 3 and again.epochs_run == 1
    assert same_weights(straight, resumed)
    finished, done = train(config, make_dataset("train"), None, tmp_path / "resumed")
    assert done.epochs_run == 0 and same_weights(straight, finished)


def test_first_averaged_epoch():
    assert AverageConfig(start=0.5).first_epoch(10) == 5  # epochs 6-10, 1-based
    assert AverageConfig(start=0.0).first_epoch(10) == 0
    assert AverageConfig(start=0.99).first_epoch(2) == 1  # at least the last epoch
    with pytest.raises(ConfigError, match="'average.start' is 1"):
        AverageConfig(start=1)


def test_a_switched_off_average_leaves_the_fingerprint_alone():
    base = TrainConfig.from_dict({"model": {"name": "blob-fcn"}})
    assert base.replace(average={"start": 0.75}).fingerprint() == base.fingerprint()
    on = base.replace(average={"enabled": True})
    assert on.fingerprint() != base.fingerprint()
    assert on.replace(average={"start": 0.75}).fingerprint() != on.fingerprint()
    assert "average.enabled" in base.flat()  # still recorded as a run parameter

