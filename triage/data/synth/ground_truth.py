"""Ground truth on disk: the manifest rows (with `gt_*` columns) and ground_truth.json.

Neither carries identifiers: studies are named by Study Instance UID, patients by their
pseudonymous key, folders by names derived from that key. JSON is written with sorted keys
and no timestamps so that equal seeds give equal bytes.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from triage.data.synth.config import SynthConfig
from triage.data.synth.study import SeriesKind, SeriesTruth, StudyTruth
from triage.io import atomic_write_text

GROUND_TRUTH_FILE = "ground_truth.json"
FORMAT_VERSION = 1


def _fmt(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def manifest_frame(studies: Sequence[StudyTruth], config: SynthConfig) -> pd.DataFrame:
    """One manifest row per study, schema columns first, then `gt_*` and `meta_*`."""
    rows = []
    for study in studies:
        device, primary = study.device, study.primary
        thick = study.get_series(SeriesKind.THICK)
        rows.append({
            "study_uid": study.study_uid,
            "patient_key": study.slot.patient_key,
            "label": study.label,
            "device_group": device.device_group,
            "split": study.slot.split,
            "export_path": study.export_path,
            "gt_device": device.name,
            "gt_n_lesions": len(study.lesions),
            "gt_lesion_diameters_mm": ";".join(_fmt(les.diameter_mm) for les in study.lesions),
            "gt_lesion_contrast_hu": ";".join(_fmt(les.contrast_hu) for les in study.lesions),
            "gt_lesion_centers_lps": ";".join(" ".join(_fmt(v) for v in les.center)
                                              for les in study.lesions),
            "gt_distractors": ";".join(d.kind.value for d in study.distractors),
            "gt_primary_series_uid": primary.series_uid,
            "gt_thick_series_uid": thick.series_uid if thick else "",
            "gt_patient_position": "HFP" if study.placement.prone else "HFS",
            "gt_gantry_tilt_deg": _fmt(primary.tilt_deg),
            "gt_dropped_slices": len(primary.dropped),
            "gt_hu_offset": _fmt(device.hu_offset),
            "gt_noise_hu": _fmt(device.noise_hu * config.noise_scale),
            "gt_kernel": device.kernel.name,
            "meta_seed": config.seed,
            "meta_generator": f"triage-synth/{FORMAT_VERSION}",
        })
    return pd.DataFrame(rows)


def _series_json(series: SeriesTruth) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": series.kind.value,
        "series_uid": series.series_uid,
        "series_number": series.series_number,
        "description": series.description,
        "files": list(series.files),
        "instance_numbers": list(series.instance_numbers),
        "sop_uids": list(series.sop_uids),
    }
    if series.geometry is not None:
        g = series.geometry
        out.update(orientation=list(g.orientation), pixel_spacing=list(g.pixel_spacing),
                   rows=g.rows, columns=g.columns, slice_thickness=g.slice_thickness,
                   positions=g.positions.tolist(), gantry_tilt_deg=series.tilt_deg,
                   dropped_slices=list(series.dropped))
    return out


def _config_json(config: SynthConfig) -> dict[str, Any]:
    out = dataclasses.asdict(config)
    out["devices"] = list(config.device_names)
    return out


def study_json(study: StudyTruth) -> dict[str, Any]:
    """The ground truth of one study as JSON-ready data (no identifiers)."""
    return {
        "study_uid": study.study_uid,
        "patient_key": study.slot.patient_key,
        "label": study.label,
        "split": study.slot.split,
        "device": study.device.name,
        "device_group": study.device.device_group,
        "export_path": study.export_path,
        "frame_of_reference_uid": study.frame_of_reference_uid,
        "patient_position": "HFP" if study.placement.prone else "HFS",
        "lesions": [dataclasses.asdict(les) for les in study.lesions],
        "distractors": [dataclasses.asdict(d) for d in study.distractors],
        "series": [_series_json(s) for s in study.series],
    }


def write_ground_truth(path: Path, studies: Sequence[StudyTruth], config: SynthConfig) -> Path:
    """Write ground_truth.json atomically; deterministic bytes for equal inputs."""
    data = {"format_version": FORMAT_VERSION, "generator": "triage synth",
            "config": _config_json(config), "studies": [study_json(s) for s in studies]}
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")
    return path
