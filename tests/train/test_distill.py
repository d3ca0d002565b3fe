"""Distillation: the loss combines as alpha*T^2*KL + (1-alpha)*focal, and a run completes."""

from __future__ import annotations

import json

import mlflow
import pytest
import torch
import yaml

from tests.train.factories import TINY_MODEL, tiny_config
from triage.errors import ConfigError
from triage.model import create_model
from triage.train.config import ModelConfig, TrainConfig
from triage.train.distill import DistillationLoss
from triage.train.losses import create_loss

SHAPE = (24, 24, 12)


def test_defaults_are_alpha_0_7_and_t_4():
    distill = TrainConfig().distill
    assert (distill.alpha, distill.temperature, distill.teacher) == (0.7, 4.0, "")
    with pytest.raises(ConfigError, match="distill.alpha must lie in"):
        tiny_config(distill={"alpha": 1.5})


def test_loss_is_alpha_t2_kl_plus_one_minus_alpha_focal():
    torch.manual_seed(0)
    teacher = create_model(ModelConfig(**TINY_MODEL), SHAPE)
    config = tiny_config(distill={"alpha": 0.3, "temperature": 2.5})
    focal = create_loss(config.loss, (10, 10))
    loss = DistillationLoss(teacher, focal, config.distill)
    x = torch.rand(4, 1, *SHAPE)
    student = torch.randn(4, 2, requires_grad=True)
    target = torch.tensor([0, 1, 1, 0])
    with torch.no_grad():
        t_logits = teacher.eval()(x)
    p_t = torch.softmax(t_logits / 2.5, 1)
    log_p_s = torch.log_softmax(student / 2.5, 1)
    kl = (p_t * (p_t.log() - log_p_s)).sum(1).mean()
    expected = 0.3 * 2.5 ** 2 * kl + 0.7 * focal(student, target)
    got = loss(student, target, inputs=x)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    assert float(loss(student, target)) == pytest.approx(float(focal(student, target)))
    got.backward()
    assert student.grad is not None
    assert all(p.grad is None for p in teacher.parameters())  # the teacher stays frozen
    loss.train()
    assert not loss.teacher.training


def test_train_with_a_teacher_completes(tiny_training_set, tmp_path, monkeypatch):
    from triage.cli import main
    from triage.registry.bundle import ModelBundle, save_bundle

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(1)
    net = create_model(ModelConfig(**TINY_MODEL), SHAPE)
    teacher = save_bundle(ModelBundle(
        model_config=TINY_MODEL, state_dict=net.state_dict(), in_shape=SHAPE,
        preprocess_config={"target_shape": list(SHAPE)}, ingest_config={}, train_config={},
        appearances={}, device_stats={}, train_devices=["acme"]), tmp_path / "teacher")
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({
        "model": TINY_MODEL, "optim": {"epochs": 1, "batch_size": 4, "lr": 0.003},
        "sampling": {"epoch_size": 12}, "perturb": {"enabled": True, "p_transfer": 0.5},
        "runtime": {"experiment": "distill", "device": "cpu", "num_workers": 0}}))
    code = main(["train", "--manifest", str(tiny_training_set.manifest_path), "--ingest",
                 str(tiny_training_set.ingest_dir), "--config", str(config), "--out",
                 str(tmp_path / "out"), "--teacher", str(teacher), "--json"])
    assert code == 0
    recorded = json.loads((tmp_path / "out" / "bundle" / "bundle.json").read_text())
    assert recorded["train_config"]["distill"] == {"teacher": str(teacher), "alpha": 0.7,
                                                   "temperature": 4.0}
    assert recorded["train_config"]["perturb"]["enabled"] is True
    runs = mlflow.MlflowClient(store).search_runs(
        [mlflow.MlflowClient(store).get_experiment_by_name("distill").experiment_id])
    assert runs[0].data.tags["triage.teacher"] == str(teacher)
