"""CLIP embeddings (tiny seeded model), concept indexes and kNN expansion, end to end."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, run_scan
from helpers import assert_bytes_nowhere, tree_bytes

from shardguard.indexes.models import ModelError, build_model, parse_spec
from shardguard.pipelines.cli import main as cli
from shardguard.pipelines.sample_data import encode, make_image, shard_rows, variants, write_shard

TINY = str(ROOT / "configs" / "models" / "tiny-clip.json")


@pytest.fixture(scope="module")
def clip_data(tmp_path_factory):
    """Two shards: exemplar/seed originals' copies spread across them, plus unrelated images."""
    d = tmp_path_factory.mktemp("clip")
    originals = [make_image(500 + i) for i in range(3)]
    ex = d / "exemplars" / "bad-thing"
    ex.mkdir(parents=True)
    for i, img in enumerate(originals[:2]):
        (ex / f"{i}.jpg").write_bytes(encode(img))
    # shard a: exact copies of exemplar 0 and of the seed original (2); shard b: re-encodings
    a = [("exact copy of exemplar 0", encode(originals[0]), "success"),
         ("seed: exact copy of original 2", encode(originals[2]), "success")]
    b = [("re-encoded exemplar 1", variants(originals[1])["recompressed"], "success"),
         ("re-encoded seed neighbour", variants(originals[2])["recompressed"], "success")]
    a += [(f"unrelated {i}", encode(make_image(900 + i)), "success") for i in range(12)]
    b += [(f"unrelated {i}", encode(make_image(950 + i)), "success") for i in range(12)]
    write_shard(str(d / "in" / "a.parquet"), shard_rows(a, "a"))
    write_shard(str(d / "in" / "b.parquet"), shard_rows(b, "b"))
    (d / "seed_md5.txt").write_text(__import__("hashlib").md5(encode(originals[2])).hexdigest() + "\n")
    return d


def _scan(d, out, *extra):
    return run_scan(["--input", str(d / "in" / "*.parquet"), "--output", str(out),
                     "--clip-model", TINY, "--batch-size", "8", *extra])


def test_embeddings_normalised_deterministic_and_runner_independent(clip_data, tmp_path):
    assert _scan(clip_data, tmp_path / "r1", "--features-only") == 0
    assert _scan(clip_data, tmp_path / "r2", "--features-only", "--direct_running_mode=multi_processing",
                 "--direct_num_workers=2") == 0
    t = pq.read_table(tmp_path / "r1" / "features" / "a.parquet")
    emb = np.array(t.column("embedding").to_pylist(), dtype=np.float32)
    assert emb.shape == (14, 32)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=2e-3)
    assert all(-1 <= s <= 1 for s in t.column("clip_score").to_pylist())
    a, b = tree_bytes(tmp_path / "r1"), tree_bytes(tmp_path / "r2")
    assert a == b  # bit-identical features (fixed-shape batches), whatever the runner's batching
    m = json.loads((tmp_path / "r1" / "manifest.json").read_text())
    assert m["features"]["model"]["random_weights"] is True and len(m["features"]["model"]["weights_sha256"]) == 64


def test_exemplar_concept_flags_copies_not_unrelated(clip_data, tmp_path, capsys):
    idx = tmp_path / "concept"
    assert cli(["concepts", "build", "--model", TINY, "--exemplars", str(clip_data / "exemplars"),
                "--threshold", "0.98", "--action", "quarantine", "--output", str(idx)]) == 0
    assert _scan(clip_data, tmp_path / "out", "--concepts", str(idx)) == 0
    review = {r["key"]: r for p in (tmp_path / "out" / "review").glob("*.parquet")
              for r in pq.read_table(p).to_pylist()}
    captions = {r["key"]: r["caption"] for p in (clip_data / "in").glob("*.parquet")
                for r in pq.read_table(p, columns=["key", "caption"]).to_pylist()}
    flagged = {captions[k] for k in review}
    assert flagged == {"exact copy of exemplar 0", "re-encoded exemplar 1"}
    assert all(r["reasons"] == ["concept:bad-thing"] and r["matches"][0]["kind"] == "concept" for r in review.values())
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m["totals"]["reasons"] == {"concept:bad-thing": 2} and m["totals"]["counts"]["quarantined"] == 2


def test_knn_expansion_flags_cross_shard_neighbour_of_seed(clip_data, tmp_path):
    out = tmp_path / "out"
    assert _scan(clip_data, out, "--hash-list", f"md5={clip_data / 'seed_md5.txt'}",
                 "--expand-threshold", "0.98", "--robust", "off") == 0  # the CLIP expansion alone
    removed = pq.read_table(out / "removed" / "a.parquet").to_pylist()
    assert [r["reasons"] for r in removed] == [["hashlist:seed_md5"]]
    review = pq.read_table(out / "review" / "b.parquet").to_pylist()
    assert len(review) == 1 and review[0]["reasons"] == ["neighbor-of-known-bad"]
    (m,) = review[0]["matches"]
    assert m["entry"] == f"a/{removed[0]['key']}" and m["distance"] >= 0.98
    assert pq.read_table(out / "review" / "a.parquet").num_rows == 0
    originals = [r["jpg"] for p in (clip_data / "in").glob("*.parquet") for r in pq.read_table(p).to_pylist()
                 if r["key"] in {removed[0]["key"], review[0]["key"]}]
    assert_bytes_nowhere(out, originals)


def test_resumed_run_with_expansion_equals_the_uninterrupted_run(clip_data, tmp_path):
    """Seeds in a shard that is already done are still seeds on resume (expansion sees every shard's
    features, done or not): the resumed tree is byte for byte the uninterrupted one."""
    seeds = ["--hash-list", f"md5={clip_data / 'seed_md5.txt'}", "--expand-threshold", "0.98"]
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    assert _scan(clip_data, full, *seeds) == 0
    assert _scan(clip_data, resumed, *seeds) == 0
    # "interrupt" the run after shard a (the seed's) finished and before shard b (the neighbour's) did
    for p in resumed.rglob("b.*"):
        if p.parent.name != "in":
            p.unlink()
    assert _scan(clip_data, resumed, *seeds) == 0
    assert pq.read_table(resumed / "review" / "b.parquet").num_rows == 1  # the neighbour is found again
    assert tree_bytes(resumed) == tree_bytes(full)


def test_index_for_another_model_is_refused(clip_data, tmp_path, capsys):
    idx = tmp_path / "c"
    vecs = np.random.default_rng(0).normal(size=(3, 16)).astype(np.float32)
    np.save(tmp_path / "v.npy", vecs)
    assert cli(["concepts", "build", "--model", TINY, "--embeddings", str(tmp_path / "v.npy"), "--name", "x",
                "--threshold", "0.5", "--output", str(idx)]) == 0
    capsys.readouterr()
    assert _scan(clip_data, tmp_path / "o", "--concepts", str(idx)) == 2
    assert "built for 16-d embeddings" in capsys.readouterr().err
    other = tmp_path / "other.json"
    cfg = json.loads(Path(TINY).read_text())
    cfg["shardguard"]["seed"] = 99
    other.write_text(json.dumps(cfg))
    idx2 = tmp_path / "c2"
    np.save(tmp_path / "v32.npy", np.ones((1, 32), np.float32))
    assert cli(["concepts", "build", "--model", str(other), "--embeddings", str(tmp_path / "v32.npy"),
                "--name", "x", "--threshold", "0.5", "--output", str(idx2)]) == 0
    capsys.readouterr()
    assert _scan(clip_data, tmp_path / "o2", "--concepts", str(idx2)) == 2
    assert "built with model" in capsys.readouterr().err


def test_bad_checkpoints_give_clear_errors(tmp_path):
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ModelError, match="could not be read as a checkpoint"):
        build_model(parse_spec(f"ViT-B-32@{bad}"))
    import torch

    pt = tmp_path / "w.pt"
    torch.save({"foo": torch.zeros(2)}, pt)
    cfg = json.loads(Path(TINY).read_text())
    cfg["shardguard"] = {"weights": str(pt)}
    spec = tmp_path / "m.json"
    spec.write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="do not fit"):
        build_model(parse_spec(str(spec)))
    with pytest.raises(ModelError, match="does not exist"):
        build_model(parse_spec(f"ViT-B-32@{tmp_path / 'missing.pt'}"))


def test_pickled_checkpoint_is_not_executed(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (Path.write_text, (tmp_path / "pwned", "x"))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"w": Evil()}))
    with pytest.raises(ModelError):
        build_model(parse_spec(f"ViT-B-32@{evil}"))
    assert not (tmp_path / "pwned").exists()


def test_weights_from_local_safetensors_are_fingerprinted(tmp_path):
    from safetensors.torch import save_file

    from shardguard.indexes.models import describe

    model, *_ = build_model(parse_spec(TINY))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    cfg = json.loads(Path(TINY).read_text())
    cfg["shardguard"] = {"weights": "w.safetensors"}
    (tmp_path / "m.json").write_text(json.dumps(cfg))
    spec = parse_spec(str(tmp_path / "m.json"))
    m2, *_ = build_model(spec)
    info = describe(spec, m2)
    assert info["random_weights"] is False
    assert info["weights_sha256"] == describe(parse_spec(TINY), model)["weights_sha256"]


def test_prompt_concepts_build_and_tag_scores(clip_data, tmp_path, capsys):
    (tmp_path / "c.yaml").write_text(
        "concepts:\n  - name: weapons\n    prompts: [a photo of a gun, a rifle]\n    threshold: 0.01\n"
        "    action: tag\n  - name: never\n    prompts: [x]\n    threshold: 1.0\n    action: remove\n")
    assert cli(["concepts", "build", "--model", TINY, "--prompts", str(tmp_path / "c.yaml"),
                "--output", str(tmp_path / "idx")]) == 0
    sc = json.loads((tmp_path / "idx" / "sidecar.json").read_text())
    assert [c["vectors"] for c in sc["concepts"]] == [2, 1] and sc["dim"] == 32
    capsys.readouterr()
    assert _scan(clip_data, tmp_path / "out", "--concepts", str(tmp_path / "idx")) == 0
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    # tag: rows scoring >= 0.01 are recorded (tagged/, counts, reasons), none is removed; nothing reaches 1.0
    assert m["totals"]["counts"]["kept"] == 28 and m["totals"]["counts"]["removed"] == 0
    tagged = [r for p in (tmp_path / "out" / "tagged").glob("*.parquet") for r in pq.read_table(p).to_pylist()]
    assert tagged and m["totals"]["counts"]["tagged"] == len(tagged) == m["totals"]["tags"]["concept:weapons"]
    assert all(r["verdict"] == "keep" and r["reasons"] == ["concept:weapons"] and
               r["matches"][0]["distance"] >= 0.01 for r in tagged)


def test_bad_prompt_file_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("concepts:\n  - name: x\n")
    assert cli(["concepts", "build", "--model", TINY, "--prompts", str(tmp_path / "c.yaml"),
                "--output", str(tmp_path / "idx")]) == 2
    assert "needs 'name' and a non-empty 'prompts'" in capsys.readouterr().err


def test_reused_staging_buffer_changes_no_embedding():
    """Each thread reuses one batch buffer: a row's embedding is the same whatever was staged
    before it (padding re-zeroed), alone or among others, and from two threads at once."""
    from concurrent.futures import ThreadPoolExecutor

    from shardguard.transforms.embed import LoadedClip

    model = LoadedClip(parse_spec(TINY), "cpu", 4)
    rng = np.random.default_rng(5)
    px = [rng.integers(0, 256, (model.size, model.size, 3), dtype=np.uint8) for _ in range(11)]
    fresh = np.stack([LoadedClip(parse_spec(TINY), "cpu", 4).encode_images([p])[0] for p in px])
    assert np.array_equal(model.encode_images(px), fresh)  # 3 chunks, the last one padded
    assert np.array_equal(model.encode_images(px[9:]), fresh[9:])  # a short batch after a full one
    assert model._staging() is model._staging()  # one buffer per thread, kept
    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(lambda i: model.encode_images(px[i:i + 5]), [0, 6] * 4))
    for i, g in zip([0, 6] * 4, got):
        assert np.array_equal(g, fresh[i:i + 5])
