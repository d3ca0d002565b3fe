"""The training loop on the tiny training set: learns, is deterministic, resumes exactly."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest
import torch

from tests.train.factories import fake_perturbation, tiny_config
from triage.errors import ConfigError
from triage.model import create_model
from triage.train.checkpoint import load_checkpoint
from triage.train.loop import EpochLog, fit, predict_logits
from triage.train.objective import symmetric_kl

SHAPE = (24, 24, 12)


class Interrupted(Exception):
    """Raised from on_epoch to simulate a run killed after an epoch."""


def train(config, train_ds, val_ds, out_dir, **kwargs):
    model = create_model(config.model, SHAPE, seed=config.runtime.seed)
    counts = np.bincount(train_ds.labels(), minlength=2).tolist()
    result = fit(model, train_ds, val_ds, config, out_dir, class_counts=counts,
                 progress=False, **kwargs)
    return model, result


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                  b.state_dict().values(), strict=True))


def nll(model, dataset) -> float:
    logits = torch.from_numpy(predict_logits(model, dataset, batch_size=8))
    return float(torch.nn.functional.cross_entropy(logits, torch.from_numpy(dataset.labels())))


def test_loss_decreases_on_the_easy_task(make_dataset, tmp_path):
    train_ds, val_ds = make_dataset("train"), make_dataset("val")
    config = tiny_config(optim={"epochs": 4}, sampling={"epoch_size": 48})
    untrained = create_model(config.model, SHAPE, seed=config.runtime.seed)
    before = nll(untrained, train_ds)
    model, result = train(config, train_ds, val_ds, tmp_path)
    assert nll(model, train_ds) < 0.8 * before
    losses = [h.train_loss for h in result.history]
    assert losses[-1] < losses[0]
    assert result.epochs_run == 4 and result.resumed_from is None
    # 24 training volumes teach the tiny net the training set, not yet the task: only
    # check that validation ran and produced numbers.
    assert set(result.history[-1].val) == {"loss", "nll", "auroc", "accuracy"}
    assert all(np.isfinite(v) for v in result.history[-1].val.values())


def test_two_runs_with_one_seed_give_identical_weights(make_dataset, tmp_path):
    config = tiny_config()
    a, ra = train(config, make_dataset("train"), None, tmp_path / "a")
    b, rb = train(config, make_dataset("train"), None, tmp_path / "b")
    assert same_weights(a, b)
    assert [h.train_loss for h in ra.history] == [h.train_loss for h in rb.history]
    c, _ = train(tiny_config(runtime={"seed": 4}), make_dataset("train"), None, tmp_path / "c")
    assert not same_weights(a, c)


def test_resume_after_an_interruption_is_bit_identical(make_dataset, tmp_path):
    config = tiny_config(optim={"epochs": 3}, consistency={"weight": 0.5},
                         model={"options": {"channels": [4, 8], "strides": [2, 2],
                                            "dropout": 0.2}})

    def dataset():
        return make_dataset("train", transform=fake_perturbation, return_clean=True)

    straight, result = train(config, dataset(), make_dataset("val"), tmp_path / "straight")

    def stop_after_two(entry: EpochLog) -> None:
        if entry.epoch == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        train(config, dataset(), make_dataset("val"), tmp_path / "resumed",
              on_epoch=stop_after_two)
    assert load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["epoch"] == 2
    resumed, again = train(config, dataset(), make_dataset("val"), tmp_path / "resumed")
    assert again.resumed_from == 2 and again.epochs_run == 1
    assert same_weights(straight, resumed)
    assert [h.epoch for h in again.history] == [1, 2, 3]
    assert again.history[-1].train_loss == result.history[-1].train_loss
    assert again.history[-1].val == result.history[-1].val


def test_finished_run_is_not_trained_again(make_dataset, tmp_path):
    config = tiny_config(optim={"epochs": 1})
    first, _ = train(config, make_dataset("train"), None, tmp_path)
    second, result = train(config, make_dataset("train"), None, tmp_path)
    assert result.epochs_run == 0 and result.resumed_from == 1
    assert same_weights(first, second)


def test_checkpoint_of_another_config_is_refused(make_dataset, tmp_path):
    train(tiny_config(optim={"epochs": 1}), make_dataset("train"), None, tmp_path)
    with pytest.raises(ConfigError, match="was written by a different training config.*"
                                          "Use a fresh output folder"):
        train(tiny_config(optim={"epochs": 1, "lr": 1e-2}), make_dataset("train"), None,
              tmp_path)


def test_checkpoint_contents(make_dataset, tmp_path):
    config = tiny_config(optim={"epochs": 2}, runtime={"checkpoint_every": 5})
    _, result = train(config, make_dataset("train"), None, tmp_path)
    state = load_checkpoint(result.checkpoint)
    assert state["epoch"] == 2  # the last epoch is saved whatever checkpoint_every says
    assert state["fingerprint"] == config.fingerprint()
    assert {"model", "optimizer", "scheduler", "history", "rng", "config"} <= set(state)
    assert [EpochLog.from_dict(h) for h in state["history"]] == result.history


def test_rendered_counts_and_consistency_are_logged(make_dataset, tmp_path):
    config = tiny_config(optim={"epochs": 1}, consistency={"weight": 1.0})
    train_ds = make_dataset("train", transform=fake_perturbation, return_clean=True)
    _, result = train(config, train_ds, None, tmp_path)
    entry = result.history[0]
    assert set(entry.rendered) == {*train_ds.devices, "none"}
    assert sum(entry.rendered.values()) == 24  # epoch_size, all full batches
    assert entry.rendered["cygnus"] > 0 and entry.rendered["none"] > 0
    assert entry.rendered["acme"] == 0
    assert entry.train_consistency > 0
    assert entry.val == {}


def test_consistency_without_clean_volumes_is_a_config_error(make_dataset, tmp_path):
    config = tiny_config(consistency={"weight": 1.0})
    with pytest.raises(ConfigError, match="return_clean=True"):
        train(config, make_dataset("train"), None, tmp_path)


def test_predict_logits_shape_and_order(make_dataset):
    dataset = make_dataset("val")
    model = create_model(tiny_config().model, SHAPE, seed=0)
    model.train()
    logits = predict_logits(model, dataset, batch_size=3)
    assert logits.shape == (len(dataset), 2) and logits.dtype == np.float32
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        for i in (0, len(dataset) - 1):
            one = model(dataset[i]["image"][None]).numpy()
            np.testing.assert_allclose(logits[i], one[0], rtol=1e-5, atol=1e-6)


def test_symmetric_kl():
    a = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    assert float(symmetric_kl(a, a)) == pytest.approx(0.0)
    b = torch.tensor([[0.0, 2.0], [1.0, 0.0]])
    assert float(symmetric_kl(a, b)) == pytest.approx(float(symmetric_kl(b, a)))
    assert float(symmetric_kl(a, b)) > 0


def test_progress_bar_runs_on_a_terminal(make_dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    config = tiny_config(optim={"epochs": 1})
    model = create_model(config.model, SHAPE, seed=0)
    fit(model, make_dataset("train"), make_dataset("val"), config, tmp_path,
        class_counts=[12, 12], progress=True)
    err = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", capsys.readouterr().err)
    assert "epoch 1: train loss" in err and "val loss" in err and "6/6" in err


def test_worker_processes_do_not_change_the_result(make_dataset, tmp_path):
    config = tiny_config(optim={"epochs": 1})
    in_process, _ = train(config, make_dataset("train", transform=fake_perturbation),
                          None, tmp_path / "a")
    workers, _ = train(config.replace(runtime={"num_workers": 2}),
                       make_dataset("train", transform=fake_perturbation), None,
                       tmp_path / "b")
    assert same_weights(in_process, workers)
