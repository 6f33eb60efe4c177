"""Dedup as plain functions over duplicate pairs: candidate pairs per kind, connected components by
an iterative join (hash-to-min), representatives, and each row's record.

A node is a small tuple ``(removed, shard, row)``: ``removed`` is 1 for a row a row rule already
removes for a safety reason, so the smallest node of a component — its representative — is the lowest
``(shard, row)`` that is not removed (when every member is removed, the lowest of them, and they are
all removed anyway). Nodes stay small because the shuffles carry them many times (a perceptual row
travels once per hash substring); a row's key and caption digest (``Meta``) join back only for rows
in a component. Every function here is
deterministic and runs on one bucket, one cluster or one node's messages: the Beam wiring
(``rules/dedupwire.py``) never holds all rows in one worker.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

Node = tuple  # (removed, shard, row)


class Meta(NamedTuple):
    """What a record needs of a node besides the node: the row's key and caption digest ('' if none)."""

    key: str
    caption: str


def node_id(removed: bool, shard: str, row: int) -> Node:
    """The node of a row: ordered like ``(removed, shard, row)``."""
    return int(bool(removed)), shard, int(row)


def star_edges(members: list[Node], distance: float = 0.0) -> list[tuple[Node, Node, float]]:
    """Edges joining every member of an exact group to its smallest member."""
    members = sorted(set(members))
    return [(members[0], m, distance) for m in members[1:]]


def _words(codes: np.ndarray) -> np.ndarray:
    """uint8 code rows as uint64 words (zero-padded to whole words) for popcounts."""
    pad = (-codes.shape[1]) % 8
    if pad:
        codes = np.concatenate([codes, np.zeros((codes.shape[0], pad), np.uint8)], axis=1)
    return np.ascontiguousarray(codes).view(np.uint64)


def hamming_pairs(nodes: list[Node], codes: np.ndarray, max_distance: int, block: int = 512):
    """Pairs (u < v) of a bucket whose codes (uint8 rows) are within ``max_distance`` bits,
    computed a block of rows against the rest at a time (vectorised popcounts)."""
    out = []
    words = _words(codes)
    for a in range(0, len(nodes), block):
        d = np.bitwise_count(words[a:a + block, None, :] ^ words[None, :, :]).sum(axis=2)
        rows, cols = np.nonzero(d <= max_distance)
        for i, j in zip((rows + a).tolist(), cols.tolist()):
            if j > i:
                u, v = nodes[i], nodes[j]
                out.append((min(u, v), max(u, v), float(d[i - a, j])))
    return out


def cosine_pairs(nodes: list[Node], emb: np.ndarray, threshold: float, block: int = 2048):
    """Pairs (u < v) of a cluster whose embeddings' cosine is at least ``threshold``."""
    out = []
    for a in range(0, len(nodes), block):
        sims = emb[a:a + block] @ emb.T
        rows, cols = np.nonzero(sims >= threshold)
        for i, j in zip((rows + a).tolist(), cols.tolist()):
            if j > i:
                u, v = nodes[i], nodes[j]
                out.append((min(u, v), max(u, v), round(float(sims[i - a, j]), 6)))
    return out


def substrings(code: bytes, chunks: int, nbits: int) -> list[Node]:
    """Bucket keys ``chunk index << 32 | chunk value`` of ``chunks`` disjoint bit ranges of a code:
    two codes within ``chunks - 1`` bits agree on at least one of them (pigeonhole)."""
    value = int.from_bytes(code, "big")
    out = []
    for c in range(chunks):
        lo, hi = c * nbits // chunks, (c + 1) * nbits // chunks
        out.append((c << 32) | ((value >> (nbits - hi)) & ((1 << (hi - lo)) - 1)))
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


def component_records(rep: Node, members: list[tuple[Node, Meta, float]], kind: str, signal: str,
                      conflicts: bool) -> list[tuple[str, int, object]]:
    """(shard, row, MatchRecord) for one component, given every member's (node, meta, closest):
    ``dedup:<kind>`` for each member but the representative (entry: the representative's
    ``shard/key``; distance: its closest duplicate's distance, or similarity for semantic), and,
    when ``conflicts``, ``caption-conflict`` for every member if their captions differ (a poisoning
    signal: one image, several stories)."""
    from shardguard.transforms.contracts import MatchRecord

    members = sorted(members, key=lambda m: m[0])
    by_node = {n: meta for n, meta, _ in members}
    if rep not in by_node or None in by_node.values():
        raise ValueError(f"dedup: a member of the component of {rep} has no row metadata (lost in a shuffle?)")
    entry = f"{rep[1]}/{by_node[rep].key}"
    out = [(n[1], n[2], MatchRecord(kind, "dedup", signal, entry, float(closest)))
           for n, meta, closest in members if n != rep]
    captions = {meta.caption for _, meta, _ in members if meta.caption}
    if conflicts and len(captions) >= 2:
        note = f"{len(captions)} captions in a cluster of {len(members)}"
        out += [(n[1], n[2], MatchRecord("caption-conflict", "conflict", "caption", note,
                                                       float(len(captions)))) for n, meta, _ in members]
    return out
