"""Failures of the machine, not of a study: a bad device or output folder is refused before
any work; a full disk or a failing device stops the run without failing a study, and the
rerun resumes; workers die with their parent."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from triage.cli import main
from triage.errors import EnvironmentalError
from triage.run.journal import JOURNAL_NAME
from triage.run.pipeline import run_export
from triage.run.worklist import WORKLIST_NAME, read_worklist

ROOT = Path(__file__).resolve().parents[2]


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _bad_devices() -> list[str]:
    import torch

    return ["bogus", "cuda:99"] + ([] if torch.cuda.is_available() else ["cuda"])


@pytest.mark.parametrize("device", _bad_devices())
def test_a_device_this_machine_lacks_is_refused_before_anything_runs(device, run_case,
                                                                     tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["run", str(run_case.export_dir), "--model", str(tmp_path / "no-model"),
                 "--out", str(out), "--device", device])
    assert code == 2
    line = _one_line(capsys.readouterr().err)
    assert f"'{device}'" in line and "--device" in line
    assert not out.exists()  # nothing ingested, nothing journaled


def test_run_export_checks_the_device_before_ingesting(run_case, tiny_model, router,
                                                       tmp_path):
    from triage.errors import ConfigError
    from triage.registry.bundle import load_bundle

    with pytest.raises(ConfigError, match="Unknown device 'bogus'"):
        run_export(run_case.export_dir, tmp_path / "out", bundle=load_bundle(
            tiny_model.bundle_dir), router=router, workers=1, device="bogus")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["file", "under a file", "read-only"])
def test_an_output_folder_that_cannot_be_written_is_one_line(where, run_case, tmp_path,
                                                             capsys):
    a_file = tmp_path / "taken"
    a_file.write_text("x", encoding="utf-8")
    out = {"file": a_file, "under a file": Path("/dev/null/out"),
           "read-only": Path("/proc/triage-out")}[where]
    code = main(["run", str(run_case.export_dir), "--model", str(tmp_path / "no-model"),
                 "--out", str(out), "--device", "cpu"])
    assert code == 2
    line = _one_line(capsys.readouterr().err)
    assert f"Output folder {out} cannot be used" in line


FULL_DISK = r"""
set -u
mount -t tmpfs -o size="$SIZE" tmpfs "$OUT" || exit 77
run() { "$PYTHON" -m triage run "$EXPORT" --model "$BUNDLE" --rules "$RULES" --out "$OUT" \
        --workers 2 --device cpu --json; }
run > /dev/null 2> "$RESULTS/first.err"; echo $? > "$RESULTS/first.code"
cp -a "$OUT" "$RESULTS/first"
mount -o remount,size=64m "$OUT"
run > /dev/null 2> "$RESULTS/second.err"; echo $? > "$RESULTS/second.code"
cp -a "$OUT" "$RESULTS/second"
"""


def test_a_full_disk_stops_the_run_and_the_rerun_redoes_the_studies(run_case, tiny_model,
                                                                    rules_path, tmp_path):
    # A real full disk: --out is a tmpfs too small for the run, in a private mount
    # namespace (root only), then grown for the rerun.
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) to mount a small tmpfs")
    out, results = tmp_path / "out", tmp_path / "results"
    out.mkdir()
    results.mkdir()
    env = os.environ | {"PYTHONPATH": str(ROOT), "PYTHON": sys.executable, "SIZE": "24k",
                        "OUT": str(out), "RESULTS": str(results),
                        "EXPORT": str(run_case.export_dir),
                        "BUNDLE": str(tiny_model.bundle_dir), "RULES": str(rules_path)}
    done = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                           FULL_DISK], env=env, cwd=ROOT, capture_output=True, timeout=400)
    if done.returncode == 77:
        pytest.skip("cannot mount a tmpfs here")
    assert done.returncode == 0, done.stderr.decode()
    first_err = (results / "first.err").read_text(encoding="utf-8")
    assert (results / "first.code").read_text().strip() == "3", first_err
    assert "Traceback" not in first_err
    last = first_err.strip().splitlines()[-1]
    assert last.startswith("error: The run stopped:") and "(ENOSPC)" in last, first_err
    assert "rerun the same command to resume" in last
    journaled = [json.loads(line) for line in
                 (results / "first" / JOURNAL_NAME).read_bytes().splitlines()[1:]
                 if line.endswith(b"}")]
    assert len(journaled) < 7
    assert not any("space" in row["reasons"].lower() for row in journaled)

    assert (results / "second.code").read_text().strip() == "0", \
        (results / "second.err").read_text(encoding="utf-8")
    rows = read_worklist(results / "second" / WORKLIST_NAME)
    assert len(rows) == 7
    assert not any("space" in row.reasons.lower() for row in rows)
    assert sum(row.route == "failed" for row in rows) == 2  # the corrupt and the short one


FULL_STORES = r"""
set -u
mount -t tmpfs -o size=8k tmpfs "$OUT" || exit 77
MLFLOW_TRACKING_URI="sqlite:///$OUT/mlflow.db" "$PYTHON" -m triage rollback --name m \
    2> "$RESULTS/mlflow.err"; echo $? > "$RESULTS/mlflow.code"
rm -f "$OUT"/*
"$PYTHON" -c 'import sys
from triage.feedback.store import LabelStore
from triage.errors import EnvironmentalError
try:
    LabelStore(sys.argv[1])
except EnvironmentalError as err:
    print(err)' "$OUT/labels.db" > "$RESULTS/store.out" 2>&1
"""


def test_sqlite_stores_on_a_full_disk_are_the_machines_failure(tmp_path):
    """SQLite says "database or disk is full" as an OperationalError: the tracking store
    gave a 90-line traceback (exit 2), the label store a traceback or 'pass another label
    store path'."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) to mount a small tmpfs")
    out, results = tmp_path / "out", tmp_path / "results"
    out.mkdir()
    results.mkdir()
    env = os.environ | {"PYTHONPATH": str(ROOT), "PYTHON": sys.executable, "OUT": str(out),
                        "RESULTS": str(results)}
    done = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                           FULL_STORES], env=env, cwd=tmp_path, capture_output=True,
                          timeout=300)
    if done.returncode == 77:
        pytest.skip("cannot mount a tmpfs here")
    err = (results / "mlflow.err").read_text(encoding="utf-8")
    assert (results / "mlflow.code").read_text().strip() == "3", err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "database or disk is full" in errors[0], err
    assert "cannot be written (database or disk is full); free the disk" in \
        (results / "store.out").read_text(encoding="utf-8")


class _OutOfMemory:
    """The real bundle whose device runs out of memory after `good` forward passes."""

    def __init__(self, bundle, good: int) -> None:
        self._bundle, self._good = bundle, good

    def __getattr__(self, name):
        return getattr(self._bundle, name)

    def predict_proba(self, arrays, **kw):
        if self._good <= 0:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self._good -= 1
        return self._bundle.predict_proba(arrays, **kw)


def test_a_failing_device_stops_the_run_and_the_rerun_scores_the_rest(run_case, tiny_model,
                                                                      router, tmp_path):
    from triage.registry.bundle import load_bundle

    bundle = load_bundle(tiny_model.bundle_dir)
    out = tmp_path / "out"
    with pytest.raises(EnvironmentalError, match=r"The run stopped: Inference on cpu "
                                                 r"failed: RuntimeError: CUDA out of memory"):
        run_export(run_case.export_dir, out, bundle=_OutOfMemory(bundle, good=1),
                   router=router, workers=1, batch_size=2, device="cpu")
    journaled = (out / JOURNAL_NAME).read_text(encoding="utf-8")
    assert "out of memory" not in journaled
    result = run_export(run_case.export_dir, out, bundle=bundle, router=router, workers=1,
                        batch_size=2, device="cpu")
    assert len(result.rows) == 7 and result.processed == 7 - result.resumed
    assert sum(r.route == "failed" for r in result.rows) == 2  # the corrupt and short one
    assert all(r.p_calibrated for r in result.rows if r.ingest_status == "ok")


def _die(*_: object, **__: object) -> None:
    os._exit(3)  # the worker is gone, as when the machine kills it (a memory limit)


def test_workers_that_die_on_any_task_stop_the_run_and_fail_no_study(run_case, tiny_model,
                                                                     router, tmp_path,
                                                                     monkeypatch):
    from triage.ingest import stream
    from triage.registry.bundle import load_bundle

    bundle = load_bundle(tiny_model.bundle_dir)
    out = tmp_path / "out"
    monkeypatch.setattr(stream, "ingest_study", _die)
    monkeypatch.setattr(stream, "_alive", _die)
    with pytest.raises(EnvironmentalError, match=r"The run stopped: ingest worker processes "
                                                 r"die or hang even on a task that reads no study"):
        run_export(run_case.export_dir, out, bundle=bundle, router=router, workers=2,
                   batch_size=2, device="cpu")
    journal = out / JOURNAL_NAME
    assert "worker process died" not in (journal.read_text(encoding="utf-8")
                                         if journal.exists() else "")
    monkeypatch.undo()  # the machine mended: the rerun ingests every study
    result = run_export(run_case.export_dir, out, bundle=bundle, router=router, workers=2,
                        batch_size=2, device="cpu")
    assert len(result.rows) == 7
    assert sum(r.route == "failed" for r in result.rows) == 2  # the corrupt and short one


STREAM = """
import sys, time
from pathlib import Path
from triage.dicom.scan.grouping import group_studies
from triage.dicom.scan.scan import scan_export
from triage.ingest.config import IngestConfig
from triage.ingest.stream import stream_ingest
from triage.train.tiny import INGEST

studies = group_studies(scan_export(Path(sys.argv[1])))
for _ in stream_ingest(studies, IngestConfig.from_dict(INGEST), Path(sys.argv[2]),
                       workers=2, background=True):
    print("ingesting", flush=True)
    time.sleep(600)  # killed here, its workers alive and waiting for more work
"""


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _descendants(pid: int) -> set[int]:
    """Every process below `pid`: the workers are the forkserver's children, not its."""
    found, todo = set(), [pid]
    while todo:
        children = _children(todo.pop())
        found |= children
        todo.extend(children)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its reaper is missing


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs /proc")
def test_ingest_workers_exit_when_their_parent_is_killed(run_case, tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", STREAM, str(run_case.export_dir),
                             str(tmp_path / "cache")], cwd=ROOT, stdout=subprocess.PIPE,
                            env=os.environ | {"PYTHONPATH": str(ROOT)},
                            start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == b"ingesting"
        workers = _descendants(proc.pid)
        assert len(workers) >= 2 + 1  # the two workers and the forkserver at least
        proc.kill()  # SIGKILL to the parent alone: no chance to shut its pool down
        proc.wait(timeout=30)
        deadline = time.monotonic() + 5
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [w for w in workers if _alive(w)] == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the group


def test_an_unreachable_tracking_server_fails_fast_in_one_line(run_case, tmp_path):
    import socket

    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = os.environ | {"PYTHONPATH": str(ROOT),
                        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}
    env.pop("MLFLOW_HTTP_REQUEST_MAX_RETRIES", None)
    env.pop("MLFLOW_HTTP_REQUEST_TIMEOUT", None)
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "triage", "run", str(run_case.export_dir),
                           "--model", "models:/x@champion", "--out", str(tmp_path / "out"),
                           "--device", "cpu"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=90)
    assert time.monotonic() - start < 60
    assert done.returncode == 3, done.stderr
    line = _one_line(done.stderr)
    assert line.startswith(f"error: The MLflow tracking server http://127.0.0.1:{port} "
                           f"cannot be reached (Connection refused (ECONNREFUSED))")


def test_evaluate_refuses_an_ingest_made_with_another_preprocessing(tiny_model, tmp_path,
                                                                    capsys):
    from triage.data.synth import SynthConfig, generate_export
    from triage.engines.runner import ingest_export
    from triage.ingest.config import IngestConfig
    from triage.train.tiny import DEVICES, INGEST

    export = generate_export(tmp_path / "export", SynthConfig(
        studies=6, seed=4, slices=8, matrix=32, devices=DEVICES, thick_fraction=0.0,
        extras=False))
    other = INGEST | {"preprocess": {"target_spacing": [12, 12, 12],
                                     "target_shape": [8, 8, 8]}}
    ingest_export(export.out_dir, tmp_path / "ingest", IngestConfig.from_dict(other),
                  workers=1)
    code = main(["evaluate", "--manifest", str(export.manifest_path), "--ingest",
                 str(tmp_path / "ingest"), "--model", str(tiny_model.bundle_dir),
                 *[a for s in ("train", "val", "calib", "test") for a in ("--split", s)],
                 "--out", str(tmp_path / "eval")])
    assert code == 2
    line = _one_line(capsys.readouterr().err)
    assert "made with another preprocessing than the model's (target_shape [8, 8, 8] vs " \
           "[16, 16, 8]" in line
