"""`select_device`: auto picks what exists; an explicit missing device is a config error."""

from __future__ import annotations

import pytest
import torch

from triage.errors import ConfigError
from triage.model import device as device_module
from triage.model.device import select_device


def test_cpu_is_always_available():
    assert select_device("cpu") == torch.device("cpu")


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_module, "_mps_available", lambda: False)
    assert select_device("auto").type == "cpu"
    monkeypatch.setattr(device_module, "_mps_available", lambda: True)
    assert select_device("auto").type == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device("auto").type == "cuda"


def test_unavailable_explicit_device_is_a_config_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="runtime.device is 'cuda' but this machine has no "
                                          "usable CUDA device.*'auto' or 'cpu'"):
        select_device("cuda")


def test_unknown_device_name():
    with pytest.raises(ConfigError, match="Unknown device 'gpu'"):
        select_device("gpu")
