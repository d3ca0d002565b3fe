"""`TrainConfig`: every setting that decides what a training run produces, typed and validated.

The YAML (``triage/configs/train/*.yaml``) has one optional section per dataclass below; unknown
sections and keys are rejected with a suggestion. `TrainConfig.to_dict` is the fully
resolved config that MLflow records as run parameters and the model bundle keeps.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from triage.configs import config_path
from triage.errors import ConfigError
from triage.model.config import DEVICES, ModelConfig
from triage.registry.experiment import check_experiment_name
from triage.settings import check_keys, dataclass_from_mapping, load_yaml, require_finite

DEFAULT_CONFIG = config_path("train")
LOSSES = ("focal", "ce")
# The layered-augmentation operator pool, in the order the operators run (triage.train.layered).
OPERATORS = ("flip", "rotate", "elastic", "intensity", "bias_field", "blur", "noise")


def _require(ok: bool, section: str, name: str, value: Any, expected: str) -> None:
    if not ok:
        raise ConfigError(f"Train option '{section}.{name}' is {value!r}; expected {expected}.")


@dataclass(frozen=True)
class LossConfig:
    """The training loss on two-class logits.

    Attributes:
        name: ``focal`` (`monai.losses.FocalLoss`) or ``ce`` (cross-entropy, the baseline).
        gamma: focal-loss focusing parameter (0 makes focal loss a weighted cross-entropy).
        alpha: per-class weights: ``prevalence`` (inverse class frequency in the training
            split, normalized to sum to 1), ``none``, or two numbers (negative, positive).
    """

    name: str = "focal"
    gamma: float = 2.0
    alpha: str | tuple[float, float] = "prevalence"

    def __post_init__(self) -> None:
        _require(self.name in LOSSES, "loss", "name", self.name, f"one of {', '.join(LOSSES)}")
        _require(isinstance(self.gamma, int | float) and 0 <= self.gamma <= 10, "loss", "gamma",
                 self.gamma, "a number in [0, 10]")
        if isinstance(self.alpha, str):
            _require(self.alpha in ("prevalence", "none"), "loss", "alpha", self.alpha,
                     "'prevalence', 'none' or two weights [negative, positive]")
        else:
            ok = (len(self.alpha) == 2 and all(isinstance(a, int | float) and a >= 0
                                               for a in self.alpha) and sum(self.alpha) > 0)
            _require(ok, "loss", "alpha", self.alpha, "two non-negative weights, not both 0")
            object.__setattr__(self, "alpha", tuple(float(a) for a in self.alpha))


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with a cosine learning-rate schedule after a linear warm-up.

    Attributes:
        epochs: passes over ``sampling.epoch_size`` samples.
        batch_size: samples per step.
        lr: peak learning rate (reached at the end of the warm-up).
        weight_decay: AdamW decoupled weight decay.
        warmup_epochs: linear warm-up from ``lr * warmup_start`` (may be fractional).
        warmup_start: warm-up start as a fraction of ``lr``.
        min_lr_ratio: the cosine decays to ``lr * min_lr_ratio``.
        grad_clip: max gradient norm (0 disables clipping).
    """

    epochs: int = 12
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-2
    warmup_epochs: float = 1.0
    warmup_start: float = 0.1
    min_lr_ratio: float = 0.01
    grad_clip: float = 5.0

    def __post_init__(self) -> None:
        _require(isinstance(self.epochs, int) and self.epochs >= 1, "optim", "epochs",
                 self.epochs, "a positive integer")
        _require(isinstance(self.batch_size, int) and self.batch_size >= 1, "optim",
                 "batch_size", self.batch_size, "a positive integer")
        _require(0 < self.lr < 1, "optim", "lr", self.lr, "a number in (0, 1)")
        _require(self.weight_decay >= 0, "optim", "weight_decay", self.weight_decay, ">= 0")
        _require(0 <= self.warmup_epochs <= self.epochs, "optim", "warmup_epochs",
                 self.warmup_epochs, f"a number in [0, epochs={self.epochs}]")
        _require(0 < self.warmup_start <= 1, "optim", "warmup_start", self.warmup_start,
                 "a fraction in (0, 1]")
        _require(0 <= self.min_lr_ratio <= 1, "optim", "min_lr_ratio", self.min_lr_ratio,
                 "a fraction in [0, 1]")
        _require(self.grad_clip >= 0, "optim", "grad_clip", self.grad_clip, ">= 0")


@dataclass(frozen=True)
class SamplingConfig:
    """Which samples make up an epoch.

    Attributes:
        class_aware: draw positives and negatives equally often.
        device_balanced: draw every training device group equally often (within a class
            when ``class_aware``).
        epoch_size: samples per epoch; 0 = the size of the training split.
    """

    class_aware: bool = True
    device_balanced: bool = True
    epoch_size: int = 0

    def __post_init__(self) -> None:
        _require(isinstance(self.epoch_size, int) and self.epoch_size >= 0, "sampling",
                 "epoch_size", self.epoch_size, "an integer >= 0")


@dataclass(frozen=True)
class PerturbConfig:
    """Device-grouped domain perturbation (docs/perturbation.md).

    Attributes:
        enabled: apply it during training (never at validation, test or inference).
        p_transfer: probability that a sample from device A is re-rendered with the
            appearance of another training device B (drawn uniformly among the others).
        intensity: map A's intensity landmarks onto B's (piecewise linear).
        noise: add noise to raise A's noise level to B's (never below A's own).
        resolution: blur towards B's effective resolution when B is blurrier.
        p_bias_field: probability of a random smooth bias field (MONAI RandBiasField).
        bias_coeff: bias field coefficient range upper bound.
        p_gamma: probability of a random gamma (MONAI RandAdjustContrast).
        gamma_range: (low, high) gamma.
        p_noise: probability of extra Gaussian noise (MONAI RandGaussianNoise).
        noise_std: upper bound of that noise's standard deviation (normalized units).
        p_smooth: probability of Gaussian smoothing (MONAI RandGaussianSmooth).
        smooth_sigma: (low, high) smoothing sigma in voxels.

    The consistency term between two views moved to its own section, `ConsistencyConfig`.
    """

    enabled: bool = True
    p_transfer: float = 0.5
    intensity: bool = True
    noise: bool = True
    resolution: bool = True
    p_bias_field: float = 0.2
    bias_coeff: float = 0.3
    p_gamma: float = 0.2
    gamma_range: tuple[float, float] = (0.8, 1.25)
    p_noise: float = 0.5
    noise_std: float = 0.08
    p_smooth: float = 0.1
    smooth_sigma: tuple[float, float] = (0.3, 1.0)

    def __post_init__(self) -> None:
        for name in ("p_transfer", "p_bias_field", "p_gamma", "p_noise", "p_smooth"):
            value = getattr(self, name)
            _require(isinstance(value, int | float) and 0 <= value <= 1, "perturb", name,
                     value, "a probability in [0, 1]")
        for name in ("gamma_range", "smooth_sigma"):
            value = tuple(float(v) for v in getattr(self, name))
            _require(len(value) == 2 and 0 < value[0] <= value[1], "perturb", name, value,
                     "(low, high) with 0 < low <= high")
            object.__setattr__(self, name, value)
        _require(self.bias_coeff >= 0, "perturb", "bias_coeff", self.bias_coeff, ">= 0")
        _require(self.noise_std >= 0, "perturb", "noise_std", self.noise_std, ">= 0")


@dataclass(frozen=True)
class AugmentConfig:
    """Generic spatial / intensity augmentation of training samples (`triage.train.augment`),
    applied after the device perturbation; never at validation, test or inference.

    Attributes:
        enabled: apply it during training.
        p_flip: probability of flipping each axis in `flip_axes` (independently).
        flip_axes: axes (0 = x, 1 = y, 2 = z of the cached RAS volume) that may be flipped.
        max_shift: largest random integer shift per axis in voxels (not wrapped).
        fill: value of voxels uncovered by a shift (0 = the window floor, the padding).
        p_intensity: probability of an affine intensity jitter.
        intensity_scale: the jitter's gain lies in ``1 ± intensity_scale``.
        intensity_shift: the jitter's offset lies in ``± intensity_shift`` (normalized units).
    """

    enabled: bool = False
    p_flip: float = 0.5
    flip_axes: tuple[int, ...] = (0, 1, 2)
    max_shift: tuple[int, int, int] = (0, 0, 0)
    fill: float = 0.0
    p_intensity: float = 0.0
    intensity_scale: float = 0.1
    intensity_shift: float = 0.05

    def __post_init__(self) -> None:
        for name in ("p_flip", "p_intensity"):
            value = getattr(self, name)
            _require(isinstance(value, int | float) and 0 <= value <= 1, "augment", name,
                     value, "a probability in [0, 1]")
        axes = tuple(self.flip_axes)
        _require(all(isinstance(a, int) and a in (0, 1, 2) for a in axes)
                 and len(set(axes)) == len(axes), "augment", "flip_axes", self.flip_axes,
                 "distinct axes among 0, 1, 2")
        object.__setattr__(self, "flip_axes", axes)
        shift = tuple(self.max_shift)
        _require(len(shift) == 3 and all(isinstance(v, int) and v >= 0 for v in shift),
                 "augment", "max_shift", self.max_shift, "three integers >= 0")
        object.__setattr__(self, "max_shift", shift)
        for name in ("intensity_scale", "intensity_shift"):
            value = getattr(self, name)
            _require(isinstance(value, int | float) and 0 <= value < 1, "augment", name,
                     value, "a number in [0, 1)")


@dataclass(frozen=True)
class LayeredAugmentConfig:
    """Layered augmentation (`triage.train.layered`): a weak and a strong tier drawn from one
    fixed pool of MONAI operators, applied after the device perturbation and `augment`.

    Every sample gets the weak tier (each operator with its own probability); with
    probability `p_strong` it then also gets the strong tier. The pool, in the order the
    operators run: ``flip, rotate, elastic, intensity, bias_field, blur, noise``.

    Attributes:
        enabled: apply it during training (never at validation, test or inference).
        weak: operator -> probability in the weak tier (operators left out: 0).
        strong: operator -> probability in the strong tier.
        p_strong: probability that a sample also gets the strong tier.
        strong_scale: the strong tier's magnitudes are the weak ones times this.
        rotate_deg: largest in-plane rotation (degrees), weak tier.
        elastic_sigma: (low, high) smoothing of the elastic displacement field (voxels).
        elastic_magnitude: (low, high) standard deviation of the elastic displacement along
            each axis (voxels), weak tier; the strong tier's reaches `strong_scale` times it.
        intensity_scale: gain in ``1 ± intensity_scale`` (weak tier).
        intensity_shift: offset in ``± intensity_shift`` (normalized units, weak tier).
        bias_coeff: bias-field coefficient upper bound (weak tier).
        blur_sigma: (low, high) in-plane Gaussian sigma in voxels (weak tier).
        noise_std: Gaussian-noise standard deviation upper bound (weak tier).
    """

    enabled: bool = False
    weak: dict[str, float] = field(default_factory=lambda: {"flip": 0.5, "intensity": 0.3})
    strong: dict[str, float] = field(default_factory=lambda: {
        "rotate": 0.5, "elastic": 0.3, "intensity": 0.5, "bias_field": 0.3, "blur": 0.3,
        "noise": 0.5})
    p_strong: float = 0.5
    strong_scale: float = 2.0
    rotate_deg: float = 5.0
    elastic_sigma: tuple[float, float] = (5.0, 7.0)
    elastic_magnitude: tuple[float, float] = (0.0, 0.5)
    intensity_scale: float = 0.05
    intensity_shift: float = 0.03
    bias_coeff: float = 0.15
    blur_sigma: tuple[float, float] = (0.2, 0.6)
    noise_std: float = 0.03

    def __post_init__(self) -> None:
        for tier in ("weak", "strong"):
            probs = getattr(self, tier)
            _require(isinstance(probs, dict), "layered", tier, probs,
                     "a mapping operator -> probability")
            unknown = sorted(set(probs) - set(OPERATORS))
            _require(not unknown, "layered", tier, unknown,
                     f"operators among {', '.join(OPERATORS)}")
            for name, p in probs.items():
                _require(isinstance(p, int | float) and 0 <= p <= 1, "layered",
                         f"{tier}.{name}", p, "a probability in [0, 1]")
            object.__setattr__(self, tier, {k: float(probs[k]) for k in OPERATORS
                                            if k in probs})
        _require(0 <= self.p_strong <= 1, "layered", "p_strong", self.p_strong,
                 "a probability in [0, 1]")
        _require(self.strong_scale >= 1, "layered", "strong_scale", self.strong_scale, ">= 1")
        for name in ("elastic_sigma", "elastic_magnitude", "blur_sigma"):
            value = tuple(float(v) for v in getattr(self, name))
            _require(len(value) == 2 and 0 <= value[0] <= value[1], "layered", name, value,
                     "(low, high) with 0 <= low <= high")
            object.__setattr__(self, name, value)
        for name in ("rotate_deg", "intensity_scale", "intensity_shift", "bias_coeff",
                     "noise_std"):
            value = getattr(self, name)
            _require(isinstance(value, int | float) and value >= 0, "layered", name, value,
                     ">= 0")


CONSISTENCY_KINDS = ("kl", "mse")
CONSISTENCY_VIEWS = ("clean", "augmented")


@dataclass(frozen=True)
class ConsistencyConfig:
    """A consistency term between the predictions on two views of each training sample.

    Attributes:
        weight: weight of the term in the training objective (0: off, one forward pass).
        kind: ``kl`` (symmetric KL of the two softmax predictions) or ``mse`` (mean squared
            difference of the two positive-class probabilities).
        views: ``clean``: the transformed sample against the untransformed one (what the
            device perturbation used before); ``augmented``: two independent draws of the
            training transform (perturbation, `augment` and `layered`, whichever are on).
    """

    weight: float = 0.0
    kind: str = "kl"
    views: str = "clean"

    def __post_init__(self) -> None:
        _require(isinstance(self.weight, int | float) and self.weight >= 0, "consistency",
                 "weight", self.weight, ">= 0")
        _require(self.kind in CONSISTENCY_KINDS, "consistency", "kind", self.kind,
                 f"one of {', '.join(CONSISTENCY_KINDS)}")
        _require(self.views in CONSISTENCY_VIEWS, "consistency", "views", self.views,
                 f"one of {', '.join(CONSISTENCY_VIEWS)}")


@dataclass(frozen=True)
class FreezeStage:
    """Parameters under `modules` (name prefixes, e.g. ``features``) stay frozen for the
    first `epochs` epochs of the run."""

    modules: tuple[str, ...]
    epochs: int

    def __post_init__(self) -> None:
        modules = (self.modules,) if isinstance(self.modules, str) else tuple(self.modules)
        _require(bool(modules) and all(isinstance(m, str) and m for m in modules), "finetune",
                 "freeze.modules", self.modules, "a non-empty list of module name prefixes")
        _require(isinstance(self.epochs, int) and self.epochs >= 1, "finetune",
                 "freeze.epochs", self.epochs, "a positive integer")
        object.__setattr__(self, "modules", modules)


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning from a trained model (`triage.train.finetune`).

    Attributes:
        init: the model whose weights start the run: ``models:/NAME@alias``,
            ``models:/<id>``, ``runs:/<run_id>/model`` or a local bundle folder (loaded
            with `load_bundle_from_uri`, which checks the recorded digest); None trains
            from scratch. ``triage train --init URI`` sets it.
        freeze: staged unfreezing: each stage keeps its modules frozen (no gradient, no
            weight decay, batch-norm statistics held) for its first `epochs` epochs.
        head: parameter-name prefixes trained at the full ``optim.lr``; every other
            parameter (the layers kept from `init`) trains at ``optim.lr * lr_scale``.
            Empty: every parameter at the full rate.
        lr_scale: learning-rate factor of the kept layers (1 = no discount).
    """

    init: str | None = None
    freeze: tuple[FreezeStage, ...] = ()
    head: tuple[str, ...] = ()
    lr_scale: float = 0.1

    def __post_init__(self) -> None:
        _require(self.init is None or (isinstance(self.init, str) and bool(self.init)),
                 "finetune", "init", self.init, "a model URI or bundle folder, or null")
        stages = []
        for stage in self.freeze:
            if isinstance(stage, FreezeStage):
                stages.append(stage)
                continue
            _require(isinstance(stage, dict) and set(stage) == {"modules", "epochs"},
                     "finetune", "freeze", stage, "entries {modules: [...], epochs: N}")
            stages.append(FreezeStage(**stage))
        object.__setattr__(self, "freeze", tuple(stages))
        head = (self.head,) if isinstance(self.head, str) else tuple(self.head)
        _require(all(isinstance(h, str) and h for h in head), "finetune", "head", self.head,
                 "a list of parameter-name prefixes")
        object.__setattr__(self, "head", head)
        _require(isinstance(self.lr_scale, int | float) and 0 < self.lr_scale <= 1,
                 "finetune", "lr_scale", self.lr_scale, "a number in (0, 1]")


@dataclass(frozen=True)
class AverageConfig:
    """Weight averaging (SWA, `torch.optim.swa_utils.AveragedModel`): the trained network is
    the running mean of the weights after every optimizer step of the last epochs, not the
    weights of the last step. An average over the tail of training sits in a flatter region
    of the loss than any single step, which is what carries over to a domain the model has
    not seen (Izmailov et al. 2018; Cha et al. 2021, SWAD) and makes runs of different seeds
    agree more. Batch-norm statistics are averaged with the weights.

    Attributes:
        enabled: average (off: the last step's weights, as before).
        start: fraction of ``optim.epochs`` trained before averaging begins; the first
            averaged epoch is ``floor(start * epochs) + 1`` (0.5 of 10 epochs: epochs 6-10).
    """

    enabled: bool = False
    start: float = 0.5

    def __post_init__(self) -> None:
        _require(isinstance(self.enabled, bool), "average", "enabled", self.enabled,
                 "true or false")
        _require(isinstance(self.start, int | float) and 0 <= self.start < 1, "average",
                 "start", self.start, "a fraction in [0, 1)")

    def first_epoch(self, epochs: int) -> int:
        """0-based index of the first averaged epoch of a run of `epochs` epochs."""
        return min(int(self.start * epochs), epochs - 1)


@dataclass(frozen=True)
class EvalConfig:
    """How predictions are scored.

    Attributes:
        threshold: operating point on the positive-class probability for accuracy,
            F1, sensitivity and specificity.
        ece_bins: equal-width bins of the expected calibration error.
    """

    threshold: float = 0.5
    ece_bins: int = 15

    def __post_init__(self) -> None:
        _require(0 < self.threshold < 1, "eval", "threshold", self.threshold, "in (0, 1)")
        _require(isinstance(self.ece_bins, int) and self.ece_bins >= 2, "eval", "ece_bins",
                 self.ece_bins, "an integer >= 2")


@dataclass(frozen=True)
class RuntimeConfig:
    """Where and how the run executes (does not change the result, except `seed`).

    Attributes:
        seed: seeds Python, NumPy and torch; the same seed gives the same model on the
            same hardware.
        device: ``auto`` (CUDA, then MPS, then CPU), or a torch device type.
        num_workers: DataLoader worker processes (0 = in the training process).
        preload: keep every cached volume in memory (fast; ~1.7 MiB per 96x96x48 volume).
        checkpoint_every: epochs between checkpoints (the last epoch is always saved).
        experiment: MLflow experiment name.
    """

    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    preload: bool = True
    checkpoint_every: int = 1
    experiment: str = "triage"

    def __post_init__(self) -> None:
        _require(isinstance(self.seed, int) and self.seed >= 0, "runtime", "seed", self.seed,
                 "an integer >= 0")
        _require(self.device in DEVICES, "runtime", "device", self.device,
                 f"one of {', '.join(DEVICES)}")
        _require(isinstance(self.num_workers, int) and self.num_workers >= 0, "runtime",
                 "num_workers", self.num_workers, "an integer >= 0")
        _require(isinstance(self.checkpoint_every, int) and self.checkpoint_every >= 1,
                 "runtime", "checkpoint_every", self.checkpoint_every, "a positive integer")
        # MLflow would refuse a bad name only when the run is logged, after the training
        check_experiment_name(self.experiment, "Train option 'runtime.experiment'")


@dataclass(frozen=True)
class DistillConfig:
    """The ``distill`` section of the train config.

    Attributes:
        teacher: model URI or bundle folder of the teacher (``triage train --teacher``);
            empty: no distillation.
        alpha: weight of the soft (teacher) term, in [0, 1].
        temperature: softening temperature T > 0 of both distributions.
    """

    teacher: str = ""
    alpha: float = 0.7
    temperature: float = 4.0

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.alpha) <= 1.0:
            raise ConfigError(f"distill.alpha must lie in [0, 1], got {self.alpha}.")
        if not float(self.temperature) > 0:
            raise ConfigError(f"distill.temperature must be positive, got "
                              f"{self.temperature}.")


SECTIONS: dict[str, type] = {
    "model": ModelConfig, "loss": LossConfig, "optim": OptimConfig,
    "sampling": SamplingConfig, "perturb": PerturbConfig, "augment": AugmentConfig,
    "layered": LayeredAugmentConfig, "consistency": ConsistencyConfig,
    "finetune": FinetuneConfig, "average": AverageConfig, "eval": EvalConfig,
    "runtime": RuntimeConfig,
    "distill": DistillConfig,
}


@dataclass(frozen=True)
class TrainConfig:
    """The whole training configuration, one dataclass per YAML section."""

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    perturb: PerturbConfig = field(default_factory=PerturbConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    layered: LayeredAugmentConfig = field(default_factory=LayeredAugmentConfig)
    consistency: ConsistencyConfig = field(default_factory=ConsistencyConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    average: AverageConfig = field(default_factory=AverageConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    def __post_init__(self) -> None:
        for section in dataclasses.fields(self):
            require_finite(getattr(self, section.name), ConfigError)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, source: str = "the train config"
                  ) -> TrainConfig:
        """Build from a mapping of sections; missing sections take their defaults.

        Raises:
            ConfigError: unknown section or key (with a suggestion), or a bad value.
        """
        data = data or {}
        if "consistency_weight" in (data.get("perturb") or {}):
            raise ConfigError(f"{source}: perturb.consistency_weight moved to "
                              f"consistency.weight (with consistency.views: clean for the "
                              f"same clean-versus-perturbed term).")
        check_keys(data, list(SECTIONS), "section", source)
        sections = {}
        for name, section_cls in SECTIONS.items():
            raw = data.get(name)
            if name == "model" and raw is not None:
                raw = dict(raw)
                options = raw.get("options")  # keep lists inside options as lists
                built = dataclass_from_mapping(section_cls, {k: v for k, v in raw.items()
                                                             if k != "options"},
                                               what=f"{name} option", source=source)
                sections[name] = dataclasses.replace(built, options=dict(options or {}))
            else:
                sections[name] = dataclass_from_mapping(section_cls, raw,
                                                        what=f"{name} option", source=source)
        return cls(**sections)

    @classmethod
    def from_yaml(cls, path: Path | str | None = None) -> TrainConfig:
        """Load `path` (the shipped default when None)."""
        path = Path(path) if path is not None else DEFAULT_CONFIG
        return cls.from_dict(load_yaml(path, "train config"), source=str(path))

    def replace(self, *, source: str = "replace()", **sections: Any) -> TrainConfig:
        """A copy with some fields of some sections changed, e.g.
        ``config.replace(loss={"name": "ce"}, perturb={"enabled": False})``.

        Args:
            source: what the new values came from, named in errors (the command-line
                option, e.g. ``"--epochs"``).
            sections: section name -> the fields to change.

        Raises:
            ConfigError: an unknown section or key, or a bad value (naming `source`).
        """
        merged = self.to_dict()
        for name, values in sections.items():
            check_keys({name: None}, list(SECTIONS), "section", source)
            merged[name] = {**merged[name], **values}
        return TrainConfig.from_dict(merged, source=source)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready nested mapping (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def flat(self) -> dict[str, Any]:
        """``section.key: value`` pairs, e.g. for MLflow run parameters."""
        out: dict[str, Any] = {}
        for section, values in self.to_dict().items():
            for key, value in values.items():
                if isinstance(value, dict):
                    for sub, v in value.items():
                        out[f"{section}.{key}.{sub}"] = v
                else:
                    out[f"{section}.{key}"] = value
        return out

    def fingerprint(self) -> str:
        """sha256 (16 hex) of everything that can change the result: not the `runtime`
        fields that do not (device, workers, preload, checkpointing, experiment name), and
        of a switched-off section (``perturb``, ``augment``, ``layered``) only that it is
        off, so that a new default of a transform a run does not use leaves its resumable
        runs and stored benchmark rows valid. A switched-off ``average`` (a section added
        after such rows were stored) is left out altogether."""
        data = self.to_dict()
        data["runtime"] = {"seed": data["runtime"]["seed"]}
        for section in ("perturb", "augment", "layered"):
            if not data[section]["enabled"]:
                data[section] = {"enabled": False}
        if not data["average"]["enabled"]:
            del data["average"]
        text = json.dumps(data, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]
