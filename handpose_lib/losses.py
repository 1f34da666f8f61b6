"""Training losses: 2D coordinates (LHR), bones (the paper's eq. 4), intermediate heatmaps.

Layer 2 of the library: imports ``skeleton`` and ``lhr`` only. Works on a
:class:`handpose_lib.model.HandPoseOutput` and a collated batch of sample dicts
(``handpose_lib/data/sample.py``).

The three terms (``compute_loss`` adds them with :class:`LossWeights`):

- ``coords2d``: mean absolute error of the LHR coordinates in **input pixels**, averaged over
  the labelled joints and both axes (the log shows "mean px error per axis"). L1 rather than
  L2, as is usual for soft-argmax regression (Sun et al., Integral Human Pose Regression).
- ``bones``: eq. 4, ``L = 1/2 sum_b ||b_pred - b_gt||^2`` over the 20 bones of a hand, in
  normalised units (:func:`handpose_lib.skeleton.normalise_3d`: root-relative, reference bone =
  1), **averaged over the images of the batch** (summed over bones and x, y, z as in eq. 4).
- ``heatmaps``: deep supervision of the decoder's intermediate heatmaps towards Gaussian
  targets (``sigma`` in cells of each map, 1 by default): per joint the squared error summed
  over the map's cells, averaged over labelled joints, images and the four maps. The final
  latent heatmaps get no heatmap target: LHR supervises them only through their coordinates
  (that is what makes them "latent").

Occlusion. Hidden joints keep their labels (the point of the method is to predict them), so
every term supervises **all labelled joints, visible or not**. The only mask is
``batch["has_label"]`` (B, 21) bool, for data sets where some joints have no annotation at
all (all joints are labelled when the key is absent). A bone is labelled when both its joints
are; a sample's 3D target needs its reference bone (joints 9, 10) labelled, otherwise its
bones are not supervised. Unlabelled targets may be NaN: they are replaced before any
arithmetic, so they cannot poison the gradients.

Default weights (:class:`LossWeights`): ``coords2d = 0.1``, ``bones = 1.0``, ``heatmaps = 0.5``.
They make the three terms about equally large for a half-trained model (2D error of a few
pixels -> ~0.3; bone error ~0.1 reference-bone units per coordinate -> 1/2 * 60 * 0.01 = 0.3;
heatmap error about half the target's energy pi sigma^2 per joint -> ~0.8 * 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from . import skeleton
from .lhr import _hw, cell_centres


@dataclass
class LossWeights:
    """Weights of the loss terms (see the module docstring for units and why these values)."""

    coords2d: float = 0.1
    bones: float = 1.0
    heatmaps: float = 0.5
    heatmap_sigma: float = 1.0  # Gaussian target width, in cells of each intermediate map
    latent: float = 0.0  # JS divergence of the LHR probability maps to a Gaussian (0 = off)
    latent_sigma: float = 1.0  # its width, in cells of the latent map


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` where ``mask`` (broadcastable) is True; 0 when nothing is labelled."""
    mask = mask.expand_as(values)
    total = torch.where(mask, values, torch.zeros_like(values)).sum()
    return total / mask.sum().clamp_min(1)


def bone_loss(pred_bones: Tensor, gt_bones: Tensor, mask: Tensor | None = None) -> Tensor:
    """Eq. 4: ``1/2 sum_b ||b_pred - b_gt||^2`` per image, averaged over the batch.

    Args:
        pred_bones: (B, 20, 3) predicted bones (normalised units).
        gt_bones: (B, 20, 3) target bones, same units (NaN allowed where ``mask`` is False).
        mask: optional (B, 20) bool, bones that have a label; unlabelled bones add 0.
    Returns:
        scalar: ``(1/B) sum_images 1/2 sum_bones ||diff||^2``.
    """
    if pred_bones.shape != gt_bones.shape or pred_bones.shape[-2:] != (skeleton.NUM_BONES, 3):
        raise ValueError(
            "bone_loss: expected two (B, 20, 3) tensors, "
            f"got {tuple(pred_bones.shape)} and {tuple(gt_bones.shape)}"
        )
    gt = gt_bones.to(pred_bones.dtype)
    if mask is not None:  # replace unlabelled targets before any arithmetic (NaN-safe gradients)
        gt = torch.where(mask[..., None], gt, pred_bones.detach())
    sq = (pred_bones - gt).pow(2).sum(-1)  # (B, 20)
    return 0.5 * sq.sum(-1).mean()


def coords2d_loss(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean absolute error in pixels over labelled joints and both axes.

    Args:
        pred, target: (B, J, 2) pixels. mask: optional (B, J) bool, joints with a label.
    Returns:
        scalar, in pixels.
    """
    if pred.shape != target.shape:
        raise ValueError(f"coords2d_loss: shapes differ, {tuple(pred.shape)} vs {tuple(target.shape)}")
    target = target.to(pred.dtype)
    if mask is None:
        return (pred - target).abs().mean()
    target = torch.where(mask[..., None], target, pred.detach())  # NaN-safe
    return _masked_mean((pred - target).abs(), mask[..., None])


def gaussian_heatmaps(joints2d: Tensor, image_size, size, sigma: float = 1.0) -> Tensor:
    """Gaussian target maps ``exp(-d^2 / (2 sigma^2))`` (peak 1) at the joints.

    Args:
        joints2d: (B, J, 2) ``(x, y)`` input pixels (pixel-edge convention).
        image_size: ``int`` or ``(height, width)`` of the input image.
        size: ``int`` or ``(h, w)`` of the maps; cell ``k`` has its centre at
            ``(k + 0.5) W / w`` input pixels, as in LHR.
        sigma: standard deviation in cells of the map.
    Returns:
        (B, J, h, w) float32 (float64 for float64 input).
    """
    height, width = _hw(image_size)
    h, w = _hw(size)
    dtype = torch.float64 if joints2d.dtype == torch.float64 else torch.float32
    j = joints2d.to(dtype)
    # distances in cells: map pixel coordinates into cell units
    xs = cell_centres(w, float(width), dtype, j.device) * (w / width)  # = k + 0.5
    ys = cell_centres(h, float(height), dtype, j.device) * (h / height)
    cx = j[..., 0:1] * (w / width)  # (B, J, 1)
    cy = j[..., 1:2] * (h / height)
    gx = torch.exp(-((xs - cx) ** 2) / (2 * sigma**2))  # (B, J, w)
    gy = torch.exp(-((ys - cy) ** 2) / (2 * sigma**2))  # (B, J, h)
    return gy[..., :, None] * gx[..., None, :]


def heatmap_loss(
    intermediate: list[Tensor],
    joints2d: Tensor,
    image_size,
    visible: Tensor | None = None,
    sigma: float = 1.0,
) -> Tensor:
    """Squared error of each intermediate heatmap to its Gaussian target.

    Args:
        intermediate: list of (B, J, h_k, w_k) maps (any resolution).
        joints2d: (B, J, 2) target pixels (NaN allowed where ``visible`` is False).
        image_size: ``int`` or ``(height, width)`` of the input image.
        visible: optional (B, J) bool, **the joints to supervise** (``compute_loss`` passes
            ``has_label``, so occluded joints are supervised; pass the visibility flags
            instead to train on visible joints only, an ablation).
        sigma: Gaussian width in cells.
    Returns:
        scalar: per joint the sum over cells, averaged over supervised joints, images and maps.
    """
    if not intermediate:
        raise ValueError("heatmap_loss: no intermediate heatmaps given")
    if visible is not None:
        joints2d = torch.where(visible[..., None], joints2d, torch.zeros_like(joints2d))
    total = 0.0
    for hm in intermediate:
        target = gaussian_heatmaps(joints2d, image_size, tuple(hm.shape[-2:]), sigma)
        per_joint = (hm.float() - target).pow(2).sum(dim=(-2, -1))  # (B, J)
        total = total + (per_joint.mean() if visible is None else _masked_mean(per_joint, visible))
    return total / len(intermediate)


def latent_loss(
    probs: Tensor, joints2d: Tensor, image_size, mask: Tensor | None = None, sigma: float = 1.0
) -> Tensor:
    """Jensen-Shannon divergence of each LHR probability map to a normalised Gaussian.

    The regulariser of DSNT (Nibali et al., 2018, "Numerical Coordinate Regression with
    Convolutional Neural Networks"): the coordinate loss alone accepts any map whose mean is
    right, so early in training the maps stay flat and their gradients are weak; pulling each
    map towards a small Gaussian at its joint gives every cell a direct signal. Joints outside
    the image have no such target and are skipped.

    Args:
        probs: (B, J, h, w) probability maps (each sums to 1), e.g. ``HandPoseOutput.probs``.
        joints2d: (B, J, 2) target pixels (NaN allowed where ``mask`` is False).
        image_size: ``int`` or ``(height, width)`` of the input image.
        mask: optional (B, J) bool, joints to supervise.
        sigma: Gaussian width in cells of the map.
    Returns:
        scalar: JS divergence in nats (0 to log 2), averaged over supervised joints.
    """
    height, width = _hw(image_size)
    b, j = probs.shape[:2]
    inside = (
        (joints2d[..., 0] >= 0)
        & (joints2d[..., 0] < width)
        & (joints2d[..., 1] >= 0)
        & (joints2d[..., 1] < height)
    )  # (B, J); False for NaN
    mask = inside if mask is None else (mask & inside)
    joints2d = torch.where(mask[..., None], joints2d, torch.zeros_like(joints2d))
    target = gaussian_heatmaps(joints2d, image_size, tuple(probs.shape[-2:]), sigma)
    q = target / target.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    p = probs if probs.dtype == torch.float64 else probs.float()
    q = q.to(p.dtype)
    m = 0.5 * (p + q)
    eps = 1e-12

    def kl(a: Tensor) -> Tensor:  # KL(a || m) per map; 0 log 0 = 0
        return (a * (torch.log(a.clamp_min(eps)) - torch.log(m.clamp_min(eps)))).sum(dim=(-2, -1))

    js = 0.5 * kl(p) + 0.5 * kl(q)  # (B, J)
    return _masked_mean(js, mask)


def _check_batch(out, batch: dict) -> None:
    for key in ("joints2d", "joints3d"):
        if key not in batch:
            raise KeyError(f"compute_loss: batch has no {key!r} (keys: {sorted(batch)})")
    b = out.coords2d.shape[0]
    expected = {"joints2d": (b, 21, 2), "joints3d": (b, 21, 3), "has_label": (b, 21)}
    for key, shape in expected.items():
        if key in batch and tuple(batch[key].shape) != shape:
            raise ValueError(
                f"compute_loss: batch[{key!r}] has shape {tuple(batch[key].shape)}, expected {shape}"
            )


def compute_loss(
    out, batch: dict, weights: LossWeights | None = None, image_size=None
) -> tuple[Tensor, dict[str, Tensor]]:
    """The training loss of a :class:`~handpose_lib.model.HandPoseOutput` against a batch.

    Args:
        out: the model's output for ``batch["image"]``.
        batch: collated sample dict with ``joints2d`` (B, 21, 2) px, ``joints3d`` (B, 21, 3) mm
            and optionally ``has_label`` (B, 21) bool. ``visible`` is not used as a mask (see
            the module docstring).
        weights: :class:`LossWeights` (defaults when ``None``).
        image_size: ``int`` or ``(height, width)`` of the model's input; taken from
            ``batch["image"]`` when ``None``.
    Returns:
        ``(total, parts)``: the weighted sum (differentiable) and a dict of detached scalars
        ``coords2d`` (px), ``bones`` (eq. 4), ``heatmaps`` and ``total`` for logging.
    """
    weights = weights or LossWeights()
    _check_batch(out, batch)
    device = out.coords2d.device
    j2d = batch["joints2d"].to(device=device, dtype=torch.float32)
    j3d = batch["joints3d"].to(device=device, dtype=torch.float32)
    b = j2d.shape[0]
    has_label = batch.get("has_label")
    has_label = (
        torch.ones(b, 21, dtype=torch.bool, device=device)
        if has_label is None
        else has_label.to(device).bool()
    )
    if image_size is None:  # coords are input pixels; the heatmap targets need the input size
        if "image" not in batch:
            raise KeyError("compute_loss: pass image_size= or a batch with 'image' (B, 3, H, W)")
        image_size = tuple(batch["image"].shape[-2:])

    # 2D
    l2d = coords2d_loss(out.coords2d, j2d, has_label)
    lhm = heatmap_loss(out.intermediate, j2d, image_size, has_label, weights.heatmap_sigma)

    # 3D: normalised units, bones (eq. 3); unlabelled joints are zeroed first (NaN-safe)
    j3d = torch.where(has_label[..., None], j3d, torch.zeros_like(j3d))
    p, c = skeleton.REFERENCE_BONE
    ok3d = has_label[:, 0] & has_label[:, p] & has_label[:, c]  # (B,) root and scale known
    j3d = torch.where(ok3d[:, None, None], j3d, torch.zeros_like(j3d))  # all-zero: normalises to 0
    gt_norm, _ = skeleton.normalise_3d(j3d)
    gt_bones = skeleton.joints_to_bones(gt_norm)
    parents = torch.tensor(skeleton.PARENTS[1:], device=device)
    bone_mask = has_label[:, 1:] & has_label[:, parents] & ok3d[:, None]
    lb = bone_loss(out.bones.float(), gt_bones, bone_mask)

    total = weights.coords2d * l2d + weights.bones * lb + weights.heatmaps * lhm
    parts = {"coords2d": l2d.detach(), "bones": lb.detach(), "heatmaps": lhm.detach()}
    if weights.latent > 0:
        llat = latent_loss(out.probs, j2d, image_size, has_label, weights.latent_sigma)
        total = total + weights.latent * llat
        parts["latent"] = llat.detach()
    parts["total"] = total.detach()
    return total, parts
