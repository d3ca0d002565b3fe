"""A model variant: the parent's network as an ONNX graph (fp32 or int8) or channel-pruned
(`triage.export.prune`), recalibrated on its own scores.

A compressed network scores differently from its parent, so nothing calibrated on the
parent's scores carries over: the variant's temperature, certified routing thresholds and
score-drift reference are fitted again on the calibration split of the training export,
scored *by the variant* (`recalibrate_variant`), and its metrics are measured again. The
thresholds are certified under the rules the parent recorded (the same settings), so the
variant passes the same promotion gates as any challenger.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from triage.data.dataset import CACHE_DIR, Sample
from triage.errors import ConfigError
from triage.registry.bundle import ModelBundle

log = logging.getLogger(__name__)
#: Study draws for int8 calibration (from the training split) and timing batches.
QUANT_VOLUMES = 32


class Quantize(StrEnum):
    """Whether `make_variant` quantizes the graph: never, always, or where it is faster."""

    NONE = "none"
    INT8 = "int8"
    AUTO = "auto"


@dataclass(frozen=True)
class ExportData:
    """The studies of the training export a variant needs, by role.

    Attributes:
        ingest_dir: the `triage ingest` folder holding their cached volumes.
        calib: calibration split of the parent's training devices (refits temperature,
            thresholds and score reference).
        quantization: a seeded draw from the training split (int8 activation ranges).
        test: in-domain test split; held_out: studies of devices the parent never saw.
        train, val: the training and validation splits (fine-tuning a pruned network).
    """

    ingest_dir: Path
    calib: list[Sample]
    quantization: list[Sample]
    test: list[Sample] = field(default_factory=list)
    held_out: list[Sample] = field(default_factory=list)
    train: list[Sample] = field(default_factory=list)
    val: list[Sample] = field(default_factory=list)


@dataclass(frozen=True)
class Variant:
    """What `make_variant` produced.

    Attributes:
        bundle: the variant (runtime ``onnx``, its own temperature and thresholds).
        method: ``onnx``, ``onnx-int8`` or ``prune``.
        forward_ms: measured forward milliseconds per volume by engine (``torch``,
            ``onnx``, ``onnx-int8``, ``pruned`` where measured) on this machine.
        parent_temperature: the parent's temperature (the variant's is in the bundle).
        tags: further lineage tags of the method (e.g. ``lineage.ratio``).
    """

    bundle: ModelBundle
    method: str
    forward_ms: dict[str, float]
    parent_temperature: float
    tags: dict[str, str] = field(default_factory=dict)


def export_data(bundle: ModelBundle, manifest_path: Path | str, ingest_dir: Path | str, *,
                n_quantization: int = QUANT_VOLUMES, seed: int = 0) -> ExportData:
    """The calibration, quantization and evaluation studies of the parent's training export.

    Raises:
        ConfigError: the export has no calibration split for the parent's devices.
    """
    from triage.data.dataset import resolve_samples
    from triage.data.manifest import read_manifest

    resolved = resolve_samples(read_manifest(manifest_path), ingest_dir)
    seen = set(bundle.train_devices)
    inside = [s for s in resolved.samples if s.device_group in seen]
    calib = [s for s in inside if s.split == "calib"]
    if not calib:
        raise ConfigError(f"The manifest {manifest_path} has no calibration-split studies of "
                          f"the model's devices ({', '.join(sorted(seen))}) with a volume in "
                          f"{ingest_dir}: a variant is recalibrated on its own scores and "
                          f"needs them; pass the export the model was trained on.")
    train = [s for s in inside if s.split == "train"]
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(len(train), size=min(n_quantization, len(train)), replace=False))
    return ExportData(Path(ingest_dir), calib, [train[i] for i in pick],
                      [s for s in inside if s.split == "test"],
                      [s for s in resolved.samples if s.device_group not in seen],
                      train, [s for s in inside if s.split == "val"])


def load_volumes(data: ExportData, samples: Sequence[Sample]) -> list[np.ndarray]:
    """The cached float32 volumes of `samples`."""
    from triage.data.dataset import load_array
    from triage.preprocess.cache import VolumeCache

    cache = VolumeCache(data.ingest_dir / CACHE_DIR)
    return [load_array(cache, s) for s in samples]


def forward_ms(bundle: ModelBundle, volumes: Sequence[np.ndarray], *, runtime: str,
               batch_size: int = 4, repeats: int = 3, warm_up: bool = True) -> float:
    """Median forward milliseconds per volume of `runtime` on CPU over a batch of
    `volumes` (one warm-up pass first unless `warm_up` is False, for a caller that
    already ran one; threads as the process has them)."""
    batch = np.stack([np.asarray(v, np.float32).reshape(-1, *bundle.in_shape)[0]
                      for v in list(volumes)[:batch_size]])
    if warm_up:
        bundle.predict_logits(batch, device="cpu", batch_size=batch_size, runtime=runtime)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        bundle.predict_logits(batch, device="cpu", batch_size=batch_size, runtime=runtime)
        times.append((time.perf_counter() - start) * 1000 / len(batch))
    return float(statistics.median(times))


def onnx_bundle(parent: ModelBundle, graph: bytes, quantization: str) -> ModelBundle:
    """`parent` with `graph` as its ONNX model and ``onnx`` as its runtime (calibration
    still the parent's: `recalibrate_variant` refits it)."""
    import onnxruntime
    import torch

    from triage.model.runtime import OPSET

    record = {"quantization": quantization, "opset": OPSET, "exporter": "torchscript",
              "torch": torch.__version__, "onnxruntime": onnxruntime.__version__}
    return dataclasses.replace(parent, runtime="onnx", onnx_model=graph, onnx=record)


def make_variant(parent: ModelBundle, data: ExportData, *, quantize: Quantize | str = "none",
                 batch_size: int = 4) -> Variant:
    """Export `parent` to ONNX, quantize it as asked, and recalibrate it on its own scores.

    With ``quantize="auto"`` the int8 graph is kept only where it measured faster than
    the fp32 graph here (`forward_ms`).

    Raises:
        ConfigError: `parent` is already a quantized variant.
    """
    from triage.export.quantize import quantize_int8
    from triage.model.runtime import export_onnx

    quantize = Quantize(quantize)
    if parent.quantized:
        raise ConfigError("The model is already a quantized variant; export its fp32 parent.")
    graph = export_onnx(parent.build_model(), parent.in_shape)
    fp32 = onnx_bundle(parent, graph, "none")
    timing_volumes = load_volumes(data, (data.quantization or data.calib)[:batch_size])
    timings = {"torch": forward_ms(parent, timing_volumes, runtime="torch",
                                   batch_size=batch_size),
               "onnx": forward_ms(fp32, timing_volumes, runtime="onnx",
                                  batch_size=batch_size)}
    chosen, method = fp32, "onnx"
    if quantize is not Quantize.NONE:
        int8 = onnx_bundle(parent, quantize_int8(graph, load_volumes(data, data.quantization)),
                           "int8")
        timings["onnx-int8"] = forward_ms(int8, timing_volumes, runtime="onnx",
                                          batch_size=batch_size)
        if quantize is Quantize.INT8 or timings["onnx-int8"] < timings["onnx"]:
            chosen, method = int8, "onnx-int8"
        else:
            log.info("int8 measured %.2f ms per volume against %.2f for fp32 ONNX here: the "
                     "fp32 graph is kept.", timings["onnx-int8"], timings["onnx"])
    bundle = recalibrate_variant(chosen, data, batch_size=batch_size)
    return Variant(bundle, method, {k: round(v, 3) for k, v in timings.items()},
                   parent.temperature)


def _rules(bundle: Any) -> Any:
    from triage.route.rules import recorded_rules

    return recorded_rules(bundle.rules)


def recalibrate_variant(bundle: ModelBundle, data: ExportData, *, batch_size: int = 4
                        ) -> ModelBundle:
    """`bundle` with temperature, routing thresholds, score reference and metrics fitted
    again on its own scores of the calibration split (and metrics of the test splits).

    Nothing of the parent's calibration survives: a calibration split with one class
    leaves the temperature at 1 and certifies no threshold (those studies go to review).
    """
    from triage.calibrate import fit_temperature, grouped_report, probabilities
    from triage.monitor.reference import score_reference
    from triage.registry.bundle import code_version
    from triage.registry.evaluate import evaluate_bundle
    from triage.route import fit_thresholds

    def logits(samples: Sequence[Sample]) -> np.ndarray:
        return bundle.predict_logits(load_volumes(data, samples), device="cpu",
                                     batch_size=batch_size)

    z = logits(data.calib)
    y = np.array([s.label for s in data.calib], dtype=int)
    groups = [s.device_group for s in data.calib]
    temperature = 1.0
    if len(set(y.tolist())) == 2:
        temperature = fit_temperature(z, y)
    else:
        log.warning("The calibration split has one class only: the variant's temperature is "
                    "left at 1.0 and no threshold is certified.")
    p = probabilities(z, temperature)
    ruleset = _rules(bundle)
    fitted = fit_thresholds(p, y, groups, ruleset.thresholds)
    metrics: dict[str, Any] = {}
    frame = grouped_report(p, y, groups)
    metrics |= _flat("calib.cal", frame)
    recalibrated = dataclasses.replace(
        bundle, temperature=temperature, routing=fitted.to_dict(),
        score_reference=score_reference(p, groups), metrics=metrics,
        code_version=code_version(), created_utc=_now())
    for name, samples in (("test", data.test), ("held-out", data.held_out)):
        if samples:
            scored, _ = evaluate_bundle(recalibrated, samples, data.ingest_dir,
                                        device="cpu", batch_size=batch_size)
            metrics |= _flat(f"{name}.cal", scored[scored["calibrated"]])
    return recalibrated


def _flat(prefix: str, frame: Any) -> dict[str, float]:
    """``<prefix>.all.<metric>`` for the frame's "all" row (finite numbers only)."""
    out = {}
    for row in frame[frame["group"] == "all"].to_dict("records"):
        for key, value in row.items():
            if isinstance(value, int | float) and not isinstance(value, bool) \
                    and np.isfinite(value):
                out[f"{prefix}.all.{key}"] = float(value)
    return out


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds")
