"""What is round a hand in a photograph (scene extras, ``extras.py``): the other hand, and a
head and shoulders behind.

- **The other hand**: the same mesh (``mesh.py``), mirrored into a left hand (``x -> -x`` in the
  hand frame, triangles turned round), with its own pose, orientation and wrist from the pose
  sampler, the same person's size, shape, skin and sleeve, its palm 90-200 mm from this hand's
  (partly in the crop, sometimes in front of it).
- **A head and shoulders** behind the hand (``extras.SceneExtras`` says where), one of two kinds:

  - ellipsoids: a skin-shaded ellipsoid head with a nose and ears (rosy cheeks and lips through
    the skin shader's redness, pores through its UVs), dark eyes, eyebrows, and a torso in the
    sleeve's cloth;
  - the MakeHuman bust (``SceneExtras.mesh_head_prob``; ``bust.py``): the base mesh's head,
    neck and shoulders, 5,533 vertices and 10,920 triangles, with its own face (brow, eye
    sockets, nose, lips, chin, ears), skin above the neckline (red lips and a little on the
    cheeks, pores through its UVs), cloth below, its eyeballs, and eyebrows above them;

  either with hair (an ellipsoid cap over the back and top of the head) in the hair's colour.

Skin parts are drawn by the rasterizer's skin shader (material 0), so their per-corner surface
attributes (``mesh.SURFACE_ATTRIBUTES`` + UVs) are made here: the hand's own, the head's from
its template, the torso's a ``forearm_mm`` beyond any sleeve start (cloth).
"""

from __future__ import annotations

import functools

import torch

from . import mesh, raster_native
from .bust import load_bust
from .extras import CLOTH_MM
from .shapes import Parts, ellipsoid, mirror_cols, rotate, sphere_template

MAT_GLASS, MAT_HAIR = 3, 6  # materials of the extras pass (``extras.MATERIALS``)
HEAD_RES = (16, 24)
TORSO_RES = (10, 16)
FEATURE_RES = (6, 8)
JAW_TAPER = 0.25
BROW_SIZE = (15.0, 2.6, 4.0)  # half axes of a mesh head's eyebrow, mm
BROW_OFFSET = (1.1, -19.0, -12.0)  # from an eyeball's centre: x times, then y and z in mm
MESH_HAIR_OFFSET = (0.0, -0.12, 0.12)  # a bust's hair cap: added to the ellipsoid head's offset
MESH_HAIR_SCALE = (0.97, 0.92, 0.9)  # and its half axes times these (of the head box's)


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
def feature_attributes() -> torch.Tensor:
    """(T, 3, 8) corner attributes of a nose or an ear (``FEATURE_RES`` ellipsoid): skin, a
    little redder than the face."""
    v, f = sphere_template(*FEATURE_RES)
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    cols = [zero + 0.25, zero + 0.35, zero, zero - 100.0, zero, x * 15 / 1200, y * 15 / 1200, zero]
    return torch.stack(cols, -1)[f]


@functools.lru_cache(maxsize=1)
def bust_attributes() -> torch.Tensor:
    """(T, 3, 8) corner attributes of the MakeHuman bust: skin above the neckline (a little
    palm-like lightness, red lips and cheeks), cloth below (``forearm_mm`` = CLOTH_MM + the depth
    below the neckline, so the sleeve's stripes run round it); MakeHuman's UVs, as the hand's."""
    b = load_bust()
    skin = b["skin"]
    zero = torch.zeros(len(skin))
    cols = [
        torch.where(skin, 0.25, 0.0),
        torch.where(skin, b["red"], 0.0),
        zero,
        torch.where(skin, -100.0, CLOTH_MM + b["below_neckline_mm"]),
        zero,
    ]
    ca = torch.stack(cols, -1)[b["faces"]]
    return torch.cat([ca, b["face_uv"], torch.zeros(len(b["faces"]), 3, 1)], -1)


def _skin_parts(bust: bool) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    """(triangles, corner attributes, vertex count) of each skin part, in :func:`add_skin`'s
    order: the other hand, head, torso, nose, two ears, and with ``bust`` the MakeHuman bust."""
    hf, hca = hand_faces()
    out = [(hf, hca, mesh.load_mesh_hand()["vertices"].shape[0])]
    for res, ca in ((HEAD_RES, head_attributes()), (TORSO_RES, torso_attributes())):
        out.append((sphere_template(*res)[1], ca, (res[0] + 1) * (res[1] + 1)))
    for _ in range(3):
        out.append(
            (
                sphere_template(*FEATURE_RES)[1],
                feature_attributes(),
                (FEATURE_RES[0] + 1) * (FEATURE_RES[1] + 1),
            )
        )
    if bust:
        out.append((load_bust()["faces"], bust_attributes(), load_bust()["vertices"].shape[0]))
    return out


def with_bust(prm: dict) -> bool:
    """Whether a batch's skin parts include the MakeHuman bust: when any of its samples has one
    (otherwise the layout, and the cost, are those of the ellipsoid heads alone)."""
    return bool(prm["mesh_head"].any())


@functools.lru_cache(maxsize=2)
def skin_layout(bust: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The skin parts' triangles (T, 3) (into their stacked vertices), corner attributes
    (T, 3, 8) and incidence (V, D) (``mesh.incidence``'s layout, padded with T); ``bust``: with
    the MakeHuman bust (:func:`with_bust`)."""
    faces, cas, V = [], [], 0
    for f, ca, n in _skin_parts(bust):
        faces.append(f + V)
        cas.append(ca)
        V += n
    faces = torch.cat(faces)
    rows = [[] for _ in range(V)]
    for t, tri in enumerate(faces.tolist()):
        for v in tri:
            rows[v].append(t)
    D = max(len(r) for r in rows)
    inc = torch.tensor([r + [len(faces)] * (D - len(r)) for r in rows])
    return faces, torch.cat(cas), inc


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


def other_hand_joints(p: dict, shape: torch.Tensor) -> torch.Tensor:
    """(B, 21, 3) camera-frame joints of the other (left) hand of :func:`other_hand` (the same
    pose, forearm, rotation and wrist; the joints of ``mesh.pose_transforms`` in its frame)."""
    e = p["extras"]
    _, joints = mesh.pose_transforms(e["hand2_angles"], p["scale"], p["seg"], e["hand2_wrist"], shape)
    return rotate(mirror_cols(e["hand2_R"]), joints) + e["hand2_T"][:, None]


def _on_face(prm: dict, fx: float, fy: float, out: float) -> torch.Tensor:
    """(B, 3) camera-frame point ``out`` mm in front of the face at (fx, fy) of its half axes."""
    c, Rh, ax = prm["head_c"], prm["head_R"], prm["head_axes"]
    x, y = fx * ax[:, 0], fy * ax[:, 1]
    z = -ax[:, 2] * (1 - fx**2 - fy**2) ** 0.5 - out
    return c + rotate(Rh, torch.stack([x, y, z], -1)[:, None])[:, 0]


def _bust_scale(prm: dict) -> torch.Tensor:
    """(B, 1) the drawn head's size over the bust's own (``head_axes`` over its head box)."""
    return prm["head_axes"][:, :1] / load_bust()["head_half_axes"][0]


def _bust_points(prm: dict, pts: torch.Tensor) -> torch.Tensor:
    """(B, N, 3) camera-frame points of the bust's head-frame points (N, 3), scaled to the drawn
    head (:func:`_bust_scale`) and placed at ``head_c``, turned by ``head_R``."""
    k = _bust_scale(prm)[:, :, None]
    return prm["head_c"][:, None] + rotate(prm["head_R"], k * pts.to(prm["head_c"].device)[None])


def add_skin(parts: Parts, p: dict, prm: dict, shape: torch.Tensor, native: bool) -> None:
    """The skin parts, in :func:`skin_layout`'s order: the other hand, the head, the torso, the
    nose, the ears (the ellipsoid heads), then the MakeHuman bust where the batch has one."""
    B, dev = p["T"].shape[0], p["T"].device
    zero_n = torch.zeros(B, 1, 3, device=dev)
    mesh_head = prm["mesh_head"]
    on = prm["body_on"] & ~mesh_head
    c, Rh, ax = prm["head_c"], prm["head_R"], prm["head_axes"]
    V = other_hand(p, prm, shape, native)
    parts.add(V, zero_n.expand_as(V), hand_faces()[0], 0, prm["hand2_on"])
    V, _ = ellipsoid(c, Rh, ax, *HEAD_RES, taper=JAW_TAPER)
    parts.add(V, zero_n.expand_as(V), sphere_template(*HEAD_RES)[1], 0, on)
    tc = c + rotate(Rh, prm["torso_offset"][:, None])[:, 0]
    V, _ = ellipsoid(tc, Rh, prm["torso_axes"], *TORSO_RES)
    parts.add(V, zero_n.expand_as(V), sphere_template(*TORSO_RES)[1], 0, on)
    f = sphere_template(*FEATURE_RES)[1]
    nose = torch.tensor([8.0, 15.0, 11.0], device=dev).expand(B, 3)
    V, _ = ellipsoid(_on_face(prm, 0.0, 0.12, -3.0), Rh, nose, *FEATURE_RES)
    parts.add(V, zero_n.expand_as(V), f, 0, on)
    ear = torch.tensor([5.0, 17.0, 10.0], device=dev).expand(B, 3)
    for side in (-1.0, 1.0):
        e = c + rotate(Rh, (ax * torch.tensor([side * 0.97, 0.02, 0.05], device=dev))[:, None])[:, 0]
        V, _ = ellipsoid(e, Rh, ear, *FEATURE_RES)
        parts.add(V, zero_n.expand_as(V), f, 0, on)
    if with_bust(prm):
        b = load_bust()
        V = _bust_points(prm, b["vertices"])
        parts.add(V, zero_n.expand_as(V), b["faces"], 0, prm["body_on"] & mesh_head)


def add_face_objects(parts: Parts, prm: dict) -> None:
    """The head's eyes, eyebrows and hair (objects): on an ellipsoid head placed on its surface,
    on the MakeHuman bust its own eyeballs and eyebrows above them."""
    c, Rh, ax = prm["head_c"], prm["head_R"], prm["head_axes"]
    dev = c.device
    _, f = sphere_template(6, 8)
    mesh_head = prm["mesh_head"]
    ell = prm["body_on"] & ~mesh_head

    def feature(fx, fy, size, mat, out):
        V, N = ellipsoid(_on_face(prm, fx, fy, out), Rh, torch.tensor(size, device=dev).expand_as(ax), 6, 8)
        parts.add(V, N, f, mat, ell)

    for side in (-1.0, 1.0):
        feature(side * 0.35, -0.1, [4.0, 2.6, 2.5], MAT_GLASS, -1.2)
        feature(side * 0.36, -0.27, [11.0, 2.0, 3.0], MAT_HAIR, -1.2)
    if with_bust(prm):
        b, bust = load_bust(), prm["body_on"] & mesh_head
        V = _bust_points(prm, b["eye_vertices"])
        parts.add(V, rotate(Rh, b["eye_normals"].to(dev)[None].expand_as(V)), b["eye_faces"], MAT_GLASS, bust)
        k = _bust_scale(prm)
        for ec in b["eye_centres"]:
            bc = torch.stack([ec[0] * BROW_OFFSET[0], ec[1] + BROW_OFFSET[1], ec[2] + BROW_OFFSET[2]])
            V, N = ellipsoid(
                _bust_points(prm, bc[None])[:, 0], Rh, k * torch.tensor(BROW_SIZE, device=dev), 6, 8
            )
            parts.add(V, N, f, MAT_HAIR, bust)
    long = prm["hair_long"][:, None]  # long hair reaches below the chin behind the face
    off = torch.tensor([0.0, -0.2, 0.14], device=dev) + long * torch.tensor([0.0, 0.35, 0.1], device=dev)
    scale = prm["hair_scale"] + long * torch.tensor([0.03, 0.35, 0.0], device=dev)
    # the bust's head box runs from the chin to the crown and its forehead is flat: the cap sits
    # higher and further back, so that the hairline is above the brows
    m = mesh_head[:, None]
    off = torch.where(m, off + torch.tensor(MESH_HAIR_OFFSET, device=dev), off)
    scale = torch.where(m, scale * torch.tensor(MESH_HAIR_SCALE, device=dev), scale)
    hc = c + rotate(Rh, (ax * off)[:, None])[:, 0]
    V, N = ellipsoid(hc, Rh, ax * scale, *HEAD_RES)
    parts.add(V, N, sphere_template(*HEAD_RES)[1], MAT_HAIR, prm["body_on"] & prm["hair_on"])
