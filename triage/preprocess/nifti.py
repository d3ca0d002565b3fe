"""A single-file NIfTI-1 image (``.nii``) of a float32 volume, written without nibabel.

The volume cache writes one prepared volume per study. nibabel would do it, but importing
it costs ~0.45 s per process (its NIfTI module imports pydicom), more than preparing a
volume; the 348-byte header of a float32 image with an sform is a few lines. Readers stay
nibabel (and MONAI through it): `tests/preprocess/test_nifti.py` checks that nibabel reads
these bytes back to the same array, affine and header fields it writes itself.
"""

from __future__ import annotations

import numpy as np

#: The NIfTI-1 header, field by field (little-endian), 348 bytes.
HEADER = np.dtype([
    ("sizeof_hdr", "<i4"), ("data_type", "S10"), ("db_name", "S18"), ("extents", "<i4"),
    ("session_error", "<i2"), ("regular", "S1"), ("dim_info", "u1"), ("dim", "<i2", 8),
    ("intent_p1", "<f4"), ("intent_p2", "<f4"), ("intent_p3", "<f4"),
    ("intent_code", "<i2"), ("datatype", "<i2"), ("bitpix", "<i2"), ("slice_start", "<i2"),
    ("pixdim", "<f4", 8), ("vox_offset", "<f4"), ("scl_slope", "<f4"), ("scl_inter", "<f4"),
    ("slice_end", "<i2"), ("slice_code", "u1"), ("xyzt_units", "u1"), ("cal_max", "<f4"),
    ("cal_min", "<f4"), ("slice_duration", "<f4"), ("toffset", "<f4"), ("glmax", "<i4"),
    ("glmin", "<i4"), ("descrip", "S80"), ("aux_file", "S24"), ("qform_code", "<i2"),
    ("sform_code", "<i2"), ("quatern_b", "<f4"), ("quatern_c", "<f4"),
    ("quatern_d", "<f4"), ("qoffset_x", "<f4"), ("qoffset_y", "<f4"), ("qoffset_z", "<f4"),
    ("srow_x", "<f4", 4), ("srow_y", "<f4", 4), ("srow_z", "<f4", 4),
    ("intent_name", "S16"), ("magic", "S4"),
])
FLOAT32 = 16  # NIfTI datatype code
UNITS_MM = 2  # xyzt_units: spatial unit millimetres, no time unit
SFORM_ALIGNED = 2  # sform_code: "aligned to another file / anatomical truth"
VOX_OFFSET = 352  # header plus the 4-byte extension flag (no extensions)


def float32_nifti(array: np.ndarray, affine: np.ndarray, descrip: str = "") -> bytes:
    """The bytes of a ``.nii`` file holding `array` (as float32) with `affine` as its sform.

    Args:
        array: 3D array, indexed [i, j, k] like `affine`'s columns.
        affine: 4x4 voxel -> RAS mm (the NIfTI convention).
        descrip: up to 80 ASCII characters for the header's description.

    Returns:
        Header, empty extension flag, then the voxels in NIfTI (Fortran) order.

    Example:
        >>> data = float32_nifti(np.zeros((2, 3, 4)), np.diag([2.0, 2.0, 3.0, 1.0]))
        >>> len(data), data[344:348]
        (448, b'n+1\\x00')
    """
    array = np.asarray(array, dtype="<f4")
    affine = np.asarray(affine, dtype=np.float64)
    if array.ndim != 3 or affine.shape != (4, 4):
        raise ValueError(f"float32_nifti() needs a 3D array and a 4x4 affine, got shapes "
                         f"{array.shape} and {affine.shape}.")
    header = np.zeros((), dtype=HEADER)
    header["sizeof_hdr"] = HEADER.itemsize
    header["dim"] = (3, *array.shape, 1, 1, 1, 1)
    header["datatype"], header["bitpix"] = FLOAT32, 32
    header["pixdim"] = (1.0, *np.linalg.norm(affine[:3, :3], axis=0), 1.0, 1.0, 1.0, 1.0)
    header["vox_offset"] = VOX_OFFSET
    header["scl_slope"], header["scl_inter"] = 1.0, 0.0
    header["xyzt_units"] = UNITS_MM
    header["descrip"] = descrip.encode("ascii")[:80]
    header["sform_code"] = SFORM_ALIGNED  # the qform stays unset (code 0)
    header["qoffset_x"], header["qoffset_y"], header["qoffset_z"] = affine[:3, 3]
    header["srow_x"], header["srow_y"], header["srow_z"] = affine[0], affine[1], affine[2]
    header["magic"] = b"n+1"
    return b"".join((header.tobytes(), b"\0\0\0\0", array.tobytes(order="F")))
