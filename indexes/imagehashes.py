"""Perceptual-hash kernels: pHash and dHash (bit-identical to imagehash) and PDQ (pdqhash).

Each kernel takes an already decoded image so that a row is decoded once and every hash type reads
the same pixels. Hashes are returned as lowercase hex, most significant bit first, which is the
string form used by imagehash (``str(ImageHash)``) and by ThreatExchange for PDQ.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

# imagehash resizes with ANTIALIAS, which is LANCZOS in every Pillow that still ships.
_RESAMPLE = Image.Resampling.LANCZOS
PHASH_SIZE = 8
PHASH_HIGHFREQ = 4


def bits_to_hex(bits: np.ndarray) -> str:
    """Pack a flat 0/1 (or bool) array, first element as the most significant bit, into hex."""
    return np.packbits(np.asarray(bits, dtype=np.uint8).ravel()).tobytes().hex()


def phash_from_gray32(pixels: np.ndarray) -> str:
    """pHash of a 32x32 grayscale uint8 array (the already resized image), as 16 hex digits."""
    import scipy.fftpack  # imported when first needed: ~0.23 s that a re-filter or `manifest` rarely needs

    dct = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=0), axis=1)
    low = dct[:PHASH_SIZE, :PHASH_SIZE]
    return bits_to_hex(low > np.median(low))


def resize_gray(gray: np.ndarray, width: int, height: int) -> np.ndarray:
    """A uint8 grayscale array resized as imagehash resizes (Pillow LANCZOS)."""
    return np.asarray(Image.fromarray(gray).resize((width, height), _RESAMPLE))


def lanczos_resize(gray: np.ndarray, width: int, height: int, full: tuple[int, int] | None = None,
                   block: int = 1) -> np.ndarray:
    """imagehash's LANCZOS resize of a uint8 grayscale array — or, when ``block`` > 1, of the ``full``
    image it reduces (``lanczos.block_coefficients``)."""
    return lanczos_resize_many([gray], width, height, full, block)[0]


def lanczos_resize_many(grays: list[np.ndarray], width: int, height: int, full: tuple[int, int] | None = None,
                        block: int = 1) -> np.ndarray:
    """``lanczos_resize`` of same-shaped arrays (reductions of same-sized images), stacked. The one
    place that picks the kernel: the compiled replica (bit for bit Pillow's) for reduced and small
    images, where Pillow's per-call set-up dominates; Pillow itself for large full-resolution ones."""
    from shardguard.indexes import lanczos

    if block > 1 or max(grays[0].shape) <= lanczos.MAX_SIDE:
        return lanczos.resize_many(grays, width, height, full, block)
    return np.stack([resize_gray(g, width, height) for g in grays])


def hash_input(img, width: int, height: int) -> np.ndarray:
    """The (height, width) array pHash/dHash read from a decoded image (``hashtypes.ImageLike``):
    imagehash's LANCZOS resize of ``hash_gray``, or, when ``hash_gray`` is a reduction of the full
    image (fast decode), the full image's LANCZOS weights summed over each reduced pixel."""
    return lanczos_resize(np.asarray(img.hash_gray), width, height, (img.width, img.height), img.hash_block)


def _imagehash_resize(gray: Image.Image, width: int, height: int) -> np.ndarray:
    """imagehash's resize of an "L" image (anything else goes to Pillow as imagehash would)."""
    if gray.mode != "L":
        return np.asarray(gray.resize((width, height), _RESAMPLE))
    return lanczos_resize(np.asarray(gray), width, height)


def phash_input(gray: Image.Image) -> np.ndarray:
    """The 32×32 uint8 array pHash reads (imagehash's own resize)."""
    size = PHASH_SIZE * PHASH_HIGHFREQ
    return _imagehash_resize(gray, size, size)


def phash(gray: Image.Image) -> str:
    """pHash of a grayscale ("L") image, identical to ``str(imagehash.phash(img))``."""
    return phash_from_gray32(phash_input(gray))


def dhash_from_gray9x8(pixels: np.ndarray) -> str:
    """dHash of an 8-row, 9-column grayscale uint8 array, as 16 hex digits."""
    return bits_to_hex(pixels[:, 1:] > pixels[:, :-1])


def dhash_input(gray: Image.Image) -> np.ndarray:
    """The 8×9 uint8 array dHash reads (imagehash's own resize)."""
    return _imagehash_resize(gray, PHASH_SIZE + 1, PHASH_SIZE)


def dhash(gray: Image.Image) -> str:
    """dHash of a grayscale ("L") image, identical to ``str(imagehash.dhash(img))``."""
    return dhash_from_gray9x8(dhash_input(gray))


def pdq(rgb: Image.Image | np.ndarray, sampled: bool = False) -> tuple[str, int]:
    """PDQ hash (64 hex digits) and quality (0-100) of an RGB image, or of an "L" image (its luma:
    the hash of R = G = B = L, which PDQ's luma formula maps back to L exactly), or of such a luma
    plane as a (height, width) uint8 array.

    The caller must pass RGB or L: pdqhash reads the first three channels as RGB, so a CMYK array
    hashes almost inverted and a palette array is read as indices (see DEVELOPERS.md).
    ``sampled`` (fast mode): the filter is evaluated only where PDQ samples it (``_pdqext.c``,
    ``pdq_sampled``): the reference's values up to float rounding, 3-4× faster, not bit-identical to
    pdqhash; without the extension its numpy twin (``pdq_sampled.py``) gives the same bits.
    """
    _check_mode(rgb)
    try:  # the compiled twin (indexes/_pdqext.c): the same floats in the same order, ~7× faster
        from shardguard.indexes import _pdqext
    except ImportError:  # not compiled on this worker: the same result, slower
        if sampled:
            from shardguard.indexes.pdq_sampled import pdq_sampled

            bits, quality, _, _ = pdq_sampled(np.asarray(rgb))
            return bits.hex(), quality
        if isinstance(rgb, np.ndarray):
            return pdq_reference(np.ascontiguousarray(np.repeat(rgb[:, :, None], 3, axis=2)))
        return pdq_reference(np.ascontiguousarray(np.asarray(rgb if rgb.mode == "RGB" else rgb.convert("RGB"))))
    bits, quality = _pdqext.hash(*_pdq_buffer(rgb), 0, sampled)
    return bits.hex(), quality


def _check_mode(img: Image.Image | np.ndarray) -> None:
    if isinstance(img, np.ndarray):
        if img.ndim != 2 or img.dtype != np.uint8:
            raise ValueError(f"pdq reads a luma plane as a 2-D uint8 array, got {img.dtype} {img.shape}")
        return
    if img.mode not in ("RGB", "L"):
        raise ValueError(f"pdq needs an RGB (or luma, L) image, got mode {img.mode}")


def _pdq_buffer(img: Image.Image | np.ndarray) -> tuple:
    """(pixels, rows, cols, with_floats, step) for ``_pdqext.hash``: Pillow's own RGBX memory
    where it can be shared, else packed RGB, or the luma bytes of an "L" image or a plane (step 1)."""
    if isinstance(img, np.ndarray):  # a luma plane (checked by _check_mode)
        return np.ascontiguousarray(img), img.shape[0], img.shape[1], False, 1
    width, height = img.size
    if img.mode == "L":
        return np.ascontiguousarray(luma_array(img)), height, width, False, 1
    view = _rgbx_view(img)
    if view is not None:
        return view, height, width, False, 4
    return np.ascontiguousarray(np.asarray(img)), height, width, False, 3


def pdq_with_dct(rgb: Image.Image | np.ndarray, flips: int = 7, sampled: bool = False) -> tuple[str, int, np.ndarray | None]:
    """PDQ hash, quality and the 16×16 DCTs (float32, shape 4×16×16) of the image (RGB or L, as
    ``pdq``), its mirror, its vertical flip and its 180° rotation (``flips``: which of those three, a
    mask 1/2/4; the others are zeros), from which the dihedral views' hashes follow
    (``views.dihedral``). None for the DCTs where the compiled extension is missing. ``sampled``: as
    for ``pdq``."""
    _check_mode(rgb)
    try:
        from shardguard.indexes import _pdqext
    except ImportError:
        if sampled:  # the kernel's numpy twin: the same hash and DCTs
            from shardguard.indexes.pdq_sampled import pdq_sampled

            bits, quality, b, views = pdq_sampled(np.asarray(rgb), flips or 1)
            return bits.hex(), quality, np.concatenate([b[None], views])
        h, quality = pdq(rgb)
        return h, quality, None  # the reference binding exposes no DCT: no dihedral views
    pixels, rows, cols, _, step = _pdq_buffer(rgb)
    bits, quality, floats, more = _pdqext.hash(pixels, rows, cols, True, step, flips or 1, sampled)
    return bits.hex(), quality, np.frombuffer(floats + more, np.float32).reshape(4, 16, 16)


def _rgbx_view(rgb: Image.Image):
    """Pillow's own pixel memory (4 bytes per pixel, RGBX) without a copy, or None (``_pillow_memory``):
    ``np.asarray`` copies it to packed RGB, ~110 µs for a 512-px image, a fifth of the compiled PDQ's
    own time."""
    return _pillow_memory(rgb, 4)


def luma_array(img: Image.Image) -> np.ndarray:
    """An "L" image's pixels as a read-only (height, width) uint8 array: Pillow's own memory without a
    copy where it can be shared (``_pillow_memory``), else a copy (``np.asarray``: ~190 µs for a
    512 × 700 image, as much as its PDQ in fast mode)."""
    data = _pillow_memory(img, 1) if img.mode == "L" else None
    if data is None:
        return np.asarray(img)
    return np.frombuffer(data, np.uint8).reshape(img.height, img.width)


# Below this, copying is cheaper than the export (~20 µs); above it a copy is a fresh mmap'd block
# whose page faults make it slow (~190 µs for 512 × 700 luma bytes, 9 µs for 256 × 256)
_SHARE_BYTES = 128 << 10


def _pillow_memory(img: Image.Image, pixel_bytes: int):
    """Pillow's pixel memory through its Arrow export (Pillow ≥ 11.2), without a copy, or None: a
    small image (``_SHARE_BYTES``), an older Pillow, a multi-block image, or an image over memory
    Pillow does not own (``fromarray`` of a 2-D array, ``frombuffer``: read-only, and exporting those
    crashes Pillow 12)."""
    if img.readonly or img.width * img.height * pixel_bytes < _SHARE_BYTES:
        return None
    try:
        import pyarrow as pa

        arr = pa.array(img)
        data = arr.buffers()[-1]
        values = getattr(arr, "values", arr)  # RGBX: fixed-size lists of 4 bytes; L: plain bytes
        if arr.offset or values.offset or data.size != img.width * img.height * pixel_bytes:
            return None
        return data
    except Exception:  # noqa: BLE001 - no export here: the copying path
        return None


def pdq_reference(pixels: np.ndarray) -> tuple[str, int]:
    """PDQ of a contiguous (rows, cols, 3) uint8 RGB array by the pdqhash package (the reference
    the compiled ``_pdqext`` is tested against, bit for bit)."""
    import pdqhash  # imported lazily: a C extension workers only need when PDQ is enabled

    vector, quality = pdqhash.compute(pixels)
    return bits_to_hex(vector), int(quality)


def phash_batch(stack: np.ndarray) -> list[str]:
    """pHash of N already-resized 32×32 grayscale images (an ``(N, 32, 32)`` uint8 array), one
    vectorised DCT for the whole stack; bit-identical to ``phash_from_gray32`` per image."""
    import scipy.fftpack  # see phash_from_gray32

    dct = scipy.fftpack.dct(scipy.fftpack.dct(stack, axis=1), axis=2)
    low = dct[:, :PHASH_SIZE, :PHASH_SIZE].reshape(len(stack), -1)
    bits = low > np.median(low, axis=1, keepdims=True)
    return [h.tobytes().hex() for h in np.packbits(bits.astype(np.uint8), axis=1)]


def dhash_batch(stack: np.ndarray) -> list[str]:
    """dHash of N 8×9 grayscale arrays (``(N, 8, 9)`` uint8); bit-identical per image."""
    bits = (stack[:, :, 1:] > stack[:, :, :-1]).reshape(len(stack), -1)
    return [h.tobytes().hex() for h in np.packbits(bits.astype(np.uint8), axis=1)]
