"""What is round a hand in a photograph (scene extras, ``extras.py``): the other hand, and a
head and shoulders behind.

- **The other hand**: the same mesh (``mesh.py``), mirrored into a left hand (``x -> -x`` in the
  hand frame, triangles turned round), with its own pose, orientation and wrist from the pose
  sampler, the same person's size, shape, skin and sleeve, its palm 90-200 mm from this hand's
  (partly in the crop, sometimes in front of it).
- **A head and shoulders** 200-700 mm behind the hand, off to a side: a skin-shaded ellipsoid
  head (rosy cheeks and lips through the skin shader's redness, pores through its UVs), dark
  eyes, hair (an ellipsoid cap), and a torso in the sleeve's cloth.

Skin parts are drawn by the rasterizer's skin shader (material 0), so their per-corner surface
attributes (``mesh.SURFACE_ATTRIBUTES`` + UVs) are made here: the hand's own, the head's from
its template, the torso's a ``forearm_mm`` beyond any sleeve start (cloth).
"""

from __future__ import annotations

import functools

import torch

from . import mesh, raster_native
from .extras import CLOTH_MM
from .shapes import Parts, ellipsoid, mirror_cols, rotate, sphere_template

MAT_GLASS, MAT_HAIR = 3, 6  # materials of the extras pass (``extras.MATERIALS``)
HEAD_RES = (16, 24)
TORSO_RES = (10, 16)


@functools.lru_cache(maxsize=1)
def hand_faces() -> tuple[torch.Tensor, torch.Tensor]:
    """The mirrored hand's triangles (T, 3) (winding turned round) and corner attributes (T, 3, 8)."""
    m = mesh.load_mesh_hand()
    ca = torch.cat(
        [mesh.surface_attributes()[m["faces"]], m["face_uv"], torch.zeros(len(m["faces"]), 3, 1)], -1
    )
    return m["faces"][:, [0, 2, 1]], ca[:, [0, 2, 1]]


@functools.lru_cache(maxsize=1)
def head_attributes() -> torch.Tensor:
    """(T, 3, 8) corner attributes of the head template: a little palm-like lightness, red cheeks
    and lips, no sleeve, UVs in millimetres / 1200 (the skin detail's scale)."""
    v, f = sphere_template(*HEAD_RES)
    x, y, z = v.unbind(-1)  # head frame: x right, y down, z away from the camera
    front = (-z).clamp(0, 1)
    cheeks = torch.exp(-(((x.abs() - 0.5) ** 2) + (y - 0.2) ** 2) / 0.03) * front
    lips = torch.exp(-((x**2) / 0.02 + (y - 0.5) ** 2 / 0.004)) * front
    red = (0.6 * cheeks + lips).clamp(0, 1)
    th = torch.acos(z.clamp(-1, 1))
    ph = torch.atan2(y, x)
    cols = [
        torch.full_like(x, 0.25),
        red,
        torch.zeros_like(x),
        torch.full_like(x, -100.0),
        torch.zeros_like(x),
    ]
    cols += [ph * 80.0 / 1200.0, th * 90.0 / 1200.0, torch.zeros_like(x)]
    return torch.stack(cols, -1)[f]


@functools.lru_cache(maxsize=1)
def torso_attributes() -> torch.Tensor:
    """(T, 3, 8) corner attributes of the torso template: cloth (``forearm_mm`` = CLOTH_MM + its
    height in mm, so the sleeve's stripes run round it)."""
    v, f = sphere_template(*TORSO_RES)
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    cols = [zero, zero, zero, CLOTH_MM + 260.0 * y, zero, x * 200 / 1200, y * 260 / 1200, zero]
    return torch.stack(cols, -1)[f]


@functools.lru_cache(maxsize=1)
def skin_layout() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The skin parts' triangles (T, 3) (hand, head, torso, into their stacked vertices), corner
    attributes (T, 3, 8) and incidence (V, D) (``mesh.incidence``'s layout, padded with T)."""
    hf, hca = hand_faces()
    nh = mesh.load_mesh_hand()["vertices"].shape[0]
    _, f_head = sphere_template(*HEAD_RES)
    _, f_torso = sphere_template(*TORSO_RES)
    n_head = (HEAD_RES[0] + 1) * (HEAD_RES[1] + 1)
    faces = torch.cat([hf, f_head + nh, f_torso + nh + n_head])
    ca = torch.cat([hca, head_attributes(), torso_attributes()])
    V = nh + n_head + (TORSO_RES[0] + 1) * (TORSO_RES[1] + 1)
    rows = [[] for _ in range(V)]
    for t, tri in enumerate(faces.tolist()):
        for v in tri:
            rows[v].append(t)
    D = max(len(r) for r in rows)
    inc = torch.tensor([r + [len(faces)] * (D - len(r)) for r in rows])
    return faces, ca, inc


def other_hand(p: dict, prm: dict, shape: torch.Tensor, native: bool) -> torch.Tensor:
    """(B, V, 3) camera-frame vertices of the other (left) hand: pose ``prm["hand2_angles"]``,
    rotation ``hand2_R``, forearm ``hand2_wrist``, wrist ``hand2_T``; p's scale and segment
    lengths and the shape targets ``shape`` (B, S) of this hand."""
    Rm = mirror_cols(prm["hand2_R"])
    if native:
        X, _ = mesh.pose_transforms(prm["hand2_angles"], p["scale"], p["seg"], prm["hand2_wrist"], shape)
        return raster_native.pose(X, mesh.target_weights(shape), Rm, prm["hand2_T"])
    verts, _ = mesh.pose_mesh(prm["hand2_angles"], p["scale"], p["seg"], prm["hand2_wrist"], shape)
    return rotate(Rm, verts) + prm["hand2_T"][:, None]


def add_skin(parts: Parts, p: dict, prm: dict, shape: torch.Tensor, native: bool) -> None:
    """The skin parts, in :func:`skin_layout`'s order: the other hand, the head, the torso."""
    B, dev = p["T"].shape[0], p["T"].device
    zero_n = torch.zeros(B, 1, 3, device=dev)
    V = other_hand(p, prm, shape, native)
    parts.add(V, zero_n.expand_as(V), hand_faces()[0], 0, prm["hand2_on"])
    V, _ = ellipsoid(prm["head_c"], prm["head_R"], prm["head_axes"], *HEAD_RES)
    parts.add(V, zero_n.expand_as(V), sphere_template(*HEAD_RES)[1], 0, prm["body_on"])
    tc = prm["head_c"] + rotate(prm["head_R"], prm["torso_offset"][:, None])[:, 0]
    V, _ = ellipsoid(tc, prm["head_R"], prm["torso_axes"], *TORSO_RES)
    parts.add(V, zero_n.expand_as(V), sphere_template(*TORSO_RES)[1], 0, prm["body_on"])


def add_face_objects(parts: Parts, prm: dict) -> None:
    """The head's eyes, eyebrows and hair (objects)."""
    c, Rh, ax = prm["head_c"], prm["head_R"], prm["head_axes"]
    _, f = sphere_template(6, 8)

    def on_face(fx: float, fy: float, size, mat, out: float) -> None:
        """An ellipsoid of half sides size (3,) on the face at (fx, fy) of the head's half axes."""
        x, y = fx * ax[:, 0], fy * ax[:, 1]
        z = -ax[:, 2] * (1 - fx**2 - fy**2) ** 0.5 + out
        V, N = ellipsoid(
            c + rotate(Rh, torch.stack([x, y, z], -1)[:, None])[:, 0], Rh, size.expand_as(ax), 6, 8
        )
        parts.add(V, N, f, mat, prm["body_on"])

    for side in (-1.0, 1.0):
        on_face(side * 0.35, -0.1, torch.tensor([4.5, 3.0, 3.0], device=c.device), MAT_GLASS, 1.0)
        on_face(side * 0.36, -0.27, torch.tensor([11.0, 2.0, 3.0], device=c.device), MAT_HAIR, 1.5)
    hc = c + rotate(Rh, (ax * torch.tensor([0.0, -0.2, 0.14], device=c.device))[:, None])[:, 0]
    V, N = ellipsoid(hc, Rh, ax * prm["hair_scale"], *HEAD_RES)
    parts.add(V, N, sphere_template(*HEAD_RES)[1], MAT_HAIR, prm["body_on"] & prm["hair_on"])
