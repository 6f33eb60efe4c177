"""Launch-time resolution of a run: lists, model, concept indexes, actions and fingerprints.

Everything that can be wrong with a config is found here, before any shard is touched: malformed
lists, unreadable checkpoints, concept indexes built for another model. The features fingerprint
covers what decides the stored features (hash set, decode settings, columns, model); the verdict
fingerprint what decides verdicts (lists, concepts, rules, expansion); a shard is redone when either
changes.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

from shardguard.indexes import fileio
from shardguard.indexes.artifacts import ArtifactError
from shardguard.indexes.hashtypes import HASH_TYPES
from shardguard.pipelines.config import ConfigError, ScanConfig
from shardguard.pipelines.lists import ResolvedList, resolve_lists
from shardguard.transforms.match import INTEGRITY_SOURCE, NEIGHBOR_SOURCE


@dataclass
class RunPlan:
    """A validated run: the config plus everything resolved from it."""

    cfg: ScanConfig
    lists: list[ResolvedList]
    hashes: tuple[str, ...]
    model_spec: object | None = None
    model_info: dict | None = None
    clip_size: int | None = None
    concepts: list[tuple[str, dict]] = dataclasses.field(default_factory=list)
    features_fp: str = ""
    verdict_fp: str = ""

    @property
    def config_fp(self) -> str:
        """Fingerprint of everything that decides a shard's outputs."""
        return hashlib.sha256(f"{self.features_fp}|{self.verdict_fp}".encode()).hexdigest()

    @property
    def actions(self) -> dict[str, str]:
        """Reason → action, for every reason this run can produce."""
        acts = {f"hashlist:{r.name}": r.sidecar["action"] for r in self.lists}
        for _, sc in self.concepts:
            acts.update({f"concept:{c['name']}": c["action"] for c in sc["concepts"]})
        acts["rule:min-clip-score"] = self.cfg.clip.min_score_action
        acts[NEIGHBOR_SOURCE] = self.cfg.expand.action
        acts[INTEGRITY_SOURCE] = self.cfg.integrity.action
        return acts

    @property
    def columns(self):
        """Input columns, with the integrity reference column when one is configured."""
        return dataclasses.replace(self.cfg.columns, integrity=self.cfg.integrity.column)

    @property
    def seed_sources(self) -> tuple[str, ...]:
        """Lists whose matches confirm known-bad rows (kNN seeds): those whose action is remove."""
        return tuple(r.name for r in self.lists if r.sidecar["action"] == "remove")

    @property
    def embed_dim(self) -> int | None:
        """Embedding width, when the run computes embeddings."""
        return self.model_info["embed_dim"] if self.model_info else None

    def manifest_extra(self) -> dict:
        """What the manifest records about features and indexes beyond the config."""
        return {"features": {"hashes": list(self.hashes), "model": self.model_info,
                             "fingerprint": self.features_fp},
                "concepts": [dict(sc, path=path) for path, sc in self.concepts],
                "verdict_fingerprint": self.verdict_fp}


def _load_model(cfg: ScanConfig):
    from shardguard.indexes.models import build_model, check_pin, describe, parse_spec

    spec = dataclasses.replace(parse_spec(cfg.clip.model), pinned_sha256=cfg.clip.weights_sha256)
    model, size, *_ = build_model(spec)  # loads once at launch: a bad checkpoint fails here
    info = describe(spec, model)
    check_pin(spec, info["weights_sha256"])
    # workers must load exactly these weights (a hub tag or file could change under a long run)
    return dataclasses.replace(spec, pinned_sha256=info["weights_sha256"]), info, size


def _concepts(cfg: ScanConfig, model_info: dict | None) -> list[tuple[str, dict]]:
    from shardguard.indexes.concepts import check_model, read_concept_sidecar

    out, names = [], set()
    for entry in cfg.concepts:
        path, _, pin = entry.partition("#")  # "PATH#FINGERPRINT" pins the index
        sc = read_concept_sidecar(path)
        if pin and sc["fingerprint"] != pin:
            raise ArtifactError(f"concept index {path}: fingerprint {sc['fingerprint'][:16]}… is not the "
                                f"pinned {pin[:16]}…")
        if model_info is None:
            raise ConfigError(f"concept index {path} needs embeddings: give --clip-model")
        check_model(sc, model_info, f"concept index {path}")
        for c in sc["concepts"]:
            if c["name"] in names:
                raise ConfigError(f"concept {c['name']!r} is defined by two concept indexes")
            names.add(c["name"])
        out.append((path, sc))
    return out


def verdict_fingerprint(cfg: ScanConfig, lists, concepts) -> str:
    """sha256 of what decides verdicts given the features."""
    pinned = {"lists": [[r.name, r.fingerprint, r.sidecar["action"]] for r in lists],
              "concepts": [sc["fingerprint"] for _, sc in concepts],
              "min_clip_score": [cfg.clip.min_score, cfg.clip.min_score_action],
              "expand": dataclasses.asdict(cfg.expand), "on_error": cfg.decode.on_error,
              "integrity": dataclasses.asdict(cfg.integrity), "redact_urls": cfg.redact_urls}
    return hashlib.sha256(fileio.canonical_json(pinned)).hexdigest()


FAST_DECODE_VERSION = 3


def features_fingerprint(cfg: ScanConfig, hashes, model_info) -> str:
    """sha256 of what decides the stored features."""
    pinned = {"columns": dataclasses.asdict(dataclasses.replace(cfg.columns, integrity=cfg.integrity.column)),
              "hashes": list(hashes),
              "max_pixels": cfg.decode.max_pixels, "exact_decode": cfg.decode.exact,
              # the fast path's algorithm changes with the code (2: block-summed LANCZOS weights,
              # dHash from 128-px drafts; 3: luma-only drafts when only pHash/dHash read pixels):
              # a rerun must not mix its hashes with an older run's
              "fast_decode_version": None if cfg.decode.exact else FAST_DECODE_VERSION,
              "model": model_info and model_info["weights_sha256"],
              "embed_batch": cfg.clip.batch_size if model_info else None}
    return hashlib.sha256(fileio.canonical_json(pinned)).hexdigest()


def prepare(cfg: ScanConfig, list_dir: str | None = None, parent_features: dict | None = None) -> RunPlan:
    """Resolve and validate everything; raises ConfigError / ListFormatError / ArtifactError /
    ModelError with a message naming the file (and line) at fault.

    ``parent_features`` (a re-filter) is the parent manifest's ``features`` block: the features exist
    already, so no model is loaded and the parent's hash set and fingerprint are used as they are.
    """
    lists = resolve_lists(cfg.lists, list_dir or cfg.output)
    spec = info = size = None
    if parent_features is not None:
        info = parent_features.get("model")
    elif cfg.clip.model:
        spec, info, size = _load_model(cfg)
    elif cfg.expand.threshold is not None or cfg.clip.min_score is not None:
        raise ConfigError("kNN expansion and min_clip_score need embeddings: give --clip-model")
    concepts = _concepts(cfg, info)
    wanted = set(cfg.hashes) | {r.sidecar["type"] for r in lists}
    if cfg.integrity.column:
        wanted.add(cfg.integrity.type)
    hashes = tuple(n for n in HASH_TYPES if n in wanted)
    if parent_features is not None:
        hashes = tuple(parent_features["hashes"])
    plan = RunPlan(cfg=cfg, lists=lists, hashes=hashes, model_spec=spec, model_info=info,
                   clip_size=size, concepts=concepts)
    plan.features_fp = (parent_features["fingerprint"] if parent_features is not None
                        else features_fingerprint(cfg, hashes, info))
    plan.verdict_fp = verdict_fingerprint(cfg, lists, concepts)
    if cfg.expand.threshold is not None and not plan.seed_sources:
        raise ConfigError("kNN expansion needs at least one hash list with action remove (the seeds)")
    return plan


__all__ = ["RunPlan", "prepare", "ArtifactError"]
