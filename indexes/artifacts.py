"""Build and load hash-list artifacts: entries, an index, and a JSON sidecar that pins them.

An artifact is a directory::

    <dir>/sidecar.json      name, type, counts, source sha256, thresholds, files and their sha256,
                            fingerprint, code version
    <dir>/entries.parquet   code (fixed-size binary), line, entry_id - sorted by code for exact types
    <dir>/index.faissbin    perceptual types: a FAISS binary index (FAISS's own format, no pickle);
                            none for lists matched pair by pair or by the numpy multi-index

The fingerprint is the sha256 of the canonical sidecar content without the code version, so the
same list with the same settings always has the same fingerprint. Pipelines load artifacts only
through ``load_artifact``, which re-checks every file's sha256 and, when given, the pinned fingerprint.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shardguard.indexes import fileio
from shardguard.indexes.hashtypes import HashType, get_hash_type
from shardguard.indexes.listformats import ParsedList
from shardguard.indexes.mih import CHUNKS as MIH_CHUNKS
from shardguard.indexes.version import code_version

ARTIFACT_FORMAT = "shardguard-list/1"
# Up to this many entries an exact flat scan is fastest and simplest; above it a multi-index:
# numpy MIH for 64-bit codes (pHash, dHash), FAISS multi-hash for PDQ.
FLAT_LIMIT = 100_000
# Up to this many entries every (row, entry) pair is compared in numpy (``matcher.py``): no index to
# build or load, so a run whose perceptual lists are all this small — a partner's delta list, the
# usual reason to re-filter — never imports FAISS (~40 ms of a 0.5 s re-filter). Above it FAISS's
# flat scan is faster (at 256 entries numpy takes 2-10x longer per row).
PAIRWISE_LIMIT = 64
ACTIONS = ("remove", "quarantine", "tag")


class ArtifactError(ValueError):
    """An artifact that is missing, altered, or not the one a run pinned."""


@dataclass(frozen=True)
class ListSettings:
    """How a list is applied: its name, threshold, quality floor and action."""

    name: str
    hash_type: str
    max_distance: int
    min_quality: int
    action: str = "remove"


def multihash_params(nbits: int, max_distance: int) -> tuple[int, int, int]:
    """(nhash, bits per substring, nflip) for an exact FAISS multi-hash range search.

    By pigeonhole, two codes within ``max_distance`` agree to within ``nflip`` bits on at least one of
    ``nhash`` disjoint substrings when ``nhash * (nflip + 1) > max_distance``. We pick the fewest
    substrings with nflip <= 2 whose substring fits in 32 bits (FAISS's limit on substring bits).
    """
    for nflip in (2, 1, 0):
        # more substrings than pigeonhole needs stays exact; at least enough to keep each <= 32 bits
        nhash = max(max_distance // (nflip + 1) + 1, -(-nbits // 32))
        bits = min(32, nbits // nhash)
        if bits >= 8:
            return nhash, bits, nflip
    return max_distance + 1, max(1, nbits // (max_distance + 1)), 0


def _build_index(ht: HashType, codes: np.ndarray, max_distance: int, flat_limit: int):
    if len(codes) <= PAIRWISE_LIMIT:
        return None, {"kind": "pairwise"}
    import faiss  # heavy; only needed when building or loading a larger perceptual list

    if len(codes) <= flat_limit:
        index = faiss.IndexBinaryFlat(ht.nbits)
        params = {"kind": "flat"}
    elif ht.nbits == 64:
        # 64-bit codes: direct-addressed multi-index in numpy, 6x FAISS multi-hash at 10M entries
        # (benchmarks/RESULTS.md); built from the entries at load, so no index file is stored.
        return None, {"kind": "mih64", "chunks": [list(c) for c in MIH_CHUNKS]}
    else:
        nhash, bits, nflip = multihash_params(ht.nbits, max_distance)
        index = faiss.IndexBinaryMultiHash(ht.nbits, nhash, bits)
        index.nflip = nflip
        params = {"kind": "multihash", "nhash": nhash, "bits": bits, "nflip": nflip}
    index.add(np.ascontiguousarray(codes))
    return index, params


def _entries_table(ht: HashType, parsed: ParsedList) -> pa.Table:
    codes = parsed.code_array()
    lines = np.frombuffer(parsed.lines, dtype=np.int64)
    ids = parsed.id_array()
    if not ht.perceptual:  # sorted for binary search; ties impossible (entries are distinct)
        order = np.argsort(codes.view(f"S{ht.nbytes}").ravel(), kind="stable")
        codes, lines, ids = codes[order], lines[order], ids.take(pa.array(order))
    # Built from the raw buffer: numpy "S" scalars would drop trailing zero bytes.
    code_col = pa.Array.from_buffers(pa.binary(ht.nbytes), len(codes),
                                     [None, pa.py_buffer(np.ascontiguousarray(codes).tobytes())])
    return pa.table({"code": code_col, "line": lines, "entry_id": ids.cast(pa.string())})


def _parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def fingerprint(sidecar: dict) -> str:
    """sha256 of the sidecar's content that defines matching behaviour (not the code version)."""
    pinned = {k: v for k, v in sidecar.items() if k not in ("fingerprint", "code_version", "source")}
    pinned["source_sha256"] = sidecar["source"]["sha256"]
    return hashlib.sha256(fileio.canonical_json(pinned)).hexdigest()


def build_artifact(parsed: ParsedList, settings: ListSettings, out_dir: str, source_path: str,
                   flat_limit: int = FLAT_LIMIT) -> dict:
    """Write the artifact for a parsed list into ``out_dir``; return its sidecar.

    Perceptual lists of up to ``PAIRWISE_LIMIT`` entries get no index (every pair is compared),
    up to ``flat_limit`` an exact flat index, larger ones a multi-index whose parameters keep range
    search exact (see ``multihash_params``)."""
    ht = parsed.hash_type
    fileio.ensure_dir(out_dir)
    files = {"entries.parquet": fileio.write_atomic(fileio.join(out_dir, "entries.parquet"),
                                                    _parquet_bytes(_entries_table(ht, parsed)))}
    index_params = {"kind": "sorted"}
    if ht.perceptual:
        index, index_params = _build_index(ht, parsed.code_array(), settings.max_distance, flat_limit)
        if index is not None:
            import faiss

            blob = faiss.serialize_index_binary(index).tobytes()
            files["index.faissbin"] = fileio.write_atomic(fileio.join(out_dir, "index.faissbin"), blob)
    sidecar = {
        "format": ARTIFACT_FORMAT, "name": settings.name, "type": ht.name,
        "max_distance": settings.max_distance, "min_quality": settings.min_quality,
        "action": settings.action, "entries": parsed.stats["entries"],
        "counts": dict(parsed.stats), "index": index_params, "files": files,
        "source": {"path": source_path, "sha256": parsed.source_sha256, "format": parsed.fmt},
        "code_version": code_version(),
    }
    sidecar["fingerprint"] = fingerprint(sidecar)
    fileio.write_atomic(fileio.join(out_dir, "sidecar.json"), fileio.canonical_json(sidecar))
    return sidecar


def read_checked_sidecar(art_dir: str, fmt: str, fingerprint_fn, what: str) -> dict:
    """An artifact's ``sidecar.json``, checked for its format and against its own fingerprint."""
    path = fileio.join(art_dir, "sidecar.json")
    if not fileio.exists(path):
        raise ArtifactError(f"{art_dir}: not a {what} (no sidecar.json)")
    sidecar = fileio.read_json(path)
    if sidecar.get("format") != fmt:
        raise ArtifactError(f"{path}: not a {what} (format {sidecar.get('format')!r})")
    if fingerprint_fn(sidecar) != sidecar.get("fingerprint"):
        raise ArtifactError(f"{path}: sidecar content does not match its fingerprint (edited?)")
    return sidecar


def read_sidecar(art_dir: str) -> dict:
    """Read and sanity-check a list artifact's sidecar (does not verify the data files)."""
    return read_checked_sidecar(art_dir, ARTIFACT_FORMAT, fingerprint, "list artifact")


def load_artifact_files(art_dir: str, expected_fingerprint: str | None = None) -> tuple[dict, dict]:
    """Sidecar plus the verified bytes of each data file; raise ArtifactError on any mismatch."""
    sidecar = read_sidecar(art_dir)
    if expected_fingerprint and sidecar["fingerprint"] != expected_fingerprint:
        raise ArtifactError(f"{art_dir}: fingerprint {sidecar['fingerprint'][:16]}… is not the pinned "
                            f"{expected_fingerprint[:16]}…")
    blobs = {}
    for name, digest in sorted(sidecar["files"].items()):
        data = fileio.read_bytes(fileio.join(art_dir, name))
        if hashlib.sha256(data).hexdigest() != digest:
            raise ArtifactError(f"{art_dir}/{name}: sha256 does not match the sidecar")
        blobs[name] = data
    get_hash_type(sidecar["type"])  # unknown types fail here, not at match time
    return sidecar, blobs
