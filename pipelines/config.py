"""Typed run configuration: frozen dataclasses built from YAML and flags, validated once at launch.

YAML and command-line flags go through one path: flags become the same nested data a YAML file
holds (``flags.py``), laid over the file's, and every section validates itself (``problems``), so a
value refused in YAML is refused as a flag too. Every error names the file and line, or the flag.
The resolved config is recorded whole in the manifest.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from shardguard.indexes.artifacts import ACTIONS
from shardguard.indexes.hashtypes import HASH_TYPES
from shardguard.indexes.listformats import FORMATS
from shardguard.transforms.contracts import ColumnNames
from shardguard.transforms.decide import ON_ERROR
from shardguard.transforms.decode import DEFAULT_MAX_PIXELS

DEFAULT_HASHES = ("md5", "sha256", "phash", "dhash", "pdq")


class ConfigError(ValueError):
    """An invalid configuration; the message names file:line or the flag."""


def is_int(v) -> bool:
    """An int that is not a bool (YAML ``true`` is an int to Python)."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v) -> bool:
    """An int or float that is not a bool."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _action(v, key):
    return [] if v in ACTIONS else [(key, f"{key} must be one of {', '.join(ACTIONS)}, got {v!r}")]


def _pin(v, key):
    """A pin is a 64-hex-digit sha256 string (quote it in YAML: an all-digit value is a number)."""
    ok = v is None or (isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v))
    return [] if ok else [(key, f"a pin must be a quoted 64-hex-digit sha256, got {v!r}")]


@dataclass(frozen=True)
class HashListSpec:
    """One known-bad list to apply: a raw list file or a prebuilt artifact directory."""

    type: str
    path: str
    name: str = ""
    max_distance: int | None = None
    min_quality: int | None = None
    action: str = "remove"
    format: str = "auto"
    hash_column: str | None = None
    id_column: str | None = None
    type_column: str | None = None
    other_types: str = "error"
    fingerprint: str | None = None

    def problems(self):
        """(key, message) for every invalid field."""
        if self.type not in HASH_TYPES:
            return [("type", f"unknown hash type {self.type!r}; supported: {', '.join(HASH_TYPES)}")]
        if not isinstance(self.path, str) or not self.path:
            return [("path", "a list needs a path")]
        out = _action(self.action, "action") + _pin(self.fingerprint, "fingerprint")
        for k in ("max_distance", "min_quality"):
            if getattr(self, k) is not None and not is_int(getattr(self, k)):
                out.append((k, f"{k} must be an integer, got {getattr(self, k)!r}"))
        if not out:
            why = HASH_TYPES[self.type].check_thresholds(self.max_distance, self.min_quality)
            out += [("max_distance" if "distance" in why else "min_quality", why)] if why else []
        if self.format not in FORMATS:
            out.append(("format", f"format must be one of {', '.join(FORMATS)}"))
        if self.other_types not in ("error", "skip"):
            out.append(("other_types", "other_types must be 'error' or 'skip'"))
        return out


@dataclass(frozen=True)
class DecodeConfig:
    """Decoding limits and what happens to rows that cannot be decoded."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    on_error: str = "drop"
    exact: bool = False  # True: full decode, hashes bit-identical to imagehash/pdqhash on the image
    # BLAS threads per worker process in the features stage: the runner's workers are the parallelism
    # (each BLAS pool spinning up all cores inside every worker made them fight); 0: BLAS's default
    blas_threads: int = 1

    def problems(self):
        """(key, message) for every invalid field."""
        out = []
        if not is_int(self.blas_threads) or self.blas_threads < 0:
            out.append(("blas_threads", f"blas_threads must be 0 (BLAS's default) or a positive integer, "
                                        f"got {self.blas_threads!r}"))
        if not is_int(self.max_pixels) or self.max_pixels <= 0:
            out.append(("max_pixels", f"max_pixels must be a positive integer (usual: {DEFAULT_MAX_PIXELS}), "
                                      f"got {self.max_pixels!r}"))
        if not isinstance(self.exact, bool):
            out.append(("exact", "exact must be true or false"))
        if self.on_error not in ON_ERROR:
            out.append(("on_error", f"on_error must be one of {', '.join(ON_ERROR)}"))
        return out


def _device(v) -> bool:
    return v in ("auto", "cpu", "cuda") or (isinstance(v, str) and re.fullmatch(r"cuda:\d+", v) is not None)


@dataclass(frozen=True)
class ClipConfig:
    """CLIP embeddings: model spec, device, batching, and the optional minimum image-caption score."""

    model: str | None = None
    weights_sha256: str | None = None  # pin: the run stops unless the loaded weights have this sha256
    device: str = "auto"
    batch_size: int = 32
    large_model: bool = False
    min_score: float | None = None
    min_score_action: str = "remove"

    def problems(self):
        """(key, message) for every invalid field."""
        out = _pin(self.weights_sha256, "weights_sha256") + _action(self.min_score_action, "min_score_action")
        if self.model is not None and (not isinstance(self.model, str) or not self.model.strip()):
            out.append(("model", f"model must be a model spec string, got {self.model!r}"))
        if not _device(self.device):
            out.append(("device", f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}"))
        if not is_int(self.batch_size) or not 1 <= self.batch_size <= 65536:
            out.append(("batch_size", f"batch_size must be an integer in 1..65536 (usual: 256 on a GPU), "
                                      f"got {self.batch_size!r}"))
        if not isinstance(self.large_model, bool):
            out.append(("large_model", "large_model must be true or false"))
        if self.min_score is not None and (not is_num(self.min_score) or not 0 <= self.min_score < 1):
            out.append(("min_score", f"min_score must be an image-caption cosine in [0, 1) (usual: 0.28 "
                                     f"for ViT-B/32, LAION's), got {self.min_score!r}"))
        return out


@dataclass(frozen=True)
class ExpandConfig:
    """kNN expansion around rows confirmed by a ``remove`` hash list."""

    threshold: float | None = None
    action: str = "quarantine"
    max_seeds: int = 100_000  # seeds every worker holds (dim × 2 bytes each); more fails the run
    max_per_row: int = 10  # neighbouring seeds recorded per row (the most similar)

    def problems(self):
        """(key, message) for every invalid field."""
        out = _action(self.action, "action")
        if self.threshold is not None and (not is_num(self.threshold) or not 0 < self.threshold <= 1):
            out.append(("threshold", f"threshold must be a cosine in (0, 1] (usual: 0.9-0.95 for "
                                     f"near-duplicates), got {self.threshold!r}"))
        for k, hi in (("max_seeds", 100_000_000), ("max_per_row", 1000)):
            v = getattr(self, k)
            if not is_int(v) or not 1 <= v <= hi:
                out.append((k, f"{k} must be an integer in 1..{hi}, got {v!r}"))
        return out


@dataclass(frozen=True)
class IntegrityConfig:
    """Check stored bytes against a reference content hash column (split-view poisoning)."""

    column: str | None = None
    type: str = "sha256"
    action: str = "remove"

    def problems(self):
        """(key, message) for every invalid field."""
        out = _action(self.action, "action")
        if self.type not in ("md5", "sha1", "sha256"):
            out.append(("type", "integrity type must be md5, sha1 or sha256"))
        if self.column is not None and (not isinstance(self.column, str) or not self.column):
            out.append(("column", "column must be a column name"))
        return out


@dataclass(frozen=True)
class EmbeddingsConfig:
    """Embeddings the user already has (clip-retrieval's layout), instead of a CLIP model."""

    files: str | None = None  # img_emb/*.npy, or parquet files with the vectors in ``column``
    metadata: str | None = None  # metadata/*.parquet, row-aligned with the .npy files
    model: str | None = None  # the model that made them, as the user declares it
    key_column: str = "key"  # joins embeddings to the dataset's rows
    column: str = "embedding"  # the vector column of parquet embedding files

    def problems(self):
        """(key, message) for every invalid field."""
        out = [(k, f"{k} must be a path pattern") for k in ("files", "metadata")
               if getattr(self, k) is not None and (not isinstance(getattr(self, k), str) or not getattr(self, k))]
        if self.files and not (isinstance(self.model, str) and self.model.strip()):
            out.append(("model", "supplied embeddings need the model that made them (--embeddings-model NAME)"))
        if self.metadata and not self.files:
            out.append(("metadata", "embeddings metadata without embeddings files (--embeddings)"))
        for k in ("key_column", "column"):
            if not isinstance(getattr(self, k), str) or not getattr(self, k):
                out.append((k, f"{k} must be a column name"))
        return out


DEDUP_KINDS = ("exact", "perceptual", "semantic")
DEDUP_DISTANCE = {"pdq": 16, "phash": 4, "dhash": 4}  # default near-duplicate thresholds


@dataclass(frozen=True)
class DedupConfig:
    """Dedup inside the dataset: which kinds, their thresholds, and what happens to duplicates."""

    kinds: tuple[str, ...] = ()
    action: str = "remove"  # for rows that duplicate a representative
    caption_conflicts: str | None = "tag"  # action for clusters whose captions differ; null: off
    exact_hash: str = "sha256"  # or md5 / sha1: the digest of the stored bytes
    perceptual_hash: str = "pdq"  # or phash / dhash
    perceptual_max_distance: int | None = None  # default: pdq 16, phash/dhash 4
    perceptual_min_quality: int = 50  # PDQ quality below which a row is not compared (flat images collide)
    semantic_threshold: float = 0.95  # embedding cosine
    rows_per_cluster: int = 2000  # semantic k-means: rows per cluster compared pairwise
    max_group: int = 50_000  # rows of one bucket or cluster compared pairwise; more fails the run loudly

    def problems(self):
        """(key, message) for every invalid field."""
        from shardguard.indexes.hashtypes import HASH_TYPES

        kinds = list(self.kinds) if isinstance(self.kinds, (list, tuple)) else [self.kinds]
        out = [("kinds", f"dedup kind {k!r} is not one of {', '.join(DEDUP_KINDS)}") for k in kinds if k not in DEDUP_KINDS]
        out += _action(self.action, "action")
        if self.caption_conflicts is not None:
            out += _action(self.caption_conflicts, "caption_conflicts")
        if self.exact_hash not in ("md5", "sha1", "sha256"):
            out.append(("exact_hash", "exact_hash must be md5, sha1 or sha256"))
        if self.perceptual_hash not in DEDUP_DISTANCE:
            out.append(("perceptual_hash", f"perceptual_hash must be one of {', '.join(DEDUP_DISTANCE)}"))
        elif self.perceptual_max_distance is not None:
            why = HASH_TYPES[self.perceptual_hash].check_thresholds(self.perceptual_max_distance, None)
            out += [("perceptual_max_distance", why.replace(f"(usual: {HASH_TYPES[self.perceptual_hash].default_max_distance})",
                                                             f"(usual for dedup: {DEDUP_DISTANCE[self.perceptual_hash]})"))] if why else []
        if not is_num(self.semantic_threshold) or not 0 < self.semantic_threshold <= 1:
            out.append(("semantic_threshold", f"semantic_threshold must be a cosine in (0, 1] (usual: 0.95), got {self.semantic_threshold!r}"))
        for k, lo in (("rows_per_cluster", 10), ("max_group", 100), ("perceptual_min_quality", 0)):
            if not is_int(getattr(self, k)) or getattr(self, k) < lo:
                out.append((k, f"{k} must be an integer >= {lo}"))
        return out

    def settings(self) -> list:
        """One ``DedupSettings`` per configured kind."""
        from shardguard.transforms.rules.dedup import DedupSettings

        base = dict(action=self.action, conflicts=self.caption_conflicts, max_group=self.max_group)
        out = []
        for kind in DEDUP_KINDS:
            if kind not in self.kinds:
                continue
            if kind == "exact":
                out.append(DedupSettings(kind, self.exact_hash, **base))
            elif kind == "perceptual":
                dist = DEDUP_DISTANCE[self.perceptual_hash] if self.perceptual_max_distance is None else self.perceptual_max_distance
                out.append(DedupSettings(kind, self.perceptual_hash, max_distance=dist,
                                         min_quality=self.perceptual_min_quality if self.perceptual_hash == "pdq" else 0, **base))
            else:
                out.append(DedupSettings(kind, "embedding", threshold=self.semantic_threshold,
                                         rows_per_cluster=self.rows_per_cluster, **base))
        return out


@dataclass(frozen=True)
class RobustConfig:
    """Finding modified copies: query-side views and hash expansion around confirmed matches."""

    views: str = "default"  # off | default (mirror, trimmed border) | full (every dihedral view too)
    expansion: bool = True  # hash expansion around seeds (needs pdq and phash among the hashes)
    pdq_max_distance: int = 31  # seed view vs a row's as-stored PDQ ...
    phash_max_distance: int = 12  # ... and, jointly, its pHash
    action: str = "quarantine"
    max_seeds: int = 10_000  # seeds whose views every worker holds (~40 views each)
    max_per_row: int = 10

    def problems(self):
        """(key, message) for every invalid field."""
        out = _action(self.action, "action")
        if self.views not in ("off", "default", "full"):
            out.append(("views", f"views must be off, default or full, got {self.views!r}"))
        if not isinstance(self.expansion, bool):
            out.append(("expansion", "expansion must be true or false"))
        for k, hi, usual in (("pdq_max_distance", 64, 31), ("phash_max_distance", 16, 12)):
            v = getattr(self, k)
            if not is_int(v) or not 0 <= v <= hi:
                out.append((k, f"{k} must be in 0..{hi} (usual: {usual}), got {v!r}"))
        for k in ("max_seeds", "max_per_row"):
            if not is_int(getattr(self, k)) or getattr(self, k) < 1:
                out.append((k, f"{k} must be a positive integer"))
        return out


@dataclass(frozen=True)
class ScanConfig:
    """Everything a scan needs besides Beam's own pipeline options."""

    inputs: tuple[str, ...] = ()
    output: str = ""
    columns: ColumnNames = field(default_factory=ColumnNames)
    hashes: tuple[str, ...] = DEFAULT_HASHES
    lists: tuple[HashListSpec, ...] = ()
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    concepts: tuple[str, ...] = ()
    expand: ExpandConfig = field(default_factory=ExpandConfig)
    integrity: IntegrityConfig = field(default_factory=IntegrityConfig)
    embeddings: EmbeddingsConfig = field(default_factory=EmbeddingsConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    robust: RobustConfig = field(default_factory=RobustConfig)
    redact_urls: bool = False  # removal/review records carry "sha256:<16 hex>" instead of the URL
    force: bool = False
    features_only: bool = False  # no rule at all, on purpose: only features are wanted

    SECTIONS = {"columns": ColumnNames, "decode": DecodeConfig, "clip": ClipConfig, "expand": ExpandConfig,
                "integrity": IntegrityConfig, "embeddings": EmbeddingsConfig, "dedup": DedupConfig,
                "robust": RobustConfig}
    TUPLES = ("inputs", "hashes", "concepts")

    def problems(self):
        """(key, message) for every invalid top-level field (sections check themselves)."""
        out = []
        for k in self.TUPLES:
            if not all(isinstance(v, str) and v for v in getattr(self, k)):
                out.append((k, f"{k} must be a list of strings"))
        bad = [h for h in self.hashes if h not in HASH_TYPES]
        if bad and not out:
            out.append(("hashes", f"unknown hash type {bad[0]!r}; supported: {', '.join(HASH_TYPES)}"))
        if not isinstance(self.output, str):
            out.append(("output", "output must be a path"))
        for k in ("force", "redact_urls", "features_only"):
            if not isinstance(getattr(self, k), bool):
                out.append((k, f"{k} must be true or false"))
        if self.embeddings.files and self.clip.model:
            out.append(("embeddings", "give either a CLIP model or supplied embeddings, not both"))
        return out

    def to_dict(self) -> dict:
        """Plain-data form for the manifest."""
        return dataclasses.asdict(self)
