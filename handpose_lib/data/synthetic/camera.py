"""Cameras: full-frame pinhole intrinsics, viewpoint (global hand rotation), placement, crops.

The scene is built in the camera frame of a 640 x 480 pinhole camera (SynthHands-like: focal
length around 617 px). A crop camera is that camera followed by a scale and a shift of the image
plane, so ``K_crop = A @ K_full`` with ``A = [[s, 0, -s x0], [0, s, -s y0], [0, 0, 1]]`` for a
square box of side ``S`` at ``(x0, y0)`` and ``s = crop_size / S``: rendering through ``K_crop``
gives exactly the pixels one would get by cutting the box out of the full frame and resizing it.
"""

from __future__ import annotations

import math

import torch

from .hand import DEG, rot_x, rot_z
from .rng import Stream

FRAME_W, FRAME_H = 640, 480
FOCAL_RANGE = (500.0, 740.0)  # px at 640 x 480
DEPTH_RANGE = (250.0, 700.0)  # mm, palm centre
PALM_CENTRE_MM = (0.0, 48.0, 0.0)  # hand frame, scale 1
WRIST_FLEX_DEG = (-55.0, 55.0)
WRIST_DEV_DEG = (-15.0, 22.0)


def _normalize(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-9)


def full_intrinsics(rs: Stream) -> torch.Tensor:
    """(B, 3, 3) intrinsics of the 640 x 480 camera: f ~ U(FOCAL_RANGE), centre +-8 px."""
    f = rs.uniform(1, *FOCAL_RANGE)[:, 0]
    c = rs.uniform(2, -8.0, 8.0)
    K = torch.zeros(f.shape[0], 3, 3, device=f.device)
    K[:, 0, 0] = f
    K[:, 1, 1] = f
    K[:, 0, 2] = FRAME_W / 2 + c[:, 0]
    K[:, 1, 2] = FRAME_H / 2 + c[:, 1]
    K[:, 2, 2] = 1.0
    return K


def sample_rotation(rs: Stream, egocentric: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) hand-to-camera rotations (columns: the hand's radial, distal, palmar axes).

    Egocentric: the fingers point away from the camera and up the image, the back of the hand
    mostly towards the camera (roll around the finger axis ~ N(0, 55 deg)).
    Third-person: finger direction anywhere with |z| <= 0.65 (not straight at or away from
    the camera), any roll.
    """
    dev = egocentric.device
    g = rs.normal(3)
    ego_dir = _normalize(torch.stack([0.35 * g[:, 0], -0.75 + 0.25 * g[:, 1], 0.65 + 0.0 * g[:, 2]], -1))
    az = rs.uniform(1, 0.0, 2 * math.pi)[:, 0]
    zc = rs.uniform(1, -0.65, 0.65)[:, 0]
    rho = torch.sqrt(1 - zc * zc)
    third_dir = torch.stack([rho * torch.cos(az), rho * torch.sin(az), zc], -1)
    y = torch.where(egocentric[:, None], ego_dir, third_dir)
    ref = torch.where(
        egocentric[:, None],
        torch.tensor([0.0, 0.3, 1.0], device=dev).expand_as(y),
        torch.tensor([0.0, 0.0, 1.0], device=dev).expand_as(y),
    )
    z0 = _normalize(ref - (ref * y).sum(-1, keepdim=True) * y)
    roll = torch.where(egocentric, rs.normal(1)[:, 0] * 55.0 * DEG, rs.uniform(1, -math.pi, math.pi)[:, 0])
    x0 = torch.cross(y, z0, dim=-1)
    # rotate (x0, z0) about y by the roll angle
    c, s = torch.cos(roll)[:, None], torch.sin(roll)[:, None]
    z = c * z0 + s * x0
    x = torch.cross(y, z, dim=-1)
    return torch.stack([x, y, z], -1)


def sample_wrist(rs: Stream, R: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) forearm orientation relative to the hand (wrist flexion and deviation).

    The sign of the flexion is chosen so that the forearm stub does not point at the camera
    more than it must (camera-frame z of its direction above -0.5 when possible): an arm
    reaching from behind the camera to in front of the hand would hide it in most images.
    """
    u = rs.uniform(2)
    flex = (WRIST_FLEX_DEG[0] + (WRIST_FLEX_DEG[1] - WRIST_FLEX_DEG[0]) * u[:, 0]) * DEG
    dev = (WRIST_DEV_DEG[0] + (WRIST_DEV_DEG[1] - WRIST_DEV_DEG[0]) * u[:, 1]) * DEG
    w1 = rot_x(-flex) @ rot_z(dev)
    w2 = rot_x(flex) @ rot_z(dev)
    z1 = -(R @ w1)[:, 2, 1]  # camera-frame z of the forearm direction -w[:, :, 1]
    z2 = -(R @ w2)[:, 2, 1]
    use2 = (z1 < -0.5) & (z2 > z1)
    return torch.where(use2[:, None, None], w2, w1)


def sample_translation(rs: Stream, K: torch.Tensor, R: torch.Tensor, scale, egocentric) -> torch.Tensor:
    """(B, 3) camera-frame position of the wrist so that the palm centre lies at depth
    U(DEPTH_RANGE) and projects inside the central part of the frame (lower half when
    egocentric)."""
    u = rs.uniform(3)
    z = DEPTH_RANGE[0] + (DEPTH_RANGE[1] - DEPTH_RANGE[0]) * u[:, 0]
    px = FRAME_W * (0.2 + 0.6 * u[:, 1])
    py = torch.where(egocentric, FRAME_H * (0.4 + 0.45 * u[:, 2]), FRAME_H * (0.2 + 0.6 * u[:, 2]))
    ray = torch.stack(
        [(px - K[:, 0, 2]) / K[:, 0, 0], (py - K[:, 1, 2]) / K[:, 1, 1], torch.ones_like(px)], -1
    )
    centre = torch.tensor(PALM_CENTRE_MM, device=K.device) * scale[:, None]
    return ray * z[:, None] - (R @ centre[:, :, None])[..., 0]


def crop_box(rs: Stream, uv: torch.Tensor, margin=(1.25, 1.6), jitter: float = 0.08) -> torch.Tensor:
    """Square crop boxes around 2D joints: (B, 21, 2) -> (B, 3) as (x0, y0, side) in pixels.

    Side = longest side of the joints' box times U(margin); the centre is moved by up to
    ``jitter`` of the side, as a detector's box would be.
    """
    lo = uv.amin(1)
    hi = uv.amax(1)
    u = rs.uniform(3)
    side = (hi - lo).amax(-1).clamp_min(20.0) * (margin[0] + (margin[1] - margin[0]) * u[:, 0])
    centre = (lo + hi) / 2 + (u[:, 1:3] - 0.5) * 2 * jitter * side[:, None]
    return torch.cat([centre - side[:, None] / 2, side[:, None]], -1)


def crop_intrinsics(K: torch.Tensor, box: torch.Tensor, size: int) -> torch.Tensor:
    """K of the crop: (B, 3, 3) full-frame K, (B, 3) boxes -> (B, 3, 3)."""
    s = size / box[:, 2]
    A = torch.zeros_like(K)
    A[:, 0, 0] = s
    A[:, 1, 1] = s
    A[:, 0, 2] = -s * box[:, 0]
    A[:, 1, 2] = -s * box[:, 1]
    A[:, 2, 2] = 1.0
    return A @ K
