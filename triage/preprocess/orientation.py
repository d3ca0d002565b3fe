"""Axis codes and reorientation of a voxel grid: flips and a transpose, never interpolation.

The same rule as ``nibabel.orientations`` (``io_orientation``, ``aff2axcodes``,
``apply_orientation``, ``inv_ornt_aff``), which MONAI's ``Orientation`` also uses, in a few
lines of numpy: importing nibabel costs ~0.45 s per process (its NIfTI module imports
pydicom), more than aligning a volume. `tests/preprocess/test_orientation.py` checks this
module against nibabel on axis-aligned, oblique and sheared affines.
"""

from __future__ import annotations

import numpy as np

#: Axis code of the negative and the positive direction of world axes x, y, z (RAS+).
LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


def io_orientation(affine: np.ndarray) -> np.ndarray:
    """The world axis nearest to each voxel axis of `affine`, and its direction.

    The rotation nearest to the affine's direction cosines (polar decomposition), then
    voxel axes from the most to the least clearly aligned, each taking the world axis it
    moves along most that no earlier axis took (``nibabel.io_orientation``).

    Args:
        affine: 4x4 voxel -> world affine of rank 3.

    Returns:
        A (3, 2) int array: row ``i`` is (world axis, +1 or -1) of voxel axis ``i``.

    Example:
        >>> io_orientation(np.diag([-2.0, 2.0, 3.0, 1.0])).tolist()
        [[0, -1], [1, 1], [2, 1]]
    """
    rzs = np.asarray(affine, dtype=np.float64)[:3, :3]
    zooms = np.sqrt(np.sum(rzs * rzs, axis=0))
    zooms[zooms == 0] = 1.0
    p, s, qs = np.linalg.svd(rzs / zooms, full_matrices=False)
    keep = s > s.max() * 3 * np.finfo(s.dtype).eps
    r = p[:, keep] @ qs[keep]
    if keep.sum() < 3:
        raise ValueError(f"The affine {np.asarray(affine).tolist()} is singular: its voxel "
                         f"axes have no orientation.")
    ornt = np.zeros((3, 2), dtype=np.int64)
    for in_ax in np.argsort(np.min(-(r ** 2), axis=0), kind="stable"):
        col = r[:, in_ax]
        out_ax = int(np.argmax(np.abs(col)))
        ornt[in_ax] = (out_ax, -1 if col[out_ax] < 0 else 1)
        r[out_ax, :] = 0.0
    return ornt


def axcodes(affine: np.ndarray) -> str:
    """Axis codes of `affine`'s voxel axes, e.g. ``"LPS"`` (``nibabel.aff2axcodes``).

    Example:
        >>> axcodes(np.diag([-1.0, -1.0, 2.0, 1.0]))
        'LPS'
    """
    return "".join(LABELS[int(axis)][int(sign > 0)] for axis, sign in io_orientation(affine))


def target_axes(codes: str) -> list[tuple[int, int]]:
    """(world axis, direction) of each output axis named by `codes`, e.g. ``"RAS"``."""
    out = []
    for code in codes.upper():
        for axis, pair in enumerate(LABELS):
            if code in pair:
                out.append((axis, 1 if code == pair[1] else -1))
                break
        else:
            raise ValueError(f"Unknown axis code '{code}' in '{codes}'; use one of "
                             f"L/R, P/A, I/S per axis, e.g. 'RAS'.")
    if len(out) != 3 or len({axis for axis, _ in out}) != 3:
        raise ValueError(f"Axis codes '{codes}' must name each of L/R, P/A, I/S once.")
    return out


def reorient(array: np.ndarray, affine: np.ndarray, codes: str
             ) -> tuple[np.ndarray, np.ndarray]:
    """`array` and `affine` with voxel axes along `codes` (a view: flips and a transpose).

    Args:
        array: 3D array indexed like `affine`'s columns.
        affine: its 4x4 voxel -> world affine.
        codes: the output axis codes, e.g. ``"RAS"``.

    Returns:
        The reoriented view and its affine (the same world position for every voxel).

    Example:
        >>> x = np.arange(24.0).reshape(2, 3, 4)
        >>> y, aff = reorient(x, np.diag([-1.0, 1.0, 1.0, 1.0]), "RAS")
        >>> y[0, 0, 0] == x[1, 0, 0], aff[0].tolist()
        (np.True_, [1.0, 0.0, 0.0, -1.0])
    """
    ornt = io_orientation(affine)
    world_to_in = {int(world): in_ax for in_ax, (world, _) in enumerate(ornt)}
    undo = np.zeros((4, 4))
    undo[3, 3] = 1.0
    perm, flips = [], []
    for out_ax, (world, sign) in enumerate(target_axes(codes)):
        in_ax = world_to_in[world]
        flip = int(ornt[in_ax, 1]) != sign
        perm.append(in_ax)
        flips.append(flip)
        undo[in_ax, out_ax] = -1.0 if flip else 1.0
        undo[in_ax, 3] = array.shape[in_ax] - 1.0 if flip else 0.0
    view = array.transpose(perm)
    view = view[tuple(slice(None, None, -1) if f else slice(None) for f in flips)]
    return view, np.asarray(affine, dtype=np.float64) @ undo
