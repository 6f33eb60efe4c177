"""Pillow's LANCZOS downscale of 8-bit grayscale images, for a whole stack at once, bit for bit.

pHash and dHash read a 32×32 / 9×8 LANCZOS resize of the grayscale image (imagehash calls Pillow).
Per call Pillow spends most of its ~45 µs (64 px input) setting up filter coefficients; here the
coefficients are computed once per (input size, output size) and applied to a batch of same-sized
images as two matrix products, ~3× faster. It reproduces Pillow's Resample.c exactly: the same
double-precision coefficients normalised to 22-bit fixed point, the horizontal pass first, each
pass rounded and clipped to uint8. Float64 products are exact here (|sum| < 2**31 ≪ 2**53), so the
result is identical to Pillow's integer arithmetic; a test compares it with the installed Pillow on
random, smooth and binary images of many sizes. Used only for small inputs (the fast decode path's
drafts), where dense products beat Pillow's per-call set-up.

Real photos rarely share a shape, so a "batch" of same-sized images is usually one image and the
products pay their set-up per image. ``resize_many`` therefore resizes each image on its own in
compiled code (``_pdqext.lanczos``: the same coefficients, each output reading only its band of
non-zero taps; integer-exact, so bit-identical to ``resize_batch``), whatever the shapes; without the
extension it falls back to ``resize_batch`` per shape. The coefficients themselves come from
compiled code too (``_pdqext.block_weights``: Pillow's own double operations, so its exact integers;
for real photos, whose shapes rarely repeat, computing them in numpy was a third of the hash stage).
"""
from __future__ import annotations

import functools
import math

import numpy as np

PRECISION_BITS = 22  # Pillow: 32 - 8 (uint8 values) - 2 (headroom for coefficients above 1)
MAX_SIDE = 256  # larger inputs go to Pillow itself: the dense product grows with the input size


def _lanczos(x: float) -> float:
    # Pillow's lanczos_filter: sinc(x) * sinc(x / 3) on [-3, 3), evaluated in the same order
    if -3.0 <= x < 3.0:
        a = 1.0 if x == 0.0 else math.sin(x * math.pi) / (x * math.pi)
        y = x / 3
        b = 1.0 if y == 0.0 else math.sin(y * math.pi) / (y * math.pi)
        return a * b
    return 0.0


@functools.lru_cache(maxsize=512)
def coefficients(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) float64 matrix of Pillow's fixed-point LANCZOS weights (precompute_coeffs
    followed by normalize_coeffs_8bpc, for the whole-image box); compiled where built (block 1)."""
    kernel = _compiled_weights()
    if kernel is not None:
        m = np.frombuffer(kernel(in_size, 1, out_size), np.float64).reshape(out_size, in_size)
        m.setflags(write=False)
        return m
    return coefficients_reference(in_size, out_size)


def coefficients_reference(in_size: int, out_size: int) -> np.ndarray:
    """``coefficients`` in Python, tap by tap in Pillow's order: the fallback, and the tests' oracle."""
    scale = float(in_size) / out_size
    filterscale = max(scale, 1.0)
    support = 3.0 * filterscale
    m = np.zeros((out_size, in_size))
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        k = [_lanczos((x + xmin - center + 0.5) * (1.0 / filterscale)) for x in range(xmax)]
        ww = 0.0
        for w in k:  # summed in order, as Pillow does
            ww += w
        for x, w in enumerate(k):
            w = w / ww if ww != 0.0 else w
            m[xx, xmin + x] = int(-0.5 + w * (1 << PRECISION_BITS)) if w < 0 else int(0.5 + w * (1 << PRECISION_BITS))
    m.setflags(write=False)  # cached and shared between threads
    return m


def _weights_vectorised(in_size: int, out_size: int) -> np.ndarray:
    """``coefficients`` in numpy: the same formula and fixed-point rounding, evaluated for all taps
    at once (~100× faster for large inputs; numpy's sin may differ in the last bit, so it serves only
    the block path where the extension is not built; measured equal to ``coefficients_reference`` for
    every input size up to 1,199 and outputs 32, 9 and 8). Only each output's band of taps is
    evaluated (the filter's support: ~6 × the scale of the whole row), then placed in the matrix."""
    scale = float(in_size) / out_size
    filterscale = max(scale, 1.0)
    support = 3.0 * filterscale
    center = (np.arange(out_size) + 0.5) * scale
    xmin = np.maximum((center - support + 0.5).astype(np.int64), 0)
    xmax = np.minimum((center + support + 0.5).astype(np.int64), in_size)
    x = xmin[:, None] + np.arange(max(int((xmax - xmin).max()), 1))[None, :]  # each row's band
    inside = x < xmax[:, None]
    t = (x - center[:, None] + 0.5) / filterscale
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(t == 0.0, 1.0, np.sin(t * math.pi) / (t * math.pi))
        b = np.where(t == 0.0, 1.0, np.sin(t / 3 * math.pi) / (t / 3 * math.pi))
    k = np.where(inside & (t >= -3.0) & (t < 3.0), a * b, 0.0)
    ww = k.sum(axis=1, keepdims=True)
    w = np.where(ww != 0.0, k / np.where(ww != 0.0, ww, 1.0), k) * (1 << PRECISION_BITS)
    w = np.where(w < 0, np.trunc(w - 0.5), np.trunc(w + 0.5))
    m = np.zeros((out_size, in_size))
    rows = np.broadcast_to(np.arange(out_size)[:, None], x.shape)
    m[rows[inside], x[inside]] = w[inside]
    return m


@functools.lru_cache(maxsize=1024)
def block_coefficients(full: int, block: int, out_size: int) -> np.ndarray:
    """(out_size, ceil(full / block)) weights for an image whose pixels stand for blocks of
    ``block`` full-resolution pixels (a JPEG draft decoded with DCT scaling 1/block, or an
    ``Image.reduce(block)``): Pillow's full-resolution LANCZOS weights summed over each block.

    The fast decode path keeps pHash/dHash close to the exact ones this way: a 64-px draft resized
    with the 64-px LANCZOS weights filters differently from the exact full-image resize (pHash up
    to 10 bits off on real photos), with the summed weights the difference is only what varies
    inside a block (benchmarks/bench_fast_accuracy.py). For an image that is constant on blocks the
    result equals Pillow's resize of the full image bit for bit (same integer sums; tested).
    """
    if block == 1:
        return coefficients(full, out_size)
    kernel = _compiled_weights()
    if kernel is not None:  # Pillow's exact integers, summed: ~3× faster than numpy, and exact
        m = np.frombuffer(kernel(full, block, out_size), np.float64).reshape(out_size, -1)
    else:
        m = np.add.reduceat(_weights_vectorised(full, out_size), np.arange(0, full, block), axis=1)
    m.setflags(write=False)
    return m


def _compiled_weights():
    """``_pdqext.block_weights`` (Pillow's precompute_coeffs in C: the same doubles, so the same
    integers as ``coefficients``; tested), or None where the extension is not built."""
    return _extension("block_weights")


def _extension(name: str):
    """A function of the compiled extension, or None where it is not built (numpy serves then)."""
    try:
        from shardguard.indexes import _pdqext
    except ImportError:
        return None
    return getattr(_pdqext, name, None)


_SCALE = 1.0 / (1 << PRECISION_BITS)  # a power of two: multiplying by it is exact, like the shift
_HALF = float(1 << (PRECISION_BITS - 1))


def _clip8(acc: np.ndarray) -> np.ndarray:
    # Pillow: (acc + 2**21) >> 22, clamped to 0..255 (an arithmetic shift is a floor division);
    # in place, since the products are temporaries
    acc += _HALF
    acc *= _SCALE
    np.floor(acc, out=acc)
    return np.clip(acc, 0, 255, out=acc)


def compiled():
    """The compiled per-image resize (``_pdqext.lanczos``), or None where the extension is not built."""
    return _extension("lanczos")


def _checked(shape: tuple[int, int], out_w: int, out_h: int, full, block: int):
    h, w = shape
    fw, fh = full if block > 1 else (w, h)
    cw, ch = block_coefficients(fw, block, out_w), block_coefficients(fh, block, out_h)
    if cw.shape[1] != w or ch.shape[1] != h:
        raise ValueError(f"{w}x{h} is not {fw}x{fh} reduced by {block}")
    return cw, ch


def resize_many(grays: list[np.ndarray], out_w: int, out_h: int, full: tuple[int, int] | None = None,
                block: int = 1) -> np.ndarray:
    """``resize_batch`` of same-shaped images given as a list: compiled, one image at a time, when
    the extension is built (no per-batch set-up to amortise), else one batched product."""
    kernel = compiled()
    if kernel is None:
        return resize_batch(np.stack(grays), out_w, out_h, full, block)
    cw, ch = _checked(grays[0].shape, out_w, out_h, full, block)
    h, w = grays[0].shape
    do_x, do_y = out_w != w or block > 1, out_h != h or block > 1
    out = np.empty((len(grays), out_h if do_y else h, out_w if do_x else w), np.uint8)
    for i, g in enumerate(grays):
        out[i] = np.frombuffer(kernel(np.ascontiguousarray(g), h, w, cw, ch, out_w, out_h, do_x, do_y),
                               np.uint8).reshape(out.shape[1:])
    return out


def resize_batch(stack: np.ndarray, out_w: int, out_h: int, full: tuple[int, int] | None = None,
                 block: int = 1) -> np.ndarray:
    """``(N, H, W)`` uint8 → ``(N, out_h, out_w)`` uint8, equal to Pillow's
    ``Image.fromarray(a).resize((out_w, out_h), LANCZOS)`` for each image. With ``block`` > 1 the
    images are reductions of ``full`` = (width, height) images by ``block`` and are resized with
    ``block_coefficients`` (approximating Pillow's resize of the full images)."""
    n, h, w = stack.shape
    cw, ch = _checked((h, w), out_w, out_h, full, block)
    x = stack.astype(np.float64)
    # Each pass is one 2-D product over the whole stack: numpy's stacked (3-D) matmul loops over
    # the images one small product at a time, ~5× slower for 64-px drafts (measured).
    if out_w != w or block > 1:
        x = _clip8((x.reshape(n * h, w) @ cw.T).reshape(n, h, out_w))
    if out_h != h or block > 1:
        cols = np.ascontiguousarray(x.transpose(0, 2, 1)).reshape(-1, h)  # (n·width, h)
        x = _clip8((cols @ ch.T).reshape(n, x.shape[2], out_h)).transpose(0, 2, 1)
    return x.astype(np.uint8)
