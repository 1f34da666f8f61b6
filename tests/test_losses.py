"""Losses: eq. 4 (bones) by hand, 2D L1, Gaussian heatmap targets, the combined loss and masks."""

import pytest
import torch

from handpose_lib import skeleton
from handpose_lib.lhr import soft_argmax_2d
from handpose_lib.losses import (
    LossWeights,
    bone_loss,
    compute_loss,
    coords2d_loss,
    gaussian_heatmaps,
    heatmap_loss,
    latent_loss,
)
from handpose_lib.model import HandPoseOutput


def test_bone_loss_hand_computed():
    pred = torch.zeros(2, 20, 3)
    gt = torch.zeros(2, 20, 3)
    gt[0] = 1.0  # image 0: 20 bones with ||(1,1,1)||^2 = 3 -> 1/2 * 60 = 30
    gt[1, 4] = torch.tensor([3.0, 4.0, 0.0])  # image 1: one bone of length 5 -> 1/2 * 25 = 12.5
    # eq. 4 per image, mean over the batch: (30 + 12.5) / 2
    assert bone_loss(pred, gt).item() == pytest.approx(21.25)
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[0, :10] = False  # half of image 0's bones unlabelled -> 15
    mask[1, 4] = False
    assert bone_loss(pred, gt, mask).item() == pytest.approx(7.5)


def test_bone_loss_gradcheck_and_nan_safe_mask():
    pred = torch.randn(2, 20, 3, dtype=torch.float64, requires_grad=True)
    gt = torch.randn(2, 20, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p: bone_loss(p, gt), (pred,))
    # the gradient is (pred - gt) / B
    bone_loss(pred, gt).backward()
    torch.testing.assert_close(pred.grad, (pred - gt).detach() / 2)
    gt[0, 3] = float("nan")
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[0, 3] = False
    pred.grad = None
    loss = bone_loss(pred, gt, mask)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()
    assert torch.all(pred.grad[0, 3] == 0)


def test_coords2d_loss_in_pixels():
    pred = torch.zeros(1, 21, 2)
    gt = torch.zeros(1, 21, 2)
    gt[0, 0] = torch.tensor([4.0, 2.0])
    assert coords2d_loss(pred, gt).item() == pytest.approx(6.0 / 42)
    mask = torch.zeros(1, 21, dtype=torch.bool)
    mask[0, 0] = True
    gt[0, 5] = float("nan")
    assert coords2d_loss(pred, gt, mask).item() == pytest.approx(3.0)  # mean of |4|, |2|


def test_gaussian_targets_follow_the_lhr_pixel_convention():
    joints = torch.tensor(
        [[[45.0, 81.0], [64.0, 64.0], [50.3, 86.7]]]
    )  # >= 5 cells from the border: no truncation bias
    for size in (64, 32, 16):
        g = gaussian_heatmaps(joints, 128, size, sigma=1.0)
        assert g.shape == (1, 3, size, size) and g.max() <= 1.0
        # a Gaussian's log is a quadratic latent whose soft-argmax (beta = 1) is its centre
        coords, _ = soft_argmax_2d(torch.log(g), torch.ones(3), 128)
        torch.testing.assert_close(coords, joints, atol=1e-3, rtol=0)
    # joint at the centre of cell (3, 5) of an 8x8 map (cells of 16 px): value 1 there
    g = gaussian_heatmaps(torch.tensor([[[5.5 * 16, 3.5 * 16]]]), 128, 8, sigma=1.0)
    assert g[0, 0, 3, 5] == 1.0 and g[0, 0, 3, 6] == pytest.approx(torch.exp(torch.tensor(-0.5)).item())


def test_heatmap_loss_zero_at_target_and_masks():
    joints = torch.rand(2, 21, 2) * 128
    maps = [gaussian_heatmaps(joints, 128, s) for s in (8, 16, 32, 64)]
    assert heatmap_loss(maps, joints, 128).item() == pytest.approx(0.0, abs=1e-10)
    zeros = [torch.zeros_like(m) for m in maps]
    # all-zero maps: per joint the target's energy sum g^2, about pi sigma^2 for an interior joint
    mid = torch.full((1, 21, 2), 64.0)
    assert heatmap_loss([torch.zeros(1, 21, 64, 64)], mid, 128).item() == pytest.approx(torch.pi, rel=0.01)
    visible = torch.zeros(2, 21, dtype=torch.bool)
    assert heatmap_loss(zeros, joints, 128, visible).item() == 0.0


def _perfect_output(batch):
    """A HandPoseOutput that matches the batch's labels exactly."""
    j3n, _ = skeleton.normalise_3d(batch["joints3d"])
    bones = skeleton.joints_to_bones(j3n)
    inter = [gaussian_heatmaps(batch["joints2d"], 128, s) for s in (8, 16, 32, 64)]
    b = batch["joints2d"].shape[0]
    probs = gaussian_heatmaps(batch["joints2d"], 128, 64)  # the latent term's target (sigma 1)
    probs = probs / probs.sum(dim=(-2, -1), keepdim=True)
    return HandPoseOutput(
        heatmaps=torch.zeros(b, 21, 64, 64),
        probs=probs,
        coords2d=batch["joints2d"].clone(),
        bones=bones,
        joints3d=skeleton.bones_to_joints(bones),
        intermediate=inter,
    )


def _batch(b=3):
    g = torch.Generator().manual_seed(0)
    j3d = torch.randn(b, 21, 3, generator=g) * 30 + torch.tensor([0.0, 0.0, 500.0])
    return {
        "image": torch.rand(b, 3, 128, 128, generator=g),
        "joints2d": torch.rand(b, 21, 2, generator=g) * 128,
        "joints3d": j3d,
        "visible": torch.rand(b, 21, generator=g) > 0.3,
    }


def test_compute_loss_zero_for_perfect_output_and_parts():
    batch = _batch()
    out = _perfect_output(batch)
    total, parts = compute_loss(out, batch, LossWeights())
    assert set(parts) == {"coords2d", "bones", "heatmaps", "total"}
    assert total.item() == pytest.approx(0.0, abs=1e-5)
    # bones are compared in normalised units: a 3D error of one reference bone on one bone
    ref = skeleton.reference_bone_length(batch["joints3d"])
    batch2 = dict(batch, joints3d=batch["joints3d"].clone())
    batch2["joints3d"][:, 20, 0] += ref  # moves the pinky tip -> one bone changes by (1, 0, 0)
    _, parts = compute_loss(out, batch2)
    assert parts["bones"].item() == pytest.approx(0.5, rel=1e-4)
    # weights: total = 0.1 * px + 1 * bones + 0.5 * heatmaps
    out.coords2d = out.coords2d + 2.0
    total, parts = compute_loss(out, batch2, LossWeights(coords2d=0.1, bones=1.0, heatmaps=0.5))
    assert parts["coords2d"].item() == pytest.approx(2.0)
    assert total.item() == pytest.approx(0.1 * 2.0 + 0.5, rel=1e-4)


def test_occluded_joints_are_supervised_unlabelled_are_not():
    batch = _batch()
    out = _perfect_output(batch)
    hidden = (~batch["visible"]).nonzero()[0]
    b, j = int(hidden[0]), int(hidden[1])
    out.coords2d[b, j] += 10.0  # a wrong prediction for an occluded joint costs loss
    total, parts = compute_loss(out, batch)
    assert parts["coords2d"].item() > 0
    # ... unless the joint has no label at all; NaN labels there are harmless
    batch["has_label"] = torch.ones(3, 21, dtype=torch.bool)
    batch["has_label"][b, j] = False
    batch["joints2d"][b, j] = float("nan")
    out.coords2d.requires_grad_(True)
    total, parts = compute_loss(out, batch)
    assert parts["coords2d"].item() == pytest.approx(0.0, abs=1e-6)
    total.backward()
    assert torch.isfinite(out.coords2d.grad).all()


def test_missing_reference_bone_label_drops_3d_of_that_sample():
    batch = _batch(2)
    out = _perfect_output(batch)
    out.bones = out.bones + 1.0  # every bone off by (1, 1, 1): 30 per sample
    batch["has_label"] = torch.ones(2, 21, dtype=torch.bool)
    batch["has_label"][0, 10] = False  # middle PIP: sample 0 has no scale
    batch["joints3d"][0, 10] = float("nan")
    _, parts = compute_loss(out, batch)
    assert parts["bones"].item() == pytest.approx(30.0 / 2, rel=1e-5)


def test_compute_loss_reports_bad_batches():
    batch = _batch()
    out = _perfect_output(batch)
    with pytest.raises(KeyError, match="joints3d"):
        compute_loss(out, {k: v for k, v in batch.items() if k != "joints3d"})
    with pytest.raises(ValueError, match="joints2d"):
        compute_loss(out, dict(batch, joints2d=batch["joints2d"][:, :20]))
    with pytest.raises(KeyError, match="image_size"):
        compute_loss(out, {k: v for k, v in batch.items() if k != "image"})
    total, _ = compute_loss(out, {k: v for k, v in batch.items() if k != "image"}, image_size=128)
    assert total.item() == pytest.approx(0.0, abs=1e-5)


def test_latent_loss_js_divergence():
    g = torch.Generator().manual_seed(1)
    j = torch.rand(2, 21, 2, generator=g, dtype=torch.float64) * 100 + 14
    # the normalised Gaussian target itself: JS = 0
    q = gaussian_heatmaps(j, 128, 64, sigma=1.0)
    q = q / q.sum(dim=(-2, -1), keepdim=True)
    assert latent_loss(q, j, 128).item() == pytest.approx(0.0, abs=1e-12)
    # a map with all its mass on a far-away cell: disjoint supports, JS = log 2
    far = torch.zeros_like(q)
    far[..., 0, 0] = 1.0
    j_far = torch.full_like(j, 120.0)
    assert latent_loss(far, j_far, 128).item() == pytest.approx(torch.log(torch.tensor(2.0)).item(), abs=1e-6)
    # joints outside the image and masked joints add nothing (and NaN targets stay harmless)
    j_out = j.clone()
    j_out[0, 3] = torch.tensor([-5.0, 60.0])
    j_out[1, 4] = float("nan")
    mask = torch.ones(2, 21, dtype=torch.bool)
    mask[1, 4] = False
    flat = torch.full_like(q, 1.0 / (64 * 64))
    per = latent_loss(flat, j, 128)
    assert torch.isfinite(latent_loss(flat, j_out, 128, mask))
    assert latent_loss(flat, j_out, 128, mask).item() == pytest.approx(per.item(), rel=1e-2)
    # float64 gradcheck on a small map
    p = torch.softmax(torch.randn(1, 2, 36, generator=g, dtype=torch.float64), -1).reshape(1, 2, 6, 6)
    jj = torch.tensor([[[3.0, 5.0], [9.5, 2.0]]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: latent_loss(x, jj, 12), (p.requires_grad_(),))


def test_compute_loss_latent_term_is_optional():
    batch = _batch()
    out = _perfect_output(batch)
    out.probs = torch.full_like(out.probs, 1 / 4096)  # flat maps: JS > 0
    _, parts = compute_loss(out, batch, LossWeights(latent=0.0))
    assert "latent" not in parts
    total0, _ = compute_loss(out, batch, LossWeights(latent=0.0))
    total1, parts = compute_loss(out, batch, LossWeights(latent=2.0))
    assert "latent" in parts and parts["latent"].item() > 0
    assert total1.item() == pytest.approx(total0.item() + 2.0 * parts["latent"].item(), rel=1e-5)
