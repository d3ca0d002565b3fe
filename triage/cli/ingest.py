"""`triage ingest`: scan a PACS export, build and cache one volume per study, report all."""

from __future__ import annotations

from pathlib import Path

import typer

from triage.cli.options import ENGINE, JSON, RAY_ADDRESS


def ingest(
    export_dir: Path = typer.Argument(..., help="PACS export folder (DICOMDIR optional)."),
    out: Path = typer.Option(..., "--out", "-o",
                             help="Output: cache/, ingest_report.csv, device_stats.json."),
    config: Path = typer.Option(None, "--config", "-c", exists=True, dir_okay=False,
                                help="Ingest config YAML (default "
                                     "triage/configs/ingest/default.yaml)."),
    workers: int = typer.Option(0, "--workers", "-j", min=0,
                                help="Worker processes (0 = one per CPU)."),
    json_summary: bool = JSON,
    engine: str = ENGINE,
    ray_address: str = RAY_ADDRESS,
) -> None:
    """Ingest every study of EXPORT_DIR; each study gets exactly one report row."""
    import json

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
    from rich.table import Table

    from triage.engines import create_engine
    from triage.engines.runner import ingest_export
    from triage.errors import ConfigError
    from triage.ingest.config import IngestConfig
    from triage.io import prepare_out_dir

    if not export_dir.is_dir():
        raise ConfigError(f"Export folder {export_dir} does not exist or is not a folder.")
    cfg = IngestConfig.from_yaml(config)
    runner = create_engine(engine, workers=workers or None, ray_address=ray_address)
    prepare_out_dir(out)  # after every check of the options: nothing is created before
    console = Console(stderr=True)
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True,
                  disable=json_summary) as bar:
        task = bar.add_task("scanning", total=None)

        def on_study(done: int, total: int, _report) -> None:
            bar.update(task, description="ingesting", completed=done, total=total)

        with runner:
            result = ingest_export(export_dir, out, cfg, progress=on_study, engine=runner)

    if json_summary:
        typer.echo(json.dumps(result.summary, indent=1))
    else:
        # No export path in the title: export folders are often named after the patient.
        table = Table(title=f"Ingest of {result.summary['files']} files")
        table.add_column("what")
        table.add_column("count", justify="right")
        for section in ("status", "verdict", "device_group", "failed_stage"):
            for name, count in sorted(result.summary[section].items()):
                table.add_row(f"{section}: {name}", str(count))
        table.add_row("non-DICOM files ignored", str(result.non_dicom))
        table.add_row("links outside the export (not followed)",
                      str(result.summary["links_outside_export"]))
        Console().print(table)
        typer.echo(f"report: {result.report_path}\ncache: {result.cache_dir}\n"
                   f"{len(result.reports)} studies in {result.total_seconds:.1f} s")
    failed = result.summary["status"].get("failed", 0)
    if failed and failed == len(result.reports):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
