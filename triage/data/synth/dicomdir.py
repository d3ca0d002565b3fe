"""Write the export as a DICOM File-set with a DICOMDIR (pydicom `FileSet`).

pydicom places the files in the DICOM media layout (``PT000000/ST000000/SE000000/IM000000``,
8-character upper-case components, no extension), so the vendor file names are not kept.
Instances are added in a fixed order and the File-set UID derives from the seed, so the
DICOMDIR is byte-identical for equal seeds.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from pydicom.fileset import FileSet

from triage.data.synth.dicom_writer import make_uid

FILESET_ID = "TRIAGESYNTH"


def write_dicomdir(staging: Path, out_dir: Path, files: Sequence[str], seed: int,
                   ) -> dict[str, str]:
    """Copy `files` (relative to `staging`) into a File-set at `out_dir` with a DICOMDIR.

    Args:
        staging: folder holding the files as first written.
        out_dir: File-set root; receives ``DICOMDIR`` and the media layout.
        files: relative paths, in the order their records should appear.
        seed: the export seed (makes the File-set UID deterministic).

    Returns:
        map from each staging-relative path to its new path relative to `out_dir`
        (POSIX separators).
    """
    fileset = FileSet()
    fileset.ID = FILESET_ID
    fileset.UID = make_uid("triage-synth", seed, "fileset")
    staged = {}
    for rel in files:
        instance = fileset.add(staging / rel)
        staged[instance.SOPInstanceUID] = rel
    fileset.write(out_dir)
    moved = {}
    for instance in fileset:
        moved[staged[instance.SOPInstanceUID]] = instance.FileID.replace(os.sep, "/")
    return moved
