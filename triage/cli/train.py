"""`triage train` and `triage evaluate`: fit a classifier on ingested studies, and score it."""

from __future__ import annotations

from pathlib import Path

import typer

MANIFEST = typer.Option(..., "--manifest", "-m", help="Manifest CSV (docs/data_manifests.md).")
INGEST = typer.Option(..., "--ingest", "-i",
                      help="Output folder of `triage ingest` for the manifest's export.")
CONFIG = typer.Option(None, "--config", "-c",
                      help="Train config YAML (default pipelines/train/default.yaml).")


def _config(path: Path | None, seed: int | None, epochs: int | None):
    from triage.train.config import TrainConfig

    config = TrainConfig.from_yaml(path)
    if seed is not None:
        config = config.replace(runtime={"seed": seed})
    if epochs is not None:
        config = config.replace(optim={"epochs": epochs})
    return config


def train(
    manifest: Path = MANIFEST,
    ingest: Path = INGEST,
    config: Path = CONFIG,
    out: Path = typer.Option(Path("runs/train"), "--out", "-o",
                             help="Local output: checkpoint, bundle, predictions, figures."),
    holdout_device: str = typer.Option(None, "--holdout-device",
                                       help="Leave this device group out of training."),
    seed: int = typer.Option(None, "--seed", help="Override runtime.seed."),
    epochs: int = typer.Option(None, "--epochs", help="Override optim.epochs."),
    run_name: str = typer.Option(None, "--run-name", help="MLflow run name."),
    json_summary: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    rules: Path = typer.Option(None, "--rules", "-r",
                               help="Rules YAML whose thresholds section certifies the routing "
                                    "thresholds (default pipelines/rules/default.yaml); "
                                    "recorded with the model."),
) -> None:
    """Train, calibrate and evaluate a classifier; log everything to MLflow.

    The tracking server is MLFLOW_TRACKING_URI, or sqlite:///mlflow.db in the current
    folder. Rerunning with the same --out resumes from the last checkpoint.
    """
    import json

    from triage.train.evaluate import TABLE_METRICS, markdown_table
    from triage.train.run import train_model

    cfg = _config(config, seed, epochs)
    outcome = train_model(manifest_path=manifest, ingest_dir=ingest, config=cfg, out_dir=out,
                          holdout_device=holdout_device, run_name=run_name,
                          progress=not json_summary, rules_path=rules)
    summary = {"run_id": outcome.run_id, "model_uri": outcome.model_uri,
               "bundle": str(outcome.bundle_dir), "temperature": outcome.temperature,
               "excluded_studies": outcome.excluded, "seconds": round(outcome.seconds, 1),
               "metrics": outcome.metrics[outcome.metrics["group"] == "all"]
               .to_dict("records")}
    if json_summary:
        typer.echo(json.dumps(summary, indent=1, default=str))
        return
    calibrated = outcome.metrics[outcome.metrics["calibrated"]]
    typer.echo(markdown_table(calibrated, ("set", "group", *TABLE_METRICS)))
    typer.echo(f"\nMLflow run {outcome.run_id}; model {outcome.model_uri}\n"
               f"bundle: {outcome.bundle_dir}\ntemperature {outcome.temperature:.3f}; "
               f"{outcome.excluded} manifest studies had no usable volume; "
               f"{outcome.seconds:.0f} s")


def evaluate(
    manifest: Path = MANIFEST,
    ingest: Path = INGEST,
    model: str = typer.Option(None, "--model",
                              help="Model URI (models:/NAME@champion, runs:/...) or bundle "
                                   "folder to score."),
    split: list[str] = typer.Option(["test"], "--split",
                                    help="Manifest split(s) to score with --model."),
    lodo: bool = typer.Option(False, "--lodo",
                              help="Leave-one-device-out: train once per held-out device."),
    device: list[str] = typer.Option(None, "--device",
                                     help="With --lodo: only these held-out devices."),
    config: Path = CONFIG,
    seed: int = typer.Option(None, "--seed", help="Override runtime.seed (--lodo)."),
    epochs: int = typer.Option(None, "--epochs", help="Override optim.epochs (--lodo)."),
    out: Path = typer.Option(Path("runs/evaluate"), "--out", "-o", help="Output folder."),
) -> None:
    """Per-device metrics of a model (--model), or the leave-one-device-out table (--lodo)."""
    from triage.errors import ConfigError
    from triage.train.evaluate import TABLE_METRICS, markdown_table

    if lodo == (model is not None):
        raise ConfigError("Give exactly one of --model URI (score a trained model) or "
                          "--lodo (train and score once per held-out device).")
    out.mkdir(parents=True, exist_ok=True)
    if lodo:
        from triage.train.lodo import LODO_METRICS, leave_one_device_out

        table = leave_one_device_out(manifest_path=manifest, ingest_dir=ingest,
                                     config=_config(config, seed, epochs), out_dir=out,
                                     devices=device or None)
        columns = ["held_out_device"] + [f"{where}_{m}" for m in LODO_METRICS
                                         for where in ("in_domain", "held_out")]
        text = markdown_table(table, columns)
        (out / "lodo.md").write_text(text + "\n", encoding="utf-8")
        typer.echo(text)
        typer.echo(f"\n{out / 'lodo.csv'}")
        return

    from triage.data.dataset import resolve_samples
    from triage.data.manifest import read_manifest
    from triage.registry.pyfunc import load_bundle_from_uri
    from triage.train.evaluate import evaluate_bundle

    bundle = load_bundle_from_uri(model)
    samples = resolve_samples(read_manifest(manifest), ingest).split(*split)
    metrics, predictions = evaluate_bundle(bundle, samples, ingest)
    metrics.to_csv(out / "metrics.csv", index=False)
    predictions.to_csv(out / "predictions.csv", index=False)
    typer.echo(markdown_table(metrics[metrics["calibrated"]], ("group", *TABLE_METRICS)))
    typer.echo(f"\n{out / 'metrics.csv'}")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("evaluate")(evaluate)
