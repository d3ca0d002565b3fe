"""`triage feedback import` and `triage recalibrate`: the review feedback loop."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from triage.cli.options import JSON

feedback_app = typer.Typer(help="Readers' decisions back into the label store.",
                           no_args_is_help=True)


@feedback_app.command("import")
def import_cmd(
    reviewed: Path = typer.Argument(
        ..., exists=True, dir_okay=False,
        help="Reviewed worklist CSV: study_uid and finding (positive/negative), optional "
             "reader, read_date."),
    run: Path = typer.Option(..., "--run", exists=True, file_okay=False,
                             help="The `triage run` --out folder that produced the worklist."),
    store: Path = typer.Option(..., "--store", help="Label store (SQLite; created if "
                                                    "missing)."),
    json_out: bool = JSON,
) -> None:
    """Store the readers' decisions, joined with the run's journal, in the label store.

    Exit codes: 0 imported; 1 imported, but some decisions conflict with stored labels
    (listed; the stored labels are kept); 2 bad file (one line naming file, row, column).
    """
    from triage.feedback.importer import import_reviews
    from triage.io import check_out_file

    check_out_file(store, "--store")
    result = import_reviews(reviewed, run, store)
    if json_out:
        typer.echo(json.dumps(result.to_dict(), indent=1))
    else:
        typer.echo(f"{result.added} labels added ({result.audit} from the random audit, "
                   f"{result.sampled} in the calibration sample), {result.unchanged} already "
                   f"stored, {result.undecided} rows not decided yet, "
                   f"{len(result.conflicts)} conflicts.")
        for c in result.conflicts:
            typer.echo(f"conflict: study {c.study_uid} (model version {c.model_version}) is "
                       f"stored as {_finding(c.stored_finding)}; row {c.source_row} says "
                       f"{_finding(c.new_finding)}")
    if result.conflicts:
        typer.secho(f"{len(result.conflicts)} decisions conflict with stored labels and were "
                    f"not stored; resolve them with the readers.", fg=typer.colors.RED,
                    err=True)
        raise typer.Exit(1)


def _finding(value: int) -> str:
    return "positive" if value else "negative"


def recalibrate_cmd(
    model: str = typer.Option(..., "--model", "-m",
                              help="Registered model URI, e.g. models:/NAME@champion."),
    labels: Path = typer.Option(..., "--labels", exists=True, dir_okay=False,
                                help="Label store of `triage feedback import`."),
    json_out: bool = JSON,
) -> None:
    """Register a recalibrated version: same weights, refitted temperature and thresholds.

    Fitted on the unused labels of the valid calibration sample (docs/feedback.md); the
    new version is not promoted: gate it with `triage promote`.

    Exit codes: 0 registered; 2 bad argument or no valid calibration sample.
    """
    from triage.feedback.recalibrate import recalibrate

    result = recalibrate(model, labels)
    if json_out:
        typer.echo(json.dumps(result.to_dict(), indent=1))
        return
    certified = sorted(g for g, d in result.devices.items() if d["certified"])
    typer.echo(f"registered {result.name} version {result.version} (recalibrated from "
               f"version {result.parent}) on {result.n_labels} labels ({result.n_positive} "
               f"positive), triaged {result.window[0]} to {result.window[1]}; temperature "
               f"{result.parent_temperature:.4g} -> {result.temperature:.4g}; certified: "
               f"{', '.join(certified) or 'nothing'}. Gate it with `triage promote`.")
    if result.kept:
        waiting = sorted(g for g, d in result.devices.items() if not d["consumed"])
        typer.echo(f"{result.kept} labels of devices without a certified routine threshold "
                   f"({', '.join(waiting)}) stay for the next recalibration.")


def register(app: typer.Typer) -> None:
    app.add_typer(feedback_app, name="feedback")
    app.command("recalibrate")(recalibrate_cmd)
