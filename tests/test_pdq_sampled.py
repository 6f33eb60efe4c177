"""Fast mode's PDQ filter evaluated only where PDQ samples it (``_pdqext.c``, ``pdq_sampled``):
the reference's values up to float rounding, against pdqhash's own floats."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pdqhash
import pytest
from test_pdqext import _cases

from shardguard.indexes import imagehashes
from shardguard.pipelines.sample_data import make_image

_pdqext = pytest.importorskip("shardguard.indexes._pdqext", reason="C extension not built here "
                              "(no compiler): imagehashes.pdq falls back to pdqhash")


def _sampled(a: np.ndarray, flips: int = 0, step: int = 3):
    a = np.ascontiguousarray(a)
    return _pdqext.hash(a, a.shape[0], a.shape[1], True, step, flips, True)


def _tol(ref: np.ndarray) -> float:
    """Float rounding of a 16×16 DCT of 64×64 filtered pixel values (up to 255): relative to the
    larger of the coefficients' and the pixels' scale (noise has small coefficients, not small pixels)."""
    return 1e-5 * max(255.0, float(np.abs(ref).max()))


def _bits(hex_or_bytes) -> np.ndarray:
    raw = bytes.fromhex(hex_or_bytes) if isinstance(hex_or_bytes, str) else hex_or_bytes
    return np.unpackbits(np.frombuffer(raw, np.uint8))[::-1]  # bit k: coefficient k (row-major 16×16)


@pytest.mark.parametrize("i", range(len(_cases())))
def test_sampled_values_are_the_references_up_to_float_rounding(i):
    """The 16×16 DCT within float rounding (``_tol``) of pdqhash's floats, the same quality, and a hash bit
    differs only where the reference's coefficient lies within that rounding of the median."""
    a = np.ascontiguousarray(_cases()[i])
    bits, quality, floats = _sampled(a)
    ref_hex, ref_quality = imagehashes.pdq_reference(a)
    assert quality == ref_quality
    if min(a.shape[:2]) < 5:  # the reference's all-zero hash
        assert bits == bytes(32)
        return
    ref = np.asarray(pdqhash.compute_float(a)[0], np.float64)[::-1]
    ours = np.frombuffer(floats, np.float32).astype(np.float64)
    tol = _tol(ref)
    assert np.abs(ours - ref).max() <= tol
    differ = np.nonzero(_bits(bits) != _bits(ref_hex))[0]
    assert all(abs(ref[k] - np.sort(ref)[127]) <= 2 * tol for k in differ)


def test_real_shaped_images_hash_alike_and_the_views_agree():
    """Photos of many shapes (seeded): the same hash as the reference on nearly every image (bits
    differ only by rounding at the median), and the mirror, flip and 180° DCTs agree with the exact
    path's within rounding."""
    rng = np.random.default_rng(11)
    worst = 0
    for i in range(24):
        w, h = int(rng.integers(100, 1100)), int(rng.integers(100, 1100))
        a = np.ascontiguousarray(np.asarray(make_image(i, max(w, h)).convert("RGB").resize((w, h))))
        bits, quality, floats, views = _sampled(a, flips=7)
        exact = _pdqext.hash(a, h, w, True, 3, 7)
        worst = max(worst, int(np.sum(_bits(bits) != _bits(exact[0]))))
        assert abs(quality - exact[1]) <= 1
        for got, want in ((floats, exact[2]), (views, exact[3])):
            got, want = np.frombuffer(got, np.float32), np.frombuffer(want, np.float32)
            assert np.abs(got - want).max() <= _tol(want)
    assert worst <= 2, worst


@pytest.mark.parametrize("shape", [(64, 64), (97, 130), (700, 512)])
def test_sampled_luma_input_equals_gray_rgb(shape):
    """Step 1 (a JPEG's luma plane) gives exactly the sampled hash and DCTs of R = G = B = luma."""
    y = np.random.default_rng(shape[1]).integers(0, 256, size=shape, dtype=np.uint8)
    rgb = np.repeat(y[:, :, None], 3, axis=2)
    assert _sampled(y, 7, step=1) == _sampled(rgb, 7)


def test_sampled_pdq_in_threads():
    """Eight threads at once (the GIL is released; buffers are per call) give each image's own hash."""
    rng = np.random.default_rng(2)
    imgs = [np.ascontiguousarray(rng.integers(0, 256, size=(300 + 7 * i, 260, 3), dtype=np.uint8))
            for i in range(16)]
    want = [_sampled(a) for a in imgs]
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(_sampled, imgs)) == want


def test_pdq_takes_the_sampled_path_only_when_asked():
    """``imagehashes.pdq`` is exact by default (bit-identical to pdqhash); ``sampled=True`` is the
    fast path's: equal here up to rounding, and computed by the sampled kernel."""
    img = make_image(5, 640).convert("RGB").resize((640, 480))
    packed = np.ascontiguousarray(np.asarray(img))
    assert imagehashes.pdq(img) == imagehashes.pdq_reference(packed)
    h, q = imagehashes.pdq(img, sampled=True)
    assert (bytes.fromhex(h), q) == _sampled(packed)[:2]


def _shapes():
    rng = np.random.default_rng(5)
    fixed = [(64, 64), (5, 5), (4, 9), (63, 65), (129, 128), (7, 300), (300, 7), (256, 256), (1000, 37)]
    return fixed + [(int(rng.integers(5, 700)), int(rng.integers(5, 700))) for _ in range(8)]


@pytest.mark.parametrize("shape", _shapes())
def test_the_numpy_twin_gives_the_kernels_bits(shape):
    """``pdq_sampled.py`` replays the kernel's operations in its order: the same hash, quality, DCT and
    view DCTs, bit for bit, on luma and RGB, noise and smooth content, with and without views — so
    a worker without the compiled extension hashes as one with it."""
    from shardguard.indexes.pdq_sampled import pdq_sampled

    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    for rgb in (False, True):
        a = rng.integers(0, 256, size=shape + ((3,) if rgb else ()), dtype=np.uint8)
        if rgb:
            a = np.ascontiguousarray((np.cumsum(a.astype(np.int32), axis=0) % 256).astype(np.uint8))
        for flips in (0, 1, 7):
            bits, quality, floats, *views = _sampled(a, flips, step=3 if rgb else 1)
            twin = pdq_sampled(a, flips)
            assert (bits, quality) == twin[:2]
            assert np.array_equal(np.frombuffer(floats, np.float32).reshape(16, 16), twin[2])
            if flips:
                assert np.array_equal(np.frombuffer(views[0], np.float32).reshape(3, 16, 16), twin[3])


def test_without_the_extension_fast_pdq_falls_back_to_the_twin(monkeypatch):
    """A worker where the C extension was not built computes fast mode's PDQ (and its DCTs) through
    the numpy twin: the same values as the kernel."""
    import sys

    import shardguard.indexes as pkg

    img = make_image(11, 333).convert("L")
    want, want_dct = imagehashes.pdq(img, sampled=True), imagehashes.pdq_with_dct(img, 1, sampled=True)
    monkeypatch.setitem(sys.modules, "shardguard.indexes._pdqext", None)
    monkeypatch.delattr(pkg, "_pdqext", raising=False)
    monkeypatch.setattr(imagehashes, "pdq_reference", lambda px: pytest.fail("took pdqhash, not the twin"))
    assert imagehashes.pdq(img, sampled=True) == want
    got = imagehashes.pdq_with_dct(img, 1, sampled=True)
    assert got[:2] == want_dct[:2] and np.array_equal(got[2], want_dct[2])
