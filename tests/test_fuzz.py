"""Fuzzing the decode path and the list parsers: every input ends accounted, nothing escapes, no hang.

Bounded for CI; run longer with ``SHARDGUARD_FUZZ_EXAMPLES=20000 make test-slow`` (or any pytest
invocation of this file).
"""
from __future__ import annotations

import io
import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shardguard.indexes.hashtypes import HASH_TYPES
from shardguard.indexes.listformats import ListFormatError, parse_list
from shardguard.pipelines.sample_data import make_image
from shardguard.transforms.decode import DecodeError, decode_image
from shardguard.transforms.features import compute_row_features

EXAMPLES = int(os.environ.get("SHARDGUARD_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=5000, suppress_health_check=list(HealthCheck), derandomize=True)


def _seeds() -> list[bytes]:
    img = make_image(11, 48)
    out = []
    for fmt, kw in (("JPEG", {"quality": 80}), ("PNG", {}), ("GIF", {}), ("WEBP", {}), ("BMP", {}),
                    ("TIFF", {})):
        buf = io.BytesIO()
        (img.convert("P") if fmt == "GIF" else img).save(buf, fmt, **kw)
        out.append(buf.getvalue())
    return out


SEEDS = _seeds()


@st.composite
def mutated_images(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 8))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "dup"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[pos:pos + draw(st.integers(1, 256))]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif op == "dup":
            data[pos:pos] = data[pos:pos + draw(st.integers(1, 512))]
    return bytes(data)


def _check_decode(data: bytes) -> None:
    t = time.perf_counter()
    try:
        img = decode_image(data, max_pixels=4_000_000)
        assert img.rgb.mode == "RGB" and img.width > 0 and img.height > 0
    except DecodeError as exc:
        assert exc.error_class
    assert time.perf_counter() - t < 2.0, "per-image decode time bound"
    row = {"row": 0, "key": "k", "key_derived": False, "url": None, "caption": None, "status": "success",
           "image": data}
    rec, _ = compute_row_features(row, tuple(HASH_TYPES), 4_000_000)
    assert rec["status"] in ("ok", "error") and (rec["status"] == "ok" or rec["error_class"])


@FUZZ
@given(mutated_images())
def test_fuzz_decode_mutated_images(data):
    _check_decode(data)


@FUZZ
@given(st.binary(max_size=2048))
def test_fuzz_decode_random_bytes(data):
    _check_decode(data)


_LINE = st.one_of(
    st.text(alphabet="0123456789abcdefABCDEF", min_size=0, max_size=70),
    st.text(max_size=80),
    st.builds(lambda a, b: f"{a},{b}", st.text(alphabet="0123456789abcdef", max_size=66), st.text(max_size=20)),
    st.builds(lambda t, h: f"{t} {h}", st.sampled_from(list(HASH_TYPES) + ["x"]),
              st.text(alphabet="0123456789abcdef", max_size=66)),
    st.just("\ufeff"), st.just(""), st.just("# comment"),
)


@FUZZ
@given(st.lists(_LINE, max_size=20), st.sampled_from(["pdq", "md5", "phash"]),
       st.sampled_from(["auto", "plain", "typed", "csv", "jsonl"]), st.booleans())
def test_fuzz_list_parsers(lines, type_name, fmt, crlf):
    import tempfile

    from shardguard.indexes.listformats import ListOptions

    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
        f.write(("\r\n" if crlf else "\n").join(lines).encode("utf-8", "surrogatepass"))
        path = f.name
    try:
        out = parse_list(path, HASH_TYPES[type_name], ListOptions(fmt=fmt))
        assert out.stats["entries"] >= 1 and len(out.codes) == out.stats["entries"] * HASH_TYPES[type_name].nbytes
    except ListFormatError as exc:
        assert str(exc).startswith(f"{path}:")
    finally:
        os.unlink(path)


LONG = settings(max_examples=int(os.environ.get("SHARDGUARD_FUZZ_LONG", "5000")), deadline=5000,
                suppress_health_check=list(HealthCheck))


@pytest.mark.slow
@LONG
@given(mutated_images())
def test_fuzz_decode_long(data):
    """`make test-slow`: a longer, randomised (not derandomised) run of the decode fuzzer."""
    _check_decode(data)


def test_regression_tiff_without_width_is_a_decode_error():
    """Found by the long fuzz run: a TIFF missing ImageWidth made ``n_frames`` raise TypeError."""
    import pytest as _pytest

    frames = [make_image(11, 48), make_image(12, 48)]
    buf = io.BytesIO()
    frames[0].save(buf, "TIFF", save_all=True, append_images=frames[1:])
    tiff = buf.getvalue()
    width_tag = b"\x00\x01\x04\x00"  # tag 256 (ImageWidth), type LONG, little-endian
    second = tiff.index(width_tag, tiff.index(width_tag) + 1)
    broken = tiff[:second] + b"\x99\x99" + tiff[second + 2:]  # the second frame loses its width
    with _pytest.raises(DecodeError):
        decode_image(broken)
    rec, _ = compute_row_features({"row": 0, "key": "k", "key_derived": False, "url": None, "caption": None,
                                   "status": "success", "image": broken}, tuple(HASH_TYPES), 10**6)
    assert rec["status"] == "error" and rec["error_stage"] == "decode"
