"""Fuzzing ingest with hostile files: every study reported once, nothing escapes.

Each round copies a small synthetic export (with a DICOMDIR), mutates a few of its files -
random bytes, structured header edits written by pydicom (matrix size, frames, bits,
transfer syntax, VRs, lengths) or the DICOMDIR - and ingests it inline. Whatever the
mutation, ingest must return, report every study exactly once, account for every file,
and never fail a study as ``internal`` (a bug, not bad data).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest

from triage.dicom.scan.grouping import group_studies
from triage.dicom.scan.scan import scan_export
from triage.engines.runner import ingest_export
from triage.ingest.config import IngestConfig

CONFIG = {"selection": {"min_slices": 4},
          "preprocess": {"target_spacing": [8.0, 8.0, 8.0], "target_shape": [8, 8, 4]},
          # small caps, so that the mutations that inflate sizes hit them
          "limits": {"max_inflated_bytes": 1 << 20, "max_frame_pixels": 256 * 256,
                     "max_frames": 64, "max_volume_voxels": 1 << 20}}
SYNTAXES = ["1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
            "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.50",
            "1.2.3.4.5", ""]


def _byte_mutation(path: Path, rng: np.random.Generator) -> str:
    data = bytearray(path.read_bytes())
    kind = rng.integers(4)
    if kind == 0:  # flip bytes, mostly in the header
        for _ in range(int(rng.integers(1, 16))):
            data[int(rng.integers(min(len(data), 1024)))] = int(rng.integers(256))
    elif kind == 1:  # truncate
        del data[int(rng.integers(len(data))):]
    elif kind == 2:  # insert or delete a run of bytes
        at = int(rng.integers(132, max(133, min(len(data), 1024))))
        if rng.integers(2):
            data[at:at] = rng.bytes(int(rng.integers(1, 9)))
        else:
            del data[at:at + int(rng.integers(1, 9))]
    else:  # a huge element length
        at = int(rng.integers(132, max(133, min(len(data), 1024) - 4)))
        data[at:at + 4] = b"\xff\xff\xff\x7f"
    path.write_bytes(bytes(data))
    return f"bytes-{kind}"


def _header_mutation(path: Path, rng: np.random.Generator) -> str:
    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception:  # noqa: BLE001 - mutated before: mutate its bytes again
        return _byte_mutation(path, rng)
    kind = int(rng.integers(7))
    try:
        if kind == 0:
            ds.Rows, ds.Columns = (int(v) for v in rng.choice([0, 1, 31, 4096, 65535], 2))
        elif kind == 1:
            ds.NumberOfFrames = int(rng.choice([0, -1, 2, 70, 2**31 - 1]))
        elif kind == 2:
            ds.BitsAllocated = int(rng.choice([0, 1, 7, 12, 32, 64]))
            ds.BitsStored = int(rng.choice([0, 1, 16, 40]))
        elif kind == 3:
            ds.file_meta.TransferSyntaxUID = str(rng.choice(SYNTAXES))
        elif kind == 4:  # a VR that does not fit the value
            keyword = str(rng.choice(["ImagePositionPatient", "PixelSpacing", "Rows",
                                      "StudyInstanceUID", "PixelData"]))
            if keyword in ds:
                ds[keyword].VR = str(rng.choice(["SQ", "UN", "US", "DS", "OB", "UL"]))
        elif kind == 5:  # values of the wrong kind
            with pydicom.config.disable_value_validation():
                ds.ImagePositionPatient = str(rng.choice(["abc", "1e309\\0\\0", "1\\2"]))
                ds.SliceThickness = "nan"
        elif "PixelData" in ds:
            ds.PixelData = ds.PixelData[: int(rng.integers(len(ds.PixelData)))]
        with pydicom.config.disable_value_validation():
            ds.save_as(path)
    except Exception:  # noqa: BLE001 - pydicom refused to write it: mutate the bytes instead
        return _byte_mutation(path, rng)
    return f"header-{kind}"


def _dicomdir_mutation(path: Path, rng: np.random.Generator) -> str:
    if rng.integers(2):
        return "dicomdir-" + _byte_mutation(path, rng)
    try:
        ds = pydicom.dcmread(path, force=True)
        records = ds.DirectoryRecordSequence
        record = records[int(rng.integers(len(records)))]
    except Exception:  # noqa: BLE001 - mutated before: mutate its bytes again
        return "dicomdir-" + _byte_mutation(path, rng)
    kind = int(rng.integers(4))
    if kind == 0:
        record.OffsetOfTheNextDirectoryRecord = int(rng.choice([1, 3, 2**32 - 1]))
    elif kind == 1:
        record.OffsetOfReferencedLowerLevelDirectoryEntity = [1, 2]
    elif kind == 2:
        record.ReferencedFileID = str(rng.choice(["..\\..\\etc", "X" * 16, "A\\B\\C\\D\\E"]))
    else:
        ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = int(rng.integers(2**16))
    try:
        ds.save_as(path)
    except Exception:  # noqa: BLE001
        return "dicomdir-" + _byte_mutation(path, rng)
    return f"dicomdir-{kind}"


def fuzz(template: Path, work: Path, *, seed: int, rounds: int, budget_s: float
         ) -> dict[str, int]:
    """Mutate and ingest `rounds` copies of `template` (or until `budget_s`); check each."""
    rng = np.random.default_rng(seed)
    config = IngestConfig.from_dict(CONFIG)
    files = sorted(p.relative_to(template) for p in template.rglob("*") if p.is_file())
    images = [p for p in files if p.name != "DICOMDIR"]
    figures = {"rounds": 0, "mutated_files": 0, "studies": 0, "failed": 0}
    start = time.process_time()
    for round_ in range(rounds):
        if time.process_time() - start > budget_s:
            break
        root, out = work / f"r{round_}" / "export", work / f"r{round_}" / "out"
        shutil.copytree(template, root)
        done = []
        for _ in range(int(rng.integers(1, 4))):
            if rng.random() < 0.15:
                kind = _dicomdir_mutation(root / "DICOMDIR", rng)
            else:
                victim = root / images[int(rng.integers(len(images)))]
                mutate = _byte_mutation if rng.random() < 0.5 else _header_mutation
                kind = mutate(victim, rng)
            figures[kind] = figures.get(kind, 0) + 1
            done.append(kind)
            figures["mutated_files"] += 1
        scan = scan_export(root, workers=1)
        on_disk = {p for p in root.rglob("*") if p.is_file()}
        seen = ({r.path for r in scan.records} | {i.path for i in scan.ignored}
                | set(scan.dicomdirs))
        assert on_disk <= seen, f"round {round_}: files not accounted for"
        expected = [g.study_uid for g in group_studies(scan)]
        result = ingest_export(root, out, config, workers=1)
        uids = [r.study_uid for r in result.reports]
        assert sorted(uids) == sorted(expected) and len(set(uids)) == len(uids), round_
        internal = [r.reasons for r in result.reports if r.stage == "internal"]
        assert not internal, f"round {round_} ({done}): {internal}"
        figures["rounds"] += 1
        figures["studies"] += len(uids)
        figures["failed"] += sum(r.status == "failed" for r in result.reports)
        shutil.rmtree(work / f"r{round_}")
    figures["cpu_seconds"] = round(time.process_time() - start)
    return figures


@pytest.fixture
def template(make_synth_export):
    return make_synth_export(studies=2, slices=5, matrix=32, dicomdir=True).out_dir


def test_fuzzed_exports_report_every_study_once(template, tmp_path):
    figures = fuzz(template, tmp_path, seed=15, rounds=200, budget_s=40)
    print(figures)
    assert figures["rounds"] >= 50


@pytest.mark.slow
def test_fuzzed_exports_report_every_study_once_long(template, tmp_path):
    figures = fuzz(template, tmp_path, seed=1515, rounds=3000, budget_s=300)
    print(figures)
    assert figures["rounds"] >= 200
