"""Build concept vectors from their three sources: text prompts (YAML), exemplar images (a folder
per concept), or given embeddings (``.npy``). Embedding uses the same model code and preprocessing
as the scan, so an exemplar concept matches the very images it was built from.
"""
from __future__ import annotations

import os

import numpy as np
import yaml

from shardguard.indexes import fileio
from shardguard.indexes.artifacts import ArtifactError
from shardguard.indexes.concepts import Concept

_IMAGE_EXT = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")


def _concept_fields(entry: dict, where: str, defaults: dict) -> tuple[float, str]:
    threshold = entry.get("threshold", defaults.get("threshold"))
    action = entry.get("action", defaults.get("action", "quarantine"))
    if not isinstance(threshold, (int, float)):
        raise ArtifactError(f"{where}: concept needs a numeric threshold (cosine)")
    return float(threshold), str(action)


def from_prompts(path: str, model) -> list[Concept]:
    """``concepts: [{name, prompts: [...], threshold, action}]`` → text-embedded concepts."""
    data = yaml.safe_load(fileio.read_bytes(path).decode("utf-8")) or {}
    entries = data.get("concepts")
    if not isinstance(entries, list) or not entries:
        raise ArtifactError(f"{path}: expected a 'concepts:' list")
    out = []
    for n, e in enumerate(entries, 1):
        where = f"{path}: concept #{n}"
        if not isinstance(e, dict) or not e.get("name") or not e.get("prompts"):
            raise ArtifactError(f"{where}: needs 'name' and a non-empty 'prompts' list")
        threshold, action = _concept_fields(e, where, data.get("defaults", {}))
        vecs = model.encode_texts([str(p) for p in e["prompts"]])
        out.append(Concept(e["name"], threshold, action, vecs, f"prompts:{len(e['prompts'])}"))
    return out


def from_exemplars(root: str, model, threshold: float, action: str) -> list[Concept]:
    """``root/<concept>/*.jpg`` → one concept per folder, one vector per decodable image."""
    from shardguard.transforms.decode import DecodeError, decode_image
    from shardguard.transforms.embed import clip_pixels

    if not os.path.isdir(root):
        raise ArtifactError(f"{root}: exemplar root must be a folder of per-concept folders")
    out = []
    for name in sorted(os.listdir(root)):
        folder = os.path.join(root, name)
        if not os.path.isdir(folder):
            continue
        pixels, skipped = [], 0
        for f in sorted(os.listdir(folder)):
            if not f.lower().endswith(_IMAGE_EXT):
                continue
            try:
                with open(os.path.join(folder, f), "rb") as fh:
                    pixels.append(clip_pixels(decode_image(fh.read()).rgb, model.size))
            except DecodeError:
                skipped += 1
        if not pixels:
            raise ArtifactError(f"{folder}: no decodable exemplar images")
        out.append(Concept(name, threshold, action, model.encode_images(pixels),
                           f"exemplars:{len(pixels)}" + (f" ({skipped} undecodable skipped)" if skipped else "")))
    if not out:
        raise ArtifactError(f"{root}: no concept folders")
    return out


def from_embeddings(path: str, name: str, threshold: float, action: str) -> list[Concept]:
    """A ``.npy`` (n, dim) array of embeddings → one concept (loaded without pickle)."""
    import io

    try:
        arr = np.load(io.BytesIO(fileio.read_bytes(path)), allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ArtifactError(f"{path}: not a plain .npy array: {exc}") from None
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.floating):
        raise ArtifactError(f"{path}: expected a float (n, dim) array, got {arr.dtype} {arr.shape}")
    arr = arr.astype(np.float32)
    return [Concept(name, threshold, action, arr / np.linalg.norm(arr, axis=1, keepdims=True).clip(1e-12),
                    f"embeddings:{len(arr)}")]
