"""Probe: wall time of `load_series` versus SimpleITK, dcm2niix and plain pydicom.

Not a test. Writes N synthetic CT series (default 4 x 128 slices of 256^2, shuffled file
order) with `triage.data.synth.dicom_writer`, warms the page cache, then times each reader
over all series, several rounds, and prints best and median seconds per series.

    python benchmarks/ingest/load_speed_probe.py                      # 4 series, native
    python benchmarks/ingest/load_speed_probe.py --series 8 --syntax j2k --monai

The numbers are for the loaders as a pipeline uses them: SimpleITK includes
GetGDCMSeriesFileNames and GetArrayFromImage; dcm2niix is one process per series writing
an uncompressed NIfTI (-z n -b n); "pydicom read+sort+stack" is the minimal baseline
(dcmread, sort on the normal, np.stack of pixel_array, one rescale).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless  # noqa: E402

from tests.dicom.loader_factory import SeriesRecipe, write_series  # noqa: E402
from triage.dicom.loader import LoadOptions, load_series  # noqa: E402

SYNTAXES = {"native": ExplicitVRLittleEndian, "j2k": JPEG2000Lossless, "rle": RLELossless}


def write_corpus(root: Path, n_series: int, n_slices: int, size: int, syntax: str) -> list[Path]:
    """Write the series once (reused when `root` already holds them)."""
    folders = []
    for i in range(n_series):
        folder = root / f"{syntax}-{n_slices}x{size}-{i}"
        if not folder.exists():
            recipe = SeriesRecipe(n_slices=n_slices, rows=size, cols=size, step=1.0,
                                  pixel_spacing=(0.7, 0.7), file_order="shuffled", seed=i,
                                  transfer_syntax=SYNTAXES[syntax])
            write_series(root, recipe, name=folder.name)
        folders.append(folder)
    return folders


def pydicom_baseline(files: list[Path]) -> np.ndarray:
    """dcmread + sort along the normal + stack + rescale: what a minimal reader does."""
    import pydicom

    datasets = [pydicom.dcmread(f) for f in files]
    iop = np.asarray(datasets[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    datasets.sort(key=lambda d: float(np.asarray(d.ImagePositionPatient, float) @ normal))
    stack = np.stack([d.pixel_array for d in datasets]).astype(np.float32)
    return stack * float(datasets[0].RescaleSlope) + float(datasets[0].RescaleIntercept)


def simpleitk(folder: Path) -> np.ndarray:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return sitk.GetArrayFromImage(reader.Execute())


def dcm2niix(folder: Path, out: Path) -> None:
    target = out / folder.name
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dcm2niix", "-z", "n", "-b", "n", "-o", str(target), "-f", "out",
                    str(folder)], check=True, capture_output=True)


def monai_pydicom(folder: Path) -> object:
    from monai.transforms import LoadImage

    return LoadImage(reader="PydicomReader", image_only=True)(str(folder))


def time_reader(name: str, run: Callable[[Path], object], folders: list[Path],
                rounds: int) -> tuple[str, list[float]]:
    per_series = []
    for _ in range(rounds):
        start = time.perf_counter()
        for folder in folders:
            run(folder)
        per_series.append((time.perf_counter() - start) / len(folders))
    return name, per_series


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=4)
    parser.add_argument("--slices", type=int, default=128)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--syntax", choices=sorted(SYNTAXES), default="native")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "triage-lsp")
    parser.add_argument("--monai", action="store_true", help="also time MONAI PydicomReader")
    args = parser.parse_args()

    folders = write_corpus(args.root, args.series, args.slices, args.size, args.syntax)
    files = {f: sorted(f.glob("*.dcm")) for f in folders}
    for paths in files.values():  # warm the page cache
        for path in paths:
            path.read_bytes()
    out = Path(tempfile.mkdtemp(prefix="lsp-nii-"))
    readers: list[tuple[str, Callable[[Path], object]]] = [
        ("triage load_series", lambda f: load_series(files[f])),
        ("triage load_series (pydicom reader)",
         lambda f: load_series(files[f], options=LoadOptions(fast_reader=False))),
        ("pydicom read+sort+stack", lambda f: pydicom_baseline(files[f])),
        ("SimpleITK ImageSeriesReader", simpleitk),
    ]
    if shutil.which("dcm2niix"):
        readers.append(("dcm2niix (process, -z n)", lambda f: dcm2niix(f, out)))
    if args.monai:
        readers.append(("MONAI LoadImage(PydicomReader)", monai_pydicom))
    for _, run in readers:  # imports and first-call costs outside the timing
        run(folders[0])
    print(f"{args.series} series x {args.slices} slices of {args.size}^2, {args.syntax}, "
          f"best and median of {args.rounds} rounds, seconds per series")
    results = [time_reader(name, run, folders, args.rounds) for name, run in readers]
    reference = dict(results).get("dcm2niix (process, -z n)")
    for name, times in results:
        ratio = (f"  {min(times) / min(reference):.2f}x dcm2niix" if reference else "")
        print(f"  {name:38s} best {min(times):.4f}  median {statistics.median(times):.4f}"
              f"{ratio}")
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
