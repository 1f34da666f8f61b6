"""The rigged mesh hand of engine v2: the MakeHuman right hand and forearm posed by linear blend
skinning from the pose sampler of ``hand.py``.

The mesh (``assets/mesh_hand/mesh_hand.npz``, made by ``tools/extract_mesh_hand.py``, CC0,
provenance in that folder) is the skin of the right hand and forearm of the MakeHuman base mesh:
1,842 vertices, 3,656 triangles, with UVs, the skin weights of 22 bones and 20 shape targets, in
the hand frame of ``hand.py`` (millimetres, origin at the wrist, ``x`` radial, ``y`` distal,
``z`` palmar).

Labels stay the forward kinematics of ``hand.py``: the mesh is bent onto them, never the other way
round. Each MakeHuman bone gets an affine map that takes its rest head and tail exactly onto the
kinematic joints they stand for, turning the bone's own frame (``y`` along the bone, ``z`` the
direction it flexes to) onto the kinematic segment frame (``frames`` of
:func:`hand.forward_kinematics`: column 1 along the segment, flexion turns it towards column 2)
and stretching the bone to the segment's length (the width scales with the hand scale). Linear
blend skinning with the MakeHuman weights then moves every vertex; where two bones meet they map
their shared joint to the same point, so the blend is seamless there.

Where our 21 joints sit on the mesh (the joint mapping, ``JOINT_BONES``):

- wrist: the head of ``wrist.R``, the end of the forearm bones, i.e. the centre of the wrist
  joint between forearm and carpus (FreiHAND and MANO put the wrist keypoint there);
- MCP (index..little): the heads of ``finger2-1.R`` .. ``finger5-1.R``, the tails of the
  metacarpals: the centre of the knuckle, the point the proximal phalanx rotates about (the skin
  weights of MakeHuman are painted for rotations about those points, so bending there looks
  right); thumb: ``finger1-1.R`` is the thumb's metacarpal, its head is the CMC joint (our
  joint 1), the heads of ``finger1-2.R`` and ``finger1-3.R`` are its MCP and IP;
- PIP and DIP: the heads of ``finger*-2.R`` and ``finger*-3.R``, the centres of the middle and
  end knuckles;
- tip: on the axis of the distal bone, ``TIP_INSET_MM`` inside the point where that axis leaves
  the fingertip's skin (the skeleton's tail of ``finger*-3.R`` lies 0.6 mm beyond to 1.8 mm
  inside the end of the finger, measured over the five fingers, so it is not a reliable point
  under the skin): the end of the finger as annotators click it, kept just under the skin so
  that the joint is inside the mesh's fingertip.

The palm and forearm are not part of the kinematic chain: the carpus (``wrist.R``) scales with
the hand, each metacarpal runs from its rest head (scaled) to the kinematic MCP, and the forearm
turns with ``wrist_rot`` (the forearm orientation of ``camera.sample_wrist``). Shape variety:
the hand scale and per-segment lengths of ``hand.sample_scales`` (through the maps above), plus the
MakeHuman targets for finger thickness, finger spacing and forearm shape (:data:`SHAPE_TARGETS`).

Left hands are the mirror image (``x -> -x`` of a right hand, see ``mesh_render.py``).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from . import hand

ASSET = Path(__file__).resolve().parents[2] / "assets" / "mesh_hand" / "mesh_hand.npz"
TIP_INSET_MM = 2.5
# the targets the sampler mixes (signed: negative weights use the "-decr"/"-in" file), and the
# largest weight magnitude of each; length and scale targets are left out: the kinematic segment
# lengths set those
SHAPE_TARGETS = {
    "r-hand-fingers-diameter": 0.8,
    "r-hand-fingers-distance": 0.8,
    "r-lowerarm-fat": 0.7,
    "r-lowerarm-muscle": 0.7,
    "r-lowerarm-scale-depth": 0.5,
    "r-lowerarm-scale-horiz": 0.3,
}

FOREARM_BONES = ("lowerarm01.R", "lowerarm02.R")
METACARPALS = ("metacarpal1.R", "metacarpal2.R", "metacarpal3.R", "metacarpal4.R")  # index..little


def _finger_bone(f: int, k: int) -> str:
    """MakeHuman bone of segment k (0..2) of finger f (``hand.FINGER_ORDER``)."""
    return f"finger{f + 1}-{k + 1}.R"


# our 21 joints as (bone, end): the module docstring says why
JOINT_BONES = [("wrist.R", "head")] + [
    (_finger_bone(f, k), "head") if k < 3 else (_finger_bone(f, 2), "tip") for f in range(5) for k in range(4)
]


@functools.lru_cache(maxsize=1)
def load_mesh_hand() -> dict[str, torch.Tensor]:
    """The mesh asset as float32/int64 tensors (cached), plus the derived rest quantities:
    ``tip`` (5, 3) the rest tip points, ``names`` the bone names."""
    with np.load(ASSET) as z:
        d = {k: z[k] for k in z.files}
    names = [str(n) for n in d.pop("bone_names")]
    targets = [str(n) for n in d.pop("target_names")]
    out = {
        k: torch.from_numpy(v.astype(np.int64 if v.dtype.kind == "i" else np.float32)) for k, v in d.items()
    }
    out["names"] = names
    out["target_names"] = targets
    # rest tips: on each distal bone's axis, TIP_INSET_MM inside the farthest skin along it
    V, W, ends = out["vertices"], out["weights"], out["bone_ends"]
    tips = []
    for f in range(5):
        b = names.index(_finger_bone(f, 2))
        h, t = ends[b, 0], ends[b, 1]
        d_ = (t - h) / (t - h).norm()
        own = W[:, b] > 0.5
        reach = ((V[own] - h) @ d_).max()
        tips.append(h + d_ * (reach - TIP_INSET_MM))
    out["tip"] = torch.stack(tips)
    return out


# ---------------------------------------------------------------------------------------------
# frames


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-9)


def _frame(y: torch.Tensor, hint: torch.Tensor) -> torch.Tensor:
    """Rotation (..., 3, 3) with column 1 along y (..., 3) and column 2 the part of hint orthogonal
    to y (column 0 = y x z)."""
    y = _unit(y)
    z = _unit(hint - (hint * y).sum(-1, keepdim=True) * y)
    return torch.stack([torch.cross(y, z, dim=-1), y, z], -1)


def _rotation_between(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The smallest rotation (3, 3) taking unit vector a onto unit vector b (not opposite)."""
    v = torch.cross(a, b, dim=-1)
    c = (a * b).sum()
    vx = torch.tensor([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return torch.eye(3) + vx + vx @ vx / (1 + c)


def rest_skeleton(shape: torch.Tensor | None = None, vertices: bool = True) -> dict[str, torch.Tensor]:
    """Bone heads and tails (B, 22, 2, 3) and tips (B, 5, 3) of the mesh with shape weights
    ``shape`` (B, len(SHAPE_TARGETS)) (None: the base mesh, B = 1), and (``vertices``) its
    vertices (B, V, 3)."""
    m = load_mesh_hand()
    ends, V, tip = m["bone_ends"][None], m["vertices"][None], m["tip"][None]
    if shape is not None:
        ends, V, tip = (x.to(shape.device) for x in (ends, V, tip))
        w = target_weights(shape)
        basis_v, basis_e = (t.to(shape.device) for t in _target_basis())
        de = (w[:, :, None] * basis_e).sum(1).reshape(shape.shape[0], *m["bone_ends"].shape)
        ends = ends + de
        b = [m["names"].index(_finger_bone(f, 2)) for f in range(5)]
        tip = tip + de[:, b, 1]  # the tips move with the distal bones' tails
        if vertices:
            V = V + _weighted_sum(w, basis_v).reshape(shape.shape[0], *m["vertices"].shape)
    return {"ends": ends, "vertices": V, "tip": tip} if vertices else {"ends": ends, "tip": tip}


def target_weights(shape: torch.Tensor) -> torch.Tensor:
    """(B, 2S) weights of the target files (:func:`_target_basis` order) of signed weights (B, S)."""
    return torch.cat([(-shape).clamp_min(0), shape.clamp_min(0)], 1)


def _weighted_sum(w: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """sum_k w[:, k] basis[k]: (B, K), (K, n) -> (B, n), elementwise in the order k = 0, 1, ..
    (no matrix product, whose rounding may depend on the batch size; the C++ kernel repeats it)."""
    out = w[:, :1] * basis[0]
    for k in range(1, w.shape[1]):
        out = out + w[:, k : k + 1] * basis[k]
    return out


@functools.lru_cache(maxsize=1)
def _target_basis() -> tuple[torch.Tensor, torch.Tensor]:
    """(2S, V * 3) and (2S, 22 * 2 * 3): the "-decr"/"-in" files of SHAPE_TARGETS, then the
    "-incr"/"-out" files."""
    m = load_mesh_hand()
    rows = []
    for side in (0, 1):
        for name in SHAPE_TARGETS:
            pair = (
                (f"{name}-in", f"{name}-out") if name.endswith("trans") else (f"{name}-decr", f"{name}-incr")
            )
            rows.append(m["target_names"].index(pair[side]))
    return m["target_vertices"][rows].flatten(1), m["target_bone_ends"][rows].flatten(1)


def _mesh_hints(ends: torch.Tensor, tip: torch.Tensor) -> torch.Tensor:
    """(B, 5, 3) flexion direction hint of each finger's mesh bones: the palm normal (+z) for
    the long fingers; for the thumb the normal of its MakeHuman rotation plane turned about the
    bone, signed towards the palm centre."""
    m = load_mesh_hand()
    B = ends.shape[0]
    dev = ends.device
    hints = torch.tensor([0.0, 0.0, 1.0], device=dev).expand(B, 5, 3).clone()
    p = m["thumb_plane"].to(dev)
    n = _unit(torch.cross(p[1] - p[0], p[2] - p[0], dim=-1))
    b = m["names"].index(_finger_bone(0, 1))
    y = _unit(ends[:, b, 1] - ends[:, b, 0])
    z = torch.cross(n.expand_as(y), y, dim=-1)
    palm = torch.tensor(hand.BASES_MM["middle"], device=dev) * 0.5
    sign = torch.sign(((palm - ends[:, b, 0]) * z).sum(-1, keepdim=True))
    hints[:, 0] = z * sign
    return hints


# ---------------------------------------------------------------------------------------------
# skinning


def bone_transforms(
    joints: torch.Tensor,
    frames: torch.Tensor,
    scale: torch.Tensor,
    wrist_rot: torch.Tensor,
    rest: dict[str, torch.Tensor],
) -> torch.Tensor:
    """Affine maps (B, 22, 3, 4) ``[M | t]`` of the 22 bones: rest mesh -> posed hand frame.

    Args:
        joints, frames: from :func:`hand.forward_kinematics` (B, 21, 3), (B, 5, 3, 3, 3).
        scale: (B,) hand scale; wrist_rot: (B, 3, 3) forearm orientation (``camera.sample_wrist``).
        rest: :func:`rest_skeleton` of the same batch (or B = 1).
    """
    m = load_mesh_hand()
    names = m["names"]
    B, dev = joints.shape[0], joints.device
    ends = rest["ends"].to(dev).expand(B, -1, -1, -1)
    tip = rest["tip"].to(dev).expand(B, -1, -1)
    X = torch.zeros(B, len(names), 3, 4, device=dev)
    s = scale[:, None, None]
    eye = torch.eye(3, device=dev)

    def affine(h_m, t_m, hint_m, h_f, F_f, L_f, width):
        """h_m, t_m (B, n, 3) rest bones; F_f (B, n, 3, 3) posed frames, h_f (B, n, 3) posed heads,
        L_f (B, n) posed lengths, width (B, n) the scale across the bone."""
        F_m = _frame(t_m - h_m, hint_m)
        L_m = (t_m - h_m).norm(dim=-1)
        S = torch.diag_embed(torch.stack([width, L_f / L_m, width], -1))
        M = F_f @ S @ F_m.transpose(-1, -2)
        return torch.cat([M, (h_f - (M @ h_m[..., None])[..., 0])[..., None]], -1)

    # carpus: scales with the hand about the wrist
    X[:, names.index("wrist.R"), :, :3] = eye * s
    # forearm: rest axis (wrist -> elbow) turned onto -y, then by wrist_rot
    la = names.index("lowerarm01.R")
    axis = _unit(m["bone_ends"][la, 0])
    A = _rotation_between(axis, torch.tensor([0.0, -1.0, 0.0])).to(dev)
    for name in FOREARM_BONES:
        X[:, names.index(name), :, :3] = wrist_rot @ A * s
    hints = _mesh_hints(ends, tip)
    zdir = torch.tensor([0.0, 0.0, 1.0], device=dev).expand(B, 3)
    # metacarpals: rest head (scaled with the carpus) -> kinematic MCP (the four at once)
    mb = [names.index(n) for n in METACARPALS]
    h_m = ends[:, mb, 0]
    h_f = h_m * s
    mcp = joints[:, [5, 9, 13, 17]]
    z4 = zdir[:, None].expand(B, 4, 3)
    F_f = _frame(mcp - h_f, z4)
    L_f = (mcp - h_f).norm(dim=-1)
    X[:, mb] = affine(h_m, ends[:, mb, 1], z4, h_f, F_f, L_f, scale[:, None].expand(B, 4))
    # finger segments: rest bone -> kinematic segment, frames aligned (the fifteen at once)
    fb = [names.index(_finger_bone(f, k)) for f in range(5) for k in range(3)]
    fi = torch.arange(5, device=dev).repeat_interleave(3)
    distal = torch.tensor([k == 2 for _ in range(5) for k in range(3)], device=dev)
    t_m = torch.where(distal[:, None], tip[:, fi], ends[:, fb, 1])
    j0 = joints[:, [1 + 4 * f + k for f in range(5) for k in range(3)]]
    j1 = joints[:, [2 + 4 * f + k for f in range(5) for k in range(3)]]
    F_f = frames.reshape(B, 15, 3, 3)
    L_f = (j1 - j0).norm(dim=-1)
    X[:, fb] = affine(ends[:, fb, 0], t_m, hints[:, fi], j0, F_f, L_f, scale[:, None].expand(B, 15))
    return X


@functools.lru_cache(maxsize=1)
def _sparse_weights() -> tuple[torch.Tensor, torch.Tensor]:
    """The skin weights as (V, K) bone indices and weights, K = the most bones of a vertex (7),
    padded with weight 0: the blend then costs K gathers instead of a product with all 22 bones."""
    W = load_mesh_hand()["weights"]
    K = int((W > 0).sum(1).max())
    w, idx = W.topk(K, dim=1)
    return idx, w


def skin(vertices: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Linear blend skinning: rest vertices (B, V, 3), bone maps (B, 22, 3, 4) -> (B, V, 3).

    Written elementwise (no matrix products, whose rounding can depend on the batch size), so
    sample i gives the same bits alone or in any batch."""
    idx, w = (t.to(X.device) for t in _sparse_weights())
    Xf = X.flatten(2)  # (B, 22, 12)
    A = w[None, :, 0, None] * Xf[:, idx[:, 0]]
    for k in range(1, idx.shape[1]):
        A = A + w[None, :, k, None] * Xf[:, idx[:, k]]  # (B, V, 12) blended map per vertex
    x, y, z = vertices.unbind(-1)
    return torch.stack(
        [
            A[..., 4 * r] * x + A[..., 4 * r + 1] * y + A[..., 4 * r + 2] * z + A[..., 4 * r + 3]
            for r in range(3)
        ],
        -1,
    )


def vertex_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Smooth unit vertex normals (B, V, 3): the area-weighted sum of the adjacent faces' normals
    (faces wind counter-clockwise seen from outside)."""
    a, b, c = (verts[:, faces[:, i]] for i in range(3))
    fn = torch.cross(b - a, c - a, dim=-1)  # (B, T, 3), length = 2 x area
    n = torch.zeros_like(verts)
    for i in range(3):
        n.index_add_(1, faces[:, i], fn)
    return _unit(n)


@functools.lru_cache(maxsize=1)
def incidence() -> torch.Tensor:
    """(V, 8) int64: the triangles around each vertex in increasing order, padded with the index
    ``len(faces)`` (a zero normal), for normals summed in a fixed order (``raster.vertex_normals``)."""
    faces = load_mesh_hand()["faces"]
    T, V = faces.shape[0], load_mesh_hand()["vertices"].shape[0]
    rows = [[] for _ in range(V)]
    for t, f in enumerate(faces.tolist()):
        for v in f:
            rows[v].append(t)
    D = max(len(r) for r in rows)
    return torch.tensor([r + [T] * (D - len(r)) for r in rows])


def pose_transforms(angles, scale, seg, wrist_rot, shape=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The bone maps (B, 22, 3, 4) of a pose and the kinematic joints (B, 21, 3) (hand frame)."""
    joints, frames = hand.forward_kinematics(angles, scale, seg)
    rest = rest_skeleton(shape, vertices=False)
    return bone_transforms(joints, frames, scale, wrist_rot, rest), joints


def pose_mesh(
    angles: torch.Tensor,
    scale: torch.Tensor,
    seg: torch.Tensor,
    wrist_rot: torch.Tensor,
    shape: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Posed right-hand mesh in the hand frame: ``(vertices (B, V, 3) mm, joints (B, 21, 3) mm)``;
    the joints are exactly those of :func:`hand.forward_kinematics`."""
    X, joints = pose_transforms(angles, scale, seg, wrist_rot, shape)
    V = rest_skeleton(shape)["vertices"].to(angles.device).expand(angles.shape[0], -1, -1)
    return skin(V, X), joints


def sample_shape(rs) -> torch.Tensor:
    """(B, len(SHAPE_TARGETS)) signed target weights, uniform within each target's range."""
    lim = torch.tensor(list(SHAPE_TARGETS.values()), device=rs.device)
    return (2 * rs.uniform(len(SHAPE_TARGETS)) - 1) * lim


def rest_joints() -> torch.Tensor:
    """(21, 3) our joints on the base mesh in its rest pose (the mapping of ``JOINT_BONES``)."""
    m = load_mesh_hand()
    out = []
    for bone, end in JOINT_BONES:
        b = m["names"].index(bone)
        if end == "tip":
            out.append(m["tip"][int(bone[6]) - 1])
        else:
            out.append(m["bone_ends"][b, 0])
    return torch.stack(out)


# ---------------------------------------------------------------------------------------------
# surface regions for the appearance (static, from the rest mesh)

SURFACE_ATTRIBUTES = ("palm", "red", "nail", "forearm_mm", "crease")


def _smoothstep(a: float, b: float, x: torch.Tensor) -> torch.Tensor:
    t = ((x - a) / (b - a)).clamp(0, 1)
    return t * t * (3 - 2 * t)


@functools.lru_cache(maxsize=1)
def surface_attributes() -> torch.Tensor:
    """(V, 5) per-vertex region values of the rest mesh, columns ``SURFACE_ATTRIBUTES``:

    - palm: 1 on the palmar skin of hand and fingers (lighter there), half on the inner forearm;
    - red: fingertips, the backs of the knuckles and the finger pads (redder skin);
    - nail: the nail bed on the back of each distal phalanx (from 45 % to 97 % of its length);
    - forearm_mm: distance from the wrist along the forearm's axis (negative on the hand): where a
      sleeve begins;
    - crease: the palmar flexion creases at the finger joints.
    """
    m = load_mesh_hand()
    V, W, ends, names = m["vertices"], m["weights"], m["bone_ends"], m["names"]
    n = vertex_normals(V[None], m["faces"])[0]
    bone = W.argmax(1)
    hints = _mesh_hints(ends[None], m["tip"][None])[0]
    palm_side = n[:, 2].clone()
    along = torch.zeros(len(V))
    near_joint = torch.zeros(len(V))
    distal = torch.zeros(len(V), dtype=torch.bool)
    finger = torch.zeros(len(V), dtype=torch.bool)
    for f in range(5):
        for k in range(3):
            b = names.index(_finger_bone(f, k))
            h = ends[b, 0]
            t = m["tip"][f] if k == 2 else ends[b, 1]
            F = _frame(t - h, hints[f])
            sel = bone == b
            L = (t - h).norm()
            along[sel] = ((V[sel] - h) @ F[:, 1]) / (L + TIP_INSET_MM)
            palm_side[sel] = n[sel] @ F[:, 2]
            near_joint[sel] = ((V[sel] - h) @ F[:, 1]).abs()
            distal |= sel if k == 2 else torch.zeros_like(sel)
            finger |= sel
    forearm = (bone == names.index(FOREARM_BONES[0])) | (bone == names.index(FOREARM_BONES[1]))
    dorsal = _smoothstep(0.2, 0.8, -palm_side)
    palm = _smoothstep(-0.15, 0.55, palm_side) * torch.where(forearm, 0.5, 1.0)
    knuckle = torch.exp(-((near_joint / 7.0) ** 2)) * dorsal * finger
    tipness = _smoothstep(0.35, 0.95, along) * distal
    pads = _smoothstep(0.3, 0.8, palm_side) * finger * 0.35
    red = (knuckle + tipness + pads).clamp(0, 1)
    nail = (
        _smoothstep(0.42, 0.58, along)
        * (1 - _smoothstep(0.93, 1.0, along))
        * _smoothstep(0.45, 0.75, -palm_side)
        * distal
    )
    axis = _unit(ends[names.index("lowerarm01.R"), 0])
    forearm_mm = V @ axis
    crease = torch.exp(-((near_joint / 2.2) ** 2)) * _smoothstep(0.4, 0.85, palm_side) * finger
    return torch.stack([palm, red, nail, forearm_mm, crease], 1)


# ---------------------------------------------------------------------------------------------
# which skin belongs to which joint (visibility)


def joint_bones(j: int) -> tuple[str, ...]:
    """The bones whose skin surrounds joint j: the two segments it joins (one at the tip; the
    forearm and carpus at the wrist, the carpus and the thumb's metacarpal at its CMC)."""
    if j == 0:
        return ("lowerarm01.R", "lowerarm02.R", "wrist.R")
    f, k = divmod(j - 1, 4)
    if k == 3:
        return (_finger_bone(f, 2),)
    before = ("wrist.R" if f == 0 else METACARPALS[f - 1]) if k == 0 else _finger_bone(f, k - 1)
    return (before, _finger_bone(f, k))


@functools.lru_cache(maxsize=1)
def own_skin() -> torch.Tensor:
    """(21, T) bool: triangle t is skin of joint j's own segments (:func:`joint_bones`); a
    triangle belongs to the bone with the largest weight summed over its corners."""
    m = load_mesh_hand()
    tri_bone = m["weights"][m["faces"]].sum(1).argmax(1)  # (T,)
    own = torch.zeros(21, len(tri_bone), dtype=torch.bool)
    for j in range(21):
        for b in joint_bones(j):
            own[j] |= tri_bone == m["names"].index(b)
    return own
