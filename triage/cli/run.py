"""`triage run`: triage a PACS export with a model and rules into per-study worklists."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from triage.cli.options import ENGINE, JSON, MODEL_HELP, RAY_ADDRESS

if TYPE_CHECKING:
    from triage.route.rules import RuleSet

RECORDED_RULES = "rules.yaml"
log = logging.getLogger(__name__)


def _ruleset(rules: Path | None, bundle: Any, out: Path) -> tuple[RuleSet, str]:
    """The rules to route by, and where they came from (for the summary).

    --rules; else the rules recorded with the model (``bundle.rules``, validated as they
    are, with no YAML round trip; a copy goes to OUT/rules.yaml for the record); else
    triage/configs/rules/default.yaml.
    """
    from triage.route.rules import DEFAULT_RULES, RuleSet, load_rules

    if rules is not None:
        return load_rules(rules), str(rules)
    recorded = getattr(bundle, "rules", None)
    if isinstance(recorded, dict) and recorded:
        import yaml

        from triage.io import atomic_write_text

        ruleset = RuleSet.from_dict(recorded, source="the rules recorded with the model")
        path = out / RECORDED_RULES
        atomic_write_text(path, yaml.safe_dump(recorded, sort_keys=False))
        return ruleset, str(path)
    return load_rules(DEFAULT_RULES), str(DEFAULT_RULES)


def _active_alarms(path: Path | None) -> dict[str, tuple[str, ...]]:
    """Device group -> active alarm descriptions of the alarm file (none without one).

    An alarm file that does not exist yet is the normal state before the first `triage
    monitor` (docs/monitoring.md): no alarm is active, and a warning says so, since a
    mistyped path would otherwise turn the stop-rule off unnoticed.
    """
    if path is None:
        return {}
    from triage.monitor.alarms import AlarmState

    if not path.exists():
        log.warning("Alarm file %s does not exist yet: no drift alarm is active (`triage "
                    "monitor --alarms %s` creates it).", path, path)
    return AlarmState.load(path).active_by_group()


def _table(title: str, counts: dict[str, Any], routes: list[str]):
    from rich.table import Table

    table = Table(title=title)
    table.add_column("device group" if routes else "route")
    for route in routes or ["studies"]:
        table.add_column(route, justify="right")
    for name, value in counts.items():
        cells = [str(value.get(r, 0)) for r in routes] if routes else [str(value)]
        table.add_row(name, *cells)
    return table


def run(
    source: str = typer.Argument(...,
                                     help="PACS export folder (DICOMDIR optional), or a "
                                          "DICOMweb base URL http(s)://HOST:PORT/dicom-web "
                                          "(docs/pacs.md)."),
    model: str = typer.Option(..., "--model", "-m", help=MODEL_HELP),
    out: Path = typer.Option(..., "--out", "-o",
                             help="Output: worklist.csv, review_worklist.csv, journal.jsonl, "
                                  "run_summary.json, cache/. Rerun to resume."),
    rules: Path = typer.Option(None, "--rules", "-r",
                               help="Rules YAML (default: the rules recorded with the model, "
                                    "else triage/configs/rules/default.yaml)."),
    workers: int = typer.Option(0, "--workers", "-j", min=0,
                                help="Ingest worker processes (0 = one per CPU)."),
    batch_size: int = typer.Option(4, "--batch-size", help="Volumes per forward pass."),
    device: str = typer.Option("auto", "--device",
                               help="Inference device: auto, cpu, cuda, cuda:1, mps."),
    runtime: str = typer.Option(None, "--runtime",
                                help="Inference engine: torch, or onnx (ONNX Runtime on the "
                                     "graph `triage export` added; CUDA where present). "
                                     "Default: the one the model's thresholds were fitted "
                                     "with."),
    json_summary: bool = JSON,
    audit_fraction: float = typer.Option(0.0, "--audit-fraction",
                                         help="Send this seeded random fraction (0-1) of the "
                                              "studies routed urgent or routine to review "
                                              "(rule id 'audit'; docs/calibration.md)."),
    audit_seed: int = typer.Option(0, "--audit-seed", help="Seed of the audit draw."),
    experiment: str = typer.Option("triage-runs", "--experiment",
                                   help="MLflow experiment the run is recorded in (tracking "
                                        "URI: MLFLOW_TRACKING_URI, else ./mlflow.db)."),
    alarms: Path = typer.Option(None, "--alarms", envvar="TRIAGE_ALARMS", dir_okay=False,
                                help="Alarm file of `triage monitor`: device groups with an "
                                     "active drift alarm go to review (docs/monitoring.md)."),
    study_date: str = typer.Option("", "--study-date",
                                   help="DICOMweb source: studies of this date range, "
                                        "YYYYMMDD-YYYYMMDD (an end may be left open), or "
                                        "of one day, YYYYMMDD."),
    modality: str = typer.Option("", "--modality",
                                 help="DICOMweb source: studies containing this modality."),
    study_uid: list[str] = typer.Option(None, "--study-uid",
                                        help="DICOMweb source: only this study, by Study "
                                             "Instance UID (repeatable)."),
    limit: int = typer.Option(None, "--limit", help="DICOMweb source: at most N studies."),
    report_to: str = typer.Option("", "--report-to",
                                  help="Send one DICOM SR per study to this PACS: "
                                       "http(s)://HOST:PORT/dicom-web (STOW-RS) or "
                                       "dicom://AET@HOST:PORT (C-STORE)."),
    engine: str = ENGINE,
    ray_address: str = RAY_ADDRESS,
) -> None:
    """Triage every study of SOURCE (a folder or a DICOMweb URL) into the worklists.

    One row per study, unreadable files included; rerun with the same --out to resume.

    Exit codes: 0 ok; 1 no study could be triaged; 2 bad argument or config; 3 the
    machine failed (disk, device, tracking server): fix it and rerun to resume.
    """
    import json

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from triage.engines import create_engine
    from triage.engines.threads import prefer_passive_openmp
    from triage.errors import ConfigError
    from triage.monitor.runlog import finish_run
    from triage.pacs.dicomweb import StudyFilter, is_dicomweb_url
    from triage.registry.experiment import check_experiment_name

    prefer_passive_openmp()  # before the model loads torch
    remote = is_dicomweb_url(source)
    filters = StudyFilter(study_date, modality.upper(), tuple(study_uid or ()), limit)
    if not remote and filters != StudyFilter():
        raise ConfigError("--study-date, --modality, --study-uid and --limit select studies "
                          "of a DICOMweb source; SOURCE is a folder.")
    if not remote and not Path(source).is_dir():
        raise ConfigError(f"Export folder {source} does not exist or is not a folder.")
    sink = None
    if report_to:
        from triage.pacs.report import create_sink

        sink = create_sink(report_to)  # a bad destination is a usage error, before any work
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}.")
    check_experiment_name(experiment, "--experiment")  # MLflow checks it after the studies
    if remote and engine != "local":
        raise ConfigError(f"--engine {engine} runs folder exports; a DICOMweb source is "
                          f"pulled and triaged on this machine (--engine local).")
    if remote:
        from triage.pacs.dicomweb import DicomwebSource

        dicomweb = DicomwebSource(source, filters)  # a malformed URL: before any work
    runner = create_engine(engine, workers=workers or None, ray_address=ray_address)
    runner.start()  # Ray's start-up overlaps the imports below and loading the model
    from triage.io import prepare_out_dir
    from triage.route import Router
    from triage.route.audit import check_fraction, with_audit
    from triage.run.model import load_model
    from triage.run.pipeline import run_export

    check_fraction(audit_fraction)
    # Before the model download and any ingest. Where the engine's workers run the model
    # (Ray), they pick their devices, and this process needs neither torch nor the tensors.
    in_driver = remote or runner.scores_in_driver
    if in_driver:
        from triage.model.device import select_device  # imports torch: after the OpenMP hint

        select_device(device, option="--device")
    else:
        from triage.model.config import check_device_name

        check_device_name(device, option="--device")
    active = _active_alarms(alarms)  # a bad alarm file: before the model download
    if rules is not None:
        from triage.route.rules import load_rules

        load_rules(rules)  # a bad --rules file too (read again once the model is known)
    prepare_out_dir(out)
    loaded = load_model(model, decode_weights=in_driver)
    loaded.bundle.check_runtime(runtime)  # before any ingest
    ruleset, rules_source = _ruleset(rules, loaded.bundle, out)
    # No fitted thresholds (a bundle from before routing): every scored study is reviewed.
    thresholds = getattr(loaded.bundle, "routing", None) or {}
    router = Router(ruleset, thresholds, loaded.bundle.train_devices)
    if active:
        router = router.with_alarms(active)
    router = with_audit(router, audit_fraction, audit_seed)

    console = Console(stderr=True)
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True,
                  disable=json_summary) as bar:
        task = bar.add_task("scanning", total=None)

        def on_study(done: int, total: int, _row) -> None:
            bar.update(task, description="triaging", completed=done, total=total)

        if remote:
            from triage.pacs.pull import run_source

            result = run_source(dicomweb, out,
                                bundle=loaded.bundle, router=router,
                                workers=workers or None, batch_size=batch_size,
                                progress=on_study, model_name=loaded.name,
                                model_version=loaded.version, device=device,
                                runtime=runtime)
        else:
            with runner:
                result = run_export(Path(source), out, bundle=loaded.bundle, router=router,
                                    batch_size=batch_size, progress=on_study,
                                    model_name=loaded.name, model_version=loaded.version,
                                    device=device, runtime=runtime, engine=runner)
        if sink is not None:
            bar.update(task, description="reporting")
            from triage.pacs.report import send_reports

            result.summary["reports"] = send_reports(
                result.rows, out, sink, export_dir=None if remote else Path(source))

    # The worklists are written: a tracking failure from here on loses none of them.
    finished = finish_run(out, result.rows, result.summary,
                          reference=getattr(loaded.bundle, "score_reference", None),
                          alarms=tuple(a for v in active.values() for a in v),
                          experiment=experiment)
    summary = result.summary | {"worklist": str(result.worklist_path),
                                "report": str(finished.report_path),
                                "mlflow_run_id": finished.record.run_id,
                                "review_worklist": str(result.review_path),
                                "rules": rules_source}
    if json_summary:
        typer.echo(json.dumps(summary, indent=1))
    else:
        routes = ["urgent", "routine", "review", "failed"]
        routes += sorted(set(summary["route"]) - set(routes))
        show = Console()
        show.print(_table("Studies per route", summary["route"], []))
        show.print(_table("Routes per device group", summary["device_group"], routes))
        typer.echo(f"worklist: {result.worklist_path}\nreview: {result.review_path}\n"
                   f"{len(result.rows)} studies ({result.resumed} from an earlier run) in "
                   f"{result.seconds:.1f} s; model {loaded.name} {loaded.version}, rules "
                   f"{router.version}")
        typer.echo(f"report: {finished.report_path}\nMLflow run: {finished.record.run_id} "
                   f"(experiment {experiment})")
        if active:
            typer.secho(f"drift alarms active: {', '.join(sorted(active))} sent to review "
                        f"(clear with `triage monitor clear`)", fg=typer.colors.YELLOW, err=True)
    if result.all_failed:
        none_found = (f"The DICOMweb query ({filters.describe()}) found no study." if remote
                      else "No DICOM study found in the export.")
        typer.secho("No study could be triaged." if result.rows else none_found,
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("run")(run)
