"""Seeded synthetic img2dataset-style shards and hash lists: the demo's data and the tests' fixtures.

Images are smooth random colour fields with shapes (structure at low frequencies, like photos), so
perceptual hashes survive resizing, re-encoding and brightness changes, and unrelated images are far
apart. ``build_sample`` writes shards that mix "known-bad" originals' variants, exact copies,
unrelated distractors, a failed download and corrupt bytes, plus lists made from the originals.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw, ImageEnhance

I2D_SCHEMA = pa.schema([
    ("key", pa.string()), ("url", pa.string()), ("caption", pa.string()), ("status", pa.string()),
    ("error_message", pa.string()), ("width", pa.int64()), ("height", pa.int64()),
    ("sha256", pa.string()), ("jpg", pa.binary()),
])


def photo_variants(paths, sides=(160, 256, 300, 384, 512, 700, 1024), qualities=(75, 92)) -> list[bytes]:
    """Real photos re-encoded as JPEG at several sizes (longest side) and qualities: a corpus with
    real textures for measuring how far fast-decode hashes stray (the smooth synthetic images above
    understate it). Deterministic for a given Pillow/libjpeg."""
    out = []
    for path in paths:
        img = Image.open(path).convert("RGB")
        for side in sides:
            w, h = img.size
            s = side / max(w, h)
            v = img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS)
            for q in qualities:
                out.append(encode(v, quality=q))
    return out


def make_image(seed: int, size: int = 256) -> Image.Image:
    """A deterministic RGB test image: an upsampled random colour field with a few shapes."""
    rng = np.random.default_rng(seed)
    field = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    img = Image.fromarray(field, "RGB").resize((size, size), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        x0, y0 = rng.integers(0, size * 3 // 4, 2)
        w, h = rng.integers(size // 8, size // 2, 2)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x0 + w, y0 + h], fill=colour)
    return img


def encode(img: Image.Image, fmt: str = "JPEG", quality: int = 90) -> bytes:
    """Image to bytes (JPEG quality, or lossless formats)."""
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buf.getvalue()


def variants(img: Image.Image) -> dict[str, bytes]:
    """Near-copies that perceptual hashes should still match."""
    w, h = img.size
    return {
        "resized": encode(img.resize((w * 3 // 4, h * 3 // 4), Image.Resampling.BILINEAR)),
        "recompressed": encode(img, quality=35),
        "brighter": encode(ImageEnhance.Brightness(img).enhance(1.15)),
        "png": encode(img, "PNG"),
    }


def shard_rows(items: list[tuple[str, bytes | None, str]], prefix: str) -> list[dict]:
    """img2dataset-like rows from (caption, image bytes or None, status)."""
    rows = []
    for i, (caption, data, status) in enumerate(items):
        rows.append({"key": f"{prefix}{i:04d}", "url": f"https://example.invalid/{prefix}{i:04d}.jpg",
                     "caption": caption, "status": status,
                     "error_message": None if status == "success" else "HTTP 404",
                     "width": 256 if data else None, "height": 256 if data else None,
                     "sha256": hashlib.sha256(data).hexdigest() if data else None, "jpg": data})
    return rows


def write_shard(path: str, rows: list[dict]) -> None:
    """Write rows with the img2dataset-like schema."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=I2D_SCHEMA), path)


def build_sample(out_dir: str, shards: int = 3, distractors_per_shard: int = 30, bad: int = 4,
                 seed: int = 7) -> dict:
    """Write ``out_dir/shards/*.parquet`` and ``out_dir/lists/*``; return what was planted."""
    originals = [make_image(seed * 1000 + i) for i in range(bad)]
    planted: dict = {"bad_keys": [], "distractor_keys": [], "error_keys": []}
    for s in range(shards):
        items: list[tuple[str, bytes | None, str]] = []
        kinds: list[str] = []
        for j in range(distractors_per_shard):
            items.append((f"a photo of thing {s}-{j}", encode(make_image(seed * 7919 + s * 1000 + j)), "success"))
            kinds.append("distractor")
        bad_img = originals[s % bad]
        for name, data in variants(bad_img).items():
            items.append((f"variant {name}", data, "success"))
            kinds.append("bad")
        items.append(("exact copy", encode(originals[(s + 1) % bad]), "success"))
        kinds.append("bad")
        items.append(("failed download", None, "failed_to_download"))
        kinds.append("error")
        items.append(("corrupt bytes", encode(bad_img)[:300], "success"))
        kinds.append("error")
        order = np.random.default_rng(seed + s).permutation(len(items))
        prefix = f"{s:05d}"
        rows = shard_rows([items[i] for i in order], prefix)
        for row, i in zip(rows, order):
            planted[{"bad": "bad_keys", "distractor": "distractor_keys", "error": "error_keys"}[kinds[i]]].append(row["key"])
        write_shard(os.path.join(out_dir, "shards", f"{prefix}.parquet"), rows)
    _write_lists(os.path.join(out_dir, "lists"), originals)
    return planted


def _write_lists(lists_dir: str, originals: list[Image.Image]) -> None:
    from shardguard.indexes import imagehashes

    os.makedirs(lists_dir, exist_ok=True)
    with open(os.path.join(lists_dir, "known-bad-pdq.csv"), "w") as f:  # ThreatExchange export style
        for i, img in enumerate(originals):
            f.write(f"{imagehashes.pdq(img)[0]},{9000 + i},2026-01-01T00:00:00+0000,sample_bad\n")
    with open(os.path.join(lists_dir, "known-bad-phash.txt"), "w") as f:  # typed format
        for img in originals:
            f.write(f"phash {imagehashes.phash(img.convert('L'))}\n")
    with open(os.path.join(lists_dir, "known-bad-md5.txt"), "w") as f:  # plain format
        f.write("# md5 of the exact-copy JPEG bytes\n")
        for img in originals:
            f.write(hashlib.md5(encode(img)).hexdigest() + "\n")


def main(argv=None) -> int:
    """``shardguard sample --output DIR``: write the sample dataset and print what was planted."""
    p = argparse.ArgumentParser(prog="shardguard sample")
    p.add_argument("--output", required=True)
    p.add_argument("--shards", type=int, default=3)
    p.add_argument("--rows", type=int, default=30, help="distractor rows per shard")
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args(argv)
    planted = build_sample(a.output, a.shards, a.rows, seed=a.seed)
    print(json.dumps({k: len(v) for k, v in planted.items()}))
    return 0


class serve_images:  # noqa: N801 - used like a function: `with serve_images(...)`
    """Context manager: serve ``{path: bytes}`` over HTTP on 127.0.0.1 (a free port) in a thread.

    Used by the img2dataset end-to-end test and benchmark. Unknown paths answer 404. The mapping
    may be changed while serving (to simulate content replaced after metadata was collected). The
    server is shut down and its socket closed on exit, whatever happened inside the block.
    """

    def __init__(self, images: dict[str, bytes]):
        self.images = images
        self._server = None

    def __enter__(self) -> "serve_images":
        import http.server
        import threading

        images = self.images

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the stdlib's name
                data = images.get(self.path)
                if data is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # quiet
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def url(self, path: str) -> str:
        """Absolute URL of ``path`` on this server."""
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
