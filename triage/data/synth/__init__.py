"""Synthetic multi-device PACS exports with ground truth.

The public API is importable from here (lazily, so importing the package stays cheap):

    >>> from triage.data.synth import SynthConfig, generate_export  # doctest: +SKIP
    >>> summary = generate_export("out", SynthConfig(studies=8, seed=1))  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SynthConfig": "config",
    "parse_splits": "config",
    "generate_export": "export",
    "ExportSummary": "export",
    "DEVICE_PROFILES": "devices",
    "DeviceProfile": "devices",
    "get_device": "devices",
    "device_names": "devices",
    "register_device": "devices",
    "plan_cohort": "cohort",
    "StudySlot": "cohort",
    "build_study": "study",
    "StudyTruth": "study",
    "SeriesTruth": "study",
    "SeriesKind": "study",
    "SeriesGeometry": "geometry",
    "Lesion": "findings",
    "lesion_mask": "findings",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
