"""`triage manifest validate`: check a data manifest and report every bad row."""

from __future__ import annotations

from pathlib import Path

import typer

from triage.cli.options import JSON, echo_json

manifest_app = typer.Typer(help="Data manifests: validate against the documented schema.",
                           no_args_is_help=True)


@manifest_app.command("validate")
def validate(
    path: Path = typer.Argument(..., exists=True, dir_okay=False,
                                help="Manifest CSV (see docs/data_manifests.md)."),
    json_summary: bool = JSON,
) -> None:
    """Validate a manifest; exits 2 and lists every problem when it is invalid."""
    from triage.data.manifest import read_manifest

    df = read_manifest(path)
    by_split = df.groupby("split").size().to_dict()
    if json_summary:
        echo_json({"manifest": path, "valid": True, "studies": len(df),
                   "patients": df["patient_key"].nunique(),
                   "device_groups": df["device_group"].nunique(), "splits": by_split,
                   "prevalence": round(float(df["label"].mean()), 6)})
        return
    typer.echo(
        f"{path}: valid, {len(df)} studies, {df['patient_key'].nunique()} patients, "
        f"{df['device_group'].nunique()} device groups, splits {by_split}, "
        f"prevalence {df['label'].mean():.3f}"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(manifest_app, name="manifest")
