"""The abdominal CT phantom: a patient's body and organs as ellipsoids in LPS millimetres.

Anatomy is sampled once per patient (`sample_body`), so two studies of one patient show
the same organs; each study places it on the table (`Placement`). The liver sits on the
patient's right (negative x in LPS), the spleen on the left, the spine posterior. Because
shapes live in patient coordinates, a prone scan (HFP) shows the same anatomy, just with a
different image orientation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from triage.data.synth.shapes import Ellipsoid, rotation

INF = math.inf
AIR_HU = -1000.0


@dataclass(frozen=True)
class BodyParams:
    """Per-patient anatomy: body size, fat layer and tissue attenuation.

    Attributes:
        half_width, half_depth: body outline semi-axes (left-right, anterior-posterior), mm.
        fat_mm, muscle_mm: subcutaneous fat and abdominal wall thickness, mm.
        fat_hu, liver_hu, spleen_hu, kidney_hu, muscle_hu, aorta_hu: attenuation, HU.
        cortex_hu, marrow_hu: vertebral cortical and cancellous bone, HU.
        liver_scale: liver size factors along its three axes.
        liver_yaw_deg: liver rotation about z.
        bowel: per loop (dx, dy, dz, rx, ry, rz, hu) relative to the body centre.
    """

    half_width: float
    half_depth: float
    fat_mm: float
    muscle_mm: float
    fat_hu: float
    liver_hu: float
    spleen_hu: float
    kidney_hu: float
    muscle_hu: float
    aorta_hu: float
    cortex_hu: float
    marrow_hu: float
    liver_scale: tuple[float, float, float]
    liver_yaw_deg: float
    bowel: tuple[tuple[float, ...], ...]

    @property
    def cavity(self) -> tuple[float, float]:
        """Semi-axes of the abdominal cavity inside fat and muscle."""
        inset = 2.0 + self.fat_mm + self.muscle_mm
        return self.half_width - inset, self.half_depth - inset


@dataclass(frozen=True)
class Placement:
    """Where the patient lies in scanner coordinates for one study.

    Attributes:
        x0, y0: body centre in LPS mm.
        z0: z of the liver centre (table position), LPS mm.
        prone: lying face down; the table is then on the anterior side.
    """

    x0: float
    y0: float
    z0: float
    prone: bool = False


def sample_body(rng: np.random.Generator) -> BodyParams:
    """Draw one patient's anatomy."""
    u = rng.uniform
    bowel = tuple(
        (u(-0.5, 0.5), u(-0.75, -0.25), u(-110.0, -20.0), u(10.0, 20.0), u(8.0, 14.0),
         u(20.0, 40.0), u(10.0, 35.0))
        for _ in range(6)
    )
    return BodyParams(
        half_width=u(125.0, 150.0), half_depth=u(90.0, 115.0), fat_mm=u(8.0, 26.0),
        muscle_mm=u(6.0, 11.0), fat_hu=u(-110.0, -90.0), liver_hu=u(55.0, 65.0),
        spleen_hu=u(45.0, 52.0), kidney_hu=u(28.0, 35.0), muscle_hu=u(45.0, 55.0),
        aorta_hu=u(130.0, 180.0), cortex_hu=u(700.0, 1000.0), marrow_hu=u(200.0, 320.0),
        liver_scale=(u(0.9, 1.1), u(0.9, 1.1), u(0.9, 1.1)), liver_yaw_deg=u(-25.0, -10.0),
        bowel=bowel,
    )


def liver_shape(body: BodyParams, at: Placement) -> Ellipsoid:
    """The liver: right upper abdomen, ~55-65 HU."""
    ca, cb = body.cavity
    sx, sy, sz = body.liver_scale
    return Ellipsoid((at.x0 - 0.38 * ca, at.y0 - 0.05 * cb, at.z0),
                     (0.5 * ca * sx, 0.62 * cb * sy, 80.0 * sz), body.liver_hu,
                     rotation(body.liver_yaw_deg), name="liver")


def _wall(body: BodyParams, at: Placement) -> list[Ellipsoid]:
    a, b = body.half_width, body.half_depth
    center = (at.x0, at.y0, 0.0)
    table_y = at.y0 - b - 12.0 if at.prone else at.y0 + b + 12.0
    fat_a, fat_b = a - 2.0, b - 2.0
    mus_a, mus_b = fat_a - body.fat_mm, fat_b - body.fat_mm
    ca, cb = body.cavity
    return [
        Ellipsoid((at.x0, table_y, 0.0), (230.0, 5.0, INF), 120.0, name="table"),
        Ellipsoid(center, (a, b, INF), 25.0, name="skin"),
        Ellipsoid(center, (fat_a, fat_b, INF), body.fat_hu, name="subcutaneous-fat"),
        Ellipsoid(center, (mus_a, mus_b, INF), body.muscle_hu, name="abdominal-wall"),
        Ellipsoid(center, (ca, cb, INF), body.fat_hu + 10.0, name="visceral-fat"),
    ]


def _viscera(body: BodyParams, at: Placement) -> list[Ellipsoid]:
    ca, cb = body.cavity
    x0, y0, z0 = at.x0, at.y0, at.z0
    shapes = [
        Ellipsoid((x0 - 0.45 * ca, y0 + 0.1 * cb, z0 + 175.0), (0.42 * ca, 0.75 * cb, 120.0),
                  -850.0, name="right-lung"),
        Ellipsoid((x0 + 0.45 * ca, y0 + 0.1 * cb, z0 + 165.0), (0.42 * ca, 0.75 * cb, 120.0),
                  -850.0, name="left-lung"),
        Ellipsoid((x0 + 0.62 * ca, y0 + 0.3 * cb, z0 + 20.0), (0.17 * ca, 0.33 * cb, 50.0),
                  body.spleen_hu, rotation(30.0), name="spleen"),
        Ellipsoid((x0 + 0.28 * ca, y0 - 0.42 * cb, z0 + 10.0), (0.24 * ca, 0.3 * cb, 50.0),
                  25.0, rotation(-15.0), name="stomach"),
        Ellipsoid((x0 + 0.28 * ca, y0 - 0.62 * cb, z0 + 15.0), (0.12 * ca, 0.08 * cb, 20.0),
                  -950.0, name="stomach-gas"),
    ]
    for k, (dx, dy, dz, rx, ry, rz, hu) in enumerate(body.bowel):
        shapes.append(Ellipsoid((x0 + dx * ca, y0 + dy * cb, z0 + dz), (rx, ry, rz), hu,
                                rotation(40.0 * k), name=f"bowel-{k}"))
    return shapes


def _retroperitoneum(body: BodyParams, at: Placement) -> list[Ellipsoid]:
    ca, cb = body.cavity
    x0, y0, z0 = at.x0, at.y0, at.z0
    vb_y, vb_r = y0 + 0.55 * cb, 0.2 * cb
    canal_y = vb_y + vb_r + 8.0
    shapes = [
        Ellipsoid((x0 + 0.07 * ca, y0 + 0.28 * cb, 0.0), (10.0, 10.0, INF), body.aorta_hu,
                  name="aorta"),
        Ellipsoid((x0 - 0.14 * ca, y0 + 0.22 * cb, 0.0), (12.0, 8.0, INF),
                  body.aorta_hu - 40.0, name="ivc"),
        Ellipsoid((x0, vb_y, 0.0), (vb_r + 1.0, vb_r, INF), body.cortex_hu, name="vertebra"),
        Ellipsoid((x0, vb_y, 0.0), (vb_r - 2.0, vb_r - 3.0, INF), body.marrow_hu,
                  name="marrow"),
        Ellipsoid((x0, canal_y + 14.0, 0.0), (4.0, 12.0, INF), body.cortex_hu,
                  name="spinous-process"),
        Ellipsoid((x0, canal_y, 0.0), (10.0, 8.0, INF), body.cortex_hu - 200.0,
                  name="lamina"),
        Ellipsoid((x0, canal_y, 0.0), (7.0, 6.0, INF), 15.0, name="spinal-canal"),
    ]
    for side, dz in ((-1.0, -75.0), (1.0, -65.0)):
        shapes.append(Ellipsoid((x0 + side * 0.45 * ca, y0 + 0.5 * cb, z0 + dz),
                                (0.13 * ca, 0.2 * cb, 50.0), body.kidney_hu,
                                rotation(side * 25.0), name="kidney"))
    for side in (-1.0, 1.0):
        shapes.append(Ellipsoid((x0 + side * 0.3 * ca, canal_y + 8.0, 0.0),
                                (0.17 * ca, 0.18 * cb, INF), body.muscle_hu,
                                name="paraspinal-muscle"))
    return shapes


def _ribs(body: BodyParams, at: Placement) -> list[Ellipsoid]:
    """Rib cross sections just inside the wall, over the upper abdomen only."""
    a, b = body.half_width - 2.0 - body.fat_mm, body.half_depth - 2.0 - body.fat_mm
    ribs = []
    for k, angle in enumerate(np.linspace(-150.0, -30.0, 6)):
        if -115.0 < angle < -65.0:
            continue  # no ribs over the anterior midline
        t = math.radians(float(angle))
        for dz in (30.0, -5.0):
            center = (at.x0 + 0.93 * a * math.cos(t), at.y0 + 0.93 * b * math.sin(t),
                      at.z0 + dz + 6.0 * k)
            ribs.append(Ellipsoid(center, (6.0, 4.0, 9.0), body.cortex_hu - 150.0,
                                  rotation(float(angle)), name="rib"))
    return ribs


def body_shapes(body: BodyParams, at: Placement, findings: tuple[Ellipsoid, ...] = (),
                ) -> tuple[Ellipsoid, ...]:
    """All shapes of one study in painting order; `findings` are painted over the liver."""
    return tuple([*_wall(body, at), *_viscera(body, at), liver_shape(body, at), *findings,
                  *_retroperitoneum(body, at), *_ribs(body, at)])


def occluders(body: BodyParams, at: Placement) -> tuple[Ellipsoid, ...]:
    """Shapes painted after the liver: a lesion centre must lie outside all of them."""
    return tuple([*_retroperitoneum(body, at), *_ribs(body, at)])
