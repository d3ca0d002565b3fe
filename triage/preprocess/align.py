"""Geometric alignment: reorient, anti-alias, resample to a target spacing, crop/pad to shape.

Every volume ends up on the same kind of grid: canonical axes (RAS by default), the target
voxel size and the target shape, centred on the centre of the scanned field. The steps are
MONAI transforms on a `MetaTensor` that carries the RAS affine, so the affine stays exact:

1. `Orientation`: flips and axis permutations only (no interpolation) when the direction
   cosines are axis-aligned, so supine, prone, coronal, sagittal and reversed-slice exports
   of one scan give the same array.
2. Anti-aliasing when downsampling by a factor ``f`` along an axis: a Gaussian with sigma
   ``(f - 1) / 2`` input voxels (the rule of scikit-image and MONAI's
   ``Resize(anti_aliasing=True)``), evaluated only every ``floor(f)`` voxels, which is all
   the resampling needs. One matrix product per axis keeps this ~20 ms for 256x256x128.
3. `Spacing` (trilinear, edge values beyond the border) to the target spacing. The grid
   keeps the input's direction cosines after step 1: an oblique series stays oblique
   (rotating it would blur it for no gain; the loader already handles gantry tilt).
4. `ResizeWithPadOrCrop` (symmetric) to the target shape, padding with the normalized value
   of air.

Pure: it does not modify its inputs and needs no GPU.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Orientation, ResizeWithPadOrCrop, Spacing

from triage.preprocess.config import PreprocessConfig

# Gaussians narrower than this (input voxels) change nothing visible; skip them.
_MIN_SIGMA = 0.3
_MONAI_MODES = {"trilinear": "bilinear", "nearest": "nearest"}


@dataclass(frozen=True)
class Aligned:
    """An aligned array and its geometry.

    Attributes:
        array: float32, shape ``config.target_shape``, indexed along `orientation` axes.
        affine: 4x4 float64 voxel -> RAS mm (NIfTI convention).
        source_axcodes: the axis codes of the input grid (e.g. ``"LPS"`` for an axial
            supine DICOM series), for the record.
    """

    array: np.ndarray
    affine: np.ndarray
    source_axcodes: str

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size along i, j, k in mm."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)


def _axcodes(affine: np.ndarray) -> str:
    return "".join(nib.aff2axcodes(affine))


def gaussian_decimation_matrix(n: int, factor: float) -> tuple[torch.Tensor, int]:
    """Rows of Gaussian weights that low-pass and decimate an axis of `n` voxels.

    The Gaussian has sigma ``(factor - 1) / 2`` input voxels (scikit-image's and MONAI
    ``Resize(anti_aliasing=True)``'s rule); output voxel ``m`` sits at input position
    ``s * m + (s - 1) / 2`` with stride ``s = floor(factor)``, every centre inside the
    data. Weights are truncated at 4 sigma and renormalized per row, so constants stay
    constant up to the edges.

    Returns:
        The (n_out, n) float32 matrix and the stride `s`.
    """
    stride = max(1, math.floor(factor))
    sigma = (factor - 1.0) / 2.0
    n_out = int((n - 1 - (stride - 1) / 2) // stride) + 1
    centres = stride * torch.arange(n_out, dtype=torch.float64) + (stride - 1) / 2
    dist = torch.arange(n, dtype=torch.float64)[None, :] - centres[:, None]
    weights = torch.exp(-0.5 * (dist / sigma) ** 2)
    weights[dist.abs() > 4.0 * sigma + 0.5] = 0.0
    return (weights / weights.sum(dim=1, keepdim=True)).to(torch.float32), stride


def _apply_along(matrix: torch.Tensor, x: torch.Tensor, axis: int) -> torch.Tensor:
    """``matrix`` (n_out, n) applied along `axis` of contiguous 3D `x`, without copies."""
    if axis == 0:
        return (matrix @ x.reshape(x.shape[0], -1)).reshape(-1, *x.shape[1:])
    if axis == 1:
        return torch.matmul(matrix, x)  # batched over axis 0
    return x @ matrix.T


def _cheapest_order(shape: tuple[int, ...], n_out: dict[int, int]) -> tuple[int, ...]:
    """Order of the per-axis products with the fewest multiply-adds (voxels x n_out)."""
    def cost(order: tuple[int, ...]) -> int:
        size, total = list(shape), 0
        for axis in order:
            total += math.prod(size) * n_out[axis]
            size[axis] = n_out[axis]
        return total

    return min(itertools.permutations(n_out), key=cost, default=())


def anti_alias(image: MetaTensor, target_spacing: np.ndarray) -> MetaTensor:
    """Low-pass `image` (channel-first, 3D) along every axis that will be downsampled.

    Each such axis is filtered and decimated in one matrix product (see
    `gaussian_decimation_matrix`): dense, but BLAS makes it ~20 ms for 256x256x128 here,
    where a full-resolution separable convolution takes ~0.8 s. Axes downsampled by less
    than ``1 + 2 * _MIN_SIGMA`` are left alone. The returned affine places each output
    voxel at the centre of its weights.

    Args:
        image: (1, X, Y, Z) MetaTensor with its affine.
        target_spacing: the spacing `Spacing` will resample to, mm, per array axis.
    """
    affine = image.affine.numpy().astype(np.float64)
    factors = np.asarray(target_spacing, dtype=np.float64) / np.linalg.norm(
        affine[:3, :3], axis=0)
    x = image.as_tensor()[0].to(torch.float32)
    # Work in memory order (slowest axis first): after a flip of a Fortran-ordered DICOM
    # stack, or Orientation's axis permutation, that avoids a transposing copy of the
    # full-resolution array; only the small result is transposed back.
    order = sorted(range(3), key=lambda a: -x.stride(a))
    xm = x.permute(order).contiguous()  # no copy when x is a permuted dense tensor
    matrices = {order.index(axis): gaussian_decimation_matrix(x.shape[axis],
                                                              float(factors[axis]))
                for axis in range(3) if (factors[axis] - 1.0) / 2.0 >= _MIN_SIGMA}
    step = np.eye(4)
    for m_axis in _cheapest_order(tuple(xm.shape), {a: m.shape[0] for a, (m, _) in
                                                    matrices.items()}):
        matrix, stride = matrices[m_axis]
        xm = _apply_along(matrix, xm, m_axis)
        axis = order[m_axis]
        step[axis, axis] = stride
        step[axis, 3] = (stride - 1) / 2.0
    x = xm.permute([order.index(a) for a in range(3)]).contiguous()
    return MetaTensor(x[None], affine=torch.as_tensor(affine @ step))


def align(array: np.ndarray, ras_affine: np.ndarray, config: PreprocessConfig,
          pad_value: float = 0.0) -> Aligned:
    """Reorient, resample and crop/pad `array` onto the grid `config` describes.

    Args:
        array: 3D array (any real dtype), indexed like `ras_affine`'s columns.
        ras_affine: 4x4 voxel -> RAS mm (use `Volume.ras_affine`).
        config: target orientation, spacing, shape, interpolation and anti-aliasing.
        pad_value: value for voxels outside the scanned field (normalized air).

    Returns:
        The aligned float32 array of shape ``config.target_shape`` and its RAS affine.

    Raises:
        ValueError: if `array` is not 3D or `ras_affine` is not an invertible 4x4 matrix.

    Example:
        >>> import numpy as np
        >>> out = align(np.zeros((10, 10, 4), np.float32), np.diag([2., 2., 5., 1.]),
        ...             PreprocessConfig(target_spacing=(4, 4, 5), target_shape=(8, 8, 4)))
        >>> out.array.shape, out.spacing.tolist()
        ((8, 8, 4), [4.0, 4.0, 5.0])
    """
    array = np.asarray(array)
    affine = np.asarray(ras_affine, dtype=np.float64)
    if array.ndim != 3:
        raise ValueError(f"align() needs a 3D array, got shape {array.shape}.")
    if affine.shape != (4, 4) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise ValueError(f"align() needs an invertible 4x4 voxel-to-RAS affine, got "
                         f"{affine.tolist()}.")
    source_axcodes = _axcodes(affine)
    array = np.asarray(array, dtype=np.float32)
    if any(st < 0 for st in array.strides):  # torch cannot view negative strides
        array = np.ascontiguousarray(array)
    tensor = torch.from_numpy(array)[None]  # a view: C or Fortran order both fine
    image = MetaTensor(tensor, affine=torch.as_tensor(affine))
    image = Orientation(axcodes=config.orientation, labels=None)(image)
    target = np.asarray(config.target_spacing, dtype=np.float64)
    if config.anti_aliasing and config.interpolation != "nearest":
        image = anti_alias(image, target)
    image = Spacing(pixdim=target, mode=_MONAI_MODES[config.interpolation],
                    padding_mode="border", diagonal=False)(image)
    image = ResizeWithPadOrCrop(config.target_shape, method="symmetric",
                                value=float(pad_value))(image)
    out = image.as_tensor()[0].numpy().astype(np.float32, copy=False)
    return Aligned(array=np.ascontiguousarray(out),
                   affine=image.affine.numpy().astype(np.float64),
                   source_axcodes=source_axcodes)
