"""Safety-concept indexes: CLIP vectors per named concept, a FAISS inner-product index, a sidecar.

A concept is a name, a cosine threshold, an action (remove / quarantine / tag) and one or more
vectors (text prompts, exemplar images, or given embeddings). A row's score for a concept is its best
cosine similarity to any of the concept's vectors; at or above the threshold the row matches.

Artifact directory::

    sidecar.json      format, concepts (name, threshold, action, vector count, source), model
                      (spec, weights sha256, dim), files with sha256, fingerprint
    vectors.npy       float32 (n, dim), L2-normalised (no pickle: allow_pickle=False)
    labels.npy        int32 (n,), concept index of each vector
    index.faiss       FAISS IndexFlatIP over the vectors (FAISS's own format)
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np

from shardguard.indexes import fileio
from shardguard.indexes.artifacts import ACTIONS, ArtifactError, read_checked_sidecar
from shardguard.indexes.version import code_version

CONCEPT_FORMAT = "shardguard-concepts/1"


@dataclass(frozen=True)
class Concept:
    """One named concept and its vectors (L2-normalised float32)."""

    name: str
    threshold: float
    action: str
    vectors: np.ndarray
    source: str


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _fingerprint(sidecar: dict) -> str:
    pinned = {k: v for k, v in sidecar.items() if k not in ("fingerprint", "code_version")}
    return hashlib.sha256(fileio.canonical_json(pinned)).hexdigest()


def build_concept_index(concepts: list[Concept], model_info: dict, out_dir: str) -> dict:
    """Write the artifact for ``concepts`` embedded with the model ``model_info`` describes."""
    import faiss

    if not concepts:
        raise ArtifactError("no concepts to index")
    names = [c.name for c in concepts]
    if len(set(names)) != len(names):
        raise ArtifactError(f"duplicate concept names in {names}")
    dim = concepts[0].vectors.shape[1]
    for c in concepts:
        if c.action not in ACTIONS:
            raise ArtifactError(f"concept {c.name}: action must be one of {ACTIONS}")
        if c.vectors.ndim != 2 or c.vectors.shape[1] != dim or len(c.vectors) == 0:
            raise ArtifactError(f"concept {c.name}: vectors must be (n, {dim}), got {c.vectors.shape}")
        if not 0.0 < c.threshold <= 1.0:
            raise ArtifactError(f"concept {c.name}: threshold {c.threshold} must be a cosine in (0, 1] (usual: "
                                "0.2-0.3 for text prompts, 0.8-0.95 for exemplar images)")
    vecs = np.concatenate([c.vectors for c in concepts]).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True).clip(1e-12)
    labels = np.concatenate([np.full(len(c.vectors), i, np.int32) for i, c in enumerate(concepts)])
    index = faiss.IndexFlatIP(dim)
    index.add(vecs)
    fileio.ensure_dir(out_dir)
    files = {"vectors.npy": fileio.write_atomic(fileio.join(out_dir, "vectors.npy"), _npy(vecs)),
             "labels.npy": fileio.write_atomic(fileio.join(out_dir, "labels.npy"), _npy(labels)),
             "index.faiss": fileio.write_atomic(fileio.join(out_dir, "index.faiss"),
                                                faiss.serialize_index(index).tobytes())}
    sidecar = {"format": CONCEPT_FORMAT, "dim": dim, "files": files,
               "model": {k: model_info.get(k) for k in ("spec", "weights_sha256", "random_weights", "embed_dim")},
               "concepts": [{"name": c.name, "threshold": float(c.threshold), "action": c.action,
                             "vectors": int(len(c.vectors)), "source": c.source} for c in concepts],
               "code_version": code_version()}
    sidecar["fingerprint"] = _fingerprint(sidecar)
    fileio.write_atomic(fileio.join(out_dir, "sidecar.json"), fileio.canonical_json(sidecar))
    return sidecar


def read_concept_sidecar(art_dir: str) -> dict:
    """The sidecar of a concept index, checked against its fingerprint."""
    return read_checked_sidecar(art_dir, CONCEPT_FORMAT, _fingerprint, "concept index")


def check_model(sidecar: dict, model_info: dict, where: str) -> None:
    """Refuse an index built for another model (dimension or weights fingerprint)."""
    if model_info.get("embed_dim") is not None and sidecar["dim"] != model_info["embed_dim"]:
        raise ArtifactError(f"{where}: built for {sidecar['dim']}-d embeddings, the scan's model "
                            f"({model_info.get('spec')}) gives {model_info['embed_dim']}-d")
    if sidecar["model"]["weights_sha256"] != model_info.get("weights_sha256"):
        raise ArtifactError(f"{where}: built with model {sidecar['model']['spec']} (weights "
                            f"{sidecar['model']['weights_sha256'][:12]}…), the scan uses "
                            f"{model_info.get('spec')} (weights {str(model_info.get('weights_sha256'))[:12]}…)")


def _maybe_gpu(index):
    """The index on all GPUs when faiss-gpu is installed and sees one; the CPU index otherwise."""
    import faiss

    try:
        if faiss.get_num_gpus() > 0:
            return faiss.index_cpu_to_all_gpus(index)
    except AttributeError:  # faiss-cpu builds have no GPU functions
        pass
    return index


class ConceptMatcher:
    """A loaded, verified concept index answering batched similarity queries."""

    def __init__(self, art_dir: str, expected_fingerprint: str | None = None):
        import faiss

        self.sidecar = read_concept_sidecar(art_dir)
        if expected_fingerprint and self.sidecar["fingerprint"] != expected_fingerprint:
            raise ArtifactError(f"{art_dir}: concept index is not the pinned one")
        blobs = {}
        for name, digest in self.sidecar["files"].items():
            data = fileio.read_bytes(fileio.join(art_dir, name))
            if hashlib.sha256(data).hexdigest() != digest:
                raise ArtifactError(f"{art_dir}/{name}: sha256 does not match the sidecar")
            blobs[name] = data
        self.labels = np.load(io.BytesIO(blobs["labels.npy"]), allow_pickle=False)
        self.index = _maybe_gpu(faiss.deserialize_index(np.frombuffer(blobs["index.faiss"], dtype=np.uint8)))
        self.concepts = self.sidecar["concepts"]

    def match_batch(self, embeddings: np.ndarray) -> list[list[dict]]:
        """Per row, one match per concept whose best similarity reaches its threshold."""
        out: list[list[dict]] = [[] for _ in range(len(embeddings))]
        if len(embeddings) == 0:
            return out
        k = len(self.labels)
        sims, ids = self.index.search(np.ascontiguousarray(embeddings, dtype=np.float32), k)
        for r in range(len(embeddings)):
            best: dict[int, tuple[float, int]] = {}
            for s, i in zip(sims[r], ids[r]):
                c = int(self.labels[i])
                if i >= 0 and c not in best:
                    best[c] = (float(s), int(i))
            for c, (s, i) in sorted(best.items()):
                concept = self.concepts[c]
                if s >= concept["threshold"]:
                    out[r].append({"source": concept["name"], "kind": "concept", "type": "clip",
                                   "entry": f"vector {i}", "distance": round(s, 6)})
        return out
