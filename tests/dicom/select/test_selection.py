"""Grouping into studies and series selection: exact reasons for every series not chosen."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.dicom.factories import CORONAL, build_export, make_record, make_series
from triage.dicom.scan.grouping import StudyGroup, group_studies
from triage.dicom.scan.index import InstanceRecord, ScanErrorCode, ScanResult
from triage.dicom.scan.scan import scan_export
from triage.dicom.select.selection import (
    Rejection,
    SelectionRules,
    SeriesSelection,
    StudyStatus,
    select_series,
)


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return build_export(tmp_path_factory.mktemp("select") / "export")


@pytest.fixture(scope="module")
def groups(export) -> dict[str, StudyGroup]:
    return {g.study_uid: g for g in group_studies(scan_export(export.root, workers=1))}


@pytest.fixture(scope="module")
def selections(groups) -> dict[str, SeriesSelection]:
    return {uid: select_series(group) for uid, group in groups.items()}


def reasons(selection: SeriesSelection) -> list[tuple[int | None, Rejection, str]]:
    return [(r.series_number, r.reason, r.message) for r in selection.rejected]


def study(records: list[InstanceRecord]) -> StudyGroup:
    (group,) = group_studies(ScanResult(Path("/export"), tuple(records)))
    return group


def test_every_study_appears_once_and_unparseable_files_are_pseudo_studies(export, groups):
    real = {export.uids[f"study_{k}"] for k in "abcd"}
    pseudo = {"unreadable:empty.dcm", "unreadable:garbage.dcm", "unreadable:study_b/loop"}
    assert list(groups) == sorted(real) + sorted(pseudo)


def test_unreadable_pseudo_study_gives_the_file_error(selections):
    empty = selections["unreadable:empty.dcm"]
    assert (empty.status, empty.chosen, empty.reason) == (
        StudyStatus.UNREADABLE, None, "could not be read: zero-length file")


def test_thin_reconstruction_is_chosen_over_thick_and_non_images_are_rejected(
        export, selections):
    selection = selections[export.uids["study_a"]]
    chosen = selection.chosen
    assert (chosen.series_uid, chosen.slices, chosen.slice_thickness) == (
        export.uids["thin"], 20, 1.0)
    assert len(chosen.instances) == 20  # the truncated 21st file is not passed on
    assert selection.warnings == ("1 file(s) of the series could not be read (truncated: 1)",)
    assert reasons(selection) == [
        (1, Rejection.LOCALIZER, "localizer (series description matches 'Topogram')"),
        (3, Rejection.NOT_PREFERRED, "not preferred: 5 mm, 18 slices; chosen series "
                                     f"2 ({export.uids['thin']}) has 1 mm, 20 slices"),
        (900, Rejection.MODALITY, "modality OT not in allowed (CT)"),
        (901, Rejection.SECONDARY_CAPTURE, "secondary capture"),
        (999, Rejection.MODALITY, "modality SR not in allowed (CT)"),
    ]


def test_stray_localizer_in_the_series_is_passed_on_and_flagged(export, selections):
    selection = selections[export.uids["study_b"]]
    chosen = selection.chosen
    assert chosen.series_uid == export.uids["axial"]
    assert (chosen.slices, len(chosen.instances), chosen.orientation_groups) == (20, 21, 2)
    assert chosen.mixed_orientation
    assert selection.warnings == (
        "mixed orientation: 2 orientation groups; 1 image(s) outside the dominant group of "
        "20 are set aside by the loader",
        "1 image(s) with ImageType LOCALIZER in the series",
    )
    assert reasons(selection) == [
        (4, Rejection.TOO_FEW_SLICES, "3 slices < min 16"),
        (5, Rejection.NO_PIXEL_DATA, "no pixel data"),
        (6, Rejection.IMAGE_TYPE, "image type DERIVED\\SECONDARY\\MPR is not ORIGINAL\\PRIMARY"),
    ]


def test_malformed_but_parseable_series_is_selected_with_notes(export, selections):
    selection = selections[export.uids["study_c"]]
    assert selection.chosen.series_uid == export.uids["malformed"]
    assert selection.chosen.slices == 16
    assert selection.warnings == (
        "1 image(s) without ImageOrientationPatient",
        "16 file(s) with malformed values in ImagePositionPatient, PixelSpacing",
    )


def test_study_without_selectable_series_gets_a_study_reason(export, selections):
    selection = selections[export.uids["study_d"]]
    assert (selection.status, selection.chosen) == (StudyStatus.NO_SERIES, None)
    messages = [str(r) for r in selection.rejected]
    assert selection.reason == "no series passes selection: " + "; ".join(messages)
    assert [m.split(": ", 1)[1] for m in messages] == [
        "localizer (series description matches 'SCOUT')",
        "5 slices < min 16",
        "orientation inconsistent: 2 orientation groups, none with >= 16 slices",
    ]


def test_summary_row_carries_no_patient_identifiers(export, groups, selections):
    rows = [s.summary() for s in selections.values()]
    text = repr(rows)
    for key in "abcd":
        assert f"PID-{key}" not in text and f"ACC-{key}" not in text
    assert rows[0].keys() == {"study_uid", "status", "series_uid", "series_number", "slices",
                              "device_group", "reason", "warnings", "rejected"}


def test_same_thickness_prefers_more_slices_then_lower_series_number():
    records = (make_series(20, series_uid="1.9.1", series_number=7)
               + make_series(24, series_uid="1.9.2", series_number=8)
               + make_series(24, series_uid="1.9.3", series_number=5))
    assert select_series(study(records)).chosen.series_uid == "1.9.3"


def test_thickness_falls_back_to_position_spacing():
    thin = [replace(r, slice_thickness=None) for r in make_series(16, series_uid="1.9.1",
                                                                  thickness=0.5)]
    thick = make_series(30, series_uid="1.9.2", thickness=2.0, series_number=3)
    chosen = select_series(study(thin + thick)).chosen
    assert (chosen.series_uid, chosen.slice_thickness) == ("1.9.1", 0.5)


def test_localizer_by_image_type_and_rules_that_turn_checks_off():
    scouts = make_series(20, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    assert reasons(select_series(study(scouts))) == [
        (2, Rejection.LOCALIZER, "localizer (ImageType LOCALIZER)")]
    lenient = SelectionRules(reject_localizers=False)
    assert select_series(study(scouts), lenient).chosen is not None


def test_rules_are_configurable():
    mr = make_series(4, modality="MR", image_type=("DERIVED", "SECONDARY"))
    assert reasons(select_series(study(mr))) == [
        (2, Rejection.MODALITY, "modality MR not in allowed (CT)")]
    rules = SelectionRules(allowed_modalities=("ct", "mr"), require_original_primary=False,
                           min_slices=4)
    assert rules.allowed_modalities == ("CT", "MR")
    assert select_series(study(mr), rules).chosen.slices == 4


def test_multiframe_counts_frames_towards_min_slices():
    (frame,) = make_series(1, number_of_frames=40)
    assert select_series(study([frame])).chosen.slices == 40


def test_orientation_groups_keep_a_dominant_group_big_enough():
    records = make_series(16) + make_series(3, orientation=CORONAL, start=16)
    chosen = select_series(study(records)).chosen
    assert (chosen.slices, chosen.orientation_groups) == (16, 2)


def test_series_of_only_unreadable_files_and_errors_outside_series():
    broken = [replace(r, error="truncated: x", error_code=ScanErrorCode.TRUNCATED)
              for r in make_series(2)]
    loose = make_record(path=Path("/export/x.dcm"), series_uid=None,
                        error="missing SeriesInstanceUID", error_code=ScanErrorCode.MISSING_UID)
    selection = select_series(study([*broken, loose]))
    assert selection.status is StudyStatus.UNREADABLE
    assert selection.reason == (
        "no series passes selection: series 2 (1.2.3.4): all 2 file(s) unreadable "
        "(truncated: 2), first /export/1.2.3.4/IM0000.dcm: truncated: x")
    assert selection.warnings == (
        "1 file(s) of this study outside any series could not be read (missing-uid: 1)",)


def test_an_unreadable_series_names_its_first_file_on_one_bounded_line():
    long = "corrupt: ValueError: bad item;\nsee " + "x" * 400
    broken = [replace(r, error=error, error_code=code) for r, (error, code) in zip(
        reversed(make_series(3)), [("over limit: big", ScanErrorCode.OVER_LIMIT),
                                    ("zero-length file", ScanErrorCode.ZERO_LENGTH),
                                    (long, ScanErrorCode.CORRUPT)], strict=True)]
    (rejected,) = select_series(study(broken)).rejected
    assert rejected.reason is Rejection.UNREADABLE
    head = ("all 3 file(s) unreadable (corrupt: 1, over-limit: 1, zero-length: 1), first "
            "/export/1.2.3.4/IM0000.dcm: corrupt: ValueError: bad item, see xxx")
    assert rejected.message.startswith(head) and rejected.message.endswith("x…")
    assert "\n" not in rejected.message and ";" not in rejected.message
    assert len(rejected.message.split("IM0000.dcm: ", 1)[1]) == 240  # MAX_DETAIL


@pytest.mark.parametrize(("options", "message"), [
    ({"allowed_modalities": ()}, r"allowed_modalities must name at least one modality"),
    ({"min_slices": 0}, r"min_slices must be an integer >= 1, got 0\."),
    ({"orientation_tolerance": 2.0}, r"orientation_tolerance must be in \(0, 1\), got 2\.0\."),
    ({"localizer_pattern": "("}, r"localizer_pattern '\(' is not a regular expression"),
])
def test_invalid_rules_are_rejected_with_the_bad_value(options, message):
    with pytest.raises(ValueError, match=message):
        SelectionRules(**options)


def test_copies_of_one_instance_count_as_one_slice():
    """A file exported three times is one slice towards min_slices, not three."""
    records = make_series(2, series_uid="1.2.3.9")
    copies = [replace(records[0], path=records[0].path.with_name(f"copy{i}.dcm"))
              for i in range(2)]
    selection = select_series(study([*records, *copies]), SelectionRules(min_slices=3))
    assert selection.chosen is None
    assert "2 slices < min 3" in selection.reason
    assert select_series(study([*records, *copies]),
                         SelectionRules(min_slices=2)).chosen.slices == 2


def test_ct_series_without_image_type_is_selected_with_a_note(tmp_path):
    """ImageType is Type 1, but dcm2niix and SimpleITK load a CT series without it: it is
    accepted with a warning instead of rejected whole as "image type (missing)"."""
    from tests.dicom.loader_factory import SeriesRecipe, write_series
    from triage.dicom.volume.loader import load_series

    written = write_series(tmp_path / "export", SeriesRecipe(n_slices=4, rows=16, cols=16),
                           mutate=lambda _k, ds: delattr(ds, "ImageType"))
    (group,) = group_studies(scan_export(tmp_path / "export", workers=1))
    selection = select_series(group, SelectionRules(min_slices=2))
    assert selection.chosen is not None, selection.reason
    assert any("4 image(s) without ImageType" in w for w in selection.warnings)
    assert load_series(written.paths).verdict.value == "ok"
