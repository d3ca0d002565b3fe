"""Turn checked frames into a `Volume`: sort, judge, stack, reslice tilt, resample, affine.

Called by `triage.dicom.volume.loader.load_series` after the per-file and per-series checks.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from triage.dicom import geometry
from triage.dicom.device import device_group
from triage.dicom.pixels.decode import rescale_into, syntax_name
from triage.dicom.pixels.slice_header import FrameHeader
from triage.dicom.pixels.source import SourceFile
from triage.dicom.verdict import GeometryVerdict
from triage.dicom.volume.model import Volume
from triage.errors import DicomError, GeometryError

if TYPE_CHECKING:
    from triage.dicom.volume.loader import LoadOptions

LOGGER = logging.getLogger(__name__)
_PRECEDENCE = [GeometryVerdict.TILT, GeometryVerdict.RESAMPLED_IRREGULAR,
               GeometryVerdict.MIXED_LOCALIZER]


def assemble_volume(
    sources: list[SourceFile],
    frames: list[FrameHeader],
    set_aside: list[FrameHeader],
    options: LoadOptions,
    label: Path,
    *,
    keep_irregular: bool = False,
) -> Volume:
    """Build the volume of `frames` (one orientation, one size) or raise `GeometryError`.

    Irregular gap-free spacing is resampled onto a regular grid, or with `keep_irregular`
    left as acquired with the slices' positions (`Volume.slice_positions`).
    """
    notes: list[str] = []
    if set_aside:
        names = sorted({sources[f.file_index].info.path.name for f in set_aside})
        notes.append(
            f"Set aside {len(set_aside)} image(s) of another orientation or typed LOCALIZER "
            f"(a stray localizer): {', '.join(names[:5])}; the volume uses the other "
            f"{len(frames)} image(s).")
    _, _, normal = geometry.unit_axes(frames[0].orientation)
    analysis = _analyze(frames, normal, options)
    if analysis.duplicates and options.deduplicate_identical:
        frames, dropped = _drop_identical_copies(frames, sources, analysis)
        if len(frames) < 2:  # the two-slice check of the loader counted the copies
            raise DicomError(
                f"The series has a single 2D image, not a volume: its {dropped + 1} files are "
                "byte-identical copies of one SOP instance. A volume needs at least two "
                "slices.", label)
        if dropped:
            notes.append(f"Dropped {dropped} byte-identical duplicate file(s) of the same "
                         "SOP instance.")
            analysis = _analyze(frames, normal, options)
    header_tilt = max(abs(sources[f.file_index].info.gantry_tilt) for f in frames)
    verdict, flags = geometry.stack_verdict(
        analysis, header_tilt_deg=header_tilt, tilt_tolerance_deg=options.tilt_tolerance_deg,
        resample_irregular=options.resample_irregular)
    if set_aside:
        flags.append(GeometryVerdict.MIXED_LOCALIZER)
    if not verdict.trustworthy:
        raise _untrustworthy(verdict, analysis, frames, sources, label)
    verdict = next((v for v in _PRECEDENCE if v in flags), GeometryVerdict.OK)
    position_tilt = analysis.tilt_deg > options.tilt_tolerance_deg
    if analysis.tilt_deg > options.max_tilt_deg:
        raise GeometryError(
            f"The slice positions advance at {analysis.tilt_deg:.1f} degrees to the slice "
            f"normal, more than any gantry tilt (LoadOptions.max_tilt_deg="
            f"{options.max_tilt_deg:g}); ImagePositionPatient and ImageOrientationPatient "
            "contradict each other.", label, verdict=GeometryVerdict.INCONSISTENT)
    if position_tilt and not options.correct_tilt:
        raise GeometryError(
            f"The slices are sheared by a gantry tilt of {analysis.tilt_deg:.2f} degrees and "
            "tilt correction is disabled (LoadOptions.correct_tilt=False).", label,
            verdict=GeometryVerdict.TILT)

    ordered = [frames[i] for i in analysis.order]
    reference = ordered[0]
    row, col, _ = geometry.unit_axes(reference.orientation)
    positions = np.stack([f.position for f in ordered])
    info = sources[reference.file_index].info
    _check_plausible(reference.pixel_spacing, analysis.median_step,
                     (len(ordered), info.rows or 0, info.columns or 0), options, label)
    stack = _stack_pixels(sources, ordered, label)
    if position_tilt:
        shifts = geometry.in_plane_shifts(positions, row, col, reference.pixel_spacing)
        fill = float(stack.min())
        stack = geometry.reslice_tilt(stack, shifts, fill, out=stack)
        notes.append(
            f"Gantry tilt: the slice positions deviate {analysis.tilt_deg:.2f} degrees from "
            f"the slice normal (GantryDetectorTilt {header_tilt:g}); resliced onto an "
            f"orthogonal grid like dcm2niix, filling {fill:g} outside the acquired field "
            "of view.")
    elif GeometryVerdict.TILT in flags:
        notes.append(
            f"GantryDetectorTilt is {header_tilt:g} degrees but the slice positions follow "
            "the slice normal, so the stored geometry is already orthogonal; nothing was "
            "resampled.")
    step = analysis.mean_step
    slice_positions = None
    if analysis.irregular and keep_irregular:
        slice_positions = np.asarray(analysis.offsets - analysis.offsets[0], dtype=np.float64)
        step = analysis.median_step
        notes.append(
            f"Irregular slice spacing: steps range from {analysis.min_step:.4g} to "
            f"{analysis.max_step:.4g} mm (median {analysis.median_step:.4g}); the "
            f"{len(ordered)} slices are kept at their positions and interpolated once, "
            "onto the preprocessing grid.")
    elif analysis.irregular:
        targets = geometry.regular_offsets(analysis.offsets, analysis.median_step)
        stack = geometry.resample_slices(stack, analysis.offsets, targets)
        step = float(targets[1] - targets[0])
        notes.append(
            f"Irregular slice spacing: steps range from {analysis.min_step:.4g} to "
            f"{analysis.max_step:.4g} mm (median {analysis.median_step:.4g}); resampled "
            f"{len(ordered)} slices onto {targets.size} at {step:.4g} mm by linear "
            "interpolation along the normal.")
    affine = geometry.build_affine(reference.orientation, reference.pixel_spacing,
                                   reference.position, step)
    # Logs name the series by its UID: an export's folder names may hold patient names.
    for note in notes:
        LOGGER.warning("Series %s: %s", sources[0].info.series_uid or "(no UID)", note)
    provenance = _provenance(sources, frames, set_aside, analysis, flags, step, header_tilt,
                             n_slices=stack.shape[0])
    for source in sources:
        source.release()
    return Volume(array=stack.transpose(2, 1, 0), affine=affine,
                  modality=sources[0].info.modality or "OT", verdict=verdict,
                  warnings=notes, provenance=provenance, slice_positions=slice_positions)


def _analyze(
    frames: list[FrameHeader], normal: np.ndarray, options: LoadOptions
) -> geometry.StackAnalysis:
    return geometry.analyze_stack(
        np.stack([f.position for f in frames]), normal,
        duplicate_tolerance_mm=options.duplicate_tolerance_mm, gap_factor=options.gap_factor,
        spacing_tolerance=options.spacing_tolerance,
        spacing_tolerance_mm=options.spacing_tolerance_mm)


def _drop_identical_copies(
    frames: list[FrameHeader], sources: list[SourceFile], analysis: geometry.StackAnalysis
) -> tuple[list[FrameHeader], int]:
    """Remove extra copies of one SOP instance whose pixel bytes are identical."""
    drop: set[int] = set()
    for group in analysis.duplicates:
        seen: dict[tuple[str, bytes], int] = {}
        for index in group:
            source = sources[frames[index].file_index]
            if source.info.n_frames != 1 or not source.info.sop_instance_uid:
                continue
            key = (source.info.sop_instance_uid, source.pixel_bytes())
            if key in seen:
                drop.add(int(index))
            else:
                seen[key] = int(index)
    return [f for i, f in enumerate(frames) if i not in drop], len(drop)


def _untrustworthy(
    verdict: GeometryVerdict,
    analysis: geometry.StackAnalysis,
    frames: list[FrameHeader],
    sources: list[SourceFile],
    label: Path,
) -> GeometryError:
    def name(index: int) -> str:
        return sources[frames[int(index)].file_index].info.path.name

    if verdict is GeometryVerdict.DUPLICATES:
        group = analysis.duplicates[0]
        where = float(frames[int(group[0])].position @ geometry.unit_axes(
            frames[0].orientation)[2])
        message = (
            f"{len(analysis.duplicates)} slice position(s) hold more than one image, e.g. "
            f"{len(group)} images at {where:.3f} mm along the normal "
            f"({', '.join(name(i) for i in group[:4])}). The series mixes acquisitions, "
            "phases or copies and is not one volume; select one acquisition before loading.")
    elif verdict is GeometryVerdict.GAPS:
        after, step = analysis.gaps[0]
        message = (
            f"{len(analysis.gaps)} gap(s) in the slice positions: a step of {step:.4g} mm "
            f"after {name(analysis.order[after])} where the median step is "
            f"{analysis.median_step:.4g} mm. Missing slices are not interpolated, because a "
            "finding could lie in them; re-export the complete series.")
    else:
        message = (
            f"Slice steps range from {analysis.min_step:.4g} to {analysis.max_step:.4g} mm "
            f"(median {analysis.median_step:.4g}) and resampling irregular spacing is "
            "disabled (LoadOptions.resample_irregular=False).")
    return GeometryError(message, label, verdict=verdict)


def _check_plausible(pixel_spacing: tuple[float, float], step: float,
                     shape: tuple[int, ...], options: LoadOptions, label: Path) -> None:
    """Refuse a spacing or a scanned extent no clinical scan has.

    Such headers are consistent, so no other check stops them, but they would make
    preprocessing resample a field kilometres long (gigabytes) or a fraction of a
    millimetre wide (a network input of one voxel and padding).
    """
    rows, columns = pixel_spacing
    low, high = options.spacing_range_mm
    for name, value in (("PixelSpacing (rows)", rows), ("PixelSpacing (columns)", columns),
                        ("the slice step", step)):
        if not low <= value <= high:
            raise GeometryError(
                f"{name} is {value:.6g} mm, outside [{low:g}, {high:g}] mm "
                "(LoadOptions.spacing_range_mm): the header is corrupt or the image is "
                "not a clinical scan.", label, verdict=GeometryVerdict.MALFORMED)
    n_slices, n_rows, n_columns = shape
    extent = max(n_rows * rows, n_columns * columns, n_slices * step)
    if extent > options.max_extent_mm:
        raise GeometryError(
            f"The scanned field is {extent:.6g} mm long ({n_columns} x {n_rows} x "
            f"{n_slices} voxels of {columns:.4g} x {rows:.4g} x {step:.4g} mm), more than "
            f"LoadOptions.max_extent_mm={options.max_extent_mm:g}: the header is corrupt.",
            label, verdict=GeometryVerdict.MALFORMED)


def _stack_pixels(sources: list[SourceFile], ordered: list[FrameHeader], label: Path) -> np.ndarray:
    """Sorted frames rescaled into one preallocated float32 ``[slice, row, column]``.

    The rescale is fused with the copy, slice by slice, while the slice is in cache: one
    pass over the output instead of a copy followed by whole-volume multiply and add
    (measured: the fused form is faster once the volume outgrows the CPU cache).
    """
    info = sources[ordered[0].file_index].info
    stack = np.empty((len(ordered), info.rows, info.columns), dtype=np.float32)
    floating = overflow = False
    for k, frame in enumerate(ordered):
        source = sources[frame.file_index]
        stored = source.stored()[frame.frame_index]
        floating = floating or stored.dtype.kind == "f"
        if stored.dtype.kind in "iu" and not overflow:
            overflow = _may_overflow(stored.dtype, frame)
        with np.errstate(over="ignore", invalid="ignore"):  # refused below, not warned
            rescale_into(stack[k], stored, frame.slope, frame.intercept)
        if source.info.n_frames == 1:
            source.release()  # file bytes go as the volume fills: peak ~ max, not sum
    if floating and not np.isfinite(stack).all():
        raise DicomError("The float pixel data holds NaN or infinite values.", label)
    if overflow and not np.isfinite(stack).all():
        slopes = sorted({f.slope for f in ordered}, key=abs)
        raise DicomError(
            f"RescaleSlope {slopes[-1]:g} takes stored values beyond the float32 range "
            "(infinite or NaN intensities); the header is corrupt. Re-export the series.",
            label)
    return stack


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _may_overflow(dtype: np.dtype, frame: FrameHeader) -> bool:
    """Whether ``stored * slope + intercept`` can leave float32's range for some stored
    value of integer `dtype` (only then is the stack checked for non-finite values)."""
    limits = np.iinfo(dtype)
    largest = max(abs(int(limits.min)), int(limits.max))
    return abs(frame.slope) * largest + abs(frame.intercept) >= _FLOAT32_MAX


def _provenance(
    sources: list[SourceFile],
    frames: list[FrameHeader],
    set_aside: list[FrameHeader],
    analysis: geometry.StackAnalysis,
    flags: list[GeometryVerdict],
    step: float,
    header_tilt: float,
    *,
    n_slices: int,
) -> dict[str, Any]:
    first = sources[frames[0].file_index].info
    syntaxes = sorted({s.info.transfer_syntax for s in sources})
    readers = sorted({s.reader for s in sources})
    return {
        "study_uid": first.study_uid,
        "series_uid": first.series_uid,
        "sop_class_uid": first.sop_class_uid,
        "modality": first.modality,
        "device_group": device_group(first.manufacturer, first.model_name),
        "patient_position": first.patient_position,
        "n_files": len(sources),
        "n_source_slices": len(frames),
        "n_set_aside": len(set_aside),
        "n_slices": n_slices,
        "transfer_syntaxes": syntaxes,
        "transfer_syntax_names": [syntax_name(s) for s in syntaxes],
        "pixel_spacing_mm": list(frames[0].pixel_spacing),
        "orientation": [round(float(v), 6) for v in frames[0].orientation],
        "slice_step_mm": step,
        "source_step_min_mm": analysis.min_step,
        "source_step_median_mm": analysis.median_step,
        "source_step_max_mm": analysis.max_step,
        "slice_thickness_mm": first.slice_thickness,
        "tilt_deg": analysis.tilt_deg,
        "gantry_detector_tilt_deg": header_tilt,
        "geometry_flags": [f.value for f in flags],
        "readers": readers,
    }
