"""CLIP model specs: parse, load (offline-safe, no pickle execution), and fingerprint.

A spec is one of:

* ``NAME:TAG``        an open_clip architecture with a pretrained tag (``ViT-B-32:laion2b_s34b_b79k``),
                      loaded the way open_clip does (its cache, or the hub when reachable);
* ``NAME@PATH``       an open_clip architecture with local weights (``.safetensors``, or a torch file
                      read with ``weights_only=True``);
* ``PATH.json``       a local open_clip model config; with ``"shardguard": {"weights": FILE}`` it loads
                      those weights, with ``{"seed": N, "random_weights": true}`` it is seeded random;
* ``NAME``            an open_clip architecture with seeded random weights (benchmarks only).

The fingerprint is the sha256 of the loaded state dict (names, dtypes, shapes, bytes), so it says
which weights were actually used, whatever file they came from.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass


class ModelError(ValueError):
    """A model spec that cannot be parsed or loaded; the message says which and why."""


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec."""

    raw: str
    arch: str | None = None
    pretrained: str | None = None
    weights: str | None = None
    config_path: str | None = None
    config_json: str | None = None  # the config's content, read at launch so workers need no file
    seed: int = 0
    pinned_sha256: str | None = None  # weights every loader must find (set at launch)

    @property
    def random_weights(self) -> bool:
        """True when no trained weights are loaded: embeddings mean nothing."""
        return not (self.pretrained or self.weights)


def parse_spec(spec: str) -> ModelSpec:
    """Parse a model spec string (see module doc)."""
    s = spec.strip()
    if not s:
        raise ModelError("empty model spec")
    if s.endswith(".json"):
        from shardguard.indexes import fileio

        try:
            text = fileio.read_bytes(s).decode("utf-8")
            cfg = json.loads(text)
        except (OSError, ValueError) as exc:
            raise ModelError(f"model config {s}: {exc}") from None
        extra = cfg.get("shardguard", {})
        weights = extra.get("weights")
        if weights and "://" not in weights and not os.path.isabs(weights):
            weights = os.path.join(os.path.dirname(s), weights)
        return ModelSpec(raw=s, config_path=s, config_json=text, weights=weights,
                         seed=int(extra.get("seed", 0)))
    if "@" in s:
        arch, path = s.split("@", 1)
        return ModelSpec(raw=s, arch=arch, weights=path)
    if ":" in s:
        arch, tag = s.split(":", 1)
        return ModelSpec(raw=s, arch=arch, pretrained=tag)
    return ModelSpec(raw=s, arch=s)


def _read_state_dict(path: str) -> dict:
    import io

    import torch

    from shardguard.indexes import fileio

    if not fileio.exists(path):
        raise ModelError(f"weights file {path} does not exist")
    try:
        data = fileio.read_bytes(path)
        if path.endswith(".safetensors"):
            from safetensors.torch import load as load_safetensors

            state = load_safetensors(data)
        else:
            # weights_only: a checkpoint can never run code while loading
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every loader failure becomes one clear message
        raise ModelError(f"weights file {path} could not be read as a checkpoint: "
                         f"{type(exc).__name__}: {str(exc)[:200]}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
        raise ModelError(f"weights file {path} is not a state dict of tensors")
    return {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}


def state_fingerprint(model) -> str:
    """sha256 over the model's state dict in key order: names, dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(-1).view(__import__("torch").uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


HUB = ("huggingface.co", 443)


def _reachable(host: str, port: int, timeout: float = 3.0) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _create(oc, spec: ModelSpec):
    """open_clip's model, from its local cache when there; otherwise from the hub, but only after a
    3-second reachability check: offline, the hub client would retry for about a minute first."""
    if not spec.pretrained:
        return oc.create_model(spec.arch)
    import logging

    import huggingface_hub.constants as hfc

    saved = hfc.HF_HUB_OFFLINE
    hfc.HF_HUB_OFFLINE = True  # cache only (the client reads this flag at call time)
    logging.disable(logging.ERROR)  # open_clip logs a cache miss as an error; it is not one yet (launcher only)
    try:
        return oc.create_model(spec.arch, pretrained=spec.pretrained)
    except Exception:  # noqa: BLE001 - not cached (or not loadable): try the hub below, if it can be reached
        pass
    finally:
        hfc.HF_HUB_OFFLINE = saved
        logging.disable(logging.NOTSET)
    if not _reachable(*HUB):
        raise ModelError(f"model {spec.raw}: not in the local model cache, and the model hub cannot be reached; "
                         "fetch it on a connected machine (open_clip caches it under ~/.cache/huggingface) "
                         "or give local weights as NAME@FILE.safetensors")
    try:
        return oc.create_model(spec.arch, pretrained=spec.pretrained)
    except Exception as exc:  # noqa: BLE001 - one clear line, whatever the hub client raised
        raise ModelError(f"model {spec.raw}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None


def build_model(spec: ModelSpec):
    """(model in eval mode on CPU, image_size, mean, std, tokenizer) for a spec."""
    import torch

    from shardguard.indexes.torch_compat import import_open_clip

    oc = import_open_clip()
    # Seeded construction on a private generator state: deterministic random weights, and the
    # process-global RNG is restored afterwards.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        if spec.config_json:
            cfg = {k: v for k, v in json.loads(spec.config_json).items()
                   if not k.startswith("_") and k != "shardguard"}
            try:
                model = oc.CLIP(**cfg)
            except TypeError as exc:
                raise ModelError(f"model config {spec.config_path}: {exc}") from None
            tokenizer = oc.tokenizer.SimpleTokenizer(context_length=cfg["text_cfg"].get("context_length", 77))
        else:
            model = _create(oc, spec)
            tokenizer = oc.get_tokenizer(spec.arch)
    if spec.weights:
        state = _read_state_dict(spec.weights)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ModelError(f"weights {spec.weights} do not fit {spec.raw}: missing {list(missing)[:3]}, "
                             f"unexpected {list(unexpected)[:3]}")
    model.eval()
    visual = model.visual
    size = visual.image_size[0] if isinstance(visual.image_size, (tuple, list)) else visual.image_size
    mean = getattr(visual, "image_mean", None) or oc.OPENAI_DATASET_MEAN
    std = getattr(visual, "image_std", None) or oc.OPENAI_DATASET_STD
    return model, int(size), tuple(mean), tuple(std), tokenizer


def check_pin(spec: ModelSpec, weights_sha256: str) -> None:
    """Refuse weights other than the pinned ones (a hub tag that moved, a replaced file)."""
    if spec.pinned_sha256 and weights_sha256 != spec.pinned_sha256:
        raise ModelError(f"model {spec.raw}: loaded weights have sha256 {weights_sha256[:16]}…, "
                         f"pinned {spec.pinned_sha256[:16]}…")


def describe(spec: ModelSpec, model) -> dict:
    """What the manifest records about the model."""
    return {"spec": spec.raw, "arch": spec.arch, "pretrained": spec.pretrained, "weights_file": spec.weights,
            "config": spec.config_path, "random_weights": spec.random_weights,
            "weights_sha256": state_fingerprint(model),
            "embed_dim": int(model.text_projection.shape[1]) if hasattr(model, "text_projection") else None}
