"""Safety-concept indexes: a row matches a concept when its embedding's best cosine to the concept's
vectors reaches the concept's threshold (``indexes/concepts.py``)."""
from __future__ import annotations

import numpy as np

from shardguard.transforms.contracts import MatchRecord
from shardguard.transforms.rules import Rule


def embedding_matrix(table) -> tuple[np.ndarray, list[int]]:
    """(float32 matrix of the rows that have embeddings, their positions) of a features table."""
    if "embedding" not in table.column_names:
        return np.zeros((0, 0), np.float32), []
    from shardguard.transforms.extractors.clip import embeddings_from_table

    flat, valid = embeddings_from_table(table)
    pos = np.nonzero(valid)[0].tolist()
    return flat[valid].astype(np.float32), pos


class ConceptRule(Rule):
    """One concept index (several named concepts, each with its threshold and action)."""

    kinds = ("concept",)
    label = "score"

    def __init__(self, art_dir: str, sidecar: dict):
        self.art_dir, self.sidecar = art_dir, sidecar
        self._matcher = None

    def __getstate__(self):
        return dict(self.__dict__, _matcher=None)

    @classmethod
    def example(cls, directory: str, table) -> "ConceptRule":  # noqa: D102
        from shardguard.indexes.concepts import Concept, build_concept_index

        emb, pos = embedding_matrix(table)
        info = {"spec": "example", "weights_sha256": "0" * 64, "random_weights": True, "embed_dim": emb.shape[1]}
        sc = build_concept_index([Concept("ex", 0.99, "quarantine", emb[:1], "example")], info, f"{directory}/concepts")
        return cls(f"{directory}/concepts", sc)

    @classmethod
    def build(cls, ctx) -> list[Rule]:  # noqa: D102
        return [cls(path, sc) for path, sc in ctx.concepts]

    def reasons(self) -> dict[str, str]:  # noqa: D102
        return {f"concept:{c['name']}": c["action"] for c in self.sidecar["concepts"]}

    def requires(self) -> set[str]:  # noqa: D102
        return {"embedding"}

    def fingerprint(self):  # noqa: D102
        return ["concepts", self.sidecar["fingerprint"]]

    def setup(self, shared) -> None:  # noqa: D102
        from shardguard.indexes.concepts import ConceptMatcher

        fp = self.sidecar["fingerprint"]
        self._matcher = shared.acquire(f"concepts|{fp}", lambda: ConceptMatcher(self.art_dir, fp))

    def match(self, table) -> list[list[MatchRecord]]:  # noqa: D102
        out: list[list[MatchRecord]] = [[] for _ in range(table.num_rows)]
        emb, pos = embedding_matrix(table)
        if pos:
            for i, hits in zip(pos, self._matcher.match_batch(emb)):
                out[i] = [MatchRecord(h["source"], "concept", h["type"], h["entry"], h["distance"]) for h in hits]
        return out
