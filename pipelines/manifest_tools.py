"""``shardguard manifest show|why|diff|verify``: inspect and audit run directories.

Each function returns a JSON-able dict; the CLI prints it as text or, with ``--json``, as JSON.
``verify`` recomputes every checksum and row count the manifest records, re-checks the accounting,
and reports every file in the run directory that the manifest does not account for.
"""
from __future__ import annotations

import hashlib

from shardguard.indexes import fileio
from shardguard.indexes.arrowio import read_metadata, read_table
from shardguard.pipelines import manifest as mf
from shardguard.pipelines.lineage import diff_runs
from shardguard.transforms.contracts import RunLayout
from shardguard.transforms.rules import label_of

SHOW_SHARDS = 50  # text output lists this many shards; --json lists all


def show(run_dir: str) -> dict:
    """Counts by shard and reason, lists, concepts and model with fingerprints."""
    m = mf.read_manifest(run_dir)
    return {"run": m["run"], "kind": m["kind"], "totals": m["totals"], "health": m.get("health"),
            "dedup": m.get("dedup"),
            "lists": [{k: x.get(k) for k in ("name", "type", "entries", "max_distance", "action", "fingerprint")}
                      for x in m["lists"]],
            "model": (m.get("features") or {}).get("model"),
            "concepts": [{"path": c.get("path"), "fingerprint": c["fingerprint"],
                          "concepts": c["concepts"]} for c in m.get("concepts") or []],
            "parent": {k: v for k, v in (m.get("parent") or {}).items() if k != "changes"} or None,
            "shards": [{"shard": s["shard"], "status": s["status"], "counts": s["counts"],
                        "reasons": s.get("reasons"), "failure": s.get("failure")} for s in m["shards"]]}


def _records(run_dir: str, outputs: dict, kind: str) -> list[dict]:
    if kind not in outputs:
        return []
    return read_table(fileio.join(run_dir, outputs[kind]["path"])).to_pylist()


def _occurrence(run_dir: str, s: dict, key: str) -> dict | None:
    feats = read_table(fileio.join(run_dir, s["outputs"]["features"]["path"]), columns=["row", "key"])
    rows = [r["row"] for r in feats.to_pylist() if r["key"] == key]
    if not rows:
        return None
    entry = {"shard": s["shard"], "row": rows[0], "verdict": "keep", "reasons": [], "matches": []}
    for kind in ("removed", "review", "tagged"):
        for r in _records(run_dir, s["outputs"], kind):
            if r["key"] == key:
                entry.update(verdict=r["verdict"], reasons=r["reasons"], matches=r["matches"])
    for r in _records(run_dir, s["outputs"], "errors"):
        if r["key"] == key:
            entry["error"] = {k: r[k] for k in ("stage", "error_class", "message")}
            if entry["verdict"] == "keep" and not r["kept"]:
                entry["verdict"] = "error"
    return entry


def why(run_dir: str, key: str, shard: str | None = None) -> dict:
    """Every occurrence of ``key`` in the run: its verdict, reasons and every match, or an error;
    with dedup, the rows it represents (the duplicates that point to it)."""
    m = mf.read_manifest(run_dir)
    hits = [o for s in m["shards"] if s["status"] == "ok" and (not shard or s["shard"] == shard)
            for o in [_occurrence(run_dir, s, key)] if o is not None]
    if m.get("dedup"):
        for o in hits:
            o["duplicates"] = _represented(run_dir, m, f"{o['shard']}/{key}")
    return {"key": key, "found": bool(hits), "occurrences": hits}


def _represented(run_dir: str, m: dict, node: str, limit: int = 50) -> list[dict]:
    """Rows whose dedup match names ``node`` as their representative, with the kinds that say so."""
    found: dict[str, set] = {}
    for s in m["shards"]:
        if s["status"] != "ok" or not any(r.startswith("dedup:") for r in {**(s.get("reasons") or {}), **(s.get("tags") or {})}):
            continue
        for kind in ("removed", "review", "tagged"):
            for r in _records(run_dir, s["outputs"], kind):
                for x in r["matches"]:
                    if x["kind"] == "dedup" and x["entry"] == node:
                        found.setdefault(f"{s['shard']}/{r['key']}", set()).add(x["source"])
        if len(found) >= limit:
            break
    return [{"row": row, "kinds": sorted(kinds)} for row, kinds in sorted(found.items())[:limit]]


def diff(dir_a: str, dir_b: str) -> dict:
    """Rows removed/quarantined in one run and not the other, by reason."""
    d = diff_runs(dir_a, dir_b)
    return {"a": dir_a, "b": dir_b, "only_in_b": d["newly_flagged_total"],
            "only_in_b_by_reason": d["newly_flagged_by_reason"], "only_in_a": d["restored_total"],
            "only_in_a_by_reason": d["restored_by_reason"], "reasons_changed": d["changed_total"],
            "rows_only_in_b": d["newly_flagged"], "rows_only_in_a": d["restored"]}


def _check_folder(run_dir: str, rel: str, meta: dict, problems: list[str], listed: set[str]) -> None:
    """A folder output (img2dataset ``files`` layout): the digest of its listing must match."""
    from shardguard.transforms.formats.files import list_folder, tree_digest

    files = list_folder(fileio.join(run_dir, rel))
    listed.update(f"{rel}/{name}" for name in files)
    digest = tree_digest({n: fileio.sha256_file(p)[0] for n, p in files.items()})
    if digest != meta["sha256"]:
        problems.append(f"{rel}/: its files do not match the manifest's listing digest (modified, added or removed)")


def _check_file(run_dir: str, rel: str, meta: dict, problems: list[str], listed: set[str]) -> None:
    path = fileio.join(run_dir, rel)
    if not rel.endswith((".parquet", ".tar", ".json")):
        return _check_folder(run_dir, rel, meta, problems, listed)
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
        rows = read_metadata(data).num_rows
    except Exception as exc:  # noqa: BLE001 - any unreadable parquet is a verification failure
        problems.append(f"{rel}: not readable as parquet: {exc}")
        return
    if rows != meta["rows"]:
        problems.append(f"{rel}: {rows} rows, the manifest records {meta['rows']}")


def _artifacts(run_dir: str, m: dict, problems: list[str], listed: set[str]) -> int:
    layout, checked = RunLayout(run_dir), 0
    arts = [(f"list {x['name']}", x["path"], x["files"]) for x in m["lists"]]
    arts += [(f"concept index {c['path']}", c["path"], c["files"]) for c in m.get("concepts") or []]
    if m.get("embeddings"):
        arts.append(("supplied embeddings index", m["embeddings"]["path"], m["embeddings"]["files"]))
    for what, rel, files in arts:
        base = layout.abs(rel)
        listed.add(layout.rel(fileio.join(base, "sidecar.json")))
        for name, digest in files.items():
            path = fileio.join(base, name)
            listed.add(layout.rel(path))
            if not fileio.exists(path):
                problems.append(f"{what}: {path} missing")
            elif hashlib.sha256(fileio.read_bytes(path)).hexdigest() != digest:
                problems.append(f"{what}: {path} does not match its recorded sha256")
            checked += 1
    return checked


def _unlisted(run_dir: str, listed: set[str]) -> list[str]:
    from shardguard.pipelines.outputdir import existing_files

    layout = RunLayout(run_dir)
    extra = [layout.rel(p) for p in existing_files(layout)]
    return sorted(p for p in extra if p not in listed)


def verify(run_dir: str) -> dict:
    """Recompute every output checksum and row count and the accounting; list every mismatch and
    every file the manifest does not account for."""
    try:
        m = mf.read_manifest(run_dir)
    except mf.ManifestError as exc:
        return {"ok": False, "problems": [str(exc)], "files_checked": 0}
    problems = mf.check_accounting(m)
    checked, layout = 0, RunLayout(run_dir)
    listed = {"manifest.json", ".shardguard-run.json"}
    for s in m["shards"]:
        spath = layout.rel(layout.summary(s["shard"]))
        listed |= {spath, layout.rel(layout.features_marker(s["shard"]))}
        if not fileio.exists(layout.abs(spath)):
            problems.append(f"{spath}: missing")
        elif fileio.read_json(layout.abs(spath)) != s:
            problems.append(f"{spath}: differs from the manifest's copy")
        for meta in (s.get("outputs") or {}).values():
            listed.add(meta["path"])
            _check_file(run_dir, meta["path"], meta, problems, listed)
            checked += 1
    for seed_set in m.get("seed_sets") or []:  # hash expansion's seed sets (transforms/rules/seedset.py)
        listed.add(seed_set["path"])
        _check_file(run_dir, seed_set["path"], seed_set, problems, listed)
        checked += 1
    checked += _artifacts(run_dir, m, problems, listed)
    problems += [f"{p}: not part of this run (left by another run, or added by hand)"
                 for p in _unlisted(run_dir, listed)]
    return {"ok": not problems, "problems": problems, "files_checked": checked}


def _shard_line(s: dict) -> str:
    if s["status"] != "ok":
        return f"    {s['shard']}: FAILED: {s['failure']['message'][:120]}"
    c = s["counts"]
    reasons = ", ".join(f"{k} {v}" for k, v in (s["reasons"] or {}).items())
    return (f"    {s['shard']}: {c['rows_in']} in, {c['kept']} kept, {c['removed']} removed, "
            f"{c['quarantined']} quarantined, {c['errored']} errored" + (f" ({reasons})" if reasons else ""))


def text(kind: str, result: dict) -> str:
    """Human rendering of a tool's result."""
    if kind == "show":
        shards = result["shards"]
        lines = [mf.summary_text(mf.read_manifest(result["_dir"]))]
        for kind, v in ((result.get("dedup") or {}).get("per_kind") or {}).items():
            lines.append(f"  dedup {kind}: {v['clusters']} clusters, {v['rows']} duplicate rows flagged")
        lines.append("  shards:")
        lines += [_shard_line(s) for s in shards[:SHOW_SHARDS]]
        if len(shards) > SHOW_SHARDS:
            lines.append(f"    … and {len(shards) - SHOW_SHARDS} more (--json lists every shard)")
        return "\n".join(lines)
    if kind == "why":
        return _why_text(result)
    if kind == "diff":
        r = result
        return "\n".join([f"only in {r['b']}: {r['only_in_b']} rows",
                          *[f"    {k}: {v}" for k, v in r["only_in_b_by_reason"].items()],
                          f"only in {r['a']}: {r['only_in_a']} rows",
                          *[f"    {k}: {v}" for k, v in r["only_in_a_by_reason"].items()],
                          f"flagged in both with other reasons: {r['reasons_changed']}"])
    if result["ok"]:
        return f"OK: {result['files_checked']} files match the manifest; the accounting adds up"
    return "VERIFY FAILED:\n" + "\n".join(f"  {p}" for p in result["problems"])


def _why_text(result: dict) -> str:
    if not result["found"]:
        return f"{result['key']}: not in this run"
    out = []
    for o in result["occurrences"]:
        out.append(f"{result['key']} (shard {o['shard']}, row {o['row']}): {o['verdict']}"
                   + (f" — {', '.join(o['reasons'])}" if o["reasons"] else ""))
        out += [f"    {x['kind']} {x['source']} ({x['type']}) " + (f"duplicate of {x['entry']}" if x["kind"] == "dedup"
                else f"entry {x['entry']}") + f" {label_of(x['kind'])} {x['distance']:g}" for x in o["matches"]]
        if o.get("duplicates"):
            out.append(f"    representative of {len(o['duplicates'])} duplicate row(s): "
                       + ", ".join(f"{d['row']} ({', '.join(d['kinds'])})" for d in o["duplicates"][:10]))
        if "error" in o:
            out.append(f"    error at {o['error']['stage']}: {o['error']['error_class']}: {o['error']['message']}")
    return "\n".join(out)
