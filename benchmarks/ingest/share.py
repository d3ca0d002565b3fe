"""Where the time goes: the JPEG 2000 series alone, dcm2niix against triage and its decoder.

Both dcm2niix and triage decode JPEG 2000 with OpenJPEG. Run on the export's JPEG 2000
series alone (a folder of hard links, `jpeg2000_view`), dcm2niix's time, triage's
load-to-volume time and the time of triage's OpenJPEG calls alone (`openjpeg-decode`) show
how much of the load-to-volume comparison the shared decoder decides. The same series
rewritten uncompressed (`uncompressed_copy`) split each tool's time in two: what it does
besides decoding (its time on the copy) and decoding (the difference). The runs go
through the same `measure` as the main table, round-robin, after it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from benchmarks.ingest.measure import Row
from benchmarks.ingest.report import mib
from benchmarks.ingest.tools import DCM2NIIX, JPEG2000_PREFIX, get_tool, series_folders

TOOLS = (DCM2NIIX, "triage-load", "openjpeg-decode")
#: The tools also run on the uncompressed copy (decoding nothing, the third has no work).
SPLIT_TOOLS = (DCM2NIIX, "triage-load")


def _is_jpeg2000(folder: Path) -> bool:
    """The first file's File Meta names a JPEG 2000 transfer syntax (read as bytes)."""
    first = min((p for p in folder.iterdir() if p.is_file()), default=None)
    if first is None:
        return False
    with open(first, "rb") as fh:
        return JPEG2000_PREFIX.encode() in fh.read(1024)


def jpeg2000_view(export: Path, out: Path) -> tuple[Path, int] | None:
    """A folder of the export's JPEG 2000 series folders, and how many.

    Each file is a hard link to the export's (a copy where the two folders lie on different
    file systems): the scan does not follow a symlink out of the export it scans, so a
    folder of symlinks would be an empty export to triage. None when the export holds no
    JPEG 2000 series. Rebuilt on every call (cheap; never stale).
    """
    folders = [f for f in series_folders(export) if _is_jpeg2000(f)]
    if not folders:
        return None
    view = out / "exports" / f"{export.name}-jpeg2000"
    shutil.rmtree(view, ignore_errors=True)
    view.mkdir(parents=True)
    for folder in folders:
        linked = view / str(folder.relative_to(export)).replace(os.sep, "_")
        linked.mkdir()
        for file in (p for p in folder.iterdir() if p.is_file()):
            try:
                os.link(file, linked / file.name)
            except OSError:
                shutil.copy2(file, linked / file.name)
    return view, len(folders)


def uncompressed_copy(view: Path, out: Path) -> Path:
    """The series of `view` rewritten in Explicit VR Little Endian, file for file.

    pydicom decompresses each file with the same plugin triage uses, so the copy holds
    the same pixel values and headers (bar the transfer syntax and pixel data encoding):
    what a tool takes on it is what the tool does besides JPEG 2000 decoding. Rebuilt
    on every call (a few seconds; never stale), in a child process: the harness itself
    imports only the standard library, as every measured child inherits its memory.

    Raises:
        subprocess.CalledProcessError: the copy failed.
    """
    import subprocess
    import sys

    copy = out / "exports" / f"{view.name}-uncompressed"
    subprocess.run([sys.executable, "-m", __name__, str(view), str(copy)], check=True,
                   capture_output=True)
    return copy


def _write_uncompressed(view: Path, copy: Path) -> None:
    import pydicom

    shutil.rmtree(copy, ignore_errors=True)
    for folder in sorted(view.iterdir()):
        (copy / folder.name).mkdir(parents=True)
        for file in sorted(p for p in folder.iterdir() if p.is_file()):
            dataset = pydicom.dcmread(file)
            dataset.decompress(generate_instance_uid=False)
            dataset.save_as(copy / folder.name / file.name, enforce_file_format=True)


def share_rows(names: tuple[str, ...] = TOOLS) -> list[Row]:
    """One single-worker row per tool of `names` that can run here."""
    return [Row(get_tool(name), 1) for name in names if get_tool(name).unavailable() is None]


def share_table(rows: list[Row], n_series: int, uncompressed: list[Row] | None = None
                ) -> list[str]:
    """Markdown lines: the table and what decides the ratio.

    Args:
        rows: the `share_rows` runs on the JPEG 2000 series.
        n_series: how many series those are.
        uncompressed: the `SPLIT_TOOLS` runs on their `uncompressed_copy`, if made.
    """
    by_name = {row.tool.name: row for row in rows if row.ok}
    plain = {row.tool.name: row for row in uncompressed or [] if row.ok}
    reference = by_name.get(DCM2NIIX)
    lines = ["| tool | wall s, median (min–max) | in-process s | × dcm2niix wall "
             "| same series uncompressed: wall s | decoding: the difference, s "
             "| peak RSS MiB | produced |", "|" + " --- |" * 8]
    for row in rows:
        if not row.ok:
            error = next((run.error for run in row.runs if run.error), "not run")
            lines.append(f"| {row.tool.label} | error: {error} |" + " |" * 6)
            continue
        walls = [run.wall_s for run in row.ok]
        ratio = f"{row.wall / reference.wall:.2f}×" if reference else "–"
        copy = plain.get(row.tool.name)
        split = (f"{copy.wall:.2f} | {row.wall - copy.wall:.2f}" if copy else "– | –")
        result = row.ok[-1].result
        produced = (f"{result.detail.get('frames', 0)} frames decoded"
                    if row.tool.name == "openjpeg-decode" else f"{result.series} series")
        if row.tool.name != "openjpeg-decode" and result.series != n_series:
            produced = f"**{result.series} of {n_series} series: not comparable**"
        lines.append(f"| {row.tool.label} | {row.wall:.2f} ({min(walls):.2f}–{max(walls):.2f}) "
                     f"| {row.in_process:.2f} | {ratio} | {split} "
                     f"| {mib(max(run.maxrss_mib for run in row.ok))} | {produced} |")
    decode, load = by_name.get("openjpeg-decode"), by_name.get("triage-load")
    if reference and decode and load:
        share = decode.in_process / reference.wall
        lines += ["", f"On these {n_series} series triage's OpenJPEG calls alone take "
                  f"{decode.in_process:.2f} s: {share:.0%} of dcm2niix's whole run "
                  f"({reference.wall:.2f} s) and {decode.in_process / load.in_process:.0%} "
                  f"of triage's own in-process load ({load.in_process:.2f} s)."
                  + (" Both tools spend most of this time in the same decoder (OpenJPEG), "
                     "so the load-to-volume ratio is decided by what they do besides "
                     "decoding, on a minority of the time." if share >= 0.5 else "")]
    if reference and load and DCM2NIIX in plain and "triage-load" in plain:
        theirs, ours = plain[DCM2NIIX], plain["triage-load"]
        lines += ["", f"Split by the uncompressed copy: decoding (JPEG 2000 wall time less "
                  f"the copy's) costs dcm2niix {reference.wall - theirs.wall:.2f} s and triage "
                  f"{load.wall - ours.wall:.2f} s; everything else costs dcm2niix "
                  f"{theirs.wall:.2f} s and triage {ours.wall:.2f} s, of which "
                  f"{ours.wall - ours.in_process:.2f} s is its interpreter start-up and "
                  "imports."]
    return lines


if __name__ == "__main__":  # python -m benchmarks.ingest.share VIEW COPY
    import sys

    _write_uncompressed(Path(sys.argv[1]), Path(sys.argv[2]))
