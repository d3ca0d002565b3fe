"""Inference and the ingest workers share the CPU: the workers yield, OpenMP sleeps."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor

import pytest

from triage.ingest.stream import WORKER_NICENESS, _init_worker

unix_only = pytest.mark.skipif(not hasattr(os, "nice"), reason="no niceness on this OS")


def _niceness() -> int:
    return os.nice(0)


@unix_only
@pytest.mark.parametrize(("background", "expected"), [(True, WORKER_NICENESS), (False, None)])
def test_background_workers_run_at_the_lowest_priority(background, expected):
    parent = os.nice(0)
    with ProcessPoolExecutor(1, initializer=_init_worker, initargs=(background,)) as pool:
        niceness = pool.submit(_niceness).result()
    assert niceness == (expected if expected is not None else parent)
    assert os.nice(0) == parent  # the parent (inference) keeps its priority


@unix_only
def test_a_lower_priority_is_never_raised():
    code = ("import os\nfrom triage.ingest.stream import lower_priority\n"
            "os.nice(19 - os.nice(0))\nprint(lower_priority(5))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "19"


def _passive(env: dict[str, str], preload_torch: bool) -> list[str]:
    code = ("import os\n" + ("import torch\n" if preload_torch else "") +
            "from triage.engines.threads import prefer_passive_openmp\n"
            "print(prefer_passive_openmp(), os.environ.get('OMP_WAIT_POLICY'))")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | env
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env=env).stdout.split()


def test_openmp_is_asked_to_sleep_before_torch_loads():
    assert _passive({}, preload_torch=False) == ["True", "PASSIVE"]


def test_a_users_wait_policy_is_kept():
    assert _passive({"OMP_WAIT_POLICY": "ACTIVE"}, preload_torch=False) == ["False", "ACTIVE"]


def test_too_late_once_torch_is_loaded():
    pytest.importorskip("torch")
    # The runtime read its policy when torch loaded: setting it now would claim an effect
    # it cannot have.
    assert _passive({}, preload_torch=True) == ["False", "None"]
