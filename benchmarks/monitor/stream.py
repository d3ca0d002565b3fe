"""A drift stream through the real pipeline: synthetic exports, `triage run`, `triage monitor`.

One device (``acme``) sends a run of studies at a time; from a known run on its exports
are rendered with one of three shifts, made with the generator's own knobs
(`triage.data.synth`): ``noise`` (``device_noise``: 12 -> `NOISE_HU` HU), ``hu-offset``
(the profile's calibration offset: 0 -> `HU_OFFSET` HU) and ``new-device`` (another
scanner, cygnus's kernel, noise, HU calibration and encoding, reporting acme's
manufacturer and model, so it keeps acme's device group: an unseen device behind a known
name, which the ``unseen-device`` rule cannot catch). Each export goes through
``triage run`` with a tiny trained bundle; ``triage monitor`` then reads the run folders.

Used by ``benchmarks/monitor/run.py`` (false alarms on a stable stream of 2,000 studies,
the detection delay, and the per-study pools `triage.monitor.scenarios` resamples) and by
``tests/run/test_drift_stream.py`` (the alarm, the stop-rule and ``clear`` end to end).
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from triage.data.synth import SynthConfig, generate_export
from triage.data.synth.devices import DeviceProfile, get_device

SHIFTS = ("noise", "hu-offset", "new-device")
NOISE_HU = 40.0
HU_OFFSET = 100.0
#: The render settings of the tiny model's exports (tests/run/conftest.py uses the same).
SLICES, MATRIX = 8, 32
DEVICE = "acme"
GROUP = "acme-tomography-voxa-64"


def device_for(shift: str | None) -> DeviceProfile:
    """The acme profile as rendered under `shift` (None: as trained)."""
    acme = get_device(DEVICE)
    if shift is None or shift == "noise":  # noise is a config knob (`export_config`)
        return acme
    if shift == "hu-offset":
        return replace(acme, hu_offset=HU_OFFSET)
    if shift == "new-device":
        return replace(get_device("cygnus"), name=DEVICE, manufacturer=acme.manufacturer,
                       model_name=acme.model_name, station_name=acme.station_name,
                       matrix_scale=1.0)
    raise ValueError(f"Unknown shift '{shift}'; valid shifts: {', '.join(SHIFTS)}.")


def export_config(run: int, *, studies: int, shift: str | None, seed: int = 100
                  ) -> SynthConfig:
    """The export of run `run` (its own seed: no study repeats across runs)."""
    return SynthConfig(studies=studies, seed=seed + run, slices=SLICES, matrix=MATRIX,
                       devices=(device_for(shift),), thick_fraction=0.0, extras=False,
                       device_noise=((DEVICE, NOISE_HU),) if shift == "noise" else ())


def triage(*args: str) -> tuple[int, Any]:
    """`triage ARGS... --json` in this process: (exit code, the printed JSON or None)."""
    from triage.cli import main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main([*args, "--json"])
    text = buffer.getvalue().strip()
    try:
        return code, json.loads(text) if text else None
    except json.JSONDecodeError:
        return code, None


def run_export(export: Path, out: Path, *, bundle: Path, rules: Path,
               alarms: Path | None = None) -> int:
    """`triage run` on `export` into `out` (one worker); returns the exit code."""
    extra = ["--alarms", str(alarms)] if alarms is not None else []
    code, _ = triage("run", str(export), "--model", str(bundle), "--out", str(out),
                     "--rules", str(rules), "--workers", "1", *extra)
    return code


def make_run(root: Path, name: str, run: int, *, studies: int, shift: str | None,
             bundle: Path, rules: Path, alarms: Path | None = None) -> Path:
    """Render run `run`'s export under `root`/`name` and triage it; return its run folder."""
    export = generate_export(root / name / "export",
                             export_config(run, studies=studies, shift=shift)).out_dir
    out = root / name / "out"
    code = run_export(export, out, bundle=bundle, rules=rules, alarms=alarms)
    if code != 0:
        raise RuntimeError(f"triage run on {export} exited with {code}.")
    return out


def monitor(folders: list[Path], *, alarms: Path, report: Path) -> tuple[int, dict[str, Any]]:
    """`triage monitor FOLDERS --alarms ALARMS --no-log`: (exit code, its JSON)."""
    code, payload = triage("monitor", *map(str, folders), "--alarms", str(alarms),
                           "--report", str(report), "--no-log")
    return code, payload or {}


def first_alarm(payload: dict[str, Any], group: str = GROUP) -> dict[str, Any] | None:
    """The earliest CUSUM crossing of `group` in a monitor payload: statistic, study index
    in the group's stream and run index; None when neither detector crossed."""
    entry = payload.get("device_groups", {}).get(group, {})
    fired = [{"statistic": s, **entry[s]["alarm_at"]} for s in ("score", "input")
             if entry.get(s, {}).get("alarm_at")]
    return min(fired, key=lambda f: f["study"]) if fired else None
