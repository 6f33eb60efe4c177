"""Decode image bytes once, safely, into the pixels every hash reads.

``decode_image`` is the one place bytes become pixels: it enforces a decompression-bomb pixel limit
before any pixel is decoded, applies EXIF orientation, takes the first frame of animations, and
converts to RGB (CMYK and palette images hash wrongly otherwise). Every failure raises
``DecodeError`` with a stable ``error_class`` that becomes a counter and a record.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from shardguard.transforms.jpegluma import decode_luma

# Pillow's own default; a row above it is refused before decoding (a "decompression bomb").
DEFAULT_MAX_PIXELS = 89_478_485
_ORIENTATION = 0x0112  # EXIF tag


class DecodeError(Exception):
    """An image that cannot be decoded; ``error_class`` is a short stable name for counters."""

    def __init__(self, error_class: str, message: str):
        super().__init__(message)
        self.error_class = error_class


HASH_MIN_SIDE = 64  # JPEG draft target for pHash (32×32) in fast mode
# dHash (signs of neighbour differences on 9×8) is more fragile: from 64-px drafts p99 10 bits off
# exact on real photos, from 128-px drafts p99 8, like re-encoding noise (bench_fast_accuracy.py)
DHASH_MIN_SIDE = 128
REDUCE_MIN_SIDE = 128  # box pre-reduction keeps at least this many pixels (64 moved pHash 6 bits)


@dataclass
class DecodedImage:
    """Stored bytes plus decoded RGB pixels; grayscale derived once on first use.

    ``exact`` is False when the pixels may be reduced (JPEG draft decoding, integer pre-reduction)
    for speed: hashes then differ from the exact ones by a few bits at most (README table).
    """

    data: bytes
    pixels: Image.Image  # as decoded: "RGB", or "L" for a grayscale source or a luma-only draft
    source_mode: str
    frames: int
    exact: bool = True
    size: tuple[int, int] | None = None  # full-resolution (width, height) when ``rgb`` is a draft
    scale: int = 1  # full-resolution pixels per draft pixel (JPEG DCT scaling 1/scale)
    luma_only: bool = False  # a colour source decoded to its luma plane alone (fast mode): no colour
    # that plane as the one-call decoder gave it (``pixels`` shares its memory); not compared
    plane: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def width(self) -> int:
        """Full-resolution width after EXIF orientation (also when ``rgb`` is a reduced draft)."""
        return self.size[0] if self.size else self.pixels.width

    @property
    def height(self) -> int:
        """Full-resolution height after EXIF orientation (also when ``rgb`` is a reduced draft)."""
        return self.size[1] if self.size else self.pixels.height

    @cached_property
    def rgb(self) -> Image.Image:
        """The RGB image (derived on first use when a grayscale source was decoded as "L")."""
        if self.luma_only:  # the decode plan promised nobody needs colour: a caller that does is a bug
            raise RuntimeError("colour asked of an image decoded to its luma plane only (decode_plan)")
        return self.pixels if self.pixels.mode == "RGB" else self.pixels.convert("RGB")

    @property
    def pdq_pixels(self) -> Image.Image:
        """What PDQ reads: the RGB pixels, or the "L" pixels of a grayscale source or of a luma-plane
        decode (PDQ's luma of R = G = B = L is L exactly, so a grayscale source hashes the same
        either way; the luma plane differs from PDQ's luma of the RGB decode by rounding, README)."""
        return self.pixels if self.pixels.mode == "L" else self.rgb

    @property
    def pdq_input(self):
        """What the PDQ kernels read: the decoded luma plane as a (height, width) uint8 array where
        the one-call decoder gave one (no copy out of Pillow), else ``pdq_pixels``."""
        return self.plane if self.plane is not None else self.pdq_pixels

    @cached_property
    def gray(self) -> Image.Image:
        """The "L" image (as imagehash's ``convert('L')`` does; for an "L" source that is the
        pixels themselves, since L → RGB → L is the identity in Pillow's fixed-point weights)."""
        return self.pixels if self.pixels.mode == "L" else self.pixels.convert("L")

    @property
    def gray_input(self):
        """``gray`` for readers that also take a 2-D uint8 array (the letter-box check): the decoded
        plane itself where there is one (no copy out of Pillow), else the "L" image."""
        return self.plane if self.plane is not None else self.gray

    @property
    def hash_gray_array(self) -> np.ndarray:
        """``hash_gray`` as a (height, width) uint8 array: the decoded plane itself when pHash and
        dHash read it unreduced, else a view or copy of Pillow's pixels (``luma_array``)."""
        from shardguard.indexes.imagehashes import luma_array

        gray = self.hash_gray
        return self.plane if self.plane is not None and gray is self.pixels else luma_array(gray)

    @cached_property
    def _reduce_factor(self) -> int:
        factor = min(self.gray.size) // REDUCE_MIN_SIDE
        return 1 if self.exact or factor < 2 else factor

    @cached_property
    def hash_gray(self) -> Image.Image:
        """What pHash and dHash read: ``gray``, or in fast mode ``gray`` box-reduced by an integer
        factor to no less than REDUCE_MIN_SIDE pixels (LANCZOS from 512 px to 32 dominates otherwise)."""
        factor = self._reduce_factor
        return self.gray if factor == 1 else self.gray.reduce(factor)

    @property
    def hash_block(self) -> int:
        """Full-resolution pixels (per side) behind one ``hash_gray`` pixel: draft scale × reduce
        factor; 1 when ``hash_gray`` is the full image. The hashes resize by it (lanczos.py)."""
        block = self.scale * self._reduce_factor
        w, h = self.hash_gray.size
        if -(-self.width // block) != w or -(-self.height // block) != h:
            return 1  # not a whole-block reduction after all: hash the pixels as they are
        return block


def _classify(exc: Exception) -> str:
    """A stable error class from Pillow's exception (its messages are the only signal it gives)."""
    msg = str(exc).lower()
    if "truncated" in msg or "broken data stream" in msg or isinstance(exc, EOFError):
        return "truncated"
    return "corrupt"


def _open(data: bytes, max_pixels: int) -> Image.Image:
    # No warnings.catch_warnings() here: it changes process-global state and is not thread-safe.
    # Pillow only warns between its limit and twice it; our own check below refuses before decoding.
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise DecodeError("decompression_bomb", str(exc)) from None
    except UnidentifiedImageError:
        raise DecodeError("unidentified", "not a recognised image format") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError) as exc:
        raise DecodeError(_classify(exc), f"{type(exc).__name__}: {str(exc)[:200]}") from None
    except Exception as exc:  # noqa: BLE001 - hostile files make plugins raise anything
        raise DecodeError("corrupt", f"{type(exc).__name__}: {str(exc)[:200]}") from None
    w, h = img.size
    if w <= 0 or h <= 0:
        raise DecodeError("bad_dimensions", f"image has size {w}x{h}")
    if w * h > max_pixels:
        raise DecodeError("decompression_bomb", f"{w}x{h} = {w * h} pixels exceeds limit {max_pixels}")
    return img


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("RGB", "L"):  # "L" stays: ``DecodedImage.rgb`` derives RGB if anyone asks
        return img
    if img.mode == "P" and "transparency" in img.info:
        # P → RGBA → RGB gives the same RGB values as P → RGB, without Pillow's warning about
        # palette transparency (and without touching the global warning filters)
        return img.convert("RGBA").convert("RGB")
    return img.convert("RGB")


def decode_image(data: bytes | None, max_pixels: int = DEFAULT_MAX_PIXELS, *, exact: bool = True,
                 draft_size: int | None = None, luma: bool = False) -> DecodedImage:
    """Decode ``data`` into a DecodedImage or raise DecodeError.

    Fast mode (``exact=False``): with ``draft_size``, a JPEG is decoded with DCT scaling to the
    smallest size no smaller than ``draft_size`` on both sides (Pillow's draft mode); with ``luma``
    (nobody reads colour: the hashes), a colour JPEG is decoded to its luma plane alone, at the
    draft size or at full size, skipping chroma and colour conversion (~30% of a full decode; Y
    differs from Pillow's RGB → L and from PDQ's luma of the RGB decode by rounding, README).
    """
    if data is None:
        raise DecodeError("null_image", "image column is null")
    if len(data) == 0:
        raise DecodeError("empty", "image has zero bytes")
    if luma and not exact:  # the common case in one compiled call: the same pixels (jpegluma.py)
        plane = decode_luma(data, max_pixels, draft_size)
        if plane is not None:
            return _luma_image(data, *plane)
    img = _open(data, max_pixels)
    try:
        source_mode, frames = img.mode, int(getattr(img, "n_frames", 1) or 1)
        size = img.size  # before any draft: records report the image's real dimensions
        scale, luma_only = 1, False
        if not exact and (draft_size or luma) and img.format == "JPEG":
            luma_only = luma and img.mode == "RGB"
            target = "L" if luma_only else img.mode if img.mode in ("L", "CMYK") else "RGB"
            img.draft(target, (draft_size, draft_size) if draft_size else size)  # full size: scale 1
            scale = _draft_scale(size, img.size)
        if frames > 1:
            img.seek(0)  # first frame: what a thumbnail or a training loader would show
        img.load()
        orientation = img.getexif().get(_ORIENTATION, 1)
        if orientation != 1:  # skip the copy exif_transpose makes otherwise
            img = ImageOps.exif_transpose(img) or img
            if orientation in (5, 6, 7, 8):  # quarter turns swap the sides
                size = size[::-1]
        pixels = _to_rgb(img)
        pixels.load()
    except DecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise DecodeError("decompression_bomb", str(exc)[:200]) from None
    except MemoryError:
        raise DecodeError("out_of_memory", "decoding exceeded available memory") from None
    except (OSError, ValueError, SyntaxError, IndexError, TypeError, EOFError) as exc:
        raise DecodeError(_classify(exc), f"{type(exc).__name__}: {str(exc)[:200]}") from None
    except Exception as exc:  # noqa: BLE001 - Pillow's plugins raise KeyError, struct.error, ZeroDivisionError… on hostile files
        raise DecodeError("corrupt", f"{type(exc).__name__}: {str(exc)[:200]}") from None
    return DecodedImage(data=data, pixels=pixels, source_mode=source_mode, frames=frames, exact=exact, size=tuple(size),
                        scale=scale, luma_only=luma_only and pixels.mode == "L")


def _luma_image(data: bytes, plane, size: tuple[int, int], scale: int) -> DecodedImage:
    # Pillow reads the array's memory in place (read-only image): the plane is never written
    pixels = Image.frombuffer("L", (plane.shape[1], plane.shape[0]), plane, "raw", "L", 0, 1)
    return DecodedImage(data=data, pixels=pixels, source_mode="RGB", frames=1, exact=False, size=size,
                        scale=scale, luma_only=True, plane=plane)


def _draft_scale(full: tuple[int, int], draft: tuple[int, int]) -> int:
    """The DCT scaling (1, 2, 4 or 8: what Pillow's JPEG draft picks) that took ``full`` to ``draft``
    (libjpeg rounds the scaled size up); 1 if none does, so the draft is then hashed as is."""
    for s in (1, 2, 4, 8):
        if all(-(-f // s) == d for f, d in zip(full, draft)):
            return s
    return 1
