"""Where files go in a PACS-export-like tree: ``<patient>/<study>/<series>/<file>``.

Folder names never contain identifiers (the manifest's `export_path` is built from them):
the patient folder derives from the pseudonymous patient key. File names follow the
device's habit: by InstanceNumber with or without ``.dcm``, in shuffled order, or by SOP
Instance UID.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from triage.data.synth.devices import FileNaming


def study_folder(patient_key: str, visit: int) -> str:
    """``PAxxxxxx/ST00000v``: the study's folder relative to the export root."""
    return f"PA{patient_key.removeprefix('pk-')[:6].upper()}/ST{visit + 1:06d}"


def series_folder(series_number: int) -> str:
    """``SE000002`` for series number 2."""
    return f"SE{series_number:06d}"


def file_names(naming: FileNaming, instance_numbers: Sequence[int], sop_uids: Sequence[str],
               rng: np.random.Generator) -> tuple[str, ...]:
    """File names aligned with `instance_numbers` (acquisition order).

    Raises:
        ValueError: for an unknown naming scheme.
    """
    n = len(instance_numbers)
    if naming is FileNaming.INSTANCE:
        return tuple(f"IM{i:06d}" for i in instance_numbers)
    if naming is FileNaming.INSTANCE_DCM:
        return tuple(f"IM{i:06d}.dcm" for i in instance_numbers)
    if naming is FileNaming.SHUFFLED:
        order = rng.permutation(n)
        return tuple(f"IM{int(order[k]) + 1:06d}.dcm" for k in range(n))
    if naming is FileNaming.UID:
        return tuple(f"{uid}.dcm" for uid in sop_uids)
    raise ValueError(f"naming {naming!r} is not a FileNaming value.")
