"""The compiled PDQ (indexes/_pdqext.c) against the reference pdqhash binding, bit for bit."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pdqhash
import pytest
from PIL import Image

from shardguard.indexes import imagehashes
from shardguard.pipelines.sample_data import make_image

_pdqext = pytest.importorskip("shardguard.indexes._pdqext", reason="C extension not built here "
                              "(no compiler): imagehashes.pdq falls back to pdqhash")


def _ours(a: np.ndarray, floats: bool = False):
    a = np.ascontiguousarray(a)
    return _pdqext.hash(a, a.shape[0], a.shape[1], floats)


def _cases():
    rng = np.random.default_rng(7)
    out = [np.asarray(make_image(i, int(rng.integers(40, 700))).convert("RGB")) for i in range(16)]
    # the reference's special cases: 64×64 skips the filter, under 5 px hashes to zero; odd shapes;
    # a row length of 1 KiB multiples (the padded-stride path); noise (many near-median values)
    for shape in [(64, 64), (5, 5), (4, 9), (9, 4), (63, 65), (1000, 37), (37, 1000), (7, 300), (256, 512),
                  (129, 128)]:
        out.append(rng.integers(0, 256, size=shape + (3,), dtype=np.uint8))
    out.append(np.zeros((100, 80, 3), np.uint8))  # flat: every DCT value ties with the median
    out.append(np.asarray(make_image(3, 300).convert("L").convert("RGB")))
    return out


@pytest.mark.parametrize("i", range(len(_cases())))
def test_compiled_pdq_is_bit_identical_to_pdqhash(i):
    a = np.ascontiguousarray(_cases()[i])
    bits, quality, floats = _ours(a, True)
    assert (bits.hex(), quality) == imagehashes.pdq_reference(a)
    if min(a.shape[:2]) >= 5:  # compute_float has no small-image guard; the hash does
        ref, _ = pdqhash.compute_float(a)
        assert np.array_equal(np.frombuffer(floats, np.float32)[::-1], np.asarray(ref, np.float32))


def test_real_photos_and_pdq_reference_images(testdata):
    paths = sorted(p for p in testdata.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    assert paths
    for p in paths:
        a = np.ascontiguousarray(np.asarray(Image.open(p).convert("RGB")))
        assert imagehashes.pdq(Image.fromarray(a)) == imagehashes.pdq_reference(a), p


def test_large_image_and_threads():
    """A 2,100 × 2,000 image (its scratch is not kept between calls), and eight threads at once
    (the GIL is released; scratch is per thread) give the reference's hashes."""
    rng = np.random.default_rng(1)
    big = np.asarray(make_image(9, 2100).convert("RGB").resize((2100, 2000)))
    want_big = imagehashes.pdq_reference(np.ascontiguousarray(big))
    assert _ours(big)[0].hex() == want_big[0]
    assert imagehashes.pdq(Image.fromarray(big)) == want_big  # through Pillow's memory, or a copy
    imgs = [np.ascontiguousarray(rng.integers(0, 256, size=(300 + 7 * i, 260, 3), dtype=np.uint8))
            for i in range(16)]
    want = [imagehashes.pdq_reference(a) for a in imgs]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda a: (_ours(a)[0].hex(), _ours(a)[1]), imgs))
    assert got == want


def test_rejects_a_buffer_of_the_wrong_size():
    with pytest.raises(ValueError, match="rows x cols x step"):
        _pdqext.hash(b"\0" * 10, 2, 2)
    with pytest.raises(ValueError, match="step 1, 3 or 4"):
        _pdqext.hash(b"\0" * 20, 2, 2, False, 5)


@pytest.mark.parametrize("shape", [(64, 64), (97, 130), (700, 512)])
def test_luma_input_hashes_as_gray_rgb(shape):
    """Step 1 (luma bytes, e.g. a JPEG's Y plane) gives exactly the hash, quality and DCTs of the RGB
    image with R = G = B = luma, as pdqhash computes it (PDQ's luma formula returns the value)."""
    from PIL import Image

    y = np.random.default_rng(shape[0]).integers(0, 256, size=shape, dtype=np.uint8)
    rgb = np.ascontiguousarray(np.repeat(y[:, :, None], 3, axis=2))
    assert _pdqext.hash(y, *shape, True, 1, 7) == _pdqext.hash(rgb, *shape, True, 3, 7)
    assert imagehashes.pdq(Image.fromarray(y)) == imagehashes.pdq_reference(rgb)


def test_without_the_extension_pdq_falls_back_to_pdqhash(monkeypatch):
    """A worker where the C extension was not built computes the same hashes through pdqhash."""
    import shardguard.indexes as pkg

    img = make_image(11, 333).convert("RGB")
    want = imagehashes.pdq(img)
    monkeypatch.setitem(__import__("sys").modules, "shardguard.indexes._pdqext", None)
    monkeypatch.delattr(pkg, "_pdqext", raising=False)
    calls = []
    real = imagehashes.pdq_reference
    monkeypatch.setattr(imagehashes, "pdq_reference", lambda px: calls.append(1) or real(px))
    assert imagehashes.pdq(img) == want and calls == [1]


def test_pillow_memory_is_read_in_place():
    """``pdq`` reads Pillow's RGBX memory without a copy where Pillow exports it (Arrow) and the image
    is large enough to gain, with the same result as the packed-RGB path; images of odd sizes, from
    several sources."""
    imgs = [make_image(i, 97 + 61 * i).convert("RGB") for i in range(8)]
    imgs.append(Image.fromarray(np.random.default_rng(3).integers(0, 256, (33, 517, 3), dtype=np.uint8)))
    imgs.append(make_image(1, 200).convert("CMYK").convert("RGB"))
    for img in imgs:
        view = imagehashes._rgbx_view(img)
        packed = np.ascontiguousarray(np.asarray(img))
        if view is not None:
            assert _pdqext.hash(view, img.height, img.width, False, 4) == _pdqext.hash(packed, img.height, img.width)
        assert imagehashes.pdq(img) == imagehashes.pdq_reference(packed)
    big = imgs[7]  # 524 px: above imagehashes._SHARE_BYTES (smaller images are copied: cheaper)
    assert imagehashes._rgbx_view(big) is not None or not hasattr(big, "__arrow_c_array__")
    assert imagehashes._rgbx_view(imgs[0]) is None


_SCRATCH_CHILD = """
import threading, time
import numpy as np
from shardguard.indexes import _pdqext


def settled(want):
    # Thread.join() returns when Python is done with the thread; the C library runs the TLS destructor
    # that frees the scratch a moment later, as the OS thread exits: wait for it (bounded).
    end = time.monotonic() + 10
    while _pdqext.scratch_buffers() != want and time.monotonic() < end:
        time.sleep(0.001)
    return _pdqext.scratch_buffers()
img = np.zeros((300, 300, 3), np.uint8)
assert _pdqext.scratch_buffers() == 0
_pdqext.hash(img, 300, 300)
assert _pdqext.scratch_buffers() == 1  # this thread's, kept between calls
_pdqext.hash(img, 300, 300)
assert _pdqext.scratch_buffers() == 1
for _ in range(20):
    t = threading.Thread(target=_pdqext.hash, args=(img, 300, 300))
    t.start()
    t.join()
    assert settled(1) == 1  # the ended thread's scratch was freed
big = np.zeros((2100, 2100, 3), np.uint8)
t = threading.Thread(target=_pdqext.hash, args=(big, 2100, 2100))
t.start()
t.join()
assert settled(1) == 1
_pdqext.hash(big, 2100, 2100)  # replaces this thread's small scratch, then frees the huge one
assert _pdqext.scratch_buffers() == 0, _pdqext.scratch_buffers()
print("ok")
"""


def test_a_finished_thread_frees_its_scratch():
    """Scratch is kept per thread between calls and freed when the thread ends; a huge image's
    scratch (over 32 MiB) is not kept at all. Counted exactly in a fresh process, where no other
    thread hashes meanwhile (in the test process, threads of earlier pipelines may still be ending),
    waiting for each ended thread's destructor (it runs after ``join`` returns: the old flake)."""
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", _SCRATCH_CHILD], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]
