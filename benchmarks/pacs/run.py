"""`make bench-pacs`: `triage listen` latency to an SR in Orthanc, and `triage run` from
DICOMweb against a folder; writes its section of docs/benchmarks.md.

Usage: ``python -m benchmarks.pacs.run [--studies 100] [--stable-seconds 2] [--workers 2]
[--doc docs/benchmarks.md]``. Needs Orthanc with its DICOMweb plugin (``make tools``).
Inputs (the tiny model, the exports) are cached under ``bench_output/pacs/``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.pacs import model
from benchmarks.pacs.measure import REPO, measure_listen, measure_run
from benchmarks.pacs.report import BEGIN, END, Context, section


def _write_section(path: Path, text: str) -> None:
    doc = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    block = f"{BEGIN}\n{text.strip()}\n{END}"
    start, stop = doc.find(BEGIN), doc.find(END)
    doc = (doc[:start] + block + doc[stop + len(END):] if 0 <= start < stop
           else doc.rstrip("\n") + "\n\n" + block + "\n")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(doc, encoding="utf-8")
    os.replace(tmp, path)


def _machine(load_before: float) -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU") \
        if Path("/proc/cpuinfo").is_file() else platform.processor()
    return (f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}, Python "
            f"{platform.python_version()}; 1-min load average {load_before:.1f} before the "
            f"run, {os.getloadavg()[0]:.1f} at its end (a shared machine: other work "
            f"included)")


def _versions() -> str:
    from importlib.metadata import version

    orthanc = subprocess.run([shutil.which("Orthanc") or "/usr/sbin/Orthanc", "--version"],
                             capture_output=True, text=True).stdout.split("\n")[0].strip()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=REPO).stdout.strip()
    return ", ".join([f"{p} {version(p)}" for p in ("pynetdicom", "dicomweb-client",
                                                    "highdicom", "pydicom")]
                     + [orthanc or "Orthanc", f"commit {commit}"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=100)
    parser.add_argument("--stable-seconds", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds to wait for the SRs after the last study is sent")
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--out", type=Path, default=REPO / "bench_output" / "pacs")
    args = parser.parse_args(argv)
    if args.studies < 1:
        parser.error("--studies must be at least 1")
    started, load_before = time.monotonic(), os.getloadavg()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    bundle = model.tiny_model(args.out / "model")
    export = model.studies(args.out / "data", args.studies)
    work = args.out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    print(f"listen: {args.studies} studies ...", file=sys.stderr)
    listen = measure_listen(bundle, export, work, stable_seconds=args.stable_seconds,
                            timeout_s=args.timeout)
    print("run: folder, then DICOMweb ...", file=sys.stderr)
    folder, web = measure_run(bundle, export, work, workers=args.workers)
    command = " ".join(["python -m benchmarks.pacs.run", *(argv if argv is not None
                                                           else sys.argv[1:])]).strip()
    minutes = (time.monotonic() - started) / 60
    ctx = Context(command, datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
                  + f", {minutes:.1f} min in all", _machine(load_before), _versions(), args.studies,
                  model.SLICES, args.workers)
    text = section(ctx, listen, folder, web)
    _write_section(args.doc, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
