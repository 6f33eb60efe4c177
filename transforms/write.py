"""Verdict stage, part 2: decide each row and write the shard's outputs, summary last.

Per shard: ``features/``, ``removed/``, ``review/``, ``errors/`` (records, sorted by row) and
``clean/`` (the input's kept rows, copied from the input file with schema, order and values intact;
the input file itself when every row is kept),
then ``shards/<shard>.json``, the summary that marks the shard done. Every file is written atomically,
and the summary only after all the others, so a crash never leaves a shard that looks done.
"""
from __future__ import annotations

import logging
import time

import apache_beam as beam
from apache_beam.metrics import Metrics

from shardguard.indexes import fileio
from shardguard.transforms import records
from shardguard.transforms.decide import ERROR, KEEP, QUARANTINE, REMOVE, decide
from shardguard.transforms.features import features_table
from shardguard.transforms import wds_shards
from shardguard.transforms.parquet_shards import (ShardChanged, copy_unchanged, shard_metadata,
                                                  write_filtered_copy)
from shardguard.transforms.read import input_fingerprint, summary_path

_LOG = logging.getLogger(__name__)
SUMMARY_FORMAT = "shardguard-shard/1"
OUTPUT_DIRS = ("clean", "removed", "review", "errors", "features")


def output_path(output_dir: str, kind: str, shard: str) -> str:
    """Path of one per-shard output file."""
    return fileio.join(output_dir, kind, f"{shard}.parquet")


def count_verdicts(verdicts: list[dict], features: list[dict]) -> tuple[dict, dict, dict]:
    """(counts, reasons, error classes) of one shard."""
    counts = {"rows_in": len(verdicts), "kept": 0, "removed": 0, "quarantined": 0, "errored": 0,
              "unchecked_kept": 0}
    name = {KEEP: "kept", REMOVE: "removed", QUARANTINE: "quarantined", ERROR: "errored"}
    reasons: dict[str, int] = {}
    errors: dict[str, int] = {}
    for v, f in zip(verdicts, features):
        counts[name[v["verdict"]]] += 1
        if v["verdict"] in (REMOVE, QUARANTINE):
            for r in v["reasons"]:
                reasons[r] = reasons.get(r, 0) + 1
        if f["status"] != "ok":
            cls = f"{f['error_stage']}/{f['error_class']}"
            errors[cls] = errors.get(cls, 0) + 1
            if v["verdict"] == KEEP:
                counts["unchecked_kept"] += 1
    return counts, dict(sorted(reasons.items())), dict(sorted(errors.items()))


def error_rows(features: list[dict], verdicts: list[dict]) -> list[dict]:
    """Error records (key, stage, class, message, kept) for rows that could not be checked."""
    return [{"row": f["row"], "key": f["key"], "stage": f["error_stage"], "error_class": f["error_class"],
             "message": f["error_message"], "kept": v["verdict"] == KEEP}
            for f, v in zip(features, verdicts) if f["status"] != "ok"]


def redact(url: str | None) -> str | None:
    """``sha256:<16 hex>`` of a URL: whoever holds the URL can match it; the report does not show it."""
    import hashlib

    return None if url is None else "sha256:" + hashlib.sha256(url.encode("utf-8", "replace")).hexdigest()[:16]


class InputChanged(ValueError):
    """A re-filter needs an input shard that is gone or differs from what the parent scanned."""


def clean_paths(output_dir: str, shard: str, fmt: str | None) -> dict[str, str]:
    """Output kind → path of a shard's clean files (webdataset: the tar and its metadata)."""
    if fmt == "webdataset":
        return {"clean": fileio.join(output_dir, "clean", f"{shard}.tar"),
                "clean_metadata": fileio.join(output_dir, "clean", f"{shard}.parquet")}
    return {"clean": output_path(output_dir, "clean", shard)}


def _read_fingerprint(info: dict) -> tuple[str, int]:
    """The input's (sha256, size), read now; an unreadable input fails the shard."""
    try:
        return input_fingerprint(info)
    except Exception as exc:  # noqa: BLE001 - any unreadable input is the same failure
        raise InputChanged(f"input {info['path']} cannot be read: {type(exc).__name__}: {exc}"[:500]) from None


def _copy_whole(info: dict, dst: str) -> tuple[str, int]:
    """Every row kept: the clean shard is the input file, copied byte for byte in one pass that
    also fingerprints the input (a filtered re-encode plus a separate hashing pass cost ~3× as
    much, benchmarks/RESULTS.md). A re-filter checks the bytes against the parent's sha256; a scan
    checks the copied footer against the one its rows were read from."""
    try:
        if info.get("verify_input"):
            return fileio.copy_verified(info["path"], dst, info["sha256"]), info.get("size")
        sha, size = copy_unchanged(info["path"], dst, info["layout_sha256"], info["footer_size"])
    except (ValueError, OSError) as exc:
        raise InputChanged(f"input {info['path']} changed during the run or since the parent run: "
                           f"{type(exc).__name__}: {exc}"[:500]) from None
    if info.get("sha256") and sha != info["sha256"]:  # planned fingerprint (a rerun) no longer holds
        raise InputChanged(f"input {info['path']} changed since it was planned (sha256 {sha[:16]}…)")
    return sha, size


def write_clean(info: dict, keep: set[int], dst: dict[str, str], cols) -> tuple[dict, tuple[str, int]]:
    """Write the clean shard file(s); return ``({kind: {"sha256", "rows"}}, (input sha256, size))``.

    In a re-filter whose kept rows equal the parent's, the parent's clean shard is exactly the
    output: it is copied (sha256-checked against the parent manifest) and the input is not read.
    A parquet shard with every row kept is copied whole (``_copy_whole``). Otherwise kept rows are
    copied from the input, after its fingerprint is taken (a re-filter checks it against the
    parent's recorded sha256).
    """
    parent = info.get("parent_clean")
    if parent and parent["kept_rows"] == sorted(keep):
        files = {kind: {"sha256": fileio.copy_verified(f["path"], dst[kind], f["sha256"]), "rows": f["rows"]}
                 for kind, f in parent["files"].items()}
        return files, (info["sha256"], info.get("size"))
    parquet = info.get("format") != "webdataset"
    if parquet and len(keep) == info.get("num_rows") and (info.get("verify_input") or "layout_sha256" in info):
        sha, size = _copy_whole(info, dst["clean"])
        return {"clean": {"sha256": sha, "rows": len(keep)}}, (sha, size)
    planned = info.get("sha256")
    if planned and not info.get("verify_input"):  # a scan's rerun: fingerprinted at planning
        sha, size = planned, info.get("size")
    else:
        sha, size = _read_fingerprint(info)
        if info.get("verify_input") and sha != planned:
            raise InputChanged(f"input {info['path']} changed since the parent run (sha256 {sha[:16]}…, "
                               f"parent recorded {planned[:16]}…)")
    if not parquet:
        return wds_shards.write_filtered_copy(info["path"], info["shard"], cols, dst["clean"], keep), (sha, size)
    compression = info.get("compression") or shard_metadata(info["path"])["compression"]
    try:
        csha, n = write_filtered_copy(info["path"], dst["clean"], keep, compression, info.get("layout_sha256"))
    except ShardChanged as exc:
        raise InputChanged(str(exc)[:500]) from None
    return {"clean": {"sha256": csha, "rows": n}}, (sha, size)


def write_shard(bundle: dict, output_dir: str, settings: dict) -> dict:
    """Decide, write every output of one shard, then its summary; return the summary."""
    shard, info = bundle["shard"], bundle["info"]
    base = {"format": SUMMARY_FORMAT, "shard": shard, "config_fingerprint": settings["config_fingerprint"],
            "input": {k: info.get(k) for k in ("path", "size", "sha256")}}
    base["input"]["rows"] = info.get("num_rows")
    base["input"]["format"] = info.get("format") or "parquet"
    if bundle["failure"] is not None:
        if not info.get("sha256") and "open_error" not in info:  # best effort: a failed shard's identity
            try:
                base["input"]["sha256"], base["input"]["size"] = input_fingerprint(info)
            except Exception:  # noqa: BLE001 - unreadable: the failure already says so
                pass
        return _write_failed(base, bundle["failure"], output_dir)
    feats = bundle["features"]
    verdicts = [decide(f, m, settings["actions"], settings["on_error"])
                for f, m in zip(feats, bundle["matches"])]
    out = {}
    fpath = output_path(output_dir, "features", shard)
    parent = info.get("parent_features")
    if parent:  # re-filter: the stored features are the output, byte for byte
        out["features"] = {"sha256": fileio.copy_verified(parent["path"], fpath, parent["sha256"]),
                           "rows": len(feats)}
    else:
        out["features"] = records.write_table(fpath, features_table(feats, settings.get("embed_dim")))
    for kind, wanted in (("removed", REMOVE), ("review", QUARANTINE)):
        rows = [v for v in verdicts if v["verdict"] == wanted]
        if settings.get("redact_urls"):
            rows = [dict(v, url=redact(v["url"])) for v in rows]
        out[kind] = records.write_rows(output_path(output_dir, kind, shard), rows, records.VERDICT_SCHEMA)
    out["errors"] = records.write_rows(output_path(output_dir, "errors", shard),
                                       error_rows(feats, verdicts), records.ERROR_SCHEMA)
    keep = {v["row"] for v in verdicts if v["verdict"] == KEEP}
    dst = clean_paths(output_dir, shard, info.get("format"))
    try:
        clean, (sha, size) = write_clean(info, keep, dst, settings["columns"])
        out.update(clean)
        base["input"].update(sha256=sha, size=size)
    except InputChanged as exc:
        return _write_failed(base, {"stage": "write-clean", "error_class": "InputChanged",
                                    "message": str(exc)}, output_dir)
    for kind in out:
        rel = dst[kind][len(output_dir.rstrip("/")) + 1:] if kind in dst else f"{kind}/{shard}.parquet"
        out[kind] = {"path": rel, **out[kind]}
    counts, reasons, errors = count_verdicts(verdicts, feats)
    summary = dict(base, status="ok", counts=counts, reasons=reasons, errors=errors,
                   outputs=dict(sorted(out.items())))
    fileio.write_atomic(summary_path(output_dir, shard), fileio.canonical_json(summary))
    return summary


def _write_failed(base: dict, failure: dict, output_dir: str) -> dict:
    # Stale outputs of an earlier run of this shard would contradict the failure: remove them.
    stale = [output_path(output_dir, k, base["shard"]) for k in OUTPUT_DIRS]
    stale.append(fileio.join(output_dir, "clean", f"{base['shard']}.tar"))
    present = [p for p in stale if fileio.exists(p)]
    if present:
        from apache_beam.io.filesystems import FileSystems

        FileSystems.delete(present)
    summary = dict(base, status="failed", failure=failure, counts=None, outputs={})
    fileio.write_atomic(summary_path(output_dir, base["shard"]), fileio.canonical_json(summary))
    return summary


class WriteShardFn(beam.DoFn):
    """Wraps ``write_shard``; counts verdicts and logs progress per finished shard."""

    def __init__(self, output_dir: str, settings: dict, total_shards: int, started: float):
        self._out, self._settings = output_dir, settings
        self._total, self._started = total_shards, started
        self._shards = self._rows = 0  # per DoFn instance (one worker thread), for progress lines

    def process(self, bundle):
        summary = write_shard(bundle, self._out, self._settings)
        if summary["status"] == "ok":
            c = summary["counts"]
            for k, v in c.items():
                Metrics.counter("verdict", k).inc(v)
            self._shards += 1
            self._rows += c["rows_in"]
            elapsed = max(time.time() - self._started, 1e-6)
            _LOG.info("[progress] shard %s done: %d rows (kept %d, removed %d, quarantined %d, errored %d);"
                      " this worker: %d shards, %d rows, %.0f rows/s; %d shards in the run, %.0fs elapsed",
                      summary["shard"], c["rows_in"], c["kept"], c["removed"], c["quarantined"],
                      c["errored"], self._shards, self._rows, self._rows / elapsed, self._total, elapsed)
        else:
            Metrics.counter("shards", "failed").inc()
            _LOG.warning("[progress] shard %s FAILED at %s: %s", summary["shard"],
                         summary["failure"]["stage"], summary["failure"]["message"][:200])
        yield summary


class WriteShards(beam.PTransform):
    """Matched shard bundles → written outputs; yields each shard's summary."""

    def __init__(self, output_dir: str, settings: dict, total_shards: int, started: float):
        super().__init__()
        self._args = (output_dir, settings, total_shards, started)

    def expand(self, bundles):
        return bundles | "DecideAndWrite" >> beam.ParDo(WriteShardFn(*self._args))
