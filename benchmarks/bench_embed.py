"""Embedding stage vs. a plain open_clip loop on the same images, side by side.

Baseline ("plain loop"): decode with PIL, open_clip's own eval transform, batches of B through
``model.encode_image``, L2-normalise — the loop a researcher would write. shardguard: the features
stage under Beam (decode once, crop, RunInference with the keyed ClipModelHandler, fixed-shape
batches), hashes off so only embedding is measured. Also printed: the plain loop's split of time
between decode/preprocess and the model.

Run: ``.venv/bin/python benchmarks/bench_embed.py [--model SPEC] [--images N] [--batch B] [--device D]``
(default: the tiny test model and ViT-B-32 with random weights, on CPU).
"""
from __future__ import annotations

import argparse
import io
import sys
import time

import pyarrow.parquet as pq

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from common import ROOT, machine, shard_set, table  # noqa: E402


def load_images(n: int) -> list[bytes]:
    shards = shard_set(5000)
    out: list[bytes] = []
    for p in sorted(shards.glob("*.parquet")):
        out += pq.read_table(p, columns=["jpg"]).column(0).to_pylist()
        if len(out) >= n:
            break
    return out[:n]


def as_shards(images: list[bytes], per: int = 500) -> list[str]:
    """Write the images as shard files (what the scan reads), once per size."""
    from common import CACHE

    from shardguard.pipelines.sample_data import shard_rows, write_shard

    d = CACHE / f"embed-{len(images)}"
    paths = []
    for s, i in enumerate(range(0, len(images), per)):
        path = d / f"{s:05d}.parquet"
        if not path.exists():
            write_shard(str(path), shard_rows([("", b, "success") for b in images[i:i + per]], f"{s:05d}"))
        paths.append(str(path))
    return paths


def plain_loop(spec_str: str, images: list[bytes], batch: int, device: str) -> tuple[float, float, float]:
    """(total s, preprocess s, model s) of the plain open_clip loop."""
    import torch
    from PIL import Image

    from shardguard.indexes.models import build_model, parse_spec
    from shardguard.indexes.torch_compat import import_open_clip

    oc = import_open_clip()
    model, size, mean, std, _ = build_model(parse_spec(spec_str))
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    model = model.to(device, dtype=dtype)
    preprocess = oc.image_transform(size, is_train=False, mean=mean, std=std)
    t_pre = t_model = 0.0
    start = time.perf_counter()
    for i in range(0, len(images), batch):
        t0 = time.perf_counter()
        x = torch.stack([preprocess(Image.open(io.BytesIO(b)).convert("RGB")) for b in images[i:i + batch]])
        t1 = time.perf_counter()
        with torch.inference_mode():
            e = model.encode_image(x.to(device, dtype=dtype)).float()
            torch.nn.functional.normalize(e, dim=-1).cpu()
        t_pre, t_model = t_pre + t1 - t0, t_model + time.perf_counter() - t1
    return time.perf_counter() - start, t_pre, t_model


def beam_stage(spec_str: str, images: list[bytes], batch: int, device: str, extra: list[str]) -> float:
    """The features stage of a real scan (decode once, crop, embed in fixed-shape batches, write the
    features file) with the model, on the same images, wall seconds."""
    import tempfile

    from shardguard.pipelines.scan import run

    paths = as_shards(images)
    with tempfile.TemporaryDirectory() as out:
        inputs = [a for p in paths for a in ("--input", p)]
        start = time.perf_counter()
        rc = run([*inputs, "--output", f"{out}/run", "--clip-model", spec_str, "--device", device,
                  "--batch-size", str(batch), "--hashes", "md5", "--features-only", "--quiet", *extra])
        assert rc == 0
        return time.perf_counter() - start


def cpu_feed(images: list[bytes], size: int = 224, hashes: tuple = ()) -> float:
    """Images/s one thread turns into model-ready pixels the way the features stage does (decode
    once, JPEG draft to ≥ ``size``, resize + centre crop; ``hashes`` too), no model: how many CPU
    cores a GPU needs to be fed at a given rate."""
    from shardguard.transforms.features import compute_row_features, finish_batch

    start = time.perf_counter()
    for s in range(0, len(images), 64):
        done = [compute_row_features({"row": i, "key": str(i), "key_derived": False, "url": None,
                                      "caption": None, "status": "success", "image": b},
                                     hashes, 10**9, size, False, defer=True) for i, b in enumerate(images[s:s + 64], s)]
        finish_batch([r for r, _ in done])
        assert all(px is not None and px.shape == (size, size, 3) for _, px in done)
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append")
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    import logging
    logging.getLogger("shardguard").setLevel(logging.WARNING)
    models = a.model or [str(ROOT / "configs/models/tiny-clip.json"), "ViT-B-32"]
    images = load_images(a.images)
    rows = []
    for spec in models:
        total, pre, mod = plain_loop(spec, images, a.batch, a.device)
        n = len(images)
        rows.append((spec.split("/")[-1], "plain open_clip loop", f"{n / total:.0f}", "1.00x",
                     f"{100 * pre / total:.0f}% / {100 * mod / total:.0f}%"))
        for label, extra in (("beam stage, 1 worker", ["--direct_num_workers=1"]),
                             ("beam stage, default local runner", [])):
            t = beam_stage(spec, images, a.batch, a.device, extra)
            rows.append((spec.split("/")[-1], label, f"{n / t:.0f}", f"{total / t:.2f}x", ""))
    print(f"# embedding images/s, {a.images} images 384px JPEG, batch {a.batch}, device {a.device}; {machine()}")
    print(table(rows, ("model", "run", "img/s", "vs plain", "plain: preprocess / model")))
    for hashes in ((), ("md5", "phash", "dhash"), ("md5", "sha256", "phash", "dhash", "pdq")):
        rate = max(cpu_feed(images, 224, hashes) for _ in range(2))
        print(f"CPU feed, one thread, 224-px pixels{' + ' + ','.join(hashes) if hashes else ''}: {rate:.0f} img/s "
              f"-> {10_000 / rate:.1f} cores for 10,000 img/s")


if __name__ == "__main__":
    main()
