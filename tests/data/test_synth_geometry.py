"""Ground-truth geometry of synthetic series: orientation, positions, anatomy and lesions."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from triage.data.synth.cohort import plan_cohort
from triage.data.synth.config import SynthConfig
from triage.data.synth.devices import get_device
from triage.data.synth.findings import lesion_mask
from triage.data.synth.geometry import axial_geometry
from triage.data.synth.phantom import liver_shape
from triage.data.synth.study import build_study

CLEAN = {"noise_scale": 0.0, "texture_hu": 0.0, "extras": False, "thick_fraction": 0.0}


def _first_study(device, **overrides):
    settings = {"studies": 1, "seed": 2, "slices": 8, "matrix": 64, **CLEAN, **overrides}
    config = SynthConfig(devices=(device,), **settings)
    return build_study(config, plan_cohort(config)[0])


def test_pixel_to_lps_follows_dicom_convention():
    g = axial_geometry(center=(0, 0, -100), fov_mm=(320.0, 360.0), matrix=64, n_slices=3,
                       spacing_mm=2.0, thickness_mm=2.0)
    assert g.pixel_spacing == (5.0, 5.625)
    # Column index moves along row_dir by the column spacing (PixelSpacing[1]).
    np.testing.assert_allclose(g.pixel_to_lps(0, 0, 1) - g.pixel_to_lps(0, 0, 0),
                               [5.625, 0, 0])
    np.testing.assert_allclose(g.pixel_to_lps(0, 1, 0) - g.pixel_to_lps(0, 0, 0), [0, 5.0, 0])
    np.testing.assert_allclose(g.positions[:, 2], [-98, -100, -102])  # head to feet
    k, r, c = g.nearest_voxel(g.pixel_to_lps(2, 10, 20))
    assert (k, round(r, 6), round(c, 6)) == (2, 10, 20)


def test_prone_flips_orientation_and_keeps_anatomy_right_in_lps():
    acme = get_device("acme")
    supine = _first_study(dataclasses.replace(acme, prone_fraction=0.0))
    prone = _first_study(dataclasses.replace(acme, prone_fraction=1.0))
    assert supine.primary.geometry.orientation == (1, 0, 0, 0, 1, 0)
    assert prone.primary.geometry.orientation == (-1, 0, 0, 0, -1, 0)
    for study in (supine, prone):
        geometry, hu = study.primary.geometry, study.primary.hu
        liver = liver_shape(study.body, study.placement)
        mid = geometry.n_slices // 2
        z = float(geometry.positions[mid, 2])
        liver_point = (liver.center[0], liver.center[1], z)
        mirrored = (2 * study.placement.x0 - liver.center[0], liver.center[1], z)
        k, r, c = geometry.nearest_voxel(liver_point)
        assert abs(hu[k, round(r), round(c)] - study.body.liver_hu) < 10
        k, r, c = geometry.nearest_voxel(mirrored)
        assert abs(hu[k, round(r), round(c)] - study.body.liver_hu) > 10
        # The liver is on the patient's right: negative x in LPS.
        assert liver.center[0] < study.placement.x0
    # Prone images are the supine ones turned by 180 degrees (same anatomy, same table z).
    assert prone.primary.hu.shape == supine.primary.hu.shape


def test_gantry_tilt_shears_the_stack():
    ember = dataclasses.replace(get_device("ember"), tilt_fraction=1.0)
    study = _first_study(ember)
    g = study.primary.geometry
    t = math.radians(ember.gantry_tilt_deg)
    np.testing.assert_allclose(g.col_dir, [0, math.cos(t), -math.sin(t)], atol=1e-6)
    assert np.ptp(g.positions[:, 0]) == 0 and np.ptp(g.positions[:, 1]) == 0
    assert study.primary.tilt_deg == ember.gantry_tilt_deg


def test_dropped_slices_make_irregular_spacing():
    delta = dataclasses.replace(get_device("deltaform"), gap_fraction=1.0)
    study = _first_study(delta)
    g, dropped = study.primary.geometry, study.primary.dropped
    assert 1 <= len(dropped) <= 2 and g.n_slices == 8
    steps = np.round(np.abs(np.diff(g.positions @ g.normal)), 3)
    assert set(steps) >= {delta.slice_spacing_mm, 2 * delta.slice_spacing_mm}


def test_instance_order_and_stack_direction():
    borealis = _first_study(get_device("borealis")).primary
    assert borealis.instance_numbers == tuple(range(8, 0, -1))
    assert list(borealis.files) != sorted(borealis.files)
    cygnus = _first_study(get_device("cygnus")).primary
    assert np.all(np.diff(cygnus.geometry.positions[:, 2]) > 0)  # feet first
    assert cygnus.instance_numbers == tuple(range(1, 9))


def test_lesions_are_dark_spots_inside_the_liver():
    acme = get_device("acme")
    study = _first_study(acme, prevalence=1.0, slices=24, matrix=128, max_lesions=2)
    assert study.label == 1 and 1 <= len(study.lesions) <= 2
    liver = liver_shape(study.body, study.placement)
    geometry, hu = study.primary.geometry, study.primary.hu
    for lesion in study.lesions:
        assert liver.q(np.asarray(lesion.center)) < 0.6
        assert 6.0 <= lesion.diameter_mm <= 15.0
        assert -30.0 <= lesion.contrast_hu <= -20.0
        assert lesion_mask(geometry, [lesion]).any()
        k, r, c = geometry.nearest_voxel(lesion.center)
        centre = hu[k, round(r), round(c)]
        assert centre < study.body.liver_hu + acme.hu_offset + 0.5 * lesion.contrast_hu


def test_negative_studies_have_no_lesions():
    study = _first_study(get_device("acme"), prevalence=0.0)
    assert study.label == 0 and study.lesions == ()


@pytest.mark.parametrize("name", ["acme", "cygnus"])
def test_hu_offset_shifts_the_liver(name):
    device = get_device(name)
    study = _first_study(dataclasses.replace(device, prone_fraction=0.0))
    liver = liver_shape(study.body, study.placement)
    g = study.primary.geometry
    k, r, c = g.nearest_voxel((liver.center[0], liver.center[1], float(g.positions[4, 2])))
    observed = study.primary.hu[k, round(r), round(c)]
    assert abs(observed - (study.body.liver_hu + device.hu_offset)) < 8
