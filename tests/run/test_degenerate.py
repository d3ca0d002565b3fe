"""Degenerate volumes are never cleared: a blank export (RescaleSlope 0) and a one-column
image go to review even when every threshold would route them routine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from triage.run.pipeline import run_export

ACME, BOREALIS = "acme-tomography-voxa-64", "borealis-imaging-aurora-128"


def _rewrite(files: list[Path], change) -> None:
    import pydicom

    for path in files:
        ds = pydicom.dcmread(path)
        change(ds)
        ds.save_as(path)


def _blank(ds) -> None:
    ds.RescaleSlope = 0
    ds.RescaleIntercept = -1024


def _one_column(ds) -> None:
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.decompress()
    pixels = ds.pixel_array[:, :1].copy()
    ds.Columns = 1
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()


@pytest.fixture(scope="module")
def degenerate_export(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """Three acme/borealis studies: one left as is, one blanked, one cut to one column."""
    import pydicom

    from triage.data.synth import SynthConfig, generate_export

    root = tmp_path_factory.mktemp("degenerate")
    summary = generate_export(root / "export", SynthConfig(
        studies=3, seed=21, slices=8, matrix=32, devices="acme,borealis",
        thick_fraction=0.0, extras=False))
    files: dict[str, list[Path]] = {}
    for path in sorted(p for p in summary.out_dir.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except pydicom.errors.InvalidDicomError:
            continue  # manifest, ground truth
        files.setdefault(ds.StudyInstanceUID, []).append(path)
    clean, blank, narrow = sorted(files)
    _rewrite(files[blank], _blank)
    _rewrite(files[narrow], _one_column)
    return summary.out_dir, {"clean": clean, "blank": blank, "narrow": narrow}


def test_blank_and_one_column_studies_are_reviewed_with_certified_thresholds(
        degenerate_export, tiny_model, rules_path, tmp_path):
    from triage.registry.bundle import load_bundle
    from triage.route import FittedThresholds, GroupThresholds, Router, load_rules

    export, uids = degenerate_export
    bundle = load_bundle(tiny_model.bundle_dir)
    # Certified thresholds that would route every score routine: only QC can stop it.
    config = load_rules(rules_path).thresholds
    routing = FittedThresholds(config, {g: GroupThresholds(g, 300, 300, t_low=1.0)
                                        for g in (ACME, BOREALIS)}).to_dict()
    router = Router.from_yaml(rules_path, routing, bundle.train_devices)
    result = run_export(export, tmp_path / "out", bundle=bundle, router=router, workers=1,
                        batch_size=2, device="cpu")
    rows = {r.study_uid: r for r in result.rows}

    assert rows[uids["clean"]].route == "routine"  # the thresholds do clear a sound study
    blank, narrow = rows[uids["blank"]], rows[uids["narrow"]]
    for row in (blank, narrow):
        assert row.route in {"review", "failed"}
        if row.ingest_status != "ok":  # a stricter loader may refuse it: never cleared either
            continue
        assert row.p_calibrated and row.route == "review"  # scored, then held back
        assert row.rule_ids.split("; ")[0] == "qc-degenerate"
        assert row.rule_ids.split("; ")[-1] == "routine"
    if blank.ingest_status == "ok":
        assert "input-shift" in blank.rule_ids  # no body voxels: the distance is unknown
        assert blank.reasons.startswith("degenerate volume: a blank or near-constant "
                                        "image (intensity spread 0 HU, below 5), and mostly "
                                        "outside the body (0.0% of voxels above -500 HU, "
                                        "below 5%)")
    if narrow.ingest_status == "ok":
        assert narrow.reasons.startswith("degenerate volume: a 1 x ")

    # A resumed run reads the measurements back from the cache and decides the same.
    (tmp_path / "out" / "journal.jsonl").unlink()
    again = {r.study_uid: r for r in run_export(
        export, tmp_path / "out", bundle=bundle, router=router, workers=1, batch_size=2,
        device="cpu").rows}
    assert {u: (r.route, r.rule_ids) for u, r in again.items()} == {
        u: (r.route, r.rule_ids) for u, r in rows.items()}
