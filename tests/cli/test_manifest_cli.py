"""`triage manifest validate`: exit codes and messages, run as users run it."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd

from triage.cli import main


def _write(path, label="1"):
    pd.DataFrame([{"study_uid": "1.2.3.4", "patient_key": "pk-0001", "label": label,
                   "device_group": "acme-ct1", "split": "train"}]).to_csv(path, index=False)


def test_valid_manifest_exits_zero(tmp_path, capsys):
    path = tmp_path / "m.csv"
    _write(path)
    assert main(["manifest", "validate", str(path)]) == 0
    assert "valid, 1 studies, 1 patients, 1 device groups" in capsys.readouterr().out


def test_invalid_manifest_exits_two_with_line_numbers(tmp_path, capsys):
    path = tmp_path / "m.csv"
    _write(path, label="maybe")
    assert main(["manifest", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "line 2, column 'label': 'maybe' is not 0 or 1." in err


def test_console_script_help_is_fast_and_lists_commands():
    out = subprocess.run([sys.executable, "-m", "triage", "--help"], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    assert "manifest" in out
    # --help must not import the heavy stack.
    probe = subprocess.run(
        [sys.executable, "-c",
         "import sys; from triage.cli import app; "
         "print(sorted(m for m in ('torch','monai','mlflow','SimpleITK') if m in sys.modules))"],
        capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    assert probe == "[]"
