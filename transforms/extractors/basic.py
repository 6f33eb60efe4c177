"""Two always-present extractors: the decoded image's size and mode, and the integrity reference."""
from __future__ import annotations

import pyarrow as pa

from shardguard.transforms.extractors import FeatureExtractor


class ImageInfo(FeatureExtractor):
    """Full-resolution width and height (after EXIF orientation, also from a JPEG draft) and the
    source's colour mode."""

    name = "image"
    always = True

    def columns(self) -> list[pa.Field]:  # noqa: D102
        return [pa.field("width", pa.int32()), pa.field("height", pa.int32()), pa.field("source_mode", pa.string())]

    def from_image(self, rec: dict, img, row: dict) -> None:  # noqa: D102
        rec.update(width=img.width, height=img.height, source_mode=img.source_mode)


class IntegrityRef(FeatureExtractor):
    """The reference content hash a row carries (``integrity.column``), normalised to lower-case hex,
    for the integrity rule (split-view poisoning)."""

    name = "integrity"
    always = True

    def columns(self) -> list[pa.Field]:  # noqa: D102
        return [pa.field("integrity_ref", pa.string())]

    def from_row(self, rec: dict, row: dict) -> None:  # noqa: D102
        ref = row.get("integrity_ref")
        if ref:
            rec["integrity_ref"] = str(ref).strip().lower()
