"""Occluding objects: grasped objects and objects between the camera and the hand.

Each sample has fixed object slots (so a batch is one set of tensors); a slot is switched on or
off per sample. Slots: spheres 0-1, boxes 2-3, capped cylinders 4-5 (object ids 0-5).

- Grasped objects (controlled by the pose family): a cylinder across the fingers for the
  ``cylinder`` grasp, a ball in the hand for ``sphere``, a small ball between thumb and index
  tips for ``pinch``. Present with probability ``min(1, 1.3 * level)``.
- Objects in front: a ball, two boxes and a thin bar (a long cylinder), each present with
  probability ``0.5 * level``, placed on the line of sight of a random joint 30-150 mm in front
  of it, sized with the level (``0.6 + 0.8 * level`` times a random base size).

``level`` (0..1) is the configuration's occlusion level; 0 means no objects at all.
Textures: plain, checker or stripes (in object-space millimetres), random colours.
"""

from __future__ import annotations

import torch

from .hand import POSE_FAMILIES
from .rng import Stream

NUM_SPHERES, NUM_BOXES, NUM_CYLINDERS = 2, 2, 2
NUM_OBJECTS = NUM_SPHERES + NUM_BOXES + NUM_CYLINDERS
TEX_PLAIN, TEX_CHECKER, TEX_STRIPES = 0, 1, 2


def _normalize(v):
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-9)


def quat_to_rot(q: torch.Tensor) -> torch.Tensor:
    """(..., 4) quaternions (w, x, y, z), any norm -> (..., 3, 3) rotations."""
    q = _normalize(q)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        -1,
    ).reshape(*q.shape[:-1], 3, 3)  # fmt: skip


def hsv_to_rgb(h, s, v):
    """(...) each in [0, 1] -> (..., 3)."""
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], -1)
    return v[..., None] - v[..., None] * s[..., None] * (torch.minimum(k, 4 - k).clamp(0, 1))


def sample_objects(rs: Stream, level: float, family, joints_cam, R, wrist_cam, scale) -> dict:
    """Sample the object slots of a batch (camera frame, mm).

    Args:
        level: occlusion level in [0, 1].
        family: (B,) pose family ids; joints_cam (B, 21, 3); R (B, 3, 3) hand-to-camera;
        wrist_cam (B, 3); scale (B,).
    Returns:
        dict with ``sph_c (B,2,3) sph_r (B,2) box_c (B,2,3) box_rot (B,2,3,3) box_half (B,2,3)
        cyl_a (B,2,3) cyl_b (B,2,3) cyl_r (B,2) active (B,6) bool color (B,6,3) tex (B,6) int64
        tex_scale (B,6) tex_axis (B,6,3) grasped (B,) bool``.
    """
    B, dev = family.shape[0], family.device
    s = scale[:, None]
    u = rs.uniform(24)
    g = rs.normal(24)

    def hand_point(p):  # hand-frame point (B, 3) -> camera frame
        return wrist_cam + (R @ p[..., None])[..., 0]

    grasp_on = u[:, 0] < min(1.0, 1.3 * level)
    is_cyl = grasp_on & (family == POSE_FAMILIES.index("cylinder"))
    is_sph = grasp_on & (family == POSE_FAMILIES.index("sphere"))
    is_pinch = grasp_on & (family == POSE_FAMILIES.index("pinch"))

    # grasped cylinder (slot cylinder 0): across the fingers, in front of the palm
    cr = (18.0 + 8.0 * u[:, 1:2]) * s
    c_hand = torch.cat([2.0 * s, 80.0 * s, 12.0 * s + cr], -1)
    axis = _normalize(R[:, :, 0] + 0.15 * g[:, 0:3])
    half_len = (50.0 + 50.0 * u[:, 2:3]) * s
    cyl0_c = hand_point(c_hand) + axis * 10.0 * g[:, 3:4]
    cyl0_a, cyl0_b = cyl0_c - axis * half_len, cyl0_c + axis * half_len

    # grasped ball (slot sphere 0) or pinched ball
    br = (28.0 + 12.0 * u[:, 3:4]) * s
    ball_c = hand_point(torch.cat([0.0 * s, 78.0 * s, 10.0 * s + br], -1))
    tips = joints_cam[:, [4, 8]]
    pinch_c = tips.mean(1)
    pinch_r = ((tips[:, 0] - tips[:, 1]).norm(dim=-1, keepdim=True) * 0.5).clamp(6.0, 18.0) + 2.0
    sph0_c = torch.where(is_pinch[:, None], pinch_c, ball_c)
    sph0_r = torch.where(is_pinch[:, None], pinch_r, br)

    # objects in front of the hand: ball (sphere 1), boxes 0-1, bar (cylinder 1)
    jid = (u[:, 4:8] * 21).long().clamp_max(20)  # (B, 4) target joints
    target = torch.gather(joints_cam, 1, jid[..., None].expand(B, 4, 3)) + 10.0 * g[:, 4:16].reshape(B, 4, 3)
    dist = target.norm(dim=-1, keepdim=True)
    ahead = (30.0 + 120.0 * u[:, 8:12, None]).minimum(dist - 120.0).clamp_min(0.0)
    place = target * (1 - ahead / dist)  # (B, 4, 3)
    size = 0.6 + 0.8 * level
    front_on = u[:, 12:16] < 0.5 * level
    sph1_r = (12.0 + 23.0 * u[:, 16:17]) * size
    box_half = (8.0 + 32.0 * rs.uniform(6).reshape(B, 2, 3)) * size
    box_rot = quat_to_rot(rs.normal(8).reshape(B, 2, 4))
    bar_dir = _normalize(torch.cat([g[:, 16:18], 0.3 * g[:, 18:19]], -1))
    bar_half = 75.0 + 100.0 * u[:, 17:18]
    bar_r = 4.0 + 8.0 * u[:, 18:19]
    cyl1_a, cyl1_b = place[:, 3] - bar_dir * bar_half, place[:, 3] + bar_dir * bar_half

    out = {
        "sph_c": torch.stack([sph0_c, place[:, 0]], 1),
        "sph_r": torch.cat([sph0_r, sph1_r], 1),
        "box_c": place[:, 1:3],
        "box_rot": box_rot,
        "box_half": box_half,
        "cyl_a": torch.stack([cyl0_a, cyl1_a], 1),
        "cyl_b": torch.stack([cyl0_b, cyl1_b], 1),
        "cyl_r": torch.cat([cr, bar_r], 1),
        "active": torch.stack(
            [is_sph | is_pinch, front_on[:, 0], front_on[:, 1], front_on[:, 2], is_cyl, front_on[:, 3]], 1
        ),
        "grasped": is_cyl | is_sph | is_pinch,
    }
    # appearance
    v = rs.uniform(NUM_OBJECTS * 6).reshape(B, NUM_OBJECTS, 6)
    out["color"] = hsv_to_rgb(v[..., 0], 0.15 + 0.75 * v[..., 1], 0.25 + 0.7 * v[..., 2])
    out["tex"] = (v[..., 3] * 3).long().clamp_max(2)
    out["tex_scale"] = 5.0 + 20.0 * v[..., 4]
    out["tex_axis"] = _normalize(rs.normal(NUM_OBJECTS * 3).reshape(B, NUM_OBJECTS, 3))
    del dev
    return out
