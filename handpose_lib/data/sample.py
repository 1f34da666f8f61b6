"""The common sample structure every data source returns (procedural engine and loaders).

A sample is a plain ``dict`` (so ``torch.utils.data.default_collate`` batches it; :func:`collate`
batches samples whose optional keys differ):

=================  ===============  =====================================================
key                shape / type     meaning
=================  ===============  =====================================================
``image``          (3, H, W) f32    RGB in [0, 1] (the model normalises internally)
``joints2d``       (21, 2) f32      pixels in this image, canonical order
``joints3d``       (21, 3) f32      millimetres, camera frame of this image
``K``              (3, 3) f32       camera matrix of this image: ``uv ~ K @ xyz``
``visible``        (21,) bool       joint visible (True where unknown)
``visibility``     (21,) int64      reason code, see ``VIS_*`` (``VIS_UNKNOWN`` if unknown)
``hand_side``      str              ``"right"`` or ``"left"`` (of the returned image)
``meta``           dict             ``dataset`` (str), ``id`` (str), more per source
=================  ===============  =====================================================

Optional keys: ``mask`` (H, W) bool hand mask, ``depth`` (H, W) f32 mm,
``occlusion_fraction`` (float, fraction of the hand's pixels hidden by objects).

Pixel convention (everywhere in the library): continuous coordinates with the image
spanning ``[0, W] x [0, H]``; pixel ``(i, j)`` covers ``[i, i+1] x [j, j+1]`` and its centre
is ``(i + 0.5, j + 0.5)``. Data sets' camera matrices are used as published.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

VIS_UNKNOWN = -1
VIS_VISIBLE = 0
VIS_OBJECT = 1  # hidden by an object
VIS_SELF = 2  # hidden by the hand itself
VIS_OUTSIDE = 3  # outside the image
VIS_NAMES = {
    VIS_UNKNOWN: "unknown",
    VIS_VISIBLE: "visible",
    VIS_OBJECT: "hidden by object",
    VIS_SELF: "hidden by hand",
    VIS_OUTSIDE: "outside image",
}

REQUIRED_KEYS = ("image", "joints2d", "joints3d", "K", "visible", "visibility", "hand_side", "meta")


def make_sample(
    image,
    joints2d,
    joints3d,
    K,
    *,
    dataset: str,
    sample_id: str,
    visibility=None,
    hand_side: str = "right",
    **extra,
) -> dict:
    """Build a sample dict with the documented dtypes and shapes.

    ``image`` may be an (H, W, 3) uint8 numpy array (as read by opencv, already RGB) or a
    (3, H, W) float tensor in [0, 1]. ``visibility`` is an optional (21,) array of ``VIS_*``
    codes. Extra keyword arguments go into the sample (``mask``, ``depth``, ...); a ``meta``
    dict among them is merged into ``meta``.
    """
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image: expected (H, W, 3) RGB, got {image.shape}")
        img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        img = img.float() / 255.0 if image.dtype == np.uint8 else img.float()
    else:
        img = torch.as_tensor(image, dtype=torch.float32)
    if visibility is None:
        vis_code = torch.full((21,), VIS_UNKNOWN, dtype=torch.int64)
    else:
        vis_code = torch.as_tensor(np.asarray(visibility), dtype=torch.int64).reshape(21)
    meta = {"dataset": dataset, "id": str(sample_id)}
    meta.update(extra.pop("meta", {}))
    sample = {
        "image": img,
        "joints2d": torch.as_tensor(np.asarray(joints2d), dtype=torch.float32).reshape(21, 2),
        "joints3d": torch.as_tensor(np.asarray(joints3d), dtype=torch.float32).reshape(21, 3),
        "K": torch.as_tensor(np.asarray(K), dtype=torch.float32).reshape(3, 3),
        "visible": (vis_code == VIS_VISIBLE) | (vis_code == VIS_UNKNOWN),
        "visibility": vis_code,
        "hand_side": hand_side,
        "meta": meta,
    }
    sample.update(extra)
    return sample


def project(joints3d, K):
    """Pinhole projection ``uv = (K @ X)[:2] / (K @ X)[2]``: (..., N, 3) -> (..., N, 2).

    The library's one projection (data sets, the procedural engine, figures). numpy or torch
    (the result is of the points' kind); ``K`` is (3, 3) or (..., 3, 3).
    """
    if isinstance(joints3d, torch.Tensor):
        p = joints3d @ torch.as_tensor(K, dtype=joints3d.dtype, device=joints3d.device).transpose(-1, -2)
        return p[..., :2] / p[..., 2:3]
    p = np.asarray(joints3d) @ np.swapaxes(np.asarray(K), -1, -2)
    return p[..., :2] / p[..., 2:3]


def collate(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Batch sample dicts: stacks every tensor/number key present in all samples with one shape;
    collects ``meta`` and ``hand_side`` as lists; drops the rest (e.g. per-sample optional keys)."""
    out: dict[str, Any] = {}
    first = samples[0]
    for key, v in first.items():
        if key in ("meta", "hand_side"):
            out[key] = [s.get(key) for s in samples]
        elif isinstance(v, torch.Tensor):
            vs = [s.get(key) for s in samples]
            if all(isinstance(x, torch.Tensor) and x.shape == v.shape for x in vs):
                out[key] = torch.stack(vs)
        elif isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool):
            vs = [s.get(key) for s in samples]
            if all(isinstance(x, (int, float, np.floating, np.integer)) for x in vs):
                out[key] = torch.tensor([float(x) for x in vs])
    return out
