"""Finding modified copies: query-side views (mirror, trimmed border) matched against PDQ lists, hash
expansion around confirmed matches, refilter and lookup reproducing them, and the views' own maths
checked against hashing the transformed image."""
from __future__ import annotations

import hashlib
import io

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import run_scan
from helpers import tree_bytes
from PIL import Image, ImageOps

from shardguard.indexes import imagehashes, views
from shardguard.pipelines.refilter import run as refilter
from shardguard.pipelines.sample_data import encode, make_image, shard_rows, write_shard


def _hd(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def _letterbox(img: Image.Image, width: int) -> Image.Image:
    canvas = Image.new("RGB", (width, img.height))
    canvas.paste(img, ((width - img.width) // 2, 0))
    return canvas


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """One shard: seed (a listed original, also md5-listed), crops and rotations of it (neighbours),
    the mirror and a letter-boxed copy of a second listed picture that is itself absent, 20 others."""
    d = tmp_path_factory.mktemp("robust")
    seed, other = make_image(7001), make_image(7002)
    w, h = seed.size
    items = [("seed", encode(seed), "success"),
             ("seed-crop", encode(seed.crop((w // 20, h // 20, w - w // 20, h - h // 20))), "success"),
             ("seed-rot", encode(seed.rotate(4, resample=Image.Resampling.BILINEAR)), "success"),
             ("other-mirror", encode(ImageOps.mirror(other)), "success"),
             ("other-letterbox", encode(_letterbox(other, 400)), "success")]
    items += [(f"clean{i}", encode(make_image(7100 + i)), "success") for i in range(20)]
    rows = shard_rows(items, "00000")
    write_shard(str(d / "in" / "00000.parquet"), rows)
    (d / "pdq.txt").write_text(f"{imagehashes.pdq(seed)[0]}\n{imagehashes.pdq(other)[0]}\n")
    (d / "md5.txt").write_text(hashlib.md5(encode(seed)).hexdigest() + "\n")
    keys = {name: r["key"] for (name, _, _), r in zip(items, rows)}
    return d, keys


def _lists(d):
    return ["--hash-list", f"pdq={d / 'pdq.txt'}", "--hash-list", f"md5={d / 'md5.txt'}"]


def _records(out, kind):
    return {r["key"]: r for p in (out / kind).glob("*.parquet") for r in pq.read_table(p).to_pylist()}


@pytest.fixture(scope="module")
def scanned(data, tmp_path_factory):
    d, _ = data
    out = tmp_path_factory.mktemp("robust-out") / "run"
    assert run_scan(["--input", str(d / "in" / "*.parquet"), "--output", str(out), "--quiet", *_lists(d)]) == 0
    return out


def test_views_find_the_mirror_and_the_letterbox_and_say_which_view(data, scanned):
    _, keys = data
    removed = _records(scanned, "removed")
    types = {k: {m["type"] for m in r["matches"]} for k, r in removed.items()}
    assert "pdq@mirror" in types[keys["other-mirror"]]
    assert "pdq@trim" in types[keys["other-letterbox"]]


def test_expansion_quarantines_modified_copies_of_a_seed_and_nothing_else(data, scanned):
    _, keys = data
    review, removed = _records(scanned, "review"), _records(scanned, "removed")
    for name in ("seed-crop", "seed-rot"):
        rec = review[keys[name]]
        assert rec["reasons"] == ["neighbor-of-known-bad"]
        assert {m["entry"] for m in rec["matches"]} == {f"00000/{keys['seed']}"}
        assert all(m["type"].startswith("pdq@") and m["distance"] <= 31 for m in rec["matches"])
    flagged = set(review) | set(removed)
    assert not any(keys[f"clean{i}"] in flagged for i in range(20))
    assert keys["seed"] in removed and keys["seed"] not in review


def test_the_multi_index_search_gives_the_flat_searchs_run_byte_for_byte(data, scanned, tmp_path, monkeypatch):
    """The expansion's search picks the multi-index only for many seed views (none in this small
    set): forced here, a whole scan writes the same removal, review and clean files."""
    from shardguard.indexes import jointsearch, mih

    if mih._compiled() is None:
        pytest.skip("shardguard's C extension is not built here: the multi-index is not chosen automatically")
    picked = []
    monkeypatch.setattr(jointsearch, "best_chunks", lambda n, r: picked.append(n) or jointsearch.even_chunks(7))
    d, _ = data
    assert run_scan(["--input", str(d / "in" / "*.parquet"), "--output", str(tmp_path / "m"), "--quiet", *_lists(d)]) == 0
    assert picked and jointsearch.best_chunks(picked[0], 12) is not None
    a, b = tree_bytes(scanned), tree_bytes(tmp_path / "m")
    for kind in ("removed", "review", "clean"):
        names = sorted(n for n in a if n.startswith(kind + "/"))
        assert names and names == sorted(n for n in b if n.startswith(kind + "/"))
        assert all(a[n] == b[n] for n in names), kind


def test_robust_off_is_todays_rule(data, tmp_path):
    d, keys = data
    out = tmp_path / "off"
    assert run_scan(["--input", str(d / "in" / "*.parquet"), "--output", str(out), "--quiet", "--robust", "off",
                     *_lists(d)]) == 0
    flagged = set(_records(out, "removed")) | set(_records(out, "review"))
    assert flagged == {keys["seed"]}


def test_refilter_reproduces_views_and_expansion_byte_for_byte(data, scanned, tmp_path):
    d, _ = data
    assert refilter(["--from", str(scanned), "--output", str(tmp_path / "re"), "--quiet"]) == 0
    a, b = tree_bytes(scanned), tree_bytes(tmp_path / "re")
    for kind in ("removed", "review", "clean"):
        names = sorted(n for n in a if n.startswith(kind + "/"))
        assert names and names == sorted(n for n in b if n.startswith(kind + "/"))
        assert all(a[n] == b[n] for n in names), kind


def test_lookup_finds_a_mirrored_query_through_the_views(data, scanned, tmp_path):
    from shardguard.pipelines.lookup import lookup

    _, keys = data
    q = tmp_path / "q.jpg"
    q.write_bytes(encode(ImageOps.mirror(make_image(7001))))
    hits = lookup(str(scanned), [str(q)])["results"][0]["matches"]
    seed = [h for h in hits if h["key"] == keys["seed"]]
    assert seed and any(k.startswith("pdq@") for k in seed[0]["distances"])


@pytest.mark.parametrize("size", [(320, 240), (256, 256), (300, 200), (64, 64), (371, 256)])
def test_dihedral_views_from_the_dct_agree_with_hashing_the_transformed_image(size):
    img = make_image(3, 320).resize(size)
    _, _, dcts = imagehashes.pdq_with_dct(img)
    # our names are clockwise; Pillow's ROTATE_90 is counter-clockwise
    pairs = {"mirror": Image.Transpose.FLIP_LEFT_RIGHT, "flip": Image.Transpose.FLIP_TOP_BOTTOM,
             "rot90": Image.Transpose.ROTATE_270, "rot270": Image.Transpose.ROTATE_90,
             "rot180": Image.Transpose.ROTATE_180, "transpose": Image.Transpose.TRANSPOSE,
             "transpose_anti": Image.Transpose.TRANSVERSE}
    for view, t in pairs.items():
        d = _hd(views.pdq_bits(views.dihedral(dcts, view)), imagehashes.pdq(img.transpose(t))[0])
        assert d <= 16, (view, d)  # exact but for the box filter's edges (real photos: p90 2 bits)
    assert views.pdq_bits(dcts[0]) == imagehashes.pdq(img)[0]


def test_mirror_phash_is_the_mirrored_images_phash():
    from shardguard.transforms.features import compute_row_features

    img = make_image(11).resize((300, 200))

    def feats(im):
        row = {"row": 0, "key": "k", "key_derived": False, "status": "success", "image": encode(im, "PNG")}
        return compute_row_features(row, ("pdq", "phash"), 10**9, views="default")[0]

    a, b = feats(img), feats(ImageOps.mirror(img))
    assert {v["view"]: v["phash"] for v in a["views"]}["mirror"] == b["phash"]


def test_uniform_border_finds_a_jpeg_letterbox_to_the_pixel():
    img = make_image(12, 200)
    for fill in ((0, 0, 0), (255, 255, 255), (128, 128, 128)):
        canvas = Image.new("RGB", (200 + 2 * 37, 200 + 2 * 21), fill)
        canvas.paste(img, (37, 21))
        gray = np.asarray(Image.open(io.BytesIO(encode(canvas, quality=85))).convert("L"))
        border = views.uniform_border(gray)
        assert border is not None and all(abs(a - b) <= 1 for a, b in zip(border, (21, 21, 37, 37))), (fill, border)
    assert views.uniform_border(np.asarray(img.convert("L"))) is None
    assert views.uniform_border(np.zeros((100, 100), np.uint8)) is None  # all border: nothing to trim to


def test_robust_config_and_flags_are_validated_before_any_work(data, tmp_path, capsys):
    d, _ = data
    base = ["--input", str(d / "in" / "*.parquet"), "--output", str(tmp_path / "o"), *_lists(d)]
    cfg = tmp_path / "c.yaml"
    cfg.write_text("robust:\n  views: most\n  phash_max_distance: 40\n")
    for extra in (["--config", str(cfg)], ["--robust", "defualt"], ["--blas-threads", "-1"], ["--robust"]):
        capsys.readouterr()
        assert run_scan(base + extra) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("shardguard: error"), (extra, err)
    assert not (tmp_path / "o").exists()


def test_a_narrow_hash_set_does_not_turn_the_expansion_off(data, tmp_path):
    d, keys = data
    out = tmp_path / "md5only"
    assert run_scan(["--input", str(d / "in" / "*.parquet"), "--output", str(out), "--quiet", "--hashes", "md5",
                     "--hash-list", f"md5={d / 'md5.txt'}"]) == 0
    review = _records(out, "review")
    assert {keys["seed-crop"], keys["seed-rot"]} <= set(review)


def test_no_image_bytes_of_flagged_rows_reach_any_output(data, scanned):
    from helpers import assert_bytes_nowhere

    d, keys = data
    flagged = set(_records(scanned, "removed")) | set(_records(scanned, "review"))
    rows = pq.read_table(d / "in" / "00000.parquet").to_pylist()
    assert_bytes_nowhere(scanned, [r["jpg"] for r in rows if r["key"] in flagged])


def test_seed_views_are_recorded_and_a_refilter_reuses_them_without_the_inputs(data, tmp_path):
    import json
    import shutil

    from shardguard.pipelines.cli import main as cli

    d, _ = data
    shutil.copytree(d / "in", tmp_path / "in")
    assert run_scan(["--input", str(tmp_path / "in" / "*.parquet"), "--output", str(tmp_path / "p"), "--quiet",
                     *_lists(d)]) == 0
    (s,) = json.loads((tmp_path / "p" / "manifest.json").read_text())["shards"]
    assert s["outputs"]["seeds"]["rows"] == 44  # the seed's views (default set)
    assert cli(["manifest", "verify", str(tmp_path / "p")]) == 0
    (tmp_path / "in").rename(tmp_path / "gone")  # the seeds' images can no longer be read
    assert refilter(["--from", str(tmp_path / "p"), "--output", str(tmp_path / "c"), "--quiet"]) == 0
    a, b = tree_bytes(tmp_path / "p"), tree_bytes(tmp_path / "c")
    assert a["review/00000.parquet"] == b["review/00000.parquet"] and a["seeds/00000.parquet"] == b["seeds/00000.parquet"]


def test_a_seed_whose_input_changed_is_refused(data, tmp_path):
    import shutil

    d, keys = data
    shutil.copytree(d / "in", tmp_path / "in")
    only_other = tmp_path / "other.txt"
    only_other.write_text((d / "pdq.txt").read_text().splitlines()[1] + "\n")
    assert run_scan(["--input", str(tmp_path / "in" / "*.parquet"), "--output", str(tmp_path / "p"), "--quiet",
                     "--hash-list", f"pdq={only_other}"]) == 0  # no seed: the parent hashed no seed views
    t = pq.read_table(tmp_path / "in" / "00000.parquet").to_pylist()
    t[0]["jpg"] = encode(make_image(7001), quality=70)  # the seed's bytes replaced (same picture)
    write_shard(str(tmp_path / "in" / "00000.parquet"), t)
    # the md5 list makes row 0 a seed: its views must be hashed from the input, which changed
    assert refilter(["--from", str(tmp_path / "p"), "--output", str(tmp_path / "c"), "--quiet",
                     "--hash-list", f"md5={d / 'md5.txt'}"]) == 1
    m = __import__("json").loads((tmp_path / "c" / "manifest.json").read_text())
    assert "cannot be read to hash its seeds" in m["shards"][0]["failure"]["message"]


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("chunks", [False, 7])
def test_neighbours_equal_a_brute_force_oracle_with_copies_of_a_seed(packed, chunks):
    """Seed views of several copies of one image (identical hashes) plus other seeds: the search over
    distinct views finds exactly what comparing every row with every seed view finds — given the
    rows, or packed as the runner hands them over; by the flat search and by the multi-index."""
    import pyarrow as pa

    from shardguard.transforms.rules.hashexpand import HashExpansion, SeedIndex, neighbours
    from shardguard.transforms.rules.seedpack import SeedViews

    rng = np.random.default_rng(5)
    flip = lambda h, n: f"{int(h, 16) ^ sum(1 << int(b) for b in rng.choice(len(h) * 4, n, replace=False)):0{len(h)}x}"  # noqa: E731
    base = [(f"{int.from_bytes(rng.bytes(32)):064x}", f"{int.from_bytes(rng.bytes(8)):016x}") for _ in range(6)]
    seeds = [(f"s/{c}", f"v{v}", p, 80, h) for c in range(5) for v, (p, h) in enumerate(base[:3])]  # 5 copies
    seeds += [(f"s/other{v}", f"v{v}", p, 80, h) for v, (p, h) in enumerate(base[3:])]
    pdq, ph = [], []
    for p, h in base * 4:  # rows at random distances from every view, some within both thresholds
        pdq.append(flip(p, int(rng.integers(0, 40))))
        ph.append(flip(h, int(rng.integers(0, 16))))
    n = len(pdq)
    quality = [80] * n
    pdq[1], ph[2], quality[3], quality[4] = None, "", 10, None  # rows that are not searched
    table = pa.table({"key": [f"r{i}" for i in range(n)], "pdq": pdq, "pdq_quality": pa.array(quality, pa.int32()),
                      "phash": ph})
    rule = HashExpansion([], max_per_row=3)
    want = []
    for i in range(n):
        if not (pdq[i] and ph[i] and (quality[i] or 0) >= rule.min_quality):
            continue
        found = sorted((_hd(pdq[i], s[2]), s[0], s[1]) for s in seeds
                       if _hd(pdq[i], s[2]) <= rule.pdq_distance and _hd(ph[i], s[4]) <= rule.phash_distance)
        seen: list[str] = []
        for d, seed, view in found:
            if seed not in seen and len(seen) < rule.max_per_row:
                seen.append(seed)
                want.append((i, seed, f"pdq@{view}", float(d)))
    from shardguard.indexes.jointsearch import even_chunks

    given = SeedIndex(SeedViews.pack(seeds) if packed else seeds, rule.phash_distance, chunks and even_chunks(chunks))
    got = [(i, m.entry, m.type, m.distance) for i, m in neighbours(table, "s", given, rule)]
    assert got == want and len({g[0] for g in got}) > 3


def test_the_seed_index_is_built_once_per_seed_set_and_never_served_stale():
    """Every shard's verdict gets the same seed set: its index is built once per worker; a different
    seed set (another run, a re-filter) gets its own; a pickled rule carries no index."""
    import pickle

    import pyarrow as pa

    from shardguard.transforms.rules.hashexpand import HashExpansion, neighbours

    p, h = "ab" * 32, "0123456789abcdef"
    table = pa.table({"key": ["r0"], "pdq": [p], "pdq_quality": pa.array([80], pa.int32()), "phash": [h]})
    near = [("s/a", "as-is", p, 80, h)]
    far = [("s/b", "as-is", "54" * 32, 80, "fedcba9876543210")]
    rule = HashExpansion([])
    ix = rule._index(near)
    assert rule._index(near) is ix and rule._index(list(near)) is ix  # the runner's object, or an equal one
    side = lambda seeds: {"count": len(seeds), "limit": 100, "seeds": seeds}  # noqa: E731
    assert [m.entry for _, m in rule.shard_matches(table, _Ref("s"), side(near)).rows] == ["s/a"]
    assert rule.shard_matches(table, _Ref("s"), side(far)).rows == ()  # not the cached index of `near`
    assert neighbours(table, "s", far, rule) == []
    assert pickle.loads(pickle.dumps(rule))._cached is None


def test_the_verdict_threads_of_a_process_share_one_seed_index():
    """Each worker thread's DoFn holds its own copy of the rule; with the worker's shared handles
    they get one index per seed set (it holds up to ~850k views at max_seeds), another set its own."""
    import pickle

    from shardguard.transforms.rules.hashexpand import HashExpansion
    from shardguard.transforms.rules.seedpack import SeedViews
    from shardguard.transforms.shared import SharedHandles

    a = SeedViews.pack([("s/a", "as-is", "ab" * 32, 80, "0123456789abcdef")])
    b = SeedViews.pack([("s/b", "as-is", "54" * 32, 80, "fedcba9876543210")])
    handle, rule = SharedHandles(), HashExpansion([])
    copies = [pickle.loads(pickle.dumps(rule)) for _ in range(2)]
    for c in copies:
        c.setup(pickle.loads(pickle.dumps(handle)))
    first = copies[0]._index(a)
    assert copies[1]._index(SeedViews(*(getattr(a, f) for f in a.__dataclass_fields__))) is first  # an equal set
    assert copies[1]._index(b) is not first and copies[0]._index(a) is first
    assert a.digest() != b.digest() and pickle.loads(pickle.dumps(copies[0]))._shared is None


class _Ref:
    def __init__(self, shard):
        self.shard = shard


def test_bounded_seeds_counts_per_shard_batches_and_drops_them_past_the_limit():
    """Seeds arrive one list per shard: the count is of seeds, not lists, and past the limit only it is kept."""
    from shardguard.transforms.rules.expansion import BoundedSeeds

    fn = BoundedSeeds(3)
    a = fn.add_input(fn.add_input(fn.create_accumulator(), [("b", "1")]), [("a", "2"), ("a", "1")])
    assert fn.extract_output(a) == {"count": 3, "limit": 3, "seeds": [("a", "1"), ("a", "2"), ("b", "1")]}
    b = fn.add_input(fn.create_accumulator(), [("c", "1")])
    assert fn.extract_output(fn.merge_accumulators([a, b])) == {"count": 4, "limit": 3, "seeds": []}
    assert fn.extract_output(fn.add_input(a, [("c", "1")]))["seeds"] == []


def test_packed_seed_views_round_trip_and_stay_a_handful_of_objects():
    """The seed set crosses the runner packed: the same rows come back (sorted by seed, view); a
    malformed hash is refused; and however many views, the value is a few objects plus the distinct
    seed ids and view names (the runner's side-input cache walks every object of it to weigh it)."""
    import gc
    import types

    from shardguard.transforms.rules.hashexpand import BoundedSeedViews
    from shardguard.transforms.rules.seedpack import SeedViews

    rng = np.random.default_rng(2)
    rows = [(f"s{c:02d}/k", f"view{v:02d}", rng.bytes(32).hex(), int(rng.integers(0, 101)), rng.bytes(8).hex())
            for c in range(30) for v in range(40)]
    packed = SeedViews.pack(rows[::-1])
    assert packed.rows() == sorted(rows) and len(packed) == 1200 and packed == SeedViews.pack(rows)
    seen, todo = set(), [packed]
    while todo:  # what a deep-size walk visits (classes and modules are not the value's)
        o = todo.pop()
        if id(o) not in seen and not isinstance(o, (type, types.ModuleType, types.FunctionType)):
            seen.add(id(o))
            todo.extend(gc.get_referents(o))
    assert len(seen) < 30 + 40 + 20
    with pytest.raises(ValueError, match="64 and a pHash of 16"):
        SeedViews.pack([("s/k", "as-is", "ab" * 31, 80, "00" * 8)])
    fn = BoundedSeedViews(10_000)
    acc = fn.add_input(fn.add_input(fn.create_accumulator(), rows[:5]), [("error", "s07", "OSError: gone", 0, "")])
    out = fn.extract_output(acc)
    assert out["count"] == 6 and out["errors"] == [("error", "s07", "OSError: gone", 0, "")]
    assert out["seeds"].rows() == sorted(rows[:5])
    empty = fn.extract_output(fn.create_accumulator())
    assert empty["count"] == 0 and empty["errors"] == [] and len(empty["seeds"]) == 0


def test_a_packed_seed_set_still_fails_shards_past_the_limit_or_after_a_read_error():
    """Past the limit only the count survives the combine, and a seed image that could not be read
    travels beside the packed set: either way every shard's expansion fails with its reason instead
    of silently searching an incomplete seed set."""
    import pyarrow as pa

    from shardguard.transforms.rules.hashexpand import BoundedSeedViews, HashExpansion

    p, h = "ab" * 32, "0123456789abcdef"
    table = pa.table({"key": ["r0"], "pdq": [p], "pdq_quality": pa.array([80], pa.int32()), "phash": [h]})
    rule, fn = HashExpansion([]), BoundedSeedViews(2)
    views = [(f"s/{c}", "as-is", p, 80, h) for c in "abc"]
    over = fn.extract_output(fn.add_input(fn.create_accumulator(), views))
    failure = rule.shard_matches(table, _Ref("s"), over).failure
    assert failure is not None and failure.error_class == "SeedLimitExceeded" and "3 seed views" in failure.message
    unread = fn.extract_output(fn.add_input(fn.create_accumulator(), [("error", "s07", "OSError: gone", 0, "")]))
    failure = rule.shard_matches(table, _Ref("s"), unread).failure
    assert failure.error_class == "SeedUnreadable" and "s07" in failure.message
    within = fn.extract_output(fn.add_input(fn.create_accumulator(), views[:1]))
    assert [m.entry for _, m in rule.shard_matches(table, _Ref("x"), within).rows] == ["s/a"]
