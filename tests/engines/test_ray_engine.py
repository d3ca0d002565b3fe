"""The Ray engine on a local Ray instance: the same worklist as the local engine, and no
study lost when a task or an actor dies."""

from __future__ import annotations

import pytest

from tests.engines import faults
from triage.engines.ray import RayEngine
from triage.errors import EnvironmentalError
from triage.run.journal import JOURNAL_NAME
from triage.run.pipeline import run_export
from triage.run.worklist import WORKLIST_NAME, read_worklist


def _rows(out) -> list[dict]:
    return [{k: v for k, v in r.to_dict().items() if k != "processed_at"}
            for r in read_worklist(out / WORKLIST_NAME)]


@pytest.fixture(scope="module")
def local_rows(run_case, bundle, router, tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("local")
    run_export(run_case.export_dir, out, bundle=bundle, router=router, workers=2,
               batch_size=2, model_name="tiny", model_version="7", device="cpu")
    return _rows(out)


def _ray_run(run_case, bundle, router, out, retries=1):
    with RayEngine(max_retries=retries) as engine:
        result = run_export(run_case.export_dir, out, bundle=bundle, router=router,
                            batch_size=2, model_name="tiny", model_version="7",
                            device="cpu", engine=engine)
    return result


def test_ray_gives_the_local_engines_worklist(ray_local, local_rows, run_case, bundle,
                                              router, tmp_path):
    result = _ray_run(run_case, bundle, router, tmp_path / "ray")
    assert _rows(tmp_path / "ray") == local_rows
    assert len(local_rows) == 7 and {r["route"] for r in local_rows} >= {"failed", "review"}
    summary = result.summary
    assert summary["engine"] == "ray" and summary["cluster_cpus"] == 2
    assert summary["inference_actors"] == 1 and summary["inference_device"] == "cpu"
    # a rerun resumes everything from the journal: nothing is redone
    again = _ray_run(run_case, bundle, router, tmp_path / "ray")
    assert (again.resumed, again.processed) == (7, 0)


def test_a_task_or_actor_that_dies_once_is_retried(ray_local, armed, local_rows, run_case,
                                                   bundle, router, tmp_path):
    scored = [r["study_uid"] for r in local_rows if r["p_calibrated"]]
    fired = [faults.arm(armed, "ingest", scored[0]), faults.arm(armed, "score", scored[1])]
    _ray_run(run_case, bundle, router, tmp_path / "out", retries=1)
    assert all(not path.exists() for path in fired)  # both workers really died
    assert _rows(tmp_path / "out") == local_rows


# 60-110 s on 2 shared cores (4 actor and 2 worker deaths, each restarted): in the fast
# suite all the same, as CI must run the fault tests of the Ray engine
def test_a_study_that_kills_every_try_is_failed_with_the_reason(ray_local, armed, local_rows,
                                                                run_case, bundle, router,
                                                                tmp_path):
    scored = [r["study_uid"] for r in local_rows if r["p_calibrated"]]
    ingest_victim, score_victim = scored[0], scored[1]
    faults.arm(armed, "ingest", ingest_victim, "always")
    faults.arm(armed, "score", score_victim, "always")
    result = _ray_run(run_case, bundle, router, tmp_path / "out", retries=1)
    rows = {r["study_uid"]: r for r in _rows(tmp_path / "out")}
    assert len(rows) == len(local_rows) == len(result.rows)  # exactly one row each
    dead = rows.pop(ingest_victim)
    assert dead["route"] == "failed" and dead["ingest_status"] == "failed"
    assert "the Ray worker ingesting this study died 2 times" in dead["reasons"]
    dead = rows.pop(score_victim)
    assert dead["route"] == "failed" and dead["p_calibrated"] == ""
    assert "the inference actor died 2 times while scoring this study" in dead["reasons"]
    # every other study, its batch partner included, is as the local engine has it
    expected = {r["study_uid"]: r for r in local_rows}
    assert rows == {uid: expected[uid] for uid in rows}


def _stops_writing_nothing_for(victim: str, message: str, run_case, bundle, router, out):
    """The Ray run stops as environmental with `message`, and its journal holds nothing
    about `victim` nor any death."""
    with pytest.raises(EnvironmentalError, match=f"The run stopped: {message}"):
        _ray_run(run_case, bundle, router, out, retries=1)
    journal = out / JOURNAL_NAME
    written = journal.read_text(encoding="utf-8") if journal.exists() else ""
    assert victim not in written and "died" not in written  # nothing written down for it


def test_a_cluster_whose_workers_die_on_any_task_stops_the_run(ray_local, armed, local_rows,
                                                               run_case, bundle, router,
                                                               tmp_path):
    victim = next(r["study_uid"] for r in local_rows if r["p_calibrated"])
    faults.arm(armed, "ingest", victim, "always")
    faults.arm(armed, "alive", faults.CANARY, "always")  # not even a study-free task runs
    _stops_writing_nothing_for(victim, "Ray workers die or hang even on a task that reads "
                                       "no study", run_case, bundle, router, tmp_path / "out")


def test_inference_actors_that_die_on_any_volume_stop_the_run(ray_local, armed, local_rows,
                                                              run_case, bundle, router,
                                                              tmp_path):
    from triage.engines.ray import NO_STUDY

    assert faults.CANARY == NO_STUDY
    victim = [r["study_uid"] for r in local_rows if r["p_calibrated"]][1]
    faults.arm(armed, "score", victim, "always")
    faults.arm(armed, "score", faults.CANARY, "always")  # a blank volume kills it too
    _stops_writing_nothing_for(victim, "inference actors die or hang even on a volume of "
                                       "no study", run_case, bundle, router, tmp_path / "out")


def test_ray_ingest_gives_the_local_report_and_device_stats(ray_local, run_case, tmp_path):
    from triage.engines.runner import ingest_export
    from triage.ingest.config import IngestConfig
    from triage.train.tiny import INGEST

    config = IngestConfig.from_dict(INGEST)
    local = ingest_export(run_case.export_dir, tmp_path / "local", config, workers=2)
    with RayEngine() as engine:
        ray = ingest_export(run_case.export_dir, tmp_path / "ray", config, engine=engine)
    assert sorted(ray.reports, key=lambda r: r.study_uid) == sorted(
        local.reports, key=lambda r: r.study_uid)
    assert len(ray.reports) == 7
    # merged in completion order on both engines: the same groups, sums equal to rounding
    assert ray.device_stats.to_dict().keys() == local.device_stats.to_dict().keys()
    assert ray.summary["engine"] == "ray" and local.summary["engine"] == "local"


def test_actors_started_before_the_scan_score_the_run_or_are_stopped(ray_local, bundle,
                                                                    tmp_path):
    from ray.exceptions import RayActorError

    from triage.engines import TriageJob
    from triage.ingest.config import IngestConfig

    job = TriageJob(config=IngestConfig.from_dict(bundle.ingest_config),
                    cache_root=tmp_path / "cache", bundle=bundle, device="cpu", batch_size=2)
    engine = RayEngine()
    engine.prepare(job)
    engine._join_prepare()  # the actors start in the background
    (actor,) = engine._inference.actors
    assert list(engine.triage([], job)) == []  # the prepared actor is taken, then stopped
    with pytest.raises(RayActorError):
        ray_local.get(actor.__ray_ready__.remote(), timeout=60)
    engine.prepare(job)
    engine._join_prepare()
    (unused,) = engine._inference.actors
    engine.close()  # no triage took it
    with pytest.raises(RayActorError):
        ray_local.get(unused.__ray_ready__.remote(), timeout=60)
    assert ray_local.is_initialized()  # a Ray the caller started is left running


def test_triage_ingest_engine_ray_on_the_command_line(ray_local, run_case, tmp_path, capsys):
    import json

    import yaml

    from triage.cli import main
    from triage.train.tiny import INGEST

    config = tmp_path / "ingest.yaml"
    config.write_text(yaml.safe_dump(INGEST), encoding="utf-8")
    code = main(["ingest", str(run_case.export_dir), "--out", str(tmp_path / "out"),
                 "--config", str(config), "--engine", "ray", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["engine"] == "ray" and summary["studies"] == 7
    assert summary["status"] == {"ok": 5, "failed": 2}
    assert ray_local.is_initialized()  # a Ray the caller started is left running


START_SCRIPT = """
import json, threading, time
import ray
from triage.engines.ray import RayEngine, _wait_for_shutdowns

engine = RayEngine()
engine.start()  # a local instance, started in the background
with engine:
    engine._connect()
    time.sleep(1)  # the processes Ray started outlive the moment it was up
    value = ray.get(ray.remote(lambda x: x + 1).remote(ray.put(41)))
    threads = [t.name for t in threading.enumerate()]
_wait_for_shutdowns()  # closing stops the instance in the background
print(json.dumps({"value": value, "thread": "triage-ray-start" in threads,
                  "after": ray.is_initialized(),
                  "left": [t.name for t in threading.enumerate() if t.name == "triage-ray-start"]}))
"""


# 15-30 s on 2 shared cores: a local Ray instance started in a subprocess
def test_ray_started_in_the_background_serves_the_driver_until_closed(tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", START_SCRIPT], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads([line for line in proc.stdout.splitlines()
                         if line.startswith('{"value"')][-1])
    assert report == {"value": 42, "thread": True, "after": False, "left": []}


def test_an_actor_holds_two_batches_but_a_batch_scored_alone_holds_it_alone():
    from triage.engines.ray import IN_FLIGHT, _free_actor, _Waiting

    def batch(alone: bool = False) -> list[_Waiting]:
        return [_Waiting(None, None, None, alone)]  # type: ignore[arg-type]

    a, b = "actor-a", "actor-b"
    assert IN_FLIGHT == 2
    assert _free_actor([a], [], alone=False) == a
    assert _free_actor([a], [(a, batch())], alone=False) == a  # its second batch
    assert _free_actor([a], [(a, batch()), (a, batch())], alone=False) is None
    assert _free_actor([a, b], [(a, batch()), (a, batch())], alone=False) == b
    # a batch that killed an actor before goes only to an actor holding nothing ...
    assert _free_actor([a], [(a, batch())], alone=True) is None
    assert _free_actor([a, b], [(a, batch())], alone=True) == b
    # ... and its actor takes nothing else meanwhile
    assert _free_actor([a], [(a, batch(alone=True))], alone=False) is None
    # a dead actor's batches (its replacement is in `actors`) hold no slot of the new one
    assert _free_actor([b], [("dead", batch()), ("dead", batch())], alone=True) == b


def test_an_actor_that_cannot_start_stops_the_run_and_fails_no_study(ray_local, run_case,
                                                                     router, tiny_model,
                                                                     tmp_path):
    import json
    import shutil

    from triage.errors import EnvironmentalError
    from triage.registry.bundle import BUNDLE_JSON, WEIGHTS_FILE, load_bundle

    folder = shutil.copytree(tiny_model.bundle_dir, tmp_path / "bundle")
    (folder / WEIGHTS_FILE).write_bytes(b"not torch weights")  # torch cannot read it ...
    meta = json.loads((folder / BUNDLE_JSON).read_text())
    del meta["weights_sha256"]  # ... and no checksum says so before the actor loads it
    (folder / BUNDLE_JSON).write_text(json.dumps(meta))
    broken = load_bundle(folder, decode_weights=False)  # as `triage run --engine ray` does
    out = tmp_path / "out"
    with pytest.raises(EnvironmentalError, match="inference actor could not start on Ray"):
        _ray_run(run_case, broken, router, out)
    journal = out / "journal.jsonl"
    rows = [json.loads(line) for line in journal.read_text().splitlines()] \
        if journal.exists() else []
    assert all(row.get("route") != "failed" or "Ray" not in str(row.get("reasons"))
               for row in rows)  # the engine's failure is no study's outcome


def test_the_ray_driver_of_triage_run_never_imports_torch(ray_local, run_case, rules_path,
                                                         tiny_model, tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    code = (
        "import json, sys\n"
        "from triage.cli import main\n"
        f"code = main(['run', {str(run_case.export_dir)!r}, '--model', "
        f"{str(tiny_model.bundle_dir)!r}, '--rules', {str(rules_path)!r}, '--out', "
        f"{str(tmp_path / 'out')!r}, '--engine', 'ray', '--ray-address', 'auto', "
        "'--batch-size', '2', '--json'])\n"
        "print(json.dumps({'code': code, 'torch': 'torch' in sys.modules}))\n")
    env = os.environ | {"PYTHONPATH": os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH", "")) if p),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    last = json.loads(done.stdout.strip().splitlines()[-1])
    assert last == {"code": 0, "torch": False}
    summary = json.loads(done.stdout[done.stdout.index("{"):done.stdout.rindex("}\n{") + 1])
    assert summary["studies"] == 7 and summary["engine"] == "ray"
