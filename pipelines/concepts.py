"""Resolve the configured concept indexes (checked against the run's model) and install them into
the run directory (``concepts/<name>/``, every file checked against the sidecar), like lists."""
from __future__ import annotations

import posixpath

from shardguard.indexes import fileio
from shardguard.indexes.artifacts import ArtifactError
from shardguard.pipelines.config import ConfigError
from shardguard.transforms.contracts import RunLayout


def resolve_concepts(entries, model_info: dict | None) -> list[tuple[str, dict]]:
    """(path, sidecar) of each ``PATH[#FINGERPRINT]`` entry; concept names must be unique."""
    from shardguard.indexes.concepts import check_model, read_concept_sidecar

    out, names = [], set()
    for entry in entries:
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


def install(concepts: list[tuple[str, dict]], layout: RunLayout) -> list[tuple[str, dict]]:
    """Copy each index into ``concepts/<dir name>/`` of the run; the (path, sidecar) pairs as installed."""
    out, used = [], set()
    for path, sc in concepts:
        name = posixpath.basename(path.rstrip("/")) or "concepts"
        if name in used:
            name = f"{name}-{sc['fingerprint'][:8]}"
        used.add(name)
        dst = layout.concepts_dir(name)
        if dst.rstrip("/") != path.rstrip("/"):
            fileio.ensure_dir(dst)
            for fname, digest in sorted(sc["files"].items()):
                fileio.copy_verified(fileio.join(path, fname), fileio.join(dst, fname), digest)
            fileio.copy_verified(fileio.join(path, "sidecar.json"), fileio.join(dst, "sidecar.json"),
                                 fileio.sha256_file(fileio.join(path, "sidecar.json"))[0])
        out.append((dst, sc))
    return out
