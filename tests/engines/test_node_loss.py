"""A node removed mid-run (`ray.cluster_utils.Cluster`: two nodes on this machine): every
study still gets exactly one row, the same as the local engine gives it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

if not os.environ.get("CI"):  # CI installs the ray extra: there a missing Ray is an error
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")

from tests.run.conftest import DEVICES, routing_for
from triage.run.pipeline import run_export
from triage.run.worklist import WORKLIST_NAME, read_worklist

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, sys
import ray
from ray.cluster_utils import Cluster
from triage.engines.ray import RayEngine
from triage.registry.bundle import load_bundle
from triage.route import Router
from triage.run.pipeline import run_export

args = json.loads(sys.argv[1])
cluster = Cluster(initialize_head=True,
                  head_node_args={"num_cpus": 1, "include_dashboard": False})
worker = cluster.add_node(num_cpus=1)
cluster.wait_for_nodes()
ray.init(address=cluster.address, log_to_driver=False)
bundle = load_bundle(args["bundle"])
router = Router.from_yaml(args["rules"], args["routing"], bundle.train_devices)
removed = []

def progress(done, total, row):
    if row is not None and not removed:  # the first row is back: work is under way
        removed.append((done, len(ray.nodes())))
        cluster.remove_node(worker, allow_graceful=False)

with RayEngine(max_retries=3) as engine:
    result = run_export(args["export"], args["out"], bundle=bundle, router=router,
                        batch_size=2, model_name="tiny", model_version="7", device="cpu",
                        engine=engine, progress=progress)
import time
deadline = time.monotonic() + 60  # the GCS marks a killed node dead after its health checks
while (alive := sum(n["Alive"] for n in ray.nodes())) > 1 and time.monotonic() < deadline:
    time.sleep(0.5)
print(json.dumps({"removed": removed, "alive": alive, "rows": len(result.rows),
                  "per_node": result.summary.get("studies_per_node", {})}))
ray.shutdown()
cluster.shutdown()
"""


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    from triage.data.synth import SynthConfig, generate_export

    return generate_export(tmp_path_factory.mktemp("node-loss") / "export", SynthConfig(
        studies=12, seed=21, slices=8, matrix=32, devices=DEVICES, thick_fraction=0.0,
        extras=False)).out_dir


def _rows(out: Path) -> list[dict]:
    return [{k: v for k, v in r.to_dict().items() if k != "processed_at"}
            for r in read_worklist(out / WORKLIST_NAME)]


def test_every_study_gets_one_row_when_a_node_is_removed_mid_run(export, tiny_model,
                                                                 rules_path, router, tmp_path):
    from triage.registry.bundle import load_bundle

    run_export(export, tmp_path / "local", bundle=load_bundle(tiny_model.bundle_dir),
               router=router, workers=2, batch_size=2, model_name="tiny", model_version="7",
               device="cpu")
    args = json.dumps({"bundle": str(tiny_model.bundle_dir), "rules": str(rules_path),
                       "routing": routing_for(rules_path), "export": str(export),
                       "out": str(tmp_path / "ray")})
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", SCRIPT, args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    # the last line of ours: a raylet may log to the inherited stdout after it
    report = json.loads([line for line in proc.stdout.splitlines()
                         if line.startswith('{"removed"')][-1])
    assert report["removed"] and report["removed"][0][1] == 2  # two nodes, then one
    assert report["alive"] == 1
    assert report["rows"] == 12
    # each ingested study counted once, on the node whose task returned it (12 minus the
    # studies the local run refuses before ingest, none here: every study is ingested)
    assert sum(report["per_node"].values()) == 12 and 1 <= len(report["per_node"]) <= 2
    assert _rows(tmp_path / "ray") == _rows(tmp_path / "local")
