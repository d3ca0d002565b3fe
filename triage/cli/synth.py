"""`triage synth`: write a synthetic multi-device PACS export and its manifest."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from triage.cli.options import JSON_HELP, echo_json

DEFAULT_SPLITS = "train=0.6,val=0.1,calib=0.15,test=0.15"


def _size_range(text: str) -> tuple[float, float]:
    from triage.errors import ConfigError

    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError as err:
        raise ConfigError(
            f"--lesion-size: '{text}' is not 'MIN,MAX' in mm (e.g. '6,15').") from err
    return low, high


def synth(
    out_dir: Annotated[Path, typer.Argument(
        help="Export root to create (must be empty or absent).")],
    studies: Annotated[int, typer.Option("--studies", "-n", help="Number of studies.")] = 40,
    seed: Annotated[int, typer.Option(
        help="Seed; the same seed gives byte-identical files.")] = 0,
    slices: Annotated[int, typer.Option(help="Slices per thin axial series.")] = 32,
    matrix: Annotated[int, typer.Option(help="Base rows/columns, scaled per device.")] = 64,
    prevalence: Annotated[float, typer.Option(help="Share of positive studies.")] = 0.5,
    lesion_contrast: Annotated[float, typer.Option(
        help="Lesion HU relative to liver (jittered +-20%).")] = -25.0,
    lesion_size: Annotated[str, typer.Option(
        help="Lesion diameter range MIN,MAX in mm.")] = "6,15",
    noise_scale: Annotated[float, typer.Option(
        help="Multiplies every device's noise level.")] = 1.0,
    device_noise: Annotated[str, typer.Option(
        help="Per-device noise HU replacing a profile's own, e.g. 'cygnus=50'.")] = "",
    devices: Annotated[str, typer.Option(
        help="Comma-separated device profiles (default: all; see docs/synthetic_data.md).",
    )] = "",
    thick_fraction: Annotated[float, typer.Option(
        help="Share of studies with an extra thick (5 mm) reconstruction.")] = 0.3,
    dicomdir: Annotated[bool, typer.Option(
        "--dicomdir/--no-dicomdir",
        help="Write a DICOMDIR (files then use the DICOM media layout).")] = False,
    extras: Annotated[bool, typer.Option(
        "--extras/--no-extras",
        help="Add a localizer, a dose report and a text SR to every study.")] = True,
    manifest: Annotated[Path | None, typer.Option(
        help="Manifest CSV path (default OUT_DIR/manifest.csv).")] = None,
    splits: Annotated[str, typer.Option(help="Patient-level split fractions.")] = DEFAULT_SPLITS,
    workers: Annotated[int, typer.Option("--workers", "-j",
                                         help="Processes rendering studies.")] = 1,
    overwrite: Annotated[bool, typer.Option(
        help="Replace OUT_DIR if it holds a previous synthetic export.")] = False,
    json_summary: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Generate a deterministic synthetic multi-device CT export with ground truth."""
    from triage.data.synth.config import SynthConfig, parse_splits
    from triage.data.synth.devices import device_names
    from triage.data.synth.export import generate_export
    from triage.io import check_out_file, prepare_out_dir

    # The JPEG 2000 encoder logs one INFO line per slice; keep the console readable.
    logging.getLogger("openjpeg").setLevel(logging.WARNING)
    config = SynthConfig(
        studies=studies, seed=seed, slices=slices, matrix=matrix, prevalence=prevalence,
        lesion_contrast_hu=lesion_contrast, lesion_diameter_mm=_size_range(lesion_size),
        noise_scale=noise_scale, device_noise=device_noise,
        devices=devices if devices.strip() else device_names(),
        thick_fraction=thick_fraction, extras=extras, dicomdir=dicomdir,
        splits=parse_splits(splits),
    )
    if manifest is not None:
        check_out_file(manifest, "--manifest")  # before the export, not after it
    prepare_out_dir(out_dir, option="OUT_DIR")
    summary = generate_export(out_dir, config, manifest_path=manifest, overwrite=overwrite,
                              workers=workers)
    if json_summary:
        echo_json({"export": summary.out_dir, "studies": len(summary.studies),
                   "patients": summary.n_patients, "device_groups": len(config.devices),
                   "files": summary.n_files, "prevalence": summary.prevalence,
                   "seconds": round(summary.seconds, 1), "manifest": summary.manifest_path})
        return
    typer.echo(
        f"{summary.out_dir}: {len(summary.studies)} studies, {summary.n_patients} patients, "
        f"{len(config.devices)} device groups, {summary.n_files} files, prevalence "
        f"{summary.prevalence:.2f}, {summary.seconds:.1f} s; manifest {summary.manifest_path}"
    )


def register(app: typer.Typer) -> None:
    """Add the `synth` command to `app`."""
    app.command("synth")(synth)
