"""`float32_nifti` writes what nibabel reads back as the array, affine and header it writes."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from triage.preprocess.nifti import float32_nifti

AFFINES = [np.diag([4.0, 4.0, 5.0, 1.0]),
           np.array([[-4.0, 0.1, 0.0, 10.5], [0.0, 4.0, 0.3, -20.25],
                     [0.2, 0.0, 5.0, 30.0], [0.0, 0.0, 0.0, 1.0]])]


@pytest.mark.parametrize("affine", AFFINES)
def test_nibabel_reads_the_same_image_it_writes(affine):
    array = np.random.default_rng(0).normal(size=(6, 5, 4)).astype(np.float32)
    ours = nib.Nifti1Image.from_bytes(float32_nifti(array, affine, "triage preprocess 1"))
    reference = nib.Nifti1Image(array, affine)
    reference.header.set_xyzt_units("mm")
    reference.header["descrip"] = b"triage preprocess 1"
    theirs = nib.Nifti1Image.from_bytes(reference.to_bytes())
    np.testing.assert_array_equal(np.asarray(ours.dataobj), array)
    assert np.asarray(ours.dataobj).dtype == np.float32
    np.testing.assert_array_equal(ours.affine, theirs.affine)
    np.testing.assert_array_equal(ours.header.get_best_affine(), theirs.affine)
    for field in ("sizeof_hdr", "dim", "datatype", "bitpix", "vox_offset", "scl_slope",
                  "scl_inter", "xyzt_units", "descrip", "sform_code", "srow_x", "srow_y",
                  "srow_z", "magic"):
        np.testing.assert_array_equal(ours.header[field], theirs.header[field], err_msg=field)
    np.testing.assert_allclose(ours.header["pixdim"][1:], theirs.header["pixdim"][1:])
    assert ours.header.get_zooms() == pytest.approx(theirs.header.get_zooms())
    assert ours.header.get_xyzt_units() == ("mm", "unknown")
    assert len(float32_nifti(array, affine)) == len(reference.to_bytes())


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"needs a 3D array and a 4x4 affine, got shapes \(2, 2\)"):
        float32_nifti(np.zeros((2, 2)), np.eye(4))


def test_nibabel_file_reader_takes_it(tmp_path):
    path = tmp_path / "x.nii"
    path.write_bytes(float32_nifti(np.ones((2, 3, 4)), np.eye(4)))
    image = nib.load(path)
    assert image.shape == (2, 3, 4) and image.get_fdata().sum() == 24
    assert isinstance(image, nib.Nifti1Image)  # single-file NIfTI-1
