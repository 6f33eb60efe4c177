"""Fast decode path (JPEG draft, pre-reduction) vs exact mode, and the batched hash kernels."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import run_scan

from shardguard.indexes import imagehashes
from shardguard.pipelines.sample_data import encode, make_image, shard_rows, write_shard
from shardguard.transforms.decode import decode_image
from shardguard.transforms.features import compute_row_features, decode_plan, hash_runner

HAM = lambda a, b: (int(a, 16) ^ int(b, 16)).bit_count()  # noqa: E731


def _row(data):
    return {"row": 0, "key": "k", "key_derived": False, "url": None, "caption": None, "status": "success",
            "image": data}


def _plan(hashes, clip=None, exact=False):
    r = hash_runner(hashes, 10**9, exact, clip)
    return decode_plan(r.extractors, exact)


def test_draft_only_without_pdq_and_not_in_exact_mode():
    assert _plan(("md5", "phash")) == (64, True)  # luma only: nothing reads colour
    assert _plan(("phash", "dhash")) == (128, True)  # dHash needs more pixels
    assert _plan(("phash",), 224) == (224, False)  # CLIP reads colour
    assert _plan(("phash", "pdq"))[0] is None
    assert _plan(("phash",), exact=True)[0] is None
    assert _plan(("md5",)) == (64, True)  # a decode that only validates the image


@pytest.mark.parametrize("hashes", [("phash", "dhash"), ("phash", "dhash", "pdq")])  # draft / reduce paths
def test_fast_hashes_within_documented_bounds_of_exact(hashes):
    worst = {"phash": 0, "dhash": 0}
    for i in range(30):
        data = encode(make_image(i, 512 + 64 * (i % 4)), quality=85)
        fast, _ = compute_row_features(_row(data), hashes, 10**9, None, exact=False)
        exact, _ = compute_row_features(_row(data), hashes, 10**9, None, exact=True)
        for k in worst:
            worst[k] = max(worst[k], HAM(fast[k], exact[k]))
    assert worst["phash"] <= 2 and worst["dhash"] <= 4, worst  # README: measured bounds
    with_pdq, _ = compute_row_features(_row(data), ("phash", "pdq"), 10**9, None, exact=False)
    plane = decode_image(data, exact=False, luma=True)  # PDQ: full size, luma plane (no chroma)
    assert plane.pixels.mode == "L" and plane.pixels.size == decode_image(data).rgb.size
    assert with_pdq["pdq"] == imagehashes.pdq(plane.pixels, sampled=True)[0]  # the filter only where sampled
    exact_pdq, _ = compute_row_features(_row(data), ("phash", "pdq"), 10**9, None, exact=True)
    assert exact_pdq["pdq"] == imagehashes.pdq(decode_image(data).rgb)[0]  # --exact-decode: RGB, as reference


def test_fast_pdq_reads_the_luma_plane_within_rounding_of_the_rgb_decode():
    """Fast mode hashes PDQ from a colour JPEG's luma plane (Y within one level of PDQ's luma of the
    RGB decode but where that clips); with CLIP on, colour is decoded anyway and PDQ reads it; exact mode always RGB."""
    from shardguard.indexes.imagehashes import pdq

    worst = 0
    for i in range(12):
        data = encode(make_image(40 + i, 320 + 48 * i), quality=85)
        fast, _ = compute_row_features(_row(data), ("pdq",), 10**9, None, exact=False)
        with_clip, _ = compute_row_features(_row(data), ("pdq",), 10**9, 224, exact=False)
        exact, _ = compute_row_features(_row(data), ("pdq",), 10**9, None, exact=True)
        rgb = decode_image(data).rgb
        y = np.asarray(decode_image(data, exact=False, luma=True).pixels, dtype=float)
        luma = np.asarray(rgb, dtype=float) @ np.array([0.299, 0.587, 0.114])
        d = np.abs(y - luma)  # rounding (more where the RGB decode clips saturated colours)
        assert np.percentile(d, 99) <= 1.0, np.percentile(d, 99)
        assert exact["pdq"] == pdq(rgb)[0] and with_clip["pdq"] == pdq(rgb, sampled=True)[0]
        worst = max(worst, HAM(fast["pdq"], exact["pdq"]))
    assert 0 < worst <= 16, worst  # differs (it is another decode) but by rounding noise, not content


def test_exact_decode_scan_is_bit_identical_to_imagehash(tmp_path):
    import imagehash

    items = [(f"c{i}", encode(make_image(i, 300)), "success") for i in range(5)]
    write_shard(str(tmp_path / "in" / "s.parquet"), shard_rows(items, "k"))
    for mode in ("fast", "exact"):
        extra = ["--exact-decode"] if mode == "exact" else []
        assert run_scan(["--input", str(tmp_path / "in" / "*.parquet"), "--output", str(tmp_path / mode),
                         "--hashes", "md5,phash,dhash", "--features-only", *extra]) == 0
    exact = pq.read_table(tmp_path / "exact" / "features" / "s.parquet").to_pylist()
    for rec, (_, data, _) in zip(exact, items):
        img = decode_image(data).rgb
        assert rec["phash"] == str(imagehash.phash(img)) and rec["dhash"] == str(imagehash.dhash(img))
    m = lambda d: json.loads((tmp_path / d / "manifest.json").read_text())  # noqa: E731
    assert m("exact")["features"]["fingerprint"] != m("fast")["features"]["fingerprint"]
    assert m("exact")["config"]["decode"]["exact"] is True


@pytest.mark.parametrize("n", [1, 7, 64])
def test_batched_kernels_bit_identical(n):
    rng = np.random.default_rng(n)
    stack32 = rng.integers(0, 256, (n, 32, 32), dtype=np.uint8)
    stack32[0] = 128  # a constant image: ties everywhere
    assert imagehashes.phash_batch(stack32) == [imagehashes.phash_from_gray32(a) for a in stack32]
    stack9 = rng.integers(0, 256, (n, 8, 9), dtype=np.uint8)
    assert imagehashes.dhash_batch(stack9) == [imagehashes.dhash_from_gray9x8(a) for a in stack9]
    real = np.stack([np.asarray(make_image(i, 96).convert("L").resize((32, 32))) for i in range(n)])
    assert imagehashes.phash_batch(real) == [imagehashes.phash_from_gray32(a) for a in real]


@pytest.mark.parametrize("orientation", [1, 6])
def test_fast_decode_reports_full_resolution_dimensions(orientation):
    import io

    from PIL import Image

    img = make_image(3, 512).resize((520, 300))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85, exif=exif)
    want = (520, 300) if orientation == 1 else (300, 520)  # 6: a quarter turn swaps the sides
    for exact in (True, False):
        rec, _ = compute_row_features(_row(buf.getvalue()), ("phash",), 10**9, None, exact=exact)
        assert (rec["width"], rec["height"]) == want, (exact, rec["width"], rec["height"])
    assert decode_image(buf.getvalue(), exact=False, draft_size=64).rgb.width < 300  # it was a draft


@pytest.mark.parametrize("h,w", [(64, 64), (64, 86), (86, 64), (128, 171), (33, 40), (32, 32), (17, 9),
                                 (255, 128), (256, 256), (64, 48), (9, 8)])
def test_batched_lanczos_equals_pillow_bit_for_bit(h, w):
    from PIL import Image

    from shardguard.indexes import lanczos

    rng = np.random.default_rng(h * 1000 + w)
    noise = rng.integers(0, 256, (6, h, w), dtype=np.uint8)
    binary = (rng.integers(0, 2, (6, h, w)) * 255).astype(np.uint8)  # clipping at both ends
    smooth = np.stack([np.asarray(make_image(i, 96).convert("L").resize((w, h))) for i in range(6)])
    for stack in (noise, binary, smooth):
        for ow, oh in ((32, 32), (9, 8)):
            want = np.stack([np.asarray(Image.fromarray(a).resize((ow, oh), Image.Resampling.LANCZOS)) for a in stack])
            np.testing.assert_array_equal(lanczos.resize_batch(stack, ow, oh), want)
            np.testing.assert_array_equal(lanczos.resize_many(list(stack), ow, oh), want)  # compiled, per image


@pytest.mark.parametrize("exact,hashes", [(True, ("md5", "phash", "dhash")), (False, ("md5", "phash", "dhash")),
                                          (False, ("phash",)), (False, ("phash", "dhash", "pdq"))])
def test_deferred_batch_hashes_equal_per_row_hashes(exact, hashes):
    from shardguard.transforms.features import finish_batch

    sizes = [(64, 64), (300, 200), (512, 512), (700, 300), (90, 60), (1100, 400)] * 3  # mixed shapes and paths
    rows = [_row(encode(make_image(i, 96).resize(s), quality=85)) for i, s in enumerate(sizes)]
    deferred = [compute_row_features(r, hashes, 10**9, None, exact=exact, defer=True)[0] for r in rows]
    finish_batch(deferred)
    direct = [compute_row_features(r, hashes, 10**9, None, exact=exact)[0] for r in rows]
    assert deferred == direct


@pytest.mark.parametrize("full,block", [((512, 512), 8), ((300, 200), 4), ((700, 517), 8), ((161, 99), 2),
                                        ((1000, 640), 8), ((255, 130), 3)])
def test_block_weights_equal_pillow_on_the_full_image_when_blocks_are_constant(full, block):
    """The fast path's resize of a reduced image is exactly Pillow's resize of the full image
    whenever the full image is constant on blocks (same integer sums), partial edge blocks too."""
    from PIL import Image

    from shardguard.indexes import lanczos

    rng = np.random.default_rng(block * 7 + full[0])
    small = rng.integers(0, 256, (4, -(-full[1] // block), -(-full[0] // block)), dtype=np.uint8)
    for ow, oh in ((32, 32), (9, 8)):
        want = [np.asarray(Image.fromarray(np.repeat(np.repeat(a, block, 0), block, 1)[:full[1], :full[0]])
                           .resize((ow, oh), Image.Resampling.LANCZOS)) for a in small]
        np.testing.assert_array_equal(lanczos.resize_batch(small, ow, oh, full, block), np.stack(want))
        np.testing.assert_array_equal(lanczos.resize_many(list(small), ow, oh, full, block), np.stack(want))
    with pytest.raises(ValueError, match="reduced by"):
        lanczos.resize_batch(small[:, :-1], 32, 32, full, block)
    with pytest.raises(ValueError, match="reduced by"):
        lanczos.resize_many(list(small[:, :-1]), 32, 32, full, block)


def test_the_compiled_resize_is_the_one_in_use():
    """Where the extension is built (CI builds it) the hashes use the compiled per-image resize, and
    it refuses buffers that do not match the sizes it is told."""
    from shardguard.indexes import lanczos

    kernel = lanczos.compiled()
    if kernel is None:
        pytest.skip("shardguard's C extension is not built here (no compiler): the numpy products serve")
    cw, ch = lanczos.coefficients(40, 32), lanczos.coefficients(30, 32)
    with pytest.raises(ValueError, match="buffer sizes"):
        kernel(bytes(30 * 40 - 1), 30, 40, cw, ch, 32, 32, True, True)


def test_draft_scale_is_recorded_for_the_hash_resize():
    from shardguard.transforms.decode import _draft_scale

    assert _draft_scale((512, 512), (64, 64)) == 8 and _draft_scale((700, 300), (350, 150)) == 2
    assert _draft_scale((701, 517), (88, 65)) == 8 and _draft_scale((100, 100), (100, 100)) == 1
    img = decode_image(encode(make_image(1, 512)), exact=False, draft_size=64)
    assert (img.scale, img.hash_block, img.hash_gray.size) == (8, 8, (64, 64))
    assert decode_image(encode(make_image(1, 512)), exact=True).hash_block == 1
    from PIL import Image

    from shardguard.transforms.decode import DecodedImage

    odd = DecodedImage(data=b"", pixels=Image.new("RGB", (64, 64)), source_mode="RGB", frames=1, exact=False,
                       size=(500, 500), scale=8)  # 500 px by 8 would be 63 px: not a whole-block draft
    assert odd.hash_block == 1


def test_fast_hashes_on_real_photos_within_documented_bounds(testdata):
    """README table: real photos (testdata, re-encoded at 7 sizes) stray further than synthetic
    images; the bounds below are the measured maxima (bench_fast_accuracy.py, q75 and q92)."""
    from shardguard.pipelines.sample_data import photo_variants

    paths = sorted(p for p in testdata.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    worst: dict[str, int] = {}
    same = 0
    corpus = photo_variants(paths, qualities=(75,))
    for data in corpus:
        exact, _ = compute_row_features(_row(data), ("phash", "dhash"), 10**9, None, exact=True)
        for label, hashes in (("p64", ("phash",)), ("pd128", ("phash", "dhash")), ("pdq", ("phash", "dhash", "pdq"))):
            fast, _ = compute_row_features(_row(data), hashes, 10**9, None, exact=False)
            for name in ("phash", "dhash"):
                if name in hashes:
                    d = HAM(fast[name], exact[name])
                    worst[f"{label}/{name}"] = max(worst.get(f"{label}/{name}", 0), d)
                    same += label == "p64" and d == 0
    assert worst["p64/phash"] <= 8 and worst["pd128/phash"] <= 6 and worst["pd128/dhash"] <= 14, worst
    assert worst["pdq/phash"] <= 8 and worst["pdq/dhash"] <= 9, worst
    assert same >= 0.8 * len(corpus)  # 85% measured; the first fast path (plain 64-px resize): 73%


def test_luma_only_draft_when_only_phash_dhash_read_pixels():
    """A colour JPEG is decoded to its luma channel when nothing needs colour: Y is within one
    level of Pillow's RGB → L, colour is refused (never gray RGB), and CLIP runs still decode colour."""
    from shardguard.indexes.imagehashes import hash_input, phash_from_gray32

    data = encode(make_image(5, 512), quality=90)
    luma = decode_image(data, exact=False, draft_size=64, luma=True)
    colour = decode_image(data, exact=False, draft_size=64)
    assert luma.pixels.mode == "L" and colour.pixels.mode == "RGB"
    assert luma.source_mode == "RGB" and (luma.width, luma.height) == (512, 512)
    diff = np.abs(np.asarray(luma.gray, dtype=int) - np.asarray(colour.gray, dtype=int))
    assert diff.max() <= 1 and diff.any()  # rounding differences exist, and are at most one level
    with pytest.raises(RuntimeError, match="luma plane only"):
        luma.rgb  # noqa: B018 - colour was never decoded: asking for it is a planning bug, not gray RGB
    assert decode_image(data, exact=True, luma=True).pixels.mode == "RGB"  # exact mode: never a draft
    # the features stage takes the luma path for hashes only, the colour one when CLIP reads pixels
    ph = lambda img: phash_from_gray32(hash_input(img, 32, 32))  # noqa: E731
    for i in range(12):
        data = encode(make_image(i, 384 + 32 * i), quality=85)
        hashes_only, _ = compute_row_features(_row(data), ("md5", "phash"), 10**9, None, exact=False)
        with_clip, _ = compute_row_features(_row(data), ("phash",), 10**9, 224, exact=False)
        assert hashes_only["phash"] == ph(decode_image(data, exact=False, draft_size=64, luma=True))
        assert with_clip["phash"] == ph(decode_image(data, exact=False, draft_size=224))


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_grayscale_and_cmyk_jpegs_on_the_fast_path(mode):
    import io

    buf = io.BytesIO()
    make_image(6, 384).convert(mode).save(buf, "JPEG", quality=90)
    fast = decode_image(buf.getvalue(), exact=False, draft_size=64, luma=True)
    assert fast.source_mode == mode and fast.pixels.mode == ("L" if mode == "L" else "RGB")
    assert fast.pixels.width < 384 and fast.width == 384  # still a draft
    f, _ = compute_row_features(_row(buf.getvalue()), ("phash", "dhash"), 10**9, None, exact=False)
    e, _ = compute_row_features(_row(buf.getvalue()), ("phash", "dhash"), 10**9, None, exact=True)
    assert HAM(f["phash"], e["phash"]) <= 8 and HAM(f["dhash"], e["dhash"]) <= 14  # README bounds


def test_banded_block_weights_match_pillows_coefficients():
    """The fallback block path's weights (no compiled extension), evaluated on each output's band
    only, are Pillow's fixed-point LANCZOS coefficients (the exact per-tap loop): workers with and
    without the extension hash alike."""
    from shardguard.indexes import lanczos

    for full, out in ((700, 32), (128, 32), (33, 32), (1000, 9), (512, 8), (64, 64), (5, 32), (257, 8)):
        fast, exact = lanczos._weights_vectorised(full, out), lanczos.coefficients_reference(full, out)
        assert fast.shape == exact.shape == (out, full)
        np.testing.assert_array_equal(fast, exact, err_msg=f"{full} -> {out}")


@pytest.mark.parametrize("out", [32, 9, 8, 64])
def test_compiled_weights_are_pillows_integers_summed_over_blocks(out):
    """The compiled weights (``_pdqext.block_weights``) equal the tap-by-tap Python oracle of Pillow's
    coefficients exactly, whole (block 1) and summed over blocks, for every size up to 300 and more."""
    from shardguard.indexes import _pdqext, lanczos

    for full in [*range(1, 301), 511, 700, 1000, 1023, 2000]:
        exact = lanczos.coefficients_reference(full, out)
        for block in (1, 2, 3, 4, 8):
            got = np.frombuffer(_pdqext.block_weights(full, block, out), np.float64).reshape(out, -1)
            np.testing.assert_array_equal(got, np.add.reduceat(exact, np.arange(0, full, block), axis=1))
    with pytest.raises(ValueError, match="positive"):
        _pdqext.block_weights(0, 1, 32)
