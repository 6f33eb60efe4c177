"""Typed run configuration: frozen dataclasses loaded from YAML and flags, validated once at launch.

Every error names the YAML file and line (or the flag) so a bad config stops the run before any
work. The resolved config is recorded whole in the manifest.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

import yaml

from shardguard.indexes.artifacts import ACTIONS
from shardguard.indexes.hashtypes import HASH_TYPES
from shardguard.indexes.listformats import FORMATS
from shardguard.transforms.decide import ON_ERROR
from shardguard.transforms.decode import DEFAULT_MAX_PIXELS
from shardguard.transforms.parquet_shards import ColumnNames

DEFAULT_HASHES = ("md5", "sha256", "phash", "dhash", "pdq")


class ConfigError(ValueError):
    """An invalid configuration; the message names file:line or the flag."""


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


@dataclass(frozen=True)
class DecodeConfig:
    """Decoding limits and what happens to rows that cannot be decoded."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    on_error: str = "drop"
    exact: bool = False  # True: full decode, hashes bit-identical to imagehash/pdqhash on the image


@dataclass(frozen=True)
class ClipConfig:
    """CLIP embeddings: model spec, device, batching, and the optional minimum image-caption score."""

    model: str | None = None
    weights_sha256: str | None = None  # pin: the run stops unless the loaded weights have this sha256
    device: str = "auto"
    min_batch_size: int = 8
    batch_size: int = 32
    large_model: bool = False
    min_score: float | None = None
    min_score_action: str = "remove"


@dataclass(frozen=True)
class ExpandConfig:
    """kNN expansion around rows confirmed by a ``remove`` hash list."""

    threshold: float | None = None
    action: str = "quarantine"


@dataclass(frozen=True)
class IntegrityConfig:
    """Check stored bytes against a reference content hash column (split-view poisoning)."""

    column: str | None = None
    type: str = "sha256"
    action: str = "remove"


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
    redact_urls: bool = False  # removal/review records carry "sha256:<16 hex>" instead of the URL
    force: bool = False

    def to_dict(self) -> dict:
        """Plain-data form for the manifest."""
        return dataclasses.asdict(self)


_NESTED = {"columns": ColumnNames, "decode": DecodeConfig, "clip": ClipConfig, "expand": ExpandConfig,
           "integrity": IntegrityConfig}


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers the line of every mapping key, for error messages."""


def _construct_mapping(loader, node, deep=False):
    mapping = yaml.SafeLoader.construct_mapping(loader, node, deep=deep)
    mapping["__lines__"] = {k.value: k.start_mark.line + 1 for k, _ in node.value
                            if isinstance(k, yaml.ScalarNode)}
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _where(src: str, data: dict, key: str | None = None) -> str:
    line = data.get("__lines__", {}).get(key) if key else None
    return f"{src}:{line or data.get('__line__', 0)}"


def _strip(data):
    if isinstance(data, dict):
        return {k: _strip(v) for k, v in data.items() if k not in ("__lines__", "__line__")}
    if isinstance(data, list):
        return [_strip(v) for v in data]
    return data


def _build(cls, data: dict, src: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{src}: expected a mapping for {cls.__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key in ("__lines__", "__line__"):
            continue
        if key not in names:
            raise ConfigError(f"{_where(src, data, key)}: unknown key {key!r} "
                              f"(allowed: {', '.join(sorted(names))})")
        if key in _NESTED and cls is ScanConfig:
            kwargs[key] = _build(_NESTED[key], value, src)
        elif key == "lists":
            if not isinstance(value, list):
                raise ConfigError(f"{_where(src, data, key)}: 'lists' must be a list")
            kwargs[key] = tuple(_build(HashListSpec, v, src) for v in value)
        elif key in ("inputs", "hashes", "concepts"):
            kwargs[key] = tuple([value] if isinstance(value, str) else _strip(value) or ())
        else:
            kwargs[key] = value
    try:
        obj = cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{_where(src, data)}: {exc}") from None
    _validate(obj, lambda k=None: _where(src, data, k))
    return obj


def _check_pin(value, where: str) -> None:
    """A pin is a 64-hex-digit sha256 string (quote it in YAML: an all-digit value is a number)."""
    if value is not None and not (isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value)):
        raise ConfigError(f"{where}: a pin must be a quoted 64-hex-digit sha256, got {value!r}")


def _validate(obj, where) -> None:
    """Field checks per dataclass; ``where(key)`` gives the file:line prefix."""
    if isinstance(obj, HashListSpec):
        if obj.type not in HASH_TYPES:
            raise ConfigError(f"{where('type')}: unknown hash type {obj.type!r}")
        if obj.action not in ACTIONS:
            raise ConfigError(f"{where('action')}: action must be one of {ACTIONS}")
        if obj.format not in FORMATS:
            raise ConfigError(f"{where('format')}: format must be one of {FORMATS}")
        for k in ("max_distance", "min_quality"):
            v = getattr(obj, k)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise ConfigError(f"{where(k)}: {k} must be a non-negative integer")
        _check_pin(obj.fingerprint, where("fingerprint"))
        if obj.other_types not in ("error", "skip"):
            raise ConfigError(f"{where('other_types')}: other_types must be 'error' or 'skip'")
    elif isinstance(obj, DecodeConfig):
        if not isinstance(obj.max_pixels, int) or obj.max_pixels <= 0:
            raise ConfigError(f"{where('max_pixels')}: max_pixels must be a positive integer")
        if not isinstance(obj.exact, bool):
            raise ConfigError(f"{where('exact')}: exact must be true or false")
        if obj.on_error not in ON_ERROR:
            raise ConfigError(f"{where('on_error')}: on_error must be one of {ON_ERROR}")
    elif isinstance(obj, ClipConfig):
        _check_pin(obj.weights_sha256, where("weights_sha256"))
        if obj.device != "auto" and obj.device != "cpu" and not str(obj.device).startswith("cuda"):
            raise ConfigError(f"{where('device')}: device must be auto, cpu or cuda[:N]")
        for k in ("min_batch_size", "batch_size"):
            v = getattr(obj, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{where(k)}: {k} must be a positive integer")
        if obj.min_batch_size > obj.batch_size:
            raise ConfigError(f"{where('min_batch_size')}: min_batch_size exceeds batch_size")
        if obj.min_score is not None and not isinstance(obj.min_score, (int, float)):
            raise ConfigError(f"{where('min_score')}: min_score must be a number")
        if obj.min_score_action not in ACTIONS:
            raise ConfigError(f"{where('min_score_action')}: must be one of {ACTIONS}")
    elif isinstance(obj, IntegrityConfig):
        if obj.type not in ("md5", "sha1", "sha256"):
            raise ConfigError(f"{where('type')}: integrity type must be md5, sha1 or sha256")
        if obj.action not in ACTIONS:
            raise ConfigError(f"{where('action')}: action must be one of {ACTIONS}")
    elif isinstance(obj, ExpandConfig):
        if obj.threshold is not None and (not isinstance(obj.threshold, (int, float))
                                          or not -1 <= obj.threshold <= 1):
            raise ConfigError(f"{where('threshold')}: threshold must be a cosine in [-1, 1]")
        if obj.action not in ACTIONS:
            raise ConfigError(f"{where('action')}: action must be one of {ACTIONS}")
    elif isinstance(obj, ScanConfig):
        for h in obj.hashes:
            if h not in HASH_TYPES:
                raise ConfigError(f"{where('hashes')}: unknown hash type {h!r}")
        for k in ("force", "redact_urls"):
            if not isinstance(getattr(obj, k), bool):
                raise ConfigError(f"{where(k)}: {k} must be true or false")


def load_yaml(path: str) -> dict:
    """Read a YAML config file into raw data (with line info); errors name file:line."""
    from shardguard.indexes import fileio

    try:
        text = fileio.read_bytes(path).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}:0: cannot read config: {exc}") from None
    try:
        data = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(f"{path}:{mark.line + 1 if mark else 0}: invalid YAML: "
                          f"{getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the config must be a mapping")
    return data


_LIST_FLAG = re.compile(r"^(?:(?P<name>[A-Za-z0-9_.-]+)@)?(?P<type>[a-z0-9]+)=(?P<path>.+?)(?::(?P<dist>\d+))?$")


def parse_list_flag(value: str) -> HashListSpec:
    """``[NAME@]TYPE=PATH[:MAXDIST]`` to a HashListSpec (PATH may itself contain ':')."""
    m = _LIST_FLAG.match(value.strip())
    if not m:
        raise ConfigError(f"--hash-list {value!r}: expected [NAME@]TYPE=PATH[:MAXDIST]")
    spec = HashListSpec(type=m["type"], path=m["path"], name=m["name"] or "",
                        max_distance=int(m["dist"]) if m["dist"] else None)
    _validate(spec, lambda k=None: f"--hash-list {value!r}")
    return spec


def from_data(raw: dict, src: str) -> ScanConfig:
    """Build a validated ScanConfig from YAML data (inputs/output may still be missing)."""
    return _build(ScanConfig, dict(raw), src)


def with_overrides(cfg: ScanConfig, overrides: dict, src: str) -> ScanConfig:
    """Apply typed flag overrides, re-validate, and require inputs and output."""
    cfg = dataclasses.replace(cfg, **overrides)
    _validate(cfg, lambda k=None: f"{src} (flag --{k or 'option'})")
    if not cfg.inputs:
        raise ConfigError(f"{src}: no inputs (give --input or 'inputs:')")
    if not cfg.output:
        raise ConfigError(f"{src}: no output (give --output or 'output:')")
    return cfg
