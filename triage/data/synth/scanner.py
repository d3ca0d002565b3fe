"""Simulated acquisition: sample the phantom on a series grid and add the device's effects.

Order of operations, per series:
  1. slice profile: average the analytic phantom over the slice thickness (sub-planes);
  2. tissue texture from the patient-fixed `TextureField`;
  3. reconstruction kernel in-plane (Gaussian blur, or unsharp mask for sharp kernels);
  4. noise: white noise shaped by the same kernel, scaled to the device's noise level;
  5. HU calibration offset;
  6. rescale encoding: the result is clipped and quantized exactly as it will be stored,
     so the returned volume equals what a reader decodes from a lossless file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from triage.data.synth.devices import KernelKind, ReconKernel
from triage.data.synth.dicom_writer import PixelEncoding
from triage.data.synth.geometry import SeriesGeometry
from triage.data.synth.shapes import Ellipsoid, PlaneStack, render_planes
from triage.data.synth.texture import TextureField, texture_amplitude

_SUB_PLANE_MM = 1.25  # one phantom sample per this much slice thickness
_MAX_SUB_PLANES = 5
_NOISE_GRAIN_PX = 0.6
_TEXTURE_SAMPLE_MM = 3.0
_BLOCK_VOXELS = 1 << 20  # render this many voxels at a time


@dataclass(frozen=True)
class Acquisition:
    """Device effects applied to one series.

    Attributes:
        kernel: reconstruction kernel.
        noise_hu: noise standard deviation in the written image.
        hu_offset: added to every voxel (calibration error).
        encoding: stored-value encoding; defines clipping and quantization.
        texture_hu: tissue texture amplitude.
    """

    kernel: ReconKernel
    noise_hu: float
    hu_offset: float
    encoding: PixelEncoding
    texture_hu: float


def slice_profile_offsets(thickness_mm: float) -> np.ndarray:
    """Offsets along the normal of the phantom samples averaged into one slice."""
    n = int(min(_MAX_SUB_PLANES, max(1, round(thickness_mm / _SUB_PLANE_MM))))
    return ((np.arange(n) + 0.5) / n - 0.5) * thickness_mm


def sample_phantom(shapes: Sequence[Ellipsoid], geometry: SeriesGeometry,
                   texture: TextureField | None = None, texture_hu: float = 0.0,
                   ) -> np.ndarray:
    """Noise-free HU volume ``[slice, row, column]`` of `shapes` on `geometry`."""
    size = (geometry.rows, geometry.columns)
    offsets = slice_profile_offsets(geometry.slice_thickness)
    normal, step_c, step_r = geometry.normal, geometry.step_c, geometry.step_r
    volume = np.empty((geometry.n_slices, *size), dtype=np.float32)
    # The texture varies over millimetres: sample it on a coarser pixel grid and
    # interpolate bilinearly (exactly what trilinear lattice sampling does in between).
    stride = max(1, int(_TEXTURE_SAMPLE_MM // min(geometry.pixel_spacing)))
    r, c = _coarse_grid(geometry.rows, stride), _coarse_grid(geometry.columns, stride)
    block = max(1, _BLOCK_VOXELS // (geometry.rows * geometry.columns))
    for k0 in range(0, geometry.n_slices, block):
        origins = geometry.positions[k0:k0 + block]
        slab = np.zeros((len(origins), *size), dtype=np.float32)
        for off in offsets:
            slab += render_planes(shapes, PlaneStack(origins + off * normal, step_c, step_r),
                                  size)
        if len(offsets) > 1:
            slab /= np.float32(len(offsets))
        if texture is not None and texture_hu > 0:
            points = (origins[:, None, None, :] + c[None, None, :, None] * step_c
                      + r[None, :, None, None] * step_r)
            coarse = texture.sample(points)
            slab += texture_amplitude(slab, texture_hu) * _upsample(coarse, stride, size)
        volume[k0:k0 + len(origins)] = slab
    return volume


def _coarse_grid(n: int, stride: int) -> np.ndarray:
    """Pixel indices 0, stride, 2*stride, ... reaching at least n - 1."""
    return np.arange(0, n - 1 + stride, stride, dtype=np.float64)


def _upsample(coarse: np.ndarray, stride: int, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of (..., m, l) samples taken every `stride` pixels to `size`."""
    if stride == 1:
        return coarse[..., : size[0], : size[1]]
    out = coarse
    for axis, n in ((-2, size[0]), (-1, size[1])):
        fine = np.arange(n)
        low = fine // stride
        w = ((fine % stride) / stride).astype(np.float32)
        a = np.take(out, low, axis=axis)
        b = np.take(out, low + 1, axis=axis, mode="clip")
        shape = [1] * out.ndim
        shape[axis] = n
        w = w.reshape(shape)
        out = a + w * (b - a)
    return out


def apply_kernel(volume: np.ndarray, kernel: ReconKernel) -> np.ndarray:
    """The reconstruction kernel, in-plane only (axes 1 and 2)."""
    blurred = ndimage.gaussian_filter(volume, (0.0, kernel.sigma_px, kernel.sigma_px),
                                      mode="nearest")
    if kernel.kind is KernelKind.SMOOTH:
        return blurred
    return volume + np.float32(kernel.sharpen) * (volume - blurred)


def kernel_noise(rng: np.random.Generator, shape: tuple[int, ...], kernel: ReconKernel,
                 ) -> np.ndarray:
    """Unit-variance noise with the grain of `kernel` (sharp kernels: finer, edgier)."""
    white = rng.standard_normal(shape, dtype=np.float32)
    grain = ndimage.gaussian_filter(white, (0.0, _NOISE_GRAIN_PX, _NOISE_GRAIN_PX),
                                    mode="wrap")
    noise = apply_kernel(grain, kernel)
    return noise / np.float32(max(float(noise.std()), 1e-6))


def acquire(shapes: Sequence[Ellipsoid], geometry: SeriesGeometry, effects: Acquisition,
            texture: TextureField | None, rng: np.random.Generator) -> np.ndarray:
    """The HU volume ``[slice, row, column]`` exactly as the device stores it."""
    clean = sample_phantom(shapes, geometry, texture, effects.texture_hu)
    image = apply_kernel(clean, effects.kernel)
    if effects.noise_hu > 0:
        image += np.float32(effects.noise_hu) * kernel_noise(rng, image.shape, effects.kernel)
    image += np.float32(effects.hu_offset)
    encoding = effects.encoding
    return encoding.decode(encoding.encode(image))
