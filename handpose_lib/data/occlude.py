"""Pasted occluders: soft-edged object patches laid over a hand crop, labels kept correct.

The paper trains with "data augmentation based on this network" to handle occlusion and says no
more. What this book does instead, stated exactly:

1. *Procedural data*: the engine (``data.synthetic``) renders 3D objects (boxes, cylinders,
   spheres) in front of the hand and labels every joint it hides ``VIS_OBJECT``
   (``SyntheticConfig(occlusion=...)``).
2. *Any data set* (real photos included): :class:`PasteOccluders` pastes a 2D occluder over the
   hand with probability ``prob``: an ellipse or a rotated rectangle whose edge is feathered
   (a Gaussian-blurred alpha mask), filled with one of three textures: a flat colour with noise,
   stripes, or a *cut-out* of the same image taken away from the hand (so the occluder has
   real-photo statistics). ``strength`` in [0, 1] scales the occluder's size: its long axis is
   drawn in ``[0.2, 0.2 + 0.6 * strength]`` of the hand's 2D box diagonal, centred on a random
   joint, so it always overlaps the hand.

Labels: the image changes, the joints do not (2D, 3D and ``K`` are untouched). A joint whose
pixel is covered by the occluder with alpha >= ``ALPHA_HIDDEN`` (0.5) becomes ``VIS_OBJECT``
(also when it was hidden by the hand before: the object is in front of both); ``visible`` is
recomputed from the codes; joints outside the image keep ``VIS_OUTSIDE``.

Layer 2: imports ``data.sample`` only.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .sample import VIS_OBJECT, VIS_OUTSIDE, VIS_SELF, VIS_UNKNOWN, VIS_VISIBLE

ALPHA_HIDDEN = 0.5
TEXTURES = ("flat", "stripes", "cutout")
SHAPES = ("ellipse", "rectangle")


@dataclass
class Occluder:
    """One 2D occluder in image pixels (continuous coordinates, see ``data/sample.py``).

    Attributes:
        center: (x, y) px. axes: (half length, half width) px. angle_deg: rotation of the long
        axis (degrees, counter-clockwise on screen). shape: ``"ellipse"`` or ``"rectangle"``.
        texture: ``"flat"``, ``"stripes"`` or ``"cutout"``. color: RGB in [0, 1] (flat, stripes).
        feather: Gaussian sigma of the soft edge, px. cutout_shift: (dx, dy) px, where the
        ``cutout`` texture is taken from (relative to the occluder).
    """

    center: tuple[float, float]
    axes: tuple[float, float]
    angle_deg: float = 0.0
    shape: str = "ellipse"
    texture: str = "flat"
    color: tuple[float, float, float] = (0.5, 0.5, 0.5)
    feather: float = 1.5
    cutout_shift: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self):
        if self.shape not in SHAPES:
            raise ValueError(f"Occluder.shape must be one of {SHAPES}, got {self.shape!r}")
        if self.texture not in TEXTURES:
            raise ValueError(f"Occluder.texture must be one of {TEXTURES}, got {self.texture!r}")


def occluder_alpha(occ: Occluder, height: int, width: int) -> np.ndarray:
    """(H, W) float32 alpha in [0, 1] of ``occ`` (1 inside, feathered edge)."""
    # draw at 4x resolution with cv2 (pixel centres at i + 0.5), then area-downsample
    s = 4
    mask = np.zeros((height * s, width * s), np.uint8)
    cx, cy = (occ.center[0] * s - 0.5, occ.center[1] * s - 0.5)
    a, b = max(occ.axes[0] * s, 0.5), max(occ.axes[1] * s, 0.5)
    if occ.shape == "ellipse":
        cv2.ellipse(mask, ((cx, cy), (2 * a, 2 * b), -occ.angle_deg), 255, -1, cv2.LINE_AA)
    else:
        box = cv2.boxPoints(((cx, cy), (2 * a, 2 * b), -occ.angle_deg))
        cv2.fillPoly(mask, [np.round(box * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    alpha = cv2.resize(mask, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    if occ.feather > 0:
        alpha = cv2.GaussianBlur(alpha, (0, 0), occ.feather)
        # keep the core opaque: the blur only softens the edge
        alpha = np.clip(alpha * 1.25, 0.0, 1.0)
    return alpha


def _texture(occ: Occluder, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) float32 fill of the occluder."""
    H, W = image.shape[:2]
    if occ.texture == "cutout":
        M = np.float32([[1, 0, occ.cutout_shift[0]], [0, 1, occ.cutout_shift[1]]])
        return cv2.warpAffine(image, M, (W, H), borderMode=cv2.BORDER_REFLECT101)
    col = np.asarray(occ.color, np.float32)
    fill = np.broadcast_to(col, (H, W, 3)).copy()
    if occ.texture == "stripes":
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32) + 0.5
        t = np.radians(occ.angle_deg + 90.0)
        period = float(rng.uniform(4.0, 10.0))
        phase = (np.cos(t) * xx - np.sin(t) * yy) / period
        fill *= (0.6 + 0.4 * (np.floor(phase) % 2))[..., None]
    fill += rng.normal(0.0, 0.03, size=fill.shape).astype(np.float32)
    return np.clip(fill, 0.0, 1.0)


def update_visibility(vis: torch.Tensor, joints2d: torch.Tensor, alpha: np.ndarray) -> torch.Tensor:
    """Visibility codes after an occluder of ``alpha`` (H, W) is laid over the image.

    Args:
        vis: (21,) int64 ``VIS_*`` codes. joints2d: (21, 2) px. alpha: (H, W) in [0, 1].
    Returns:
        (21,) int64: ``VIS_OBJECT`` where the joint's pixel has alpha >= ``ALPHA_HIDDEN`` and the
        joint was visible, hidden by the hand or unknown; other codes unchanged.
    """
    H, W = alpha.shape
    out = vis.clone()
    xy = joints2d.detach().cpu().numpy()
    for j in range(xy.shape[0]):
        x, y = xy[j]
        if not (np.isfinite(x) and np.isfinite(y)) or int(out[j]) == VIS_OUTSIDE:
            continue
        ix, iy = int(np.floor(x)), int(np.floor(y))
        if 0 <= ix < W and 0 <= iy < H and alpha[iy, ix] >= ALPHA_HIDDEN:
            if int(out[j]) in (VIS_VISIBLE, VIS_SELF, VIS_UNKNOWN):
                out[j] = VIS_OBJECT
    return out


def paste(sample: dict, occ: Occluder, rng: np.random.Generator | None = None) -> dict:
    """A copy of ``sample`` with ``occ`` composited over the image and the visibility updated.

    The joints, ``K`` and everything else are unchanged; ``meta["pasted_occluders"]`` counts
    the occluders pasted so far.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    img = sample["image"]
    if img.ndim != 3 or img.shape[0] != 3:
        raise ValueError(f"paste: expected a (3, H, W) image, got {tuple(img.shape)}")
    H, W = img.shape[1:]
    np_img = img.permute(1, 2, 0).cpu().numpy().astype(np.float32)
    alpha = occluder_alpha(occ, H, W)
    fill = _texture(occ, np_img, rng)
    out_img = np_img * (1.0 - alpha[..., None]) + fill * alpha[..., None]
    out = dict(sample)
    out["image"] = torch.from_numpy(np.ascontiguousarray(out_img)).permute(2, 0, 1).contiguous()
    vis = sample.get("visibility")
    if vis is None:
        vis = torch.full((21,), VIS_UNKNOWN, dtype=torch.int64)
    out["visibility"] = update_visibility(torch.as_tensor(vis), sample["joints2d"], alpha)
    out["visible"] = (out["visibility"] == VIS_VISIBLE) | (out["visibility"] == VIS_UNKNOWN)
    meta = dict(sample.get("meta", {}))
    meta["pasted_occluders"] = int(meta.get("pasted_occluders", 0)) + 1
    out["meta"] = meta
    return out


def random_occluder(sample: dict, rng: np.random.Generator, strength: float = 0.5) -> Occluder:
    """A random :class:`Occluder` over the hand of ``sample`` (see the module doc)."""
    H, W = sample["image"].shape[1:]
    j2 = sample["joints2d"].detach().cpu().numpy()
    ok = np.isfinite(j2).all(1)
    pts = j2[ok] if ok.any() else np.array([[W / 2, H / 2]])
    diag = float(np.linalg.norm(pts.max(0) - pts.min(0))) or 0.5 * W
    long = diag * float(rng.uniform(0.2, 0.2 + 0.6 * strength)) / 2.0
    short = long * float(rng.uniform(0.3, 1.0))
    center = pts[int(rng.integers(len(pts)))] + rng.normal(0.0, 0.05 * diag, 2)
    texture = TEXTURES[int(rng.integers(len(TEXTURES)))]
    ang = float(rng.uniform(0, 2 * np.pi))
    shift = (float(np.cos(ang) * diag), float(np.sin(ang) * diag))
    return Occluder(
        center=(float(center[0]), float(center[1])),
        axes=(long, short),
        angle_deg=float(rng.uniform(0, 180)),
        shape=SHAPES[int(rng.integers(len(SHAPES)))],
        texture=texture,
        color=tuple(float(c) for c in rng.uniform(0.05, 0.95, 3)),
        feather=float(rng.uniform(0.7, 2.5)),
        cutout_shift=shift,
    )


@dataclass
class PasteOccluders:
    """Training augmentation: with probability ``prob`` paste 1..``max_count`` random occluders.

    ``transform(sample, rng)`` like ``data.augment.Augment``; ``strength`` in [0, 1] scales the
    occluder size (module doc). Chain after geometry with :class:`Chain`.
    """

    prob: float = 0.3
    strength: float = 0.5
    max_count: int = 2

    def __post_init__(self):
        if not 0.0 <= self.prob <= 1.0 or not 0.0 <= self.strength <= 1.0:
            raise ValueError(
                f"PasteOccluders: prob and strength must be in [0, 1], got {self.prob}, {self.strength}"
            )
        if self.max_count < 1:
            raise ValueError(f"PasteOccluders.max_count must be >= 1, got {self.max_count}")

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        rng = np.random.default_rng() if rng is None else rng
        if rng.uniform() >= self.prob:
            return sample
        for _ in range(int(rng.integers(1, self.max_count + 1))):
            sample = paste(sample, random_occluder(sample, rng, self.strength), rng)
        return sample


class Chain:
    """Apply transforms in order, each as ``t(sample, rng)`` with the same generator."""

    def __init__(self, *transforms):
        self.transforms = [t for t in transforms if t is not None]

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        rng = np.random.default_rng() if rng is None else rng
        for t in self.transforms:
            sample = t(sample, rng)
        return sample
