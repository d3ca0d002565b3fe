"""`triage synth` exports: determinism, DICOM round trips, headers, manifest, extras, CLI."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import config as pydicom_config
from pydicom.fileset import FileSet
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from triage.cli import main
from triage.data.manifest import read_manifest
from triage.data.synth.cohort import plan_cohort
from triage.data.synth.config import SynthConfig
from triage.data.synth.serialize import study_datasets
from triage.data.synth.study import SeriesKind, build_study
from triage.dicom.device import device_group
from triage.errors import ConfigError

BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _hu(ds: pydicom.Dataset) -> np.ndarray:
    return ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(
        ds.RescaleIntercept)


def test_same_seed_gives_identical_bytes_and_other_seed_differs(make_synth_export):
    settings = {"seed": 3, "extras": True, "thick_fraction": 0.5}
    first = _tree(make_synth_export("a", **settings).out_dir)
    second = _tree(make_synth_export("b", **settings).out_dir)
    assert first.keys() == second.keys()
    assert {"manifest.csv", "ground_truth.json"} <= first.keys()
    assert first == second
    other = _tree(make_synth_export("c", **{**settings, "seed": 4}).out_dir)
    assert other["manifest.csv"] != first["manifest.csv"]
    dicom = {k: v for k, v in first.items() if not k.endswith((".csv", ".json"))}
    assert set(dicom.values()).isdisjoint(other.values())


def test_a_study_does_not_depend_on_the_export_size(make_synth_export):
    small = make_synth_export("small", studies=3, seed=9)
    large = make_synth_export("large", studies=6, seed=9)
    for study in small.studies:
        twin = large.study(study.study_uid)
        for series, twin_series in zip(study.series, twin.series, strict=True):
            assert series.files == twin_series.files
            for rel in series.files:
                assert (small.out_dir / rel).read_bytes() == (large.out_dir / rel).read_bytes()


def test_every_file_reads_back_and_matches_ground_truth(tiny_export):
    syntaxes = set()
    for study in tiny_export.studies:
        for series in study.series:
            for k, rel in enumerate(series.files):
                ds = pydicom.dcmread(tiny_export.out_dir / rel)
                syntaxes.add(ds.file_meta.TransferSyntaxUID)
                assert ds.StudyInstanceUID == study.study_uid
                assert ds.SeriesInstanceUID == series.series_uid
                assert ds.SOPInstanceUID == series.sop_uids[k]
                assert ds.InstanceNumber == series.instance_numbers[k]
                if series.geometry is None:
                    continue
                g = series.geometry
                np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient],
                                           g.positions[k], atol=1e-9)
                assert tuple(float(v) for v in ds.ImageOrientationPatient) == g.orientation
                assert tuple(float(v) for v in ds.PixelSpacing) == g.pixel_spacing
                assert np.abs(_hu(ds) - series.hu[k]).max() <= 1.0
    assert {ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless, JPEG2000Lossless,
            JPEGLSLossless} <= syntaxes


def test_headers_follow_the_device_profiles(tiny_export):
    config = tiny_export.config
    seen = set()
    for study in tiny_export.studies:
        device = study.device
        ds = pydicom.dcmread(tiny_export.out_dir / study.primary.files[0])
        seen.add(device.name)
        assert (ds.Manufacturer, ds.ManufacturerModelName, ds.StationName) == (
            device.manufacturer, device.model_name, device.station_name)
        assert device_group(ds.Manufacturer, ds.ManufacturerModelName) == device.device_group
        matrix = device.matrix(config.matrix)
        assert (ds.Rows, ds.Columns) == (matrix, matrix)
        expected = (round(device.fov_mm[0] / matrix, 6), round(device.fov_mm[1] / matrix, 6))
        assert tuple(float(v) for v in ds.PixelSpacing) == pytest.approx(expected)
        assert float(ds.SliceThickness) == device.slice_thickness_mm
        assert ds.ConvolutionKernel == device.kernel.name
        assert float(ds.RescaleSlope) == device.encoding.slope
        assert float(ds.RescaleIntercept) == device.encoding.intercept
        assert ds.PixelRepresentation == int(device.encoding.signed)
        assert ds.BitsStored == device.encoding.bits_stored
        assert ds.file_meta.TransferSyntaxUID == device.transfer_syntax
        assert ds.PatientPosition == ("HFP" if study.placement.prone else "HFS")
        assert ds.PatientID.startswith("SYN-") and str(ds.PatientName).startswith("SYNTH^")
        assert ds.Modality == "CT" and ds.BodyPartExamined == "ABDOMEN"
    assert seen == set(config.device_names)


def test_quirks_appear_in_the_tiny_export(tiny_export):
    primaries = [s.primary for s in tiny_export.studies]
    assert any(s.placement.prone for s in tiny_export.studies)
    assert any(p.tilt_deg for p in primaries)
    assert any(p.dropped for p in primaries)
    assert any(p.instance_numbers[0] > p.instance_numbers[-1] for p in primaries)
    assert any(s.get_series(SeriesKind.THICK) for s in tiny_export.studies)
    prone = next(s for s in tiny_export.studies if s.placement.prone)
    ds = pydicom.dcmread(tiny_export.out_dir / prone.primary.files[0])
    assert [float(v) for v in ds.ImageOrientationPatient] == [-1, 0, 0, 0, -1, 0]
    tilted = next(p for p in primaries if p.tilt_deg)
    ds = pydicom.dcmread(tiny_export.out_dir / tilted.files[0])
    assert float(ds.GantryDetectorTilt) == tilted.tilt_deg


def test_manifest_validates_and_matches_the_files(tiny_export):
    df = read_manifest(tiny_export.manifest_path)
    assert len(df) == len(tiny_export.studies)
    assert df.groupby("patient_key")["split"].nunique().max() == 1
    for row in df.itertuples():
        study = tiny_export.study(row.study_uid)
        ds = pydicom.dcmread(tiny_export.out_dir / study.primary.files[0],
                             stop_before_pixels=True)
        assert row.device_group == device_group(ds.Manufacturer, ds.ManufacturerModelName)
        assert row.label == study.label == int(int(row.gt_n_lesions) > 0)
        assert row.patient_key != ds.PatientID
        folder = tiny_export.out_dir / row.export_path
        assert folder.is_dir() and (folder / study.primary.files[0].split("/", 2)[2]).is_file()
        assert row.gt_primary_series_uid == study.primary.series_uid


def test_no_identifiers_outside_the_dicom_files(tiny_export):
    text = tiny_export.manifest_path.read_text() + tiny_export.ground_truth_path.read_text()
    for study in tiny_export.studies:
        header = study.header
        for value in (header.patient_id, header.patient_name, header.accession_number,
                      header.patient_birth_date, header.study_date):
            assert value not in text


def test_ground_truth_json_describes_every_series(tiny_export):
    data = json.loads(tiny_export.ground_truth_path.read_text())
    assert len(data["studies"]) == len(tiny_export.studies)
    for entry in data["studies"]:
        study = tiny_export.study(entry["study_uid"])
        assert [s["series_uid"] for s in entry["series"]] == [s.series_uid for s in study.series]
        axial = next(s for s in entry["series"] if s["kind"] == "axial")
        np.testing.assert_allclose(axial["positions"], study.primary.geometry.positions)
        assert len(entry["lesions"]) == len(study.lesions)


def test_extras_are_present_and_typed(tiny_export):
    for study in tiny_export.studies:
        scout = study.get_series(SeriesKind.LOCALIZER)
        ds = pydicom.dcmread(tiny_export.out_dir / scout.files[0])
        assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 0, -1]
        assert ds.FrameOfReferenceUID == study.frame_of_reference_uid
        assert ds.pixel_array.shape == (ds.Rows, ds.Columns)
        root = tiny_export.out_dir
        sr = pydicom.dcmread(root / study.get_series(SeriesKind.TEXT_REPORT).files[0])
        assert sr.SOPClassUID == BASIC_TEXT_SR and sr.Modality == "SR"
        sc = pydicom.dcmread(root / study.get_series(SeriesKind.DOSE_REPORT).files[0])
        assert sc.SOPClassUID == SECONDARY_CAPTURE and sc.pixel_array.shape[-1] == 3
        thick = study.get_series(SeriesKind.THICK)
        if thick is not None:
            ds = pydicom.dcmread(tiny_export.out_dir / thick.files[0])
            assert float(ds.SliceThickness) == 5.0 > study.device.slice_thickness_mm
            assert ds.FrameOfReferenceUID == study.frame_of_reference_uid


def test_written_values_pass_pydicom_validation(monkeypatch):
    """The export skips per-element validation for speed; prove nothing invalid hides."""
    monkeypatch.setattr(pydicom_config.settings, "writing_validation_mode", pydicom_config.RAISE)
    config = SynthConfig(studies=5, seed=1, slices=4, matrix=32, thick_fraction=1.0)
    for slot in plan_cohort(config):
        for _, ds in study_datasets(build_study(config, slot)):
            ds.save_as(io.BytesIO(), enforce_file_format=True)


def test_dicomdir_export_lists_every_file(make_synth_export):
    summary = make_synth_export(studies=3, extras=True, dicomdir=True)
    assert summary.dicomdir_path == summary.out_dir / "DICOMDIR"
    fileset = FileSet(pydicom.dcmread(summary.dicomdir_path))
    assert len(fileset) == summary.n_files
    assert not any(p.name.startswith(".staging") for p in summary.out_dir.iterdir())
    for study in summary.studies:
        assert study.export_path.startswith("PT")
        for series in study.series:
            for rel in series.files:
                ds = pydicom.dcmread(summary.out_dir / rel, stop_before_pixels=True)
                assert ds.SeriesInstanceUID == series.series_uid
    read_manifest(summary.manifest_path)


def test_simpleitk_reads_every_image_series_of_a_40_study_export(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    from triage.data.synth.export import generate_export

    # 40 studies of every device and quirk; 16 slices of 48² keep it at a few seconds.
    config = SynthConfig(studies=40, seed=7, slices=16, matrix=48)
    summary = generate_export(tmp_path / "export", config, keep_volumes=True)
    for study in summary.studies:
        for series in study.series:
            if series.geometry is None:
                continue
            folder = str((summary.out_dir / series.files[0]).parent)
            assert sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder) == (series.series_uid,)
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder))
            image = reader.Execute()
            g = series.geometry
            assert image.GetSize() == (g.columns, g.rows, g.n_slices)
            array = sitk.GetArrayFromImage(image).astype(np.float64)
            order = np.argsort(g.positions @ g.normal)
            np.testing.assert_allclose(array, series.hu[order], atol=1.0)


def test_cli_help_lists_the_options():
    out = subprocess.run([sys.executable, "-m", "triage", "synth", "--help"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    for option in ("--studies", "--seed", "--prevalence", "--devices", "--dicomdir",
                   "--extras", "--manifest", "--splits"):
        assert option in out


def test_cli_writes_an_export(tmp_path, capsys):
    out, manifest = tmp_path / "export", tmp_path / "m.csv"
    code = main(["synth", str(out), "--studies", "3", "--seed", "2", "--slices", "6",
                 "--matrix", "32", "--devices", "acme,borealis", "--no-extras",
                 "--manifest", str(manifest), "--splits", "train=0.5,test=0.5"])
    assert code == 0
    assert "3 studies" in capsys.readouterr().out
    df = read_manifest(manifest)
    assert set(df["split"]) <= {"train", "test"} and len(df) == 3
    assert set(df["device_group"]) == {"acme-tomography-voxa-64", "borealis-imaging-aurora-128"}


def test_cli_rejects_bad_arguments_with_one_line(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "x"), "--devices", "acme,zeta"]) == 2
    assert "Unknown device profile 'zeta'" in capsys.readouterr().err
    assert main(["synth", str(tmp_path / "x"), "--lesion-size", "8"]) == 2
    assert "--lesion-size: '8' is not 'MIN,MAX'" in capsys.readouterr().err


def test_refuses_to_write_into_a_foreign_directory(make_synth_export, tmp_path):
    foreign = tmp_path / "export"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("user data")
    with pytest.raises(ConfigError, match="is not empty"):
        make_synth_export()
    from triage.data.synth.export import generate_export

    with pytest.raises(ConfigError, match="not a previous triage synth export"):
        generate_export(foreign, SynthConfig(studies=1, slices=4, matrix=32), overwrite=True)
    assert (foreign / "keep.txt").is_file()


def test_overwrite_replaces_a_previous_export(make_synth_export, tmp_path):
    from triage.data.synth.export import generate_export

    first = make_synth_export(studies=2)
    summary = generate_export(first.out_dir, dataclasses.replace(first.config, studies=1),
                              overwrite=True)
    assert len(read_manifest(summary.manifest_path)) == 1
    per_study = defaultdict(int)
    for path in summary.out_dir.rglob("IM*"):
        per_study[path.parts[len(summary.out_dir.parts)]] += 1
    assert len(per_study) == 1


def test_parallel_workers_write_the_same_bytes(make_synth_export, tmp_path):
    from triage.data.synth.export import generate_export

    serial = make_synth_export("serial", studies=3, seed=5)
    parallel = generate_export(tmp_path / "parallel", serial.config, workers=2)
    assert _tree(serial.out_dir) == _tree(parallel.out_dir)


def test_device_noise_makes_that_device_noisier(make_synth_export):
    """The same study written with a profile's noise raised: the noise estimate of the
    loaded volume rises, and the manifest records the level used."""
    import csv

    from triage.data.synth.devices import get_device
    from triage.dicom.volume.loader import load_series
    from triage.preprocess.stats import estimate_noise_hu

    noise = {}
    for name, override in (("plain", ""), ("noisy", "acme=60")):
        out = make_synth_export(name, studies=1, devices="acme", slices=16, matrix=64,
                                thick_fraction=0.0, device_noise=override).out_dir
        with open(out / "manifest.csv", encoding="utf-8", newline="") as fh:
            (row,) = csv.DictReader(fh)
        (study,) = json.loads((out / "ground_truth.json").read_text())["studies"]
        (series,) = [s for s in study["series"] if s["series_uid"] == row["gt_primary_series_uid"]]
        volume = load_series([out / f for f in series["files"]])
        noise[name] = (estimate_noise_hu(volume.array), float(row["gt_noise_hu"]))
    assert noise["noisy"][1] == 60.0 and noise["plain"][1] == get_device("acme").noise_hu
    assert noise["noisy"][0] > 2 * noise["plain"][0]
