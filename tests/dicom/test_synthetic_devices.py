"""Every synthetic device, loaded by `load_series`, agrees with the generator's ground truth,
with SimpleITK's series reader and with dcm2niix (where its build decodes the syntax).

The first study of each device carries that device's quirks (prone, reversed instance
numbers, shuffled files, feet-first, non-square pixels, missing slices, gantry tilt).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from triage.data.synth.study import SeriesKind
from triage.dicom.verdict import GeometryVerdict
from triage.dicom.volume.loader import load_series
from triage.errors import GeometryError

JPEG_LS = "1.2.840.10008.1.2.4.80"


def _first_study_per_device(summary):
    seen = {}
    for study in summary.studies:
        seen.setdefault(study.device.name, study)
    return seen


@pytest.fixture(scope="module")
def device_series(tiny_export):
    out = {}
    for name, study in _first_study_per_device(tiny_export).items():
        series = study.get_series(SeriesKind.AXIAL)
        paths = [tiny_export.out_dir / f for f in series.files]
        out[name] = (study, series, paths)
    return out


DEVICES = ["acme", "borealis", "cygnus", "deltaform", "ember"]


def test_every_device_is_in_the_tiny_export(device_series):
    assert sorted(device_series) == DEVICES


@pytest.mark.parametrize("device", DEVICES)
def test_volume_matches_ground_truth(device_series, device):
    study, series, paths = device_series[device]
    if series.dropped:
        with pytest.raises(GeometryError, match="gap") as info:
            load_series(paths)
        assert info.value.verdict is GeometryVerdict.GAPS
        return
    volume = load_series(paths)
    if series.tilt_deg:
        assert volume.verdict is GeometryVerdict.TILT
        assert np.allclose(volume.direction.T @ volume.direction, np.eye(3), atol=1e-6)
        return
    assert volume.verdict is GeometryVerdict.OK
    geo = series.geometry
    inverse = np.linalg.inv(volume.affine)
    assert np.allclose(volume.spacing[:2], geo.pixel_spacing[::-1], atol=1e-4)
    for k in range(len(series.files)):
        # voxel (0, 0, ?) of the volume must sit at this slice's ImagePositionPatient ...
        ijk = inverse @ np.append(geo.positions[k], 1.0)
        assert np.allclose(ijk[:2], 0, atol=1e-3)
        kk = int(round(ijk[2]))
        assert abs(ijk[2] - kk) < 1e-3
        # ... and hold that slice's stored HU, transposed to [column, row].
        np.testing.assert_allclose(volume.array[:, :, kk], series.hu[k].T, atol=1e-3)


def _sitk_read(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    (series_id,) = reader.GetGDCMSeriesIDs(str(folder))
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), series_id))
    return reader.Execute()


@pytest.mark.parametrize("device", DEVICES)
def test_geometry_agrees_with_simpleitk(device_series, device):
    study, series, paths = device_series[device]
    if series.dropped or series.tilt_deg:
        pytest.skip("SimpleITK reads gapped and tilted stacks without correction "
                    "(covered by the ground-truth test)")
    volume = load_series(paths)
    image = _sitk_read(paths[0].parent)
    np.testing.assert_allclose(volume.origin, image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(volume.spacing, image.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(volume.direction, np.reshape(image.GetDirection(), (3, 3)),
                               atol=1e-5)
    np.testing.assert_allclose(volume.array, sitk.GetArrayFromImage(image).transpose(2, 1, 0),
                               atol=1e-3)


@pytest.mark.parametrize("device", DEVICES)
def test_geometry_agrees_with_dcm2niix(device_series, device, tmp_path):
    if shutil.which("dcm2niix") is None:
        pytest.skip("dcm2niix is not installed (make tools installs the Debian package)")
    study, series, paths = device_series[device]
    if series.dropped or series.tilt_deg:
        pytest.skip("dcm2niix reslices tilt into a separate file and keeps gaps")
    import pydicom

    syntax = pydicom.dcmread(paths[0], stop_before_pixels=True).file_meta.TransferSyntaxUID
    version = subprocess.run(["dcm2niix", "-v"], capture_output=True, text=True).stdout
    if syntax == JPEG_LS and "CharLS" not in version:
        pytest.skip("this dcm2niix build cannot decode JPEG-LS (no CharLS)")
    subprocess.run(["dcm2niix", "-z", "n", "-b", "n", "-f", "out", "-o", str(tmp_path),
                    str(paths[0].parent)], check=True, capture_output=True)
    (nifti,) = tmp_path.glob("out*.nii")
    theirs = nib.as_closest_canonical(nib.load(nifti))
    volume = load_series(paths)
    ours = nib.as_closest_canonical(nib.Nifti1Image(volume.array, volume.ras_affine))
    np.testing.assert_allclose(ours.affine, theirs.affine, atol=1e-3)
    np.testing.assert_allclose(np.asarray(ours.dataobj), theirs.get_fdata(), atol=1e-2)
