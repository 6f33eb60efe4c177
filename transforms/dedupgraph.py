"""Dedup as plain functions over duplicate pairs: candidate pairs per kind, connected components by
an iterative join (hash-to-min), representatives, and each row's record.

A node is ``(removed, shard, row, key, caption)``: ``removed`` is 1 for a row a row rule already
removes for a safety reason, so the smallest node of a component — its representative — is the lowest
``(shard, row)`` that is not removed (when every member is removed, the lowest of them, and they are
all removed anyway). Every function here is deterministic and runs on one bucket, one cluster or one
node's messages: the Beam wiring (``rules/dedup.py``) never holds all rows in one worker.
"""
from __future__ import annotations

import numpy as np

Node = tuple  # (removed, shard, row, key, caption_sha256)


def star_edges(members: list[Node], distance: float = 0.0) -> list[tuple[Node, Node, float]]:
    """Edges joining every member of an exact group to its smallest member."""
    members = sorted(set(members))
    return [(members[0], m, distance) for m in members[1:]]


def hamming_pairs(nodes: list[Node], codes: np.ndarray, max_distance: int) -> list[tuple[Node, Node, float]]:
    """Pairs (u < v) of a bucket whose codes (uint8 rows) are within ``max_distance`` bits."""
    out = []
    bits = np.unpackbits(codes, axis=1).astype(np.int16)
    for i in range(len(nodes)):
        d = np.count_nonzero(bits[i + 1:] != bits[i], axis=1)
        for j in np.nonzero(d <= max_distance)[0]:
            a, b = nodes[i], nodes[i + 1 + j]
            out.append((min(a, b), max(a, b), float(d[j])))
    return out


def cosine_pairs(nodes: list[Node], emb: np.ndarray, threshold: float, block: int = 2048):
    """Pairs (u < v) of a cluster whose embeddings' cosine is at least ``threshold``."""
    out = []
    for a in range(0, len(nodes), block):
        sims = emb[a:a + block] @ emb.T
        for r in range(sims.shape[0]):
            i = a + r
            for j in np.nonzero(sims[r, i + 1:] >= threshold)[0]:
                u, v = nodes[i], nodes[i + 1 + j]
                out.append((min(u, v), max(u, v), round(float(sims[r, i + 1 + j]), 6)))
    return out


def substrings(code: bytes, chunks: int, nbits: int) -> list[tuple[int, int]]:
    """(chunk index, chunk value) of ``chunks`` disjoint bit ranges of a code: two codes within
    ``chunks - 1`` bits agree on at least one of them (pigeonhole), so these are the bucket keys."""
    value = int.from_bytes(code, "big")
    out = []
    for c in range(chunks):
        lo, hi = c * nbits // chunks, (c + 1) * nbits // chunks
        out.append((c, (value >> (nbits - hi)) & ((1 << (hi - lo)) - 1)))
    return out


def initial_clusters(edges) -> dict[Node, set]:
    """Each node's cluster for hash-to-min: itself and its neighbours."""
    out: dict[Node, set] = {}
    for u, v, _ in edges:
        out.setdefault(u, {u}).add(v)
        out.setdefault(v, {v}).add(u)
    return out


def hash_to_min_messages(node: Node, cluster) -> list[tuple[Node, frozenset]]:
    """One round of hash-to-min (Rastogi et al., 2013): the whole cluster to its minimum, the
    minimum to every member. Converges in O(log diameter) rounds: then the minimum holds the whole
    component and every other member holds just the minimum."""
    m = min(cluster)
    return [(m, frozenset(cluster))] + [(u, frozenset((m,))) for u in cluster if u != m]


def converged(node: Node, cluster) -> bool:
    """True when this node's cluster is final: the component at its minimum, the minimum elsewhere."""
    m = min(cluster)
    return (node == m) or cluster == {m}


def duplicate_record(member: Node, rep: Node, kind: str, signal: str, closest: float):
    """(shard, row, MatchRecord) of a member that is not its component's representative:
    ``dedup:<kind>``, entry the representative's ``shard/key`` (what it duplicates), distance its
    closest duplicate's distance (or similarity, for semantic)."""
    from shardguard.transforms.contracts import MatchRecord

    return member[1], member[2], MatchRecord(kind, "dedup", signal, f"{rep[1]}/{rep[3]}", float(closest))


def conflict_records(members) -> list:
    """(shard, row, MatchRecord) ``caption-conflict`` for every member of a component whose members
    carry different captions (a poisoning signal: one image, several stories)."""
    from shardguard.transforms.contracts import MatchRecord

    captions = {m[4] for m in members if m[4]}
    if len(captions) < 2:
        return []
    entry = f"{len(captions)} captions in a cluster of {len(members)}"
    return [(m[1], m[2], MatchRecord("caption-conflict", "conflict", "caption", entry, float(len(captions))))
            for m in sorted(members)]
