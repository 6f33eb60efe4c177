"""Launch-time resolution of a run: lists, model, concept indexes, extractors, rules, fingerprints.

Everything that can be wrong with a config is found here, before any shard is touched: malformed
lists, unreadable checkpoints, concept indexes built for another model, rules that need a feature
the run does not compute, a run that would check nothing. The features fingerprint covers what
decides the stored features (extractors, decode settings, columns); the verdict fingerprint what
decides verdicts given the features (every rule's fingerprint, the error policy, URL redaction).
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field

from shardguard.indexes import fileio
from shardguard.indexes.hashtypes import HASH_TYPES
from shardguard.pipelines.config import ConfigError, ScanConfig
from shardguard.pipelines.lists import ResolvedList, resolve_lists
from shardguard.transforms import extractors as ex
from shardguard.transforms import rules as rl
from shardguard.transforms.contracts import RunLayout
from shardguard.transforms.featurestage import FeatureSettings
from shardguard.transforms.verdict import VerdictSettings

FAST_DECODE_VERSION = 5  # the fast path's algorithm (README; 4: PDQ from the luma plane; 5: PDQ's filter
# evaluated where sampled): a rerun never mixes its hashes with an older run's


@dataclass
class RuleContext:
    """What ``Rule.build`` reads: the config and what was resolved from it."""

    cfg: ScanConfig
    lists: list[ResolvedList]
    concepts: list[tuple[str, dict]]
    url_lists: list = field(default_factory=list)

    @property
    def columns(self):
        """Input columns (what a rule that reads images again needs)."""
        return dataclasses.replace(self.cfg.columns, integrity=self.cfg.integrity.column)

    def seed_rules(self) -> list:
        """Hash-list rules whose matches confirm known-bad rows (expansion seeds): action remove."""
        from shardguard.transforms.rules.hashlists import HashListRule

        return [r for r in HashListRule.build(self) if r.action == "remove"]


@dataclass
class RunPlan:
    """A validated run: the config plus everything resolved from it."""

    cfg: ScanConfig
    layout: RunLayout
    lists: list[ResolvedList]
    hashes: tuple[str, ...]
    extractors: tuple = ()
    rules: tuple = ()
    model_spec: object | None = None
    model_info: dict | None = None
    concepts: list[tuple[str, dict]] = field(default_factory=list)
    features_fp: str = ""
    verdict_fp: str = ""
    computed: list = field(default_factory=list)
    url_lists: list = field(default_factory=list)
    url_sidecars: list = field(default_factory=list)
    metadata_only: bool = False  # a pre-filter: rows are URLs, no image is read
    supplied: object | None = None  # pipelines.embeddings.EmbeddingSet, when the user gave embeddings

    @property
    def config_fp(self) -> str:
        """Fingerprint of everything that decides a shard's outputs."""
        return hashlib.sha256(f"{self.features_fp}|{self.verdict_fp}".encode()).hexdigest()

    @property
    def actions(self) -> dict[str, str]:
        """Reason → action, for every reason this run's rules can give."""
        return {reason: action for r in self.rules for reason, action in r.reasons().items()}

    def build_rules(self) -> tuple:
        """Every rule the registry builds from this plan's resolved config."""
        ctx = RuleContext(self.cfg, self.lists, self.concepts, list(self.url_lists))
        return tuple(r for cls in rl.registry() for r in cls.build(ctx))

    def install(self) -> None:
        """Copy the run's list and concept artifacts into the output; rules then load those copies."""
        from shardguard.pipelines import concepts, lists

        self.lists = lists.install(self.lists, self.layout)
        self.concepts = concepts.install(self.concepts, self.layout)
        self.url_lists = lists.install_url_lists(self.url_lists, self.layout)
        self.rules = self.build_rules()
        if self.supplied is not None:
            self._install_embeddings()

    def _install_embeddings(self) -> None:
        """The key index of the supplied embeddings goes into the run (workers read it there)."""
        from shardguard.transforms.extractors.supplied import SuppliedEmbeddings

        dst = fileio.join(self.layout.root, "embeddings")
        fileio.ensure_dir(dst)
        for name in ("index.parquet", "files.json"):
            src = fileio.join(self.supplied.index_dir, name)
            fileio.copy_verified(src, fileio.join(dst, name), fileio.sha256_file(src)[0])
        self.supplied = dataclasses.replace(self.supplied, index_dir=dst)
        self.extractors = tuple(SuppliedEmbeddings(e.column, dst, e.dim, e.fp) if isinstance(e, SuppliedEmbeddings)
                                else e for e in self.extractors)

    def _embeddings_record(self) -> dict:
        """What the manifest records about supplied embeddings (``manifest verify`` checks its files)."""
        s = self.supplied
        files = {n: fileio.sha256_file(fileio.join(s.index_dir, n))[0] for n in ("index.parquet", "files.json")}
        return {"path": self.layout.rel(s.index_dir), "model": s.model, "dim": s.dim, "fingerprint": s.fingerprint,
                "vectors": list(s.vectors), "files": files}

    def list_records(self) -> list[dict]:
        """What the manifest records about every list (sidecars, never entries), path relative to the run."""
        hashed = [dict(r.sidecar, path=self.layout.rel(r.art_dir), name=r.name) for r in self.lists]
        return hashed + list(self.url_sidecars)

    def feature_settings(self) -> FeatureSettings:
        """What the features stage needs."""
        cfg = self.cfg
        return FeatureSettings(tuple(self.extractors), cfg.decode.max_pixels, cfg.decode.exact, self.columns,
                               self.features_fp, cfg.force, self.metadata_only, cfg.decode.blas_threads)

    def verdict_settings(self) -> VerdictSettings:
        """What the verdict stage needs."""
        cfg = self.cfg
        return VerdictSettings(tuple(self.rules), self.actions, cfg.decode.on_error, cfg.redact_urls,
                               self.columns, self.config_fp, cfg.force)

    @property
    def columns(self):
        """Input columns, with the integrity reference column when one is configured."""
        return dataclasses.replace(self.cfg.columns, integrity=self.cfg.integrity.column)

    def manifest_extra(self) -> dict:
        """What the manifest records about features and indexes beyond the config."""
        return {"features": {"hashes": list(self.hashes), "model": self.model_info,
                             "fingerprint": self.features_fp, "computed": self.computed,
                             "columns": [f.name for e in ex.ordered(self.extractors) for f in e.columns()]},
                "concepts": [dict(sc, path=self.layout.rel(path)) for path, sc in self.concepts],
                "rules": sorted({k for r in self.rules for k in r.kinds}),
                **({"embeddings": self._embeddings_record()} if self.supplied is not None else {}),
                "verdict_fingerprint": self.verdict_fp}


def _load_model(cfg: ScanConfig):
    from shardguard.indexes.models import build_model, check_pin, describe, parse_spec

    spec = dataclasses.replace(parse_spec(cfg.clip.model), pinned_sha256=cfg.clip.weights_sha256)
    model, size, *_ = build_model(spec)  # loads once at launch: a bad checkpoint fails here
    info = describe(spec, model)
    check_pin(spec, info["weights_sha256"])
    # workers must load exactly these weights (a hub tag or file could change under a long run)
    return dataclasses.replace(spec, pinned_sha256=info["weights_sha256"]), info, size


def hashes_for(cfg: ScanConfig, lists) -> tuple[str, ...]:
    """The hash types to compute: the configured ones plus what lists, the integrity check, dedup and
    the robust views need (``--hashes md5`` never turns a requested check off silently)."""
    wanted = set(cfg.hashes) | {r.sidecar["type"] for r in lists}
    if cfg.integrity.column:
        wanted.add(cfg.integrity.type)
    wanted |= {s.column for s in cfg.dedup.settings() if s.kind != "semantic"}
    if cfg.robust.views != "off":  # views are PDQ's; hash expansion compares PDQ and pHash
        wanted |= {"pdq", "phash"} if cfg.robust.expansion else {"pdq"}
    return tuple(n for n in HASH_TYPES if n in wanted)


def extractors_for(cfg: ScanConfig, hashes, spec, info, size, supplied=None) -> tuple:
    """The run's feature extractors (the always-present ones are added by the registry)."""
    from shardguard.transforms.extractors.clip import ClipExtractor
    from shardguard.transforms.extractors.hashes import HashExtractor
    from shardguard.transforms.extractors.supplied import SuppliedEmbeddings
    from shardguard.transforms.extractors.views import ViewsExtractor

    views = cfg.robust.views != "off"
    out = [HashExtractor(hashes, cfg.decode.exact, for_views=cfg.robust.views)]
    if views:
        out.append(ViewsExtractor(cfg.robust.views))
    if supplied is not None:
        out.append(SuppliedEmbeddings(supplied.column, supplied.index_dir, supplied.dim, supplied.fingerprint))
    elif info is not None and info.get("supplied"):
        out.append(SuppliedEmbeddings(dim=info["embed_dim"]))  # a re-filter of a run that had them
    elif info is not None:
        out.append(ClipExtractor(spec, cfg.clip.device, cfg.clip.batch_size, size or 224, info["embed_dim"],
                                 cfg.clip.large_model))
    return tuple(ex.ordered(out))


def features_fingerprint(cfg: ScanConfig, extractors) -> str:
    """sha256 of what decides the stored features."""
    pinned = {"columns": dataclasses.asdict(dataclasses.replace(cfg.columns, integrity=cfg.integrity.column)),
              "extractors": {e.name: e.fingerprint() for e in extractors},
              "max_pixels": cfg.decode.max_pixels, "exact_decode": cfg.decode.exact,
              "fast_decode_version": None if cfg.decode.exact else FAST_DECODE_VERSION}
    return hashlib.sha256(fileio.canonical_json(pinned)).hexdigest()


def verdict_fingerprint(cfg: ScanConfig, rules) -> str:
    """sha256 of what decides verdicts given the features."""
    pinned = {"rules": [r.fingerprint() for r in rules], "on_error": cfg.decode.on_error,
              "redact_urls": cfg.redact_urls}
    return hashlib.sha256(fileio.canonical_json(pinned)).hexdigest()


def check_rules(cfg: ScanConfig, rules, columns: set[str], missing_hint) -> None:
    """Every rule's features exist (``missing_hint(feature)`` says why one does not); expansion has
    seeds; a run without any rule says that it wants that."""
    for r in rules:
        missing = sorted(r.requires() - columns)
        if missing:
            raise ConfigError(f"{sorted(r.reasons())[0]} needs feature {missing[0]!r}, {missing_hint(missing[0])}")
    if cfg.expand.threshold is not None and not any(r.action == "remove" for r in rules if r.kinds == ("hashlist",)):
        raise ConfigError("kNN expansion needs at least one hash list with action remove (the seeds)")
    if not rules and not cfg.features_only:
        raise ConfigError("nothing to check: no hash list, concept index, rule, expansion or dedup is configured; "
                          "give one, or --features-only if only features are wanted")


def computed_columns(extractors) -> set[str]:
    """Feature columns that hold values in this run (base columns and what each extractor fills)."""
    from shardguard.transforms.features import BASE_FIELDS

    return {f.name for f in BASE_FIELDS} | {c for e in extractors for c in e.computed()}


def _features(cfg: ScanConfig, lists, parent_features: dict | None, metadata_only: bool = False,
              staging: str = ""):
    """(model spec, model info, hashes, extractors, computed columns, supplied embeddings) of a run."""
    if metadata_only:  # a pre-filter: rows are URLs
        extractors = tuple(ex.ordered([]))
        return None, None, (), extractors, computed_columns([]), None
    if parent_features is not None:  # a re-filter: the parent's features, no model loaded
        info = parent_features.get("model")
        hashes = tuple(parent_features["hashes"])
        extractors = extractors_for(cfg, hashes, None, info, None)
        have = set(parent_features.get("computed") or computed_columns(extractors))
        return None, info, hashes, extractors, have, None
    spec = info = size = supplied = None
    if cfg.clip.model:
        spec, info, size = _load_model(cfg)
    elif cfg.embeddings.files:
        from shardguard.pipelines.embeddings import resolve

        supplied = resolve(cfg, staging)
        info = supplied.model_info()
    hashes = hashes_for(cfg, lists)
    extractors = extractors_for(cfg, hashes, spec, info, size, supplied)
    return spec, info, hashes, extractors, computed_columns(extractors), supplied


def _scan_hint(feature: str) -> str:
    return "which needs a CLIP model: give --clip-model" if feature in ("embedding", "clip_score") \
        else "which this run does not compute"


def prepare(cfg: ScanConfig, layout: RunLayout, staging: str, parent_features: dict | None = None,
            url_lists=(), metadata_only: bool = False, missing_hint=None) -> RunPlan:
    """Resolve and validate everything (module doc); raises ConfigError / ListFormatError /
    ArtifactError / ModelError with a message naming the file (and line) at fault.

    ``parent_features`` (a re-filter) is the parent manifest's ``features`` block: the features exist
    already, so no model is loaded and the parent's hash set and fingerprint are used as they are."""
    from shardguard.pipelines.concepts import resolve_concepts

    lists = resolve_lists(cfg.lists, staging)
    spec, info, hashes, extractors, have, supplied = _features(cfg, lists, parent_features, metadata_only, staging)
    concepts = resolve_concepts(cfg.concepts, info)
    plan = RunPlan(cfg=cfg, layout=layout, lists=lists, hashes=hashes, extractors=extractors,
                   model_spec=spec, model_info=info, concepts=concepts, url_lists=list(url_lists),
                   metadata_only=metadata_only, supplied=supplied)
    plan.rules = rules = plan.build_rules()
    check_rules(cfg, rules, have, missing_hint or _scan_hint)
    plan.features_fp = parent_features["fingerprint"] if parent_features is not None \
        else features_fingerprint(cfg, extractors)
    plan.verdict_fp = verdict_fingerprint(cfg, rules)
    plan.computed = sorted(have)
    return plan
