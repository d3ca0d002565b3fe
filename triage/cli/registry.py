"""`triage register`, `triage promote`, `triage rollback`: the MLflow model registry workflow."""

from __future__ import annotations

from pathlib import Path

import typer

from triage.cli.options import INGEST, JSON, MANIFEST, echo_json, renamed

NAME = typer.Option(..., "--name", "-n", help="Registered model name.")


def register_cmd(
    run_id: str = typer.Option(..., "--run-id", help="MLflow run of `triage train`."),
    name: str = NAME,
    json_summary: bool = JSON,
) -> None:
    """Register a training run's model bundle as a new version of NAME."""
    from triage.registry.promotion import register_version

    version = register_version(run_id, name)
    if json_summary:
        echo_json({"name": name, "version": version, "uri": f"models:/{name}/{version}"})
        return
    typer.echo(f"registered {name} version {version} (models:/{name}/{version})")


def promote_cmd(
    name: str = NAME,
    version: str = typer.Option(..., "--model-version", help="Challenger version."),
    manifest: Path = MANIFEST,
    ingest: Path = INGEST,
    gates: Path = typer.Option(None, "--gates", exists=True, dir_okay=False,
                               help="Gate tolerances (default "
                                    "triage/configs/promotion/default.yaml)."),
    split: list[str] = typer.Option([], "--split",
                                    help="Only these manifest splits (default: all rows)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the verdict, change nothing."),
    json_summary: bool = JSON,
) -> None:
    """Gate the challenger against @champion; promote it only if every gate passes.

    Exit code 0: promoted (or would be, with --dry-run); 1: a gate failed, nothing changed.
    """
    from triage.data.manifest import check_splits
    from triage.registry.gates import GateConfig, report_markdown
    from triage.registry.promotion import promote

    check_splits(split)  # before the registry is contacted
    result = promote(name, version, manifest_path=manifest, ingest_dir=ingest,
                     gates=GateConfig.from_yaml(gates), splits=tuple(split), dry_run=dry_run)
    if json_summary:
        echo_json({"name": name, "version": version, "champion": result.champion,
                    "passed": result.passed, "promoted": result.promoted,
                    "dry_run": dry_run, "report_uri": result.report_uri,
                    "gates": result.report.to_dict("records")})
        if not result.passed:
            raise typer.Exit(1)
        return
    typer.echo(report_markdown(result.report))
    against = f"champion v{result.champion}" if result.champion else "no champion yet"
    if not result.passed:
        typer.echo(f"\nrefused: {name} v{version} failed a gate ({against}); nothing changed. "
                   f"Report: {result.report_uri}")
        raise typer.Exit(1)
    verb = "would promote" if dry_run else "promoted"
    typer.echo(f"\n{verb} {name} v{version} to @champion ({against}). "
               f"Report: {result.report_uri}")


def rollback_cmd(name: str = NAME, json_summary: bool = JSON) -> None:
    """Give @champion back to the @previous version."""
    from triage.registry.promotion import rollback

    old, new = rollback(name)
    if json_summary:
        echo_json({"name": name, "from_version": old, "to_version": new})
        return
    typer.echo(f"{name}: @champion moved from v{old or '-'} back to v{new}")


def register(app: typer.Typer) -> None:
    app.command("register")(register_cmd)
    app.command("promote", cls=renamed({"--version": "--model-version",
                                        "-v": "--model-version",
                                        "-m": "--manifest"}))(promote_cmd)
    app.command("rollback")(rollback_cmd)
