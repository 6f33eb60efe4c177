"""``shardguard manifest show|why|diff|verify``: inspect and audit run directories.

Each function returns a JSON-able dict; the CLI prints it as text or, with ``--json``, as JSON.
"""
from __future__ import annotations

import hashlib

import pyarrow.parquet as pq

from shardguard.indexes import fileio
from shardguard.pipelines import manifest as mf
from shardguard.pipelines.lineage import diff_runs, fileio_open
from shardguard.pipelines.refilter import artifact_path
from shardguard.transforms.read import summary_path


def show(run_dir: str) -> dict:
    """Counts by shard and reason, lists, concepts and model with fingerprints."""
    m = mf.read_manifest(run_dir)
    return {"run": m["run"], "kind": m["kind"], "totals": m["totals"],
            "lists": [{k: l.get(k) for k in ("name", "type", "entries", "max_distance", "action", "fingerprint")}
                      for l in m["lists"]],
            "model": (m.get("features") or {}).get("model"),
            "concepts": [{"path": c.get("path"), "fingerprint": c["fingerprint"],
                          "concepts": c["concepts"]} for c in m.get("concepts") or []],
            "parent": {k: v for k, v in (m.get("parent") or {}).items() if k != "changes"} or None,
            "shards": [{"shard": s["shard"], "status": s["status"], "counts": s["counts"],
                        "reasons": s.get("reasons"), "failure": s.get("failure")} for s in m["shards"]]}


def why(run_dir: str, key: str, shard: str | None = None) -> dict:
    """Every occurrence of ``key`` in the run: its verdict, reasons and every match, or an error."""
    m = mf.read_manifest(run_dir)
    hits = []
    for s in m["shards"]:
        if s["status"] != "ok" or (shard and s["shard"] != shard):
            continue
        feats = pq.read_table(fileio_open(fileio.join(run_dir, s["outputs"]["features"]["path"])),
                              columns=["row", "key", "status", "error_class"])
        found = [r for r in feats.to_pylist() if r["key"] == key]
        if not found:
            continue
        entry = {"shard": s["shard"], "row": found[0]["row"], "verdict": "keep", "reasons": [], "matches": []}
        for kind in ("removed", "review"):
            for r in pq.read_table(fileio_open(fileio.join(run_dir, s["outputs"][kind]["path"]))).to_pylist():
                if r["key"] == key:
                    entry.update(verdict=r["verdict"], reasons=r["reasons"], matches=r["matches"])
        for r in pq.read_table(fileio_open(fileio.join(run_dir, s["outputs"]["errors"]["path"]))).to_pylist():
            if r["key"] == key:
                entry["error"] = {k: r[k] for k in ("stage", "error_class", "message")}
                if entry["verdict"] == "keep" and not r["kept"]:
                    entry["verdict"] = "error"
        hits.append(entry)
    return {"key": key, "found": bool(hits), "occurrences": hits}


def diff(dir_a: str, dir_b: str) -> dict:
    """Rows removed/quarantined in one run and not the other, by reason."""
    d = diff_runs(dir_a, dir_b)
    return {"a": dir_a, "b": dir_b, "only_in_b": d["newly_flagged_total"],
            "only_in_b_by_reason": d["newly_flagged_by_reason"], "only_in_a": d["restored_total"],
            "only_in_a_by_reason": d["restored_by_reason"], "reasons_changed": d["changed_total"],
            "rows_only_in_b": d["newly_flagged"], "rows_only_in_a": d["restored"]}


def _check_file(run_dir: str, rel: str, meta: dict, problems: list[str]) -> None:
    path = fileio.join(run_dir, rel)
    if not fileio.exists(path):
        problems.append(f"{rel}: missing")
        return
    data = fileio.read_bytes(path)
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        problems.append(f"{rel}: sha256 {hashlib.sha256(data).hexdigest()[:16]}… does not match the "
                        f"manifest's {meta['sha256'][:16]}… (modified or truncated)")
        return
    if not rel.endswith(".parquet"):
        return  # a webdataset tar: its sha256 is the check
    try:
        rows = pq.read_metadata(fileio_open(path)).num_rows
    except Exception as exc:  # noqa: BLE001 - any unreadable parquet is a verification failure
        problems.append(f"{rel}: not readable as parquet: {exc}")
        return
    if rows != meta["rows"]:
        problems.append(f"{rel}: {rows} rows, the manifest records {meta['rows']}")


def verify(run_dir: str) -> dict:
    """Recompute every output checksum and row count and the accounting; list every mismatch."""
    problems: list[str] = []
    try:
        m = mf.read_manifest(run_dir)
    except mf.ManifestError as exc:
        return {"ok": False, "problems": [str(exc)], "files_checked": 0}
    problems += mf.check_accounting(m)
    checked = 0
    for s in m["shards"]:
        spath = summary_path(run_dir, s["shard"])
        if not fileio.exists(spath):
            problems.append(f"shards/{s['shard']}.json: missing")
        elif fileio.read_json(spath) != s:
            problems.append(f"shards/{s['shard']}.json: differs from the manifest's copy")
        for kind, meta in (s.get("outputs") or {}).items():
            _check_file(run_dir, meta["path"], meta, problems)
            checked += 1
    for l in m["lists"]:
        for name, digest in l["files"].items():
            path = fileio.join(artifact_path(run_dir, l["path"]), name)
            if not fileio.exists(path):
                problems.append(f"list {l['name']}: {path} missing")
            elif hashlib.sha256(fileio.read_bytes(path)).hexdigest() != digest:
                problems.append(f"list {l['name']}: {path} does not match its recorded sha256")
            checked += 1
    return {"ok": not problems, "problems": problems, "files_checked": checked}


def text(kind: str, result: dict) -> str:
    """Human rendering of a tool's result."""
    if kind == "show":
        return mf.summary_text(mf.read_manifest(result["_dir"])) + "\n" + "\n".join(
            f"    {s['shard']}: " + (f"{s['counts']['rows_in']} in, {s['counts']['kept']} kept, "
                                     f"{s['counts']['removed']} removed, {s['counts']['quarantined']} quarantined, "
                                     f"{s['counts']['errored']} errored" + (f"; {s['reasons']}" if s["reasons"] else "")
                                     if s["status"] == "ok" else f"FAILED: {s['failure']['message'][:120]}")
            for s in result["shards"])
    if kind == "why":
        if not result["found"]:
            return f"{result['key']}: not in this run"
        out = []
        for o in result["occurrences"]:
            out.append(f"{result['key']} (shard {o['shard']}, row {o['row']}): {o['verdict']}"
                       + (f" — {', '.join(o['reasons'])}" if o["reasons"] else ""))
            out += [f"    {x['kind']} {x['source']} ({x['type']}) entry {x['entry']} "
                    f"{'score' if x['kind'] in ('concept', 'neighbor', 'rule') else 'distance'} {x['distance']:g}"
                    for x in o["matches"]]
            if "error" in o:
                out.append(f"    error at {o['error']['stage']}: {o['error']['error_class']}: {o['error']['message']}")
        return "\n".join(out)
    if kind == "diff":
        lines = [f"only in {result['b']}: {result['only_in_b']} rows", *[f"    {k}: {v}" for k, v in result["only_in_b_by_reason"].items()],
                 f"only in {result['a']}: {result['only_in_a']} rows", *[f"    {k}: {v}" for k, v in result["only_in_a_by_reason"].items()],
                 f"flagged in both with other reasons: {result['reasons_changed']}"]
        return "\n".join(lines)
    if result["ok"]:
        return f"OK: {result['files_checked']} files match the manifest; the accounting adds up"
    return "VERIFY FAILED:\n" + "\n".join(f"  {p}" for p in result["problems"])
