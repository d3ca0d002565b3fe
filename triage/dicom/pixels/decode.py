"""Pixel decoding: stored values per frame, decoder availability, and the rescale to HU.

Native little-endian pixel data is viewed with `np.frombuffer` (no copy) and corrected
for unused high bits exactly as pydicom does (shift left, then arithmetic or logical
shift right, which sign-extends signed values and masks unsigned ones). Single greyscale
JPEG 2000 and RLE frames go straight to their plugin (`triage.dicom.pixels.codecs`); everything
else - other compressed syntaxes, big endian, 1-bit, float pixel data - goes through
pydicom's decoder plugins (pydicom is imported only then). Encapsulated data is decoded
by the first of `BACKENDS` (an ordered table, as pydicom's own decoder backends) that
accepts it.

Decoding compressed frames in a thread pool was measured and rejected: on this machine
two threads were 10-25 % slower than one for JPEG 2000 and JPEG-LS (256^2 and 512^2
frames), because the plugins hold the GIL; parallelism belongs at the series level
(one process per series).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from triage.dicom.pixels import codecs
from triage.dicom.pixels.slice_header import ImageInfo
from triage.dicom.pydicom_notes import redact
from triage.dicom.tags import JPEG2000_SYNTAXES, NATIVE_SYNTAXES, RLE_SYNTAX, SYNTAX_NAMES
from triage.errors import DicomError, UnsupportedTransferSyntaxError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

_NATIVE_DTYPES = {(8, False): np.uint8, (8, True): np.int8, (16, False): np.uint16,
                  (16, True): np.int16, (32, False): np.uint32, (32, True): np.int32}

#: What to install for each pydicom decoder backend that may be missing.
_INSTALL_HINTS = {
    "pylibjpeg": "pylibjpeg with pylibjpeg-libjpeg, pylibjpeg-openjpeg or pylibjpeg-rle",
    "gdcm": "python-gdcm",
    "pyjpegls": "pyjpegls",
    "pillow": "pillow (with its JPEG / JPEG 2000 support)",
}


def syntax_name(transfer_syntax: str) -> str:
    """The transfer syntax's name as pydicom gives it (the UID itself when unknown)."""
    if transfer_syntax in SYNTAX_NAMES:
        return SYNTAX_NAMES[transfer_syntax]
    from pydicom.uid import UID

    return UID(transfer_syntax).name


def ensure_decodable(transfer_syntax: str, path: Path) -> None:
    """Check that an installed plugin can decode `transfer_syntax`.

    Native syntaxes need none; JPEG 2000 and RLE pass when the plugin that
    `triage.dicom.pixels.codecs` calls directly is installed (a frame it declines is checked
    again against pydicom's decoders before pydicom decodes it).

    Args:
        transfer_syntax: the TransferSyntaxUID of a file.
        path: the file, named in the error.

    Raises:
        UnsupportedTransferSyntaxError: naming the syntax, the file and what to install,
            or that no Python decoder exists and the series must be converted first.
    """
    if transfer_syntax in NATIVE_SYNTAXES or any(
            b.applies(transfer_syntax) for b in BACKENDS if b.name != "pydicom"):
        return
    ensure_pydicom_decodable(transfer_syntax, path)


def ensure_pydicom_decodable(transfer_syntax: str, path: Path) -> None:
    """Check that one of pydicom's decoder plugins can decode `transfer_syntax`.

    Raises:
        UnsupportedTransferSyntaxError: as `ensure_decodable`.
    """
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID

    uid = UID(transfer_syntax)
    if uid in NATIVE_SYNTAXES:
        return
    label = f"{uid.name} ({uid})" if uid.is_valid and uid.name != str(uid) else repr(str(uid))
    convert = ("Convert the series to an uncompressed syntax first, e.g. "
               "`gdcmconv --raw` or `dcmdjpeg`, or re-export it from the PACS uncompressed.")
    if not uid.is_transfer_syntax:
        raise UnsupportedTransferSyntaxError(
            f"Transfer syntax {label} is not a transfer syntax pydicom knows, so its pixel "
            f"data cannot be decoded. {convert}", path)
    try:
        decoder = get_decoder(uid)
    except NotImplementedError as err:
        raise UnsupportedTransferSyntaxError(
            f"Pixel data is encoded as {label}, for which pydicom has no decoder in any "
            f"plugin. {convert}", path) from err
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "a decoder plugin"
        hints = sorted({hint for key, hint in _INSTALL_HINTS.items() if key in missing})
        wanted = " or ".join(hints) if hints else "a pydicom decoder plugin"
        raise UnsupportedTransferSyntaxError(
            f"Pixel data is encoded as {label} and no installed plugin can decode it "
            f"(missing: {missing}). Install {wanted}, or convert the series to an "
            "uncompressed syntax.", path)


def native_stored(buffer: bytes, offset: int, length: int, info: ImageInfo) -> np.ndarray | None:
    """Stored values of native LE pixel data as (frames, rows, columns), or None.

    Returns None when the layout is outside the fast path (not 8/16/32-bit greyscale).

    Raises:
        DicomError: when the pixel data is shorter than Rows x Columns x frames.
    """
    dtype = _NATIVE_DTYPES.get((info.bits_allocated or 0, info.signed))
    if dtype is None or info.samples_per_pixel != 1 or not info.rows or not info.columns:
        return None
    count = info.n_frames * info.rows * info.columns
    if length < count * np.dtype(dtype).itemsize:
        raise DicomError(
            f"PixelData holds {length} bytes, fewer than the {count * np.dtype(dtype).itemsize}"
            f" that {info.n_frames} frame(s) of {info.rows}x{info.columns} at "
            f"{info.bits_allocated} bits need. The file is truncated; re-export it.",
            info.path)
    arr = np.frombuffer(buffer, dtype=dtype, count=count, offset=offset)
    arr = arr.reshape(info.n_frames, info.rows, info.columns)
    return _correct_unused_bits(arr, info)


@dataclass(frozen=True)
class Backend:
    """One way to decode encapsulated pixel data; `BACKENDS` are tried in order.

    Attributes:
        name: shown in provenance and errors.
        syntaxes: the transfer syntaxes it may decode; None for any.
        is_available: whether its plugin is installed, for a syntax.
        decode: (file bytes, offset of the items, pixel description) -> stored values
            (frames, rows, columns), or None to decline the file (the next backend
            tries); raises on data the plugin cannot decode.
    """

    name: str
    syntaxes: frozenset[str] | None
    is_available: Callable[[str], bool]
    decode: Callable[[bytes, int, ImageInfo], np.ndarray | None]

    def applies(self, transfer_syntax: str) -> bool:
        """The backend handles `transfer_syntax` and its plugin is installed."""
        return ((self.syntaxes is None or transfer_syntax in self.syntaxes)
                and self.is_available(transfer_syntax))


def _direct(buffer: bytes, offset: int, info: ImageInfo) -> np.ndarray | None:
    frame = codecs.decode_single_frame(buffer, offset, info)
    return None if frame is None else frame[np.newaxis]


def _pydicom_available(transfer_syntax: str) -> bool:
    return True  # `ensure_pydicom_decodable` raises with what to install when not


def _pydicom(buffer: bytes, offset: int, info: ImageInfo) -> np.ndarray:
    ensure_pydicom_decodable(info.transfer_syntax, info.path)
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID

    _check_j2k_frames(buffer[offset:], info)

    options: dict[str, Any] = dict(
        rows=info.rows, columns=info.columns, samples_per_pixel=info.samples_per_pixel,
        bits_allocated=info.bits_allocated, bits_stored=info.bits_stored,
        pixel_representation=int(info.signed),
        photometric_interpretation=info.photometric or "MONOCHROME2",
        number_of_frames=info.n_frames)
    decoded = get_decoder(UID(info.transfer_syntax)).as_array(buffer[offset:], **options)
    arr = decoded[0] if isinstance(decoded, tuple) else decoded
    return arr[np.newaxis] if arr.ndim == 2 else arr


def _check_j2k_frames(encapsulated: bytes, info: ImageInfo) -> None:
    """`codecs.check_j2k_size` on every frame of JPEG 2000 data before pydicom decodes it."""
    if info.transfer_syntax in JPEG2000_SYNTAXES:
        from pydicom.encaps import generate_frames

        for frame in generate_frames(encapsulated, number_of_frames=info.n_frames):
            codecs.check_j2k_size(frame, info)


#: Decoders of encapsulated pixel data, in the order they are tried: the plugins called
#: directly for one greyscale frame (`triage.dicom.pixels.codecs`), then pydicom's decoders.
BACKENDS: tuple[Backend, ...] = (
    Backend("openjpeg", JPEG2000_SYNTAXES, codecs.direct_available, _direct),
    Backend("pylibjpeg-rle", frozenset({RLE_SYNTAX}), codecs.direct_available, _direct),
    Backend("charls", codecs.JPEGLS_SYNTAXES, codecs.direct_available, _direct),
    Backend("pydicom", None, _pydicom_available, _pydicom),
)


def encapsulated_stored(buffer: bytes, offset: int, info: ImageInfo) -> np.ndarray:
    """Decode the frames of encapsulated pixel data starting at `offset`.

    The pixel description comes from `info`, so no pydicom data set is needed. Each of
    `BACKENDS` that handles the syntax is tried in turn until one accepts the file.

    Raises:
        UnsupportedTransferSyntaxError: when no plugin can decode the syntax.
        DicomError: when decoding fails.
    """
    for backend in BACKENDS:
        if not backend.applies(info.transfer_syntax):
            continue
        try:
            arr = backend.decode(buffer, offset, info)
        except UnsupportedTransferSyntaxError:
            raise
        except BaseException as err:  # see `_decode_failed`
            raise _decode_failed(info, err) from err
        if arr is not None:
            return arr
    ensure_pydicom_decodable(info.transfer_syntax, info.path)
    raise DicomError(f"No decoder accepted the {syntax_name(info.transfer_syntax)} pixel "
                     "data.", info.path)


def _decode_failed(info: ImageInfo, err: BaseException) -> DicomError:
    """The file's error for a plugin that failed on its data; re-raises interrupts.

    The plugins raise RuntimeError, ValueError and others; pylibjpeg-rle's Rust decoder
    panics on some corrupt segments, which pyo3 raises as ``PanicException``, a
    `BaseException`: caught here too, or one corrupt file would stop the batch. The
    plugin's text is put on one line (pydicom joins the messages of several plugins with
    newlines), with quoted values and object addresses (``<_io.BytesIO object at 0x…>``,
    different on every run) removed.
    """
    if isinstance(err, KeyboardInterrupt | SystemExit | GeneratorExit):
        raise err
    return DicomError(
        f"Decoding the {syntax_name(info.transfer_syntax)} pixel data failed "
        f"({type(err).__name__}: {redact(str(err))}). The file may be corrupt or "
        "truncated.", info.path)


def _correct_unused_bits(arr: np.ndarray, info: ImageInfo) -> np.ndarray:
    """Ignore bits above BitsStored: sign-extend signed values, mask unsigned ones."""
    bits_stored = info.bits_stored or 0
    shift = (info.bits_allocated or 0) - bits_stored
    if shift <= 0 or bits_stored <= 0 or arr.size == 0:
        return arr
    # In well-formed files the unused bits already agree with the value, and the shift
    # is the identity; a range check (one or two reductions) is cheaper than the shifts.
    if info.signed:
        limit = 1 << (bits_stored - 1)
        if arr.min() >= -limit and arr.max() < limit:
            return arr
    elif arr.max() < (1 << bits_stored):
        return arr
    return np.right_shift(np.left_shift(arr, shift), shift)


def dataset_stored(ds: Dataset, info: ImageInfo) -> np.ndarray:
    """Stored values of a pydicom data set's pixel data as (frames, rows, columns).

    Raises:
        UnsupportedTransferSyntaxError: when no plugin can decode the syntax.
        DicomError: when the pixel data is missing or decoding fails.
    """
    if "PixelData" in ds and info.transfer_syntax in NATIVE_SYNTAXES:
        raw = ds.PixelData
        fast = native_stored(raw, 0, len(raw), info)
        if fast is not None:
            return fast
    ensure_pydicom_decodable(info.transfer_syntax, info.path)
    from pydicom.pixels import pixel_array

    try:
        if "PixelData" in ds:
            _check_j2k_frames(ds.PixelData, info)
        arr = pixel_array(ds)
    except BaseException as err:  # pydicom and its plugins raise many types: see
        raise _decode_failed(info, err) from err  # `_decode_failed`
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    if arr.ndim != 3:
        raise DicomError(
            f"Decoded pixel data has shape {arr.shape}; expected greyscale frames "
            "(frames, rows, columns).", info.path)
    return arr


def rescale_into(out: np.ndarray, stored: np.ndarray, slope: float, intercept: float) -> None:
    """Write ``stored * slope + intercept`` into the float32 slice `out`."""
    if stored.dtype.kind in "iu" and stored.dtype.itemsize <= 2:
        # 8/16-bit integers convert to float32 exactly, and numpy computes them with a
        # float32 scalar in float32: a plain cast-copy, then in-place arithmetic, gives the
        # same bits as the mixed-type ufunc below at about half its cost.
        out[...] = stored
        if slope != 1.0:
            out *= np.float32(slope)
        if slope != 1.0 and intercept == 0.0:
            return
        out += np.float32(intercept)
        return
    if slope == 1.0:
        np.add(stored, np.float32(intercept), out=out, casting="unsafe")
    else:
        np.multiply(stored, np.float32(slope), out=out, casting="unsafe")
        if intercept != 0.0:
            out += np.float32(intercept)
