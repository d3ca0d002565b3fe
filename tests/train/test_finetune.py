"""Fine-tuning: staged unfreezing holds frozen parameters, the kept layers' lr is discounted,
and the init model's weights are loaded through the bundle loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.train.factories import tiny_config
from triage.errors import ConfigError
from triage.model import create_model
from triage.train.checkpoint import load_checkpoint
from triage.train.config import FinetuneConfig, FreezeStage, TrainConfig
from triage.train.finetune import frozen_prefixes, load_init, parameter_groups
from triage.train.loop import fit

SHAPE = (24, 24, 12)
# cnn-small (MONAI Classifier): encoder "net.layer_0", "net.layer_1", head "final"
FROZEN = "net.layer_0"


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def changed(before: dict, after: dict, prefix: str) -> dict[str, bool]:
    return {k: not torch.equal(before[k], after[k]) for k in before
            if k.startswith(prefix + ".") and after[k].dtype.is_floating_point}


def run_fit(config: TrainConfig, make_dataset, out_dir, on_epoch=None):
    model = create_model(config.model, SHAPE, seed=config.runtime.seed)
    train_ds = make_dataset("train")
    counts = np.bincount(train_ds.labels(), minlength=2).tolist()
    return model, fit(model, train_ds, None, config, out_dir, class_counts=counts,
                      progress=False, on_epoch=on_epoch)


def test_frozen_parameters_hold_during_their_epochs_then_train(make_dataset, tmp_path):
    config = tiny_config(optim={"epochs": 3},
                         finetune={"freeze": [{"modules": [FROZEN], "epochs": 2}]})
    model = create_model(config.model, SHAPE, seed=config.runtime.seed)
    names = [n for n, _ in model.named_parameters()]
    assert any(n.startswith(FROZEN + ".") for n in names)
    states = [snapshot(model)]

    def keep(entry):
        states.append(snapshot(model))

    train_ds = make_dataset("train")
    counts = np.bincount(train_ds.labels(), minlength=2).tolist()
    result = fit(model, train_ds, None, config, tmp_path, class_counts=counts,
                 progress=False, on_epoch=keep)
    assert [h.frozen for h in result.history] == [[FROZEN], [FROZEN], []]
    for epoch in (1, 2):  # frozen epochs: weights and batch-norm statistics held
        frozen = changed(states[epoch - 1], states[epoch], FROZEN)
        assert frozen and not any(frozen.values()), frozen
        others = changed(states[epoch - 1], states[epoch], "final")
        assert others and all(others.values())
    unfrozen = changed(states[2], states[3], FROZEN)
    assert any(v for k, v in unfrozen.items() if k.endswith("weight"))


def test_kept_layers_train_at_the_discounted_learning_rate(make_dataset, tmp_path):
    config = tiny_config(optim={"epochs": 1, "warmup_epochs": 0},
                         finetune={"head": ["final"], "lr_scale": 0.25})
    model = create_model(config.model, SHAPE, seed=0)
    groups = parameter_groups(model, config)
    head = {id(p) for n, p in model.named_parameters() if n.startswith("final.")}
    for group in groups:
        in_head = all(id(p) in head for p in group["params"])
        assert in_head or not any(id(p) in head for p in group["params"])
        assert group["lr"] == pytest.approx(config.optim.lr * (1.0 if in_head else 0.25))
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))

    run_fit(config, make_dataset, tmp_path)
    # after the run the schedule has decayed both groups by the same factor
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    lrs = {g["lr_scale"]: g["lr"] for g in state["optimizer"]["param_groups"]}
    assert lrs[0.25] == pytest.approx(0.25 * lrs[1.0])


def test_unknown_module_prefix_is_a_config_error(make_dataset, tmp_path):
    config = tiny_config(finetune={"freeze": [{"modules": ["encoder"], "epochs": 1}]})
    with pytest.raises(ConfigError, match="finetune.freeze names 'encoder'.*top-level "
                                          "modules are"):
        run_fit(config, make_dataset, tmp_path)


def test_freeze_config_parses_and_round_trips():
    config = tiny_config(finetune={"freeze": [{"modules": ["a", "b"], "epochs": 2},
                                              {"modules": "c", "epochs": 4}],
                                   "init": "models:/triage@champion"})
    assert config.finetune.freeze == (FreezeStage(("a", "b"), 2), FreezeStage(("c",), 4))
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert frozen_prefixes(config.finetune, 3) == ("c",)
    assert config.flat()["finetune.init"] == "models:/triage@champion"
    with pytest.raises(ConfigError, match="freeze.epochs"):
        tiny_config(finetune={"freeze": [{"modules": ["a"], "epochs": 0}]})
    with pytest.raises(ConfigError, match="lr_scale"):
        FinetuneConfig(lr_scale=0)


def _bundle(tmp_path, model, config):
    from triage.registry.bundle import ModelBundle, save_bundle

    bundle = ModelBundle(
        model_config={"name": config.model.name, "options": dict(config.model.options)},
        state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()},
        in_shape=SHAPE, preprocess_config={}, ingest_config={}, train_config={},
        appearances={}, device_stats={}, train_devices=["acme"])
    return save_bundle(bundle, tmp_path / "bundle")


def test_init_loads_the_bundle_weights(tmp_path):
    config = tiny_config()
    source = create_model(config.model, SHAPE, seed=11)
    folder = _bundle(tmp_path, source, config)
    target = create_model(config.model, SHAPE, seed=12)
    options = {"name": config.model.name, "options": dict(config.model.options)}
    params = load_init(target, str(folder), model_config=options, in_shape=SHAPE)
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(),
                                                  target.state_dict().values(), strict=True))
    assert params["finetune.init_train_devices"] == "acme"
    with pytest.raises(ConfigError, match="this run trains"):
        load_init(target, str(folder), model_config={"name": "resnet10", "options": {}},
                  in_shape=SHAPE)
    with pytest.raises(ConfigError, match="was trained on"):
        load_init(target, str(folder), model_config=options, in_shape=(24, 24, 8))


def test_init_refuses_weights_changed_after_logging(tmp_path):
    from triage.registry.bundle import BundleDigestError, bundle_digest, load_bundle

    config = tiny_config()
    folder = _bundle(tmp_path, create_model(config.model, SHAPE, seed=1), config)
    digest = bundle_digest(folder)
    weights = next(folder.glob("*.pt"))
    weights.write_bytes(weights.read_bytes() + b"\0")
    with pytest.raises(BundleDigestError):
        load_bundle(folder, expected_digest=digest)


def test_cli_init_sets_finetune_init():
    from triage.cli.train import _config

    config = _config(None, None, None, None, "models:/triage@champion")
    assert config.finetune.init == "models:/triage@champion"
    assert _config(None, None, None, None).finetune.init is None
