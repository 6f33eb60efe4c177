"""The output directory: whose it is, what is stale in it, and what may be deleted from it.

* An output must be empty (or new), or a shardguard run of the same kind: ``.shardguard-run.json``
  (written before any work) or, for runs of earlier versions, their ``manifest.json``. A folder of
  other files is refused; so is a run made with another config, unless ``--force``.
* Outputs of shards that are not in this run (an input removed or renamed since) would sit beside
  the new ones and be taken for them: they are refused, or with ``--force`` deleted.
* Only temporaries shardguard itself made (``.tmp-<32 hex>-<name>``) are ever deleted as leftovers
  of a killed run.
* Before any work the output is probed with a small atomic write, so a read-only, missing or full
  output stops the run at once with one clear line.
"""
from __future__ import annotations

import re

from apache_beam.io.filesystems import FileSystems

from shardguard.indexes import fileio
from shardguard.pipelines.config import ConfigError
from shardguard.transforms.contracts import RunLayout

OWNER_FORMAT = "shardguard-run/1"
_TMP = re.compile(r"^\.tmp-[0-9a-f]{32}-")
_PER_SHARD = ("clean", "removed", "review", "errors", "tagged", "features", "shards", "seeds")


class OutputError(OSError):
    """The output cannot be written; the message is one line for the user."""


def _list(pattern: str) -> list[str]:
    result = FileSystems.match([pattern])[0]
    return sorted(m.path for m in result.metadata_list)


def _basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _shard_of(name: str) -> str:
    for ext in (".parquet", ".json", ".tar"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def existing_files(layout: RunLayout) -> list[str]:
    """Every file under the output (recursively; object stores list by prefix)."""
    if "://" in layout.root:
        return _list(layout.root.rstrip("/") + "/**")
    import os

    if not os.path.isdir(layout.root):
        return []
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(layout.root) for f in fs)


def _owner(layout: RunLayout) -> dict | None:
    for path in (layout.owner, layout.manifest):
        if fileio.exists(path):
            try:
                data = fileio.read_json(path)
            except (ValueError, OSError):
                return None
            if str(data.get("format", "")).startswith(("shardguard-run/", "shardguard-manifest/")):
                return data
    return None


def stale_shards(layout: RunLayout, shard_ids: set[str]) -> list[str]:
    """Output files of shards that are not in this run (folder outputs' files included)."""
    out = []
    for path in existing_files(layout):
        parts = layout.rel(path).split("/")
        if len(parts) >= 2 and parts[0] in _PER_SHARD and not _TMP.match(parts[-1]) \
                and _shard_of(parts[1]) not in shard_ids:
            out.append(path)
    return out


def claim(layout: RunLayout, kind: str, config_fp: str, shard_ids: set[str], force: bool) -> None:
    """Refuse an output that is not ours or holds another run (module doc); write the owner marker."""
    files = [f for f in existing_files(layout) if not _TMP.match(_basename(f))]
    owner = _owner(layout) if files else None
    if files and owner is None:
        raise ConfigError(f"output {layout.root} is not empty and is not a shardguard run ({len(files)} files); "
                          "give a new or empty --output")
    if owner is not None:
        if owner.get("kind") != kind:
            raise ConfigError(f"output {layout.root} holds a {owner.get('kind')} run, not a {kind}; give another --output")
        if owner.get("config_fingerprint") != config_fp and not force:
            raise ConfigError(f"output {layout.root} holds a {kind} run with another config (lists, hashes, "
                              "rules…); give a new --output, or --force to redo it with this config")
        stale = stale_shards(layout, shard_ids)
        if stale and not force:
            names = sorted({_shard_of(_basename(p)) for p in stale})
            shown = ", ".join(names[:5]) + ("…" if len(names) > 5 else "")
            raise ConfigError(f"output {layout.root} holds outputs of {len(names)} shard(s) that are not in this "
                              f"run ({shown}); give a new --output, or --force to delete them")
        if stale:
            FileSystems.delete(stale)
    marker = {"format": OWNER_FORMAT, "kind": kind, "config_fingerprint": config_fp}
    fileio.write_atomic(layout.owner, fileio.canonical_json(marker))


def cleanup_temps(layout: RunLayout) -> int:
    """Remove the ``.tmp-<uuid>-*`` files a killed run left; return how many."""
    stale = [p for p in existing_files(layout) if _TMP.match(_basename(p))]
    if stale:
        FileSystems.delete(stale)
    return len(stale)


def prepare(layout: RunLayout) -> int:
    """Probe that the output is writable and clear our stale temporaries; raise OutputError."""
    try:
        fileio.ensure_dir(layout.root)
        probe = fileio.join(layout.root, ".shardguard-write-probe")
        fileio.write_atomic(probe, b"probe\n")
        FileSystems.delete([probe])
        return cleanup_temps(layout)
    except OSError as exc:
        raise OutputError(f"cannot write to output {layout.root}: {exc.strerror or exc}") from None
