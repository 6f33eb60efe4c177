"""torchvision compatibility: make ``import torchvision`` (and so ``import open_clip``) work with a
CPU-only torch when the installed torchvision is a CUDA build.

Why: on these machines the only torchvision matching ``torch==2.13.0`` is a CUDA build. With CPU torch
its C extension does not load, so its custom ops are never defined, and torchvision's
``_meta_registrations`` then fails at import with ``operator torchvision::nms does not exist``
(``register_fake`` needs the op to exist). shardguard never calls those ops (open_clip only uses
torchvision's transforms), so defining the two op schemas without kernels is enough.

``import_torchvision()`` is a no-op wherever torchvision imports normally (CUDA workers, matching CPU
wheels): the schemas are defined only after a first import failed with exactly that error.
"""
from __future__ import annotations

import logging
import sys

_LOG = logging.getLogger(__name__)
_SCHEMAS = {
    "nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}


def _purge() -> None:
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]


def import_torchvision():
    """Import and return torchvision, applying the op-schema workaround only when needed."""
    try:
        import torchvision

        return torchvision
    except RuntimeError as exc:
        if "torchvision::" not in str(exc) or "does not exist" not in str(exc):
            raise
    import torch

    _purge()
    for name, schema in _SCHEMAS.items():
        if not _op_exists(name):
            torch.library.define(f"torchvision::{name}", schema)
    _LOG.info("torchvision C extension not loadable with this torch; defined op schemas so it imports "
              "(detection ops unavailable, not used by shardguard)")
    import torchvision

    return torchvision


def _op_exists(name: str) -> bool:
    import torch

    try:
        getattr(torch.ops.torchvision, name)
        return True
    except (AttributeError, RuntimeError):
        return False


def import_open_clip():
    """Import open_clip after making sure torchvision imports."""
    import_torchvision()
    import open_clip

    return open_clip
