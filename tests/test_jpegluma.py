"""Fast mode's one-call luma decode (``transforms/jpegluma.py``) gives Pillow's luma draft exactly, and
leaves to Pillow's path everything it is not sure of."""
from __future__ import annotations

import io

import numpy as np
import pytest
from hostile import EXPECTED, hostile_images
from PIL import Image

from shardguard.pipelines.sample_data import make_image
from shardguard.transforms import decode, jpegluma
from shardguard.transforms.decode import DecodeError, decode_image


def _jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **kw)
    return buf.getvalue()


def _wide(seed: int, w: int, h: int) -> Image.Image:
    return make_image(seed, max(w, h, 64)).resize((w, h), Image.Resampling.BILINEAR)


# every layout an encoder produces: subsampling, progressive, restart markers, odd and tiny sizes
LAYOUTS = {
    "baseline 4:2:0 q95": (_wide(1, 256, 256), dict(quality=95)),
    "4:4:4": (_wide(2, 300, 200), dict(quality=90, subsampling=0)),
    "4:2:2": (_wide(3, 199, 301), dict(quality=80, subsampling=1)),
    "progressive": (_wide(4, 512, 384), dict(quality=85, progressive=True)),
    "optimized huffman": (_wide(5, 640, 480), dict(quality=75, optimize=True)),
    "restart markers": (_wide(6, 333, 250), dict(quality=90, restart_marker_blocks=3)),
    "one pixel": (_wide(7, 1, 1), dict()),
    "thin": (_wide(8, 1000, 37), dict(quality=92)),
    "tall odd": (_wide(9, 17, 513), dict(quality=60)),
    "large": (_wide(10, 1536, 1100), dict(quality=88)),
}


def _pillow_only(monkeypatch):
    monkeypatch.setattr(decode, "decode_luma", lambda *a: None)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
@pytest.mark.parametrize("draft", [None, 64, 128, 512])
def test_same_pixels_as_pillows_luma_draft(name, draft, monkeypatch):
    img, kw = LAYOUTS[name]
    data = _jpeg(img, **kw)
    plane = jpegluma.decode_luma(data, 10**9, draft)
    assert plane is not None, "a plain YCbCr JPEG takes the one-call path"
    fast = decode_image(data, 10**9, exact=False, draft_size=draft, luma=True)
    _pillow_only(monkeypatch)
    ref = decode_image(data, 10**9, exact=False, draft_size=draft, luma=True)
    assert fast.pixels.mode == ref.pixels.mode == "L"
    assert np.array_equal(np.asarray(fast.pixels), np.asarray(ref.pixels))
    for field in ("size", "scale", "source_mode", "frames", "luma_only", "exact"):
        assert getattr(fast, field) == getattr(ref, field), field
    assert fast.luma_only and fast.width == img.width and fast.height == img.height


def test_draft_scale_is_pillows():
    data = _jpeg(_wide(11, 1536, 1100))
    for draft in (None, 64, 100, 128, 256, 512, 700, 2000):
        with Image.open(io.BytesIO(data)) as im:
            im.draft("L", (draft, draft) if draft else im.size)
            expected = -(-1536 // im.size[0])
        assert jpegluma.draft_scale((1536, 1100), draft) == expected, draft


def _segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2, "big") + body


def _with_segment(data: bytes, marker: int, body: bytes) -> bytes:
    return data[:2] + _segment(marker, body) + data[2:]


def test_header_walk():
    data = _jpeg(make_image(12, 64))
    assert jpegluma.plain_header(data)
    assert jpegluma.plain_header(_with_segment(data, 0xE1, b"http://ns.adobe.com/xap/1.0/\x00<x/>"))  # XMP
    assert not jpegluma.plain_header(_with_segment(data, 0xE1, b"Exif\x00\x00MM\x00*"))
    assert not jpegluma.plain_header(_with_segment(data, 0xE2, b"MPF\x00II*\x00"))
    assert jpegluma.plain_header(data[:2] + b"\xff" + data[2:])  # a fill byte before a marker
    assert not jpegluma.plain_header(b"\x89PNG\r\n\x1a\n")
    assert not jpegluma.plain_header(data[:2] + b"\x00\x01" + data[2:])  # not a marker
    assert not jpegluma.plain_header(data[:2] + b"\xff\xe0\x00\x01" + data[4:])  # impossible length
    assert not jpegluma.plain_header(data[:40])  # ends before the first scan


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_unusual_input_ends_as_before(name, monkeypatch):
    """Hostile and unusual files: the one-call path declines where Pillow must decide (EXIF
    orientation, CMYK, truncated, not a JPEG), so every outcome is Pillow's path's."""
    data = hostile_images()[name]

    def outcome():
        try:
            img = decode_image(data, 100_000_000, exact=False, luma=True)
        except DecodeError as exc:
            return exc.error_class
        return img.pixels.mode, img.size, img.source_mode, np.asarray(img.pixels).tobytes()

    fast = outcome()
    _pillow_only(monkeypatch)
    assert fast == outcome()
    if EXPECTED[name] != "ok":
        assert fast == EXPECTED[name]


def test_declines_what_it_is_not_sure_of():
    base = make_image(13, 96)
    assert jpegluma.decode_luma(_jpeg(base.convert("L")), 10**9, None) is None  # grayscale source: Pillow
    assert jpegluma.decode_luma(_jpeg(base.convert("CMYK")), 10**9, None) is None
    exif = Image.Exif()
    exif[0x0112] = 6
    assert jpegluma.decode_luma(_jpeg(base, exif=exif.tobytes()), 10**9, None) is None
    data = _jpeg(base)
    assert jpegluma.decode_luma(data, 96 * 96 - 1, None) is None  # over the pixel limit: Pillow refuses
    assert jpegluma.decode_luma(data[: len(data) - 200], 10**9, None) is None  # libjpeg warns: strict
    padded = data + b"\x00" * 50  # bytes after the end of image: both decoders ignore them
    assert np.array_equal(jpegluma.decode_luma(padded, 10**9, None)[0], jpegluma.decode_luma(data, 10**9, None)[0])


def test_without_simplejpeg_pillows_path_gives_the_same_pixels(monkeypatch):
    data = _jpeg(make_image(14, 200), quality=90)
    fast = decode_image(data, exact=False, luma=True)
    monkeypatch.setattr(jpegluma, "_simplejpeg", lambda: None)
    assert jpegluma.decode_luma(data, 10**9, None) is None
    assert np.array_equal(np.asarray(decode_image(data, exact=False, luma=True).pixels), np.asarray(fast.pixels))


def test_exact_mode_and_colour_never_take_it(monkeypatch):
    calls = []
    monkeypatch.setattr(decode, "decode_luma", lambda *a: calls.append(a))
    data = _jpeg(make_image(15, 128))
    decode_image(data, exact=True, luma=True)
    decode_image(data, exact=False, luma=False, draft_size=64)
    assert calls == []
    assert decode_image(data, exact=False, luma=True).luma_only and len(calls) == 1


@pytest.mark.parametrize("views", ["off", "default", "full"])
def test_features_from_the_plane_equal_pillows_path(views, monkeypatch):
    """PDQ (and its views' DCTs) read the decoded plane itself, pHash/dHash Pillow's view of the same
    memory: every feature equals the Pillow path's."""
    from shardguard.transforms.features import hash_runner

    rows = [{"row": i, "key": f"k{i}", "key_derived": False, "url": None, "status": "success",
             "image": _jpeg(img, **kw)} for i, (img, kw) in enumerate(LAYOUTS.values())]

    def records():
        runner = hash_runner(("md5", "sha256", "phash", "dhash", "pdq"), 10**9, exact=False, views=views)
        recs = runner.compute(rows)
        return [{k: (v.tobytes() if isinstance(v, np.ndarray) else v) for k, v in r.items()} for r in recs]

    fast = records()
    assert all(r["status"] == "ok" for r in fast)
    _pillow_only(monkeypatch)
    assert fast == records()


@pytest.mark.parametrize("compiled", [True, False])
def test_pdq_of_a_plane_equals_pdq_of_its_image(compiled, monkeypatch):
    import sys

    from shardguard.indexes import imagehashes

    if not compiled:  # the fallbacks (pdqhash, the sampled kernel's numpy twin) read planes too
        monkeypatch.setitem(sys.modules, "shardguard.indexes._pdqext", None)
    plane = jpegluma.decode_luma(_jpeg(_wide(16, 300, 211), quality=90), 10**9, None)[0]
    img = Image.fromarray(plane)
    for sampled in (False, True):
        assert imagehashes.pdq(plane, sampled) == imagehashes.pdq(img, sampled)
        a, b = imagehashes.pdq_with_dct(plane, 7, sampled), imagehashes.pdq_with_dct(img, 7, sampled)
        assert a[:2] == b[:2] and (a[2] is b[2] is None or np.array_equal(a[2], b[2]))
    with pytest.raises(ValueError, match="2-D uint8"):
        imagehashes.pdq(plane.astype(np.float32))


def test_the_plane_is_read_in_place():
    """pHash/dHash (when unreduced), the letter-box check and PDQ read the decoded plane itself."""
    small = decode_image(_jpeg(_wide(17, 199, 150)), exact=False, luma=True)  # under 256 px: unreduced
    assert small.plane is not None
    assert small.hash_gray_array is small.plane and small.gray_input is small.plane and small.pdq_input is small.plane
    large = decode_image(_jpeg(_wide(18, 512, 384)), exact=False, luma=True)  # reduced for pHash/dHash
    assert large.hash_gray.size == (171, 128)  # reduced by 3 (384 // 128)
    assert np.array_equal(large.hash_gray_array, np.asarray(large.hash_gray))
