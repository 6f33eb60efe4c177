"""Config loading: YAML with line numbers, flags as the same data, one build-and-validate path.

``load_yaml`` remembers the line of every key; flag values carry the flag's name instead
(``flags.overlay``). ``build`` turns the merged data into the typed ``ScanConfig`` and asks every
section for its problems, so any error says where the value came from: ``file.yaml:12: …`` or
``--max-pixels: …``.
"""
from __future__ import annotations

import dataclasses

import yaml

from shardguard.pipelines.config import ConfigError, HashListSpec, ScanConfig

_META = ("__lines__", "__line__")


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers the line of every mapping key, for error messages."""


def _construct_mapping(loader, node, deep=False):
    mapping = yaml.SafeLoader.construct_mapping(loader, node, deep=deep)
    mapping["__lines__"] = {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def where(src: str, data: dict, key: str | None = None) -> str:
    """``file:line`` of a key (or of the mapping), or the flag that gave the value."""
    line = data.get("__lines__", {}).get(key) if key else None
    if isinstance(line, str):
        return line  # a flag
    return f"{src}:{line or data.get('__line__', 0)}"


def strip(data):
    """Data without the line bookkeeping."""
    if isinstance(data, dict):
        return {k: strip(v) for k, v in data.items() if k not in _META}
    if isinstance(data, list):
        return [strip(v) for v in data]
    return data


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


def _value(cls, key: str, value, data: dict, src: str):
    if cls is ScanConfig and key in ScanConfig.SECTIONS:
        return build(ScanConfig.SECTIONS[key], value, src)
    if cls is ScanConfig and key == "lists":
        if not isinstance(value, list):
            raise ConfigError(f"{where(src, data, key)}: 'lists' must be a list")
        return tuple(build(HashListSpec, v, src) for v in value)
    if key == "kinds":
        return tuple([value] if isinstance(value, str) else strip(value) or ())
    if cls is ScanConfig and key in ScanConfig.TUPLES:
        if isinstance(value, str):
            return (value,)
        if not isinstance(value, list):
            raise ConfigError(f"{where(src, data, key)}: {key} must be a list, got {strip(value)!r}")
        return tuple(strip(value))
    return value


def build(cls, data, src: str):
    """A validated ``cls`` (a config section or ``ScanConfig``) from raw data; errors name their source."""
    if not isinstance(data, dict):
        raise ConfigError(f"{src}: expected a mapping for {cls.__name__}, got {data!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key in _META:
            continue
        if key not in names:
            raise ConfigError(f"{where(src, data, key)}: unknown key {key!r} (allowed: {', '.join(sorted(names))})")
        kwargs[key] = _value(cls, key, value, data, src)
    try:
        obj = cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where(src, data)}: {exc}") from None
    for key, message in obj.problems():
        raise ConfigError(f"{where(src, data, key)}: {message}")
    return obj


def merge(base: dict, over: dict) -> dict:
    """``over`` laid on ``base`` (sections merged key by key; lists replaced), line info kept."""
    out = dict(base)
    lines = dict(base.get("__lines__", {}))
    for key, value in over.items():
        if key in _META:
            continue
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
        lines[key] = over.get("__lines__", {}).get(key, lines.get(key))
    out["__lines__"] = lines
    return out


def from_data(raw: dict, src: str) -> ScanConfig:
    """A validated ScanConfig from YAML-shaped data."""
    return build(ScanConfig, dict(raw), src)
