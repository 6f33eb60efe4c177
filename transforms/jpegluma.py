"""Fast mode's luma-plane JPEG decode in one compiled call (libjpeg-turbo through ``simplejpeg``).

The default hash set reads no colour, so fast mode decodes a colour JPEG to its luma plane alone
(``decode.decode_image``). Through Pillow that costs, besides libjpeg's work, its Python header
parser (markers, quantisation tables) and several GIL hand-offs per image: ~0.08 ms per 256-px row
inside the scan, a tenth of the row's features (benchmarks/RESULTS.md). This module asks the same
library for the same thing in one call: libjpeg's grayscale output of a YCbCr JPEG with the same
DCT scaling (``scale_denom`` 1, 2, 4, 8 as Pillow's draft picks it), so the pixels are Pillow's
(tested on every layout the tests make). Anything it is not sure of is left to Pillow's path —
no colour JPEG, an EXIF or multi-picture segment (orientation, frames), any libjpeg warning
(``strict``), a size Pillow would treat differently: ``decode_luma`` then returns None.
"""
from __future__ import annotations

import numpy as np

_SOI, _SOS, _APP1, _APP2 = 0xD8, 0xDA, 0xE1, 0xE2
_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8)])  # markers without a length field (TEM, RSTn)


def _simplejpeg():
    try:
        import simplejpeg
    except ImportError:  # not installed on this worker: Pillow's path, the same pixels
        return None
    return simplejpeg


def plain_header(data: bytes) -> bool:
    """True when the segments before the first scan hold no EXIF (orientation) and no multi-picture
    index (frames): then Pillow would neither rotate the image nor see more than one frame. A
    malformed header is not plain (Pillow's path classifies it)."""
    if data[:2] != b"\xff\xd8":
        return False
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker == _SOS:
            return True
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if length < 2:
            return False
        body = data[pos + 4:pos + 4 + 6]
        if (marker == _APP1 and body.startswith(b"Exif")) or (marker == _APP2 and body.startswith(b"MPF\x00")):
            return False
        pos += 2 + length
    return False


def draft_scale(size: tuple[int, int], draft_size: int | None) -> int:
    """The DCT scaling Pillow's JPEG ``draft`` picks for a square request of ``draft_size`` (None: 1):
    the largest of 8, 4, 2 that the image's smaller ratio to the request reaches, else 1."""
    if not draft_size:
        return 1
    ratio = min(size[0] // draft_size, size[1] // draft_size)
    return next((s for s in (8, 4, 2) if ratio >= s), 1)


def decode_luma(data: bytes, max_pixels: int, draft_size: int | None) -> tuple[np.ndarray, tuple[int, int], int] | None:
    """(luma plane as a (height, width) uint8 array, full (width, height), DCT scale) of a colour
    (YCbCr) JPEG, exactly as Pillow's luma draft decodes it; None where Pillow's path must decide
    (see the module docstring). Never raises for bad data."""
    sj = _simplejpeg()
    if sj is None or not plain_header(data):
        return None
    try:
        height, width, colorspace, _ = sj.decode_jpeg_header(data)
        if colorspace != "YCbCr" or width <= 0 or height <= 0 or width * height > max_pixels:
            return None
        from PIL import Image

        if width * height > Image.MAX_IMAGE_PIXELS:  # Pillow warns or refuses there: its path decides
            return None
        scale = draft_scale((width, height), draft_size)
        want = (-(-height // scale), -(-width // scale))
        args = dict(min_height=want[0], min_width=want[1], min_factor=scale) if scale > 1 else {}
        plane = sj.decode_jpeg(data, colorspace="GRAY", **args)
    except Exception:  # noqa: BLE001 - any doubt (warnings included, strict): Pillow's path decides
        return None
    if plane.shape[:2] != want:  # another scaling than Pillow's draft would pick: its path decides
        return None
    return plane.reshape(want), (width, height), scale
