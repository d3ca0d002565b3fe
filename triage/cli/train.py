"""`triage train` and `triage evaluate`: fit a classifier on ingested studies, and score it."""

from __future__ import annotations

from pathlib import Path

import typer

from triage.cli.options import DEVICE, INGEST, JSON, MANIFEST, MODEL_HELP, echo_json, renamed

CONFIG = typer.Option(None, "--config", "-c", exists=True, dir_okay=False,
                      help="Train config YAML (default triage/configs/train/default.yaml).")


def _config(path: Path | None, seed: int | None, epochs: int | None, device: str | None,
            init: str | None = None):
    from triage.train.config import TrainConfig

    config = TrainConfig.from_yaml(path)
    # Each override names its option in errors ("--epochs 0: ..."), not the config code.
    if init is not None:
        config = config.replace(finetune={"init": init}, source=f"--init {init}")
    if seed is not None:
        config = config.replace(runtime={"seed": seed}, source=f"--seed {seed}")
    if device is not None:
        config = config.replace(runtime={"device": device}, source=f"--device {device}")
    if epochs is not None:
        config = config.replace(optim={"epochs": epochs}, source=f"--epochs {epochs}")
    return config


def train(
    manifest: Path = MANIFEST,
    ingest: Path = INGEST,
    config: Path = CONFIG,
    out: Path = typer.Option(Path("runs/train"), "--out", "-o",
                             help="Local output: checkpoint, bundle, predictions, figures."),
    holdout_device: str = typer.Option(None, "--holdout-device-group",
                                       help="Leave this device group out of training."),
    seed: int = typer.Option(None, "--seed", help="Override runtime.seed."),
    epochs: int = typer.Option(None, "--epochs", help="Override optim.epochs."),
    init: str = typer.Option(None, "--init",
                             help="Fine-tune: start from this model's weights (models:/NAME@"
                                  "alias, models:/<id>, runs:/<run_id>/model or a bundle "
                                  "folder); sets finetune.init. The config's finetune."
                                  "freeze / head / lr_scale shape the fine-tuning."),
    run_name: str = typer.Option(None, "--run-name", help="MLflow run name."),
    device: str = typer.Option(None, "--device",
                               help="Override runtime.device: auto, cpu, cuda, mps."),
    json_summary: bool = JSON,
    rules: Path = typer.Option(None, "--rules", "-r",
                               help="Rules YAML whose thresholds section certifies the routing "
                                    "thresholds (default triage/configs/rules/default.yaml); "
                                    "recorded with the model."),
    teacher: str = typer.Option(None, "--teacher",
                                help="Distil from this model (URI or bundle folder): loss "
                                     "alpha*T^2*KL + (1-alpha)*focal, alpha and T from the "
                                     "config's distill section (defaults 0.7 and 4)."),
) -> None:
    """Train, calibrate and evaluate a classifier; log everything to MLflow.

    The tracking server is MLFLOW_TRACKING_URI, or sqlite:///mlflow.db in the current
    folder. Rerunning with the same --out resumes from the last checkpoint.
    """
    import json

    from triage.io import prepare_out_dir
    from triage.registry.evaluate import TABLE_METRICS, markdown_table
    from triage.train.run import train_model

    cfg = _config(config, seed, epochs, device, init)
    prepare_out_dir(out)
    if teacher:
        cfg = cfg.replace(distill={"teacher": teacher}, source=f"--teacher {teacher}")
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
    model: str = typer.Option(None, "--model", "-m", help=f"{MODEL_HELP} To score."),
    split: list[str] = typer.Option(["test"], "--split",
                                    help="Manifest split(s) to score with --model."),
    lodo: bool = typer.Option(False, "--lodo",
                              help="Leave-one-device-out: train once per held-out device."),
    device_group: list[str] = typer.Option(None, "--device-group",
                                           help="With --lodo: only these held-out device "
                                                "groups."),
    config: Path = CONFIG,
    seed: int = typer.Option(None, "--seed", help="Override runtime.seed (--lodo)."),
    epochs: int = typer.Option(None, "--epochs", help="Override optim.epochs (--lodo)."),
    out: Path = typer.Option(Path("runs/evaluate"), "--out", "-o", help="Output folder."),
    device: str = DEVICE,
    json_summary: bool = JSON,
) -> None:
    """Per-device metrics of a model (--model), or the leave-one-device-out table (--lodo)."""
    from triage.data.manifest import check_splits
    from triage.errors import ConfigError
    from triage.registry.evaluate import TABLE_METRICS, markdown_table

    if lodo == (model is not None):
        raise ConfigError("Give exactly one of --model URI (score a trained model) or "
                          "--lodo (train and score once per held-out device).")
    if device_group and not lodo:
        raise ConfigError("--device-group chooses the held-out devices of --lodo; --model "
                          "is scored on every device group of its --split.")
    check_splits(split)
    from triage.io import prepare_out_dir

    cfg = _config(config, seed, epochs, device)  # validates --device before any work
    prepare_out_dir(out)
    if lodo:
        from triage.train.lodo import LODO_METRICS, leave_one_device_out

        table = leave_one_device_out(manifest_path=manifest, ingest_dir=ingest,
                                     config=cfg, out_dir=out, devices=device_group or None)
        columns = ["held_out_device"] + [f"{where}_{m}" for m in LODO_METRICS
                                         for where in ("in_domain", "held_out")]
        text = markdown_table(table, columns)
        (out / "lodo.md").write_text(text + "\n", encoding="utf-8")
        if json_summary:
            echo_json({"table": out / "lodo.csv", "rows": table.to_dict("records")})
            return
        typer.echo(text)
        typer.echo(f"\n{out / 'lodo.csv'}")
        return

    from triage.data.dataset import resolve_samples
    from triage.data.manifest import read_manifest
    from triage.registry.evaluate import evaluate_bundle
    from triage.registry.pyfunc import load_bundle_from_uri

    bundle = load_bundle_from_uri(model)
    samples = resolve_samples(read_manifest(manifest), ingest).split(*split)
    metrics, predictions = evaluate_bundle(bundle, samples, ingest,
                                           device=cfg.runtime.device)
    metrics.to_csv(out / "metrics.csv", index=False)
    predictions.to_csv(out / "predictions.csv", index=False)
    if json_summary:
        echo_json({"metrics": out / "metrics.csv", "predictions": out / "predictions.csv",
                    "rows": metrics[metrics["calibrated"]].to_dict("records")})
        return
    typer.echo(markdown_table(metrics[metrics["calibrated"]], ("group", *TABLE_METRICS)))
    typer.echo(f"\n{out / 'metrics.csv'}")


def register(app: typer.Typer) -> None:
    app.command("train", cls=renamed({"-m": "--manifest",
                                      "--holdout-device": "--holdout-device-group"}))(train)
    # evaluate's -m and --device changed meaning (now the model, the compute device).
    app.command("evaluate")(evaluate)
