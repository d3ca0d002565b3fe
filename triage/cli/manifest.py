"""`triage manifest`: validate a manifest, build one from an export and labels, summarize it.

The logic is in `triage.data.manifest`, `triage.data.manifest_build` and
`triage.data.manifest_summary`; this module parses options and prints.
"""

from __future__ import annotations

from pathlib import Path

import typer

from triage.cli.options import JSON, echo_json
from triage.data.labels import DEFAULT_NEGATIVE_VALUES, DEFAULT_POSITIVE_VALUES
from triage.data.pseudonym import DEFAULT_SECRET_FILE

manifest_app = typer.Typer(help="Data manifests: build from an export and labels, validate, "
                                "summarize.",
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


@manifest_app.command("build")
def build(
    export: Path = typer.Argument(..., exists=True, file_okay=False,
                                  help="The PACS export folder (scanned as ingest scans it)."),
    labels: Path = typer.Option(..., "--labels", exists=True, dir_okay=False,
                                help="Labels CSV (UTF-8): a key column and a label column."),
    out: Path = typer.Option(..., "--out", "-o", dir_okay=False,
                             help="Manifest CSV to write; an existing one is extended "
                                  "(its rows and splits never change)."),
    key: str = typer.Option("accession", "--key",
                            help="What the labels' key column holds: accession or study_uid."),
    key_column: str = typer.Option(None, "--key-column",
                                   help="Key column name (default: accession_number / "
                                        "accession, or study_uid)."),
    label_column: str = typer.Option("label", "--label-column", help="Label column name."),
    positive_values: str = typer.Option(",".join(DEFAULT_POSITIVE_VALUES), "--positive-values",
                                        help="Comma-separated label values meaning 1."),
    negative_values: str = typer.Option(",".join(DEFAULT_NEGATIVE_VALUES), "--negative-values",
                                        help="Comma-separated label values meaning 0; any "
                                             "other value is reported and its row left out."),
    splits: str = typer.Option(None, "--splits",
                               help="Split fractions by patient, summing to 1 (default: "
                                    "train=0.6,val=0.1,calib=0.15,test=0.15)."),
    seed: int = typer.Option(0, "--seed", help="Orders patients within each stratum."),
    secret_file: Path = typer.Option(DEFAULT_SECRET_FILE, "--secret-file", dir_okay=False,
                                     help="Secret of the patient_key hash; created (0600) if "
                                          "missing. Keep it out of the export and MLflow."),
    config: Path = typer.Option(None, "--config", exists=True, dir_okay=False,
                                help="Ingest config whose selection rules pick the series "
                                     "that names the device group (default: the shipped one)."),
    json_summary: bool = JSON,
) -> None:
    """Build a manifest from EXPORT and a labels file; findings (unlabelled studies,
    unknown label values, conflicts...) are reported with counts and first examples.
    Exits 2 when the labels file or an option cannot be used."""
    from triage.data.labels import LabelSpec
    from triage.data.manifest_build import build_manifest
    from triage.data.splitting import DEFAULT_SPLITS
    from triage.io import check_out_file

    check_out_file(out, "--out")
    check_out_file(secret_file, "--secret-file")
    selection = None
    if config is not None:
        from triage.ingest.config import IngestConfig

        selection = IngestConfig.from_yaml(config).selection
    spec = LabelSpec(key=key, key_column=key_column, label_column=label_column,
                     positive_values=positive_values, negative_values=negative_values)
    df, report = build_manifest(export, labels, out=out, spec=spec,
                                splits=splits or DEFAULT_SPLITS, seed=seed,
                                secret_file=secret_file, selection=selection)
    by_split = df.groupby("split").size().to_dict()
    if json_summary:
        echo_json(report.to_dict() | {"studies": len(df),
                                      "patients": df["patient_key"].nunique(),
                                      "splits": by_split})
        return
    typer.echo(f"{out}: {len(df)} studies ({report.studies_new} new, {report.studies_kept} "
               f"kept) of {report.studies_in_export} in the export, "
               f"{df['patient_key'].nunique()} patients, splits {by_split}")
    for line in report.lines():
        typer.echo(line, err=True)


@manifest_app.command("summary")
def summary(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, help="Manifest CSV."),
    alpha: float = typer.Option(None, "--alpha", min=1e-6, max=0.5,
                                help="Largest tolerated miss rate of the routine route "
                                     "(default: the thresholds default, 0.01)."),
    delta: float = typer.Option(None, "--delta", min=1e-6, max=0.5,
                                help="Failure probability of a pac guarantee (default: the "
                                     "thresholds default, 0.05)."),
    json_summary: bool = JSON,
) -> None:
    """Studies and positives per device group and split, and whether each group's calib
    split has the positives the pac and marginal guarantees need."""
    from triage.data.manifest import read_manifest
    from triage.data.manifest_summary import format_summary, summarize_manifest

    groups = summarize_manifest(read_manifest(path), alpha, delta)
    if json_summary:
        echo_json({"manifest": path, "alpha": groups[0].alpha, "delta": groups[0].delta,
                   "device_groups": [g.to_dict() for g in groups]})
        return
    typer.echo("\n".join(format_summary(groups)))


def register(app: typer.Typer) -> None:
    app.add_typer(manifest_app, name="manifest")
