"""`triage manifest summary`: studies and positives per device group and split, and whether
each group's calibration split has the positives the pac and marginal guarantees need."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from triage.cli import main
from triage.data.manifest import read_manifest
from triage.data.manifest_summary import (
    format_summary,
    marginal_positives_needed,
    summarize_manifest,
)


def _manifest(path, calib_positives: dict[str, int]):
    rows = []
    for device, positives in calib_positives.items():
        for i in range(positives + 3):
            rows.append({"study_uid": f"1.2.{len(rows) + 1}", "patient_key": f"pk-{len(rows):05d}",
                         "label": int(i < positives), "device_group": device, "split": "calib"})
        rows.append({"study_uid": f"1.2.{len(rows) + 1}", "patient_key": f"pk-{len(rows):05d}",
                     "label": 1, "device_group": device, "split": "train"})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.mark.parametrize(("alpha", "needed"), [(0.01, 99), (0.05, 19), (0.1, 9), (0.2, 4)])
def test_marginal_needs_one_over_alpha_minus_one(alpha, needed):
    assert marginal_positives_needed(alpha) == needed


def test_each_group_gets_counts_and_both_verdicts(tmp_path):
    path = _manifest(tmp_path / "m.csv", {"acme-ct": 299, "borealis-ct": 120, "cygnus-ct": 5})
    groups = {g.device_group: g for g in summarize_manifest(read_manifest(path))}
    acme, borealis, cygnus = groups["acme-ct"], groups["borealis-ct"], groups["cygnus-ct"]
    assert acme.splits["calib"] == (302, 299) and acme.splits["train"] == (1, 1)
    assert acme.splits["test"] == (0, 0)
    assert (acme.pac_needed, acme.marginal_needed) == (299, 99)
    assert (acme.pac_ok, acme.marginal_ok) == (True, True)
    assert (borealis.pac_ok, borealis.marginal_ok) == (False, True)
    assert (cygnus.pac_ok, cygnus.marginal_ok) == (False, False)
    lines = format_summary(list(groups.values()))
    assert lines[1].split()[:3] == ["acme-ct", "1/1", "0/0"]
    assert "short 299" in lines[2] and "ok" in lines[2]


def test_cli_summary_json_and_text(tmp_path, capsys):
    path = _manifest(tmp_path / "m.csv", {"acme-ct": 19})
    assert main(["manifest", "summary", str(path), "--alpha", "0.05", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    group = out["device_groups"][0]
    assert group["marginal"] == {"needed": 19, "enough": True}
    assert group["pac"]["enough"] is False and group["calib_positives"] == 19
    assert group["splits"]["calib"] == {"studies": 22, "positives": 19}
    assert main(["manifest", "summary", str(path)]) == 0
    assert "acme-ct" in capsys.readouterr().out
    assert main(["manifest", "summary", str(path), "--alpha", "2"]) == 2
