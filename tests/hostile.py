"""Generators of hostile image bytes and shards for the bad-input tests."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from shardguard.pipelines.sample_data import encode, make_image


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but holds almost no data (a decompression bomb)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
            + chunk(b"IEND", b""))


def _save(img, fmt, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def hostile_images() -> dict[str, bytes | None]:
    """name → bytes: every kind of bad or unusual input the scan must account for."""
    base = make_image(42)
    jpeg = encode(base)
    pal = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    frames = [make_image(43 + i, 64) for i in range(3)]
    return {
        "truncated_jpeg": jpeg[: len(jpeg) // 2],
        "zero_bytes": b"",
        "html": b"<!doctype html><html><body>404 Not Found</body></html>",
        "bomb_huge": png_header_only(60000, 60000),
        "bomb_over_limit": png_header_only(12000, 10000),
        "cmyk_jpeg": _save(base.convert("CMYK"), "JPEG"),
        "palette_alpha_png": _save(pal, "PNG"),
        "png16": _save(Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)), "PNG"),
        "animated_gif": _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50),
        "one_pixel": _save(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"),
        "null_image": None,
        "exif_rotated": _exif_rotated(base),
    }


def _exif_rotated(img) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW on display
    return _save(img, "JPEG", exif=exif.tobytes())


# What each must end as: decode error class, or "ok" (decoded and hashed).
EXPECTED = {
    "truncated_jpeg": "truncated", "zero_bytes": "empty", "html": "unidentified",
    "bomb_huge": "decompression_bomb", "bomb_over_limit": "decompression_bomb", "cmyk_jpeg": "ok",
    "palette_alpha_png": "ok", "png16": "ok", "animated_gif": "ok", "one_pixel": "ok",
    "null_image": "null_image", "exif_rotated": "ok",
}
