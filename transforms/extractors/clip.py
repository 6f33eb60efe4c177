"""The CLIP extractor: an L2-normalised float16 image embedding per row and the image-caption score.

Pixels are cut from the row's one decoded image (open_clip's eval transform, uint8). Rows wait in the
shard's batches until ``batch_size`` of them are ready, then the model runs on exactly ``batch_size``
rows (the last chunk padded): a float matmul's result for a row depends on the batch shape, not on
its companions, so embeddings are bit-identical whatever rows share a batch (README, Determinism).
The model is loaded once per worker process (``Shared``; with ``large_model`` once per machine,
shared across processes as RunInference does) in ``setup``, never at import.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from shardguard.transforms.extractors import DecodeNeeds, FeatureExtractor


class ClipExtractor(FeatureExtractor):
    """``embedding`` (float16 × dim; the zero vector where a row has none) and ``clip_score``."""

    name = "clip"

    def __init__(self, spec=None, device: str = "auto", batch_size: int = 32, size: int = 224,
                 embed_dim: int = 0, large_model: bool = False):
        self.spec, self.device, self.batch_size = spec, device, batch_size
        self.size, self.embed_dim, self.large_model = size, embed_dim, large_model
        self._model = None
        self._pending: list[dict] = []

    def __getstate__(self):  # the loaded model never travels with the extractor
        return dict(self.__dict__, _model=None, _pending=[])

    @classmethod
    def example(cls, directory: str) -> "ClipExtractor":  # noqa: D102
        """The tiny seeded test model (random weights), batch 4."""
        import dataclasses
        from pathlib import Path

        from shardguard.indexes.models import build_model, describe, parse_spec

        spec = parse_spec(str(Path(__file__).resolve().parents[2] / "configs" / "models" / "tiny-clip.json"))
        model, size, *_ = build_model(spec)
        info = describe(spec, model)
        return cls(dataclasses.replace(spec, pinned_sha256=info["weights_sha256"]), "cpu", 4, size, info["embed_dim"])

    def columns(self) -> list[pa.Field]:  # noqa: D102
        return [pa.field("embedding", pa.list_(pa.float16(), self.embed_dim)), pa.field("clip_score", pa.float32())]

    def fingerprint(self) -> dict:  # noqa: D102
        return {"model": self.spec.pinned_sha256 if self.spec else None, "embed_batch": self.batch_size}

    def decode_needs(self) -> DecodeNeeds:  # noqa: D102
        return DecodeNeeds(self.size, True)

    def setup(self, shared) -> None:  # noqa: D102
        if self.spec is not None:
            self._model = shared.model(self.spec, self.device, self.batch_size, self.large_model)

    def from_image(self, rec: dict, img, row: dict) -> None:  # noqa: D102
        from shardguard.transforms.embed import clip_pixels

        rec["_clip"] = clip_pixels(img.rgb, self.size)
        rec["_caption"] = row.get("caption")

    def finish(self, recs: list[dict], final: bool) -> None:  # noqa: D102
        if self._model is None:
            return  # pixels only (``compute_row_features`` hands them to its caller)
        self._pending += [r for r in recs if "_clip" in r]
        while len(self._pending) >= self.batch_size or (final and self._pending):
            chunk, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size:]
            self._embed(chunk)

    def _embed(self, chunk: list[dict]) -> None:
        from shardguard.transforms.embed import embed_batch

        examples = [(r.pop("_clip"), r.pop("_caption")) for r in chunk]
        for r, out in zip(chunk, embed_batch(self._model, examples)):
            r.update(out)

    def arrays(self, recs: list[dict]) -> list[pa.Array]:  # noqa: D102
        # A row without an embedding stores the zero vector (real ones have norm 1): pyarrow writes
        # null fixed-size-list entries to parquet but cannot read them back.
        flat = np.zeros((len(recs), self.embed_dim), dtype=np.float16)
        for i, r in enumerate(recs):
            if r.get("embedding") is not None:
                flat[i] = r["embedding"]
        emb = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1), type=pa.float16()), self.embed_dim)
        return [emb, pa.array([r.get("clip_score") for r in recs], type=pa.float32())]


def embeddings_from_table(table: pa.Table):
    """(float16 (n, dim) matrix, has-embedding mask) from a features table's ``embedding`` column."""
    col = table.column("embedding").combine_chunks()
    dim = col.type.list_size
    vals = col.values.to_numpy(zero_copy_only=False)[col.offset * dim:(col.offset + len(col)) * dim]
    flat = vals.astype(np.float16).reshape(-1, dim)
    return flat, np.any(flat != 0, axis=1)
