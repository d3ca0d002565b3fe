"""Ingest never imports torch or MONAI (~5 s of start-up and ~400 MiB per worker process), and
on uncompressed files neither pydicom nor nibabel (~0.45 s together)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import yaml

# Inline (one process), so that this process does all a worker does, initializer included.
SCRIPT = textwrap.dedent("""
    import json, sys

    import triage.cli.ingest
    import triage.engines.runner
    import triage.preprocess.pipeline
    from triage.cli import main

    code = main(["ingest", sys.argv[1], "--out", sys.argv[2], "--config", sys.argv[3],
                 "--workers", "1", "--json"])
    triage.engines.runner._init_worker()
    print(json.dumps({"code": code, "torch": "torch" in sys.modules,
                      "monai": "monai" in sys.modules, "pydicom": "pydicom" in sys.modules,
                      "nibabel": "nibabel" in sys.modules}))
""")


def test_ingest_imports_neither_torch_nor_monai_nor_on_plain_files_pydicom(
        make_synth_export, tmp_path):
    export = make_synth_export(studies=2, slices=12, devices="acme,ember")  # uncompressed
    config = tmp_path / "ingest.yaml"
    config.write_text(yaml.safe_dump({
        "selection": {"min_slices": 8},
        "preprocess": {"target_spacing": [8.0, 8.0, 8.0], "target_shape": [40, 40, 16]}}))
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(export.out_dir), str(out), str(config)],
        capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result == {"code": 0, "torch": False, "monai": False, "pydicom": False,
                      "nibabel": False}
    summary = json.loads((out / "ingest_summary.json").read_text())
    assert summary["status"] == {"ok": 2}  # preprocessing really ran, for both studies
