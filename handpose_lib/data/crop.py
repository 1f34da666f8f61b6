"""The hand crop shared by every data set: a square around the hand from its 2D joints,
resized to ``size x size`` (128 for the paper's network), with the camera matrix and the 2D
joints updated, and its inverse for predictions.

Crop box (continuous pixel coordinates, see ``sample.py``): the tight box of the annotated
2D joints, centre ``c``, side ``s0 = max(w, h) * (1 + 2 * margin)`` (at least ``min_side``).
Augmentation: the centre moves by ``jitter * s0 * U(-1, 1)`` per axis and the side is
multiplied by ``U(scale_range)``. The crop maps ``u' = (u - x0) * size / side``; the image is
resampled with one ``cv2.warpAffine`` (bilinear, black outside the source image), so boxes
that leave the image are padded, never shifted.

``meta["crop"] = {"x0", "y0", "side", "size"}`` (floats, so ``default_collate`` batches them),
and :func:`uncrop_points` maps crop pixels back to the full image. :func:`crop_image` is the
crop of a user's photo, which has no labels: around a given hand box, or the centred square.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .common import affine_crop_matrix, warp_image, warp_sample


def crop_box_from_joints(joints2d, margin: float = 0.2, min_side: float = 16.0) -> tuple[float, float, float]:
    """Square box around the finite 2D joints.

    Args:
        joints2d: (21, 2) pixels (NaN rows = not annotated, ignored).
        margin: extra space on each side, as a fraction of the larger box side.
        min_side: smallest side in pixels.
    Returns:
        ``(x0, y0, side)``: top-left corner and side in continuous pixels.
    """
    uv = np.asarray(joints2d, dtype=np.float64).reshape(-1, 2)
    uv = uv[np.isfinite(uv).all(axis=1)]
    if len(uv) == 0:
        raise ValueError("crop_box_from_joints: no finite 2D joint to crop around")
    lo, hi = uv.min(axis=0), uv.max(axis=0)
    centre = (lo + hi) / 2.0
    side = max(float((hi - lo).max()) * (1.0 + 2.0 * margin), float(min_side))
    return float(centre[0] - side / 2.0), float(centre[1] - side / 2.0), side


def uncrop_points(points, crop_params):
    """Map points from crop pixels back to full-image pixels.

    Args:
        points: (..., J, 2) numpy array or tensor in crop pixels.
        crop_params: ``meta["crop"]`` of one sample (floats) or of a batch (tensors of shape (B,)
            after ``default_collate``; then ``points`` is (B, J, 2)).
    Returns:
        points in the full image, same type and shape.
    """
    x0, y0, side, size = (crop_params[k] for k in ("x0", "y0", "side", "size"))
    if isinstance(points, torch.Tensor):
        t = lambda v: torch.as_tensor(v, dtype=points.dtype, device=points.device).reshape(-1, 1)  # noqa: E731
        scale = t(side) / t(size)
        offset = torch.cat([t(x0), t(y0)], dim=-1)
        if points.dim() == 2:
            return points * scale.reshape(()) + offset.reshape(2)
        return points * scale[..., None] + offset[:, None, :]
    pts = np.asarray(points, dtype=np.float64)
    scale = np.asarray(side, dtype=np.float64).reshape(-1, 1) / np.asarray(size, dtype=np.float64).reshape(
        -1, 1
    )
    offset = np.concatenate(
        [np.asarray(x0, dtype=np.float64).reshape(-1, 1), np.asarray(y0, dtype=np.float64).reshape(-1, 1)],
        axis=-1,
    )
    if pts.ndim == 2:
        return pts * scale.reshape(()) + offset.reshape(2)
    return pts * scale[..., None] + offset[:, None, :]


@dataclass
class HandCrop:
    """Square hand crop, resized to ``size x size``.

    Attributes:
        size: output side in pixels (128 for the paper's ResUnet).
        margin: space around the joints' tight box, fraction of its larger side per side.
        jitter: random shift of the centre, fraction of the box side (0 = none).
        scale_range: random factor on the box side, ``(lo, hi)`` (``(1, 1)`` = none).
        min_side: smallest box side in source pixels.
    """

    size: int = 128
    margin: float = 0.2
    jitter: float = 0.0
    scale_range: tuple[float, float] = (1.0, 1.0)
    min_side: float = 16.0

    def box(self, joints2d, rng: np.random.Generator | None = None) -> tuple[float, float, float]:
        """The (possibly randomised) box ``(x0, y0, side)`` for these joints."""
        x0, y0, side = crop_box_from_joints(joints2d, self.margin, self.min_side)
        lo, hi = self.scale_range
        if self.jitter == 0 and lo == hi == 1.0:
            return x0, y0, side
        rng = np.random.default_rng() if rng is None else rng
        cx, cy = x0 + side / 2, y0 + side / 2
        if self.jitter:
            cx, cy = np.array([cx, cy]) + self.jitter * side * rng.uniform(-1.0, 1.0, size=2)
        side = side * float(rng.uniform(lo, hi))
        return float(cx - side / 2), float(cy - side / 2), float(side)

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        """Crop a sample: image (3, size, size), ``joints2d``/``K`` updated, ``meta["crop"]`` set."""
        if "crop" in sample["meta"]:
            raise ValueError("HandCrop: this sample is already cropped (meta['crop'] is set)")
        x0, y0, side = self.box(sample["joints2d"].numpy(), rng)
        scale = self.size / side
        out = warp_sample(sample, affine_crop_matrix(x0, y0, scale), (self.size, self.size))
        out["meta"]["crop"] = {"x0": x0, "y0": y0, "side": side, "size": float(self.size)}
        return out


def crop_image(image_rgb, size: int, box=None, margin: float = 0.2) -> tuple[torch.Tensor, dict]:
    """Square crop of a user's photo for the model: (H, W, 3) uint8 -> ((3, size, size), params).

    Args:
        image_rgb: (H, W, 3) uint8 RGB photo (or a (3, H, W) float tensor in [0, 1]).
        size: output side in pixels (the model's ``input_size``).
        box: the hand's box ``(x0, y0, x1, y1)`` in pixels, enlarged by ``margin`` of its larger
            side on each side (like the training crops); ``None``: the largest centred square.
        margin: space added around ``box``, per side.
    Returns:
        ``(image, params)``: (3, size, size) float32 in [0, 1] and ``{"x0", "y0", "side", "size"}``
        (floats), which :func:`uncrop_points` takes to map predictions back to the photo.
    """
    h, w = image_rgb.shape[-2:] if isinstance(image_rgb, torch.Tensor) else image_rgb.shape[:2]
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin: expected a number >= 0 (added around the box), got {margin}")
    if box is None:
        side = float(min(h, w))
        x0, y0 = (w - side) / 2.0, (h - side) / 2.0
    else:
        bx0, by0, bx1, by1 = (float(v) for v in box)
        if not all(math.isfinite(v) for v in (bx0, by0, bx1, by1)):
            raise ValueError(f"box: expected four finite pixel coordinates X0 Y0 X1 Y1, got {tuple(box)}")
        if not (bx1 > bx0 and by1 > by0):
            raise ValueError(f"box: expected X0 Y0 X1 Y1 with X1 > X0 and Y1 > Y0, got {tuple(box)}")
        if bx1 <= 0 or by1 <= 0 or bx0 >= w or by0 >= h:
            raise ValueError(
                f"box: {tuple(box)} lies wholly outside the {w}x{h} image; give the hand's box in "
                "this image's pixels (x from 0 to the width, y from 0 to the height)"
            )
        side = max(bx1 - bx0, by1 - by0) * (1.0 + 2.0 * margin)
        x0, y0 = (bx0 + bx1 - side) / 2.0, (by0 + by1 - side) / 2.0
    # only the pixels the crop reads (with room for the area-averaging and the bilinear taps) are
    # converted and resampled: a small hand in a large photo costs what a small photo does
    if isinstance(image_rgb, torch.Tensor):
        image_rgb = image_rgb.detach().cpu().float().permute(1, 2, 0).numpy()
    elif image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"image: expected (H, W, 3) RGB, got {image_rgb.shape}")
    scale = size / side
    pad = 2 + math.ceil(1.0 / scale)
    rx0, ry0 = max(0, math.floor(x0) - pad), max(0, math.floor(y0) - pad)
    rx1, ry1 = min(w, math.ceil(x0 + side) + pad), min(h, math.ceil(y0 + side) + pad)
    roi = np.asarray(image_rgb[ry0:ry1, rx0:rx1])
    roi = roi.astype(np.float32) / 255.0 if roi.dtype == np.uint8 else roi.astype(np.float32)
    out = warp_image(roi, affine_crop_matrix(x0 - rx0, y0 - ry0, scale), (size, size))
    image = torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1)
    return image, {"x0": x0, "y0": y0, "side": side, "size": float(size)}
