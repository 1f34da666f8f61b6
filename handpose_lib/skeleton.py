"""The hand as a kinematic tree: joint order, bones, reorder maps.

Layer 1 of the library: imports nothing of ``handpose_lib``.

Canonical joint order (the order of MediaPipe Hands, FreiHAND and OpenPose), 21 joints,
root to tip per finger::

    0 wrist
    1-4   thumb  CMC, MCP, IP,  tip
    5-8   index  MCP, PIP, DIP, tip
    9-12  middle MCP, PIP, DIP, tip
    13-16 ring   MCP, PIP, DIP, tip
    17-20 pinky  MCP, PIP, DIP, tip

Bones (the paper's eq. 3): bone ``b`` (``b = 0..19``) belongs to joint ``j = b + 1`` and is
``J_j - J_parent(j)``. Every function here accepts numpy arrays and torch tensors with any
number of leading batch dimensions; the torch versions are differentiable and stay on the
input's device and dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np

NUM_JOINTS = 21
NUM_BONES = 20

JOINT_NAMES: tuple[str, ...] = (
    "wrist",
    "thumb_cmc",
    "thumb_mcp",
    "thumb_ip",
    "thumb_tip",
    "index_mcp",
    "index_pip",
    "index_dip",
    "index_tip",
    "middle_mcp",
    "middle_pip",
    "middle_dip",
    "middle_tip",
    "ring_mcp",
    "ring_pip",
    "ring_dip",
    "ring_tip",
    "pinky_mcp",
    "pinky_pip",
    "pinky_dip",
    "pinky_tip",
)

# parent of each joint; -1 for the root (wrist)
PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19)

# the 20 bones as (parent, child) joint pairs; bone b ends at joint b + 1
BONES: tuple[tuple[int, int], ...] = tuple((PARENTS[j], j) for j in range(1, NUM_JOINTS))
BONE_NAMES: tuple[str, ...] = tuple(f"{JOINT_NAMES[p]}->{JOINT_NAMES[c]}" for p, c in BONES)

FINGERS: dict[str, tuple[int, ...]] = {
    "thumb": (1, 2, 3, 4),
    "index": (5, 6, 7, 8),
    "middle": (9, 10, 11, 12),
    "ring": (13, 14, 15, 16),
    "pinky": (17, 18, 19, 20),
}
FINGER_NAMES: tuple[str, ...] = tuple(FINGERS)

# plot colours per finger (a colour-blind friendly palette), and the wrist
FINGER_COLORS: dict[str, str] = {
    "wrist": "#444444",
    "thumb": "#e6194b",
    "index": "#f58231",
    "middle": "#3cb44b",
    "ring": "#4363d8",
    "pinky": "#911eb4",
}


def joint_finger(j: int) -> str:
    """Name of the finger a joint belongs to (``"wrist"`` for joint 0)."""
    return "wrist" if j == 0 else FINGER_NAMES[(j - 1) // 4]


JOINT_COLORS: tuple[str, ...] = tuple(FINGER_COLORS[joint_finger(j)] for j in range(NUM_JOINTS))
BONE_COLORS: tuple[str, ...] = tuple(FINGER_COLORS[joint_finger(c)] for _, c in BONES)

# Reference bone for scale alignment: middle MCP -> middle PIP (hand3d's eval_full.py).
REFERENCE_BONE: tuple[int, int] = (9, 10)


def _path_matrix() -> np.ndarray:
    """(21, 20) matrix A with A[j, b] = 1 when bone b lies on the path root -> joint j."""
    a = np.zeros((NUM_JOINTS, NUM_BONES), dtype=np.float64)
    for j in range(1, NUM_JOINTS):
        k = j
        while k > 0:
            a[j, k - 1] = 1.0
            k = PARENTS[k]
    return a


PATH_MATRIX: np.ndarray = _path_matrix()
PATH_MATRIX.setflags(write=False)
_PATH_MATRIX_T = None  # torch copy, made on first use (torch is imported lazily)


# ----------------------------------------------------------------------------------------
# helpers shared by numpy and torch


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _check_last_dims(x: Any, n: int, what: str) -> None:
    shape = tuple(x.shape)
    if len(shape) < 2 or shape[-2] != n:
        raise ValueError(f"{what}: expected shape (..., {n}, D), got {shape}")


# ----------------------------------------------------------------------------------------
# bones <-> joints


def joints_to_bones(joints):
    """Bone vectors from joints (eq. 3): bone b = J[b+1] - J[parent(b+1)].

    Args:
        joints: (..., 21, D) numpy array or torch tensor (D = 2 or 3).
    Returns:
        (..., 20, D), same type, dtype and device.
    """
    _check_last_dims(joints, NUM_JOINTS, "joints_to_bones")
    child = list(range(1, NUM_JOINTS))
    parent = list(PARENTS[1:])
    return joints[..., child, :] - joints[..., parent, :]


def bones_to_joints(bones, root=None):
    """Joints from bones by summing the bones along each root-to-joint path.

    ``J_j = root + sum of the bones on the path root -> j``, written as one matrix product
    with :data:`PATH_MATRIX` so it is batched and differentiable.

    Args:
        bones: (..., 20, D) numpy array or torch tensor.
        root: optional (..., D) position of the wrist; the origin when ``None``.
    Returns:
        (..., 21, D), same type, dtype and device as ``bones``.
    """
    _check_last_dims(bones, NUM_BONES, "bones_to_joints")
    if _is_torch(bones):
        import torch

        global _PATH_MATRIX_T
        if _PATH_MATRIX_T is None:
            _PATH_MATRIX_T = torch.from_numpy(PATH_MATRIX.copy())
        a = _PATH_MATRIX_T.to(dtype=bones.dtype, device=bones.device)
        joints = torch.einsum("jb,...bd->...jd", a, bones)
        if root is not None:
            joints = joints + torch.as_tensor(root, dtype=bones.dtype, device=bones.device)[..., None, :]
        return joints
    bones = np.asarray(bones)
    joints = np.einsum("jb,...bd->...jd", PATH_MATRIX.astype(bones.dtype, copy=False), bones)
    if root is not None:
        joints = joints + np.asarray(root, dtype=bones.dtype)[..., None, :]
    return joints


def bone_lengths(joints):
    """Lengths of the 20 bones: (..., 21, D) -> (..., 20)."""
    b = joints_to_bones(joints)
    if _is_torch(b):
        return b.norm(dim=-1)
    return np.linalg.norm(b, axis=-1)


def reference_bone_length(joints):
    """Length of the reference bone (middle MCP -> PIP): (..., 21, D) -> (...)."""
    p, c = REFERENCE_BONE
    d = joints[..., c, :] - joints[..., p, :]
    if _is_torch(d):
        return d.norm(dim=-1)
    return np.linalg.norm(d, axis=-1)


# ----------------------------------------------------------------------------------------
# reorder maps: "source index for each canonical slot", canonical = source[..., MAP, :]

REORDER_MAPS: dict[str, tuple[int, ...]] = {
    "canonical": tuple(range(21)),
    "mediapipe": tuple(range(21)),
    "freihand": tuple(range(21)),
    "openpose": tuple(range(21)),
    "ganerated": tuple(range(21)),
    "synthhands": tuple(range(21)),
    # STB: palm centre, then little, ring, middle, index, thumb (each MCP -> tip).
    # The palm centre stands in the wrist slot until converted (see stb_palm_to_wrist).
    "stb": (0, 17, 18, 19, 20, 13, 14, 15, 16, 9, 10, 11, 12, 5, 6, 7, 8, 1, 2, 3, 4),
    # RHD, one hand (left: joints 0-20; right: add 21): wrist, then each finger TIP -> MCP.
    "rhd": (0, 4, 3, 2, 1, 8, 7, 6, 5, 12, 11, 10, 9, 16, 15, 14, 13, 20, 19, 18, 17),
    # InterHand2.6M, one hand: fingers tip first, wrist last.
    "interhand": (20, 3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12, 19, 18, 17, 16),
}


def to_canonical(joints, dataset: str, offset: int = 0):
    """Reorder a data set's joints into the canonical order.

    Args:
        joints: (..., J, D) array or tensor in the data set's order (J >= 21 + offset).
        dataset: a key of :data:`REORDER_MAPS` (``"stb"``, ``"rhd"``, ``"interhand"``, ...).
        offset: added to every index; e.g. 21 for RHD's right hand.
    Returns:
        (..., 21, D) in canonical order.
    """
    key = dataset.lower()
    if key not in REORDER_MAPS:
        raise KeyError(f"unknown joint order {dataset!r}; known: {sorted(REORDER_MAPS)}")
    idx = [i + offset for i in REORDER_MAPS[key]]
    if joints.shape[-2] < max(idx) + 1:
        raise ValueError(f"{dataset}: need at least {max(idx) + 1} joints, got shape {tuple(joints.shape)}")
    return joints[..., idx, :]


def from_canonical(joints, dataset: str):
    """Inverse of :func:`to_canonical` for the 21-joint orders: canonical -> data set order."""
    m = REORDER_MAPS[dataset.lower()]
    inv = [0] * 21
    for slot, src in enumerate(m):
        inv[src] = slot
    return joints[..., inv, :]


# ----------------------------------------------------------------------------------------
# STB palm centre -> wrist

STB_WRIST_VARIANTS = ("ring", "middle", "mean_mcp", "palm")


def stb_palm_to_wrist(joints, variant: str = "ring"):
    """Replace STB's palm centre (canonical slot 0) by an estimated wrist.

    Variants (``P`` the palm centre):

    - ``"ring"`` (default, hand3d ``BinaryDbReaderSTB.py``): ``W = ringMCP + 2 (P - ringMCP)``;
    - ``"middle"``: ``W = midMCP + 2.2 (P - midMCP)``;
    - ``"mean_mcp"``: ``M`` the mean of the four finger MCPs, ``W = M + 2.25 (P - M)``;
    - ``"palm"``: keep the palm centre as root (hand3d's palm-to-palm STB protocol).

    Args:
        joints: (..., 21, D) in canonical order with the palm centre in slot 0.
    Returns:
        a copy with slot 0 replaced.
    """
    if variant not in STB_WRIST_VARIANTS:
        raise ValueError(f"unknown STB wrist variant {variant!r}; choose one of {STB_WRIST_VARIANTS}")
    out = joints.clone() if _is_torch(joints) else np.array(joints, copy=True)
    palm = joints[..., 0, :]
    if variant == "palm":
        return out
    if variant == "ring":
        base, k = joints[..., 13, :], 2.0
    elif variant == "middle":
        base, k = joints[..., 9, :], 2.2
    else:
        base, k = (
            (joints[..., 5, :] + joints[..., 9, :] + joints[..., 13, :] + joints[..., 17, :]) / 4.0,
            2.25,
        )
    out[..., 0, :] = base + k * (palm - base)
    return out


# ----------------------------------------------------------------------------------------
# left / right


def mirror_x(joints, width: float | None = None):
    """Mirror joints across the image's vertical axis (a left hand becomes a right hand).

    3D camera coordinates (``width=None``): ``x -> -x``. 2D pixels: ``u -> width - u``
    (pixel-edge convention, where the image spans ``[0, width]``).
    """
    out = joints.clone() if _is_torch(joints) else np.array(joints, copy=True)
    out[..., 0] = -joints[..., 0] if width is None else width - joints[..., 0]
    return out


def chirality(joints):
    """Which hand a 3D skeleton is, as a signed volume: (..., 21, 3) -> (...).

    The determinant of the wrist->index MCP, wrist->pinky MCP and wrist->thumb MCP vectors
    (mm^3 for joints in mm; any units, any root). The thumb's base sits in front of the palm's
    plane, on the side the fingers flex to, so the sign is the hand's: positive for a right
    hand, negative for a left one, and a mirror image (:func:`mirror_x`) flips it. A rotation
    or a scale does not change the sign, so it reads the side off predicted 3D in any frame.
    """
    _check_last_dims(joints, NUM_JOINTS, "joints")
    if joints.shape[-1] != 3:
        raise ValueError(f"joints: expected 3D joints (..., 21, 3), got {tuple(joints.shape)}")
    w = joints[..., 0, :]
    cols = [joints[..., JOINT_NAMES.index(n), :] - w for n in ("index_mcp", "pinky_mcp", "thumb_mcp")]
    if _is_torch(joints):
        import torch

        return torch.linalg.det(torch.stack(cols, -1))
    return np.linalg.det(np.stack(cols, -1))


def side_from_3d(joints) -> list[str]:
    """``"right"`` or ``"left"`` for each skeleton of (..., 21, 3) by :func:`chirality`
    (a flat list in row-major order of the leading dimensions)."""
    c = chirality(joints)
    c = c.detach().cpu().numpy() if _is_torch(c) else np.asarray(c)
    return ["right" if v > 0 else "left" for v in np.ravel(c)]


# ----------------------------------------------------------------------------------------
# 3D units: the network predicts root-relative joints in units of the reference bone.
# This is the one place where millimetres and normalised units are converted.


def normalise_3d(joints_mm, eps: float = 1e-6):
    """Root-relative joints divided by the reference bone length (scale-free units).

    Args:
        joints_mm: (..., 21, 3) joints in mm (camera frame).
    Returns:
        ``(joints_norm, ref_len_mm)``: (..., 21, 3) with the wrist at the origin and
        ``|middle MCP -> PIP| = 1``, and the (...) reference lengths in mm.
    """
    rel = joints_mm - joints_mm[..., :1, :]
    ref = reference_bone_length(joints_mm)
    if _is_torch(ref):
        scale = ref.clamp_min(eps)
    else:
        scale = np.maximum(ref, eps)
    return rel / scale[..., None, None], ref


def denormalise_3d(joints_norm, ref_len_mm, root_mm=None):
    """Inverse of :func:`normalise_3d`: (..., 21, 3) normalised -> mm.

    ``ref_len_mm`` (...) is the reference bone length to scale by: the ground truth's for the
    scale-aligned evaluation, or an assumed hand size (e.g. :data:`MEAN_REFERENCE_BONE_MM`).
    ``root_mm`` (..., 3) places the wrist; the result is root-relative when ``None``.
    """
    if _is_torch(joints_norm):
        import torch

        ref = torch.as_tensor(ref_len_mm, dtype=joints_norm.dtype, device=joints_norm.device)
    else:
        ref = np.asarray(ref_len_mm, dtype=np.asarray(joints_norm).dtype)
    out = joints_norm * ref[..., None, None]
    if root_mm is not None:
        out = out + root_mm[..., None, :]
    return out


# adult middle-finger proximal phalanx (MCP -> PIP joint centres), about 40-45 mm in
# anthropometric tables (e.g. Buryanov & Kotiuk 2010); used when no ground truth scale exists.
MEAN_REFERENCE_BONE_MM = 43.0
