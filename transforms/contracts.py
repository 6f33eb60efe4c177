"""Typed contracts for what crosses modules and stages: shard spec and info, the features hand-off,
match and failure records, and the run layout (every output path, in one place).

They are plain frozen dataclasses: Beam encodes them with its default (pickle-based) coder, and they
only ever travel as values (keys are shard ids), so encoding never has to be deterministic.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pyarrow as pa

from shardguard.indexes import fileio

# Match kinds whose reason is their source alone (one rule, no per-list name).
_BARE_REASON_KINDS = frozenset({"neighbor", "integrity", "conflict"})

MATCH_TYPE = pa.struct([("source", pa.string()), ("kind", pa.string()), ("type", pa.string()),
                        ("entry", pa.string()), ("distance", pa.float64())])


@dataclass(frozen=True)
class ColumnNames:
    """Input column names (img2dataset's by default)."""

    image: str = "jpg"
    key: str = "key"
    url: str = "url"
    caption: str = "caption"
    status: str = "status"
    integrity: str | None = None  # reference content hash of the stored bytes (md5/sha256 hex)

    def problems(self):
        """(key, message) for every invalid field (config validation)."""
        out = [(k, f"{k} must be a column name, got {getattr(self, k)!r}")
               for k in ("image", "key", "url", "caption", "status")
               if not isinstance(getattr(self, k), str) or not getattr(self, k)]
        if self.integrity is not None and (not isinstance(self.integrity, str) or not self.integrity):
            out.append(("integrity", "integrity must be a column name"))
        return out


@dataclass(frozen=True)
class MatchRecord:
    """One reason to act on one row: which rule source (list, concept, rule), what kind of match,
    which hash type or signal, which entry (id only, never list content), and how far or how similar."""

    source: str
    kind: str
    type: str
    entry: str
    distance: float

    @property
    def reason(self) -> str:
        """The reason key this match contributes (``hashlist:<list>``, ``concept:<name>``,
        ``rule:<name>``, ``url:<list>``…, or the bare source for expansion and integrity)."""
        return self.source if self.kind in _BARE_REASON_KINDS else f"{self.kind}:{self.source}"

    def as_row(self) -> dict:
        """The record's struct (``MATCH_TYPE``)."""
        return {"source": self.source, "kind": self.kind, "type": self.type, "entry": self.entry,
                "distance": float(self.distance)}

    def sort_key(self) -> tuple:
        """Deterministic order of a row's matches in records."""
        return (self.source, self.distance, self.entry)


@dataclass(frozen=True)
class FailureRecord:
    """Why a whole shard could not be processed (a dead letter at shard level)."""

    stage: str
    error_class: str
    message: str

    def as_dict(self) -> dict:
        """Plain form for summaries."""
        return {"stage": self.stage, "error_class": self.error_class, "message": self.message[:500]}

    @classmethod
    def of(cls, stage: str, exc: BaseException) -> "FailureRecord":
        """A failure from an exception (class name and message, truncated)."""
        return cls(stage, type(exc).__name__, str(exc)[:500])


@dataclass(frozen=True)
class ParentShard:
    """A re-filter's view of one shard of its parent run (everything it reuses, with checksums)."""

    run_dir: str
    input_sha256: str | None
    input_size: int | None
    status: str
    outputs: dict = field(default_factory=dict)  # kind -> {"path" (relative), "sha256", "rows"}
    failure: dict | None = None
    adopt_seeds: bool = False  # the re-filter takes the parent's seed set: link this shard's seeds file too


@dataclass(frozen=True)
class ShardSpec:
    """A shard the launcher planned: its id, input path and format (and, in a re-filter, its parent)."""

    shard: str
    path: str
    format: str
    parent: ParentShard | None = None


@dataclass(frozen=True)
class ShardInfo:
    """What reading a shard's input established: its identity and what the clean copy needs."""

    shard: str
    path: str
    format: str
    num_rows: int
    sha256: str
    size: int
    compression: str = "snappy"
    layout_sha256: str | None = None  # parquet footer digest: a copy proves it is the scanned file
    footer_size: int | None = None
    columns: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        """Plain form for the features marker."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ShardInfo":
        """Inverse of ``as_dict`` (lists back to tuples)."""
        return cls(**dict(data, columns=tuple(data.get("columns") or ())))


@dataclass(frozen=True)
class ShardRef:
    """The features stage's hand-off for one shard: where its features are, or why there are none."""

    spec: ShardSpec
    info: ShardInfo | None
    features: dict | None  # {"path" (relative to the run), "sha256", "rows"}
    failure: FailureRecord | None = None

    @property
    def shard(self) -> str:
        """The shard id."""
        return self.spec.shard


@dataclass(frozen=True)
class DatasetMatches:
    """What a dataset-scope rule found for one shard's rows (or why it could not decide them)."""

    rows: tuple = ()  # ((row, MatchRecord), …)
    failure: FailureRecord | None = None


@dataclass(frozen=True)
class ShardVerdicts:
    """One shard's decisions. A row that was checked and matched nothing is kept with no reason and
    gets no record (a record per such row was most of the verdict stage's per-row cost); every other
    row — matched by some rule, or not fully checked — has, in row order, its table position, its
    row fields (row, key, url, sha256, status, error_*) and its verdict record (``decide``)."""

    num_rows: int
    row_ids: tuple  # every row's ``row`` value, in table order
    positions: tuple = ()
    fields: tuple = ()
    records: tuple = ()

    def kept_rows(self) -> set[int]:
        """``row`` values of the kept rows: all but those a record removes, quarantines or errors."""
        from shardguard.transforms.decide import KEEP

        dropped = {v["row"] for v in self.records if v["verdict"] != KEEP}
        return {r for r in self.row_ids if r not in dropped}

    def positions_with(self, verdict: str) -> set[int]:
        """Table positions of the rows given ``verdict``."""
        return {p for p, v in zip(self.positions, self.records) if v["verdict"] == verdict}


OUTPUT_KINDS = ("clean", "removed", "review", "errors", "tagged", "features")
RECORD_KINDS = ("removed", "review", "errors", "tagged")


@dataclass(frozen=True)
class RunLayout:
    """Every path of a run directory. Relative paths (what summaries and manifests record) keep a
    run directory movable; ``abs`` turns one back into a path."""

    root: str

    def abs(self, rel: str) -> str:
        """A path recorded relative to the run (or an absolute/remote one, returned as is)."""
        return rel if rel.startswith("/") or "://" in rel else fileio.join(self.root, rel)

    def rel(self, path: str) -> str:
        """``path`` relative to the run directory when inside it."""
        prefix = self.root.rstrip("/") + "/"
        return path[len(prefix):] if path.startswith(prefix) else path

    def output(self, kind: str, shard: str, ext: str = "parquet") -> str:
        """A per-shard output file (``clean``, ``removed``, ``review``, ``errors``, ``tagged``, ``features``)."""
        return fileio.join(self.root, kind, f"{shard}.{ext}")

    def summary(self, shard: str) -> str:
        """A shard's summary: written last, it is the shard's "done" marker."""
        return fileio.join(self.root, "shards", f"{shard}.json")

    def features_marker(self, shard: str) -> str:
        """The features stage's "done" marker for a shard (input identity and features fingerprint)."""
        return fileio.join(self.root, "features", f"{shard}.json")

    def list_dir(self, name: str) -> str:
        """A list artifact used by the run (copied in, so the run is self-contained)."""
        return fileio.join(self.root, "lists", name)

    def concepts_dir(self, name: str) -> str:
        """A concept index used by the run (copied in)."""
        return fileio.join(self.root, "concepts", name)

    @property
    def manifest(self) -> str:
        """The run's manifest."""
        return fileio.join(self.root, "manifest.json")

    @property
    def owner(self) -> str:
        """The marker that says this directory is a shardguard run (written before any work)."""
        return fileio.join(self.root, ".shardguard-run.json")

    SUBDIRS = ("clean", "removed", "review", "errors", "tagged", "features", "shards", "lists", "concepts")
