"""Integration: a real `mlflow server` on a free loopback port. Train a tiny model against
it, register, promote, load ``models:/NAME@champion`` back from the server, and triage a
DICOM export with ``triage run --model models:/NAME@champion``."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

TINY = {"model": {"name": "cnn-small", "options": {"channels": [4, 8]}},
        "optim": {"epochs": 1, "batch_size": 4}, "runtime": {"experiment": "remote"}}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    mlflow_bin = shutil.which("mlflow") or os.path.join(os.path.dirname(sys.executable),
                                                         "mlflow")
    port = _free_port()
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [mlflow_bin, "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'srv.db'}",
         "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180  # its imports alone take a minute on 2 loaded cores
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            log.close()
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                state = "no answer on /health in 180 s"
            else:
                state = f"exited with status {proc.returncode}"
            pytest.fail(f"mlflow server did not start ({state}):\n"
                        + (tmp_path / "server.log").read_text()[-2000:])
        time.sleep(0.5)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


def test_train_register_promote_and_load_champion_from_a_server(
        mlflow_server, tiny_training_set, make_synth_export, tmp_path, monkeypatch):
    from triage.data.dataset import load_array, resolve_samples
    from triage.data.manifest import read_manifest
    from triage.preprocess.cache import VolumeCache
    from triage.registry.gates import GateConfig
    from triage.registry.promotion import promote, register_version
    from triage.registry.pyfunc import load_bundle_from_uri
    from triage.train.config import TrainConfig
    from triage.train.run import train_model

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.chdir(tmp_path)
    outcome = train_model(manifest_path=tiny_training_set.manifest_path,
                          ingest_dir=tiny_training_set.ingest_dir,
                          config=TrainConfig.from_dict(TINY), out_dir=tmp_path / "run",
                          progress=False)
    version = register_version(outcome.run_id, "remote-model")
    result = promote("remote-model", version, manifest_path=tiny_training_set.manifest_path,
                     ingest_dir=tiny_training_set.ingest_dir,
                     gates=GateConfig(max_ece=1.0, require_certified=False))  # certifies nothing
    assert result.promoted
    champion = load_bundle_from_uri("models:/remote-model@champion")
    assert champion.temperature == pytest.approx(outcome.temperature)

    sample = resolve_samples(read_manifest(tiny_training_set.manifest_path),
                             tiny_training_set.ingest_dir).samples[0]
    array = load_array(VolumeCache(tiny_training_set.ingest_dir / "cache"), sample)[None]
    local = load_bundle_from_uri(str(outcome.bundle_dir))
    np.testing.assert_allclose(champion.predict_proba(array, device="cpu"),
                               local.predict_proba(array, device="cpu"), atol=1e-6)
    assert not (tmp_path / "mlflow.db").exists()  # everything went to the server

    import csv

    from triage.cli import main

    export = make_synth_export("incoming", studies=3, slices=16, matrix=32).out_dir
    assert main(["run", str(export), "--model", "models:/remote-model@champion", "--out",
                 str(tmp_path / "triaged"), "--json"]) == 0
    with open(tmp_path / "triaged" / "worklist.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3
    assert {row["model_name"] for row in rows} == {"remote-model"}
    assert {row["model_version"] for row in rows} == {version}
