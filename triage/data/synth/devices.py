"""Fictional CT scanner profiles: how each device group renders, encodes and names a series.

Every profile differs from the others the way real scanner models do (field of view and
thus pixel spacing, slice thickness and spacing, matrix, noise, reconstruction kernel, HU
calibration, rescale encoding, transfer syntax, patient position, slice order, file
naming, gantry tilt, dropped slices). The registry is a plain dict keyed by profile name;
`get_device` rejects unknown names with the valid choices. Custom profiles for tests are
made with ``dataclasses.replace(get_device("acme"), gantry_tilt_deg=15.0, tilt_fraction=1.0)``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from enum import StrEnum

from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from triage.data.synth.dicom_writer import EquipmentHeader, PixelEncoding
from triage.dicom.device import device_group
from triage.errors import ConfigError

MIN_MATRIX = 32  # JPEG 2000 encoders fail below ~32 px; keep every device at or above it.


class KernelKind(StrEnum):
    """Reconstruction kernel family: smooth blurs, sharp enhances edges (and noise)."""

    SMOOTH = "smooth"
    SHARP = "sharp"


class FileNaming(StrEnum):
    """How a device names the slice files of a series in its export."""

    INSTANCE = "instance"  # IM000001 ... by InstanceNumber, no extension
    INSTANCE_DCM = "instance-dcm"  # IM000001.dcm ... by InstanceNumber
    SHUFFLED = "shuffled"  # IM000001.dcm ... assigned in random order
    UID = "uid"  # <SOPInstanceUID>.dcm


@dataclass(frozen=True)
class ReconKernel:
    """A reconstruction kernel as written to ConvolutionKernel and applied in-plane.

    Attributes:
        name: the ConvolutionKernel value.
        kind: smooth (Gaussian blur of width `sigma_px`) or sharp (unsharp mask).
        sigma_px: Gaussian width in pixels.
        sharpen: unsharp-mask amount for sharp kernels (0 for smooth ones).
    """

    name: str
    kind: KernelKind
    sigma_px: float
    sharpen: float = 0.0


@dataclass(frozen=True)
class DeviceProfile:
    """One fictional scanner model and its reconstruction/export habits.

    Attributes:
        name: registry key used by ``--devices``.
        manufacturer, model_name, station_name: the identity tags (device group).
        fov_mm: reconstructed field of view (extent down the columns, extent along the
            rows) in mm; PixelSpacing is ``(fov_mm[0] / rows, fov_mm[1] / columns)``.
        matrix_scale: matrix relative to the requested ``--matrix``.
        slice_thickness_mm, slice_spacing_mm: of the thin reconstruction.
        kernel: reconstruction kernel.
        noise_hu: standard deviation of the image noise of the thin series, in HU.
        hu_offset: calibration offset added to every HU value.
        encoding: RescaleSlope/Intercept, signedness and BitsStored.
        transfer_syntax: written transfer syntax UID.
        prone_fraction: share of studies scanned prone (HFP).
        tilt_fraction, gantry_tilt_deg: share of studies with a tilted gantry, and the tilt.
        gap_fraction: share of studies with one or two dropped slices (irregular spacing).
            The three shares are applied with a low-discrepancy rule over the device's
            studies (`triage.data.synth.study.occurs`): its first study always has the
            quirk, so tiny exports exercise it.
        feet_first_order: slices acquired from feet to head (positions ascending in z).
        reversed_instances: InstanceNumber runs opposite to the acquisition order.
        naming: file naming scheme.
        write_spacing_between_slices: whether SpacingBetweenSlices is written.
        kvp: tube voltage written to KVP.
        protocol: first word of SeriesDescription.
        software_versions: SoftwareVersions.
    """

    name: str
    manufacturer: str
    model_name: str
    station_name: str
    fov_mm: tuple[float, float]
    matrix_scale: float
    slice_thickness_mm: float
    slice_spacing_mm: float
    kernel: ReconKernel
    noise_hu: float
    hu_offset: float
    encoding: PixelEncoding
    transfer_syntax: str
    prone_fraction: float = 0.0
    tilt_fraction: float = 0.0
    gantry_tilt_deg: float = 0.0
    gap_fraction: float = 0.0
    feet_first_order: bool = False
    reversed_instances: bool = False
    naming: FileNaming = FileNaming.INSTANCE
    write_spacing_between_slices: bool = True
    kvp: float = 120.0
    protocol: str = "ABDOMEN"
    software_versions: str = "1.0"

    def __post_init__(self) -> None:
        for field_name in ("prone_fraction", "tilt_fraction", "gap_fraction"):
            value = getattr(self, field_name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(
                    f"DeviceProfile '{self.name}': {field_name} must be within [0, 1], "
                    f"got {value}."
                )
        if self.slice_spacing_mm <= 0 or self.slice_thickness_mm <= 0:
            raise ConfigError(
                f"DeviceProfile '{self.name}': slice thickness and spacing must be positive, "
                f"got {self.slice_thickness_mm} and {self.slice_spacing_mm}."
            )
        if min(self.fov_mm) <= 0 or self.matrix_scale <= 0:
            raise ConfigError(f"DeviceProfile '{self.name}': fov_mm and matrix_scale must be "
                              f"positive, got {self.fov_mm} and {self.matrix_scale}.")

    @property
    def device_group(self) -> str:
        """The manifest device group, as `triage.dicom.device.device_group` derives it."""
        return device_group(self.manufacturer, self.model_name)

    @property
    def equipment(self) -> EquipmentHeader:
        """The equipment header written to every file of this device."""
        return EquipmentHeader(
            manufacturer=self.manufacturer,
            model_name=self.model_name,
            station_name=self.station_name,
            software_versions=self.software_versions,
            device_serial_number=f"SN-{self.name.upper()}-0001",
        )

    def matrix(self, requested: int) -> int:
        """Rows/columns of this device for a requested base matrix (multiple of 4, >= 32)."""
        return max(MIN_MATRIX, int(round(requested * self.matrix_scale / 4.0)) * 4)

    def series_description(self, thickness_mm: float) -> str:
        """SeriesDescription of an axial reconstruction of the given thickness."""
        return f"{self.protocol} {thickness_mm:g}mm {self.kernel.name}"


DEVICE_PROFILES: dict[str, DeviceProfile] = {}


def register_device(profile: DeviceProfile) -> DeviceProfile:
    """Add `profile` to `DEVICE_PROFILES`; names and device groups must be unique.

    Raises:
        ConfigError: if the name or the device group is already registered.
    """
    if profile.name in DEVICE_PROFILES:
        raise ConfigError(f"Device profile '{profile.name}' is already registered.")
    groups = {p.device_group: p.name for p in DEVICE_PROFILES.values()}
    if profile.device_group in groups:
        raise ConfigError(f"Device profile '{profile.name}' has device group "
                          f"'{profile.device_group}', already used by "
                          f"'{groups[profile.device_group]}'.")
    DEVICE_PROFILES[profile.name] = profile
    return profile


def device_names() -> tuple[str, ...]:
    """Registered profile names, in registration order."""
    return tuple(DEVICE_PROFILES)


def get_device(name: str) -> DeviceProfile:
    """The registered profile called `name`.

    Raises:
        ConfigError: (a ValueError) naming the valid profiles and the closest match.

    Example:
        >>> get_device("acme").device_group
        'acme-tomography-voxa-64'
    """
    key = name.strip().lower()
    if key in DEVICE_PROFILES:
        return DEVICE_PROFILES[key]
    close = difflib.get_close_matches(key, DEVICE_PROFILES, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise ConfigError(f"Unknown device profile '{name}'.{hint} "
                      f"Valid devices: {', '.join(DEVICE_PROFILES)}.")


register_device(DeviceProfile(
    name="acme", manufacturer="Acme Tomography", model_name="Voxa 64",
    station_name="ACME-CT-01", fov_mm=(350.0, 350.0), matrix_scale=1.0,
    slice_thickness_mm=1.25, slice_spacing_mm=1.25,
    kernel=ReconKernel("STANDARD", KernelKind.SMOOTH, sigma_px=0.7),
    noise_hu=12.0, hu_offset=0.0,
    encoding=PixelEncoding(slope=1.0, intercept=-1024.0, signed=False, bits_stored=12),
    transfer_syntax=ExplicitVRLittleEndian, naming=FileNaming.INSTANCE,
    software_versions="VX 4.2",
))
register_device(DeviceProfile(
    name="borealis", manufacturer="Borealis Imaging", model_name="Aurora 128",
    station_name="BOREALIS_CT2", fov_mm=(380.0, 380.0), matrix_scale=1.0,
    slice_thickness_mm=1.0, slice_spacing_mm=0.8,
    kernel=ReconKernel("FC08", KernelKind.SMOOTH, sigma_px=1.1),
    noise_hu=9.0, hu_offset=-6.0,
    encoding=PixelEncoding(slope=1.0, intercept=0.0, signed=True, bits_stored=16),
    transfer_syntax=RLELossless, prone_fraction=0.35, reversed_instances=True,
    naming=FileNaming.SHUFFLED, write_spacing_between_slices=False,
    software_versions="AUR 2.1",
))
# The most shifted device: strong HU offset, sharp kernel, high noise, coarser matrix.
register_device(DeviceProfile(
    name="cygnus", manufacturer="Cygnus Medical Systems", model_name="Helix 16",
    station_name="CYGNUS01", fov_mm=(320.0, 320.0), matrix_scale=0.75,
    slice_thickness_mm=2.0, slice_spacing_mm=2.0,
    kernel=ReconKernel("B70f", KernelKind.SHARP, sigma_px=1.0, sharpen=1.2),
    noise_hu=28.0, hu_offset=35.0,
    encoding=PixelEncoding(slope=0.5, intercept=-1024.0, signed=False, bits_stored=16),
    transfer_syntax=JPEG2000Lossless, feet_first_order=True, naming=FileNaming.UID,
    kvp=130.0, software_versions="syngo-like CT 2009E",
))
register_device(DeviceProfile(
    name="deltaform", manufacturer="Deltaform Diagnostics", model_name="Meridian CT",
    station_name="DFD-MER-3", fov_mm=(330.0, 360.0), matrix_scale=1.0,
    slice_thickness_mm=3.0, slice_spacing_mm=2.5,
    kernel=ReconKernel("SOFT", KernelKind.SMOOTH, sigma_px=0.9),
    noise_hu=10.0, hu_offset=4.0,
    encoding=PixelEncoding(slope=1.0, intercept=-1024.0, signed=False, bits_stored=12),
    transfer_syntax=JPEGLSLossless, gap_fraction=0.3, naming=FileNaming.INSTANCE_DCM,
    software_versions="MER 7.0.1",
))
register_device(DeviceProfile(
    name="ember", manufacturer="Ember Scientific", model_name="Lumen S",
    station_name="EMBER-LUMEN", fov_mm=(360.0, 360.0), matrix_scale=1.0,
    slice_thickness_mm=1.5, slice_spacing_mm=1.5,
    kernel=ReconKernel("YC", KernelKind.SHARP, sigma_px=1.0, sharpen=0.5),
    noise_hu=16.0, hu_offset=8.0,
    encoding=PixelEncoding(slope=1.0, intercept=-1024.0, signed=True, bits_stored=16),
    transfer_syntax=ImplicitVRLittleEndian, tilt_fraction=0.5, gantry_tilt_deg=12.0,
    naming=FileNaming.INSTANCE, kvp=100.0, software_versions="LUMEN 3.3",
))
