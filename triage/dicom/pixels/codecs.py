"""Direct calls into the JPEG 2000, RLE and JPEG-LS plugins for single-frame greyscale images.

pydicom's decoder framework (`pydicom.pixels.get_decoder(...).as_array`) costs about
0.4 ms per frame on top of the codec itself: option validation, a runner per call,
copies between bytearrays and arrays. For the common case - one frame, one sample,
MONOCHROME1/2, a JPEG 2000 codestream whose precision and signedness agree with
BitsStored and PixelRepresentation, RLE with 8 or 16 bits, or unsigned JPEG-LS - this
module calls the plugins pydicom would use (pylibjpeg-openjpeg, pylibjpeg-rle; for JPEG-LS
CharLS through pyjpegls, which pydicom also supports and which decodes a 256² CT frame in
~2 ms where pylibjpeg-libjpeg, pydicom's first choice, takes ~10 ms) directly and applies
the same corrections, and declines everything else (returns None), which then goes
through pydicom. The frame's items are joined here (`frame_bytes`) and the codestream's
precision and sign read from its SIZ marker (`j2k_parameters`), with `pydicom.encaps` as
the fallback for anything unusual: importing pydicom costs 0.3-0.4 s per process, as much
as decoding a series of 128 RLE frames. The test suite compares both with pydicom's
(`generate_frames`, `get_j2k_parameters`) and both decode paths on every file of pydicom's
test data.

Threads: pylibjpeg-openjpeg 2.6 exposes no thread option (its ``decode`` calls OpenJPEG
without ``opj_codec_set_threads``; ``OPJ_NUM_THREADS`` was measured to change nothing), so
decoding is single-threaded, like dcm2niix by default; parallelism is per series, in
processes.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from functools import cache
from io import BytesIO

import numpy as np

from triage.dicom import tags
from triage.dicom.pixels.slice_header import ImageInfo

JPEG2000_SYNTAXES = tags.JPEG2000_SYNTAXES
RLE_SYNTAX = tags.RLE_SYNTAX
JPEGLS_SYNTAXES = tags.JPEGLS_SYNTAXES
_GREYSCALE = ("MONOCHROME1", "MONOCHROME2")


@cache
def direct_available(transfer_syntax: str) -> bool:
    """True when this module can decode (the common case of) `transfer_syntax`."""
    if transfer_syntax in JPEG2000_SYNTAXES:
        return importlib.util.find_spec("openjpeg") is not None
    if transfer_syntax == RLE_SYNTAX:
        return importlib.util.find_spec("rle") is not None
    if transfer_syntax in JPEGLS_SYNTAXES:
        return importlib.util.find_spec("jpeg_ls") is not None
    return False


def preload(transfer_syntaxes: Iterable[str]) -> None:
    """Import the plugins that `transfer_syntaxes` need, once, before forking workers.

    Worker processes forked afterwards share the imported modules instead of each
    importing them on its first frame.
    """
    wanted = set(transfer_syntaxes)
    if wanted & tags.ENCAPSULATED_SYNTAXES - JPEG2000_SYNTAXES - JPEGLS_SYNTAXES - {RLE_SYNTAX}:
        import pydicom.encaps  # noqa: F401  (the other syntaxes decode through pydicom)
    if wanted & JPEG2000_SYNTAXES and direct_available(next(iter(JPEG2000_SYNTAXES))):
        import openjpeg  # noqa: F401
    if RLE_SYNTAX in wanted and direct_available(RLE_SYNTAX):
        import rle.utils  # noqa: F401
    if wanted & JPEGLS_SYNTAXES and direct_available(next(iter(JPEGLS_SYNTAXES))):
        import jpeg_ls  # noqa: F401


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
    frame = frame_bytes(buffer, offset)
    if frame is None:
        return None
    if info.transfer_syntax == RLE_SYNTAX:
        return _decode_rle(frame, info)
    if info.transfer_syntax in JPEGLS_SYNTAXES:
        return _decode_jls(frame, info)
    return _decode_j2k(frame, info)


_ITEM, _SEQUENCE_END = b"\xfe\xff\x00\xe0", b"\xfe\xff\xdd\xe0"


def frame_bytes(buffer: bytes, offset: int) -> bytes | None:
    """The single frame's fragments, joined; None when malformed.

    `offset` is where the encapsulated value starts (its Basic Offset Table item). The
    items are walked here; anything but items up to the sequence delimiter goes to
    `pydicom.encaps` (``generate_frames``), which gives the same bytes for well-formed
    data (a test checks it file by file).
    """
    view = memoryview(buffer)
    pos, end = offset, len(buffer)
    fragments: list[memoryview] = []
    while pos + 8 <= end:
        tag, length = bytes(view[pos:pos + 4]), int.from_bytes(view[pos + 4:pos + 8], "little")
        if tag == _SEQUENCE_END:
            if fragments:  # the first item is the offset table, not a fragment
                joined = b"".join(fragments[1:])
                return joined or None
            break
        if tag != _ITEM or length == 0xFFFFFFFF or pos + 8 + length > end:
            break
        fragments.append(view[pos + 8:pos + 8 + length])
        pos += 8 + length
    return _pydicom_frame_bytes(buffer, offset)


def _pydicom_frame_bytes(buffer: bytes, offset: int) -> bytes | None:
    from pydicom.encaps import generate_frames

    try:
        frames = generate_frames(buffer[offset:], number_of_frames=1)
        frame = next(frames, None)
    except (ValueError, KeyError, OSError, EOFError):
        return None
    return bytes(frame) if frame else None


def j2k_parameters(codestream: bytes) -> dict[str, int | bool]:
    """Image size, precision and signedness of a JPEG 2000 codestream, from SIZ.

    A codestream starts with SOC, the SIZ marker, Lsiz, Rsiz and eight 4-byte sizes, of
    which the first four are Xsiz, Ysiz, XOsiz and YOsiz (the image is Xsiz - XOsiz
    columns by Ysiz - YOsiz rows), then Csiz; byte 42 is the first component's Ssiz: bit
    7 the sign, bits 0-6 the precision minus one, as pydicom's `get_j2k_parameters`
    reads it. Empty for a stream too short to hold it.
    """
    if len(codestream) < 43 or codestream[:4] != b"\xff\x4f\xff\x51":
        return {}
    x, y, x0, y0 = (int.from_bytes(codestream[k:k + 4], "big") for k in (8, 12, 16, 20))
    ssiz = codestream[42]
    return {"columns": x - x0, "rows": y - y0, "precision": (ssiz & 0x7F) + 1,
            "is_signed": bool(ssiz & 0x80)}


def check_j2k_size(codestream: bytes, info: ImageInfo) -> None:
    """Refuse a JPEG 2000 codestream whose SIZ image size is not the header's.

    OpenJPEG allocates the size SIZ declares: a few hundred bytes declaring 60000 x 60000
    would take gigabytes before anything compares it with Rows and Columns. A stream whose
    SIZ cannot be read (a JP2 file) is left to the decoder.

    Raises:
        ValueError: the sizes differ (the caller names the file).
    """
    params = j2k_parameters(codestream)
    if params and (params["columns"], params["rows"]) != (info.columns, info.rows):
        raise ValueError(
            f"the JPEG 2000 codestream declares {params['columns']} x {params['rows']} "
            f"pixels, but Columns x Rows is {info.columns} x {info.rows}; it is not "
            "decoded")


def _fits(params: dict, info: ImageInfo) -> bool:
    """The codestream's precision and sign are what the header says: no container or
    sign correction needed (`j2k_parameters` reads them from SIZ)."""
    precision = int(params.get("precision", 0))
    container = 8 if 0 < precision <= 8 else 16 if 8 < precision <= 16 else 0
    return (container == info.bits_allocated and precision == (info.bits_stored or 0)
            and bool(params.get("is_signed")) == info.signed)


def _decode_j2k(frame: bytes, info: ImageInfo) -> np.ndarray | None:
    import openjpeg

    if frame[:4] != b"\xff\x4f\xff\x51":
        return None  # a JP2 file rather than a codestream: pydicom warns and copes
    check_j2k_size(frame, info)
    if not _fits(j2k_parameters(frame), info):
        return None  # pydicom's container and sign corrections apply: let it decode
    # reshape=False: the shape and type are known, and reshaping would parse the
    # codestream header again.
    rows, columns, bits = info.rows or 0, info.columns or 0, info.bits_allocated or 0
    arr = openjpeg.decode(BytesIO(frame), 0, reshape=False)
    arr = arr.view(np.dtype(f"<{'i' if info.signed else 'u'}{bits // 8}"))
    if arr.size != rows * columns:
        return None  # not one greyscale frame of the header's size: pydicom decides
    return arr.reshape(rows, columns)


def _decode_jls(frame: bytes, info: ImageInfo) -> np.ndarray | None:
    """Unsigned JPEG-LS through CharLS; signed data (pydicom corrects its sign) declined."""
    import jpeg_ls

    bits = info.bits_allocated or 0
    if info.signed or bits not in (8, 16):
        return None
    arr = jpeg_ls.decode(np.frombuffer(frame, np.uint8))
    if arr.shape != (info.rows, info.columns) or arr.dtype.itemsize * 8 != bits:
        return None  # not one greyscale frame of the header's size: pydicom decides
    return arr.view(np.dtype(f"<u{bits // 8}"))


def _decode_rle(frame: bytes, info: ImageInfo) -> np.ndarray | None:
    from rle.utils import decode_frame

    bits = info.bits_allocated or 0
    if bits not in (8, 16):
        return None
    rows, columns = info.rows or 0, info.columns or 0
    data = decode_frame(frame, rows * columns, bits, "<")
    dtype = np.dtype(f"<{'i' if info.signed else 'u'}{bits // 8}")
    arr = np.frombuffer(data, dtype=dtype).reshape(rows, columns)
    stored = info.bits_stored or bits
    if stored < bits:  # pydicom ignores the unused high bits of RLE data
        shift = bits - stored
        arr = np.right_shift(np.left_shift(arr, shift), shift)
    return arr
