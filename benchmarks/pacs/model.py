"""The benchmark's tiny model and studies, made once and cached under ``bench_output/pacs``.

The model is the one the PACS tests use (`triage.train.tiny`: a cnn-small trained one
epoch on a 14-study, two-device synthetic export, volumes on a 16x16x8 grid): the benchmark
measures the PACS paths around the model, not its forward pass.
"""

from __future__ import annotations

from pathlib import Path

from triage.train.tiny import DEVICES, train_tiny

SLICES, MATRIX = 16, 64  # 16 slices: the default rules' slice QC passes


def tiny_model(root: Path) -> Path:
    """The bundle folder of the tiny model (trained on first use, about 15 s)."""
    done = root / "bundle.txt"
    if done.is_file() and Path(done.read_text(encoding="utf-8")).is_dir():
        return Path(done.read_text(encoding="utf-8"))
    root.mkdir(parents=True, exist_ok=True)
    outcome, _ = train_tiny(root, experiment="bench-pacs",
                            tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    done.write_text(str(outcome.bundle_dir), encoding="utf-8")
    return Path(outcome.bundle_dir)


def studies(root: Path, count: int, seed: int = 700) -> Path:
    """A synthetic export of `count` CT studies (no extras), cached by size and seed."""
    from triage.data.synth import SynthConfig, generate_export

    out = root / f"export-{count}-{seed}"
    if (out / ".done").is_file():
        return out / "export"
    summary = generate_export(out / "export", SynthConfig(
        studies=count, seed=seed, slices=SLICES, matrix=MATRIX, devices=DEVICES,
        thick_fraction=0.0, extras=False))
    (out / ".done").write_text("", encoding="utf-8")
    return Path(summary.out_dir)
