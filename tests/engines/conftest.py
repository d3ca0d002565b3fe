"""One local Ray instance per session (2 CPUs, no dashboard) with fault hooks in its workers,
and the `triage run` fixtures (tiny model, small export, rules)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.engines import faults
from tests.run.conftest import (  # noqa: F401 - fixtures shared with the run tests
    _run_tracking,
    router,
    rules_path,
    run_case,
    run_tracking_uri,
    tiny_model,
)

if not os.environ.get("CI"):  # CI installs the ray extra: there a missing Ray is an error
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")


@pytest.fixture(scope="session")
def fault_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ray-faults")


@pytest.fixture(scope="session")
def ray_local(fault_dir: Path):
    """`ray.init(num_cpus=2)` once; workers inherit the fault folder and install the hooks."""
    import ray

    os.environ[faults.ENV] = str(fault_dir)  # before ray.init: its processes inherit it
    # The workers import the fault hooks from this checkout's `tests` package.
    root = str(Path(__file__).resolve().parents[2])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": "tests.engines.faults.install",
                          "env_vars": {"PYTHONPATH": os.pathsep.join(
                              p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}})
    yield ray
    ray.shutdown()


@pytest.fixture
def armed(fault_dir: Path):
    """The fault folder, emptied after the test."""
    yield fault_dir
    faults.disarm(fault_dir)


@pytest.fixture(scope="session")
def bundle(tiny_model):  # noqa: F811 - the imported fixture
    from triage.registry.bundle import load_bundle

    return load_bundle(tiny_model.bundle_dir)
