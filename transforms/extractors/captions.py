"""Caption hashes: sha256 (first 32 hex) of each row's caption, so dedup can tell when one image
carries different captions (a poisoning signal) without the features file holding the captions."""
from __future__ import annotations

import hashlib

import pyarrow as pa

from shardguard.transforms.extractors import FeatureExtractor


class CaptionHash(FeatureExtractor):
    """``caption_sha256`` of the row's caption (null when it has none)."""

    name = "captions"
    always = True  # cheap, and a re-filter can then add dedup's caption-conflict check to any run

    def columns(self) -> list[pa.Field]:  # noqa: D102
        return [pa.field("caption_sha256", pa.string())]

    def from_row(self, rec: dict, row: dict) -> None:  # noqa: D102
        cap = row.get("caption")
        if isinstance(cap, str) and cap.strip():
            rec["caption_sha256"] = hashlib.sha256(cap.strip().encode("utf-8", "replace")).hexdigest()[:32]
