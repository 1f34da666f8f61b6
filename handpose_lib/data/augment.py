"""Label-preserving augmentation: re-crop, colour, in-plane rotation, scale, horizontal flip,
image statistics (FDA) and a camera.

Geometry goes through :func:`~handpose_lib.data.common.warp_sample` (one ``cv2.warpAffine``),
so 2D joints, 3D joints and ``K`` stay consistent (``joints2d == project(joints3d, K)``):

- rotation by ``angle`` (degrees, counter-clockwise on screen) about an image point: the 3D
  joints are rotated about the camera's optical axis by the same angle, ``K' = A K R^T``;
- scale about an image point: only the image, the 2D joints and ``K`` change (a zoom);
- flip: image mirrored, ``u -> W - u``, ``x -> -x``, ``cx -> W - cx``, ``hand_side`` swapped.

Colour uses ``torchvision.transforms.v2.functional`` (brightness, contrast, saturation) and
OpenCV's HSV conversion (hue, :func:`adjust_hue`), with factors drawn from the given numpy
``Generator`` (reproducible per sample).

Options of :class:`Augment`, all off by default (``None``), in the order they run:

- ``recrop``: a :class:`~handpose_lib.data.crop.HandCrop` applied to the (already cropped)
  sample: the evaluation's crop rule (the joints' box plus ``margin`` per side) moved and
  scaled at random the way a hand detector's box is (``jitter``, ``scale_range``); the new
  crop is composed with the sample's ``meta["crop"]`` when it has one;
- ``fda``: :class:`~handpose_lib.data.fda.FDA`, the low-frequency amplitude of a photograph;
- ``camera``: :class:`~handpose_lib.data.camera_effects.CameraEffects`, lens, sensor, image
  processor and JPEG (last, as in a camera).

With all three off the random draws (and so the samples) are exactly those of before.

Training draws a new augmentation of every sample each epoch: :class:`TrainView` seeds it by
``(seed, epoch, index)`` and :class:`EpochSampler` yields those ``(epoch, index)`` pairs in a
``DistributedSampler``'s order, so an augmented sample does not depend on the DataLoader worker
that loads it nor on where a run was resumed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torch.utils.data import Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler

from .camera_effects import CameraEffects
from .common import MIRROR_3D, mirror_matrix, warp_sample
from .crop import HandCrop
from .fda import FDA


def rotation_about(angle_deg: float, cx: float, cy: float, scale: float = 1.0):
    """(3, 3) image map rotating by ``angle_deg`` (counter-clockwise on screen, i.e. with the
    image's y axis pointing down) and scaling by ``scale`` about ``(cx, cy)``; and the (3, 3)
    rotation of camera-frame 3D points about the optical axis that matches it."""
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    # y points down in images, so counter-clockwise on screen is (c, s; -s, c) in (u, v)
    R2 = np.array([[c, s], [-s, c]])
    A = np.eye(3)
    A[:2, :2] = scale * R2
    A[:2, 2] = np.array([cx, cy]) - scale * R2 @ np.array([cx, cy])
    R3 = np.eye(3)
    R3[:2, :2] = R2
    return A, R3


def rotate(sample: dict, angle_deg: float, center=None, scale: float = 1.0) -> dict:
    """Rotate (and zoom) a sample in the image plane about ``center`` (default: image centre)."""
    H, W = sample["image"].shape[1:]
    cx, cy = (W / 2.0, H / 2.0) if center is None else center
    A, R3 = rotation_about(angle_deg, cx, cy, scale)
    return warp_sample(sample, A, (W, H), R=R3)


def flip(sample: dict) -> dict:
    """Mirror a sample horizontally; a left hand becomes a right hand."""
    H, W = sample["image"].shape[1:]
    return warp_sample(sample, mirror_matrix(W), (W, H), R=MIRROR_3D, swap_hand=True)


def adjust_hue(img: torch.Tensor, hue_factor: float) -> torch.Tensor:
    """``torchvision``'s ``adjust_hue`` for a float (3, H, W) RGB image in [0, 1], through
    OpenCV's HSV conversion: the hue turns by ``hue_factor`` of a full turn (-0.5 .. 0.5).

    The same function as torchvision's to float32 rounding (at most 1.2e-6 apart on the
    training crops), 7 times faster on a 128x128 crop (0.27 against 2.0 ms on one core); the
    hue was half of a training sample's augmentation time, and the DataLoader workers share
    the CPU with training (``tests/test_data_crop_augment.py`` compares the two).
    """
    hwc = np.ascontiguousarray(img.permute(1, 2, 0).numpy(), dtype=np.float32)
    hsv = cv2.cvtColor(hwc, cv2.COLOR_RGB2HSV)  # H in degrees [0, 360), S and V in [0, 1]
    h = hsv[..., 0]
    h += 360.0 * hue_factor
    np.mod(h, 360.0, out=h)
    return torch.from_numpy(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)).permute(2, 0, 1).to(img.dtype)


def color_jitter(
    sample: dict, rng: np.random.Generator, brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05
):
    """Random brightness/contrast/saturation (torchvision v2) and hue (:func:`adjust_hue`), in
    random order."""
    img = sample["image"]
    ops = [
        (brightness, lambda x, f: TF.adjust_brightness(x, f)),
        (contrast, lambda x, f: TF.adjust_contrast(x, f)),
        (saturation, lambda x, f: TF.adjust_saturation(x, f)),
    ]
    for k in rng.permutation(len(ops) + 1):
        if k < len(ops):
            amount, op = ops[k]
            if amount:
                img = op(img, float(rng.uniform(max(0.0, 1 - amount), 1 + amount)))
        elif hue:
            img = adjust_hue(img, float(rng.uniform(-hue, hue)))
    out = dict(sample)
    out["image"] = img.clamp(0.0, 1.0)
    return out


def recrop(sample: dict, crop: HandCrop, rng: np.random.Generator) -> dict:
    """Crop an already cropped sample again with ``crop`` (its box from the sample's joints);
    ``meta["crop"]`` becomes the composition (the new box in the original image's pixels)."""
    outer = sample["meta"].get("crop")
    inner = dict(sample)
    inner["meta"] = {k: v for k, v in sample["meta"].items() if k != "crop"}
    out = crop(inner, rng)
    if outer is not None:
        c, f = out["meta"]["crop"], outer["side"] / outer["size"]
        x0, y0, side = outer["x0"] + c["x0"] * f, outer["y0"] + c["y0"] * f, c["side"] * f
        out["meta"]["crop"] = {"x0": x0, "y0": y0, "side": side, "size": c["size"]}
    return out


@dataclass
class Augment:
    """Random augmentation applied to a (usually cropped) sample.

    Attributes:
        rotation_deg: maximum absolute in-plane rotation (uniform), about the image centre.
        scale_range: zoom factor range about the image centre (``(1, 1)`` = none).
        flip_prob: probability of a horizontal flip (changes ``hand_side``).
        brightness, contrast, saturation, hue: colour jitter strengths (0 = off).
        recrop: re-crop first with this ``HandCrop`` (the evaluation's rule, jittered).
        fda: Fourier domain adaptation after the colour jitter.
        camera: a random camera, last.
    """

    rotation_deg: float = 30.0
    scale_range: tuple[float, float] = (1.0, 1.0)
    flip_prob: float = 0.0
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    hue: float = 0.05
    recrop: HandCrop | None = None
    fda: FDA | None = None
    camera: CameraEffects | None = None

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        rng = np.random.default_rng() if rng is None else rng
        if self.recrop is not None:
            sample = recrop(sample, self.recrop, rng)
        angle = float(rng.uniform(-self.rotation_deg, self.rotation_deg)) if self.rotation_deg else 0.0
        scale = float(rng.uniform(*self.scale_range))
        if angle or scale != 1.0:
            sample = rotate(sample, angle, scale=scale)
        if self.flip_prob and rng.uniform() < self.flip_prob:
            sample = flip(sample)
        if self.brightness or self.contrast or self.saturation or self.hue:
            sample = color_jitter(sample, rng, self.brightness, self.contrast, self.saturation, self.hue)
        if self.fda is not None:
            sample = self.fda(sample, rng)
        if self.camera is not None:
            sample = self.camera(sample, rng)
        return sample


class TrainView(Dataset):
    """A data set seen through per-sample augmentation keyed by ``(epoch, index)``.

    Indexed by ``(epoch, i)`` pairs (what :class:`EpochSampler` yields). The augmentation's
    random numbers come from ``numpy.random.default_rng([seed, epoch, i])``, so a sample looks
    the same whichever worker loads it and whether or not the run was resumed.
    """

    def __init__(self, base: Dataset, transform: Callable | None = None, seed: int = 0):
        self.base, self.transform, self.seed = base, transform, seed

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key):
        epoch, i = key if isinstance(key, tuple) else (0, key)
        sample = self.base[i]
        if self.transform is not None:
            sample = self.transform(sample, np.random.default_rng([self.seed, epoch, i]))
        return sample


class EpochSampler(Sampler):
    """This process's shard of one epoch (``DistributedSampler`` order), from batch ``skip`` on.

    Yields ``(epoch, index)`` pairs for :class:`TrainView`.
    """

    def __init__(self, dist_sampler: DistributedSampler, epoch: int, skip_samples: int = 0):
        self.ds, self.epoch, self.skip = dist_sampler, epoch, skip_samples

    def __iter__(self):
        self.ds.set_epoch(self.epoch)
        for i in list(self.ds)[self.skip :]:
            yield (self.epoch, int(i))

    def __len__(self) -> int:
        return max(0, len(self.ds) - self.skip)
