"""The hash-type interface and the one explicit mapping of supported types.

A hash type knows its name, how to parse and validate a list entry, how to compute itself from the
stored bytes or a decoded image, its default match threshold and the range a threshold may take,
and what pixels it needs from the one decode of a row. Adding a type means adding one entry to
``HASH_TYPES`` below (nothing registers itself at import): the hashes feature extractor then
computes it, the features file gets its column, lists of that type parse and match, and a re-filter
matches it from the stored features (``tests/test_contracts.py`` does exactly that with a test-only
sha512).
"""
from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from shardguard.indexes import imagehashes

_HEX = frozenset(string.hexdigits)


class HashFormatError(ValueError):
    """A list entry or hash string that is not a valid hash of the expected type."""


class ImageLike(Protocol):
    """What ``HashType.compute`` needs: the stored bytes and the decoded pixels."""

    data: bytes
    exact: bool  # False in fast mode: hashes may take the measured shortcuts (README, Decode modes)

    @property
    def rgb(self): ...  # noqa: D102 - PIL RGB image

    @property
    def pdq_pixels(self): ...  # noqa: D102 - PIL RGB image, or "L" (luma) where that is all there is

    @property
    def pdq_input(self): ...  # noqa: D102 - ``pdq_pixels``, or the same luma as a 2-D uint8 array

    @property
    def gray(self): ...  # noqa: D102 - PIL "L" image

    @property
    def hash_gray(self): ...  # noqa: D102 - the "L" image pHash/dHash read (maybe pre-reduced)

    @property
    def hash_block(self) -> int: ...  # noqa: D102 - full-resolution pixels per hash_gray pixel


@dataclass(frozen=True)
class HashType:
    """One kind of hash: cryptographic (exact match) or perceptual (Hamming-distance match)."""

    name: str
    nbits: int
    perceptual: bool
    default_max_distance: int
    compute: Callable[[ImageLike], dict]
    min_quality: int = 0
    quality_column: str | None = None
    max_distance_limit: int = 0  # the largest threshold a list may ask for (beyond it: noise)
    min_side: int | None = None  # perceptual: smallest JPEG draft side it can hash from; None = full
    color: bool = True  # perceptual: reads colour (False: grayscale is enough)
    quality_range: tuple[int, int] = (0, 0)  # the values its quality column can take

    def check_thresholds(self, max_distance, min_quality) -> str | None:
        """Why a list's thresholds are impossible for this type (None when they are fine)."""
        if max_distance is not None and not 0 <= max_distance <= self.max_distance_limit:
            if not self.perceptual:
                return f"{self.name} is an exact hash: max_distance must be 0 (got {max_distance})"
            return (f"{self.name} max_distance must be in 0..{self.max_distance_limit} (usual: "
                    f"{self.default_max_distance}), got {max_distance}")
        lo, hi = self.quality_range
        if min_quality is not None and min_quality != 0 and not lo <= min_quality <= hi:
            if not self.quality_column:
                return f"{self.name} has no quality score: min_quality must be 0 (got {min_quality})"
            return (f"{self.name} min_quality must be in {lo}..{hi} (usual: {self.min_quality}), "
                    f"got {min_quality}")
        return None

    @property
    def confirms(self) -> bool:
        """Whether a match alone confirms a known-bad picture (may seed hash expansion): exact hashes
        and 256-bit PDQ. 64-bit perceptual hashes collide across unrelated pictures at their usual
        thresholds (measured: photos with a wide border land 4-8 bits from another photo's pHash)."""
        return not self.perceptual or self.nbits >= 256

    @property
    def hex_len(self) -> int:
        """Number of hex digits in the string form."""
        return self.nbits // 4

    @property
    def nbytes(self) -> int:
        """Number of bytes in the binary form (what indexes store)."""
        return self.nbits // 8

    def parse(self, text: str) -> str:
        """Normalise one hash string (strip, lowercase) and validate it; raise HashFormatError."""
        value = text.strip().lower()
        if value.startswith("0x"):
            value = value[2:]
        if not value:
            raise HashFormatError(f"empty {self.name} hash")
        bad = next((c for c in value if c not in _HEX), None)
        if bad is not None:
            raise HashFormatError(f"{self.name} hash has non-hex character {bad!r}")
        if len(value) != self.hex_len:
            raise HashFormatError(
                f"{self.name} hash must be {self.hex_len} hex digits, got {len(value)}")
        return value

    def to_codes(self, hexes) -> np.ndarray:
        """Hex strings to an ``(n, nbytes)`` uint8 array, the layout FAISS binary indexes use."""
        joined = "".join(hexes)
        return np.frombuffer(bytes.fromhex(joined), dtype=np.uint8).reshape(-1, self.nbytes)


def crypto_hash_type(name: str) -> HashType:
    """An exact (cryptographic) hash type for any ``hashlib`` algorithm: ``HASH_TYPES[name] = …``."""
    return HashType(name, hashlib.new(name).digest_size * 8, False, 0, _crypto(name))


def _crypto(name: str) -> Callable[[ImageLike], dict]:
    def compute(img: ImageLike) -> dict:
        return {name: hashlib.new(name, img.data).hexdigest()}
    compute.__name__ = f"compute_{name}"
    return compute


def _compute_phash(img: ImageLike) -> dict:
    return {"phash": imagehashes.phash_from_gray32(imagehashes.hash_input(img, 32, 32))}


def _compute_dhash(img: ImageLike) -> dict:
    return {"dhash": imagehashes.dhash_from_gray9x8(imagehashes.hash_input(img, 9, 8))}


def _compute_pdq(img: ImageLike) -> dict:
    # fast mode: the filter only where PDQ samples it (float rounding apart, the same values)
    value, quality = imagehashes.pdq(img.pdq_input, sampled=not img.exact)
    return {"pdq": value, "pdq_quality": quality}


# The one mapping of supported types. Defaults: pHash/dHash <= 8 bits, PDQ <= 31 with quality >= 50
# (ThreatExchange's PDQ_CONFIDENT_MATCH_THRESHOLD and PdqSignal.QUALITY_THRESHOLD). Limits: a quarter
# of the bits (unrelated images sit near half the bits apart; past a quarter a list matches noise).
# Draft sides: pHash reads 32x32 (64-px drafts), dHash's neighbour signs need 128 px (README).
HASH_TYPES: dict[str, HashType] = {
    "md5": HashType("md5", 128, False, 0, _crypto("md5")),
    "sha1": HashType("sha1", 160, False, 0, _crypto("sha1")),
    "sha256": HashType("sha256", 256, False, 0, _crypto("sha256")),
    "phash": HashType("phash", 64, True, 8, _compute_phash, max_distance_limit=16, min_side=64, color=False),
    "dhash": HashType("dhash", 64, True, 8, _compute_dhash, max_distance_limit=16, min_side=128, color=False),
    # PDQ reads luma only: fast mode may decode a JPEG's luma plane for it (bench_pdq_luma.py)
    "pdq": HashType("pdq", 256, True, 31, _compute_pdq, min_quality=50, quality_column="pdq_quality",
                    max_distance_limit=64, quality_range=(0, 100), color=False),
}


def get_hash_type(name: str) -> HashType:
    """Look a type up by name; the error lists the supported ones."""
    try:
        return HASH_TYPES[name.strip().lower()]
    except KeyError:
        raise HashFormatError(
            f"unknown hash type {name!r}; supported: {', '.join(sorted(HASH_TYPES))}") from None
