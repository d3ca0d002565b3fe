"""Fixtures for the PACS tests: a real Orthanc, synthetic studies pushed into it, the model.

Orthanc comes from Debian (``make tools`` installs ``orthanc``, ``orthanc-dicomweb`` and
``dicom3tools`` as root). Without them the tests skip locally with the reason, and fail in
CI (``CI=true``), where a skipped PACS suite would hide a broken integration.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.pacs.orthanc import OrthancServer, find_orthanc
from tests.run.conftest import rules_path, tiny_model  # noqa: F401 - shared fixtures

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(what: str, found: bool) -> None:
    """Skip locally, fail in CI, when a Debian tool the test needs is missing."""
    if found:
        return
    message = (f"{what} is not installed; run 'make tools' as root (apt-get install orthanc "
               f"orthanc-dicomweb dicom3tools)")
    if IN_CI:
        pytest.fail(message + " - required in CI", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def make_orthanc(tmp_path: Path) -> Iterator[Callable[..., OrthancServer]]:
    """Factory: ``make_orthanc(dicom=False, modalities=None, config=None)`` starts a fresh
    Orthanc on free loopback ports (`config`: more Orthanc settings); every server started
    is killed at teardown."""
    binary, plugin = find_orthanc()
    require_tool("Orthanc (Debian package 'orthanc')", binary is not None)
    require_tool("the Orthanc DICOMweb plugin (Debian package 'orthanc-dicomweb')",
                 plugin is not None)
    started: list[OrthancServer] = []

    def make(**options) -> OrthancServer:
        root = tmp_path / f"orthanc{len(started)}"
        server = OrthancServer(root, binary, plugin, **options)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def orthanc(make_orthanc) -> OrthancServer:
    """One Orthanc with DICOMweb, no DICOM port."""
    return make_orthanc()


@pytest.fixture
def dciodvfy() -> str:
    path = shutil.which("dciodvfy")
    require_tool("dciodvfy (Debian package 'dicom3tools')", path is not None)
    return path


@pytest.fixture(scope="session")
def pacs_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four small synthetic CT studies of the tiny model's devices (plus one unseen)."""
    from triage.data.synth import SynthConfig, generate_export

    root = tmp_path_factory.mktemp("pacs-export")
    return generate_export(root / "export", SynthConfig(
        studies=4, seed=11, slices=8, matrix=32, devices="acme,borealis,cygnus",
        thick_fraction=0.0, extras=False)).out_dir


@pytest.fixture(scope="session")
def pacs_router(rules_path, tiny_model):  # noqa: F811 - the shared fixtures
    from tests.run.conftest import routing_for
    from triage.registry.bundle import load_bundle
    from triage.route import Router

    bundle = load_bundle(tiny_model.bundle_dir)
    return Router.from_yaml(rules_path, routing_for(rules_path), bundle.train_devices)


def study_uids(export_dir: Path) -> list[str]:
    """Study Instance UIDs of the DICOM files of an export."""
    import pydicom

    uids = set()
    for path in Path(export_dir).rglob("*"):
        if path.is_file():
            try:
                uids.add(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)
            except Exception:  # noqa: BLE001, S112 - manifest, ground truth
                continue
    return sorted(uids)
