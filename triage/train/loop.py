"""The training loop: seeded, device-balanced epochs, AdamW with warm-up + cosine, resumable.

`fit` trains a model on a `CachedVolumeDataset`-like training set (``len``, ``[i]`` items
``{"image", "label", "device", ...}``, ``labels()``, ``device_groups()``, ``set_epoch``),
validates after every epoch, and checkpoints to ``out_dir/checkpoint.pt``. Every epoch's
randomness (sampler draw, perturbations, dropout, worker seeds) is a function of
``(runtime.seed, epoch)`` only, so a run resumed from a checkpoint ends with exactly the
weights an uninterrupted run ends with (bit-identical on the CPU). See docs/training.md.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader

from triage.errors import ConfigError
from triage.model.device import select_device
from triage.train.checkpoint import (
    CHECKPOINT_NAME,
    load_checkpoint,
    restore_rng_state,
    rng_state,
    save_checkpoint,
)
from triage.train.config import TrainConfig
from triage.train.finetune import apply_freeze, check_prefixes, frozen_prefixes, parameter_groups
from triage.train.losses import create_loss, effective_class_counts
from triage.train.objective import LossTerm, StepOutputs, build_terms
from triage.train.sampling import make_sampler
from triage.train.schedule import create_scheduler

log = logging.getLogger(__name__)

NOT_RENDERED = "none"  # EpochLog.rendered key of samples shown with their own appearance


@dataclass
class EpochLog:
    """What one epoch did.

    Attributes:
        epoch: 1-based epoch number.
        lr: learning rate at the epoch's last step.
        seconds: wall time of the epoch, validation included.
        train_loss: mean training loss (the configured loss, on the transformed samples).
        train_consistency: mean consistency term between the two views (0.0 when
            ``consistency.weight`` is 0).
        val: validation ``loss`` (the training loss), ``nll`` (unweighted cross-entropy),
            ``auroc`` (NaN with one class) and ``accuracy`` at ``eval.threshold``; empty
            without a validation set.
        rendered: training samples per device appearance they were rendered with
            (``"none"``: not re-rendered); empty when the training set has no transform.
        terms: mean of every loss term of the objective (`triage.train.objective`), by name.
        augment: layered-augmentation operators applied this epoch, by ``tier.operator``
            (both views counted); empty without layered augmentation.
        model: figures the network reports about itself after the epoch (its modules'
            ``tracked_metrics()``, e.g. the multi-scale fusion weights).
        frozen: module prefixes frozen during the epoch (`finetune.freeze`).
    """

    epoch: int
    lr: float
    seconds: float
    train_loss: float
    train_consistency: float
    val: dict[str, float] = field(default_factory=dict)
    rendered: dict[str, int] = field(default_factory=dict)
    terms: dict[str, float] = field(default_factory=dict)
    augment: dict[str, int] = field(default_factory=dict)
    model: dict[str, float] = field(default_factory=dict)
    frozen: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpochLog:
        return cls(**data)


@dataclass
class FitResult:
    """The outcome of `fit`.

    Attributes:
        history: one `EpochLog` per epoch, those before a resume included.
        epochs_run: epochs trained by this call.
        resumed_from: completed epochs found in the checkpoint, or None for a fresh run.
        checkpoint: the final checkpoint file.
    """

    history: list[EpochLog]
    epochs_run: int
    resumed_from: int | None
    checkpoint: Path


def fit(model: nn.Module, train_ds: Any, val_ds: Any | None, config: TrainConfig,
        out_dir: Path | str, *, class_counts: Sequence[int],
        on_epoch: Callable[[EpochLog], None] | None = None,
        progress: bool = True, teacher: nn.Module | None = None) -> FitResult:
    """Train `model` on `train_ds` for ``config.optim.epochs`` epochs, or resume.

    Args:
        model: a freshly created network (`triage.model.create_model`); trained in place
            and left on the training device in train mode.
        train_ds: training set; when ``consistency.weight > 0`` set ``return_clean``
            (``consistency.views: clean``) or ``second_view`` (``augmented``) on it.
        val_ds: validation set (no transform) or None.
        config: the resolved training config.
        out_dir: run folder; holds ``checkpoint.pt``. When a checkpoint of the same
            config fingerprint is there, training continues after its last epoch.
        class_counts: ``(negatives, positives)`` in the training split (for
            ``loss.alpha: prevalence``; balanced first when sampling is class-aware).
        on_epoch: called with each new `EpochLog`, after that epoch's checkpoint.
        progress: show a rich progress bar (only on a terminal).
        teacher: a trained network to distil from (`triage.train.distill`, weights and
            temperature from ``config.distill``); None: the configured loss alone.

    Returns:
        A `FitResult`.

    Raises:
        ConfigError: a checkpoint in `out_dir` from a different config, an unavailable
            device, a consistency weight without its second view, a `finetune` prefix
            that names no module, or a bad loss setting.
        CheckpointError: the checkpoint in `out_dir` cannot be read.
    """
    out_dir = Path(out_dir)
    ckpt_path = out_dir / CHECKPOINT_NAME
    seed = config.runtime.seed
    device = select_device(config.runtime.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    _seed_everything(seed)

    second_key = _check_second_view(config, train_ds)
    labels = np.asarray(train_ds.labels())
    groups = list(train_ds.device_groups())
    counts = effective_class_counts(class_counts, config.sampling.class_aware)
    criterion = create_loss(config.loss, counts).to(device)
    if teacher is not None:
        from triage.train.distill import DistillationLoss

        criterion = DistillationLoss(teacher, criterion, config.distill).to(device)
    terms = build_terms(criterion, config.consistency)
    nll = nn.CrossEntropyLoss().to(device)

    model.to(device)
    for stage in config.finetune.freeze:
        check_prefixes(model, stage.modules, "finetune.freeze")
    optimizer = torch.optim.AdamW(parameter_groups(model, config), lr=config.optim.lr)
    steps = _steps_per_epoch(config, len(labels))
    scheduler = create_scheduler(optimizer, config.optim, steps)

    averaged = _averaged_model(model, config)
    history: list[EpochLog] = []
    start = 0
    resumed_from = None
    if ckpt_path.exists():
        start, history = _resume(ckpt_path, config, model, optimizer, scheduler, averaged)
        resumed_from = start
        log.info("Resuming %s after epoch %d of %d.", out_dir, start, config.optim.epochs)

    device_names = list(getattr(train_ds, "devices", []))
    bar = _Progress(enabled=progress, total=(config.optim.epochs - start) * steps)
    epochs_run = 0
    with bar:
        for epoch in range(start, config.optim.epochs):
            began = time.perf_counter()
            _seed_epoch(seed, epoch)
            train_ds.set_epoch(epoch)
            loader = _train_loader(train_ds, labels, groups, config, epoch, device)
            model.train()
            frozen = frozen_prefixes(config.finetune, epoch)
            apply_freeze(model, frozen)
            totals: Counter[str] = Counter()
            steps = 0
            rendered: Counter[int] = Counter()
            operators = None
            averaging = (averaged if averaged is not None and epoch
                         >= config.average.first_epoch(config.optim.epochs) else None)
            for batch in loader:
                values = _train_step(model, batch, terms, optimizer, scheduler,
                                     second_key, config.optim.grad_clip, device)
                if averaging is not None:
                    averaging.update_parameters(model)
                totals.update(values)
                steps += 1
                if "rendered_as" in batch:
                    rendered.update(int(r) for r in batch["rendered_as"])
                if "operators" in batch:
                    counts = batch["operators"].sum(0)
                    operators = counts if operators is None else operators + counts
                bar.advance(f"epoch {epoch + 1}/{config.optim.epochs}  loss "
                            f"{values['loss']:.4f}  lr {optimizer.param_groups[0]['lr']:.2e}")
            n_steps = max(steps, 1)
            # Once averaging has begun, the averaged weights are what the run will ship:
            # validate those.
            shipped = averaging.module if averaging is not None else model
            val = {}
            if val_ds is not None and len(val_ds):
                val = evaluate(shipped, val_ds, criterion=criterion, nll=nll, device=device,
                               batch_size=config.optim.batch_size,
                               threshold=config.eval.threshold)
            entry = EpochLog(
                epoch=epoch + 1, lr=float(optimizer.param_groups[0]["lr"]),
                seconds=time.perf_counter() - began,
                train_loss=totals["loss"] / n_steps,
                train_consistency=totals["consistency"] / n_steps, val=val,
                rendered=_rendered_names(rendered, device_names) if rendered else {},
                terms={term.name: totals[term.name] / n_steps for term in terms},
                augment=_operator_names(operators), model=tracked_metrics(shipped),
                frozen=list(frozen))
            history.append(entry)
            epochs_run += 1
            bar.epoch_done(entry)
            last = epoch + 1 == config.optim.epochs
            if last or (epoch + 1) % config.runtime.checkpoint_every == 0:
                _save(ckpt_path, config, model, optimizer, scheduler, epoch + 1, history,
                      averaged)
            if on_epoch is not None:
                on_epoch(entry)
    if averaged is not None and int(averaged.n_averaged):
        model.load_state_dict(averaged.module.state_dict())
    return FitResult(history=history, epochs_run=epochs_run, resumed_from=resumed_from,
                     checkpoint=ckpt_path)


def predict_logits(model: nn.Module, dataset: Any, *, device: torch.device | str = "cpu",
                   batch_size: int = 8) -> np.ndarray:
    """Logits ``(N, 2)`` float32 for every item of `dataset`, in dataset order.

    The model runs in eval mode without gradients; its previous mode is restored.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    out: list[np.ndarray] = []
    try:
        with torch.no_grad():
            for batch in _eval_loader(dataset, batch_size):
                out.append(model(batch["image"].to(device)).float().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.float32)


def evaluate(model: nn.Module, dataset: Any, *, criterion: nn.Module, nll: nn.Module,
             device: torch.device, batch_size: int, threshold: float = 0.5
             ) -> dict[str, float]:
    """Validation ``loss``, ``nll``, ``auroc`` and ``accuracy`` of `model` on `dataset`."""
    from sklearn.metrics import roc_auc_score

    logits = torch.from_numpy(predict_logits(model, dataset, device=device,
                                             batch_size=batch_size)).to(device)
    labels = torch.as_tensor(np.asarray(dataset.labels()), dtype=torch.long, device=device)
    with torch.no_grad():
        loss = float(criterion(logits, labels))
        cross_entropy = float(nll(logits, labels))
    prob = torch.softmax(logits, 1)[:, 1].cpu().numpy()
    y = labels.cpu().numpy()
    auroc = float(roc_auc_score(y, prob)) if len(np.unique(y)) == 2 else math.nan
    accuracy = float(np.mean((prob >= threshold) == (y == 1)))
    return {"loss": loss, "nll": cross_entropy, "auroc": auroc, "accuracy": accuracy}


# -- one step ----------------------------------------------------------------------------

def tracked_metrics(model: nn.Module) -> dict[str, float]:
    """What the network's modules report about themselves (``tracked_metrics()``), e.g.
    the learned multi-scale fusion weights; keys are prefixed with the module's name."""
    out: dict[str, float] = {}
    for name, module in model.named_modules():
        report = getattr(module, "tracked_metrics", None)
        if callable(report):
            for key, value in report().items():
                out[f"{name}.{key}" if name else key] = float(value)
    return out


def _check_second_view(config: TrainConfig, train_ds: Any) -> str | None:
    """The batch key of the consistency term's second view, or None without the term."""
    if config.consistency.weight <= 0:
        return None
    if config.consistency.views == "clean":
        if not getattr(train_ds, "return_clean", False):
            raise ConfigError("consistency.weight > 0 with views 'clean' needs the clean "
                              "volumes: create the training dataset with return_clean=True.")
        return "clean"
    if not getattr(train_ds, "second_view", False):
        raise ConfigError("consistency.weight > 0 with views 'augmented' needs a second "
                          "augmented view: create the training dataset with "
                          "second_view=True and a transform.")
    return "view2"


def _train_step(model: nn.Module, batch: dict[str, Any], terms: list[LossTerm],
                optimizer: torch.optim.Optimizer, scheduler: Any, second_key: str | None,
                grad_clip: float, device: torch.device) -> dict[str, float]:
    image = batch["image"].to(device, non_blocking=True)
    target = torch.as_tensor(batch["label"], dtype=torch.long).to(device)
    second = None
    if second_key is not None and any(t.needs_second_view for t in terms):
        # One forward pass over both views together (AugMix-style), so batch-norm
        # statistics see both.
        other = batch[second_key].to(device, non_blocking=True)
        logits, second = model(torch.cat([image, other])).chunk(2)
    else:
        logits = model(image)
    outputs = StepOutputs(image, logits, target, second, batch)
    values = {term.name: term(outputs) for term in terms}
    total = sum(term.weight * values[term.name] for term in terms)
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    scheduler.step()
    return {name: float(value.detach()) for name, value in values.items()}


# -- set-up helpers ----------------------------------------------------------------------

def _steps_per_epoch(config: TrainConfig, n_train: int) -> int:
    size = config.sampling.epoch_size or n_train
    return max(size // config.optim.batch_size, 1)


def _epoch_seed(seed: int, epoch: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, stream]).generate_state(1)[0])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _seed_epoch(seed: int, epoch: int) -> None:
    # Global generators (dropout, anything a network draws) restart from (seed, epoch):
    # a resumed epoch sees the same numbers whatever ran before it.
    value = _epoch_seed(seed, epoch, 1)
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker with base_seed + worker_id; derive NumPy's and Python's.
    value = torch.initial_seed() % 2**32
    np.random.seed(value)
    random.seed(value)


def _train_loader(train_ds: Any, labels: np.ndarray, groups: list[str],
                  config: TrainConfig, epoch: int, device: torch.device) -> DataLoader:
    sampler = make_sampler(labels, groups, config.sampling, seed=config.runtime.seed,
                           epoch=epoch)
    generator = torch.Generator().manual_seed(_epoch_seed(config.runtime.seed, epoch, 2))
    batch_size = config.optim.batch_size
    workers = config.runtime.num_workers
    # Drop a ragged last batch: a batch of one breaks batch norm on small feature maps.
    return DataLoader(train_ds, batch_size=batch_size, sampler=sampler,
                      drop_last=len(sampler) >= batch_size, num_workers=workers,
                      worker_init_fn=_seed_worker if workers else None, generator=generator,
                      pin_memory=device.type == "cuda")


def _eval_loader(dataset: Any, batch_size: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0,
                      generator=torch.Generator().manual_seed(0))


def _operator_names(counts: torch.Tensor | None) -> dict[str, int]:
    from triage.train.layered import COUNT_NAMES

    if counts is None:
        return {}
    return {name: int(n) for name, n in zip(COUNT_NAMES, counts.tolist(), strict=True)}


def _rendered_names(counts: Counter[int], names: list[str]) -> dict[str, int]:
    out = {name: counts.get(i, 0) for i, name in enumerate(names)}
    out[NOT_RENDERED] = counts.get(-1, 0)
    return out


# -- checkpoints ---------------------------------------------------------------------------

def _averaged_model(model: nn.Module, config: TrainConfig) -> AveragedModel | None:
    """The running weight average of `config.average` (None when off), buffers included:
    batch-norm statistics are averaged with the weights, so no extra pass over the
    training set is needed to refresh them."""
    if not config.average.enabled:
        return None
    return AveragedModel(model, use_buffers=True)


def _save(path: Path, config: TrainConfig, model: nn.Module, optimizer: Any, scheduler: Any,
          epoch: int, history: list[EpochLog], averaged: AveragedModel | None = None
          ) -> None:
    extra = {}
    if averaged is not None:
        extra["average"] = {k: v.detach().cpu() for k, v in averaged.state_dict().items()}
    save_checkpoint(path, {
        "epoch": epoch,
        "fingerprint": config.fingerprint(),
        "config": config.to_dict(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "history": [dataclasses.asdict(h) for h in history],
        "rng": rng_state(),
        **extra,
    })


def _resume(path: Path, config: TrainConfig, model: nn.Module, optimizer: Any,
            scheduler: Any, averaged: AveragedModel | None = None
            ) -> tuple[int, list[EpochLog]]:
    state = load_checkpoint(path)
    if state.get("fingerprint") != config.fingerprint():
        raise ConfigError(
            f"{path} was written by a different training config (fingerprint "
            f"{state.get('fingerprint')}, this config {config.fingerprint()}); resuming "
            f"would mix two runs. Use a fresh output folder, or delete the checkpoint to "
            f"start over.")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if averaged is not None:
        averaged.load_state_dict(state["average"])
    restore_rng_state(state["rng"])
    return int(state["epoch"]), [EpochLog.from_dict(h) for h in state["history"]]


# -- progress ------------------------------------------------------------------------------

class _Progress:
    """A rich progress bar over all training steps; a no-op when off or not on a TTY."""

    def __init__(self, *, enabled: bool, total: int) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.total = total
        self._bar: Any = None
        self._task: Any = None
        self._val = ""

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(),
                                 TimeRemainingColumn(), console=Console(stderr=True))
            self._bar.__enter__()
            self._task = self._bar.add_task("training", total=self.total)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def advance(self, text: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=1, description=text + self._val)

    def epoch_done(self, entry: EpochLog) -> None:
        if self._bar is not None and entry.val:
            self._val = "  | val " + " ".join(f"{k} {v:.3f}" for k, v in entry.val.items())
            self._bar.console.print(f"epoch {entry.epoch}: train loss "
                                    f"{entry.train_loss:.4f}{self._val}  "
                                    f"({entry.seconds:.1f} s)")
