"""Feature extractors: one small interface, one explicit registry.

An extractor declares the columns it adds to ``features/<shard>.parquet``, the fields that decide
its values (they enter the features fingerprint), which pixels it needs from the one decode of a
row, and how it fills a batch of records. The features file's schema is built from the registry, so
a new extractor (or a new hash type, through the hashes extractor) adds its columns by construction,
and a re-filter reads back exactly what the scan wrote.

Adding an extractor is one module with a class implementing ``FeatureExtractor`` plus one line in
``REGISTRY`` below (its position is its columns' position in the schema); the contract tests in
``tests/test_contracts.py`` run for every registered extractor.
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class DecodeNeeds:
    """What an extractor needs from the decoded image: the smallest side it can work from (JPEG DCT
    scaling may decode that small; ``None``: the full image) and whether it needs colour."""

    min_side: int | None
    color: bool


class FeatureExtractor:
    """The interface every extractor implements. Instances are small and picklable; ``setup`` loads
    whatever is heavy (a model) once per worker process, never at import."""

    name: str = ""
    always: bool = False  # columns present in every features file (null when not computed)

    @classmethod
    def example(cls, directory: str) -> "FeatureExtractor":
        """An instance for the contract tests (``directory``: scratch space for what it needs)."""
        return cls()

    def columns(self) -> list[pa.Field]:
        """The columns this extractor adds to the features schema."""
        raise NotImplementedError

    def computed(self) -> set[str]:
        """The columns this instance fills (rules that need others are refused at launch)."""
        return {f.name for f in self.columns()}

    def fingerprint(self) -> dict:
        """What decides this extractor's values (enters the features fingerprint)."""
        return {}

    def decode_needs(self) -> DecodeNeeds | None:
        """Pixels needed from the row's one decode; None when it reads no pixels."""
        return None

    def setup(self, shared) -> None:
        """Load heavy objects (``shared``: a ``SharedHandles`` of the worker)."""

    def from_row(self, rec: dict, row: dict) -> None:
        """Fill what the input row itself carries (called for every row, errored ones included)."""

    def from_bytes(self, rec: dict, data: bytes) -> None:
        """Fill what the stored bytes alone decide (before decoding; kept if decoding then fails)."""

    def from_image(self, rec: dict, img, row: dict) -> None:
        """Fill what one decoded image decides (or leave ``_``-prefixed work for ``finish``)."""

    def finish(self, recs: list[dict], final: bool) -> None:
        """Complete a batch of records in place (``final``: the shard's last batch)."""

    def arrays(self, recs: list[dict]) -> list[pa.Array] | None:
        """Column arrays for the features table, when a plain ``pa.array`` of values will not do."""
        return None


def _registry() -> list[type]:
    from shardguard.transforms.extractors.basic import ImageInfo, IntegrityRef
    from shardguard.transforms.extractors.captions import CaptionHash
    from shardguard.transforms.extractors.clip import ClipExtractor
    from shardguard.transforms.extractors.hashes import HashExtractor
    from shardguard.transforms.extractors.supplied import SuppliedEmbeddings
    from shardguard.transforms.extractors.views import ViewsExtractor

    return [HashExtractor, ImageInfo, IntegrityRef, ClipExtractor, SuppliedEmbeddings, CaptionHash, ViewsExtractor]


REGISTRY: list[type] = []


def registry() -> list[type]:
    """The extractor classes in schema order (built on first use: nothing heavy at import)."""
    if not REGISTRY:
        REGISTRY.extend(_registry())
    return REGISTRY


def ordered(extractors) -> list[FeatureExtractor]:
    """Active extractors in registry order, plus an instance of every ``always`` class not given."""
    by_cls = {type(e): e for e in extractors}
    return [by_cls[c] if c in by_cls else c() for c in registry() if c in by_cls or c.always]
