"""Tests of alignment: orientation invariance, target grid, padding, physical positions."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from triage.dicom.volume.model import LPS_TO_RAS
from triage.preprocess.align import align, gaussian_decimation_matrix
from triage.preprocess.config import PreprocessConfig

CONFIG = PreprocessConfig(target_spacing=(4.0, 4.0, 5.0), target_shape=(48, 40, 24))
BOX_CENTRE_LPS = np.array([20.0, -10.0, 40.0])  # mm; the box is 20 mm on each side


def make_phantom(spacing=(1.5, 1.5, 2.5), origin=(-75.0, -70.0, -10.0),
                 extent=(150.0, 135.0, 100.0)) -> tuple[np.ndarray, np.ndarray]:
    """Axial supine LPS volume (values in [0, 1]): a tissue slab and a bright box.

    Returns the array indexed [column, row, slice] and its voxel -> LPS affine.
    """
    shape = tuple(int(round(e / s)) for e, s in zip(extent, spacing, strict=True))
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    lps = ijk * np.asarray(spacing) + np.asarray(origin)
    array = np.where(np.abs(lps[..., 1]) < 50.0, 0.3, 0.0)
    inside = (np.abs(lps - BOX_CENTRE_LPS) <= 10.0).all(axis=-1)
    array[inside] = 1.0
    return array.astype(np.float32), affine


def reindex(array: np.ndarray, affine: np.ndarray, perm: tuple[int, int, int],
            flips: tuple[bool, bool, bool]) -> tuple[np.ndarray, np.ndarray]:
    """The same voxels stored with permuted/flipped axes (another acquisition layout).

    New axis ``a`` is old axis ``perm[a]``, reversed when ``flips[a]``; the new affine
    keeps every voxel at its world position.
    """
    out = np.transpose(array, perm)
    to_old = np.zeros((4, 4))
    to_old[3, 3] = 1.0
    for a, (old, flip) in enumerate(zip(perm, flips, strict=True)):
        if flip:
            out = np.flip(out, axis=a)
            to_old[old, a] = -1.0
            to_old[old, 3] = array.shape[old] - 1
        else:
            to_old[old, a] = 1.0
    return np.ascontiguousarray(out), affine @ to_old


LAYOUTS = {
    "axial-supine": ((0, 1, 2), (False, False, False)),
    "axial-prone": ((0, 1, 2), (True, True, False)),
    "axial-reversed-slices": ((0, 1, 2), (False, False, True)),
    "coronal": ((0, 2, 1), (False, True, False)),
    "coronal-reversed": ((0, 2, 1), (False, True, True)),
    "sagittal": ((1, 2, 0), (False, True, False)),
}


@pytest.fixture(scope="module")
def reference():
    array, affine = make_phantom()
    return align(array, LPS_TO_RAS @ affine, CONFIG)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_gives_the_same_array_and_affine(layout, reference):
    array, affine = reindex(*make_phantom(), *LAYOUTS[layout])
    out = align(array, LPS_TO_RAS @ affine, CONFIG)
    np.testing.assert_allclose(out.affine, reference.affine, atol=1e-6)
    np.testing.assert_allclose(out.array, reference.array, atol=1e-5)


@pytest.mark.parametrize("layout", ["axial-supine", "sagittal"])
def test_memory_order_does_not_matter(layout, reference):
    """Loaders hand over transposed DICOM stacks (Fortran order) or negative-stride views."""
    array, affine = reindex(*make_phantom(), *LAYOUTS[layout])
    for variant in (np.asfortranarray(array), np.flip(np.flip(array, 0).copy(), 0)):
        out = align(variant, LPS_TO_RAS @ affine, CONFIG)
        np.testing.assert_allclose(out.array, reference.array, atol=1e-5)


def test_layouts_really_differ_before_alignment():
    array, affine = make_phantom()
    sagittal, s_affine = reindex(array, affine, *LAYOUTS["sagittal"])
    assert sagittal.shape != array.shape
    assert nib.aff2axcodes(LPS_TO_RAS @ s_affine) == ("P", "I", "L")
    assert align(sagittal, LPS_TO_RAS @ s_affine, CONFIG).source_axcodes == "PIL"


def test_target_grid_is_exact(reference):
    assert reference.array.shape == CONFIG.target_shape
    assert reference.array.dtype == np.float32 and reference.array.flags.c_contiguous
    np.testing.assert_allclose(reference.spacing, CONFIG.target_spacing, atol=1e-9)
    assert nib.aff2axcodes(reference.affine) == ("R", "A", "S")
    np.testing.assert_allclose(reference.affine[:3, :3], np.diag(CONFIG.target_spacing),
                               atol=1e-9)


def test_other_orientation_codes():
    array, affine = make_phantom()
    out = align(array, LPS_TO_RAS @ affine, PreprocessConfig(
        orientation="LPS", target_spacing=(4, 4, 5), target_shape=(48, 40, 24)))
    assert nib.aff2axcodes(out.affine) == ("L", "P", "S")


def world_centroid(out, threshold: float = 0.6) -> np.ndarray:
    ijk = np.argwhere(out.array > threshold)
    weights = out.array[out.array > threshold]
    centre = (ijk * weights[:, None]).sum(axis=0) / weights.sum()
    return (out.affine @ np.append(centre, 1.0))[:3]


def test_physical_position_of_the_box(reference):
    ras = LPS_TO_RAS[:3, :3] @ BOX_CENTRE_LPS
    voxel = np.linalg.solve(reference.affine, np.append(ras, 1.0))[:3]
    assert reference.array[tuple(np.round(voxel).astype(int))] > 0.95
    np.testing.assert_allclose(world_centroid(reference), ras, atol=1.0)


def test_different_native_resolution_agrees_within_interpolation(reference):
    array, affine = make_phantom(spacing=(0.8, 0.8, 1.25))
    coronal, c_affine = reindex(array, affine, *LAYOUTS["coronal"])
    out = align(coronal, LPS_TO_RAS @ c_affine, CONFIG)
    ras = LPS_TO_RAS[:3, :3] @ BOX_CENTRE_LPS
    np.testing.assert_allclose(world_centroid(out), ras, atol=1.0)
    # Voxel-grid phases differ between the two samplings; edges move by < 1 voxel.
    assert np.abs(out.array - reference.array).mean() < 0.01
    assert np.corrcoef(out.array.ravel(), reference.array.ravel())[0, 1] > 0.97


def test_pad_value_fills_outside_the_scan():
    array = np.ones((20, 20, 8), np.float32)
    out = align(array, np.diag([2.0, 2.0, 2.5, 1.0]), CONFIG, pad_value=-0.75)
    assert out.array[0, 0, 0] == out.array[-1, -1, -1] == np.float32(-0.75)
    centre = tuple(n // 2 for n in CONFIG.target_shape)
    assert out.array[centre] == pytest.approx(1.0)
    assert set(np.unique(out.array)) <= {np.float32(-0.75), np.float32(1.0)}


def test_anti_aliasing_removes_stripes_finer_than_the_target_grid():
    x = np.arange(192)
    stripes = np.broadcast_to(((x % 3) == 0).astype(np.float32)[:, None, None],
                              (192, 160, 40)).copy()
    affine = np.diag([1.0, 1.0, 2.5, 1.0])
    smooth = align(stripes, affine, CONFIG).array[8:-8, 8:-8, 4:-4]
    aliased = align(stripes, affine, PreprocessConfig(
        target_spacing=(4, 4, 5), target_shape=(48, 40, 24), anti_aliasing=False)
    ).array[8:-8, 8:-8, 4:-4]
    assert smooth.mean() == pytest.approx(1 / 3, abs=0.01)
    assert smooth.std() < 0.02
    assert aliased.std() > 0.3


def test_decimation_matrix_rows_sum_to_one_and_stay_inside():
    matrix, stride = gaussian_decimation_matrix(130, 4.0)
    assert stride == 4 and matrix.shape == (32, 130)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-6)


def test_input_is_not_modified_and_bad_input_is_rejected():
    array, affine = make_phantom()
    before = array.copy()
    align(array, LPS_TO_RAS @ affine, CONFIG)
    np.testing.assert_array_equal(array, before)
    with pytest.raises(ValueError, match=r"needs a 3D array, got shape \(4, 4\)"):
        align(np.zeros((4, 4)), np.eye(4), CONFIG)
    with pytest.raises(ValueError, match=r"needs an invertible 4x4 voxel-to-RAS affine"):
        align(np.zeros((4, 4, 4)), np.diag([1.0, 0.0, 1.0, 1.0]), CONFIG)


def test_an_axis_shorter_than_the_decimation_stride_keeps_one_voxel():
    # 5 slices of 0.8 mm to a 8 mm grid: the stride (10) exceeds the axis; it emptied the
    # axis and the resampling divided by zero (found by tests/ingest/test_fuzz.py).
    from triage.preprocess.align import gaussian_decimation_matrix

    matrix, stride = gaussian_decimation_matrix(5, 10.0)
    assert matrix.shape == (1, 5) and stride == 5
    assert np.allclose(matrix.sum(axis=1), 1.0)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_banded_product_equals_the_dense_one(axis):
    from triage.preprocess.align import _apply_along, _apply_banded, gaussian_decimation_matrix

    x = np.random.default_rng(axis).normal(size=(70, 66, 68)).astype(np.float32)
    matrix, _ = gaussian_decimation_matrix(x.shape[axis], 2.9)
    banded = _apply_banded(matrix, x, axis, rows=8)
    np.testing.assert_allclose(banded, _apply_along(matrix, x, axis), rtol=0, atol=1e-5)
    assert banded.shape[axis] == matrix.shape[0]


@pytest.mark.parametrize("affine", [
    np.diag([0.7, 0.8, 2.5, 1.0]),  # downsampled in-plane, upsampled along z
    np.array([[0.7, 0.0, 0.1, 3.0], [0.0, 0.8, 0.0, -2.0], [0.0, 0.0, 2.5, 9.0],
              [0.0, 0.0, 0.0, 1.0]]),  # sheared: the non-separable path
])
@pytest.mark.parametrize("interpolation", ["trilinear", "nearest"])
def test_resampling_only_the_cropped_window_equals_cropping_the_whole_grid(affine,
                                                                           interpolation):
    from triage.preprocess import align as module

    x = np.random.default_rng(0).normal(size=(90, 70, 60)).astype(np.float32)
    config = PreprocessConfig(target_spacing=(1.0, 1.0, 1.0), target_shape=(40, 90, 30),
                              interpolation=interpolation, anti_aliasing=False)
    got = align(x, affine, config)
    # The whole grid resampled, then cropped, as before the window.
    grid, shape = module._spacing_grid(affine, x.shape, np.ones(3))
    whole = module._resample(x, np.linalg.solve(affine, grid), shape,
                             0 if interpolation == "nearest" else 1)
    want, want_affine = module._crop_or_pad(whole, grid, config.target_shape, 0.0)
    np.testing.assert_allclose(got.array, want, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got.affine, want_affine, atol=1e-9)


def test_a_scan_kilometres_long_costs_no_more_memory_than_its_target_shape():
    import tracemalloc

    x = np.zeros((16, 16, 20), np.float32)
    affine = np.diag([1.0, 1.0, 1e5, 1.0])  # slices 100 m apart: a grid of 400,000 slices
    config = PreprocessConfig(target_spacing=(4.0, 4.0, 5.0), target_shape=(8, 8, 16))
    tracemalloc.start()
    try:
        out = align(x, affine, config)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.array.shape == (8, 8, 16)
    assert peak < 1 << 20  # the whole grid would be 400,000 x 4 x 4 float32: 25 MiB
