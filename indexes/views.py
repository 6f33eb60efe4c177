"""Views of an image for finding modified copies: cheap query-side views from the one decode, and the
richer set of views of a confirmed match (a seed) that hash expansion compares the dataset against.

PDQ's dihedral views come from the one PDQ computation: the compiled hasher decimates its filtered
luma a second time on the mirrored / flipped sample grid (``_pdqext.c::flipped_dcts``; Meta's
reference flips DCT signs instead, which is exact only when the box window is odd: measured on
real photos, p90 28 bits off, worst 84), and a transposed image's DCT is the transposed DCT.
pHash's mirror is the mirrored 32×32 array before its DCT. A uniform border (letter-box, padding, a frame) is found from
the rows and columns whose pixels do not vary, and trimmed.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

from shardguard.indexes.imagehashes import luma_array


def pdq_bits(dct: np.ndarray) -> str:
    """PDQ's hash of a 16×16 DCT: bit k set when coefficient k is above the median (Meta's order)."""
    flat = dct.reshape(256)
    bits = flat > np.sort(flat)[127]
    return np.packbits(bits.reshape(32, 8), axis=1, bitorder="little")[::-1].tobytes().hex()


# view → (which of the four DCTs: as-is, mirror, flip, rot180; transposed?). Rotations are clockwise:
# rot90 = transpose after a vertical flip, rot270 = transpose after a mirror.
_DIHEDRAL = {"mirror": (1, False), "flip": (2, False), "rot180": (3, False), "transpose": (0, True),
             "rot90": (2, True), "rot270": (1, True), "transpose_anti": (3, True)}


def dihedral(dcts: np.ndarray, view: str) -> np.ndarray:
    """The 16×16 DCT of a mirrored / flipped / rotated image, from ``imagehashes.pdq_with_dct``'s four
    DCTs (a transposed image's DCT is the transposed DCT: same filters, same sample grid)."""
    k, transposed = _DIHEDRAL[view]
    return dcts[k].T if transposed else dcts[k]


DIHEDRAL = ("mirror", "flip", "rot180", "rot90", "rot270", "transpose", "transpose_anti")


def uniform_border(gray, tol: int = 8, min_frac: float = 0.02) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) rows/columns of a uniform border (a letter-box, padding, a frame) of
    an "L" image (or uint8 array), or None when no side has ≥ ``min_frac`` of border. A side's border
    is its run of lines whose pixels stay within ``tol`` of its outermost line's value, extended over
    JPEG's ringing (``_ringing``). Vectorised over the pixel array (uint8 comparisons and row / column
    reductions): img2dataset's default resize letter-boxes most images, so this runs on most rows."""
    a = gray if isinstance(gray, np.ndarray) else luma_array(gray)
    h, w = a.shape
    if h < 16 or w < 16:
        return None
    counts, boxes = [0, 0, 0, 0], {}
    for i, line in enumerate((a[0], a[h - 1], a[:, 0], a[:, w - 1])):
        lo, hi = int(line.min()), int(line.max())
        if hi - lo > tol:
            continue  # the usual case (no border on this side), decided from its outermost line
        value = (lo + hi) // 2
        if value not in boxes:  # sides of one colour share the pass
            boxes[value] = _content_box(a, value, tol)
        box = boxes[value]
        if box is None:
            return None  # the whole image is uniform: nothing to trim to
        n = (box[1], h - box[3], box[0], w - box[2])[i]
        counts[i] = n + _ringing(_inner(a, i, n), value)
    if counts[0] + counts[1] >= h - 8 or counts[2] + counts[3] >= w - 8:
        return None  # (nearly) the whole image is uniform: nothing to trim to
    if max(counts[0], counts[1]) < min_frac * h and max(counts[2], counts[3]) < min_frac * w:
        return None
    return tuple(counts)


def _content_box(a: np.ndarray, value: int, tol: int) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom), exclusive ends, of the pixels more than ``tol`` from ``value``
    (Pillow's ``getbbox`` convention), or None when there are none."""
    far = (a < value - tol) if value - tol > 0 else np.zeros(a.shape, bool)
    if value + tol < 255:
        far |= a > value + tol
    rows = np.flatnonzero(far.any(axis=1))
    if not len(rows):
        return None
    cols = np.flatnonzero(far.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _inner(a: np.ndarray, side: int, n: int, depth: int = 16) -> np.ndarray:
    """The ``depth`` lines just inside side ``side``'s border of ``n`` lines, outermost first (zeros
    where they would lie outside the image)."""
    h, w = a.shape
    r0, r1, c0, c1 = ((n, n + depth, 0, w), (h - n - depth, h - n, 0, w), (0, h, n, n + depth),
                      (0, h, w - n - depth, w - n))[side]
    out = np.zeros((r1 - r0, c1 - c0), np.uint8)
    rr0, rr1, cc0, cc1 = max(r0, 0), min(r1, h), max(c0, 0), min(c1, w)
    if rr0 < rr1 and cc0 < cc1:
        out[rr0 - r0:rr1 - r0, cc0 - c0:cc1 - c0] = a[rr0:rr1, cc0:cc1]
    return (out, out[::-1], out.T, out.T[::-1])[side]


def _ringing(inner: np.ndarray, value: int, block: int = 8) -> int:
    """Lines just inside a strict border run that are still the border, blurred by JPEG ringing
    (within one 8-pixel block of the edge): those whose mean distance from the border value is under
    half that of the content a block further in. Measured on bordered photos (bench_robust.py): a
    strict run alone stopped 1-6 px short, which moved PDQ of the trimmed view up to 90 bits."""
    if len(inner) < 2 * block or inner.shape[1] == 0:
        return 0
    dev = np.abs(inner[: 2 * block].astype(np.int16) - int(value)).sum(axis=1).tolist()
    ref = sorted(dev[block:])[block // 2]  # the median line of the content a block further in
    k = 0
    while k < block and dev[k] < 0.5 * ref:
        k += 1
    return k


def trimmed(img: Image.Image, border) -> Image.Image:
    """``img`` without its uniform border (coordinates in ``img``'s pixels)."""
    top, bottom, left, right = border
    return img.crop((left, top, img.width - right, img.height - bottom))


def seed_views(img: Image.Image, full: bool = False) -> dict[str, Image.Image]:
    """Views of a confirmed match (an RGB image) that modified copies of it may equal: mirror, crops
    (centre and corners), zoom-outs (padded), small rotations (black and white fill), caption strips
    (top and bottom, dark and light). ``full`` adds more of each. A seed's views cost once per seed,
    not per row: the default is already rich."""
    out: dict[str, Image.Image] = {"mirror": ImageOps.mirror(img)}
    out.update(_crops(img, (0.95, 0.9, 0.85, 0.8, 0.7) + ((0.75, 0.6) if full else ()),
                      (0.95, 0.9, 0.85, 0.8, 0.7) if full else (0.9, 0.8)))
    angles = (2, 4, 6, 8) + ((1, 3, 5, 7, 10) if full else ())
    for a in sorted(angles + tuple(-a for a in angles)):
        for fill, name in _FILLS[:2]:
            out[f"rot{a}{name}"] = img.rotate(a, resample=Image.Resampling.BILINEAR, fillcolor=fill)
    for pad in (0.05, 0.1, 0.2):
        for fill, name in _FILLS[: 3 if full else 2]:
            px, py = int(img.width * pad), int(img.height * pad)
            out[f"pad{int(pad * 100)}{name}"] = ImageOps.expand(img, border=(px, py, px, py), fill=fill)
    for frac in (0.1, 0.15) + ((0.2,) if full else ()):
        out.update(_strips(img, frac))
    return out


_FILLS = (((0, 0, 0), "k"), ((255, 255, 255), "w"), ((128, 128, 128), "g"))


def _crops(img: Image.Image, centre: tuple, corners: tuple) -> dict[str, Image.Image]:
    """Centre crops keeping each fraction of the sides, and corner crops (tl, tr, bl, br)."""
    w, h = img.size
    out = {}
    for f in centre:
        cw, ch = int(w * f), int(h * f)
        out[f"crop{round(f * 100)}"] = img.crop(((w - cw) // 2, (h - ch) // 2, (w + cw) // 2, (h + ch) // 2))
    for f in corners:
        cw, ch = int(w * f), int(h * f)
        for name, (x, y) in (("tl", (0, 0)), ("tr", (w - cw, 0)), ("bl", (0, h - ch)), ("br", (w - cw, h - ch))):
            out[f"crop{round(f * 100)}{name}"] = img.crop((x, y, x + cw, y + ch))
    return out


def _strips(img: Image.Image, frac: float) -> dict[str, Image.Image]:
    """The image with a caption-like strip (dark or light) over its top or bottom ``frac``."""
    w, h = img.size
    s = max(1, int(h * frac))
    out = {}
    for pos, y in (("top", 0), ("bottom", h - s)):
        for colour, name in (((20, 20, 20), "k"), ((235, 235, 235), "w")):
            v = img.copy()
            v.paste(colour, (0, y, w, y + s))
            out[f"strip{pos}{round(frac * 100)}{name}"] = v
    return out
