"""``shardguard report RUN [--output report.html]``: one self-contained HTML page an auditor can read
offline — no script, font or request leaves the file; charts are inline SVG.

It shows the run's identity (id, times, code and library versions, config), what it matched
against (lists, concept indexes, model, with fingerprints), rows per verdict (per shard, or per group
of shards for large runs), rows per reason, match distances per list against its threshold, errors
per class, the re-filter lineage and ``manifest verify``'s result. Never an image, never a list entry
beyond its id, never a URL. It reads the manifest and only the record files of shards that flagged
rows, so it stays fast and small for runs of 10,000+ shards.
"""
from __future__ import annotations

import html
import json

from shardguard.indexes import fileio
from shardguard.pipelines import manifest as mf
from shardguard.pipelines.options import StrictParser, split_args
from shardguard.pipelines.reportsvg import bars, histogram, stacked

MAX_BARS = 40  # shards per chart; more are grouped
MAX_MATCHES = 200_000  # match distances read per run (a histogram needs no more)
VERDICTS = (("kept", "#4c9a2a"), ("removed", "#c0392b"), ("quarantined", "#e67e22"), ("errored", "#7f8c8d"))
CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.6em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.2em .6em;text-align:left}
th{background:#f4f4f4}.num{text-align:right}.ok{color:#2e7d32;font-weight:bold}.bad{color:#c62828;font-weight:bold}
code,pre{font:12px ui-monospace,monospace}pre{background:#f7f7f7;padding:.6em;overflow:auto;max-height:24em}
.legend span{display:inline-block;margin-right:1em}.sw{display:inline-block;width:.8em;height:.8em;margin-right:.3em}"""


def esc(value) -> str:
    """HTML-escaped text."""
    return html.escape(str(value), quote=True)


def table(header: list[str], rows: list[list]) -> str:
    """An HTML table (every cell escaped; numbers right-aligned)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header) if any(header) else ""
    body = "".join("<tr>" + "".join(f'<td class="num">{v:,}</td>' if isinstance(v, int) else f"<td>{esc(v)}</td>"
                                    for v in r) + "</tr>" for r in rows)
    return f"<table>{f'<tr>{head}</tr>' if head else ''}{body}</table>"


def shard_groups(shards: list[dict]) -> list[tuple[str, dict]]:
    """(label, counts) per shard, or per group of consecutive shards when there are many."""
    ok = [s for s in shards if s["status"] == "ok"]
    size = max(1, -(-len(ok) // MAX_BARS))
    out = []
    for i in range(0, len(ok), size):
        group = ok[i:i + size]
        label = group[0]["shard"] if len(group) == 1 else f"{group[0]['shard']}…{group[-1]['shard']}"
        out.append((label, {k: sum(s["counts"][k] for s in group) for k, _ in VERDICTS}))
    return out


def match_distances(run_dir: str, m: dict) -> dict[str, list[float]]:
    """source → distances of its matches, from the record files of shards that flagged rows."""
    from shardguard.indexes.arrowio import read_table

    out: dict[str, list[float]] = {}
    seen = 0
    for s in m["shards"]:
        c = s.get("counts") or {}
        for kind in ("removed", "review", "tagged"):
            if seen >= MAX_MATCHES or kind not in s.get("outputs", {}) or not (c.get("removed") or c.get("quarantined") or c.get("tagged")):
                continue
            for matches in read_table(fileio.join(run_dir, s["outputs"][kind]["path"]), columns=["matches"]).column(0).to_pylist():
                for x in matches or []:
                    out.setdefault(f"{x['kind']}:{x['source']}", []).append(x["distance"])
                    seen += 1
    return out


def lineage_chain(run_dir: str, m: dict, depth: int = 20) -> list[dict]:
    """This run and its parents (as far as their manifests can be read), newest first."""
    chain, cur, where = [], m, run_dir
    while cur is not None and len(chain) < depth:
        p = cur.get("parent") or {}
        chain.append({"kind": cur["kind"], "id": cur["run"]["id"], "dir": where,
                      "added": p.get("lists_added", []) + p.get("concepts_added", []),
                      "retired": p.get("lists_retired", []) + p.get("concepts_retired", []),
                      "replaced": [x["name"] for x in p.get("lists_replaced", [])],
                      "flagged": (p.get("changes") or {}).get("newly_flagged_total"),
                      "restored": (p.get("changes") or {}).get("restored_total")})
        where = p.get("path")
        try:
            cur = mf.read_manifest(where) if where else None  # recorded as given to --from
        except (mf.ManifestError, OSError, ValueError):
            chain.append({"kind": "?", "id": "(parent manifest not readable here)", "dir": where, "added": [],
                          "retired": [], "replaced": [], "flagged": None, "restored": None})
            cur = None
    return chain


def _identity(m: dict) -> str:
    r, t = m["run"], m["totals"]["counts"]
    rows = [["run id", r["id"]], ["kind", m["kind"]], ["content id", m.get("content_id", "")],
            ["started", r["started_at"]], ["finished", r["finished_at"]],
            ["code", json.dumps(m.get("code_version"))], ["libraries", json.dumps(m.get("libraries"))],
            ["shards", f"{t['shards']:,} ({t['shards_failed']:,} failed)"]]
    return "<h2>Run</h2>" + table(["", ""], rows)


def _indexes(m: dict) -> str:
    lists = [[x["name"], x["type"], x.get("entries", ""), x.get("max_distance", ""), x["action"], x["fingerprint"][:16]]
             for x in m["lists"]]
    out = "<h2>Matched against</h2>" + table(["list", "type", "entries", "max distance", "action", "fingerprint"], lists)
    for c in m.get("concepts") or []:
        out += table(["concept", "threshold", "action", "index", "fingerprint"],
                     [[x["name"], x["threshold"], x["action"], c.get("path", ""), c["fingerprint"][:16]] for x in c["concepts"]])
    model = (m.get("features") or {}).get("model")
    if model:
        out += table(["model", "weights sha256", "dim", "random weights"],
                     [[model["spec"], model["weights_sha256"][:16], model.get("embed_dim"), model.get("random_weights")]])
    return out


def _verdicts(m: dict) -> str:
    t = m["totals"]["counts"]
    legend = "".join(f'<span><i class="sw" style="background:{c}"></i>{k}</span>' for k, c in VERDICTS)
    totals = table(["rows in", "kept", "removed", "quarantined", "errored", "tagged", "kept unchecked"],
                   [[t["rows_in"], t["kept"], t["removed"], t["quarantined"], t["errored"], t.get("tagged", 0),
                     t.get("unchecked_kept", 0)]])
    return (f"<h2>Rows per verdict</h2>{totals}<p class=legend>{legend}</p>"
            + stacked(shard_groups(m["shards"]), VERDICTS))


def _reasons(m: dict) -> str:
    tot = m["totals"]
    out = "<h2>Rows per reason</h2><p>A row can have several reasons: these do not sum to the rows flagged.</p>"
    out += bars(sorted(tot["reasons"].items(), key=lambda kv: -kv[1]), "#c0392b") if tot["reasons"] else "<p>none</p>"
    if tot.get("tags"):
        out += "<h2>Rows per tag</h2>" + bars(sorted(tot["tags"].items(), key=lambda kv: -kv[1]), "#2980b9")
    out += "<h2>Rows not fully checked, per error class</h2>"
    out += bars(sorted(tot["errors"].items(), key=lambda kv: -kv[1]), "#7f8c8d") if tot["errors"] else "<p>none</p>"
    failed = [[s["shard"], s["failure"]["stage"], s["failure"]["message"][:200]] for s in m["shards"] if s["status"] != "ok"]
    if failed:
        out += "<h2>Failed shards</h2>" + table(["shard", "stage", "why"], failed[:200])
    return out


def _dedup(m: dict) -> str:
    d = m.get("dedup")
    if not d:
        return ""
    rows = [[k, v["clusters"], v["rows"]] for k, v in d["per_kind"].items()]
    return "<h2>Dedup</h2>" + table(["kind", "clusters", "duplicate rows flagged"], rows)


def _distances(run_dir: str, m: dict) -> str:
    limits = {f"hashlist:{x['name']}": x.get("max_distance") for x in m["lists"]}
    out = "<h2>Match distances</h2>"
    for source, values in sorted(match_distances(run_dir, m).items()):
        out += f"<h3>{esc(source)}</h3>" + histogram(values, limits.get(source))
    return out


def _lineage(run_dir: str, m: dict) -> str:
    if not m.get("parent"):
        return ""
    rows = [[c["kind"], c["id"], c["dir"], ", ".join(c["added"]), ", ".join(c["retired"]), ", ".join(c["replaced"]),
             "" if c["flagged"] is None else c["flagged"], "" if c["restored"] is None else c["restored"]]
            for c in lineage_chain(run_dir, m)]
    return "<h2>Lineage (newest first)</h2>" + table(
        ["kind", "run id", "directory", "added", "retired", "replaced", "newly flagged", "restored"], rows)


def _verify(run_dir: str) -> str:
    from shardguard.pipelines.manifest_tools import verify

    v = verify(run_dir)
    if v["ok"]:
        return f'<h2>manifest verify</h2><p class="ok">OK: {v["files_checked"]:,} files match the manifest; the accounting adds up</p>'
    items = "".join(f"<li>{esc(p)}</li>" for p in v["problems"][:100])
    return f'<h2>manifest verify</h2><p class="bad">FAILED ({len(v["problems"])} problems)</p><ul>{items}</ul>'


def render(run_dir: str) -> str:
    """The report page of a run."""
    m = mf.read_manifest(run_dir)
    health = m.get("health") or {"ok": True, "problems": []}
    status = '<p class="ok">health check OK</p>' if health["ok"] else '<p class="bad">HEALTH CHECK FAILED</p><ul>' + \
        "".join(f"<li>{esc(p)}</li>" for p in health["problems"]) + "</ul>"
    parts = [_identity(m), status, _verdicts(m), _reasons(m), _dedup(m), _distances(run_dir, m), _indexes(m),
             _lineage(run_dir, m), _verify(run_dir),
             "<h2>Config</h2><pre>" + esc(json.dumps(m["config"], indent=2, sort_keys=True)) + "</pre>"]
    title = f"shardguard {m['kind']} run {m['run']['id']}"
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f'<style>{CSS}</style></head><body><h1>{esc(title)}</h1>{"".join(parts)}</body></html>\n')


def main(argv) -> int:
    """``shardguard report RUN [--output FILE]``."""
    p = StrictParser(prog="shardguard report", description="a self-contained HTML report of a run (offline, no scripts)")
    p.add_argument("run_dir", help="run directory")
    p.add_argument("--output", default="report.html", help="HTML file to write (default report.html)")
    a, rest = split_args(p, argv)
    from shardguard.pipelines.options import configure_filesystems, pipeline_options

    configure_filesystems(pipeline_options(rest))
    page = render(a.run_dir)
    fileio.write_atomic(a.output, page.encode("utf-8"))
    print(f"wrote {a.output} ({len(page):,} bytes)")
    return 0
