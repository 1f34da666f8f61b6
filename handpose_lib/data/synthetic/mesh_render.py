"""Engine v2: the scene of ``scene.py`` drawn with the rigged mesh hand (``hand_model="mesh"``).

The same draws as engine v1 (pose, hand size, viewpoint, camera, objects, background, crop box,
blur, noise) give the same hand skeleton, labels and background; on top, a second random stream
(``Stream(seed, i, salt=MESH_SALT)``, so v1's draws are untouched) draws what only the mesh
needs: shape targets (:func:`mesh.sample_shape`) and the appearance (skin regions, detail,
nails, sleeves, three coloured lights, ambient light from the background).

Pipeline of :func:`render_mesh`: pose the mesh (``mesh.pose_mesh``), move it and the objects
(tessellated spheres, boxes and capped cylinders) into the camera frame, rasterize and shade
(``raster.py``, or its C++ kernel ``raster_engine.cpp`` for CPU tensors), composite over the
background, blur, noise and JPEG (``render.postprocess``), and read each joint's visibility off
the two depth buffers (:func:`visibility_from_depth`). Left hands are mirrored afterwards by
``dataset.render_scene``, like v1's.
"""

from __future__ import annotations

import functools
import math

import torch

from ..sample import VIS_OBJECT, VIS_OUTSIDE, VIS_SELF, VIS_VISIBLE, project
from . import extras_render, mesh, raster, raster_native, shapes
from .backgrounds import background_pool, noise_texture
from .geometry import FINGER_RADII
from .hand import FINGER_ORDER
from .occluders import hsv_to_rgb
from .render import backgrounds, postprocess
from .rng import Stream

MESH_SALT = 18
SELF_TOL_MM = 3.0
SPHERE_RINGS, SPHERE_SEGMENTS = 8, 12
CYL_SEGMENTS = 16


def _joint_radius() -> torch.Tensor:
    """(21,) flesh depth (mm, hand scale 1) between a joint and the skin over it: the finger
    radii of engine v1 (whose round cones were fitted to the same proportions), 20 mm at the wrist
    (half the wrist's thickness), 11.5 mm at the knuckles, 13 mm at the thumb's CMC."""
    r = torch.zeros(21)
    r[0] = 20.0
    for f, name in enumerate(FINGER_ORDER):
        for k in range(4):
            r[1 + 4 * f + k] = FINGER_RADII[name][k]
    r[[5, 9, 13, 17]] = torch.maximum(r[[5, 9, 13, 17]], torch.tensor(11.5))
    r[1] = 13.0
    return r


JOINT_RADIUS = _joint_radius()


# ---------------------------------------------------------------------------------------------
# objects as triangles


def _box_template():
    """Unit cube [-1, 1]^3: vertices (24, 3), normals (24, 3), triangles (12, 3)."""
    v, n, f = [], [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            a, b = [i for i in range(3) if i != axis]
            base = len(v)
            for s, t in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                p = [0.0, 0.0, 0.0]
                p[axis], p[a], p[b] = sign, s, t
                v.append(p)
                nn = [0.0, 0.0, 0.0]
                nn[axis] = sign
                n.append(nn)
            f += [(base, base + 1, base + 2), (base, base + 2, base + 3)]
    return torch.tensor(v), torch.tensor(n), torch.tensor(f)


def _cylinder_template():
    """Capped unit cylinder along z in [0, 1], radius 1: vertices, normals, triangles."""
    S = CYL_SEGMENTS
    a = torch.arange(S + 1) * (2 * math.pi / S)
    ring = torch.stack([torch.cos(a), torch.sin(a), torch.zeros_like(a)], -1)
    side = torch.cat([ring, ring + torch.tensor([0.0, 0.0, 1.0])])
    side_n = torch.cat([ring, ring])
    caps = []
    caps_n = []
    for z, s in ((0.0, -1.0), (1.0, 1.0)):
        caps.append(torch.cat([torch.tensor([[0.0, 0.0, z]]), ring + torch.tensor([0.0, 0.0, z])]))
        caps_n.append(torch.tensor([0.0, 0.0, s]).expand(S + 2, 3))
    v = torch.cat([side, *caps])
    n = torch.cat([side_n, *caps_n])
    f = []
    for j in range(S):
        f += [(j, j + 1, S + 1 + j), (j + 1, S + 2 + j, S + 1 + j)]
    for c in range(2):
        base = 2 * (S + 1) + c * (S + 2)
        for j in range(S):
            f.append((base, base + 1 + j, base + 2 + j))
    return v, n, torch.tensor(f)


SPHERE = shapes.sphere_template(SPHERE_RINGS, SPHERE_SEGMENTS)  # (117, 3) vertices, (192, 3) faces
BOX = _box_template()
CYLINDER = _cylinder_template()


def _perpendicular(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two unit vectors (..., 3) perpendicular to unit a (..., 3) and to each other."""
    x_axis, y_axis = torch.tensor([1.0, 0, 0], device=a.device), torch.tensor([0.0, 1, 0], device=a.device)
    ref = torch.where((a[..., 0:1].abs() < 0.9), x_axis, y_axis)
    e1 = torch.cross(a, ref.to(a.device).expand_as(a), dim=-1)
    e1 = e1 / e1.norm(dim=-1, keepdim=True)
    return e1, torch.cross(a, e1, dim=-1)


def object_mesh(ob: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The object slots of ``occluders.sample_objects`` as triangles in the camera frame:
    ``(vertices (B, No, 3), normals (B, No, 3), faces (To, 3) (into these vertices), slot (To,))``.
    Inactive slots are put behind the camera (z = -1), where the rasterizer drops them."""
    dev = ob["sph_c"].device
    B = ob["sph_c"].shape[0]
    V, N, F, S = [], [], [], []
    count = 0

    def add(v, n, f, slot):
        nonlocal count
        on = ob["active"][:, slot][:, None, None]
        V.append(torch.where(on, v, torch.tensor([0.0, 0.0, -1.0], device=dev)))
        N.append(n)
        F.append(f.to(dev) + count)
        S.append(torch.full((f.shape[0],), slot, device=dev))
        count += v.shape[1]

    sv, sf = SPHERE
    for k in range(2):
        c, r = ob["sph_c"][:, k], ob["sph_r"][:, k]
        add(c[:, None] + r[:, None, None] * sv.to(dev), sv.to(dev).expand(B, -1, -1), sf, k)
    bv, bn, bf = BOX
    for k in range(2):
        rot, half, c = ob["box_rot"][:, k], ob["box_half"][:, k], ob["box_c"][:, k]
        v = c[:, None] + (bv.to(dev) * half[:, None]) @ rot.transpose(-1, -2)
        add(v, bn.to(dev) @ rot.transpose(-1, -2), bf, 2 + k)
    cv, cn, cf = CYLINDER
    for k in range(2):
        a, b, r = ob["cyl_a"][:, k], ob["cyl_b"][:, k], ob["cyl_r"][:, k]
        ax = b - a
        e3 = ax / ax.norm(dim=-1, keepdim=True)
        e1, e2 = _perpendicular(e3)
        rot = torch.stack([e1, e2, e3], -1)  # (B, 3, 3) columns
        scale = torch.stack([r, r, ax.norm(dim=-1)], -1)[:, None]
        v = a[:, None] + (cv.to(dev) * scale) @ rot.transpose(-1, -2)
        add(v, cn.to(dev) @ rot.transpose(-1, -2), cf, 4 + k)
    return torch.cat(V, 1), torch.cat(N, 1), torch.cat(F), torch.cat(S)


# ---------------------------------------------------------------------------------------------
# appearance


def sample_mesh_params(seed: int, idx: torch.Tensor, skin: torch.Tensor, key_light: torch.Tensor,
                       key_tint: torch.Tensor) -> dict:  # fmt: skip
    """The draws only engine v2 makes (a separate stream: v1's draws are untouched).

    Args: seed, idx (B,); from v1's appearance: skin (B, 3), key light direction (B, 3) (towards
    the light) and its tint (B, 3). Returns ``shape`` (B, S) target weights and ``app`` (B,
    raster.APP_W) with the ambient light still 0 (it comes from the background)."""
    rs = Stream(seed, idx, salt=MESH_SALT)
    B, dev = idx.shape[0], idx.device
    shape = mesh.sample_shape(rs)
    u = rs.uniform(24)
    g = rs.normal(6)
    app = torch.zeros(B, raster.APP_W, device=dev)

    def put(name, x):
        a, n = raster.APP[name]
        app[:, a : a + n] = x if x.dim() == 2 else x[:, None]

    put("skin", skin)
    put("palm_mix", 0.35 + 0.45 * u[:, 0])
    lift = torch.tensor([0.95, 0.78, 0.68], device=dev) * (0.95 + 0.1 * u[:, 1:2])
    put("palm_tone", skin + (lift - skin) * 0.55)
    put("red", 0.3 + 0.7 * u[:, 2])
    put("pores", 0.01 + 0.03 * u[:, 3])
    put("blotch", 0.03 + 0.06 * u[:, 4])
    put("crease", 0.15 + 0.25 * u[:, 5])
    natural = skin + (torch.tensor([0.93, 0.80, 0.78], device=dev) - skin) * 0.5
    painted = hsv_to_rgb(u[:, 6], 0.5 + 0.4 * u[:, 7], 0.3 + 0.6 * u[:, 8])
    put("nail", torch.where((u[:, 9] < 0.08)[:, None], painted, natural))
    # sleeves: 65 % of the forearms, starting 15-140 mm from the wrist
    put("sleeve_start", torch.where(u[:, 10] < 0.65, 15.0 + 125.0 * u[:, 11], 1e6))
    put("sleeve", hsv_to_rgb(u[:, 12], 0.8 * u[:, 13], 0.08 + 0.85 * u[:, 14]))
    put("sleeve_period", 3.0 + 20.0 * u[:, 15])
    put("sleeve_stripe", torch.where(u[:, 16] < 0.4, 0.2 + 0.5 * u[:, 17], 0.0))
    put("wrap", 0.25 + 0.4 * u[:, 18])
    put("sss", 0.15 + 0.35 * u[:, 19])
    put("spec", 0.03 + 0.12 * u[:, 20])
    put("rim", 0.1 + 0.3 * u[:, 21])
    # lights: v1's key light, a fill light on the camera's side, a back light
    fill = torch.stack([g[:, 0], g[:, 1], -1.0 - g[:, 2].abs()], -1)
    back = torch.stack([g[:, 3], g[:, 4], 0.6 + 0.4 * g[:, 5].abs()], -1)
    hue = rs.uniform(6)
    lights = []
    key = (key_light, 0.55 + 0.4 * u[:, 22], key_tint)
    fill_c = hsv_to_rgb(0.05 + 0.55 * hue[:, 1], 0.35 * hue[:, 2], torch.ones(B, device=dev))
    back_c = hsv_to_rgb(0.05 + 0.55 * hue[:, 3], 0.35 * hue[:, 4], torch.ones(B, device=dev))
    for L, power, c in (key, (fill, 0.1 + 0.3 * hue[:, 0], fill_c), (back, 0.5 * u[:, 23], back_c)):
        lights += [L / L.norm(dim=-1, keepdim=True), c * power[:, None]]
    put("lights", torch.cat(lights, -1))
    put("tex_off", (rs.uniform(2) * 256).floor())
    return {"shape": shape, "app": app}


def object_appearance(ob: dict) -> torch.Tensor:
    """(B, 6, 8) object colour (3), texture kind, texture scale, texture axis (3)."""
    return torch.cat(
        [ob["color"], ob["tex"][..., None].float(), ob["tex_scale"][..., None], ob["tex_axis"]], -1
    )


@torch.no_grad()
def detail_texture() -> torch.Tensor:
    """(2, 256, 256) skin detail: channel 0 fine grain (pores), channel 1 smooth blotches, both
    zero-mean in about [-1, 1] (``backgrounds.noise_texture``'s two channels)."""
    t = noise_texture()
    return torch.stack([t[0] * 2.0, t[1]])


# ---------------------------------------------------------------------------------------------
# the scene in the camera frame, rendering, visibility


def _rigid(x: torch.Tensor, R: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """R x + T for points (B, N, 3), elementwise (the same bits in any batch)."""
    x0, x1, x2 = x[..., 0:1], x[..., 1:2], x[..., 2:3]
    return R[:, None, :, 0] * x0 + R[:, None, :, 1] * x1 + R[:, None, :, 2] * x2 + T[:, None]


def mesh_scene(p: dict, native: bool = False) -> dict:
    """Camera-frame triangles of the scene of ``scene.sample_scene``'s parameters ``p``: vertices
    P (B, Nv, 3) (the hand's first), the objects' normals N_obj (B, No, 3), the hand's triangles
    around each vertex inc (``mesh.incidence``), faces (Nt, 3), material (Nt,), corner attributes
    CA (Nt, 3, 8), joints (B, 21, 3), and the mesh draws ``params``. ``native``: the C++ kernel
    skins the mesh (the same bits)."""
    app1 = p["appearance"]
    params = sample_mesh_params(p["seed"], p["idx"], app1["skin"], app1["light_dir"], app1["light_color"])
    R, T = p["R"], p["T"]
    if native:
        X, joints_h = mesh.pose_transforms(p["angles"], p["scale"], p["seg"], p["wrist_rot"], params["shape"])
        P_h = raster_native.pose(X, mesh.target_weights(params["shape"]), R, T)
    else:
        verts, joints_h = mesh.pose_mesh(p["angles"], p["scale"], p["seg"], p["wrist_rot"], params["shape"])
        P_h = _rigid(verts, R, T)
    m = mesh.load_mesh_hand()
    faces_h = m["faces"].to(P_h.device)
    joints = joints_h @ R.transpose(-1, -2) + T[:, None]  # as scene.scene_of: the same bits
    P_o, N_o, F_o, S_o = object_mesh(p["objects"])
    nv = P_h.shape[1]
    faces = torch.cat([faces_h, F_o + nv])
    mat = torch.cat([torch.zeros(len(faces_h), dtype=torch.int64, device=P_h.device), S_o + 1])
    CA_h = torch.cat(
        [mesh.surface_attributes()[m["faces"]], m["face_uv"], torch.zeros(len(faces_h), 3, 1)], -1
    )
    CA = torch.cat([CA_h, torch.zeros(len(F_o), 3, 8)]).to(P_h.device)
    return {
        "P": torch.cat([P_h, P_o], 1),
        "N_obj": N_o,
        "inc": mesh.incidence().to(P_h.device),
        "faces": faces,
        "mat": mat,
        "CA": CA,
        "joints": joints,
        "params": params,
    }


def visibility_from_depth(joints, uv, zh, zo, tri_h, joint_radius, H: int, W: int) -> torch.Tensor:
    """Per-joint visibility codes (B, 21) read off the depth buffers (B, H, W) (``zh`` the hand's,
    ``zo`` the objects', inf: no surface) and the hand's front triangles ``tri_h`` (B, H, W) at
    each joint's pixel:

    - outside the image if the 2D joint is outside ``[0, W) x [0, H)``;
    - hidden by an object if the object surface there is nearer than the hand's;
    - hidden by the hand itself if the hand surface there is more than the joint's flesh
      (``joint_radius`` (B, 21) mm) + 3 mm in front of the joint, unless that surface is the
      skin of the joint's own segments (``mesh.own_skin``) no more than ``2.5 r + 10`` mm in front
      (a line of sight to a knuckle of a finger pointing away from the camera runs a while in
      the finger's own flesh: annotators see that knuckle);
    - else visible.
    """
    B = joints.shape[0]
    outside = (uv[..., 0] < 0) | (uv[..., 0] >= W) | (uv[..., 1] < 0) | (uv[..., 1] >= H)
    x = uv[..., 0].floor().long().clamp(0, W - 1)
    y = uv[..., 1].floor().long().clamp(0, H - 1)
    b = torch.arange(B, device=joints.device)[:, None]
    th, to, tri = zh[b, y, x], zo[b, y, x], tri_h[b, y, x].long()
    own = mesh.own_skin().to(joints.device)
    jid = torch.arange(21, device=joints.device).expand(B, 21)
    own_hit = (tri >= 0) & own[jid, tri.clamp_min(0)]
    ahead = joints[..., 2] - th
    self_hidden = (ahead > joint_radius + SELF_TOL_MM) & ~(own_hit & (ahead <= 2.5 * joint_radius + 10.0))
    code = torch.full(th.shape, VIS_VISIBLE, dtype=torch.int64, device=joints.device)
    code = torch.where(self_hidden, VIS_SELF, code)
    code = torch.where(to < th, VIS_OBJECT, code)
    return torch.where(outside, VIS_OUTSIDE, code)


def render_mesh(
    p: dict, K: torch.Tensor, H: int, W: int, native: bool | None = None, scene_depth: bool = False
) -> tuple[dict, torch.Tensor]:
    """Render the scene parameters ``p`` with the mesh hand through intrinsics K (B, 3, 3):
    returns ``(out, joints)`` with out = image (B, 3, H, W) in [0, 1], mask (B, H, W) bool (pixels
    showing the hand), depth (B, H, W) mm (z of the visible hand surface, 0 elsewhere),
    occlusion_fraction (B,) (hand pixels covered by objects), visibility (B, 21) codes, with
    ``scene_depth`` also scene_depth (B, H, W) mm (the nearest surface of anything, inf where
    only the background is seen), and the camera-frame joints (B, 21, 3)."""
    if native is None:
        native = raster_native.use_native(K.device)
    s = mesh_scene(p, native)
    ap1 = p["appearance"]
    photo = ap1["bg_u"][:, 4] < ap1["bg_prob"]
    pool = background_pool(H, W).to(K.device)
    mean = pool_means(H, W).to(K.device)[
        (ap1["bg_u"][:, 0] * pool.shape[0]).long().clamp_max(pool.shape[0] - 1)
    ]
    bg_mean = torch.where(photo[:, None], (mean * ap1["bg_gain"]).clamp(0, 1), ap1["bg_plain"])
    app = s["params"]["app"].clone()
    a, _ = raster.APP["ambient"]
    app[:, a : a + 3] = 0.06 + 0.30 * bg_mean  # ambient light: what the surroundings send back
    ob = object_appearance(p["objects"])
    tex = detail_texture().to(K.device)
    args = (s["P"], s["N_obj"], s["faces"], s["mat"], s["CA"], s["inc"], K, app, ob, tex)
    scene1 = {"appearance": ap1}
    if native:
        bgp = torch.cat([ap1["bg_u"], ap1["bg_prob"][:, None], ap1["bg_gain"], ap1["bg_plain"]], 1)
        image, mask, depth, zh, zo, tri_h, frac = raster_native.render_pixels(*args, bgp, pool, H, W)
    else:
        image, mask, depth, zh, zo, tri_h, frac = raster.render_pixels(*args, backgrounds(scene1, H, W), H, W)
    if "extras" in p:  # rings, watches, held objects, the other hand, a head: a second pass
        image, mask, depth, zo, frac = extras_render.composite(
            p, s, app, tex, K, H, W, native, image, mask, depth, zh, zo, frac
        )
    image = postprocess(image, scene1, native=native)
    if "extras" in p:
        image = extras_render.tone(p["extras"], image)
    uv = project(s["joints"], K)
    r = JOINT_RADIUS.to(K.device) * p["scale"][:, None]
    vis = visibility_from_depth(s["joints"], uv, zh, zo, tri_h, r, H, W)
    out = {"image": image, "mask": mask, "depth": depth, "occlusion_fraction": frac, "visibility": vis}
    if scene_depth:
        out["scene_depth"] = torch.minimum(zh, zo)
    return out, s["joints"]


@functools.lru_cache(maxsize=4)
def pool_means(H: int, W: int) -> torch.Tensor:
    """(Np, 3) mean colour in [0, 1] of each background pool image (its crops' average light)."""
    return background_pool(H, W).float().mean((2, 3)) / 255.0
