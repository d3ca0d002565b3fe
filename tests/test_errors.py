"""What is final and what is retried: `is_environmental` tells the machine's failures from a
study's own."""

from __future__ import annotations

import errno

import pytest

from triage.errors import (
    DicomError,
    EnvironmentalError,
    GeometryError,
    describe_environmental,
    environmental_reason,
    is_environmental,
)


@pytest.mark.parametrize("exc", [
    OSError(errno.ENOSPC, "No space left on device", "/out/cache/ab.nii.gz"),
    OSError(errno.EIO, "Input/output error"),
    OSError(errno.EROFS, "Read-only file system"),
    PermissionError(errno.EACCES, "Permission denied"),
    ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
    TimeoutError("timed out"),
    RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("CUDA error: no CUDA GPUs are available"),
    AssertionError("Torch not compiled with CUDA enabled"),
    EnvironmentalError("the tracking server did not answer"),
])
def test_failures_of_the_machine_are_environmental(exc):
    assert is_environmental(exc)


@pytest.mark.parametrize("exc", [
    DicomError("not a DICOM file"), GeometryError("slice gap", verdict="gap"),
    ValueError("cannot reshape array"), FileNotFoundError(errno.ENOENT, "gone"),
    RuntimeError("mat1 and mat2 shapes cannot be multiplied"), MemoryError(),
])
def test_a_studys_own_failures_are_final(exc):
    assert not is_environmental(exc)


def test_a_wrapped_environmental_error_is_environmental():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as err:
            raise DicomError("Loading failed with an unexpected OSError") from err
    except DicomError as wrapped:
        assert is_environmental(wrapped)
        assert describe_environmental(wrapped) == "No space left on device (ENOSPC)"


def test_the_description_leaves_file_paths_out():
    err = OSError(errno.ENOSPC, "No space left on device", "/export/DOE^JOHN/1.dcm")
    assert "DOE" not in describe_environmental(err)


@pytest.mark.parametrize(("reason", "environmental"), [
    ("internal error (OSError): [Errno 28] No space left on device: '/o/c/x.nii.gz'", True),
    ("inference error (AssertionError): Torch not compiled with CUDA enabled", True),
    ("inference error (RuntimeError): CUDA out of memory", True),
    ("series 3: slice gap of 12 mm", False),
    ("too few slices (3 < 4)", False),
])
def test_old_journal_reasons_are_recognized(reason, environmental):
    assert environmental_reason(reason) is environmental


def test_every_triage_error_survives_pickling_with_its_attributes(tmp_path):
    import pickle

    from triage.errors import (
        DicomError,
        EnvironmentalError,
        GeometryError,
        LabelsError,
        ManifestError,
    )
    from triage.registry.bundle import BundleDigestError, BundleError

    errors = [BundleError(tmp_path, "weights.pt is missing."),
              BundleDigestError(tmp_path, "abc", "def"),
              DicomError("no pixel data", tmp_path / "a.dcm"),
              GeometryError("gap", tmp_path, verdict="gaps"),
              ManifestError(tmp_path / "m.csv", ["row 2: bad label"]),
              LabelsError(tmp_path / "l.csv", "no study_uid column", line=3),
              EnvironmentalError("disk full")]
    for err in errors:
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err)
        assert back.__dict__ == err.__dict__
