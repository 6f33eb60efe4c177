"""Embeddings users already have, in clip-retrieval's layout (``img_emb/img_emb_N.npy`` row-aligned
with ``metadata/metadata_N.parquet``): joined by key, checked, and used by concepts, expansion and
re-filters exactly as computed embeddings are."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_scan

from shardguard.pipelines.cli import main as cli
from shardguard.pipelines.refilter import run as refilter
from shardguard.pipelines.sample_data import encode, make_image, shard_rows, write_shard

DIM = 16


def _unit(rng, n):
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    """Two shards of 8 rows; row a/k0 is known bad (md5), b/k3 sits next to it in embedding space."""
    d = tmp_path_factory.mktemp("emb")
    rng = np.random.default_rng(5)
    keys, images = [], {}
    for s in "ab":
        items = [(f"{s}-{i}", encode(make_image(ord(s) * 100 + i)), "success") for i in range(8)]
        rows = shard_rows(items, s)
        write_shard(str(d / "in" / f"{s}.parquet"), rows)
        keys += [r["key"] for r in rows]
        images.update({r["key"]: r["jpg"] for r in rows})
    vecs = _unit(rng, len(keys))
    seed, near = keys.index(keys[0]), keys.index(keys[8 + 3])
    vecs[near] = vecs[seed] + 0.01 * _unit(rng, 1)[0]
    vecs[near] /= np.linalg.norm(vecs[near])
    missing = keys[-1]  # no embedding supplied for this row
    order = [k for k in keys if k != missing][::-1]  # embedding files need not follow the shards
    (d / "img_emb").mkdir()
    (d / "metadata").mkdir()
    for n, part in enumerate((order[:9], order[9:])):
        np.save(d / "img_emb" / f"img_emb_{n}.npy", vecs[[keys.index(k) for k in part]].astype(np.float16))
        pq.write_table(pa.table({"key": part, "caption": ["x"] * len(part)}), d / "metadata" / f"metadata_{n}.parquet")
    (d / "seed.txt").write_text(hashlib.md5(images[keys[0]]).hexdigest() + "\n")
    np.save(d / "concept.npy", vecs[[keys.index(keys[5])]])
    return d, keys, vecs, missing


def _flags(d):
    return ["--input", str(d / "in" / "*.parquet"), "--quiet", "--embeddings", str(d / "img_emb" / "*.npy"),
            "--embeddings-metadata", str(d / "metadata" / "*.parquet"), "--embeddings-model", "laion-vit-b-32"]


def test_supplied_embeddings_drive_expansion_and_concepts(layout, tmp_path):
    d, keys, vecs, missing = layout
    assert cli(["concepts", "build", "--model", "supplied:laion-vit-b-32", "--embeddings", str(d / "concept.npy"),
                "--name", "c", "--threshold", "0.99", "--output", str(tmp_path / "idx")]) == 0
    out = tmp_path / "out"
    assert run_scan(_flags(d) + ["--output", str(out), "--hash-list", f"md5={d / 'seed.txt'}",
                                 "--expand-threshold", "0.98", "--concepts", str(tmp_path / "idx")]) == 0
    review = {r["key"]: r["reasons"] for p in (out / "review").glob("*.parquet") for r in pq.read_table(p).to_pylist()}
    assert review == {keys[11]: ["neighbor-of-known-bad"], keys[5]: ["concept:c"]}
    feats = pq.read_table(out / "features" / "a.parquet")
    got = np.array(feats.column("embedding").to_pylist(), np.float32)
    assert np.allclose(got[:8], vecs[:8].astype(np.float16).astype(np.float32))
    b = pq.read_table(out / "features" / "b.parquet").to_pylist()
    assert b[-1]["key"] == missing and b[-1]["error_class"] == "missing_embedding"
    m = json.loads((out / "manifest.json").read_text())
    assert m["features"]["model"]["spec"] == "supplied:laion-vit-b-32" and m["embeddings"]["dim"] == DIM
    assert cli(["manifest", "verify", str(out)]) == 0
    assert refilter(["--from", str(out), "--output", str(tmp_path / "re"), "--quiet", "--expand-threshold", "0.9"]) == 0


@pytest.mark.parametrize("damage, needle", [("rows", "7 vectors, but"), ("norm", "embedding norm"),
                                            ("dup", "has two embeddings")])
def test_bad_embedding_files_stop_the_run_naming_the_file(layout, tmp_path, damage, needle, capsys):
    import shutil

    d, keys, vecs, _ = layout
    bad = tmp_path / "d"
    shutil.copytree(d, bad)
    if damage == "rows":
        np.save(bad / "img_emb" / "img_emb_0.npy", np.load(bad / "img_emb" / "img_emb_0.npy")[:7])
    elif damage == "norm":
        v = np.load(bad / "img_emb" / "img_emb_0.npy")
        v[2] *= 3
        np.save(bad / "img_emb" / "img_emb_0.npy", v)
    else:
        t = pq.read_table(bad / "metadata" / "metadata_1.parquet")
        pq.write_table(t.set_column(0, "key", pa.array([keys[0]] + t.column("key").to_pylist()[1:])),
                       bad / "metadata" / "metadata_1.parquet")
    assert run_scan(_flags(bad) + ["--output", str(tmp_path / "o"), "--features-only"]) == 2
    err = capsys.readouterr().err
    assert needle in err and (damage == "dup" or "img_emb_" in err) and not (tmp_path / "o").exists()
