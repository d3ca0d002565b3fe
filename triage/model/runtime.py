"""Inference runtimes: PyTorch, or an ONNX graph of the same network run by ONNX Runtime.

`export_onnx` traces a network into an ONNX graph (the TorchScript exporter,
``torch.onnx.export(..., dynamo=False)``: no extra dependency, and every built-in network
traces); `OnnxSession` runs such a graph on ONNX Runtime's CUDA provider where it is
available and asked for, else on the CPU provider. The bundle picks the runtime
(`triage.registry.bundle.ModelBundle.predict_logits`).
"""

from __future__ import annotations

import io
import logging
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

OPSET = 17
INPUT_NAME = "volume"
OUTPUT_NAME = "logits"


class Runtime(StrEnum):
    """Which engine runs a bundle's forward passes."""

    TORCH = "torch"
    ONNX = "onnx"


def parse_runtime(value: str | Runtime) -> Runtime:
    """`value` as a `Runtime`.

    Raises:
        ValueError: an unknown name (the message lists the valid ones).

    Example:
        >>> parse_runtime("onnx")
        <Runtime.ONNX: 'onnx'>
    """
    try:
        return Runtime(str(getattr(value, "value", value)).strip().lower())
    except ValueError:
        choices = ", ".join(r.value for r in Runtime)
        raise ValueError(f"Unknown runtime {value!r}; expected one of {choices}.") from None


def export_onnx(model: torch.nn.Module, in_shape: tuple[int, int, int], *,
                opset: int = OPSET) -> bytes:
    """The ONNX graph of `model` (eval mode, batch axis dynamic) as bytes.

    Args:
        model: the network, taking ``(N, 1, X, Y, Z)`` float32 volumes to ``(N, 2)`` logits.
        in_shape: spatial input shape (X, Y, Z).
        opset: ONNX opset version.
    """
    import warnings

    import torch

    model = model.eval().cpu()
    example = torch.zeros((2, 1, *in_shape), dtype=torch.float32)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # Tracer warnings on Python-level shape checks: the shapes are fixed per bundle.
        warnings.simplefilter("ignore")
        torch.onnx.export(  # a file-like object is accepted at run time
                          model, (example,), buffer,  # type: ignore[arg-type]
                          dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                          do_constant_folding=True)
    return buffer.getvalue()


def onnx_providers(device: str = "auto") -> list[str]:
    """ONNX Runtime execution providers for a triage device string.

    ``auto`` and ``cuda*`` take the CUDA provider when this ONNX Runtime has it (the CPU
    provider stays as the fallback); anything else runs on the CPU provider.
    """
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    wants_cuda = device == "auto" or str(device).startswith("cuda")
    if wants_cuda and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxSession:
    """An ONNX Runtime session over a serialized graph: float32 volumes in, logits out.

    Args:
        graph: the serialized ONNX model.
        device: ``auto``, ``cpu`` or ``cuda[:N]`` (see `onnx_providers`).
        threads: intra-op threads (default: torch's thread count when torch is loaded,
            so both runtimes use the cores the run gives inference); idle, they sleep.
    """

    def __init__(self, graph: bytes, *, device: str = "auto", threads: int | None = None
                 ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads if threads is not None else _torch_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle threads sleep instead of spinning, as triage asks of torch's OpenMP
        # (`triage.engines.threads`): in `triage run` the ingest workers need the cores
        # between batches. Measured (2 cores, 150 studies, the 70 % pruned graph): the run
        # 5.7 -> 4.8 s; the forward pass alone no slower (8-10 -> 7 ms per volume).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.providers = onnx_providers(device)
        self.session = ort.InferenceSession(graph, sess_options=options,
                                            providers=self.providers)
        self.input_name = self.session.get_inputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits ``(N, 2)`` float32 of a float32 ``(N, 1, X, Y, Z)`` batch."""
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(batch,
                                                                            np.float32)})
        return np.asarray(out[0], dtype=np.float32)


def _torch_threads() -> int:
    import sys

    torch: Any = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else 0
