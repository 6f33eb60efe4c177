"""``views.uniform_border`` (vectorised over the pixel array) against the previous implementation,
kept here as the oracle: Pillow's 1-pixel crops, a point() lookup table and getbbox(), whose
out-of-image crops are zero-filled."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from shardguard.indexes import imagehashes, views
from shardguard.pipelines.sample_data import encode, make_image


def _oracle(gray: np.ndarray, tol: int = 8, min_frac: float = 0.02):
    img = Image.fromarray(gray)
    w, h = img.size
    if h < 16 or w < 16:
        return None
    counts, boxes = [0, 0, 0, 0], {}
    for i, box in enumerate(((0, 0, w, 1), (0, h - 1, w, h), (0, 0, 1, h), (w - 1, 0, w, h))):
        lo, hi = img.crop(box).getextrema()
        if hi - lo > tol:
            continue
        value = (lo + hi) // 2
        if value not in boxes:
            boxes[value] = img.point([255 if abs(x - value) > tol else 0 for x in range(256)]).getbbox()
        bbox = boxes[value]
        if bbox is None:
            return None
        n = (bbox[1], h - bbox[3], bbox[0], w - bbox[2])[i]
        crop = ((0, n, w, n + 16), (0, h - n - 16, w, h - n), (n, 0, n + 16, h), (w - n - 16, 0, w - n, h))[i]
        a = np.asarray(img.crop(crop))
        counts[i] = n + views._ringing((a, a[::-1], a.T, a.T[::-1])[i], value)
    if counts[0] + counts[1] >= h - 8 or counts[2] + counts[3] >= w - 8:
        return None
    if max(counts[0], counts[1]) < min_frac * h and max(counts[2], counts[3]) < min_frac * w:
        return None
    return tuple(counts)


def _cases():
    rng = np.random.default_rng(21)
    out = []
    for i in range(40):  # photos letter-boxed on random sides in random colours, JPEG-compressed
        w, h = int(rng.integers(40, 400)), int(rng.integers(40, 400))
        img = make_image(i, max(w, h)).resize((w, h))
        pads = [int(rng.integers(0, 60)) * int(rng.random() < 0.6) for _ in range(4)]
        fill = tuple(int(v) for v in rng.choice([0, 3, 128, 250, 255], 3))
        canvas = Image.new("RGB", (w + pads[2] + pads[3], h + pads[0] + pads[1]), fill)
        canvas.paste(img, (pads[2], pads[0]))
        out.append(np.asarray(Image.open(io.BytesIO(encode(canvas, quality=int(rng.integers(60, 96))))).convert("L")))
    content = np.zeros((200, 120), np.uint8)
    content[95:100, 40:80] = 200  # content thinner than the 16 inner lines: their crop leaves the image
    out += [content, content.T.copy(), np.zeros((50, 50), np.uint8), np.full((64, 64), 255, np.uint8),
            rng.integers(0, 256, (90, 70), dtype=np.uint8), np.zeros((15, 300), np.uint8)]
    edge = np.zeros((100, 100), np.uint8)
    edge[:, 99] = 255  # content on the last column only: the left side's inner lines leave the image
    out.append(edge)
    return out


@pytest.mark.parametrize("i", range(47))
def test_uniform_border_equals_the_pillow_oracle(i):
    gray = _cases()[i]
    want = _oracle(gray)
    assert views.uniform_border(gray) == want
    assert views.uniform_border(Image.fromarray(gray).copy()) == want  # an "L" image: read in place


def test_the_oracle_cases_include_borders_and_no_borders():
    found = [_oracle(g) for g in _cases()]
    assert sum(f is not None for f in found) >= 15 and sum(f is None for f in found) >= 5


def test_luma_array_shares_pillow_memory_only_where_pillow_owns_it():
    """A large decoded "L" image is read in place (the array's pointer is Pillow's pixel memory); a
    small one is copied (cheaper than the export), and so is one over numpy memory (``fromarray``,
    whose export crashes Pillow 12); all give the pixels, and the shared array outlives its image."""
    import pyarrow as pa

    def decoded(side: int):
        a = np.asarray(make_image(3, side).convert("L"))
        img = Image.open(io.BytesIO(encode(Image.fromarray(a), "PNG")))
        img.load()
        return a, img

    a, big = decoded(400)  # 160 KB: above imagehashes._SHARE_BYTES
    shared = imagehashes.luma_array(big)
    assert np.array_equal(shared, a) and not shared.flags.writeable
    assert shared.ctypes.data == pa.array(big).buffers()[-1].address
    small_a, small = decoded(90)
    copied = imagehashes.luma_array(small)
    assert np.array_equal(copied, small_a) and copied.ctypes.data != pa.array(small).buffers()[-1].address
    over_numpy = Image.fromarray(a)
    assert over_numpy.readonly and np.array_equal(imagehashes.luma_array(over_numpy), a)
    del big  # the array keeps Pillow's memory alive (the hashes read it after the image is gone)
    __import__("gc").collect()
    others = [Image.new("L", (400, 400), 77) for _ in range(20)]  # would reuse freed memory
    assert np.array_equal(shared, a) and len(others) == 20
