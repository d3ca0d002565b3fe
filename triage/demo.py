"""`make demo`: the whole pipeline, end to end, on fresh synthetic exports, with one turn of
the review feedback loop.

A multi-device training export and a separate "incoming" export are generated. The
training manifest is built the way a site builds it: a labels CSV keyed by accession number
(as a hospital's RIS export would be) joined to the export by ``triage manifest build``.
The training export is ingested, a classifier is trained, calibrated and tracked in MLflow,
registered, gated and promoted to ``@champion``; ``triage run`` triages the incoming export
with a random audit; SIMULATED reader decisions (the generator's ground truth) for its review
worklist are imported into the label store; ``triage recalibrate`` registers a new version
on the audited sample, ``triage promote`` gates it, and a second ``triage run`` triages the
next incoming export with the new champion. Every step is a ``triage`` command, printed as it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from triage.cli import main as triage_main
from triage.configs import config_path
from triage.demo_files import write_accession_labels, write_simulated_decisions

INGEST_CONFIG = config_path("ingest", "synthetic")
TRAIN_CONFIG = config_path("train", "demo")
GATES = config_path("promotion", "demo")
# Marginal guarantee, per device where a device has enough calibration positives, else
# pooled where the shift check allows: certifies devices on the demo's small split.
RULES = config_path("rules", "demo")
MODEL_NAME = "triage-demo"
# The documented default difficulty of the synthetic task (docs/synthetic_data.md).
SYNTH_FLAGS: list[str] = ["--matrix", "128", "--slices", "40", "--lesion-size", "14,24",
                          "--lesion-contrast", "-90"]
# Render studies in two processes (the output does not depend on it): the demo's 2 cores.
SYNTH_WORKERS: list[str] = ["--workers", "2"]
# A larger calibration split than the default 15 %, so that the demo's devices have enough
# calibration positives and negatives to certify (docs/calibration.md, "Guarantee modes").
TRAIN_SPLITS = "train=0.5,val=0.1,calib=0.3,test=0.1"
# The random audit of the first run: a start-up share, so that one export yields a
# calibration sample (docs/feedback.md) larger than the training export's calibration split;
# the second run audits the steady-state share.
AUDIT_START = 0.5
AUDIT_STEADY = 0.1


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (synth workers)."""
    me, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _step(title: str, argv: list[str], *, ok_codes: tuple[int, ...] = (0,),
          capture: bool = False) -> tuple[int, str]:
    print(f"\n== {title}: triage {' '.join(argv)}", flush=True)
    start, cpu = time.perf_counter(), _cpu_seconds()
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer) if capture else contextlib.nullcontext():
        code = triage_main(argv)
    if code not in ok_codes:
        if capture:
            print(buffer.getvalue())
        raise SystemExit(f"demo step '{title}' failed with exit code {code}")
    print(f"   ({time.perf_counter() - start:.1f} s, {_cpu_seconds() - cpu:.0f} CPU s)",
          flush=True)
    return code, buffer.getvalue()


def _routed(summary: dict[str, Any]) -> int:
    routes = summary.get("route") or {}
    return int(routes.get("urgent", 0)) + int(routes.get("routine", 0))


def _worklist(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "worklist.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _show_run(summary: dict[str, Any], run_dir: Path) -> None:
    from triage.route.status import status_lines

    print("\nCertification of the model's routing thresholds:")
    print("\n".join(status_lines(summary["certification"])))
    print("\nRoutes of the incoming studies:")
    for route, count in sorted((summary.get("route") or {}).items()):
        print(f"  {route:8s} {count}")
    rows = _worklist(run_dir)
    reasons: dict[str, int] = {}
    for row in rows:
        if row["route"] == "review":
            key = (row.get("rule_ids") or "").split("; ")[0] or "?"
            reasons[key] = reasons.get(key, 0) + 1
    print("Review, by first rule: " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())))


EXPLANATION = """
In plain words (the demo rules; docs/calibration.md, "Guarantee modes"):
  urgent:  the probability is above the device's certified urgent threshold; read first.
  routine: below the certified routine threshold; on average <= 10 % of positives end here.
  review:  a reader decides (between thresholds, QC finding, uncertified device, audit).
  failed:  the study could not be read or scored; fix the export and send it again.
  The guarantee holds only while new studies resemble the calibration studies."""


def _train_and_promote(out: Path, train_export: Path, studies: int, seed: int,
                       epochs: int | None) -> tuple[Path, str]:
    """Synthesize, label, build, ingest, train, register and promote; returns the manifest
    and the model URI to triage with."""
    _step("synthetic training export", ["synth", str(train_export), "--studies", str(studies),
                                        "--seed", str(seed), *SYNTH_FLAGS, *SYNTH_WORKERS])
    labels, manifest = out / "labels_by_accession.csv", out / "manifest.csv"
    n = write_accession_labels(train_export, labels)
    print(f"\n== labels keyed by accession, as a hospital's RIS export would be: {labels} "
          f"({n} rows: accession_number from the DICOM headers, label from the generator's "
          f"ground truth)")
    # A demo-only secret derived from the seed, so that the splits (and every figure after
    # them) repeat run to run; a site keeps a random one (`manifest build` creates it).
    secret = out / "patient-key.secret"
    secret.write_text(hashlib.sha256(f"triage-demo-{seed}".encode()).hexdigest() + "\n",
                      encoding="utf-8")
    secret.chmod(0o600)
    _step("build the training manifest from the export and the labels", [
        "manifest", "build", str(train_export), "--labels", str(labels), "--key", "accession",
        "--splits", TRAIN_SPLITS, "--secret-file", str(secret),
        "--config", str(INGEST_CONFIG), "--out", str(manifest)])
    _step("validate manifest", ["manifest", "validate", str(manifest)])
    _step("ingest training export", ["ingest", str(train_export), "--out",
                                     str(out / "ingest"), "--config", str(INGEST_CONFIG)])
    _, text = _step("train + calibrate + evaluate", [
        "train", "--manifest", str(manifest), "--ingest", str(out / "ingest"),
        "--config", str(TRAIN_CONFIG), "--out", str(out / "train"), "--run-name", "demo",
        "--rules", str(RULES),
        "--json", *(["--epochs", str(epochs)] if epochs else [])], capture=True)
    trained = json.loads(text)
    _, text = _step("register", ["register", "--run-id", trained["run_id"], "--name",
                                 MODEL_NAME], capture=True)
    print(text.strip())
    code, gate_text = _promote("1", out, manifest)
    model = f"models:/{MODEL_NAME}@champion" if code == 0 else str(out / "train" / "bundle")
    if code:
        print(f"   the gates refused the model: triaging with the local bundle {model} instead")
    return manifest, model


def _promote(version: str, out: Path, manifest: Path) -> tuple[int, str]:
    code, text = _step(f"promote version {version} (gates on the training export's test "
                       f"split)", [
        "promote", "--name", MODEL_NAME, "--model-version", version, "--manifest",
        str(manifest), "--ingest", str(out / "ingest"), "--split", "test", "--gates",
        str(GATES)], ok_codes=(0, 1), capture=True)
    print(text.strip())
    return code, text


def _triage(title: str, export: Path, model: str, run_dir: Path, audit: float
            ) -> dict[str, Any]:
    _, text = _step(title, ["run", str(export), "--model", model, "--out", str(run_dir),
                            "--audit-fraction", str(audit), "--json"], capture=True)
    summary = json.loads(text)
    _show_run(summary, run_dir)
    return summary


def _feedback_turn(out: Path, incoming: Path, run_dir: Path, manifest: Path) -> bool:
    """Import SIMULATED decisions, recalibrate, promote; True when a new champion exists."""
    decisions = run_dir / "SIMULATED_reader_decisions.csv"
    n = write_simulated_decisions(run_dir / "review_worklist.csv", incoming, decisions)
    print(f"\n== SIMULATED reader decisions: {decisions} ({n} rows of the review worklist, "
          f"finding = the generator's ground truth; a site imports its readers' decisions)")
    store = out / "labels.sqlite"
    _, text = _step("import the (simulated) decisions into the label store", [
        "feedback", "import", str(decisions), "--run", str(run_dir), "--store", str(store)],
        capture=True)
    print(text.strip())
    _, text = _step("recalibrate the champion on the audited calibration sample", [
        "recalibrate", "--model", f"models:/{MODEL_NAME}@champion", "--labels", str(store),
        "--json"], capture=True)
    recal = json.loads(text)
    print(f"version {recal['version']}: {recal['n_labels']} labels ({recal['n_positive']} "
          f"positive), temperature {recal['parent_temperature']:.4g} -> "
          f"{recal['temperature']:.4g}; certified: "
          f"{', '.join(sorted(g for g, d in recal['devices'].items() if d['certified']))}")
    code, _ = _promote(str(recal["version"]), out, manifest)
    if code:
        print("   the gates refused the recalibrated version: the second run keeps version 1")
    return code == 0


def run(out: Path, studies: int, incoming: int, seed: int, epochs: int | None = None) -> None:
    """Run the demo into `out` (replaced)."""
    started = time.perf_counter()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    uri = os.environ.setdefault("MLFLOW_TRACKING_URI",
                                f"sqlite:///{(out / 'mlflow.db').resolve()}")
    train_export, incoming_export = out / "train_export", out / "incoming_export"
    manifest, model = _train_and_promote(out, train_export, studies, seed, epochs)
    _synth_incoming(incoming_export, incoming, seed + 1000, "")
    first = _triage(f"triage the incoming export, random audit of {AUDIT_START:g} (start-up)",
                    incoming_export, model, out / "run", AUDIT_START)
    promoted = model.startswith("models:/") and _feedback_turn(out, incoming_export,
                                                               out / "run", manifest)
    champion = "the recalibrated champion" if promoted else "the same model"
    _synth_incoming(out / "incoming_export_2", incoming, seed + 2000, " (the next batch)")
    second = _triage(f"triage the next batch with {champion}, random audit of "
                     f"{AUDIT_STEADY:g} (steady state)", out / "incoming_export_2", model,
                     out / "run2", AUDIT_STEADY)
    _compare(first, second, out)
    print(f"\nWorklists: {out / 'run' / 'worklist.csv'}, {out / 'run2' / 'worklist.csv'}\n"
          f"           (and review_worklist.csv beside each)\n"
          f"MLflow:    {uri}\n"
          f"  open the UI with: mlflow ui --backend-store-uri {uri}\n"
          f"Demo finished in {(time.perf_counter() - started) / 60:.1f} min "
          f"({_cpu_seconds() / 60:.1f} CPU min; 1-min load average {os.getloadavg()[0]:.1f})")
    print(EXPLANATION)


def _synth_incoming(export: Path, studies: int, seed: int, what: str) -> None:
    _step(f"synthetic incoming export{what}", ["synth", str(export), "--studies", str(studies),
                                               "--seed", str(seed), *SYNTH_FLAGS,
                                               *SYNTH_WORKERS])


def _compare(first: dict[str, Any], second: dict[str, Any], out: Path) -> None:
    a, b = _routed(first), _routed(second)
    verdict = "more" if b > a else "not more"
    print(f"\nRouted urgent or routine: first run {a} of {first['studies']} (version "
          f"{first.get('model_version')}, audit {AUDIT_START:g}), second run {b} of "
          f"{second['studies']} (version {second.get('model_version')}, audit "
          f"{AUDIT_STEADY:g}): {verdict}.")
    # Separate the new version from the lower audit share: an audited study is one the
    # rules would have routed urgent or routine.
    audited = [sum(r["rule_ids"].split("; ")[0] == "audit" for r in _worklist(out / d))
               for d in ("run", "run2")]
    print(f"Without the audit the rules would have routed {a + audited[0]} of the first batch "
          f"(version {first.get('model_version')}) and {b + audited[1]} of the next (version "
          f"{second.get('model_version')}).")
    (out / "loop_summary.json").write_text(json.dumps(
        {"first": {"routed": a, "audited": audited[0], "route": first.get("route"),
                   "model_version": first.get("model_version"), "audit": AUDIT_START},
         "second": {"routed": b, "audited": audited[1], "route": second.get("route"),
                    "model_version": second.get("model_version"), "audit": AUDIT_STEADY}},
        indent=1), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo_output"))
    parser.add_argument("--studies", type=int, default=300, help="training export studies")
    parser.add_argument("--incoming", type=int, default=240, help="incoming export studies")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=None,
                        help="override the demo config's epochs (e.g. 1 for a smoke run)")
    args = parser.parse_args(argv)
    run(args.out, args.studies, args.incoming, args.seed, args.epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
