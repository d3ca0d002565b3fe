"""Turn a rendered `StudyTruth` into DICOM datasets, one per file, with the device's habits."""

from __future__ import annotations

from collections.abc import Iterator

from pydicom.dataset import FileDataset

from triage.data.synth.dicom_writer import (
    SeriesSpec,
    ct_slice_datasets,
    secondary_capture_dataset,
)
from triage.data.synth.extras import dose_report_rgb, report_dataset
from triage.data.synth.study import SeriesKind, SeriesTruth, StudyTruth

_CTDI_BY_KIND = {SeriesKind.LOCALIZER: 0.2, SeriesKind.AXIAL: 11.5, SeriesKind.THICK: 11.5}


def _ct_spec(study: StudyTruth, series: SeriesTruth) -> SeriesSpec:
    device, geometry = study.device, series.geometry
    assert geometry is not None
    localizer = series.kind is SeriesKind.LOCALIZER
    spacing = None
    if device.write_spacing_between_slices and not localizer:
        spacing = (device.slice_spacing_mm if series.kind is SeriesKind.AXIAL
                   else geometry.slice_thickness)
    return SeriesSpec(
        series_uid=series.series_uid,
        frame_of_reference_uid=study.frame_of_reference_uid,
        orientation=geometry.orientation,
        positions=geometry.positions,
        pixel_spacing=geometry.pixel_spacing,
        slice_thickness=geometry.slice_thickness,
        series_number=series.series_number,
        series_description=series.description,
        image_type=("ORIGINAL", "PRIMARY", "LOCALIZER" if localizer else "AXIAL"),
        patient_position="HFP" if study.placement.prone else "HFS",
        convolution_kernel=device.kernel.name,
        kvp=device.kvp,
        gantry_tilt=series.tilt_deg,
        spacing_between_slices=spacing,
        encoding=device.encoding,
        transfer_syntax=device.transfer_syntax,
        instance_numbers=series.instance_numbers,
        window=(50.0, 1500.0) if localizer else (40.0, 400.0),
    )


def study_datasets(study: StudyTruth) -> Iterator[tuple[str, FileDataset]]:
    """``(relative path, dataset)`` for every file of a rendered study, series by series.

    Raises:
        ValueError: if an image series was not rendered (``hu`` is None).
    """
    equipment = study.device.equipment
    for series in study.series:
        if series.kind is SeriesKind.DOSE_REPORT:
            values = [_CTDI_BY_KIND[s.kind] for s in study.series if s.kind in _CTDI_BY_KIND]
            ds = secondary_capture_dataset(study.header, equipment, series.series_uid,
                                           dose_report_rgb(values), series.series_number)
            ds.SeriesDate = study.header.study_date
            yield series.files[0], ds
        elif series.kind is SeriesKind.TEXT_REPORT:
            yield series.files[0], report_dataset(study.header, equipment, series.series_uid)
        else:
            if series.hu is None:
                raise ValueError(f"Series {series.series_uid} of study {study.study_uid} has no "
                                 "pixels; build the study with render=True.")
            datasets = ct_slice_datasets(study.header, equipment, _ct_spec(study, series),
                                         series.hu)
            yield from zip(series.files, datasets, strict=True)
