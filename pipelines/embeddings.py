"""Embeddings users already have (clip-retrieval's layout): resolve, validate and index them at launch.

``--embeddings 'img_emb/*.npy' --embeddings-metadata 'metadata/*.parquet'``: ``img_emb_N.npy`` is
row-aligned with ``metadata_N.parquet`` (pairs are matched by their number, else by sorted order);
or ``--embeddings 'emb/*.parquet'`` with the vectors in a column of the same files. Rows of the
dataset are joined to embeddings by key (``--embeddings-key-column``, default ``key``). Checked before
any work, naming the file (and row): one dimension everywhere, vectors and metadata rows in equal
numbers, float16/float32, unique keys, L2 norms of a sample near 1 (every vector used is checked again
when it is read). The key index is written into the run (``embeddings/index.parquet`` with a sidecar),
so workers and re-filters read it from there.

The user declares the model (``--embeddings-model``); the run records ``supplied:<model>`` and a
fingerprint of the files (name, size, and the sha256 of their first and last MiB), and concept indexes
must be built for the same declared model (``concepts build --model supplied:<model> --embeddings …``).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np

from shardguard.indexes import fileio
from shardguard.indexes.arrowio import read_table, to_pylist
from shardguard.indexes.vectors import VectorFileError, check_norms, npy_header, read_rows, write_index
from shardguard.pipelines.config import ConfigError

SAMPLE_ROWS = 64  # vectors per file whose norm is checked at launch


@dataclass(frozen=True)
class EmbeddingSet:
    """Resolved supplied embeddings: files, the key index artifact, dimension and identity."""

    vectors: tuple[str, ...]  # .npy files, or parquet files holding ``column``
    column: str | None
    index_dir: str
    dim: int
    model: str
    fingerprint: str

    def model_info(self) -> dict:
        """What the run records as its model (and what concept indexes are checked against)."""
        return declared_model_info(self.model, self.dim)


def declared_model_info(model: str, dim: int) -> dict:
    """The identity of embeddings from a declared model: ``supplied:<model>`` (no weights loaded)."""
    spec = model if model.startswith("supplied:") else f"supplied:{model}"
    return {"spec": spec, "weights_sha256": hashlib.sha256(spec.encode()).hexdigest(), "embed_dim": dim,
            "random_weights": False, "supplied": True}


def _match(pattern: str, what: str) -> list[str]:
    from apache_beam.io.filesystems import FileSystems

    found = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    if not found:
        raise ConfigError(f"--{what} {pattern!r} matches no file")
    return found


def _number(path: str) -> int | None:
    m = re.search(r"(\d+)\.[a-z]+$", path)
    return int(m.group(1)) if m else None


def pair(vectors: list[str], metas: list[str]) -> list[tuple[str, str]]:
    """img_emb_N.npy with metadata_N.parquet (by N when every file has one, else in sorted order)."""
    if len(vectors) != len(metas):
        raise ConfigError(f"--embeddings matches {len(vectors)} files, --embeddings-metadata {len(metas)}: they must pair up")
    nv, nm = [_number(p) for p in vectors], [_number(p) for p in metas]
    if None not in nv and None not in nm and sorted(nv) == sorted(nm):
        by = dict(zip(nm, metas))
        return [(v, by[n]) for v, n in zip(vectors, nv)]
    return list(zip(vectors, metas))


def _file_identity(path: str) -> str:
    from apache_beam.io.filesystems import FileSystems

    size = FileSystems.match([path])[0].metadata_list[0].size_in_bytes
    with FileSystems.open(path, compression_type="uncompressed") as f:
        head = f.read(1 << 20)
        f.seek(max(0, size - (1 << 20)))
        tail = f.read()
    return f"{path.rsplit('/', 1)[-1]}:{size}:{hashlib.sha256(head).hexdigest()}:{hashlib.sha256(tail).hexdigest()}"


def _file_keys(vec: str, meta: str | None, column: str | None, key_column: str) -> tuple[list, int]:
    """(keys, dim) of one embedding file, its shape and metadata checked."""
    src = meta or vec
    table = read_table(src)
    if key_column not in table.column_names:
        raise ConfigError(f"{src}: no key column {key_column!r} (columns: {', '.join(table.column_names)[:200]})")
    keys = to_pylist(table.column(key_column))
    if column is not None:
        if column not in table.column_names:
            raise ConfigError(f"{vec}: no embedding column {column!r}")
        vecs = read_rows(vec, np.arange(min(len(keys), SAMPLE_ROWS)), column)
        dim = vecs.shape[1]
    else:
        try:
            (n, dim), _, _ = npy_header(vec)
        except VectorFileError as exc:
            raise ConfigError(str(exc)) from None
        if n != len(keys):
            raise ConfigError(f"{vec}: {n} vectors, but {meta} has {len(keys)} rows (they must be row-aligned)")
        vecs = read_rows(vec, np.arange(min(n, SAMPLE_ROWS)))
    try:
        check_norms(vec, np.arange(len(vecs)), vecs)
    except VectorFileError as exc:
        raise ConfigError(str(exc)) from None
    return keys, dim


def resolve(cfg, staging: str) -> EmbeddingSet:
    """Check the supplied embeddings and write their key index into ``staging`` (module doc)."""
    e = cfg.embeddings
    vectors = _match(e.files, "embeddings")
    metas = _match(e.metadata, "embeddings-metadata") if e.metadata else [None] * len(vectors)
    pairs = pair(vectors, metas) if e.metadata else list(zip(vectors, metas))
    all_keys, files, rows, dims = [], [], [], set()
    for i, (vec, meta) in enumerate(pairs):
        keys, dim = _file_keys(vec, meta, None if vec.endswith(".npy") else e.column, e.key_column)
        dims.add(dim)
        all_keys += keys
        files += [i] * len(keys)
        rows += range(len(keys))
    if len(dims) != 1:
        raise ConfigError(f"--embeddings: files have different dimensions {sorted(dims)}")
    index_dir = fileio.join(staging, "embeddings")
    try:
        write_index(index_dir, all_keys, files, rows, [p for p, _ in pairs])
    except VectorFileError as exc:
        raise ConfigError(str(exc)) from None
    fp = hashlib.sha256("|".join([e.model, str(dims)] + [_file_identity(p) for p, _ in pairs]).encode()).hexdigest()
    return EmbeddingSet(tuple(p for p, _ in pairs), None if vectors[0].endswith(".npy") else e.column, index_dir,
                        dims.pop(), e.model, fp)
