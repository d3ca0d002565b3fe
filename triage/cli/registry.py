"""`triage register`, `triage promote`, `triage rollback`: the MLflow model registry workflow."""

from __future__ import annotations

from pathlib import Path

import typer

NAME = typer.Option(..., "--name", "-n", help="Registered model name.")


def register_cmd(
    run_id: str = typer.Option(..., "--run-id", help="MLflow run of `triage train`."),
    name: str = NAME,
) -> None:
    """Register a training run's model bundle as a new version of NAME."""
    from triage.registry.promotion import register_version

    version = register_version(run_id, name)
    typer.echo(f"registered {name} version {version} (models:/{name}/{version})")


def promote_cmd(
    name: str = NAME,
    version: str = typer.Option(..., "--version", "-v", help="Challenger version."),
    manifest: Path = typer.Option(..., "--manifest", "-m", help="Promotion manifest CSV."),
    ingest: Path = typer.Option(..., "--ingest", "-i",
                                help="`triage ingest` output of the promotion export."),
    gates: Path = typer.Option(None, "--gates",
                               help="Gate tolerances (default pipelines/promotion/default.yaml)."),
    split: list[str] = typer.Option([], "--split",
                                    help="Only these manifest splits (default: all rows)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the verdict, change nothing."),
) -> None:
    """Gate the challenger against @champion; promote it only if every gate passes.

    Exit code 0: promoted (or would be, with --dry-run); 1: a gate failed, nothing changed.
    """
    from triage.registry.gates import GateConfig, report_markdown
    from triage.registry.promotion import promote

    result = promote(name, version, manifest_path=manifest, ingest_dir=ingest,
                     gates=GateConfig.from_yaml(gates), splits=tuple(split), dry_run=dry_run)
    typer.echo(report_markdown(result.report))
    against = f"champion v{result.champion}" if result.champion else "no champion yet"
    if not result.passed:
        typer.echo(f"\nrefused: {name} v{version} failed a gate ({against}); nothing changed. "
                   f"Report: {result.report_uri}")
        raise typer.Exit(1)
    verb = "would promote" if dry_run else "promoted"
    typer.echo(f"\n{verb} {name} v{version} to @champion ({against}). "
               f"Report: {result.report_uri}")


def rollback_cmd(name: str = NAME) -> None:
    """Give @champion back to the @previous version."""
    from triage.registry.promotion import rollback

    old, new = rollback(name)
    typer.echo(f"{name}: @champion moved from v{old or '-'} back to v{new}")


def register(app: typer.Typer) -> None:
    app.command("register")(register_cmd)
    app.command("promote")(promote_cmd)
    app.command("rollback")(rollback_cmd)
