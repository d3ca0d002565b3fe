"""`triage thresholds status`: per device group, what certifies the model's routing
thresholds and how many more reviewed positives an uncertified device needs."""

from __future__ import annotations

import typer

from triage.cli.options import JSON, MODEL_HELP

thresholds_app = typer.Typer(help="Routing thresholds: certification status.",
                             no_args_is_help=True)


@thresholds_app.command("status")
def status(
    model: str = typer.Option(..., "--model", "-m", help=MODEL_HELP),
    json_out: bool = JSON,
) -> None:
    """Show per device group the calibration positives/negatives, what each guarantee mode
    needs, which one certifies the group, and how many more positives it lacks."""
    import json

    from triage.route.status import certification_status, status_lines
    from triage.route.thresholds import FittedThresholds, ThresholdConfig
    from triage.run.model import load_model

    loaded = load_model(model)
    routing = getattr(loaded.bundle, "routing", None) or {}
    fitted = (FittedThresholds.from_dict(routing, source=f"routing thresholds of {model}")
              if routing else FittedThresholds(ThresholdConfig()))
    result = certification_status(fitted, loaded.bundle.train_devices)
    if json_out:
        typer.echo(json.dumps(result | {"model": model}, indent=1))
        return
    if not routing:
        typer.echo(f"{model} has no routing thresholds (fitted before routing existed): "
                   f"nothing is certified, every scored study goes to review.")
    typer.echo("\n".join(status_lines(result)))


def register(app: typer.Typer) -> None:
    app.add_typer(thresholds_app, name="thresholds")
