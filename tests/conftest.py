"""Shared fixtures: small seeded synthetic PACS exports (see docs/synthetic_data.md)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

# Ten studies cycle twice through the five default devices, so the first study of every
# device carries that device's quirks (prone, tilt, dropped slices); half get a thick
# reconstruction. 48-pixel matrices keep JPEG 2000 (>= 32 px) working and the export at
# ~200 files, generated in about a second.
TINY_EXPORT = {"studies": 10, "seed": 11, "slices": 12, "matrix": 48, "thick_fraction": 0.5}


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory: pytest.TempPathFactory):
    """A 10-study, 5-device export with extras, written once per session.

    Returns the `ExportSummary`; HU volumes are kept, so
    ``summary.studies[i].primary.hu`` is the stored ground truth of the thin series.
    Treat the files as read-only: other tests share them.
    """
    from triage.data.synth import SynthConfig, generate_export

    out = tmp_path_factory.mktemp("synth") / "export"
    return generate_export(out, SynthConfig(**TINY_EXPORT), keep_volumes=True)


@pytest.fixture
def make_synth_export(tmp_path: Path) -> Callable:
    """Factory: ``make_synth_export(name="export", **config)`` writes a fresh export.

    Defaults are tiny (4 studies, 6 slices, 32 px, no extras); keyword arguments override
    `SynthConfig` fields. Returns the `ExportSummary`.
    """
    from triage.data.synth import SynthConfig, generate_export

    def make(name: str = "export", *, keep_volumes: bool = False, **overrides):
        config = {"studies": 4, "seed": 0, "slices": 6, "matrix": 32, "extras": False,
                  **overrides}
        return generate_export(tmp_path / name, SynthConfig(**config),
                               keep_volumes=keep_volumes)

    return make


@pytest.fixture(scope="session")
def tiny_training_set(tmp_path_factory: pytest.TempPathFactory):
    """Cached 24x24x12 volumes of 4 device groups x 2 labels x 6 studies, plus one failed
    study, with their ingest report and manifest (`tests.training_factory`). Read-only."""
    from tests.training_factory import make_training_set

    return make_training_set(tmp_path_factory.mktemp("training"))
