"""`align` against the MONAI pipeline it replaced: same arrays and affines.

`monai_align` is the former implementation of `triage.preprocess.align.align`, kept here
verbatim as the reference: MONAI ``Orientation -> (anti-alias) -> Spacing ->
ResizeWithPadOrCrop`` on a `MetaTensor`. Ingest no longer imports torch or MONAI; training
still does, so both stay installed.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest

from triage.preprocess.align import align
from triage.preprocess.config import PreprocessConfig

torch = pytest.importorskip("torch")
monai_transforms = pytest.importorskip("monai.transforms")
MetaTensor = pytest.importorskip("monai.data").MetaTensor

# float64 grid_sample against float32 separable interpolation of values in [0, 1].
ARRAY_ATOL = 1e-4
AFFINE_ATOL = 1e-6


# --- the reference: the MONAI-based align() as it was -------------------------------------

def _reference_decimation_matrix(n: int, factor: float) -> tuple[torch.Tensor, int]:
    stride = max(1, math.floor(factor))
    sigma = (factor - 1.0) / 2.0
    n_out = int((n - 1 - (stride - 1) / 2) // stride) + 1
    centres = stride * torch.arange(n_out, dtype=torch.float64) + (stride - 1) / 2
    dist = torch.arange(n, dtype=torch.float64)[None, :] - centres[:, None]
    weights = torch.exp(-0.5 * (dist / sigma) ** 2)
    weights[dist.abs() > 4.0 * sigma + 0.5] = 0.0
    return (weights / weights.sum(dim=1, keepdim=True)).to(torch.float32), stride


def _reference_apply_along(matrix: torch.Tensor, x: torch.Tensor, axis: int) -> torch.Tensor:
    if axis == 0:
        return (matrix @ x.reshape(x.shape[0], -1)).reshape(-1, *x.shape[1:])
    if axis == 1:
        return torch.matmul(matrix, x)
    return x @ matrix.T


def _reference_anti_alias(image, target_spacing: np.ndarray):
    affine = image.affine.numpy().astype(np.float64)
    factors = np.asarray(target_spacing, dtype=np.float64) / np.linalg.norm(
        affine[:3, :3], axis=0)
    x = image.as_tensor()[0].to(torch.float32)
    order = sorted(range(3), key=lambda a: -x.stride(a))
    xm = x.permute(order).contiguous()
    matrices = {order.index(axis): _reference_decimation_matrix(x.shape[axis],
                                                                float(factors[axis]))
                for axis in range(3) if (factors[axis] - 1.0) / 2.0 >= 0.3}

    def cost(axes: tuple[int, ...]) -> int:
        size, total = list(xm.shape), 0
        for axis in axes:
            total += math.prod(size) * matrices[axis][0].shape[0]
            size[axis] = matrices[axis][0].shape[0]
        return total

    step = np.eye(4)
    for m_axis in min(itertools.permutations(matrices), key=cost, default=()):
        matrix, stride = matrices[m_axis]
        xm = _reference_apply_along(matrix, xm, m_axis)
        axis = order[m_axis]
        step[axis, axis] = stride
        step[axis, 3] = (stride - 1) / 2.0
    x = xm.permute([order.index(a) for a in range(3)]).contiguous()
    return MetaTensor(x[None], affine=torch.as_tensor(affine @ step))


def _monai_resampled(array: np.ndarray, ras_affine: np.ndarray, config: PreprocessConfig):
    """The former `align` up to its crop/pad: a MetaTensor on the target spacing."""
    array = np.asarray(array, dtype=np.float32)
    if any(st < 0 for st in array.strides):
        array = np.ascontiguousarray(array)
    image = MetaTensor(torch.from_numpy(array)[None],
                       affine=torch.as_tensor(np.asarray(ras_affine, dtype=np.float64)))
    image = monai_transforms.Orientation(axcodes=config.orientation, labels=None)(image)
    target = np.asarray(config.target_spacing, dtype=np.float64)
    if config.anti_aliasing and config.interpolation != "nearest":
        image = _reference_anti_alias(image, target)
    mode = {"trilinear": "bilinear", "nearest": "nearest"}[config.interpolation]
    return monai_transforms.Spacing(pixdim=target, mode=mode, padding_mode="border",
                                    diagonal=False)(image)


def monai_align(array: np.ndarray, ras_affine: np.ndarray, config: PreprocessConfig,
                pad_value: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The former `align`: (array, affine) from MONAI transforms."""
    image = monai_transforms.ResizeWithPadOrCrop(config.target_shape, method="symmetric",
                                                 value=float(pad_value))(
        _monai_resampled(array, ras_affine, config))
    return (image.as_tensor()[0].numpy().astype(np.float32),
            image.affine.numpy().astype(np.float64))


# --- test volumes ------------------------------------------------------------------------

def _rotation(z_deg: float, x_deg: float) -> np.ndarray:
    cz, sz = math.cos(math.radians(z_deg)), math.sin(math.radians(z_deg))
    cx, sx = math.cos(math.radians(x_deg)), math.sin(math.radians(x_deg))
    return (np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
            @ np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]]))


# Direction cosines (columns: where array axes i, j, k point, in RAS) of real layouts.
ORIENTATIONS = {
    "axial-supine": np.diag([-1.0, -1.0, 1.0]),  # LPS
    "axial-prone": np.diag([1.0, 1.0, 1.0]),
    "axial-reversed-slices": np.diag([-1.0, -1.0, -1.0]),
    "coronal": np.array([[-1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]]),
    "sagittal": np.array([[0, 0, -1.0], [-1.0, 0, 0], [0, -1.0, 0]]),
    "oblique": _rotation(12.0, -7.0) @ np.diag([-1.0, -1.0, 1.0]),
}
# Source spacing (mm, per array axis) and source shape: down-, up- and mixed sampling.
SAMPLINGS = {
    "downsample": ((1.37, 1.37, 1.25), (60, 52, 44)),
    "upsample": ((5.5, 5.0, 6.0), (14, 13, 9)),
    "anisotropic": ((0.9, 2.6, 3.3), (70, 24, 17)),
    "target-within-tolerance": ((4.0004, 3.9995, 5.0), (23, 20, 11)),
}
TARGET_SPACING = (4.0, 4.0, 5.0)


def _volume(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Values in [0, 1]: smooth anatomy-like blobs, sharp edges and some noise."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    body = (grid[0] ** 2 + (1.3 * grid[1]) ** 2 < 0.7).astype(np.float64) * 0.4
    blob = np.exp(-8 * ((grid - rng.uniform(-0.4, 0.4, (3, 1, 1, 1))) ** 2).sum(0))
    noise = rng.uniform(0.0, 0.2, shape)
    return np.clip(body + 0.4 * blob + noise, 0.0, 1.0).astype(np.float32)


def _affine(orientation: str, spacing: tuple[float, ...]) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = ORIENTATIONS[orientation] @ np.diag(spacing)
    affine[:3, 3] = [117.3, -82.1, 40.6]
    return affine


def _target_shapes(resampled: tuple[int, ...]) -> dict[str, tuple[int, int, int]]:
    """Crop and pad along every axis, by odd and by even amounts."""
    return {
        "crop-odd-pad-even": (resampled[0] - 3, resampled[1] + 4, resampled[2] - 1),
        "pad-odd-crop-even": (resampled[0] + 5, resampled[1] - 2, resampled[2] + 1),
    }


def _at_ties(voxels: np.ndarray, out_affine: np.ndarray, source_affine: np.ndarray
             ) -> np.ndarray:
    """Whether output `voxels` sample the source half-way between two voxels on some axis.

    There nearest-neighbour may round either way: torch's float64 grid arithmetic rounds
    by the sign of its rounding error, `align` half to even.
    """
    ijk = np.c_[voxels, np.ones(len(voxels))].T
    source = (np.linalg.solve(source_affine, out_affine) @ ijk)[:3]
    return (np.abs(source - np.floor(source) - 0.5) < 1e-6).any(axis=0)


CASES = [pytest.param(o, s, sh, interp, id=f"{o}-{s}-{sh}-{interp}")
         for o, s, sh, interp in itertools.product(
             ORIENTATIONS, SAMPLINGS, ("crop-odd-pad-even", "pad-odd-crop-even"),
             ("trilinear", "nearest"))]


def _case(orientation: str, sampling: str, shape_name: str, interpolation: str, **overrides
          ) -> tuple[np.ndarray, np.ndarray, PreprocessConfig]:
    """Array, RAS affine and a config whose shape crops/pads what Spacing produces."""
    spacing, shape = SAMPLINGS[sampling]
    array = _volume(shape, seed=len(orientation) + len(sampling))
    affine = _affine(orientation, spacing)
    config = PreprocessConfig(target_spacing=TARGET_SPACING, interpolation=interpolation,
                              **overrides)
    resampled = tuple(_monai_resampled(array, affine, config).shape[1:])
    return array, affine, dataclasses.replace(
        config, target_shape=_target_shapes(resampled)[shape_name])


@pytest.mark.parametrize(("orientation", "sampling", "shape_name", "interpolation"), CASES)
def test_align_equals_the_monai_pipeline(orientation, sampling, shape_name, interpolation):
    array, affine, config = _case(orientation, sampling, shape_name, interpolation)
    expected, expected_affine = monai_align(array, affine, config, pad_value=-0.25)
    out = align(array, affine, config, pad_value=-0.25)
    assert out.array.shape == expected.shape == config.target_shape
    np.testing.assert_allclose(out.affine, expected_affine, atol=AFFINE_ATOL, rtol=0)
    if interpolation == "trilinear":
        np.testing.assert_allclose(out.array, expected, atol=ARRAY_ATOL, rtol=0)
    else:
        differ = np.argwhere(out.array != expected)
        assert _at_ties(differ, out.affine, affine).all(), differ[:5]


@pytest.mark.parametrize("orientation", ["axial-supine", "sagittal", "oblique"])
def test_without_anti_aliasing_too(orientation):
    array, affine, config = _case(orientation, "downsample", "crop-odd-pad-even", "trilinear",
                                  anti_aliasing=False)
    expected, expected_affine = monai_align(array, affine, config)
    out = align(array, affine, config)
    np.testing.assert_allclose(out.affine, expected_affine, atol=AFFINE_ATOL, rtol=0)
    np.testing.assert_allclose(out.array, expected, atol=ARRAY_ATOL, rtol=0)


@pytest.mark.parametrize("orientation", ["axial-supine", "coronal"])
def test_memory_layouts_and_other_axcodes(orientation):
    """Fortran-ordered stacks (the loader's) and an LPS output grid."""
    array, affine, _ = _case(orientation, "downsample", "pad-odd-crop-even", "trilinear")
    config = PreprocessConfig(target_spacing=TARGET_SPACING, target_shape=(20, 17, 12),
                              orientation="LPS")
    expected, expected_affine = monai_align(array, affine, config)
    for variant in (np.asfortranarray(array), np.flip(np.flip(array, 1).copy(), 1)):
        out = align(variant, affine, config)
        np.testing.assert_allclose(out.affine, expected_affine, atol=AFFINE_ATOL, rtol=0)
        np.testing.assert_allclose(out.array, expected, atol=ARRAY_ATOL, rtol=0)


@pytest.mark.parametrize("interpolation", ["trilinear", "nearest"])
def test_sheared_grid_falls_back_to_a_centred_output(interpolation):
    """A sheared affine (uncorrected gantry tilt): not separable, and no input corner
    comes first along every output axis, so Spacing centres the output grid."""
    affine = _affine("axial-supine", (1.5, 1.5, 2.5))
    affine[1, 2] = -0.9  # slices step along y as well as z, against y: no corner first
    array = _volume((40, 36, 20), seed=3)
    config = PreprocessConfig(target_spacing=TARGET_SPACING, target_shape=(16, 15, 11),
                              interpolation=interpolation)
    expected, expected_affine = monai_align(array, affine, config)
    out = align(array, affine, config)
    np.testing.assert_allclose(out.affine, expected_affine, atol=AFFINE_ATOL, rtol=0)
    if interpolation == "trilinear":
        np.testing.assert_allclose(out.array, expected, atol=ARRAY_ATOL, rtol=0)
    else:
        differ = np.argwhere(out.array != expected)
        assert _at_ties(differ, out.affine, affine).all(), differ[:5]
