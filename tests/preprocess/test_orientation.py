"""`triage.preprocess.orientation` gives nibabel's orientation, axis codes and reoriented array."""

from __future__ import annotations

import itertools

import nibabel as nib
import numpy as np
import pytest

from triage.preprocess.orientation import axcodes, io_orientation, reorient


def _affines() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((-1.0, 1.0), repeat=3):
            affine = np.eye(4)
            affine[:3, :3] = np.eye(3)[:, perm] * np.asarray(signs) * rng.uniform(0.5, 5, 3)
            affine[:3, 3] = rng.normal(0, 50, 3)
            out.append(affine)
    for _ in range(60):  # oblique, tilted and sheared grids
        affine = np.eye(4)
        affine[:3, :3] = rng.normal(size=(3, 3)) * rng.uniform(0.5, 5, 3)
        affine[:3, 3] = rng.normal(0, 50, 3)
        out.append(affine)
    tilt = np.eye(4)
    tilt[:3, 2] = (0.0, np.sin(0.2), np.cos(0.2))  # 12 deg gantry tilt
    return [*out, tilt]


@pytest.mark.parametrize("affine", _affines())
def test_orientation_and_axcodes_are_nibabels(affine):
    assert io_orientation(affine).tolist() == nib.io_orientation(affine).astype(int).tolist()
    assert axcodes(affine) == "".join(nib.aff2axcodes(affine))


@pytest.mark.parametrize("codes", ["RAS", "LPS", "PIL", "SAR"])
@pytest.mark.parametrize("affine", _affines()[::9])
def test_reorient_gives_nibabels_array_and_affine(affine, codes):
    array = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    ornt = nib.orientations.ornt_transform(nib.io_orientation(affine),
                                           nib.orientations.axcodes2ornt(codes))
    expected = nib.orientations.apply_orientation(array, ornt)
    expected_affine = affine @ nib.orientations.inv_ornt_aff(ornt, array.shape)
    view, moved = reorient(array, affine, codes)
    assert np.shares_memory(view, array)
    np.testing.assert_array_equal(view, expected)
    np.testing.assert_allclose(moved, expected_affine, rtol=0, atol=1e-12)
    assert axcodes(moved) == codes


def test_bad_axis_codes_are_named():
    with pytest.raises(ValueError, match="Unknown axis code 'X' in 'RAX'"):
        reorient(np.zeros((2, 2, 2)), np.eye(4), "RAX")
    with pytest.raises(ValueError, match="must name each of L/R, P/A, I/S once"):
        reorient(np.zeros((2, 2, 2)), np.eye(4), "RRS")
