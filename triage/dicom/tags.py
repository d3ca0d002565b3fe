"""Every DICOM tag, VR and transfer syntax constant triage reads: defined here, once.

Tags are ints ``group << 16 | element`` (the form pydicom's ``Dataset.get_item`` and the
raw walk use). Modules import the names below; none defines its own copy.

Example:
    >>> hex(IMAGE_POSITION)
    '0x200032'
    >>> b"UV" in LONG_VRS and b"SV" in LONG_VRS
    True
"""

from __future__ import annotations

# --- File meta and identification -------------------------------------------------------
MEDIA_STORAGE_SOP_CLASS = 0x00020002
TRANSFER_SYNTAX = 0x00020010
SPECIFIC_CHARACTER_SET = 0x00080005
IMAGE_TYPE = 0x00080008
SOP_CLASS = 0x00080016
SOP_INSTANCE = 0x00080018
STUDY_DATE = 0x00080020
ACCESSION_NUMBER = 0x00080050
MODALITY = 0x00080060
MANUFACTURER = 0x00080070
STATION_NAME = 0x00081010
SERIES_DESCRIPTION = 0x0008103E
MODEL_NAME = 0x00081090
PATIENT_ID = 0x00100020
BODY_PART = 0x00180015
SLICE_THICKNESS = 0x00180050
GANTRY_TILT = 0x00181120
PATIENT_POSITION = 0x00185100
STUDY_UID = 0x0020000D
SERIES_UID = 0x0020000E
SERIES_NUMBER = 0x00200011
ACQUISITION_NUMBER = 0x00200012
INSTANCE_NUMBER = 0x00200013
IMAGE_POSITION = 0x00200032
IMAGE_ORIENTATION = 0x00200037
FRAME_OF_REFERENCE = 0x00200052

# --- Image pixel description and rescale --------------------------------------------------
SAMPLES_PER_PIXEL = 0x00280002
PHOTOMETRIC = 0x00280004
NUMBER_OF_FRAMES = 0x00280008
ROWS = 0x00280010
COLUMNS = 0x00280011
PIXEL_SPACING = 0x00280030
BITS_ALLOCATED = 0x00280100
BITS_STORED = 0x00280101
PIXEL_REPRESENTATION = 0x00280103
RESCALE_INTERCEPT = 0x00281052
RESCALE_SLOPE = 0x00281053
MODALITY_LUT_SEQUENCE = 0x00283000

# --- Enhanced multi-frame functional groups and RT Dose -----------------------------------
SHARED_FUNCTIONAL_GROUPS = 0x52009229
PER_FRAME_FUNCTIONAL_GROUPS = 0x52009230
FUNCTIONAL_GROUPS = frozenset({SHARED_FUNCTIONAL_GROUPS, PER_FRAME_FUNCTIONAL_GROUPS})
PLANE_POSITION_SEQUENCE = 0x00209113
PLANE_ORIENTATION_SEQUENCE = 0x00209116
PIXEL_MEASURES_SEQUENCE = 0x00289110
PIXEL_VALUE_TRANSFORMATION_SEQUENCE = 0x00289145
GRID_FRAME_OFFSET_VECTOR = 0x3004000C
DOSE_GRID_SCALING = 0x3004000E

# --- Pixel data and encapsulation ----------------------------------------------------------
PIXEL_DATA = 0x7FE00010
FLOAT_PIXEL_DATA = 0x7FE00008
DOUBLE_FLOAT_PIXEL_DATA = 0x7FE00009
PIXEL_TAGS = frozenset({PIXEL_DATA, FLOAT_PIXEL_DATA, DOUBLE_FLOAT_PIXEL_DATA})
ITEM = 0xFFFEE000
ITEM_END = 0xFFFEE00D
SEQUENCE_END = 0xFFFEE0DD
UNDEFINED = 0xFFFFFFFF

# --- Value representations ------------------------------------------------------------------
#: Every VR of PS3.5 table 6.2-1, as the two bytes an explicit-VR element carries.
VRS = frozenset(vr.encode() for vr in (
    "AE AS AT CS DA DS DT FL FD IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL "
    "UN UR US UT UV").split())
#: VRs with two reserved bytes and a 4-byte length in explicit VR (PS3.5 7.1.2).
LONG_VRS = frozenset(vr.encode() for vr in "OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
#: VRs a pixel data element may carry.
PIXEL_VRS = frozenset({b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN"})

# --- Transfer syntaxes and SOP classes ------------------------------------------------------
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
NATIVE_SYNTAXES = frozenset({EXPLICIT_VR_LE, IMPLICIT_VR_LE})
JPEG2000_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"})
RLE_SYNTAX = "1.2.840.10008.1.2.5"
#: JPEG-LS Lossless and Near-Lossless.
JPEGLS_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"})
#: Little-endian encapsulated syntaxes (the data set is Explicit VR Little Endian): JPEG
#: baseline/extended/lossless, JPEG-LS, JPEG 2000, HTJ2K, RLE. Others go through pydicom.
ENCAPSULATED_SYNTAXES = frozenset(
    [f"1.2.840.10008.1.2.4.{n}" for n in (50, 51, 57, 70, 80, 81, 90, 91, 201, 202, 203)]
    + [RLE_SYNTAX])
#: `pydicom.uid.UID(uid).name` of every syntax read without pydicom (native, RLE, JPEG 2000,
#: JPEG-LS: `triage.dicom.pixels.codecs`), so that naming them in a volume's provenance imports no
#: pydicom (~0.2 s per worker process); a test checks them against pydicom.
SYNTAX_NAMES = {
    IMPLICIT_VR_LE: "Implicit VR Little Endian",
    EXPLICIT_VR_LE: "Explicit VR Little Endian",
    RLE_SYNTAX: "RLE Lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 Image Compression (Lossless Only)",
    "1.2.840.10008.1.2.4.91": "JPEG 2000 Image Compression",
    "1.2.840.10008.1.2.4.80": "JPEG-LS Lossless Image Compression",
    "1.2.840.10008.1.2.4.81": "JPEG-LS Lossy (Near-Lossless) Image Compression",
}
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"

# --- What each reader keeps from the raw walk ------------------------------------------------
#: Text values decoded with the character set on the pydicom path: ASCII only on the fast one.
TEXT_TAGS = (MANUFACTURER, MODEL_NAME, STATION_NAME, SERIES_DESCRIPTION, PATIENT_ID,
             ACCESSION_NUMBER)
#: Top-level tags the loader reads (`triage.dicom.pixels.slice_header`).
LOADER_TAGS = frozenset({
    IMAGE_TYPE, SOP_CLASS, SOP_INSTANCE, MODALITY, MANUFACTURER, MODEL_NAME, SLICE_THICKNESS,
    GANTRY_TILT, PATIENT_POSITION, STUDY_UID, SERIES_UID, INSTANCE_NUMBER, IMAGE_POSITION,
    IMAGE_ORIENTATION, SAMPLES_PER_PIXEL, PHOTOMETRIC, NUMBER_OF_FRAMES, ROWS, COLUMNS,
    PIXEL_SPACING, BITS_ALLOCATED, BITS_STORED, PIXEL_REPRESENTATION, RESCALE_INTERCEPT,
    RESCALE_SLOPE, MODALITY_LUT_SEQUENCE, *FUNCTIONAL_GROUPS,
})
#: Top-level tags the scan's record reads (`triage.dicom.scan.record`).
SCAN_TAGS = frozenset({
    SPECIFIC_CHARACTER_SET, *TEXT_TAGS, *FUNCTIONAL_GROUPS, IMAGE_TYPE, SOP_CLASS,
    SOP_INSTANCE, STUDY_DATE, MODALITY, BODY_PART, SLICE_THICKNESS, STUDY_UID, SERIES_UID,
    SERIES_NUMBER, ACQUISITION_NUMBER, INSTANCE_NUMBER, IMAGE_POSITION, IMAGE_ORIENTATION,
    FRAME_OF_REFERENCE, SAMPLES_PER_PIXEL, PHOTOMETRIC, NUMBER_OF_FRAMES, ROWS, COLUMNS,
    PIXEL_SPACING, BITS_ALLOCATED,
})
#: Top-level tags the scan's raw walk keeps: its own, and the loader's, which it hands to
#: the loader in the record (`triage.dicom.fast_reader.WalkedHeader`).
WALKED_TAGS = SCAN_TAGS | LOADER_TAGS
