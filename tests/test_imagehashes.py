"""Perceptual hash kernels against imagehash, pdqhash and the upstream reference values."""
from __future__ import annotations

import hashlib

import imagehash
import pytest
from PIL import Image

from shardguard.indexes import imagehashes
from shardguard.pipelines.sample_data import encode, make_image
from shardguard.transforms.decode import decode_image

TE_RES = "ThreatExchange/python-threatexchange/threatexchange/tests/hashing/resources"
BRIDGE = "ThreatExchange/pdq/data/reg-test-input/dih/bridge-1-original.jpg"


@pytest.mark.parametrize("seed", range(12))
def test_phash_dhash_bit_identical_to_imagehash_on_generated_images(seed):
    img = decode_image(encode(make_image(seed, size=97 + seed * 13), quality=80)).rgb
    assert imagehashes.phash(img.convert("L")) == str(imagehash.phash(img))
    assert imagehashes.dhash(img.convert("L")) == str(imagehash.dhash(img))


@pytest.mark.parametrize("name,phash,dhash", [("imagehash.png", "ba8c84536bd3c366", "0026273b2b19550e")])
def test_imagehash_reference_values(testdata, name, phash, dhash):
    img = Image.open(testdata / "imagehash/tests/data" / name)
    # imagehash's own expected strings are for the image as stored (its convert('L') of that mode)
    assert imagehashes.phash(img.convert("L")) == phash
    assert imagehashes.dhash(img.convert("L")) == dhash


def test_imagehash_identity_on_decoded_reference_images(testdata):
    for path in sorted((testdata / "imagehash/tests/data").glob("*.png")):
        rgb = decode_image(path.read_bytes()).rgb
        assert imagehashes.phash(rgb.convert("L")) == str(imagehash.phash(rgb)), path.name
        assert imagehashes.dhash(rgb.convert("L")) == str(imagehash.dhash(rgb)), path.name


@pytest.mark.parametrize("rel,expected,quality", [
    (f"{TE_RES}/LA.png", "accb6d39648035f8125c8ce6ba65007de7b54c67a2d93ef7b8f33b0611306715", 100),
    (f"{TE_RES}/I16.png", "de2ef0e99ecdfc1d248a0eb055f023d1d61e79c3920cbb55d561c02accab1763", 36),
    (f"{TE_RES}/rgb.jpeg", "fb4eed46cb8a6c78819ca06b756c541f7b07ef6d02c82fccd00f862166272cda", 100),
    (BRIDGE, "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22", 100),
])
def test_pdq_matches_python_threatexchange(testdata, rel, expected, quality):
    img = decode_image((testdata / rel).read_bytes())
    assert imagehashes.pdq(img.rgb) == (expected, quality)


@pytest.mark.parametrize("name", ["CMYK.jpg", "P.png", "1.png"])
def test_pdq_after_rgb_conversion_of_odd_modes(testdata, name):
    """CMYK would hash ~250 bits off without conversion; after it, all equal this reference."""
    img = decode_image((testdata / "ThreatExchange/pdq/data/misc-images/modes" / name).read_bytes())
    value, quality = imagehashes.pdq(img.rgb)
    assert value == "f8f8f0cee0f4a84f06370a22038f67f0b36e2ed596221e1d33e6b39c4e9c9b22"
    assert quality >= 50


def test_crypto_hashes_of_sample_b(testdata):
    data = (testdata / BRIDGE).read_bytes()
    assert hashlib.md5(data).hexdigest() == "d35c785545392755e7e4164457657269"
    assert hashlib.sha256(data).hexdigest() == "b5b0799616df52d475a3968dc7e54f1d0724c912244ffa6175bc786375dd7298"


def test_pdq_refuses_non_rgb():
    with pytest.raises(ValueError):
        imagehashes.pdq(make_image(1).convert("CMYK"))


def test_letterboxed_copy_is_far_without_preprocessing(testdata):
    a = imagehashes.pdq(decode_image((testdata / BRIDGE).read_bytes()).rgb)[0]
    b = imagehashes.pdq(decode_image((testdata / TE_RES / "letterboxed_sample-b.jpg").read_bytes()).rgb)[0]
    assert (int(a, 16) ^ int(b, 16)).bit_count() > 31


def test_phash_and_dhash_equal_imagehash_on_many_small_shapes():
    """Small images go through the compiled LANCZOS replica (bit for bit Pillow's): noise and smooth
    images of 150 random shapes up to 300 px (both sides of the 256-px switch to Pillow)."""
    import imagehash
    import numpy as np
    from PIL import Image

    from shardguard.indexes import imagehashes

    rng = np.random.default_rng(11)
    for i in range(150):
        h, w = (int(x) for x in rng.integers(9, 300, 2))
        seedimg = Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8))
        a = rng.integers(0, 256, (h, w), dtype=np.uint8) if i % 2 else np.asarray(seedimg.resize((w, h), Image.BICUBIC))
        g = Image.fromarray(a)
        assert imagehashes.phash(g) == str(imagehash.phash(g)), (h, w)
        assert imagehashes.dhash(g) == str(imagehash.dhash(g)), (h, w)
