"""`triage export`: a faster variant of a model (ONNX fp32 or int8, or channel-pruned),
recalibrated and registered as a new version."""

from __future__ import annotations

from pathlib import Path

import typer

from triage.cli.options import INGEST, JSON, MANIFEST, MODEL_HELP, echo_json


def export_cmd(
    model: str = typer.Option(..., "--model", "-m", help=MODEL_HELP),
    fmt: str = typer.Option("onnx", "--format", help="Export format: onnx."),
    quantize: str = typer.Option("none", "--quantize",
                                 help="none; int8 (static QDQ, per-channel, calibrated on "
                                      "training-split volumes); auto (int8 only where it "
                                      "measures faster than fp32 here)."),
    prune: float = typer.Option(None, "--prune", min=0.0, max=1.0,
                                help="Instead of ONNX: remove this share of every layer's "
                                     "channels (L1 norm, structured; e.g. 0.3, 0.5, 0.7), "
                                     "fine-tune, recalibrate; runs on torch."),
    finetune_epochs: int = typer.Option(None, "--finetune-epochs", min=0,
                                        help="With --prune: fine-tuning epochs on the "
                                             "training split (the parent's settings; "
                                             "default 2)."),
    manifest: Path = MANIFEST,
    ingest: Path = INGEST,
    out: Path = typer.Option(None, "--out", "-o", file_okay=False,
                             help="Also write the variant's bundle here (required for a "
                                  "model that is not a registered version)."),
    json_summary: bool = JSON,
) -> None:
    """Export MODEL to ONNX (or prune its channels with --prune), refit its temperature and
    thresholds on its own calibration scores (the training export's calib split) and
    register it as a new version with lineage tags (parent, method, runtime).
    """
    from triage.errors import ConfigError
    from triage.export.prune import make_pruned_variant
    from triage.export.register import register_variant
    from triage.export.variant import Quantize, export_data, make_variant
    from triage.registry.bundle import save_bundle
    from triage.run.model import load_model

    if fmt != "onnx":
        raise ConfigError(f"--format {fmt!r} is not supported; the export format is onnx.")
    try:
        quantize_mode = Quantize(quantize)
    except ValueError:
        raise ConfigError(f"--quantize {quantize!r}: expected one of "
                          f"{', '.join(q.value for q in Quantize)}.") from None
    if finetune_epochs is not None and prune is None:
        raise ConfigError("--finetune-epochs fine-tunes a pruned network; it needs --prune "
                          "(an ONNX export keeps the weights as they are).")
    if prune is not None and quantize_mode is not Quantize.NONE:
        raise ConfigError("--prune makes a torch variant; export the pruned version with "
                          "--quantize afterwards instead of combining them.")
    loaded = load_model(model)
    registered = model.startswith("models:/") and bool(loaded.version)
    if not registered and out is None:
        raise ConfigError(f"Model {model!r} is not a registered version, so the variant "
                          f"cannot be registered; pass --out FOLDER to write its bundle.")
    data = export_data(loaded.bundle, manifest, ingest)
    if prune is not None:
        epochs = {} if finetune_epochs is None else {"finetune_epochs": finetune_epochs}
        variant = make_pruned_variant(loaded.bundle, data, ratio=prune, **epochs)
    else:
        variant = make_variant(loaded.bundle, data, quantize=quantize_mode)
    summary = {"parent": model, "method": variant.method, "runtime": variant.bundle.runtime,
               "temperature": variant.bundle.temperature,
               "parent_temperature": variant.parent_temperature,
               "forward_ms": variant.forward_ms, "metrics": variant.bundle.metrics,
               "calibration_studies": len(data.calib), "pruning": variant.bundle.pruning}
    if out is not None:
        summary["bundle"] = str(save_bundle(variant.bundle, out))
    if registered:
        version = register_variant(variant, name=loaded.name, parent_version=loaded.version)
        summary |= {"name": loaded.name, "version": version,
                    "uri": f"models:/{loaded.name}/{version}"}
    if json_summary:
        echo_json(summary)
        return
    speeds = ", ".join(f"{k} {v:.1f} ms" for k, v in variant.forward_ms.items())
    where = summary.get("uri") or summary["bundle"]
    typer.echo(f"{variant.method} variant of {model}: {where}\nforward per volume: {speeds}\n"
               f"temperature {variant.parent_temperature:.4g} -> "
               f"{variant.bundle.temperature:.4g}, thresholds refitted on "
               f"{len(data.calib)} calibration studies")


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)
