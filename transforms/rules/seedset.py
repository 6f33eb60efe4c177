"""Hash expansion's whole seed set as a run artifact: a re-filter that changes no seed rule takes its
parent's instead of computing it again.

Why: the seed set is a function of the features and of what decides seeds (the confirming lists,
the view set, ``max_seeds``). A re-filter adopts its parent's features as they are, so when those
rules are the parent's too, so is its seed set. Computing it again read every shard's features a
second time and matched every row against the seed lists again, in a stage of its own that every
verdict waited for (measured: ~0.5 s of a 3.1 s re-filter of 100,000 rows; the verdicts then waited
for the combine too).

A run writes its set after the combine (``seedset/<key>.parquet``: the ``SEED_SCHEMA`` rows, sorted;
the manifest's ``seed_sets`` records path, sha256, key and rows), unless a seed could not be read or
the set is over its limit (a child then computes its own). A re-filter takes the parent's set when
its key — the seed rules' fingerprints, view set and limit — is the parent's, every parent shard
finished, the file still has the recorded sha256, and ``--force`` is not given. At launch it links
that file into its own run (checked against its sha256 again), and each worker reads the set from
there once (``SeedSetFile``, the rule's preset side value): no stage of the pipeline hands it over,
so the verdicts wait for nothing. Each shard's seeds file is linked by the worker that adopts the
shard's features (``ParentShard.adopt_seeds``; checked against its sha256, a mismatch fails that
shard), so the launch makes no request per shard. Its outputs are those of computing the set
again, byte for byte (tested).
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass

import pyarrow as pa

from shardguard.indexes import fileio
from shardguard.transforms.rules.seedpack import SeedViews
from shardguard.transforms.rules.seedviews import SEED_SCHEMA

SET_FORMAT = "shardguard-seedset/1"


def seed_set_key(rule) -> str:
    """What decides a hash expansion's seed set, given the features (module doc)."""
    parts = [SET_FORMAT, [r.fingerprint() for r in rule.seed_rules], rule.view_set(), rule.max_seeds]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def set_path(layout, key: str) -> str:
    """Where a run keeps the seed set of ``key``."""
    return fileio.join(layout.root, "seedset", f"{key[:16]}.parquet")


def set_bytes(value: dict, key: str) -> bytes:
    """The parquet bytes of a combined seed set (``BoundedSeedViews``' value)."""
    import pyarrow.parquet as pq

    rows = value["seeds"].rows()
    table = pa.Table.from_pylist([dict(zip(SEED_SCHEMA.names, r)) for r in rows], schema=SEED_SCHEMA)
    meta = {"format": SET_FORMAT, "key": key, "count": str(value["count"]), "limit": str(value["limit"])}
    buf = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(meta), buf, compression="zstd")
    return buf.getvalue()


def save_seed_set(value: dict, layout, key: str, force: bool = False) -> None:
    """Write this run's seed set (a leaf after the combine); a set with unreadable seeds or over its
    limit is not written, so a child computes its own and fails the same way. A rerun rewrites
    nothing unless forced."""
    if value.get("errors") or value["count"] > value["limit"]:
        return
    path, data = set_path(layout, key), set_bytes(value, key)
    if force or not (fileio.exists(path) and fileio.read_bytes(path) == data):
        fileio.write_atomic(path, data)


def read_seed_set(data: bytes, key: str) -> dict:
    """The side value a seed set file stands for (what the combine handed the verdicts)."""
    from shardguard.indexes.arrowio import read_table

    table = read_table(data)
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    if meta.get("format") != SET_FORMAT or meta.get("key") != key:
        raise ValueError(f"seed set of format {meta.get('format')!r}, key {meta.get('key', '')[:16]!r}: "
                         f"not the set of key {key[:16]}")
    return {"count": int(meta["count"]), "limit": int(meta["limit"]), "errors": [], "seeds": _packed(table)}


def _packed(table: pa.Table) -> SeedViews:
    """``SeedViews.pack`` of the file's rows, built from its columns (the file holds them in pack's
    order; ~6x faster than a tuple per view, and this runs before any verdict can start)."""
    import numpy as np
    import pyarrow.compute as pc

    from shardguard.indexes.hexcolumn import hex_codes

    seed, view = table.column("seed"), table.column("view")
    seeds, views = sorted(pc.unique(seed).to_pylist()), sorted(pc.unique(view).to_pylist())
    seed_of = pc.index_in(seed, value_set=pa.array(seeds, pa.string())).to_numpy().astype("<i4")
    view_of = pc.index_in(view, value_set=pa.array(views, pa.string())).to_numpy().astype("<i4")
    pdq, has_pdq = hex_codes(table.column("pdq"), 32)
    phash, has_phash = hex_codes(table.column("phash"), 8)
    order = np.lexsort((view_of, seed_of))
    if not (has_pdq.all() and has_phash.all()) or np.any(order != np.arange(len(order))):
        return SeedViews.pack(list(zip(*(table.column(n).to_pylist() for n in SEED_SCHEMA.names))))
    quality = pc.fill_null(table.column("pdq_quality"), 0).to_numpy().astype("<i4")
    return SeedViews(tuple(seeds), tuple(views), seed_of.tobytes(), view_of.tobytes(), pdq.tobytes(),
                     quality.tobytes(), phash.tobytes())


@dataclass(frozen=True)
class ParentSeedSet:
    """A parent run's seed set a re-filter takes: its file, with the sha256 the parent recorded."""

    path: str
    sha256: str


@dataclass(frozen=True)
class SeedSetFile:
    """A seed set settled before the run (a parent's, linked into this run at launch): the verdicts'
    side value, read by each worker process once and checked against its sha256."""

    path: str
    sha256: str
    key: str

    @property
    def tag(self) -> str:
        """What a worker process caches the loaded set under."""
        return f"seed-set|{self.sha256}"

    def load(self) -> dict:
        """The side value the file stands for; raises when its bytes are not the recorded ones."""
        data = fileio.read_bytes(self.path)
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise ValueError(f"seed set {self.path} changed after the re-filter took it (sha256 differs)")
        return read_seed_set(data, self.key)


def link_parent_set(parent: ParentSeedSet, layout, key: str) -> None:
    """Link the parent's seed set file into this run, checked against its sha256 (a file changed
    since ``parent_seed_set`` checked it fails the launch)."""
    fileio.copy_verified(parent.path, set_path(layout, key), parent.sha256, link=True)


def parent_seed_set(rule, parent: dict, parent_dir: str, force: bool) -> ParentSeedSet | None:
    """The parent's set, when this re-filter would compute the same one (module doc); else None."""
    key = seed_set_key(rule)
    rec = next((s for s in parent.get("seed_sets") or [] if s.get("key") == key), None)
    if force or rec is None or any(s["status"] != "ok" for s in parent["shards"]):
        return None
    path = fileio.join(parent_dir, rec["path"])
    if not fileio.exists(path) or fileio.sha256_file(path)[0] != rec["sha256"]:
        return None  # gone or changed since: computed again
    return ParentSeedSet(path, rec["sha256"])


def expansions(rules) -> list:
    """The run's hash expansion rules (the ones with a seed set)."""
    from shardguard.transforms.rules.hashexpand import HashExpansion

    return [r for r in rules if isinstance(r, HashExpansion)]


def records(rules, layout, shards: list[dict]) -> list[dict]:
    """What the manifest records about each seed set this run wrote or took from its parent. A set
    is this run's only when every shard finished and one has seeds (the set was combined, and
    written unless it was already there with these bytes); otherwise a file left by an earlier run
    in this directory is removed, never recorded as this run's."""
    from apache_beam.io.filesystems import FileSystems

    from shardguard.indexes.arrowio import read_metadata

    ours = all(s["status"] == "ok" for s in shards) and any("seeds" in s["outputs"] for s in shards)
    names = {_name(set_path(layout, seed_set_key(r))) for r in expansions(rules)} if ours else set()
    present = _present(layout)  # compared by file name: a store may spell the folder another way
    stale = [p for p in present if _name(p) not in names]  # not this run's, or of another config
    if stale:
        FileSystems.delete(stale)
    out = []
    for r in expansions(rules):
        key = seed_set_key(r)
        path = set_path(layout, key)
        if _name(path) not in names or _name(path) not in {_name(p) for p in present}:
            continue
        data = fileio.read_bytes(path)
        out.append({"key": key, "path": layout.rel(path), "sha256": hashlib.sha256(data).hexdigest(),
                    "rows": read_metadata(data).num_rows, "from_parent": r.parent_set is not None})
    return out


def _name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _present(layout) -> list[str]:
    """The seed set files in this run directory."""
    from shardguard.transforms.formats.files import list_folder

    folder = fileio.join(layout.root, "seedset")
    try:
        return sorted(p for name, p in list_folder(folder).items() if name.endswith(".parquet"))
    except Exception:  # noqa: BLE001 - no folder: no set (an object store may list nothing, or fail)
        return []
