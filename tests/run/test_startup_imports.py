"""`triage run` pays at start-up only for the modules it uses. Its own path (the CLI, the
router, the pipeline, the run report and record, the built-in blob-fcn network's forward
pass) never imports scipy.stats (~0.5 s beyond scipy.special), matplotlib (~0.3 s) or
torch.onnx (~0.3 s): each came back once through a module-level import. (A MONAI network
brings some of them with MONAI itself.)"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("scipy.stats", "matplotlib", "torch.onnx")
CODE = f"""
import json, sys
import torch
from triage.cli import main
import triage.cli.run, triage.route, triage.calibrate, triage.monitor.detect
import triage.monitor.runlog, triage.monitor.run_report, triage.run.pipeline
from triage.model.config import ModelConfig
from triage.model.registry import create_model
from triage.route.thresholds import ThresholdConfig
from triage.route.status import certification_status
from triage.monitor.detect import ks_binned

net = create_model(ModelConfig("blob-fcn", {{"channels": [8, 4], "strides": [1, 1],
                   "kernel": 1, "pool": "max", "context": [9, 9, 5],
                   "downsample": [2, 2, 2], "contrast_prior": 1.0}}), (24, 20, 12), seed=0)
with torch.no_grad():
    net.eval()(torch.rand(2, 1, 24, 20, 12))
ThresholdConfig().required_positives, ks_binned([5, 5], [4, 6])
print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
"""


def test_the_run_path_leaves_the_heavy_modules_it_does_not_use():
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
