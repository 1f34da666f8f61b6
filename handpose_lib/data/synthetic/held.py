"""Objects hands hold (scene extras, ``extras.py``): a bottle, a cup, a phone, a pen, a ball,
each built from a few shapes (``shapes.py``) and put in the grasp of the pose families that hold
things, where ``occluders.py`` puts its grasped cylinder and balls:

- ``cylinder`` grasp: a bottle (body, shoulder, neck, cap) or a cup (its top the drink) whose
  axis is the grasp's (across the fingers, in front of the palm), as wide as the grasp;
- ``sphere`` grasp: a ball in the hand;
- ``pinch``: a pen between the thumb and index tips, its back end over the web of the thumb;
- ``open`` hand: a phone lying on the palm, its screen away from the palm.

A held object hides the fingers behind it and is hidden by the fingers in front of it (one
depth buffer, ``extras.composite``); the joints it hides are hidden by an object. When a sample
holds one of these, ``occluders.py``'s own grasped object of that sample is switched off.
"""

from __future__ import annotations

import torch

from .hand import POSE_FAMILIES
from .shapes import (
    Parts,
    box,
    box_template,
    ellipsoid,
    frame_from_axis,
    rotate,
    sphere_template,
    tube,
    tube_template,
    unit,
)

MAT_MAIN, MAT_SECOND = 4, 5  # materials of the extras pass (``extras.MATERIALS``)
KINDS = ("bottle", "cup", "phone", "pen", "ball")


def holds(family: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """(B,) the kind (index into KINDS, -1: none) a hand of pose family ``family`` (B,) holds, from
    a uniform draw u (B,)."""
    f = {name: family == POSE_FAMILIES.index(name) for name in ("cylinder", "sphere", "pinch", "open")}
    kind = torch.full_like(family, -1)
    kind = torch.where(f["cylinder"], torch.where(u < 0.55, 0, 1), kind)
    kind = torch.where(f["sphere"], 4, kind)
    kind = torch.where(f["pinch"] & (u < 0.75), 3, kind)
    kind = torch.where(f["open"] & (u < 0.6), 2, kind)
    return kind


def _tube_parts(parts: Parts, a, b, r0, r1, hint, on, side_mat, cap_mat=None) -> None:
    V, N = tube(a, b, r0, r1, hint)
    _, faces, part = tube_template()
    mat = torch.full_like(part, side_mat) if cap_mat is None else torch.where(part == 2, cap_mat, side_mat)
    parts.add(V, N, faces, mat, on)


def add_held(parts: Parts, kind, prm: dict, joints, R, T, scale) -> None:
    """Every kind's parts (switched on where ``kind`` (B,) says), in the camera frame.

    Args:
        prm: ``extras.sample_extras``'s draws (``held_u`` (B, 8) uniforms, ``held_g`` (B, 3) normals).
        joints: (B, 21, 3) camera-frame joints; R (B, 3, 3), T (B, 3) the hand's pose; scale (B,).
    """
    u, g = prm["held_u"], prm["held_g"]
    s = scale[:, None]

    def at(p):  # hand-frame point (B, 3) -> camera frame
        return T + rotate(R, p[:, None])[:, 0]

    radial, distal, palmar = R[:, :, 0], R[:, :, 1], R[:, :, 2]
    # the cylinder grasp of occluders.py: centre, axis, radius
    cr = (18.0 + 8.0 * u[:, 0:1]) * s
    centre = at(torch.cat([2.0 * s, 80.0 * s, 12.0 * s + cr], -1))
    axis = unit(radial + 0.15 * g)
    # bottle: body, shoulder cone, neck, cap
    r = cr[:, 0] * 1.05
    length = (150.0 + 80.0 * u[:, 1]) * scale
    a = centre - axis * (length * (0.35 + 0.2 * u[:, 2]))[:, None]
    b = a + axis * length[:, None]
    on = kind == 0
    _tube_parts(parts, a, b, r, r, palmar, on, MAT_MAIN)
    sh = b + axis * (0.16 * length)[:, None]
    neck_r = r * 0.38
    _tube_parts(parts, b, sh, r, neck_r, palmar, on, MAT_MAIN)
    cap = sh + axis * (0.12 * length)[:, None]
    _tube_parts(parts, sh, cap, neck_r, neck_r, palmar, on, MAT_MAIN)
    _tube_parts(parts, cap, cap + axis * 14.0, neck_r * 1.12, neck_r * 1.12, palmar, on, MAT_SECOND)
    # cup: wider than the grasp, its top (the drink) the second material
    rc = cr[:, 0] * 1.2 + 6.0
    hc = (85.0 + 25.0 * u[:, 3]) * scale
    a = centre - axis * (hc * (0.45 + 0.25 * u[:, 2]))[:, None]
    _tube_parts(parts, a, a + axis * hc[:, None], rc * 0.88, rc, palmar, kind == 1, MAT_MAIN, MAT_SECOND)
    # phone on the palm of an open hand: body, screen on the far side from the palm
    ph = torch.stack([(36.0 + 4.0 * u[:, 4]), (72.0 + 10.0 * u[:, 5]), 4.2 + torch.zeros_like(u[:, 4])], -1)
    tilt = 0.25 * g[:, 0:1]
    long_ax = unit(distal + tilt * radial)
    Rm = torch.stack([unit(torch.cross(long_ax, palmar, dim=-1)), long_ax, palmar], -1)
    c = at(torch.cat([0.0 * s, (70.0 + 15.0 * u[:, 6:7]) * s, 14.0 * s + 4.5], -1))
    V, N = box(c, Rm, ph)
    _, _, bf, bpart = box_template()
    parts.add(V, N, bf, torch.where(bpart == 5, MAT_SECOND, MAT_MAIN), kind == 2)
    # pen between the thumb and index tips, its back over the web of the thumb
    pinch = 0.5 * (joints[:, 4] + joints[:, 8])
    web = 0.5 * (joints[:, 2] + joints[:, 5])
    d = unit(web - pinch + 25.0 * s * unit(g))
    pr = (3.8 + 1.5 * u[:, 7]) * scale
    tip = pinch - d * (22.0 * s)
    end = pinch + d * (120.0 * s)
    _tube_parts(parts, tip + d * (12.0 * s), end, pr, pr, palmar, kind == 3, MAT_MAIN)
    _tube_parts(parts, tip, tip + d * (12.0 * s), pr * 0.25, pr, palmar, kind == 3, MAT_SECOND)
    # ball in the sphere grasp (occluders.py's)
    br = (28.0 + 12.0 * u[:, 0:1]) * s
    bc = at(torch.cat([0.0 * s, 78.0 * s, 10.0 * s + br], -1))
    V, N = ellipsoid(bc, frame_from_axis(axis, palmar), br.expand(-1, 3))
    parts.add(V, N, sphere_template()[1], MAT_MAIN, kind == 4)
