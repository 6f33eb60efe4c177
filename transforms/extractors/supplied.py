"""Supplied embeddings: the user's own vectors (clip-retrieval's layout), joined to rows by key.

Fills the same ``embedding`` column a CLIP model would (float16, L2-normalised; ``clip_score`` stays
null: no text model), so concepts, expansion, dedup and re-filters work from them unchanged. The key
index was built and checked at launch (``pipelines/embeddings.py``); each shard reads only the vectors
of its rows, by byte ranges. A row whose key has no vector is errored (``embeddings/missing_embedding``:
it could not be checked by the rules that need one); a vector that is not L2-normalised fails the
shard naming the file and row.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from shardguard.transforms.extractors import FeatureExtractor
from shardguard.transforms.extractors.clip import ClipExtractor


def load_index(index_dir: str) -> dict:
    """The key index: sorted keys and each key's (file, row)."""
    from shardguard.indexes import fileio
    from shardguard.indexes.arrowio import read_table

    t = read_table(fileio.join(index_dir, "index.parquet"))
    return {"keys": t.column("key").to_numpy(zero_copy_only=False), "file": t.column("file").to_numpy(),
            "row": t.column("row").to_numpy(), "files": fileio.read_json(fileio.join(index_dir, "files.json"))["files"]}


class SuppliedEmbeddings(FeatureExtractor):
    """``embedding`` from the user's vector files (see module doc)."""

    name = "supplied"

    def __init__(self, column: str | None = None, index_dir: str = "", dim: int = 0, fingerprint: str = ""):
        self.column, self.index_dir, self.dim, self.fp = column, index_dir, dim, fingerprint
        self._index = None

    def __getstate__(self):
        return dict(self.__dict__, _index=None)

    @classmethod
    def example(cls, directory: str) -> "SuppliedEmbeddings":  # noqa: D102
        """Random unit vectors for keys ``k0``..``k4`` (the contract tests' example rows)."""
        from shardguard.indexes.vectors import write_index

        keys = [f"k{i}" for i in range(5)]
        vecs = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
        np.save(f"{directory}/emb.npy", (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float16))
        write_index(f"{directory}/emb-index", keys, [0] * 5, list(range(5)), [f"{directory}/emb.npy"])
        return cls(None, f"{directory}/emb-index", 8, "example")

    def columns(self) -> list[pa.Field]:  # noqa: D102
        return ClipExtractor(embed_dim=self.dim).columns()

    def computed(self) -> set[str]:  # noqa: D102
        return {"embedding"}

    def fingerprint(self) -> dict:  # noqa: D102
        return {"supplied_embeddings": self.fp}

    def setup(self, shared) -> None:  # noqa: D102
        self._index = shared.acquire(f"embeddings|{self.fp}|{self.index_dir}", lambda: load_index(self.index_dir))

    def finish(self, recs: list[dict], final: bool) -> None:  # noqa: D102
        from shardguard.indexes.vectors import check_norms, read_rows

        idx = self._index
        keys = np.array([r["key"] for r in recs], dtype=object)
        pos = np.searchsorted(idx["keys"], keys) if len(keys) else np.zeros(0, int)
        found = [p < len(idx["keys"]) and idx["keys"][p] == k for p, k in zip(pos, keys)]
        by_file: dict[int, list[int]] = {}
        for i, (r, ok, p) in enumerate(zip(recs, found, pos)):
            if not ok:
                r.update(status="error", error_stage="embeddings", error_class="missing_embedding",
                         error_message=f"no supplied embedding for key {r['key'][:80]!r}")
            else:
                by_file.setdefault(int(idx["file"][p]), []).append(i)
        for f, members in by_file.items():
            rows = np.array([idx["row"][pos[i]] for i in members])
            path = idx["files"][f]
            vecs = read_rows(path, rows, self.column)
            check_norms(path, rows, vecs)
            for i, v in zip(members, vecs):
                recs[i]["embedding"] = v.astype(np.float16)

    def arrays(self, recs: list[dict]) -> list[pa.Array]:  # noqa: D102
        return ClipExtractor(embed_dim=self.dim).arrays(recs)
