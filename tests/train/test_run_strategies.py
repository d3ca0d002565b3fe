"""The training strategies through `train_model`: what reaches MLflow, and fine-tuning from
the bundle of an earlier run."""

from __future__ import annotations

import mlflow
import pytest
import torch

from triage.train.config import TrainConfig

FUSION = {"model": {"name": "fusion-cnn",
                    "options": {"channels": [4, 4, 8], "strides": [1, 2, 2], "width": 8}},
          "optim": {"epochs": 2, "batch_size": 4, "lr": 0.003},
          "perturb": {"enabled": False},
          "layered": {"enabled": True, "weak": {"flip": 0.5, "noise": 0.5},
                      "strong": {"intensity": 1.0, "blur": 0.5}, "p_strong": 0.5},
          "consistency": {"weight": 0.5, "kind": "mse", "views": "augmented"},
          "runtime": {"experiment": "test"}}


@pytest.fixture(scope="module")
def runs(tiny_training_set, tmp_path_factory):
    """A fusion-cnn run with layered augmentation and consistency, then one fine-tuned
    from its bundle with the encoder frozen for one epoch."""
    from triage.train.run import train_model

    root = tmp_path_factory.mktemp("strategies")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)

        def train(config, name):
            return train_model(manifest_path=tiny_training_set.manifest_path,
                               ingest_dir=tiny_training_set.ingest_dir,
                               config=TrainConfig.from_dict(config), out_dir=root / name,
                               progress=False, log_model=False)

        source = train(FUSION, "source")
        tuned_config = {**FUSION, "layered": {"enabled": False}, "consistency": {},
                        "finetune": {"init": str(source.bundle_dir),
                                     "freeze": [{"modules": ["stages"], "epochs": 1}],
                                     "head": ["fusion", "head"], "lr_scale": 0.1}}
        tuned = train(tuned_config, "tuned")
        client = mlflow.MlflowClient(uri)
        yield source, tuned, client


def test_fusion_weights_augmentation_counts_and_probabilities_are_logged(runs):
    source, _, client = runs
    run = client.get_run(source.run_id)
    assert run.data.params["augmentation.weak.flip"] == "0.5"
    assert run.data.params["augmentation.strong.elastic"] == "0.0"
    assert run.data.params["layered.p_strong"] == "0.5"
    weights = [client.get_metric_history(source.run_id, f"model.fusion.weight.{i}")
               for i in range(3)]
    assert [len(w) for w in weights] == [2, 2, 2]
    for epoch in range(2):
        assert sum(w[epoch].value for w in weights) == pytest.approx(1.0)
    flips = client.get_metric_history(source.run_id, "augment.weak.flip")
    assert [m.step for m in flips] == [1, 2] and all(m.value > 0 for m in flips)
    assert client.get_metric_history(source.run_id, "augment.weak.rotate")[0].value == 0
    assert client.get_metric_history(source.run_id, "train.consistency")[0].value > 0


def test_fine_tuned_run_starts_from_the_source_weights(runs):
    source, tuned, client = runs
    run = client.get_run(tuned.run_id)
    assert run.data.params["finetune.init"] == str(source.bundle_dir)
    assert run.data.params["finetune.init_model"] == "fusion-cnn"
    frozen = client.get_metric_history(tuned.run_id, "train.frozen_modules")
    assert [m.value for m in sorted(frozen, key=lambda m: m.step)] == [1, 0]
    from triage.registry.bundle import load_bundle

    a = load_bundle(source.bundle_dir).state_dict
    b = load_bundle(tuned.bundle_dir).state_dict
    # the encoder moved (unfrozen in epoch 2) but stayed near its start (lr x 0.1)
    key = "stages.0.0.weight"
    assert not torch.equal(a[key], b[key])
    assert float((a[key] - b[key]).abs().max()) < 0.05
