"""Geometry rules: pure functions, then every verdict on a written series."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from pydicom import config

from tests.dicom.loader_factory import (
    CORONAL,
    SeriesRecipe,
    expected_lps,
    localizer_from,
    oblique_orientation,
    overlong_decimals,
    patch_text,
    phantom_hu,
    renumber,
    resized,
    write_series,
)
from triage.dicom import geometry
from triage.dicom.verdict import GeometryVerdict
from triage.dicom.volume.loader import LoadOptions, load_series
from triage.errors import DicomError, GeometryError

AXIAL_NORMAL = np.array([0.0, 0.0, 1.0])


@pytest.fixture(autouse=True)
def strict_pydicom(monkeypatch: pytest.MonkeyPatch) -> None:
    """Strict pydicom reading: the loader must not depend on lenient value conversion."""
    monkeypatch.setattr(config.settings, "reading_validation_mode", config.RAISE)


def _stack(offsets: list[float]) -> np.ndarray:
    return np.array([[0.0, 0.0, z] for z in offsets])


# --- pure geometry -------------------------------------------------------------------

def test_unit_axes_normal_is_row_cross_column() -> None:
    row, col, normal = geometry.unit_axes(np.array(CORONAL))
    np.testing.assert_allclose(normal, np.cross(row, col))
    np.testing.assert_allclose(normal, [0.0, 1.0, 0.0])


@pytest.mark.parametrize(("iop", "reason"), [
    ([1, 0, 0, 0, 1, 0], None),
    ([1, 0, 0, 0.0, 0.99999, 0.0], None),
    ([1, 0, 0, 1, 0, 0], "not orthogonal"),
    ([2, 0, 0, 0, 1, 0], "lengths"),
    ([0, 0, 0, 0, 1, 0], "zero"),
])
def test_orientation_problem(iop: list[float], reason: str | None) -> None:
    problem = geometry.orientation_problem(np.array(iop, dtype=float))
    assert (problem is None) if reason is None else (reason in problem)


def test_group_orientations_largest_first() -> None:
    iops = np.array([CORONAL, [1, 0, 0, 0, 1, 0], [1, 0, 0, 0, 1, 0], [1, 0, 0, 0, 1, 1e-4]])
    groups = geometry.group_orientations(iops, tolerance=1e-3)
    assert [g.tolist() for g in groups] == [[1, 2, 3], [0]]


def test_analyze_sorts_along_normal_not_input_order() -> None:
    analysis = geometry.analyze_stack(_stack([5.0, 0.0, 10.0, 2.5, 7.5]), AXIAL_NORMAL)
    assert analysis.order.tolist() == [1, 3, 0, 4, 2]
    assert analysis.median_step == pytest.approx(2.5)
    assert not analysis.gaps and not analysis.irregular and not analysis.duplicates


def test_analyze_finds_duplicates_gaps_and_irregularity() -> None:
    dup = geometry.analyze_stack(_stack([0, 2.5, 2.5, 5, 7.5]), AXIAL_NORMAL)
    assert [g.tolist() for g in dup.duplicates] == [[1, 2]]
    gap = geometry.analyze_stack(_stack([0, 2.5, 5, 10, 12.5, 15]), AXIAL_NORMAL)
    assert gap.gaps == [(2, 5.0)]
    irregular = geometry.analyze_stack(_stack([0, 2.4, 5.0, 7.4, 10.0]), AXIAL_NORMAL)
    assert irregular.irregular and not irregular.gaps
    rounding = geometry.analyze_stack(_stack([0, 0.62, 1.25, 1.87, 2.5]), AXIAL_NORMAL)
    assert not rounding.irregular  # 0.005 mm header rounding is below the mm floor


def test_analyze_measures_tilt_angle() -> None:
    positions = np.array([[0.0, k * np.tan(np.deg2rad(12.0)), float(k)] for k in range(5)])
    assert geometry.analyze_stack(positions, AXIAL_NORMAL).tilt_deg == pytest.approx(12.0)


def test_verdict_precedence() -> None:
    gap_and_tilt = geometry.analyze_stack(_stack([0, 2.5, 5, 10, 12.5]), AXIAL_NORMAL)
    verdict, flags = geometry.stack_verdict(gap_and_tilt, header_tilt_deg=10.0,
                                            tilt_tolerance_deg=0.02, resample_irregular=True)
    assert verdict is GeometryVerdict.GAPS
    assert flags == [GeometryVerdict.GAPS, GeometryVerdict.TILT]


def test_resample_slices_is_exact_for_linear_data() -> None:
    offsets = np.array([0.0, 1.0, 2.5, 3.0, 4.0])
    stack = (offsets[:, None, None] * 2.0 + np.zeros((1, 2, 3))).astype(np.float32)
    targets = geometry.regular_offsets(offsets, 1.0)
    assert targets.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    out = geometry.resample_slices(stack, offsets, targets)
    np.testing.assert_allclose(out[:, 0, 0], targets * 2.0, atol=1e-6)


def test_reslice_tilt_shifts_rows_and_fills() -> None:
    image = np.arange(20, dtype=np.float32).reshape(1, 5, 4)
    out = geometry.reslice_tilt(image, np.array([[1.0, 0.0]]), fill=-1.0)
    np.testing.assert_array_equal(out[0, 0], [-1.0] * 4)
    np.testing.assert_array_equal(out[0, 1:], image[0, :4])


def test_build_affine_uses_column_spacing_for_the_first_axis() -> None:
    affine = geometry.build_affine(np.array([1.0, 0, 0, 0, 1, 0]), (0.5, 0.8),
                                   np.array([1.0, 2.0, 3.0]), 2.0)
    np.testing.assert_allclose(affine[:3, :3], np.diag([0.8, 0.5, 2.0]))
    np.testing.assert_allclose(affine[:3, 3], [1.0, 2.0, 3.0])


# --- verdicts on written series ------------------------------------------------------

def _assert_matches_phantom(volume, atol: float = 0.51) -> None:
    expected = phantom_hu(expected_lps(volume.affine, volume.shape))
    np.testing.assert_allclose(volume.array, expected, atol=atol)


def test_clean_series_is_ok(tmp_path: Path) -> None:
    volume = load_series(write_series(tmp_path).paths)
    assert volume.verdict is GeometryVerdict.OK and volume.warnings == []
    _assert_matches_phantom(volume)


def test_duplicate_positions_are_untrustworthy(tmp_path: Path) -> None:
    def add_second_acquisition(datasets: list) -> list:
        extra = resized(datasets[5], datasets[5].Rows, datasets[5].Columns, value=7)
        renumber(extra, "acquisition-2")
        return [*datasets, extra]

    series = write_series(tmp_path, datasets_hook=add_second_acquisition)
    with pytest.raises(GeometryError, match="hold more than one image") as info:
        load_series(series.paths)
    assert info.value.verdict is GeometryVerdict.DUPLICATES
    assert str(series.folder) in str(info.value)


def test_identical_copies_are_deduplicated_with_a_warning(tmp_path: Path) -> None:
    series = write_series(tmp_path)
    copy = shutil.copy(series.paths[3], series.folder / "copy_of_IM0003.dcm")
    volume = load_series([*series.paths, Path(copy)])
    assert volume.verdict is GeometryVerdict.OK and volume.shape[2] == 16
    assert any("byte-identical duplicate" in w for w in volume.warnings)
    _assert_matches_phantom(volume)
    strict = LoadOptions(deduplicate_identical=False)
    with pytest.raises(GeometryError) as info:
        load_series([*series.paths, Path(copy)], options=strict)
    assert info.value.verdict is GeometryVerdict.DUPLICATES


def test_one_missing_slice_is_a_gap(tmp_path: Path) -> None:
    series = write_series(tmp_path, datasets_hook=lambda ds: ds[:7] + ds[8:])
    with pytest.raises(GeometryError, match=r"step of 5 mm after IM0006\.dcm .* median step "
                                            r"is 2\.5 mm") as info:
        load_series(series.paths)
    assert info.value.verdict is GeometryVerdict.GAPS


def test_irregular_spacing_is_resampled_and_matches_the_phantom(tmp_path: Path) -> None:
    offsets = np.cumsum([0.0] + [2.4, 2.6] * 7 + [2.5])
    series = write_series(tmp_path, SeriesRecipe(offsets=tuple(offsets)))
    volume = load_series(series.paths)
    assert volume.verdict is GeometryVerdict.RESAMPLED_IRREGULAR
    assert volume.spacing[2] == pytest.approx((offsets[-1] - offsets[0]) / 15)
    assert "steps range from 2.4 to 2.6 mm" in volume.warnings[0]
    _assert_matches_phantom(volume, atol=0.51)  # linear phantom: interpolation is exact
    with pytest.raises(GeometryError, match="resampling irregular spacing is disabled") as info:
        load_series(series.paths, options=LoadOptions(resample_irregular=False))
    assert info.value.verdict is GeometryVerdict.IRREGULAR


def test_spacing_within_one_percent_is_ok(tmp_path: Path) -> None:
    offsets = np.cumsum([0.0] + [2.49, 2.51] * 7 + [2.5])
    volume = load_series(write_series(tmp_path, SeriesRecipe(offsets=tuple(offsets))).paths)
    assert volume.verdict is GeometryVerdict.OK


def _tilted(tilt: float = 15.0) -> SeriesRecipe:
    return SeriesRecipe(orientation=oblique_orientation(tilt, 0), track=(0.0, 0.0, 1.0),
                        gantry_tilt=tilt)


def test_gantry_tilt_is_resliced_onto_an_orthogonal_grid(tmp_path: Path) -> None:
    recipe = _tilted(15.0)
    volume = load_series(write_series(tmp_path, recipe).paths)
    assert volume.verdict is GeometryVerdict.TILT
    assert "resliced onto an orthogonal grid" in volume.warnings[0]
    direction = volume.direction
    np.testing.assert_allclose(direction.T @ direction, np.eye(3), atol=1e-9)
    assert volume.spacing[2] == pytest.approx(recipe.step * np.cos(np.deg2rad(15.0)))
    # Slice k is shifted by k * step * sin(tilt) / row spacing rows; compare voxels whose
    # source lies at least one row inside the acquired field of view.
    shift = np.arange(volume.shape[2]) * recipe.step * np.sin(np.deg2rad(15.0)) / 0.7
    rows = np.arange(volume.shape[1])[:, None]
    inside = (rows - shift[None, :] >= 1) & (rows - shift[None, :] <= volume.shape[1] - 2)
    expected = phantom_hu(expected_lps(volume.affine, volume.shape))
    error = np.abs(volume.array - expected)[:, inside]
    assert error.max() <= 0.51


def test_gantry_tilt_can_be_refused(tmp_path: Path) -> None:
    series = write_series(tmp_path, _tilted(10.0))
    with pytest.raises(GeometryError, match="tilt correction is disabled") as info:
        load_series(series.paths, options=LoadOptions(correct_tilt=False))
    assert info.value.verdict is GeometryVerdict.TILT


def test_header_tilt_with_orthogonal_positions_is_flagged_not_resampled(tmp_path: Path) -> None:
    volume = load_series(write_series(tmp_path, SeriesRecipe(gantry_tilt=12.0)).paths)
    assert volume.verdict is GeometryVerdict.TILT
    assert "nothing was resampled" in volume.warnings[0]
    _assert_matches_phantom(volume)


@pytest.mark.parametrize("keyword", ["ImagePositionPatient", "ImageOrientationPatient",
                                     "PixelSpacing"])
def test_missing_geometry_is_never_guessed(tmp_path: Path, keyword: str) -> None:
    def drop(k: int, ds) -> None:
        if k == 4:
            delattr(ds, keyword)

    series = write_series(tmp_path, mutate=drop)
    with pytest.raises(GeometryError, match=f"1 of 16 image.* lack {keyword}") as info:
        load_series(series.paths)
    assert info.value.verdict is GeometryVerdict.MISSING_POSITIONS
    assert "IM0004.dcm" in str(info.value)


@pytest.mark.parametrize("fast", [True, False], ids=["fast-reader", "pydicom"])
def test_overlong_decimal_strings_are_parsed(tmp_path: Path, fast: bool) -> None:
    recipe = SeriesRecipe(origin=(-125.0, -125.0, 30.0), orientation=oblique_orientation(5, 5))
    clean = load_series(write_series(tmp_path, recipe, name="clean").paths)
    series = write_series(tmp_path, recipe, name="long", mutate=overlong_decimals())
    assert b"-125.000000000000000000" in series.paths[0].read_bytes()
    volume = load_series(series.paths, options=LoadOptions(fast_reader=fast))
    np.testing.assert_allclose(volume.affine, clean.affine, atol=1e-9)
    np.testing.assert_array_equal(volume.array, clean.array)


@pytest.mark.parametrize("text", ["abc\\0\\0", "1.0\\2.0", "nan\\0\\0", "1,5\\0\\0"])
@pytest.mark.parametrize("fast", [True, False], ids=["fast-reader", "pydicom"])
def test_unparseable_positions_are_malformed(tmp_path: Path, text: str, fast: bool) -> None:
    series = write_series(tmp_path)
    patch_text(series.paths[2], "ImagePositionPatient", text)
    with pytest.raises(GeometryError, match="ImagePositionPatient is .* which is not 3 "
                                            "decimal number") as info:
        load_series(series.paths, options=LoadOptions(fast_reader=fast))
    assert info.value.verdict is GeometryVerdict.MALFORMED
    assert "IM0002.dcm" in str(info.value)


def test_bad_orientation_vectors_are_malformed(tmp_path: Path) -> None:
    def corrupt(k: int, ds) -> None:
        ds.ImageOrientationPatient = [1, 0, 0, 1, 0, 0]

    with pytest.raises(GeometryError, match="not orthogonal") as info:
        load_series(write_series(tmp_path, mutate=corrupt).paths)
    assert info.value.verdict is GeometryVerdict.MALFORMED


@pytest.mark.parametrize("typed", [True, False], ids=["typed-LOCALIZER", "orientation-only"])
def test_stray_localizer_is_set_aside(tmp_path: Path, typed: bool) -> None:
    clean = load_series(write_series(tmp_path, name="clean").paths)
    series = write_series(tmp_path, name="mixed", datasets_hook=lambda ds: [
        *ds, localizer_from(ds[0], typed=typed), localizer_from(ds[0], typed=typed, index=1)])
    volume = load_series(series.paths)
    assert volume.verdict is GeometryVerdict.MIXED_LOCALIZER
    assert volume.warnings[0].startswith("Set aside 2 image(s)")
    assert volume.provenance["n_set_aside"] == 2
    np.testing.assert_array_equal(volume.array, clean.array)
    np.testing.assert_allclose(volume.affine, clean.affine)


def test_many_images_of_another_orientation_are_inconsistent(tmp_path: Path) -> None:
    series = write_series(tmp_path, datasets_hook=lambda ds: [
        *ds, *(localizer_from(ds[0], typed=False, index=i) for i in range(5))])
    with pytest.raises(GeometryError, match="mixes 2 slice orientations") as info:
        load_series(series.paths)
    assert info.value.verdict is GeometryVerdict.INCONSISTENT


def test_different_rows_across_slices_are_inconsistent(tmp_path: Path) -> None:
    def shrink_one(datasets: list) -> list:
        datasets[6] = resized(datasets[6], 32, datasets[6].Columns)
        return datasets

    with pytest.raises(GeometryError, match=r"differ in size \(Rows x Columns: 40x48: 15, "
                                            r"32x48: 1\)") as info:
        load_series(write_series(tmp_path, datasets_hook=shrink_one).paths)
    assert info.value.verdict is GeometryVerdict.INCONSISTENT


def test_single_slice_is_an_error(tmp_path: Path) -> None:
    series = write_series(tmp_path, SeriesRecipe(n_slices=1))
    with pytest.raises(DicomError, match="single 2D image, not a volume"):
        load_series(series.paths)


def test_images_typed_localizer_are_set_aside_whatever_their_number(tmp_path: Path) -> None:
    def add_scouts(datasets: list) -> list:
        scouts = [localizer_from(datasets[0], index=i) for i in range(5)]
        axial_scout = localizer_from(datasets[3], index=9)  # same plane as slice 3
        axial_scout.ImageOrientationPatient = datasets[3].ImageOrientationPatient
        axial_scout.ImagePositionPatient = datasets[3].ImagePositionPatient
        return [*datasets, *scouts, axial_scout]

    volume = load_series(write_series(tmp_path, datasets_hook=add_scouts).paths)
    assert volume.verdict is GeometryVerdict.MIXED_LOCALIZER
    assert volume.provenance["n_set_aside"] == 6 and volume.shape[2] == 16


def test_positions_far_off_the_normal_are_not_a_tilt(tmp_path: Path) -> None:
    recipe = SeriesRecipe(track=tuple(np.array([np.sin(np.deg2rad(50.0)), 0.0,
                                                np.cos(np.deg2rad(50.0))])))
    with pytest.raises(GeometryError, match="advance at 50.0 degrees") as info:
        load_series(write_series(tmp_path, recipe).paths)
    assert info.value.verdict is GeometryVerdict.INCONSISTENT


@pytest.mark.parametrize("values", [
    [4.0], [3.0, 1.0], [1.25, 1.25, 1.3], [2.0, 0.5, 1.5, 1.0], [1.0, np.nan, 2.0],
    [np.inf, 1.0], [-np.inf, np.inf], list(np.random.default_rng(0).normal(1.25, 0.1, 127)),
])
def test_median_of_equals_numpy_median(values: list[float]) -> None:
    got, want = geometry.median_of(np.array(values)), float(np.median(values))
    assert got == want or (np.isnan(got) and np.isnan(want))


def test_loading_a_series_does_not_import_numpy_ma(tmp_path: Path) -> None:
    # numpy.ma costs every loading process ~13 ms; np.median would import it.
    import subprocess
    import sys

    paths = [str(p) for p in write_series(tmp_path, SeriesRecipe(n_slices=6, rows=8, cols=8)).paths]
    code = ("import sys; from triage.dicom.volume.loader import load_series; "
            f"load_series({paths!r}); print('numpy.ma' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"
