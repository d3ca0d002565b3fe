"""An installed wheel finds its shipped default configs from any folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(*argv, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=300, check=True, **kwargs)


def test_installed_wheel_ingests_with_its_default_config(tmp_path):
    # Build from a copy so the checkout gets no build/ or egg-info.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "triage", src / "triage",
                    ignore=shutil.ignore_patterns("__pycache__"))
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "-w", tmp_path / "dist", src)
    wheel = next((tmp_path / "dist").glob("triage-*.whl"))

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python, triage = venv / "bin" / "python", venv / "bin" / "triage"
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))")
                .stdout.strip())
    # Dependencies from this environment, after the venv's own site-packages.
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps",
         "--no-index", wheel)

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = _run(python, "-c", "import triage; print(triage.__file__)", cwd=work, env=env)
    assert Path(where.stdout.strip()).is_relative_to(venv)

    _run(triage, "synth", "export", "--studies", "2", "--slices", "20", "--matrix", "32",
         "--no-extras", "--devices", "acme", cwd=work, env=env)
    result = subprocess.run([triage, "ingest", "export", "--out", "ingest", "--json",
                             "--workers", "1"], capture_output=True, text=True, timeout=300,
                            cwd=work, env=env)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert json.loads(result.stdout)["status"] == {"ok": 2}
    report = (work / "ingest" / "ingest_report.csv").read_text().splitlines()
    assert len(report) == 1 + 2
