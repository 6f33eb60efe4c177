"""The run's shards: input patterns → matched files → shards of a registered format → stable ids.

A shard's id is its path relative to the input patterns' common base directory (the part of each
pattern before its first wildcard), without extension, ``/`` written as ``__``: ``data/*.parquet``
gives ``00000`` for ``data/00000.parquet``; ``data/**/*.parquet`` gives ``a__00000`` and
``b__00000``. An id depends only on the path and the patterns, never on which other files exist,
so it is the same on every rerun (adding a file never renames another shard's outputs).

Files inside the run's own output directory are never inputs (a recursive glob over a folder that
holds the output would otherwise scan earlier outputs): they are left out, loudly.
"""
from __future__ import annotations

import logging
import os
import posixpath
import re

from apache_beam.io.filesystems import FileSystems

from shardguard.pipelines.config import ConfigError
from shardguard.transforms.contracts import ShardSpec
from shardguard.transforms.formats import claim_shards

_LOG = logging.getLogger(__name__)
_GLOB = re.compile(r"[*?\[]")


def _norm(path: str) -> str:
    """A comparable form of a path: absolute for local paths, as is for remote ones."""
    return path if "://" in path else os.path.abspath(path)


def pattern_base(pattern: str) -> str:
    """The directory part of a pattern before its first wildcard (``data/`` for ``data/*.parquet``)."""
    m = _GLOB.search(pattern)
    head = pattern[: m.start()] if m else pattern
    return head[: head.rfind("/") + 1] if "/" in head else ""


def _common_base(patterns) -> str:
    bases = [_norm(pattern_base(p) or ".") .rstrip("/") + "/" for p in patterns]
    common = os.path.commonprefix(bases)
    return common[: common.rfind("/") + 1]


def shard_ids(paths: list[str], patterns) -> dict[str, str]:
    """Stable shard ids (module doc); two paths with one id are refused."""
    base = _common_base(patterns)
    out, seen = {}, {}
    for p in paths:
        rel = _norm(p)[len(base):] if _norm(p).startswith(base) else posixpath.basename(p)
        head, name = posixpath.split(rel)
        sid = "__".join([x for x in head.split("/") if x] + [name.split(".", 1)[0] or "shard"])
        if sid in seen:
            raise ConfigError(f"inputs {seen[sid]} and {p} would both be shard {sid!r}; rename one, or give "
                              "patterns whose directories tell them apart")
        seen[sid] = p
        out[p] = sid
    return out


def _inside(path: str, root: str | None) -> bool:
    if not root:
        return False
    r = _norm(root).rstrip("/") + "/"
    return _norm(path).startswith(r)


def expand_inputs(patterns, output: str | None = None) -> list[ShardSpec]:
    """Every shard the patterns match, sorted by path; a pattern matching no input is an error."""
    paths: list[str] = []
    excluded = 0
    for pattern, result in zip(patterns, FileSystems.match(list(patterns))):
        found = sorted(m.path for m in result.metadata_list)
        inside = [p for p in found if _inside(p, output)]
        excluded += len(inside)
        found = [p for p in found if p not in set(inside)]
        if not found:
            why = " outside the output directory" if inside else ""
            raise ConfigError(f"--input {pattern!r} matches no file{why}")
        paths += found
    if excluded:
        _LOG.warning("--input matched %d file(s) inside the output directory %s: left out (a run never "
                     "scans its own outputs)", excluded, output)
    claimed = claim_shards(sorted(set(paths)))
    if not claimed:
        raise ConfigError(f"--input {list(patterns)} matches no shard (.parquet or .tar)")
    ids = shard_ids([p for p, _ in claimed], patterns)
    return [ShardSpec(ids[p], p, fmt) for p, fmt in claimed]
