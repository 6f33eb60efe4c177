"""Resolve the configured hash lists into verified, fingerprinted artifacts before any work.

A list given as a raw file is parsed and validated in full (a malformed entry stops the run with
``file:line: reason``) and built into a local staging directory; a list given as an artifact
directory is verified against its sidecar and, when the config pins one, its fingerprint. Only when
everything the run needs has resolved are the artifacts installed into ``<output>/lists/<name>/``
(each file copied and checked against the sidecar's sha256): a run directory holds every artifact it
used, so it can be moved, verified and re-filtered on its own, and a launch that fails leaves the
output as it was.
"""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, replace

from shardguard.indexes import fileio
from shardguard.indexes.artifacts import ArtifactError, ListSettings, build_artifact, read_sidecar
from shardguard.indexes.hashtypes import get_hash_type
from shardguard.indexes.listformats import ListOptions, parse_list
from shardguard.pipelines.config import ConfigError, HashListSpec
from shardguard.transforms.contracts import RunLayout

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class ResolvedList:
    """A list ready for the pipeline: its name in this run, where its artifact is, its sidecar."""

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


def is_artifact(path: str) -> bool:
    """True when ``path`` is a list artifact directory (it has a sidecar)."""
    return fileio.exists(fileio.join(path, "sidecar.json"))


def _from_artifact(spec: HashListSpec) -> ResolvedList:
    sidecar = read_sidecar(spec.path)
    if spec.fingerprint and sidecar["fingerprint"] != spec.fingerprint:
        raise ArtifactError(f"{spec.path}: fingerprint {sidecar['fingerprint'][:16]}… is not the pinned "
                            f"{spec.fingerprint[:16]}…")
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


def _from_raw(spec: HashListSpec, staging: str) -> ResolvedList:
    name = default_name(spec)
    parsed = parse_list(spec.path, get_hash_type(spec.type), ListOptions(
        fmt=spec.format, hash_column=spec.hash_column, id_column=spec.id_column,
        type_column=spec.type_column, other_types=spec.other_types))
    art_dir = fileio.join(staging, name)
    sidecar = build_artifact(parsed, settings_for(spec, name), art_dir, spec.path)
    if spec.fingerprint and spec.fingerprint != sidecar["fingerprint"]:
        raise ArtifactError(f"list {spec.path}: fingerprint {sidecar['fingerprint']} is not the "
                            f"pinned {spec.fingerprint}")
    return ResolvedList(name, art_dir, sidecar)


def resolve_lists(specs, staging: str) -> list[ResolvedList]:
    """Parse/verify every list (raising ListFormatError/ArtifactError/ConfigError), in config order."""
    resolved: list[ResolvedList] = []
    for spec in specs:
        item = _from_artifact(spec) if is_artifact(spec.path) else _from_raw(spec, staging)
        if not _NAME.match(item.name):
            raise ConfigError(f"list name {item.name!r}: use letters, digits, '.', '_' or '-'")
        if any(r.name == item.name for r in resolved):
            raise ConfigError(f"two lists are named {item.name!r}; give one a name with NAME@TYPE=PATH")
        resolved.append(item)
    return resolved


def install(lists: list[ResolvedList], layout: RunLayout) -> list[ResolvedList]:
    """Copy each artifact into the run (files checked against the sidecar); the lists as installed."""
    out = []
    for r in lists:
        dst = layout.list_dir(r.name)
        if dst.rstrip("/") != r.art_dir.rstrip("/"):
            original = read_sidecar(r.art_dir)
            fileio.ensure_dir(dst)
            for name, digest in sorted(original["files"].items()):
                fileio.copy_verified(fileio.join(r.art_dir, name), fileio.join(dst, name), digest)
            fileio.write_atomic(fileio.join(dst, "sidecar.json"), fileio.canonical_json(original))
        out.append(replace(r, art_dir=dst))
    return out


def install_url_lists(specs, layout: RunLayout) -> list:
    """Copy each URL list file into ``lists/<name>/`` of the run; the specs pointing at the copies."""
    from shardguard.transforms.rules.urls import UrlListSpec

    out = []
    for s in specs:
        dst = fileio.join(layout.list_dir(s.name), posixpath.basename(s.path))
        fileio.ensure_dir(layout.list_dir(s.name))
        fileio.copy_verified(s.path, dst, s.sha256)
        out.append(UrlListSpec(s.kind, dst, s.name, s.hash_type, s.action, s.sha256))
    return out
