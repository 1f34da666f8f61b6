"""The hand model: 21-joint skeleton, bone lengths, joint limits, pose sampler, forward kinematics.

Hand frame (a RIGHT hand; left hands are made by mirroring the rendered image, see
``render.py``): origin at the wrist joint, ``x`` radial (towards the thumb), ``y`` distal
(towards the middle finger), ``z`` palmar (out of the palm, the side the fingers curl to).
``(x, y, z)`` is right-handed for a right hand. Units: millimetres.

Proportions. Segment lengths are joint-centre distances for a mid-sized adult hand (hand length
about 185 mm), rounded from the phalanx lengths of Buryanov & Kotiuk, "Proportions of Hand
Segments", Int. J. Morphol. 28(3):755-758, 2010 (proximal/middle/distal phalanges, e.g. middle
finger 44.6/26.3/17.4 mm; a few mm are added to distal segments for the fingertip pulp) and the
metacarpal lengths reported there (index 68, middle 64, ring 58, little 53, thumb 46 mm), with
the carpus added to reach the wrist joint. The reference bone (middle MCP -> PIP) is 44 mm at
scale 1 (compare ``skeleton.MEAN_REFERENCE_BONE_MM`` = 43 mm). Each sample scales the whole
hand by ``U(0.85, 1.15)`` and every segment by a further ``1 + U(-0.04, 0.04)``.

Joint angles (degrees; flexion positive towards the palm). Ranges follow the usual active
range-of-motion tables (e.g. Hume et al. 1990, J. Hand Surg. 15A:240; AAOS): finger MCP
flexion -25..90, abduction about -15..15 around each finger's rest splay, PIP 0..105,
DIP -5..80 coupled to PIP (DIP ~ 2/3 PIP, Rijpkema & Girard 1991), thumb CMC flexion -15..45
and abduction 0..60 (two axes), thumb MCP -10..60, thumb IP -15..80.

Pose parameters: (B, 20) radians, per finger ``[mcp_flex, mcp_abd, pip, dip]`` for index,
middle, ring, pinky (columns 0-15) and ``[cmc_flex, cmc_abd, mcp, ip]`` for the thumb (16-19).
"""

from __future__ import annotations

import math

import torch

from .rng import Stream

DEG = math.pi / 180.0

# ---------------------------------------------------------------------------------------------
# rest skeleton (scale 1, right hand, hand frame)

# finger bases (MCP joints; the thumb's CMC), mm
BASES_MM = {
    "thumb": (21.0, 26.0, 10.0),
    "index": (26.0, 86.0, 2.0),
    "middle": (6.0, 90.0, 0.0),
    "ring": (-12.0, 84.0, 2.0),
    "pinky": (-28.0, 75.0, 6.0),
}
# segment lengths base -> 2nd -> 3rd -> tip, mm (thumb: CMC->MCP, MCP->IP, IP->tip)
SEGMENTS_MM = {
    "thumb": (44.0, 32.0, 28.0),
    "index": (40.0, 24.0, 21.0),
    "middle": (44.0, 27.0, 22.0),
    "ring": (41.0, 26.0, 22.0),
    "pinky": (33.0, 19.0, 19.0),
}
# rest splay of each finger in the palm plane (degrees, positive radial)
SPLAY_DEG = {"index": 7.0, "middle": 0.0, "ring": -6.0, "pinky": -13.0}
# thumb rest orientation: swing radially in the palm plane, tilt out of it, pronate about its axis
THUMB_REST_DEG = {"radial": 48.0, "palmar": 32.0, "pronation": -70.0}

FINGER_ORDER = ("thumb", "index", "middle", "ring", "pinky")
LONG_FINGERS = ("index", "middle", "ring", "pinky")

# ---------------------------------------------------------------------------------------------
# limits: (20, 2) in degrees, column order of the pose vector

_FINGER_LIMITS = [(-25.0, 90.0), (-15.0, 15.0), (0.0, 105.0), (-5.0, 80.0)]
_THUMB_LIMITS = [(-15.0, 45.0), (0.0, 60.0), (-10.0, 60.0), (-15.0, 80.0)]
LIMITS_DEG = torch.tensor(_FINGER_LIMITS * 4 + _THUMB_LIMITS, dtype=torch.float32)
# DIP-PIP coupling: |dip - DIP_PIP_RATIO * pip| <= DIP_COUPLING_TOL_DEG
DIP_PIP_RATIO = 2.0 / 3.0
DIP_COUPLING_TOL_DEG = 20.0
SCALE_RANGE = (0.85, 1.15)
SEGMENT_JITTER = 0.04

POSE_FAMILIES = ("uniform", "open", "fist", "point", "pinch", "cylinder", "sphere")
# family -> probability in the default sampler
FAMILY_PROBS = (0.22, 0.16, 0.12, 0.1, 0.14, 0.14, 0.12)


def _family_table() -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and spread (degrees) of the 20 pose parameters for each family: (F, 20) each."""
    mean = torch.zeros(len(POSE_FAMILIES), 20)
    spread = torch.zeros(len(POSE_FAMILIES), 20)

    def fingers(fam, mcp, abd, pip, s_mcp, s_abd, s_pip, which=LONG_FINGERS):
        f = POSE_FAMILIES.index(fam)
        for name in which:
            k = LONG_FINGERS.index(name) * 4
            mean[f, k : k + 3] = torch.tensor([mcp, abd, pip])
            spread[f, k : k + 3] = torch.tensor([s_mcp, s_abd, s_pip])

    def thumb(fam, cmc_f, cmc_a, mcp, ip, s):
        f = POSE_FAMILIES.index(fam)
        mean[f, 16:20] = torch.tensor([cmc_f, cmc_a, mcp, ip])
        spread[f, 16:20] = torch.tensor(s)

    fingers("open", 5, 0, 8, 12, 8, 10)
    thumb("open", 0, 20, 5, 5, (10, 12, 10, 10))
    fingers("fist", 85, 0, 95, 8, 4, 8)
    thumb("fist", 35, 35, 45, 35, (8, 10, 10, 12))
    fingers("point", 80, 0, 95, 10, 4, 10)
    fingers("point", 5, 0, 5, 10, 5, 8, which=("index",))
    thumb("point", 30, 30, 35, 30, (10, 10, 12, 15))
    fingers("pinch", 25, 0, 40, 20, 6, 25)
    fingers("pinch", 45, 0, 45, 10, 4, 10, which=("index",))
    thumb("pinch", 20, 50, 15, 20, (8, 8, 10, 12))
    fingers("cylinder", 55, 0, 60, 10, 4, 12)
    thumb("cylinder", 25, 45, 20, 20, (8, 8, 10, 10))
    fingers("sphere", 35, 0, 40, 10, 6, 12)
    f = POSE_FAMILIES.index("sphere")
    for name, a in zip(LONG_FINGERS, (8, 0, -6, -12)):
        mean[f, LONG_FINGERS.index(name) * 4 + 1] = a
    thumb("sphere", 15, 50, 20, 15, (8, 8, 10, 10))
    return mean * DEG, spread * DEG


FAMILY_MEAN, FAMILY_SPREAD = _family_table()


# ---------------------------------------------------------------------------------------------
# pose sampler


def sample_pose(rs: Stream, family_probs=FAMILY_PROBS) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample joint angles for a batch: returns ``(angles (B, 20) rad, family (B,) int64)``.

    ``uniform`` draws every angle uniformly inside its limits; the grasp families draw around a
    family mean. DIP follows PIP with the coupling above; everything is clamped to the limits.
    """
    dev = rs.device
    fam = rs.choice(family_probs)
    lo, hi = (LIMITS_DEG * DEG).to(dev).unbind(1)
    u = rs.uniform(20)
    z = rs.normal(20)
    uniform = lo + (hi - lo) * u
    # uniform abduction is kept milder: wide spreads with curled fingers look unnatural
    uniform[:, 1:16:4] *= 0.6
    around = FAMILY_MEAN.to(dev)[fam] + FAMILY_SPREAD.to(dev)[fam] * z
    angles = torch.where((fam == 0)[:, None], uniform, around)
    # DIP-PIP coupling for the four long fingers
    pip = angles[:, 2:16:4]
    dip = DIP_PIP_RATIO * pip + (DIP_COUPLING_TOL_DEG * DEG * 0.5) * rs.normal(4).clamp(-2.0, 2.0)
    angles[:, 3:16:4] = dip
    return angles.clamp(lo, hi), fam


def sample_scales(rs: Stream) -> tuple[torch.Tensor, torch.Tensor]:
    """Global hand scale (B,) in SCALE_RANGE and per-segment factors (B, 5, 3)."""
    s = rs.uniform(1, *SCALE_RANGE)[:, 0]
    seg = 1.0 + rs.uniform(15, -SEGMENT_JITTER, SEGMENT_JITTER).reshape(-1, 5, 3)
    return s, seg


# ---------------------------------------------------------------------------------------------
# forward kinematics


def rot_x(a: torch.Tensor) -> torch.Tensor:
    """Rotations about x: (...) rad -> (..., 3, 3); positive turns +y towards +z."""
    c, s = torch.cos(a), torch.sin(a)
    o, z = torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([o, z, z, z, c, -s, z, s, c], -1).reshape(*a.shape, 3, 3)


def rot_y(a: torch.Tensor) -> torch.Tensor:
    """Rotations about y: (...) -> (..., 3, 3); positive turns +z towards +x."""
    c, s = torch.cos(a), torch.sin(a)
    o, z = torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([c, z, s, z, o, z, -s, z, c], -1).reshape(*a.shape, 3, 3)


def rot_z(a: torch.Tensor) -> torch.Tensor:
    """Rotations about z: (...) -> (..., 3, 3); positive turns +x towards +y (+y towards -x)."""
    c, s = torch.cos(a), torch.sin(a)
    o, z = torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([c, -s, z, s, c, z, z, z, o], -1).reshape(*a.shape, 3, 3)


def _rest_frames(device) -> torch.Tensor:
    """(5, 3, 3) rest orientation of each finger's base frame (columns: axes in the hand frame)."""
    frames = []
    t = THUMB_REST_DEG
    thumb = (
        rot_z(torch.tensor(-t["radial"] * DEG))
        @ rot_x(torch.tensor(t["palmar"] * DEG))
        @ rot_y(torch.tensor(t["pronation"] * DEG))
    )
    frames.append(thumb)
    for name in LONG_FINGERS:
        frames.append(rot_z(torch.tensor(-SPLAY_DEG[name] * DEG)))
    return torch.stack(frames).to(device)


def forward_kinematics(
    angles: torch.Tensor, scale: torch.Tensor | None = None, seg: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Joints of a right hand in the hand frame.

    Args:
        angles: (B, 20) radians (layout in the module docstring).
        scale: (B,) global scale (1 when None).
        seg: (B, 5, 3) per-segment length factors (1 when None), fingers in FINGER_ORDER.
    Returns:
        ``(joints (B, 21, 3) mm, frames (B, 5, 3, 3, 3))``: the canonical joints and, per finger
        and segment, the segment's frame (column 1 is the segment's direction).
    """
    B, dev = angles.shape[0], angles.device
    scale = torch.ones(B, device=dev) if scale is None else scale
    seg = torch.ones(B, 5, 3, device=dev) if seg is None else seg
    bases = torch.tensor([BASES_MM[f] for f in FINGER_ORDER], device=dev) * scale[:, None, None]
    lengths = torch.tensor([SEGMENTS_MM[f] for f in FINGER_ORDER], device=dev) * seg * scale[:, None, None]
    a = angles.reshape(B, 5, 4)[:, [4, 0, 1, 2, 3]]  # thumb first, like FINGER_ORDER
    # thumb column order is [cmc_flex, cmc_abd, mcp, ip]; fingers [mcp_flex, abd, pip, dip]
    flex1, abd, flex2, flex3 = a.unbind(-1)
    r = _rest_frames(dev).expand(B, 5, 3, 3)
    # abduction about the base frame's z (positive radial = towards +x), then flexion about x
    r1 = r @ rot_z(-abd) @ rot_x(flex1)
    r2 = r1 @ rot_x(flex2)
    r3 = r2 @ rot_x(flex3)
    frames = torch.stack([r1, r2, r3], 2)  # (B, 5, 3, 3, 3)
    steps = frames[..., :, 1] * lengths[..., None]  # (B, 5, 3, 3)
    chain = bases[:, :, None, :] + torch.cumsum(steps, 2)  # (B, 5, 3, 3)
    pts = torch.cat([bases[:, :, None, :], chain], 2)  # (B, 5, 4, 3)
    joints = torch.cat([torch.zeros(B, 1, 3, device=dev), pts.reshape(B, 20, 3)], 1)
    return joints, frames


def segment_lengths_range() -> tuple[torch.Tensor, torch.Tensor]:
    """(20,) min and max bone lengths (mm) the sampler can produce, canonical bone order."""
    lo, hi = [], []
    smin = SCALE_RANGE[0] * (1 - SEGMENT_JITTER)
    smax = SCALE_RANGE[1] * (1 + SEGMENT_JITTER)
    for f in FINGER_ORDER:
        base = torch.tensor(BASES_MM[f]).norm().item()
        lo += [base * SCALE_RANGE[0]] + [L * smin for L in SEGMENTS_MM[f]]
        hi += [base * SCALE_RANGE[1]] + [L * smax for L in SEGMENTS_MM[f]]
    return torch.tensor(lo), torch.tensor(hi)
