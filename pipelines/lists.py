"""Resolve the configured hash lists into verified, fingerprinted artifacts before any work.

A list given as a raw file is parsed and validated in full (a malformed entry stops the run with
``file:line: reason``) and built into ``<output>/lists/<name>/``; a list given as an artifact directory
is verified against its sidecar and, when the config pins one, its fingerprint.
"""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from shardguard.indexes import fileio
from shardguard.indexes.artifacts import ArtifactError, ListSettings, build_artifact, load_artifact_files
from shardguard.indexes.hashtypes import get_hash_type
from shardguard.indexes.listformats import ListOptions, parse_list
from shardguard.pipelines.config import ConfigError, HashListSpec

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class ResolvedList:
    """A list ready for the pipeline: where its artifact is and the fingerprint it is pinned to."""

    name: str
    art_dir: str
    sidecar: dict

    @property
    def fingerprint(self) -> str:
        """The artifact fingerprint the pipeline pins."""
        return self.sidecar["fingerprint"]


def default_name(spec: HashListSpec) -> str:
    """A list's name: given, else its file stem (artifact dirs keep their recorded name)."""
    if spec.name:
        return spec.name
    stem = posixpath.basename(spec.path.rstrip("/")).split(".", 1)[0]
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem) or spec.type


def settings_for(spec: HashListSpec, name: str) -> ListSettings:
    """Thresholds with the hash type's defaults filled in."""
    ht = get_hash_type(spec.type)
    return ListSettings(name=name, hash_type=ht.name,
                        max_distance=ht.default_max_distance if spec.max_distance is None else spec.max_distance,
                        min_quality=ht.min_quality if spec.min_quality is None else spec.min_quality,
                        action=spec.action)


def _from_artifact(spec: HashListSpec) -> ResolvedList:
    sidecar, _ = load_artifact_files(spec.path, spec.fingerprint)
    if sidecar["type"] != spec.type:
        raise ConfigError(f"list {spec.path}: artifact is type {sidecar['type']}, config says {spec.type}")
    for key in ("max_distance", "min_quality"):
        want = getattr(spec, key)
        if want is not None and want != sidecar[key]:
            raise ConfigError(f"list {spec.path}: artifact was built with {key}={sidecar[key]}, "
                              f"config asks {want}; rebuild it with 'shardguard lists build'")
    if spec.action != sidecar["action"]:
        sidecar = dict(sidecar, action=spec.action)  # the action is a run choice, not list content
    return ResolvedList(spec.name or sidecar["name"], spec.path, sidecar)


def resolve_lists(specs, output_dir: str) -> list[ResolvedList]:
    """Parse/verify every list (raising ListFormatError/ArtifactError/ConfigError), in config order."""
    resolved: list[ResolvedList] = []
    for spec in specs:
        if fileio.exists(fileio.join(spec.path, "sidecar.json")):
            item = _from_artifact(spec)
        else:
            name = default_name(spec)
            parsed = parse_list(spec.path, get_hash_type(spec.type), ListOptions(
                fmt=spec.format, hash_column=spec.hash_column, id_column=spec.id_column,
                type_column=spec.type_column, other_types=spec.other_types))
            art_dir = fileio.join(output_dir, "lists", name)
            sidecar = build_artifact(parsed, settings_for(spec, name), art_dir, spec.path)
            if spec.fingerprint and spec.fingerprint != sidecar["fingerprint"]:
                raise ArtifactError(f"list {spec.path}: fingerprint {sidecar['fingerprint']} is not the "
                                    f"pinned {spec.fingerprint}")
            item = ResolvedList(name, art_dir, sidecar)
        if not _NAME.match(item.name):
            raise ConfigError(f"list name {item.name!r}: use letters, digits, '.', '_' or '-'")
        if any(r.name == item.name for r in resolved):
            raise ConfigError(f"two lists are named {item.name!r}; give one a name with NAME@TYPE=PATH")
        resolved.append(item)
    return resolved
