"""The run manifest: built from per-shard summaries by one final step, validated on read.

``manifest.json`` records everything needed to audit and reproduce a run: run id and times, code
and library versions, the resolved config, each list's sidecar (fingerprint and counts, never its
entries), and per shard the input fingerprint, the counts, reasons, errors and output checksums,
plus totals. ``check_accounting`` is the invariant a scan verifies before reporting success:
rows_in = kept + removed + quarantined + errored for every shard and in total.
"""
from __future__ import annotations

import hashlib
import platform
from importlib import metadata

from shardguard.indexes import fileio
from shardguard.indexes.version import code_version

MANIFEST_FORMAT = "shardguard-manifest/1"
COUNT_KEYS = ("rows_in", "kept", "removed", "quarantined", "errored", "unchecked_kept", "tagged")
ALL_FLAGGED_MIN_ROWS = 10  # a reason that flags every checked row of a run this big is a health failure
_LIBS = ("apache-beam", "pyarrow", "numpy", "pillow", "imagehash", "scipy", "pdqhash", "faiss-cpu",
         "torch", "open-clip-torch")


class ManifestError(ValueError):
    """A manifest that is missing, malformed, or whose numbers do not add up."""


def library_versions() -> dict:
    """Versions of the libraries whose behaviour shapes the outputs."""
    out = {"python": platform.python_version()}
    for name in _LIBS:
        try:
            out[name] = _version(metadata.distribution(name))
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _version(dist) -> str:
    """The distribution's version from its metadata's headers alone: ``metadata.version`` parses the
    whole file as an e-mail message, long description and licence included (7.5 → 2 ms for these
    ten, at the end of every run)."""
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    for line in text.split("\n\n", 1)[0].splitlines():
        if line.startswith("Version:"):
            return line[len("Version:"):].strip()
    return dist.version


def content_id(config_fp: str, input_shas: list[str]) -> str:
    """Content-addressed id: the same inputs and config give the same id (runs that should agree)."""
    h = hashlib.sha256(config_fp.encode())
    for s in sorted(input_shas):
        h.update(s.encode())
    return h.hexdigest()[:20]


def new_run_id(started: str) -> str:
    """A unique run id: start time and 48 random bits (two runs never share one)."""
    import secrets

    return started.replace("-", "").replace(":", "") + "-" + secrets.token_hex(6)


def totals(shards: list[dict]) -> dict:
    """Summed counts, reasons and error classes over shards that finished."""
    tot = {k: 0 for k in COUNT_KEYS}
    tables: dict[str, dict[str, int]] = {"reasons": {}, "tags": {}, "errors": {}}
    for s in shards:
        if s["status"] != "ok":
            continue
        for k in COUNT_KEYS:
            tot[k] += s["counts"].get(k, 0)
        for name, table in tables.items():
            for k, v in (s.get(name) or {}).items():
                table[k] = table.get(k, 0) + v
    tot["shards"] = len(shards)
    tot["shards_failed"] = sum(1 for s in shards if s["status"] != "ok")
    return {"counts": tot, **{k: dict(sorted(v.items())) for k, v in tables.items()}}


def health(manifest: dict) -> list[str]:
    """What makes a finished run untrustworthy though every shard finished: a shard whose rows all
    errored (nothing in it was checked: a wrong column or an unsupported layout, usually), or one
    reason flagging every checked row of the run (a threshold or list that matches anything)."""
    problems = []
    for s in manifest["shards"]:
        c = s.get("counts") or {}
        if s["status"] == "ok" and c["rows_in"] and c["errored"] + c["unchecked_kept"] == c["rows_in"]:
            classes = ", ".join(f"{k} ({v})" for k, v in sorted(s["errors"].items(), key=lambda kv: -kv[1]))
            problems.append(f"shard {s['shard']}: all {c['rows_in']} rows errored, nothing in it was checked: {classes}")
    t = manifest["totals"]
    checked = t["counts"]["rows_in"] - t["counts"]["errored"] - t["counts"]["unchecked_kept"]
    for reason, n in t["reasons"].items():
        if checked >= ALL_FLAGGED_MIN_ROWS and n >= checked:
            problems.append(f"{reason} flagged all {checked} checked rows of the run: a threshold or list that "
                            "matches anything?")
    return problems


def check_accounting(manifest: dict) -> list[str]:
    """Every violated accounting invariant, as a message (empty when the numbers add up)."""
    problems = []
    for s in manifest["shards"]:
        if s["status"] != "ok":
            continue
        c = s["counts"]
        if c["rows_in"] != c["kept"] + c["removed"] + c["quarantined"] + c["errored"]:
            problems.append(f"shard {s['shard']}: rows_in {c['rows_in']} != kept+removed+quarantined+errored")
        if s["input"].get("rows") is not None and c["rows_in"] != s["input"]["rows"]:
            problems.append(f"shard {s['shard']}: {c['rows_in']} rows accounted, input has {s['input']['rows']}")
        out = s.get("outputs") or {}
        if not all(k in out for k in ("clean", "removed", "review")):
            problems.append(f"shard {s['shard']}: its summary records no clean/removed/review outputs")
            continue
        if out["clean"]["rows"] != c["kept"]:
            problems.append(f"shard {s['shard']}: clean shard has {out['clean']['rows']} rows, {c['kept']} kept")
        if out["removed"]["rows"] != c["removed"] or out["review"]["rows"] != c["quarantined"]:
            problems.append(f"shard {s['shard']}: removal/review records do not match the counts")
    expect = totals(manifest["shards"])["counts"]
    if manifest["totals"]["counts"] != expect:
        problems.append("totals do not equal the sum of the shards")
    return problems


def build_manifest(*, config: dict, config_fp: str, lists: list[dict], shards: list[dict],
                   started: str, finished: str, kind: str = "scan", extra: dict | None = None) -> dict:
    """Assemble the manifest dict (shards sorted by id for determinism)."""
    shards = sorted(shards, key=lambda s: s["shard"])
    manifest = {
        "format": MANIFEST_FORMAT, "kind": kind,
        "run": {"id": new_run_id(started), "started_at": started, "finished_at": finished},
        "content_id": content_id(config_fp, [s["input"].get("sha256") or "" for s in shards]),
        "code_version": code_version(), "libraries": library_versions(),
        "config": config, "config_fingerprint": config_fp,
        "lists": [{k: v for k, v in sc.items()} for sc in lists],
        "shards": shards, "totals": totals(shards),
    }
    if extra:
        manifest.update(extra)
    problems = health(manifest)
    manifest["health"] = {"ok": not problems, "problems": problems}
    return manifest


def write_manifest(output_dir: str, manifest: dict) -> str:
    """Write ``manifest.json`` atomically; return its sha256."""
    return fileio.write_atomic(fileio.join(output_dir, "manifest.json"), fileio.canonical_json(manifest))


def read_manifest(output_dir: str) -> dict:
    """Read and validate a run's manifest (format and accounting)."""
    path = fileio.join(output_dir, "manifest.json")
    if not fileio.exists(path):
        raise ManifestError(f"{path}: no manifest (not a shardguard run directory, or unfinished)")
    try:
        manifest = fileio.read_json(path)
    except ValueError as exc:
        raise ManifestError(f"{path}: not valid JSON: {exc}") from None
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f"{path}: unsupported manifest format {manifest.get('format')!r}")
    for key in ("run", "config", "lists", "shards", "totals"):
        if key not in manifest:
            raise ManifestError(f"{path}: missing {key!r}")
    return manifest


def _table(title: str, table: dict) -> list[str]:
    return [f"  {title}:"] + [f"    {k}: {v}" for k, v in table.items()] if table else []


def summary_text(manifest: dict) -> str:
    """Human summary: rows per verdict, then rows per reason, tag and error class, lists, failures."""
    t = manifest["totals"]["counts"]
    lines = [f"shardguard {manifest['kind']} run {manifest['run']['id']} "
             f"({manifest['run']['started_at']} → {manifest['run']['finished_at']})",
             f"  shards: {t['shards']} ({t['shards_failed']} failed)",
             f"  rows:   {t['rows_in']} in = {t['kept']} kept + {t['removed']} removed + "
             f"{t['quarantined']} quarantined + {t['errored']} errored"
             + (f"  ({t['unchecked_kept']} kept unchecked)" if t.get("unchecked_kept") else "")
             + (f"; {t['tagged']} tagged" if t.get("tagged") else "")]
    tot = manifest["totals"]
    lines += _table("rows removed or quarantined, per reason (a row can have several)", tot["reasons"])
    lines += _table("rows tagged, per tag (recorded, not removed)", tot.get("tags") or {})
    lines += _table("rows not fully checked, per error class", tot["errors"])
    lines += _model_lines(manifest)
    if manifest["lists"]:
        lines.append("  lists:")
        lines += [f"    {sc['name']}: {sc['type']}, {sc['entries']} entries, max distance {sc['max_distance']}"
                  f", action {sc['action']}, fingerprint {sc['fingerprint'][:16]}" + _skipped(sc)
                  for sc in manifest["lists"]]
    for s in manifest["shards"]:
        if s["status"] != "ok":
            lines.append(f"  FAILED shard {s['shard']} ({s['input']['path']}): "
                         f"{s['failure']['stage']}: {s['failure']['message'][:160]}")
    for p in (manifest.get("health") or {}).get("problems", []):
        lines.append(f"  HEALTH CHECK FAILED: {p}")
    return "\n".join(lines)


def _skipped(sidecar: dict) -> str:
    counts = sidecar.get("counts") or {}
    other = counts.get("skipped_other_type", 0) + counts.get("skipped_other_signal", 0)
    return f" ({other} entries of other types or media skipped)" if other else ""


def _model_lines(manifest: dict) -> list[str]:
    lines = []
    model = (manifest.get("features") or {}).get("model")
    if model:
        lines.append(f"  model: {model['spec']} (weights sha256 {model['weights_sha256'][:16]}, "
                     f"{model['embed_dim']}-d)")
        if model.get("random_weights"):
            lines.append("    RANDOM WEIGHTS: embeddings and concept/neighbour matches mean nothing "
                         "(test/demo model)")
    for c in manifest.get("concepts") or []:
        lines.append(f"  concepts {c['path']}: " + ", ".join(
            f"{x['name']} (≥{x['threshold']}, {x['action']})" for x in c["concepts"]))
    return lines
