"""Static int8 quantization of an ONNX graph with ONNX Runtime (QDQ, per-channel weights).

Activation ranges come from calibration volumes drawn from the training split of the
export the model was trained on (its cached volumes), never from the calibration or test
splits: those recalibrate and judge the quantized model afterwards.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from triage.model.runtime import INPUT_NAME


class _Volumes:
    """ONNX Runtime calibration reader over in-memory volumes, one per call."""

    def __init__(self, volumes: Sequence[np.ndarray]) -> None:
        self._iter: Iterator[np.ndarray] = iter(volumes)

    def get_next(self) -> dict[str, np.ndarray] | None:
        volume = next(self._iter, None)
        if volume is None:
            return None
        return {INPUT_NAME: np.ascontiguousarray(volume, np.float32).reshape(
            (1, 1, *volume.shape[-3:]))}

    def rewind(self) -> None:  # pragma: no cover - only MinMax's single pass is used
        pass


def quantize_int8(graph: bytes, volumes: Sequence[np.ndarray]) -> bytes:
    """`graph` quantized to int8: QDQ format, signed int8 weights per output channel and
    activations, MinMax ranges over `volumes`.

    Args:
        graph: the fp32 ONNX model (`triage.model.runtime.export_onnx`).
        volumes: preprocessed calibration volumes ``(X, Y, Z)`` or ``(1, X, Y, Z)``.

    Raises:
        ValueError: no calibration volumes.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not len(volumes):
        raise ValueError("int8 quantization needs calibration volumes; the training split "
                         "of the export holds none.")
    with tempfile.TemporaryDirectory(prefix="triage-quantize-") as tmp:
        source, prepared, target = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx",
                                                             "int8.onnx"))
        source.write_bytes(graph)
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(target), _Volumes(volumes),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        return target.read_bytes()
