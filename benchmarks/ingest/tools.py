"""The readers the ingest benchmark compares, one function per tool, each run in its own process.

Every tool reads a whole export and reports what it produced as one JSON line on stdout:
its in-process seconds (imports excluded), the series it produced and how many failed.
The harness (`benchmarks.ingest.run`) starts each tool as a fresh subprocess, so start-up
and imports count in its wall time and peak memory is per tool::

    python -m benchmarks.ingest.tools triage-load bench_output/ingest/exports/X OUT --workers 2

Tools declare whether they can run here (`Tool.unavailable`), as pydicom's decoder plugins
do, and `get_tool` rejects an unknown name with the valid choices. ``dcm2niix`` is a native
binary: with one worker the harness runs it directly (`Tool.native`), without a Python
wrapper that would add an interpreter to its time and memory, and reads its own timing
from its log; with more, `run_dcm2niix` runs one dcm2niix per series folder in parallel.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

DCM2NIIX = "dcm2niix"
#: JPEG 2000 transfer syntaxes: Image Compression (Lossless Only) .90 and .91.
JPEG2000_PREFIX = "1.2.840.10008.1.2.4.9"
JPEGLS_SYNTAXES = ("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81")
MODULE = "benchmarks.ingest.tools"
_DCM2NIIX_SECONDS = re.compile(r"Conversion required ([0-9.]+) seconds")


@dataclass(frozen=True)
class ToolResult:
    """What one tool run produced, as printed on its last stdout line.

    Attributes:
        tool: the tool's registered name.
        workers: worker processes it used (1 = in the tool's own process only).
        seconds: in-process wall time of the work, imports excluded.
        series: volumes produced (NIfTI files for dcm2niix, tilt reslices not counted).
        failed: series (or studies) that could not be read.
        detail: tool-specific counts, e.g. geometry verdicts or ITK threads.
    """

    tool: str
    workers: int
    seconds: float
    series: int
    failed: int = 0
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """One JSON line, the form the harness parses."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_output(cls, stdout: str) -> ToolResult:
        """Parse the last JSON line of a tool's stdout.

        Raises:
            ValueError: when no line of `stdout` is a tool result.
        """
        for line in reversed(stdout.splitlines()):
            if line.startswith("{"):
                return cls(**json.loads(line))
        raise ValueError("The tool printed no JSON result line; see its stderr log.")


ToolFunction = Callable[[Path, Path, int], ToolResult]


@dataclass(frozen=True)
class NativeRun:
    """How the harness runs a native program directly, without a Python wrapper.

    Attributes:
        command: ``command(export, out_dir)``, the program's command line.
        result: ``result(stdout, out_dir)``, what it produced, from its log and outputs.
    """

    command: Callable[[Path, Path], list[str]]
    result: Callable[[str, Path], ToolResult]


@dataclass(frozen=True)
class Tool:
    """A registered reader: how to run it and whether it can run here.

    Attributes:
        name: registry name, also the CLI argument.
        label: what the benchmark table calls it.
        run: ``run(export, out_dir, workers)``; reads the whole export once.
        modules: Python modules it needs; a missing one makes it unavailable.
        executable: a program it needs on PATH.
        parallel: it accepts ``workers > 1``.
        native: with one worker the harness runs this program directly instead of
            `run` in a Python process (no interpreter in its time or memory).
        env: environment variables the tool's process sets (unless already set) before
            it imports anything heavy.
        main: it is a row of the main table by default (False: a measurement only the
            JPEG 2000 breakdown, `benchmarks.ingest.share`, runs).
    """

    name: str
    label: str
    run: ToolFunction
    modules: tuple[str, ...] = ()
    executable: str | None = None
    parallel: bool = False
    native: NativeRun | None = None
    env: tuple[tuple[str, str], ...] = ()
    main: bool = True

    def unavailable(self) -> str | None:
        """Why the tool cannot run here, or None when it can."""
        import importlib.util
        import shutil

        if self.executable and shutil.which(self.executable) is None:
            return f"{self.executable} is not on PATH (install the Debian package)"
        for module in self.modules:
            if importlib.util.find_spec(module) is None:
                return f"Python module {module} is not installed"
        return None

    def command(self, export: Path, out_dir: Path, workers: int) -> list[str]:
        """The command line the harness times for this tool."""
        if self.native is not None and workers == 1:
            return self.native.command(export, out_dir)
        return [sys.executable, "-m", MODULE, self.name, str(export), str(out_dir),
                "--workers", str(workers)]

    def result(self, stdout: str, out_dir: Path, workers: int) -> ToolResult:
        """The result of a run of `command` from its stdout (and its output folder).

        Raises:
            ValueError: when the output holds no result.
        """
        if self.native is not None and workers == 1:
            return self.native.result(stdout, out_dir)
        return ToolResult.from_output(stdout)


TOOLS: dict[str, Tool] = {}


def register(name: str, label: str, *, modules: Sequence[str] = (),
             executable: str | None = None, parallel: bool = False,
             native: NativeRun | None = None, env: dict[str, str] | None = None,
             main: bool = True) -> Callable[[ToolFunction], ToolFunction]:
    """Decorator adding a tool function to `TOOLS` under `name` (see `Tool`)."""

    def add(function: ToolFunction) -> ToolFunction:
        if name in TOOLS:
            raise ValueError(f"A benchmark tool named {name!r} is already registered.")
        TOOLS[name] = Tool(name, label, function, tuple(modules), executable, parallel,
                           native, tuple((env or {}).items()), main)
        return function

    return add


def get_tool(name: str) -> Tool:
    """The registered tool called `name`.

    Raises:
        ValueError: for an unknown name, listing the valid ones.

    Example:
        >>> get_tool("sitk").label
        'SimpleITK ImageSeriesReader'
    """
    if name in TOOLS:
        return TOOLS[name]
    import difflib

    close = difflib.get_close_matches(name, TOOLS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"Unknown benchmark tool {name!r}; valid tools: "
                     f"{', '.join(TOOLS)}.{hint}")


def series_folders(export: Path) -> list[Path]:
    """Folders directly holding DICOM files (a ``DICM`` prefix at byte 128), sorted.

    This is how a SimpleITK or MONAI user finds series in an export laid out one series
    per folder, as the synthetic exports are.
    """
    folders = []
    for folder, _dirs, files in os.walk(export, followlinks=True):
        for name in sorted(files):
            with open(os.path.join(folder, name), "rb") as fh:
                if fh.read(132)[128:] == b"DICM":
                    folders.append(Path(folder))
                break
    return sorted(folders)


def dcm2niix_command(export: Path, out_dir: Path) -> list[str]:
    """dcm2niix over a folder (recursive), uncompressed NIfTI, no BIDS sidecar."""
    return [DCM2NIIX, "-z", "n", "-b", "n", "-f", "%s_%j", "-o", str(out_dir), str(export)]


def dcm2niix_result(log: str, out_dir: Path, workers: int = 1) -> ToolResult:
    """Count dcm2niix's NIfTI outputs and read the time it reports for itself.

    Tilted series come out twice (as acquired and resliced, ``_Tilt_1``): the reslice
    is counted apart. With several runs in `log`, their reported times are added.
    """
    outputs = sorted(p.name for p in out_dir.glob("*.nii"))
    tilted = [name for name in outputs if "_Tilt_" in name]
    times = [float(t) for t in _DCM2NIIX_SECONDS.findall(log)]
    return ToolResult(DCM2NIIX, workers, sum(times) if times else float("nan"),
                      len(outputs) - len(tilted), detail={"tilt_reslices": len(tilted)})


def _dcm2niix(folder: Path, out_dir: Path) -> str:
    import subprocess

    completed = subprocess.run(dcm2niix_command(folder, out_dir), capture_output=True,
                               text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"dcm2niix exited with {completed.returncode} on {folder}: "
                           f"{(completed.stderr or completed.stdout).strip()[-500:]}")
    return completed.stdout


@register(DCM2NIIX, "dcm2niix", executable=DCM2NIIX, parallel=True,
          native=NativeRun(dcm2niix_command, dcm2niix_result))
def run_dcm2niix(export: Path, out_dir: Path, workers: int) -> ToolResult:
    """Convert the export to NIfTI files in `out_dir` (written to disk).

    One worker: one dcm2niix over the whole export (the harness runs that without this
    wrapper). More: dcm2niix has no parallel mode, so one process per series folder,
    `workers` at a time, as a user would script it; the time is this wrapper's.
    """
    from concurrent.futures import ThreadPoolExecutor

    started = time.perf_counter()
    if workers == 1:
        _dcm2niix(export, out_dir)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(partial(_dcm2niix, out_dir=out_dir), series_folders(export)))
    result = dcm2niix_result("", out_dir, workers)
    return replace(result, seconds=time.perf_counter() - started)


#: triage runs BLAS on one thread per process (`triage.ingest.stream` limits it with
#: threadpoolctl); set before numpy loads, OpenBLAS does not start its threads at all.
_ONE_BLAS_THREAD = {"OPENBLAS_NUM_THREADS": "1"}


def _verdict(volume: Any) -> str:
    """A loaded series' verdict, or why it failed; the volume is dropped (runs in workers)."""
    if isinstance(volume, Exception):
        return f"failed: {type(volume).__name__}"
    return volume.verdict.value


@register("triage-load", "triage load-to-volume", modules=("triage",), parallel=True,
          env=_ONE_BLAS_THREAD)
def run_triage_load(export: Path, out_dir: Path, workers: int) -> ToolResult:
    """Scan, select and load one volume per study, discarding each volume.

    With ``workers > 1`` the scan reads headers in a process pool and the series are
    loaded in one by `benchmarks.ingest.load_pool.load_many`: largest first, a long
    compressed series that would leave a worker idle at the end decoded in parts across
    the workers, as `triage ingest` splits it (`triage.ingest.stream`; the same plan and
    part decoding, without the preprocessing and caching). `out_dir` is not written.
    """
    from benchmarks.ingest.load_pool import load_many
    from triage.dicom.scan.grouping import group_studies
    from triage.dicom.scan.scan import scan_export
    from triage.dicom.select.selection import select_series
    from triage.ingest.config import IngestConfig

    started = time.perf_counter()
    config = IngestConfig.from_yaml()
    chosen = []
    for study in group_studies(scan_export(export, workers=workers)):
        selection = select_series(study, config.selection)
        if selection.chosen is not None:
            chosen.append(selection.chosen.instances)
    verdicts = load_many(chosen, config.load, _verdict, workers=workers)
    seconds = time.perf_counter() - started
    failed = sum(v.startswith("failed") for v in verdicts)
    return ToolResult("triage-load", workers, seconds, len(verdicts) - failed, failed,
                      detail={"verdicts": dict(Counter(verdicts))})


@register("triage-ingest", "triage full ingest", modules=("triage",), parallel=True,
          env=_ONE_BLAS_THREAD)
def run_triage_ingest(export: Path, out_dir: Path, workers: int) -> ToolResult:
    """`ingest_export` with the shipped config: load, normalize, align, cache to `out_dir`."""
    from triage.engines.runner import ingest_export
    from triage.ingest.config import IngestConfig

    started = time.perf_counter()
    result = ingest_export(export, out_dir, IngestConfig.from_yaml(), workers=workers)
    seconds = time.perf_counter() - started
    status = Counter(str(r.status) for r in result.reports)
    return ToolResult("triage-ingest", workers, seconds, status.get("ok", 0),
                      len(result.reports) - status.get("ok", 0),
                      detail={"verdicts": dict(result.summary.get("verdict", {}))})


@register("sitk", "SimpleITK ImageSeriesReader", modules=("SimpleITK",))
def run_sitk(export: Path, out_dir: Path, workers: int) -> ToolResult:
    """GDCM series IDs per folder, then `ImageSeriesReader.Execute` per series."""
    import SimpleITK as sitk

    started = time.perf_counter()
    reader = sitk.ImageSeriesReader()
    series = failed = 0
    for folder in series_folders(export):
        for series_id in reader.GetGDCMSeriesIDs(str(folder)):
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), series_id))
            try:
                reader.Execute()
                series += 1
            except RuntimeError:
                failed += 1
    seconds = time.perf_counter() - started
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    return ToolResult("sitk", workers, seconds, series, failed,
                      detail={"itk_threads": threads})


@register("monai", "MONAI LoadImage(PydicomReader)", modules=("monai", "torch"))
def run_monai(export: Path, out_dir: Path, workers: int) -> ToolResult:
    """`LoadImage(reader="PydicomReader", image_only=False)` on each series folder."""
    import torch
    from monai.transforms import LoadImage

    started = time.perf_counter()
    loader = LoadImage(reader="PydicomReader", image_only=False)
    series = failed = 0
    for folder in series_folders(export):
        try:
            loader(str(folder))
            series += 1
        except Exception:  # noqa: BLE001 - a peer's failure is a count, not a crash
            failed += 1
    seconds = time.perf_counter() - started
    return ToolResult("monai", workers, seconds, series, failed,
                      detail={"torch_threads": torch.get_num_threads()})


@register("openjpeg-decode", "OpenJPEG decode only (triage's calls)",
          modules=("openjpeg", "triage"), env=_ONE_BLAS_THREAD, main=False)
def run_openjpeg_decode(export: Path, out_dir: Path, workers: int) -> ToolResult:
    """The JPEG 2000 frames of the export (other syntaxes skipped) decoded as triage's
    loader decodes them: the decoder's share of a load, for comparing with dcm2niix on
    the same series (its decoder is OpenJPEG too). See `decode_only`."""
    return decode_only("openjpeg-decode", export, workers, (JPEG2000_PREFIX,))


@register("charls-decode", "CharLS decode only (triage's calls)",
          modules=("jpeg_ls", "triage"), env=_ONE_BLAS_THREAD, main=False)
def run_charls_decode(export: Path, out_dir: Path, workers: int) -> ToolResult:
    """The JPEG-LS frames of the export decoded as triage's loader decodes them (CharLS
    through pyjpegls): what a dcm2niix built with CharLS would add to its time on the same
    series uncompressed. See `decode_only`."""
    return decode_only("charls-decode", export, workers, tuple(JPEGLS_SYNTAXES))


def decode_only(name: str, export: Path, workers: int, syntaxes: tuple[str, ...]
                ) -> ToolResult:
    """Decode every frame of the export whose transfer syntax starts with one of `syntaxes`.

    Every file is read and its header parsed first (`triage.dicom.pixels.source.read_source`,
    untimed); the seconds are those of `triage.dicom.pixels.codecs.decode_single_frame` alone
    (fragments joined, the plugin on one thread).
    """
    from triage.dicom.pixels import codecs
    from triage.dicom.pixels.source import read_source

    frames, folders = [], series_folders(export)
    for folder in folders:
        for path in sorted(folder.iterdir()):
            source = read_source(path, 0)
            if (source.fast is None or not source.fast.encapsulated
                    or not (source.info.transfer_syntax or "").startswith(syntaxes)):
                continue
            frames.append((source.fast.data, source.fast.pixel_offset, source.info))
    started = time.perf_counter()
    decoded = sum(codecs.decode_single_frame(*frame) is not None for frame in frames)
    seconds = time.perf_counter() - started
    return ToolResult(name, workers, seconds, len(folders), len(frames) - decoded,
                      detail={"frames": decoded})


def main(argv: Sequence[str] | None = None) -> int:
    """Run one tool over one export and print its `ToolResult` as a JSON line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ingest.tools",
                                     description="Run one ingest-benchmark tool once.")
    parser.add_argument("tool", help=f"one of: {', '.join(TOOLS)}")
    parser.add_argument("export", type=Path, help="the export folder to read")
    parser.add_argument("out_dir", type=Path, help="where the tool may write (created)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    args = parser.parse_args(argv)
    try:
        tool = get_tool(args.tool)
    except ValueError as err:
        parser.error(str(err))
    if args.workers < 1 or (args.workers > 1 and not tool.parallel):
        parser.error(f"--workers must be 1 for {tool.name}" if args.workers > 1
                     else "--workers must be at least 1")
    for key, value in tool.env:
        os.environ.setdefault(key, value)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    print(tool.run(args.export, args.out_dir, args.workers).to_json(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
