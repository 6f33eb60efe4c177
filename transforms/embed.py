"""CLIP models on a device, fed fixed-shape batches (the features stage's ``ClipExtractor`` calls them).

Determinism: float matmuls give slightly different results for a row depending on the batch *shape*
(measured: ~4e-6, enough to flip float16 values), but not on its position or companions within a
batch of fixed shape. The handler therefore always runs the model on exactly ``batch_size`` rows,
padding the last chunk, so an embedding is bit-identical whatever batches the runner forms.

``embed_batch`` turns (pixels, caption) pairs into ``embedding`` (float16, L2-normalised) and
``clip_score`` (the image-caption cosine).
"""
from __future__ import annotations

import logging
import threading
from typing import Sequence

import numpy as np
from PIL import Image

from shardguard.indexes.models import ModelSpec, build_model, check_pin, describe

_LOG = logging.getLogger(__name__)


def clip_pixels(rgb: Image.Image, size: int) -> np.ndarray:
    """Resize the shorter side to ``size`` (bicubic) and centre-crop: open_clip's eval transform,
    as uint8 HWC (normalisation happens batched, on the model's device)."""
    w, h = rgb.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = rgb.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)


def pick_device(requested: str) -> str:
    """``auto`` → cuda when available, else cpu (with a log line saying so)."""
    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        _LOG.info("no CUDA device on this worker: CLIP runs on CPU")
        return "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"--device {requested} requested but no CUDA device is available")
    return requested


class LoadedClip:
    """A CLIP model on a device with its preprocessing constants and tokenizer."""

    def __init__(self, spec: ModelSpec, device: str, batch_size: int):
        import torch

        model, self.size, mean, std, self.tokenizer = build_model(spec)
        self.info = describe(spec, model)  # fingerprint of the weights as loaded, before any cast
        check_pin(spec, self.info["weights_sha256"])  # every worker loads what the launcher recorded
        self.device = pick_device(device)
        self.dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        self.model = model.to(self.device, dtype=self.dtype)
        self.batch_size = batch_size
        self.mean = torch.tensor(mean, device=self.device, dtype=self.dtype).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std, device=self.device, dtype=self.dtype).view(1, 3, 1, 1) * 255
        # one staging batch per calling thread (a shared model is called from several threads)
        self._local = threading.local()

    def _staging(self):
        """This thread's reusable uint8 batch buffer (pinned on CUDA). A fresh 38 MB batch per call
        (256 × 224² × 3) cost 8–175 ms of page faults plus a stack copy on the CPU VM, against
        ~2 ms to copy the rows into a reused buffer; pinning a fresh tensor per batch costs more."""
        import torch

        buf = getattr(self._local, "buf", None)
        if buf is None:
            buf = torch.empty((self.batch_size, self.size, self.size, 3), dtype=torch.uint8,
                              pin_memory=self.device.startswith("cuda"))
            self._local.buf = buf
        return buf

    def _chunks(self, n: int):
        for start in range(0, n, self.batch_size):
            yield start, min(n, start + self.batch_size)

    def encode_images(self, pixels: Sequence[np.ndarray]) -> np.ndarray:
        """L2-normalised float32 image embeddings for uint8 HWC arrays."""
        import torch

        out = []
        cuda = self.device.startswith("cuda")
        host = self._staging()
        rows = host.numpy()
        for a, b in self._chunks(len(pixels)):
            for i, p in enumerate(pixels[a:b]):
                rows[i] = p
            rows[b - a:] = 0  # padding: always the same rows, so every batch has one fixed content
            # uint8 over PCIe (4x less than float), from pinned memory so the copy is asynchronous;
            # the .cpu() below waits for it, so the buffer is free again for the next chunk
            x = host.to(self.device, non_blocking=cuda).permute(0, 3, 1, 2).to(self.dtype)
            with torch.inference_mode():
                emb = self.model.encode_image((x - self.mean) / self.std).float()
            out.append(torch.nn.functional.normalize(emb, dim=-1)[: b - a].cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 text embeddings."""
        import torch

        out = []
        for a, b in self._chunks(len(texts)):
            chunk = list(texts[a:b]) + [""] * (self.batch_size - (b - a))
            tokens = self.tokenizer(chunk).to(self.device)
            with torch.inference_mode():
                emb = self.model.encode_text(tokens).float()
            out.append(torch.nn.functional.normalize(emb, dim=-1)[: b - a].cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def embed_batch(model: LoadedClip, examples: Sequence[tuple[np.ndarray, str | None]]) -> list[dict]:
    """Embeddings (float16) and image-caption scores for a batch of (pixels, caption)."""
    img = model.encode_images([p for p, _ in examples])
    captioned = [i for i, (_, c) in enumerate(examples) if c]
    scores: list[float | None] = [None] * len(examples)
    if captioned:
        txt = model.encode_texts([examples[i][1] for i in captioned])
        for j, i in enumerate(captioned):
            # rounded to float32 here, as stored: a re-filter then compares the very same value
            scores[i] = float(np.float32(np.dot(img[i], txt[j])))
    return [{"embedding": img[i].astype(np.float16), "clip_score": scores[i]} for i in range(len(examples))]
