"""FAISS matching equals brute force: random lists, k-bit-flipped near duplicates, real PDQ files."""
from __future__ import annotations

import numpy as np
import pytest

from shardguard.indexes.artifacts import ArtifactError, ListSettings, build_artifact, multihash_params
from shardguard.indexes.hashtypes import HASH_TYPES
from shardguard.indexes.listformats import ParsedList, parse_list
from shardguard.indexes.matcher import ListMatcher


def _parsed(type_name, codes: np.ndarray) -> ParsedList:
    out = ParsedList(hash_type=HASH_TYPES[type_name])
    for i, c in enumerate(codes):
        out.add(c.tobytes().hex(), i + 1, None)
    out.source_sha256 = "0" * 64
    return out


def _matcher(tmp_path, type_name, codes, max_distance, flat_limit=100_000, name="l"):
    parsed = _parsed(type_name, codes)
    ht = HASH_TYPES[type_name]
    settings = ListSettings(name, type_name, max_distance, ht.min_quality if ht.perceptual else 0)
    build_artifact(parsed, settings, str(tmp_path / name), "mem", flat_limit=flat_limit)
    return ListMatcher.load(str(tmp_path / name)), parsed


def _flip(rng, codes, max_flip):
    q = codes.copy()
    nbits = codes.shape[1] * 8
    for row in q:
        for p in rng.choice(nbits, rng.integers(0, max_flip + 1), replace=False):
            row[p // 8] ^= 1 << (p % 8)
    return q


def _brute(db, queries, max_distance):
    bits_db = np.unpackbits(db, axis=1).astype(np.int16)
    out = []
    for q in queries:
        d = np.abs(bits_db - np.unpackbits(q).astype(np.int16)).sum(axis=1)
        out.append(sorted((int(d[i]), i) for i in np.nonzero(d <= max_distance)[0]))
    return out


@pytest.mark.parametrize("type_name,max_distance,flat_limit,entries", [
    ("phash", 8, 100_000, 3000), ("phash", 8, 10, 3000), ("dhash", 5, 10, 3000), ("dhash", 11, 10, 3000),
    ("phash", 0, 10, 3000), ("pdq", 31, 100_000, 3000), ("pdq", 31, 10, 3000),
    ("phash", 8, 100_000, 40), ("dhash", 11, 10, 64), ("pdq", 31, 100_000, 40), ("pdq", 31, 10, 64),
])
def test_range_matching_equals_brute_force(tmp_path, type_name, max_distance, flat_limit, entries):
    rng = np.random.default_rng(max_distance + flat_limit + entries)
    nbytes = HASH_TYPES[type_name].nbytes
    db = rng.integers(0, 256, (entries, nbytes), dtype=np.uint8)
    queries = np.concatenate([_flip(rng, np.resize(db, (300, nbytes)), max_distance + 3),
                              rng.integers(0, 256, (100, nbytes), dtype=np.uint8)])
    m, _ = _matcher(tmp_path, type_name, db, max_distance, flat_limit)
    large = "mih64" if HASH_TYPES[type_name].nbits == 64 else "multihash"
    kind = "pairwise" if entries <= 64 else "flat" if flat_limit > entries else large
    assert m.sidecar["index"]["kind"] == kind
    hexes = [q.tobytes().hex() for q in queries]
    got = m.match_batch(hexes, [100] * len(hexes))
    want = _brute(db, queries, max_distance)
    for g, w in zip(got, want):
        assert [(h.distance, int(h.entry.split()[1]) - 1) for h in g] == w
    assert sum(len(w) for w in want) >= 60  # the test exercises real hits, not just misses
    # the columnar path (a features table's column, rows without a hash or below the quality floor)
    hexes[5], hexes[9], quals = None, "", [100] * len(hexes)
    quals[0] = quals[1] = None
    quals[2] = HASH_TYPES[type_name].min_quality - 1
    assert _by_column(m, hexes, quals) == m.match_batch(hexes, quals)


def test_multihash_params_are_exact_by_pigeonhole():
    for nbits, r in ((64, 8), (64, 10), (256, 31), (256, 40), (64, 0)):
        nhash, bits, nflip = multihash_params(nbits, r)
        assert nhash * (nflip + 1) > r and nhash * bits <= nbits and bits <= 32


def test_needles_all_match_haystack_at_31_like_brute_force(testdata, tmp_path):
    base = testdata / "ThreatExchange/pdq/data/reg-test-input"
    hay = parse_list(str(base / "haystack.txt"), HASH_TYPES["pdq"])
    needles = [l.strip() for l in (base / "needles.txt").read_text().splitlines() if l.strip()]
    for flat_limit in (100_000, 10):
        art = tmp_path / f"hay{flat_limit}"
        build_artifact(hay, ListSettings("hay", "pdq", 31, 50), str(art), "haystack.txt", flat_limit=flat_limit)
        got = ListMatcher.load(str(art)).match_batch(needles, [100] * len(needles))
        want = _brute(hay.code_array(), HASH_TYPES["pdq"].to_codes(needles), 31)
        assert all(got), "every needle has a match at <= 31"
        assert [[h.distance for h in g] for g in got] == [[d for d, _ in w] for w in want]
        assert sum(1 for g in got if g[0].distance == 0) == 50


def test_exact_lists_and_quality_gate(tmp_path):
    rng = np.random.default_rng(3)
    db = rng.integers(0, 256, (500, 16), dtype=np.uint8)
    m, _ = _matcher(tmp_path, "md5", db, 0, name="md5")
    hexes = [db[7].tobytes().hex(), "00" * 16, None, db[499].tobytes().hex()]
    assert [[x.entry for x in r] for r in m.match_batch(hexes)] == [["line 8"], [], [], ["line 500"]]
    pdq_db = rng.integers(0, 256, (5, 32), dtype=np.uint8)
    pm, _ = _matcher(tmp_path, "pdq", pdq_db, 31, name="pdq")
    h = pdq_db[0].tobytes().hex()
    assert [len(r) for r in pm.match_batch([h, h, h], [49, 50, None])] == [0, 1, 0]
    assert [len(r) for r in _by_column(pm, [h, h, h], [49, 50, None])] == [0, 1, 0]
    assert _by_column(m, hexes, None) == m.match_batch(hexes)
    assert _by_column(pm, [h], None) == [[]]  # no quality column: a perceptual list with a floor matches nothing


def _by_column(m, hexes, quals):
    """``match_codes`` over Arrow columns, regrouped per row (what the hash-list rule does)."""
    import pyarrow as pa

    from shardguard.indexes.hexcolumn import hex_codes, int_column

    codes, present = hex_codes(pa.chunked_array([pa.array(hexes[:3], pa.string()), pa.array(hexes[3:], pa.string())]),
                               m.hash_type.nbytes)
    q = None if quals is None else int_column(pa.chunked_array([pa.array(quals, pa.int32())]), len(hexes))
    out = [[] for _ in hexes]
    for i, hit in m.match_codes(codes, present, q):
        out[i].append(hit)
    return out


def test_tampered_artifact_is_refused(tmp_path):
    rng = np.random.default_rng(4)
    m, _ = _matcher(tmp_path, "phash", rng.integers(0, 256, (20, 8), dtype=np.uint8), 8, name="t")
    with pytest.raises(ArtifactError, match="pinned"):
        ListMatcher.load(str(tmp_path / "t"), expected_fingerprint="f" * 64)
    entries = tmp_path / "t" / "entries.parquet"
    data = bytearray(entries.read_bytes())
    data[len(data) // 2] ^= 0xFF
    entries.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256"):
        ListMatcher.load(str(tmp_path / "t"))


def test_a_hash_list_rule_on_a_table_without_its_column_matches_nothing(tmp_path):
    """A features table without the list's hash column (a quality column present) gives every row no
    match, as before the columnar path; with the column, the same rows match as the per-row path."""
    import pyarrow as pa

    from shardguard.transforms.rules.hashlists import HashListRule
    from shardguard.transforms.shared import SharedHandles

    rng = np.random.default_rng(5)
    db = rng.integers(0, 256, (5, 32), dtype=np.uint8)
    m, _ = _matcher(tmp_path, "pdq", db, 31, name="pdq")
    rule = HashListRule("pdq", str(tmp_path / "pdq"), m.sidecar["fingerprint"], "pdq", "remove")
    rule.setup(SharedHandles())
    assert rule.match(pa.table({"pdq_quality": pa.array([80, 90], pa.int32())})) == [[], []]
    hexes = [db[1].tobytes().hex(), None]
    got = rule.match(pa.table({"pdq": pa.array(hexes, pa.string()), "pdq_quality": pa.array([80, 90], pa.int32())}))
    assert [[x.entry for x in r] for r in got] == [[h.entry for h in r] for r in m.match_batch(hexes, [80, 90])]
    assert got[0] and not got[1]


def test_a_small_perceptual_list_needs_no_faiss(tmp_path):
    """A list of up to ``PAIRWISE_LIMIT`` entries is built, loaded and matched without importing
    FAISS (~40 ms, paid by every run that has only a small delta list); checked in a fresh process."""
    import subprocess
    import sys

    code = f"""
import sys, numpy as np
from shardguard.indexes.artifacts import ListSettings, build_artifact
from shardguard.indexes.hashtypes import HASH_TYPES
from shardguard.indexes.listformats import ParsedList
from shardguard.indexes.matcher import ListMatcher
for t, n in (("phash", 64), ("pdq", 20)):
    p = ParsedList(hash_type=HASH_TYPES[t])
    codes = np.random.default_rng(0).integers(0, 256, (n, HASH_TYPES[t].nbytes), dtype=np.uint8)
    for i, c in enumerate(codes):
        p.add(c.tobytes().hex(), i + 1, None)
    p.source_sha256 = "0" * 64
    build_artifact(p, ListSettings(t, t, 8, 0), {str(tmp_path)!r} + "/" + t, "mem")
    m = ListMatcher.load({str(tmp_path)!r} + "/" + t)
    assert m.sidecar["index"]["kind"] == "pairwise"
    assert [len(h) for h in m.match_batch([codes[3].tobytes().hex()])] == [1]
assert "faiss" not in sys.modules, "FAISS was imported"
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
