"""Run-to-run comparison: lineage of a re-filter and the rows each run flags that the other keeps.

A row is identified by ``(shard, key)``; "flagged" means removed or quarantined. The comparison reads
only the small ``removed/`` and ``review/`` record files of the two runs, and of those only the shards
whose files' recorded sha256s differ.
"""
from __future__ import annotations

import hashlib

from shardguard.indexes import fileio
from shardguard.indexes.arrowio import read_table
from shardguard.transforms.contracts import RunLayout

_FLAGGED = ("removed", "review")


def flagged_rows(run_dir: str, manifest: dict | None = None, skip=frozenset()) -> dict[tuple[str, str], dict]:
    """(shard, key) → {verdict, reasons} for every removed or quarantined row of a run (shards named
    in ``skip`` left out)."""
    from shardguard.pipelines.manifest import read_manifest

    manifest = manifest or read_manifest(run_dir)
    out = {}
    for s in manifest["shards"]:
        if s["status"] != "ok" or s["shard"] in skip:
            continue
        for kind in _FLAGGED:
            table = read_table(fileio.join(run_dir, s["outputs"][kind]["path"]), columns=["key", "verdict", "reasons"])
            for r in table.to_pylist():
                out[(s["shard"], r["key"])] = {"verdict": r["verdict"], "reasons": r["reasons"]}
    return out


def _by_reason(rows: dict) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in rows.values():
        for r in v["reasons"]:
            counts[r] = counts.get(r, 0) + 1
    return dict(sorted(counts.items()))


def diff_runs(dir_a: str, dir_b: str, new_manifest_shards=None) -> dict:
    """Rows flagged in B and not in A ("newly flagged") and flagged in A, not in B ("restored"),
    with counts by reason (B's reasons for the first, A's for the second) and the row ids. A shard
    whose removed and review files have the same recorded sha256 in both runs flags the same rows in
    both, so neither run's files are read for it (a re-filter's unchanged shards)."""
    from shardguard.pipelines.manifest import read_manifest

    ma = read_manifest(dir_a)
    mb = _partial_manifest(dir_b, new_manifest_shards) if new_manifest_shards else read_manifest(dir_b)
    same = _same_records(ma, mb)
    a = flagged_rows(dir_a, ma, skip=same)
    b = flagged_rows(dir_b, mb, skip=same)
    new = {k: v for k, v in b.items() if k not in a}
    restored = {k: v for k, v in a.items() if k not in b}
    changed = {k: {"before": a[k], "after": b[k]} for k in a.keys() & b.keys() if a[k] != b[k]}
    rows = lambda d: [{"shard": k[0], "key": k[1], **v} for k, v in sorted(d.items())]  # noqa: E731
    return {"newly_flagged_total": len(new), "newly_flagged_by_reason": _by_reason(new),
            "restored_total": len(restored), "restored_by_reason": _by_reason(restored),
            "changed_total": len(changed), "newly_flagged": rows(new), "restored": rows(restored),
            "changed": [{"shard": k[0], "key": k[1], **v} for k, v in sorted(changed.items())]}


def _same_records(ma: dict, mb: dict) -> set[str]:
    """Shards finished in both runs whose flagged-row files have equal recorded sha256s."""
    def shas(m):
        return {s["shard"]: tuple((s["outputs"].get(k) or {}).get("sha256") for k in _FLAGGED)
                for s in m["shards"] if s["status"] == "ok"}
    a, b = shas(ma), shas(mb)
    return {name for name, sha in a.items() if None not in sha and b.get(name) == sha}


def _partial_manifest(run_dir: str, shards) -> dict:
    """A manifest-shaped view of a run that is being finished (from its shard summaries)."""
    return {"shards": [fileio.read_json(RunLayout(run_dir).summary(s)) for s in shards]}


def lineage(parent: dict, parent_dir: str, plan) -> dict:
    """What a re-filter records about its parent: where, which manifest, what changed in lists."""
    path = fileio.join(parent_dir, "manifest.json")
    before = {x["name"]: x["fingerprint"] for x in parent["lists"]}
    after = {r.name: r.fingerprint for r in plan.lists}
    c_before = {c["fingerprint"]: c.get("path") for c in parent.get("concepts") or []}
    c_after = {sc["fingerprint"]: plan.layout.rel(p) for p, sc in plan.concepts}
    return {"path": parent_dir, "manifest_sha256": hashlib.sha256(fileio.read_bytes(path)).hexdigest(),
            "run_id": parent["run"]["id"],
            "lists_added": sorted(n for n in after if n not in before),
            "lists_retired": sorted(n for n in before if n not in after),
            "lists_replaced": [{"name": n, "before": before[n], "after": after[n]}
                               for n in sorted(after) if n in before and before[n] != after[n]],
            "concepts_added": sorted(c_after[f] for f in c_after if f not in c_before),
            "concepts_retired": sorted(str(c_before[f]) for f in c_before if f not in c_after)}
