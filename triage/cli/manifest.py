"""`triage manifest validate`: check a data manifest and report every bad row."""

from __future__ import annotations

from pathlib import Path

import typer

manifest_app = typer.Typer(help="Data manifests: validate against the documented schema.",
                           no_args_is_help=True)


@manifest_app.command("validate")
def validate(
    path: Path = typer.Argument(..., help="Manifest CSV (see docs/data_manifests.md)."),
) -> None:
    """Validate a manifest; exits 2 and lists every problem when it is invalid."""
    from triage.data.manifest import read_manifest

    df = read_manifest(path)
    by_split = df.groupby("split").size().to_dict()
    typer.echo(
        f"{path}: valid, {len(df)} studies, {df['patient_key'].nunique()} patients, "
        f"{df['device_group'].nunique()} device groups, splits {by_split}, "
        f"prevalence {df['label'].mean():.3f}"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(manifest_app, name="manifest")
