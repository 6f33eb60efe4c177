"""Verdict stage, writing: one shard's records, clean copy and summary (the summary last).

Per shard: ``removed/``, ``review/``, ``tagged/`` (verdict records), ``errors/`` (rows that could not
be checked) and ``clean/`` (the input's kept rows, copied from the input with schema, order and
values intact; the input file itself when every row is kept), then ``shards/<shard>.json``, the
summary that marks the shard done. Every file is written atomically, and the summary only after
all the others, so a crash never leaves a shard that looks done.
"""
from __future__ import annotations

import hashlib
import io

from shardguard.indexes import fileio
from shardguard.transforms import records
from shardguard.transforms.contracts import FailureRecord, RunLayout, ShardRef
from shardguard.transforms.decide import ERROR, KEEP, QUARANTINE, REMOVE
from shardguard.transforms.formats import InputChanged, get_format

SUMMARY_FORMAT = "shardguard-shard/2"
_VERDICT_FILES = (("removed", REMOVE), ("review", QUARANTINE))


def count_verdicts(verdicts, statuses: list[str], classes: list[str | None], plain_kept: int = 0) -> dict:
    """Counts (rows per verdict), reasons (rows removed or quarantined per reason: a row can have
    several), tags (rows per tag) and errors (rows not fully checked, per class) of one shard:
    ``verdicts`` (with their rows' statuses and error classes) and ``plain_kept`` more rows that were
    checked and kept with no reason."""
    counts = {"rows_in": len(verdicts) + plain_kept, "kept": plain_kept, "removed": 0, "quarantined": 0,
              "errored": 0, "unchecked_kept": 0, "tagged": 0}
    name = {KEEP: "kept", REMOVE: "removed", QUARANTINE: "quarantined", ERROR: "errored"}
    reasons: dict[str, int] = {}
    tags: dict[str, int] = {}
    errors: dict[str, int] = {}
    for v, status, cls in zip(verdicts, statuses, classes):
        counts[name[v["verdict"]]] += 1
        if v["verdict"] in (REMOVE, QUARANTINE):
            for r in set(v["reasons"]) - set(v["tags"]):
                reasons[r] = reasons.get(r, 0) + 1
        counts["tagged"] += bool(v["tags"])
        for t in v["tags"]:
            tags[t] = tags.get(t, 0) + 1
        if status != "ok":
            errors[cls] = errors.get(cls, 0) + 1
            counts["unchecked_kept"] += v["verdict"] == KEEP
    return {"counts": counts, "reasons": dict(sorted(reasons.items())), "tags": dict(sorted(tags.items())),
            "errors": dict(sorted(errors.items()))}


def redact(url: str | None) -> str | None:
    """``sha256:<16 hex>`` of a URL: whoever holds the URL can match it; the report does not show it."""
    return None if url is None else "sha256:" + hashlib.sha256(url.encode("utf-8", "replace")).hexdigest()[:16]


def write_records(layout: RunLayout, shard: str, verdicts: list[dict], errors: list[dict], redact_urls: bool) -> dict:
    """removed/, review/, tagged/ and errors/ files of one shard; return their descriptions."""
    out = {}
    for kind, wanted in _VERDICT_FILES + (("tagged", None),):
        rows = [v for v in verdicts if (v["tags"] if wanted is None else v["verdict"] == wanted)]
        if redact_urls:
            rows = [dict(v, url=redact(v["url"])) for v in rows]
        out[kind] = records.write_rows(layout.output(kind, shard), rows, records.VERDICT_SCHEMA)
    out["errors"] = records.write_rows(layout.output("errors", shard), errors, records.ERROR_SCHEMA)
    return out


def parent_kept_rows(parent) -> list[int]:
    """Rows the parent kept: all rows but those in its removed, review and (not kept) error records."""
    from shardguard.indexes.arrowio import read_table

    dropped: set[int] = set()
    for kind in ("removed", "review", "errors"):
        cols = ["row"] + (["kept"] if kind == "errors" else [])
        for r in read_table(fileio.join(parent.run_dir, parent.outputs[kind]["path"]), columns=cols).to_pylist():
            if kind != "errors" or not r["kept"]:
                dropped.add(r["row"])
    return [i for i in range(parent.outputs["features"]["rows"]) if i not in dropped]


def write_clean(ref: ShardRef, keep: set[int], layout: RunLayout, cols) -> dict:
    """The clean file(s) of a shard. A re-filter whose kept rows equal its parent's copies the
    parent's clean files (checked against the parent's sha256; the input is not read); otherwise the
    input's format copies the kept rows (InputChanged when the input is not the scanned file)."""
    fmt = get_format(ref.spec.format)
    dst = fmt.clean_paths(layout, ref.shard)
    parent = ref.spec.parent
    if parent is not None and parent_kept_rows(parent) == sorted(keep):
        out = {}
        for kind in dst:
            f = parent.outputs[kind]
            try:
                sha = fileio.copy_verified(fileio.join(parent.run_dir, f["path"]), dst[kind], f["sha256"], link=True)
            except (ValueError, OSError) as exc:
                raise InputChanged(f"parent clean file {f['path']}: {exc}"[:500]) from None
            out[kind] = {"sha256": sha, "rows": f["rows"]}
    else:
        out = fmt.write_clean(ref.info, keep, dst, cols, verify_sha256=parent is not None)
    return {kind: dict(path=layout.rel(dst[kind]), **meta) for kind, meta in out.items()}


def summary_base(ref: ShardRef, config_fp: str) -> dict:
    """The identity part of a shard summary."""
    info = ref.info
    return {"format": SUMMARY_FORMAT, "shard": ref.shard, "config_fingerprint": config_fp,
            "input": {"path": ref.spec.path, "format": ref.spec.format,
                      "sha256": info.sha256 if info else None, "size": info.size if info else None,
                      "rows": info.num_rows if info else None}}


def seed_output(layout: RunLayout, shard: str) -> dict:
    """``{"seeds": meta}`` when hash expansion hashed this shard's seeds (its file, written before any
    verdict), so a restart or a re-filter reuses them and ``manifest verify`` checks them."""
    import pyarrow.parquet as pq

    path = layout.output("seeds", shard)
    if not fileio.exists(path):
        return {}
    data = fileio.read_bytes(path)
    rows = pq.ParquetFile(io.BytesIO(data)).metadata.num_rows
    return {"seeds": {"path": layout.rel(path), "sha256": hashlib.sha256(data).hexdigest(), "rows": rows}}


def write_failed(layout: RunLayout, base: dict, failure: FailureRecord) -> dict:
    """Record a failed shard: stale outputs of an earlier run of it would contradict the failure, so
    they are removed; the summary says why."""
    from apache_beam.io.filesystems import FileSystems

    shard = base["shard"]
    stale = [layout.output(k, shard) for k in ("clean", "removed", "review", "errors", "tagged", "features", "seeds")]
    stale += [layout.output("clean", shard, "tar"), layout.features_marker(shard)]
    from shardguard.transforms.formats.files import list_folder

    present = [p for p in stale if fileio.exists(p) and p.endswith((".parquet", ".tar", ".json"))]
    present += list(list_folder(fileio.join(layout.root, "clean", shard)).values())
    if present:
        FileSystems.delete(present)
    summary = dict(base, status="failed", failure=failure.as_dict(), counts=None, outputs={})
    fileio.write_atomic(layout.summary(shard), fileio.canonical_json(summary))
    return summary
