"""``shardguard lookup --run DIR IMAGE…``: is this image, or a near-copy, in the scanned dataset?

Answers from the run's stored features (no input shard is read): exact md5/sha256 equality,
perceptual-hash Hamming distance within each type's default threshold, PDQ views (the query's
mirror, flips, rotations and trimmed border against each row's as-stored PDQ, and the query against
the views the run stored for each row: ``pdq@mirror``, ``pdq@stored-trim``; PDQ's threshold and
quality floor), and — when the run stored embeddings and its model can be loaded here — CLIP cosine
similarity. It is a brute-force pass over
the features, which is fine per run directory; a standing service would index them instead.
"""
from __future__ import annotations

import numpy as np

from shardguard.indexes import fileio
from shardguard.indexes.arrowio import read_table
from shardguard.indexes.hashtypes import HASH_TYPES
from shardguard.pipelines import manifest as mf
from shardguard.transforms.extractors.clip import embeddings_from_table
from shardguard.transforms.features import compute_row_features


def query_features(data: bytes, hashes, clip_size: int | None, exact: bool):
    """The same features the scan computed (same hashes, same decode mode), for one query image,
    with every view (one image: the full set costs nothing that matters)."""
    row = {"row": 0, "key": "query", "key_derived": False, "url": None, "caption": None,
           "status": "success", "image": data}
    return compute_row_features(row, tuple(hashes), 10**9, clip_size, exact, views="full" if "pdq" in hashes else "off")


def _hamming(codes: np.ndarray, q: np.ndarray) -> np.ndarray:
    return np.unpackbits(np.bitwise_xor(codes, q), axis=-1).sum(axis=-1)


def _load_model(model_info: dict | None):
    if not model_info:
        return None, "run has no embeddings"
    from shardguard.indexes.models import ModelError, parse_spec
    from shardguard.transforms.embed import LoadedClip

    try:
        clip = LoadedClip(parse_spec(model_info["spec"]), "auto", 1)
    except (ModelError, OSError, RuntimeError) as exc:
        return None, f"model {model_info['spec']} not loadable here ({exc}); CLIP similarity skipped"
    if clip.info["weights_sha256"] != model_info["weights_sha256"]:
        return None, f"model {model_info['spec']} here has other weights than the run's; CLIP skipped"
    return clip, None


def lookup(run_dir: str, images: list[str], clip_threshold: float = 0.95, max_results: int = 20) -> dict:
    """Matches per query image: (shard, key, row) with hash distances and CLIP similarity."""
    m = mf.read_manifest(run_dir)
    hashes = m["features"]["hashes"]
    clip, note = _load_model(m["features"].get("model"))
    queries = []
    for path in images:
        exact = bool(m["config"].get("decode", {}).get("exact", False))
        rec, pixels = query_features(fileio.read_bytes(path), hashes, clip.size if clip else None, exact)
        emb = clip.encode_images([pixels])[0].astype(np.float16).astype(np.float32) if clip and pixels is not None else None
        queries.append((path, rec, emb))
    results = {p: [] for p, _, _ in queries}
    for s in m["shards"]:
        if s["status"] != "ok":
            continue
        t = read_table(fileio.join(run_dir, s["outputs"]["features"]["path"]))
        _match_shard(s["shard"], t, queries, hashes, clip_threshold, results)
    out = []
    for path, rec, _ in queries:
        hits = sorted(results[path], key=lambda h: (-h["clip_similarity"] if h.get("clip_similarity") else 0,
                                                    min(h["distances"].values(), default=999)))
        out.append({"image": path, "decoded": rec["status"] == "ok",
                    "error": rec.get("error_class"), "found": bool(hits), "matches": hits[:max_results]})
    return {"run": run_dir, "note": note, "results": out}


def _match_shard(shard, table, queries, hashes, clip_threshold, results) -> None:
    cols = table.drop_columns([c for c in ("embedding",) if c in table.column_names]).to_pydict()
    emb = None
    if "embedding" in table.column_names:
        emb = embeddings_from_table(table)[0].astype(np.float32)  # zero rows: no embedding, sim 0
    for path, rec, qemb in queries:
        found: dict[int, dict] = {}
        for name in hashes:
            ht, qv = HASH_TYPES[name], rec.get(name)
            if not qv:
                continue
            vals = cols[name]
            idx = [i for i, v in enumerate(vals) if v]
            if not idx:
                continue
            if ht.perceptual:
                d = _hamming(ht.to_codes([vals[i] for i in idx]), ht.to_codes([qv])[0])
                close = [(idx[j], int(d[j])) for j in np.nonzero(d <= ht.default_max_distance)[0]]
            else:
                close = [(i, 0) for i in idx if vals[i] == qv]
            for i, dist in close:
                found.setdefault(i, {"distances": {}})["distances"][name] = dist
        if "pdq" in hashes:
            _match_views(rec, cols, found)
        if emb is not None and qemb is not None:
            sims = emb @ qemb
            for i in np.nonzero(sims >= clip_threshold)[0]:
                found.setdefault(int(i), {"distances": {}})["clip_similarity"] = round(float(sims[i]), 4)
        for i, hit in found.items():
            results[path].append({"shard": shard, "key": cols["key"][i], "row": cols["row"][i], **hit})


def _match_views(rec: dict, cols: dict, found: dict) -> None:
    """PDQ views: the query's views against each row's PDQ, the query's PDQ against each row's stored
    views (quality ≥ 50 on both sides, distance ≤ 31); the closest per view name."""
    ht = HASH_TYPES["pdq"]
    pdq, qual = cols["pdq"], cols["pdq_quality"]
    rows = [i for i, v in enumerate(pdq) if v and (qual[i] or 0) >= ht.min_quality]
    queries = [(f"pdq@{v['view']}", v["pdq"]) for v in rec.get("views") or []
               if v["pdq"] and (v["pdq_quality"] or 0) >= ht.min_quality]
    if rows and queries:
        d = _hamming(ht.to_codes([pdq[i] for i in rows])[:, None, :], ht.to_codes([q for _, q in queries])[None])
        for j, i in enumerate(rows):
            for k in np.nonzero(d[j] <= ht.default_max_distance)[0]:
                dist = found.setdefault(i, {"distances": {}})["distances"]
                dist[queries[k][0]] = min(int(d[j][k]), dist.get(queries[k][0], 999))
    if rec.get("pdq") and (rec.get("pdq_quality") or 0) >= ht.min_quality and "views" in cols:
        stored = [(i, v["view"], v["pdq"]) for i, views in enumerate(cols["views"]) for v in views or []
                  if v["pdq"] and (v["pdq_quality"] or 0) >= ht.min_quality]
        if stored:
            d = _hamming(ht.to_codes([h for _, _, h in stored]), ht.to_codes([rec["pdq"]])[0])
            for k in np.nonzero(d <= ht.default_max_distance)[0]:
                i, view, _ = stored[k]
                found.setdefault(i, {"distances": {}})["distances"][f"pdq@stored-{view}"] = int(d[k])


def text(result: dict) -> str:
    """Human rendering of a lookup result."""
    lines = [f"note: {result['note']}"] if result["note"] else []
    for r in result["results"]:
        status = "FOUND" if r["found"] else "not found"
        lines.append(f"{r['image']}: {status}" + ("" if r["decoded"] else f" (query not decodable: {r['error']})"))
        for h in r["matches"]:
            d = ", ".join(f"{k} {v}" for k, v in h["distances"].items())
            c = f", clip {h['clip_similarity']}" if "clip_similarity" in h else ""
            lines.append(f"    {h['shard']}/{h['key']} (row {h['row']}): {d}{c}")
    return "\n".join(lines)
