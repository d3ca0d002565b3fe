"""Load one DICOM series into a geometrically correct `Volume` with a geometry verdict.

The public entry point is `load_series`. Slices are ordered by ImagePositionPatient
projected on the slice normal (never by InstanceNumber or file order); the spacing comes
from the positions (never SliceThickness); every geometric oddity ends in a verdict:
trustworthy ones (``ok``, ``resampled-irregular``, ``tilt``, ``mixed-localizer``) return a
`Volume`, untrustworthy ones raise `GeometryError` carrying the verdict. See
docs/geometry.md for the rules and tolerances.

Example:
    >>> volume = load_series(sorted(Path("export/series7").glob("*.dcm")))  # doctest: +SKIP
    >>> volume.verdict, volume.spacing  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from triage.dicom import geometry
from triage.dicom.fast_reader import WalkedHeader
from triage.dicom.limits import ResourceLimits
from triage.dicom.pixels.slice_header import FrameHeader
from triage.dicom.pixels.source import SourceFile, read_source
from triage.dicom.verdict import GeometryVerdict
from triage.dicom.volume.assemble import assemble_volume
from triage.dicom.volume.model import Volume
from triage.errors import DicomError, GeometryError
from triage.settings import require_finite

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadOptions:
    """Tolerances and choices of `load_series`; see docs/geometry.md.

    Attributes:
        orientation_tolerance: largest difference of any ImageOrientationPatient cosine
            for two slices to count as the same orientation.
        spacing_tolerance: relative deviation of a slice step from the median step
            beyond which spacing is irregular (0.01 = 1 %, as highdicom).
        spacing_tolerance_mm: absolute floor for that deviation (header rounding).
        gap_factor: a step larger than this times the median step is a gap.
        duplicate_tolerance_mm: slices closer than this along the normal coincide.
        tilt_tolerance_deg: largest angle between the position track and the slice
            normal (and largest |GantryDetectorTilt|) that still counts as no tilt.
        resample_irregular: resample irregular gap-free spacing onto a regular grid;
            when False such a series raises `GeometryError` (``irregular-spacing``).
        correct_tilt: reslice a gantry-tilted stack onto an orthogonal grid; when False
            it raises `GeometryError` (``tilt``).
        max_tilt_deg: a larger angle between the position track and the normal is not a
            gantry tilt (scanners tilt at most about 30 degrees) but positions that
            contradict the orientation: `GeometryError` (``inconsistent-slices``).
        max_localizer_images: at most this many images of another orientation (or with
            ImageType LOCALIZER) are set aside as a stray localizer.
        spacing_range_mm: the smallest and largest pixel spacing and slice step a
            series may have; outside it the header is corrupt or the image is not a
            clinical scan: `GeometryError` (``malformed-values``).
        max_extent_mm: the largest extent of the scanned field along any axis (a whole
            body is about 2 m); beyond it, likewise.
        deduplicate_identical: drop byte-identical copies of one SOP instance with a
            warning instead of failing with ``duplicates``.
        fast_reader: read single-frame little-endian files (native or compressed)
            with the fast reader instead of `pydicom.dcmread`.
        limits: caps on bytes inflated, pixels, frames and voxels, checked on the
            headers before anything is decoded (`triage.dicom.limits`); set from the
            ingest config's ``limits`` section.
    """

    orientation_tolerance: float = 1e-3
    spacing_tolerance: float = 0.01
    spacing_tolerance_mm: float = 0.01
    gap_factor: float = 1.5
    duplicate_tolerance_mm: float = 0.01
    tilt_tolerance_deg: float = 0.02
    resample_irregular: bool = True
    correct_tilt: bool = True
    max_tilt_deg: float = 35.0
    max_localizer_images: int = 3
    spacing_range_mm: tuple[float, float] = (0.05, 30.0)
    max_extent_mm: float = 3000.0
    deduplicate_identical: bool = True
    fast_reader: bool = True
    limits: ResourceLimits = field(default_factory=ResourceLimits)

    def __post_init__(self) -> None:
        require_finite(self)
        for name in ("orientation_tolerance", "spacing_tolerance", "spacing_tolerance_mm",
                     "duplicate_tolerance_mm", "tilt_tolerance_deg", "max_tilt_deg"):
            if getattr(self, name) < 0:
                raise ValueError(f"LoadOptions.{name} must be >= 0, got {getattr(self, name)}.")
        if self.gap_factor <= 1.0:
            raise ValueError(f"LoadOptions.gap_factor must be > 1, got {self.gap_factor}.")
        if self.max_localizer_images < 0:
            raise ValueError("LoadOptions.max_localizer_images must be >= 0, "
                             f"got {self.max_localizer_images}.")
        low, high = self.spacing_range_mm
        if not 0 < low < high:
            raise ValueError("LoadOptions.spacing_range_mm must be [smallest, largest] with "
                             f"0 < smallest < largest, got {list(self.spacing_range_mm)}.")
        if self.max_extent_mm <= high:
            raise ValueError("LoadOptions.max_extent_mm must exceed the largest spacing, "
                             f"got {self.max_extent_mm}.")


def load_series(paths: Iterable[Path | str], *, options: LoadOptions = LoadOptions(),
                decoded: Mapping[str, np.ndarray] | None = None,
                keep_irregular: bool = False,
                walked: Sequence[WalkedHeader | None] | None = None) -> Volume:
    """Read the files of one series and build its `Volume`.

    Args:
        paths: the series' files, in any order (single- or multi-frame).
        options: tolerances and choices.
        decoded: stored pixel values already decoded from some of the files, by
            ``str(path)``, as `decode_stored` returns them (e.g. by other processes, so
            that the frames of one long compressed series decode in parallel). Every
            header is still read and checked here; an array whose shape disagrees with
            its file's header is ignored and that file decoded here.
        keep_irregular: leave irregularly spaced slices (resampled otherwise, when
            ``options.resample_irregular``) as acquired, with their positions in
            ``Volume.slice_positions``, for a caller that resamples anyway: ingest's
            preprocessing then interpolates them once instead of twice.
        walked: per file of `paths`, in order, what the export scan's raw walk found
            (`InstanceRecord.walked`, None where it has none): those headers are not
            walked again; their values are parsed here as for any other file.

    Returns:
        The volume: float32 ``[column, row, slice]`` in modality units, LPS affine,
        a trustworthy verdict, warnings and provenance.

    Raises:
        TypeError: `paths` is a single path instead of a collection.
        GeometryError: the geometry is untrustworthy; ``err.verdict`` says why.
        UnsupportedTransferSyntaxError: no installed plugin decodes the pixel data.
        DicomError: anything else that makes the files unusable (unreadable, not an
            image, colour, single slice, different series, ...).
    """
    if isinstance(paths, str | Path):
        raise TypeError("load_series() takes a list of file paths, not a single path; "
                        f"wrap it as [{str(paths)!r}].")
    files = [p if isinstance(p, Path) else Path(p) for p in paths]  # no re-parse
    if not files:
        raise DicomError("load_series() was given no files.")
    label = _series_label(files)
    if walked is not None and len(walked) != len(files):
        raise ValueError(f"load_series() was given {len(walked)} walked headers for "
                         f"{len(files)} files.")
    try:
        return _load(files, options, label, decoded or {}, keep_irregular,
                     walked or [None] * len(files))
    except (DicomError, MemoryError):
        raise
    except Exception as err:  # a bug or an input no check foresaw: still a report row
        raise DicomError(
            f"Loading failed with an unexpected {type(err).__name__}: {err}. This is a bug "
            "in triage's loader; please report it with this series.", label) from err


def decode_stored(paths: Iterable[Path | str], *, options: LoadOptions = LoadOptions()
                  ) -> dict[str, np.ndarray]:
    """Stored pixel values (frames, rows, columns) of each file, by ``str(path)``.

    The per-file half of `load_series` (read, check, decode; no geometry), for decoding
    part of a series in another process and handing the result to ``load_series(...,
    decoded=...)``.

    Raises:
        DicomError: as `load_series` for the same file (unreadable, not an image,
            undecodable); the caller then loads the series the usual way, which reports
            the same problem.
    """
    stored = {}
    sizes: list[tuple[int, int, int]] = []
    for index, path in enumerate(paths):
        source = read_source(Path(path), index, fast=options.fast_reader,
                             limits=options.limits)
        sizes.append((source.info.n_frames, source.info.rows, source.info.columns))
        options.limits.check_volume(sizes, Path(path))
        stored[str(path)] = source.stored()
    return stored


def _load(files: list[Path], options: LoadOptions, label: Path,
          decoded: Mapping[str, np.ndarray], keep_irregular: bool,
          walked: Sequence[WalkedHeader | None]) -> Volume:
    sources = [read_source(path, index, fast=options.fast_reader, limits=options.limits,
                           walked=header)
               for index, (path, header) in enumerate(zip(files, walked, strict=True))]
    # Before any pixel is decoded: the headers promise the size of the float32 stack.
    options.limits.check_volume(
        [(s.info.n_frames, s.info.rows, s.info.columns) for s in sources], label)
    if decoded:
        for path, source in zip(files, sources, strict=True):
            arr = decoded.get(str(path))
            if arr is not None:
                source.adopt_stored(arr)
    _check_one_series(sources, label)
    frames = [frame for source in sources for frame in source.frames]
    if len(frames) < 2:
        if any("MOSAIC" in source.info.image_type for source in sources):
            raise DicomError(
                "The image is a Siemens MOSAIC (ImageType contains MOSAIC): the slices of a "
                "volume tiled into one 2D image, which triage does not unpack; convert it "
                "first (dcm2niix unpacks mosaics with the CSA header).", label)
        raise DicomError(
            "The series has a single 2D image, not a volume; a volume needs at least two "
            "slices.", label)
    _check_positions(frames, sources)
    kept, set_aside = _split_localizers(frames, sources, options, label)
    _check_consistent(kept, sources, label)
    return assemble_volume(sources, kept, set_aside, options, label,
                           keep_irregular=keep_irregular)


def _series_label(files: list[Path]) -> Path:
    """The path errors name: the single file, or the folder holding the series."""
    if len(files) == 1:
        return files[0]
    try:
        return Path(os.path.commonpath([os.path.dirname(f) or "." for f in files]))
    except ValueError:  # different drives
        return files[0].parent


def _check_one_series(sources: list[SourceFile], label: Path) -> None:
    uids = Counter(s.info.series_uid for s in sources)
    if len(uids) > 1:
        counts = ", ".join(f"{uid or '(none)'}: {n} file(s)" for uid, n in uids.most_common())
        raise DicomError(
            f"The files belong to {len(uids)} different series ({counts}). Pass the files "
            "of one SeriesInstanceUID at a time.", label)


def _check_positions(frames: list[FrameHeader], sources: list[SourceFile]) -> None:
    for attribute, keyword in (("position", "ImagePositionPatient"),
                               ("orientation", "ImageOrientationPatient"),
                               ("pixel_spacing", "PixelSpacing")):
        missing = [f for f in frames if getattr(f, attribute) is None]
        if missing:
            where = sources[missing[0].file_index].info.path
            raise GeometryError(
                f"{len(missing)} of {len(frames)} image(s) lack {keyword} (first: this "
                "file), so slice order and spacing are unknown. The loader never falls back "
                "to InstanceNumber or an identity geometry; re-export the series with full "
                "geometry.", where, verdict=GeometryVerdict.MISSING_POSITIONS)
    for frame in frames:
        problem = geometry.orientation_problem(frame.orientation)
        if problem:
            raise GeometryError(
                f"ImageOrientationPatient {np.round(frame.orientation, 6).tolist()} is "
                f"unusable: {problem}.", sources[frame.file_index].info.path,
                verdict=GeometryVerdict.MALFORMED)


def _split_localizers(
    frames: list[FrameHeader], sources: list[SourceFile], options: LoadOptions, label: Path
) -> tuple[list[FrameHeader], list[FrameHeader]]:
    """Set aside images typed LOCALIZER and a few images of a minority orientation.

    The volume is the orientation group with the most images not typed LOCALIZER. Images
    typed LOCALIZER are always set aside (they say what they are); untyped images of
    another orientation only up to `LoadOptions.max_localizer_images`.
    """
    typed = np.array(["LOCALIZER" in sources[f.file_index].info.image_type for f in frames])
    if typed.all():
        typed[:] = False  # a localizer series on its own: judge it by orientation only
    groups = geometry.group_orientations(
        np.stack([f.orientation for f in frames]), options.orientation_tolerance)
    untyped = sorted(([int(i) for i in g if not typed[i]] for g in groups), key=len,
                     reverse=True)
    main = untyped[0]
    stray = sum(len(g) for g in untyped[1:])
    tie = len(untyped) > 1 and len(untyped[1]) == len(main)
    if tie or stray > options.max_localizer_images or len(main) < 2:
        sizes = ", ".join(str(len(g)) for g in groups)
        raise GeometryError(
            f"The series mixes {len(groups)} slice orientations (images per orientation: "
            f"{sizes}; {int(typed.sum())} typed LOCALIZER); at most "
            f"{options.max_localizer_images} untyped image(s) of another orientation can be "
            "set aside as a stray localizer. Split the series by orientation before "
            "loading.", label, verdict=GeometryVerdict.INCONSISTENT)
    aside = sorted(set(range(len(frames))) - set(main))
    return [frames[i] for i in main], [frames[i] for i in aside]


def _check_consistent(frames: list[FrameHeader], sources: list[SourceFile], label: Path) -> None:
    sizes = Counter((sources[f.file_index].info.rows, sources[f.file_index].info.columns)
                    for f in frames)
    if len(sizes) > 1:
        shown = ", ".join(f"{r}x{c}: {n}" for (r, c), n in sizes.most_common())
        raise GeometryError(
            f"Slices differ in size (Rows x Columns: {shown}); a volume needs one size. "
            "Remove the odd images or split the series.", label,
            verdict=GeometryVerdict.INCONSISTENT)
    spacing = np.array([f.pixel_spacing for f in frames])
    if np.max(np.abs(spacing - spacing[0])) > 1e-4 * max(float(spacing[0].max()), 1.0):
        values = sorted({tuple(np.round(s, 5)) for s in spacing})
        raise GeometryError(
            f"Slices differ in PixelSpacing ({values[:4]}); a volume needs one spacing.",
            label, verdict=GeometryVerdict.INCONSISTENT)
    if spacing.min() <= 0:
        raise GeometryError(
            f"PixelSpacing {spacing[0].tolist()} is not positive.", label,
            verdict=GeometryVerdict.MALFORMED)
