"""The hash-type interface and the one explicit mapping of supported types.

A hash type knows its name, how to parse and validate a list entry, how to compute itself from a
decoded image, how to measure distance, its default match threshold, and which index serves it.
Adding a type means adding one entry to ``HASH_TYPES`` below; nothing registers itself at import.
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

    @property
    def rgb(self): ...  # noqa: D102 - PIL RGB image

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

    @property
    def hex_len(self) -> int:
        """Number of hex digits in the string form."""
        return self.nbits // 4

    @property
    def nbytes(self) -> int:
        """Number of bytes in the binary form (what indexes store)."""
        return self.nbits // 8

    @property
    def index_kind(self) -> str:
        """``"exact"`` (sorted array lookup) or ``"binary"`` (FAISS Hamming index)."""
        return "binary" if self.perceptual else "exact"

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

    def distance(self, a: str, b: str) -> int:
        """Hamming distance between two hex hashes of this type (0/1 semantics for exact types)."""
        diff = int(a, 16) ^ int(b, 16)
        if not self.perceptual:
            return 0 if diff == 0 else self.nbits
        return diff.bit_count()

    def to_codes(self, hexes) -> np.ndarray:
        """Hex strings to an ``(n, nbytes)`` uint8 array, the layout FAISS binary indexes use."""
        joined = "".join(hexes)
        return np.frombuffer(bytes.fromhex(joined), dtype=np.uint8).reshape(-1, self.nbytes)


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
    value, quality = imagehashes.pdq(img.rgb)
    return {"pdq": value, "pdq_quality": quality}


# The one mapping of supported types. Defaults: pHash/dHash <= 8 bits, PDQ <= 31 with quality >= 50
# (ThreatExchange's PDQ_CONFIDENT_MATCH_THRESHOLD and PdqSignal.QUALITY_THRESHOLD).
HASH_TYPES: dict[str, HashType] = {
    "md5": HashType("md5", 128, False, 0, _crypto("md5")),
    "sha1": HashType("sha1", 160, False, 0, _crypto("sha1")),
    "sha256": HashType("sha256", 256, False, 0, _crypto("sha256")),
    "phash": HashType("phash", 64, True, 8, _compute_phash),
    "dhash": HashType("dhash", 64, True, 8, _compute_dhash),
    "pdq": HashType("pdq", 256, True, 31, _compute_pdq, min_quality=50,
                    quality_column="pdq_quality"),
}


def get_hash_type(name: str) -> HashType:
    """Look a type up by name; the error lists the supported ones."""
    try:
        return HASH_TYPES[name.strip().lower()]
    except KeyError:
        raise HashFormatError(
            f"unknown hash type {name!r}; supported: {', '.join(sorted(HASH_TYPES))}") from None
