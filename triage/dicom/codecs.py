"""Direct calls into the JPEG 2000 and RLE plugins for single-frame greyscale images.

pydicom's decoder framework (`pydicom.pixels.get_decoder(...).as_array`) costs about
0.4 ms per frame on top of the codec itself: option validation, a runner per call,
copies between bytearrays and arrays. For the common case - one frame, one sample,
MONOCHROME1/2, a JPEG 2000 codestream whose precision and signedness agree with
BitsStored and PixelRepresentation, or RLE with 8 or 16 bits - this module calls the
same plugins pydicom would use (pylibjpeg-openjpeg, pylibjpeg-rle) directly and applies
the same corrections, and declines everything else (returns None), which then goes
through pydicom. The test suite compares both paths on every file of pydicom's test data.

Threads: pylibjpeg-openjpeg 2.6 exposes no thread option (its ``decode`` calls OpenJPEG
without ``opj_codec_set_threads``; ``OPJ_NUM_THREADS`` was measured to change nothing), so
decoding is single-threaded, like dcm2niix by default; parallelism is per series, in
processes.
"""

from __future__ import annotations

import importlib.util
import struct
from collections.abc import Iterable
from functools import cache
from io import BytesIO

import numpy as np

from triage.dicom.slice_header import ImageInfo

JPEG2000_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"})
RLE_SYNTAX = "1.2.840.10008.1.2.5"
_ITEM, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE0DD
_ITEM_HEADER = struct.Struct("<II")
_SIZ_EXTENT = struct.Struct(">II")  # Xsiz, Ysiz: the image's right and bottom edges
_U16 = struct.Struct(">H")
_GREYSCALE = ("MONOCHROME1", "MONOCHROME2")


@cache
def direct_available(transfer_syntax: str) -> bool:
    """True when this module can decode (the common case of) `transfer_syntax`."""
    if transfer_syntax in JPEG2000_SYNTAXES:
        return importlib.util.find_spec("openjpeg") is not None
    if transfer_syntax == RLE_SYNTAX:
        return importlib.util.find_spec("rle") is not None
    return False


def preload(transfer_syntaxes: Iterable[str]) -> None:
    """Import the plugins that `transfer_syntaxes` need, once, before forking workers.

    Worker processes forked afterwards share the imported modules instead of each
    importing them on its first frame.
    """
    wanted = set(transfer_syntaxes)
    if wanted & JPEG2000_SYNTAXES and direct_available(next(iter(JPEG2000_SYNTAXES))):
        import openjpeg  # noqa: F401
    if RLE_SYNTAX in wanted and direct_available(RLE_SYNTAX):
        import rle.utils  # noqa: F401


def decode_single_frame(buffer: bytes, offset: int, info: ImageInfo) -> np.ndarray | None:
    """Stored values (rows, columns) of a single encapsulated frame, or None to decline.

    Args:
        buffer: the file's bytes.
        offset: where the encapsulated items (Basic Offset Table first) start.
        info: the file's pixel description.

    Raises:
        RuntimeError, ValueError: the plugin failed on the data (the caller reports it).
    """
    if (info.n_frames != 1 or info.samples_per_pixel != 1 or not info.rows
            or not info.columns or (info.photometric or "MONOCHROME2") not in _GREYSCALE
            or not direct_available(info.transfer_syntax)):
        return None
    frame = _frame_bytes(buffer, offset)
    if frame is None:
        return None
    if info.transfer_syntax == RLE_SYNTAX:
        return _decode_rle(frame, info)
    return _decode_j2k(frame, info)


def _frame_bytes(buffer: bytes, offset: int) -> bytes | None:
    """The fragments after the Basic Offset Table, joined; None when malformed."""
    view = memoryview(buffer)
    fragments = []
    pos, end = offset, len(buffer)
    first = True
    while pos + 8 <= end:
        tag_group_elem, length = _ITEM_HEADER.unpack_from(buffer, pos)
        tag = (tag_group_elem & 0xFFFF) << 16 | tag_group_elem >> 16
        pos += 8
        if tag == _SEQUENCE_END:
            break
        if tag != _ITEM or pos + length > end:
            return None
        if not first:
            fragments.append(view[pos:pos + length])
        first = False
        pos += length
    else:
        return None
    if not fragments:
        return None
    return bytes(fragments[0]) if len(fragments) == 1 else b"".join(fragments)


def _siz(frame: bytes) -> dict[str, int] | None:
    """What ``openjpeg.get_parameters`` reports, read from the SIZ marker segment that
    follows SOC (ISO 15444-1 A.5.1), or None when the segment is not there whole."""
    if len(frame) < 45 or frame[2:4] != b"\xff\x51":
        return None
    xsiz, ysiz = _SIZ_EXTENT.unpack_from(frame, 8)
    (csiz,) = _U16.unpack_from(frame, 40)
    ssiz = frame[42]
    return {"rows": ysiz, "columns": xsiz, "samples_per_pixel": csiz,
            "precision": (ssiz & 0x7F) + 1, "is_signed": ssiz >> 7}


def _fits(params: dict, info: ImageInfo) -> bool:
    """The codestream is what the header says: no container or sign correction needed."""
    precision = int(params["precision"])
    container = 8 if precision <= 8 else 16 if precision <= 16 else 0
    return (params["samples_per_pixel"] == 1 and params["rows"] == info.rows
            and params["columns"] == info.columns and container == info.bits_allocated
            and precision == (info.bits_stored or 0)
            and bool(params["is_signed"]) == info.signed)


def _decode_j2k(frame: bytes, info: ImageInfo) -> np.ndarray | None:
    import openjpeg

    stream = BytesIO(frame)
    if frame[:4] != b"\xff\x4f\xff\x51":
        return None  # a JP2 file rather than a codestream: pydicom warns and copes
    # The SIZ segment says what OpenJPEG's header read would (0.1 ms less per frame);
    # when it does not fit, OpenJPEG's own reading decides (and raises as before).
    siz = _siz(frame)
    if siz is None or not _fits(siz, info):
        if not _fits(openjpeg.get_parameters(stream, 0), info):
            return None  # pydicom's container and sign corrections apply: let it decode
        stream.seek(0)
    # reshape=False: the shape and type are known, and reshaping would parse the
    # codestream header a third time.
    arr = openjpeg.decode(stream, 0, reshape=False)
    dtype = np.dtype(f"<{'i' if info.signed else 'u'}{info.bits_allocated // 8}")
    return arr.view(dtype).reshape(info.rows, info.columns)


def _decode_rle(frame: bytes, info: ImageInfo) -> np.ndarray | None:
    from rle.utils import decode_frame

    bits = info.bits_allocated or 0
    if bits not in (8, 16):
        return None
    data = decode_frame(frame, info.rows * info.columns, bits, "<")
    dtype = np.dtype(f"<{'i' if info.signed else 'u'}{bits // 8}")
    arr = np.frombuffer(data, dtype=dtype).reshape(info.rows, info.columns)
    stored = info.bits_stored or bits
    if stored < bits:  # pydicom ignores the unused high bits of RLE data
        shift = bits - stored
        arr = np.right_shift(np.left_shift(arr, shift), shift)
    return arr
