"""Triangle rasterizer and shader of engine v2 (torch reference; the C++ kernel is ``raster_engine.cpp``).

A batch of B images of H x W pixels, each with its own camera-frame vertices ``P`` (B, Nv, 3),
unit vertex normals ``N`` (B, Nv, 3) and the shared triangles ``faces`` (Nt, 3) (hand triangles
first, then the objects'; a triangle's material ``mat`` (Nt,) is 0 for skin, 1 + k for object
slot k). Per triangle corner, ``CA`` (Nt, 3, 8) holds static surface attributes (the hand's
regions and UVs, see ``mesh.surface_attributes``).

1. *Set-up*: vertices are projected with the pinhole intrinsics (``u = fx (x / z) + cx``);
   triangles with a vertex closer than ``NEAR`` mm (or behind the camera: how inactive objects
   are switched off), with zero area or turning their back to the camera (:func:`back_faces`)
   are dropped.
2. *Coverage and depth*: a pixel centre is inside a triangle when its three edge functions are
   >= 0 (after flipping clockwise triangles), so neighbouring triangles leave no gaps. With the
   screen-space barycentrics ``b_i`` the perspective-correct depth is ``z = 1 / sum(b_i / z_i)``;
   the nearest triangle wins (ties: the lower triangle index), separately among hand and object
   triangles (two z-buffers: the hand depth, the mask and the visibility need the hand's own).
3. *Shading* of the winning triangle of each pixel: perspective-correct weights ``w_i = z b_i /
   z_i`` interpolate normals, positions and attributes; then skin (regions, nails, detail
   textures through the UVs, sleeves) or object albedo, lit by ambient light and three coloured
   directional lights with wrap diffuse, a red-shifted subsurface term, a Phong specular sheen
   (the view ray reflected about the normal) and a Fresnel rim, ambient and diffuse light and the
   highlight dimmed by a screen-space ambient occlusion (:func:`ambient_occlusion`) (:func:`shade`).

Every step is elementwise float32 arithmetic written out (no ``sum``, ``norm``, ``@``, ``pow``
or transcendental functions; square roots in float64 rounded to float32) so that the C++ kernel,
which repeats it operation by operation, gives the same bits (``tests/test_mesh_hand.py``).
"""

from __future__ import annotations

import torch

NEAR = 1.0  # mm
_TRI_BITS = 20  # triangle ids < 2**20 in the depth keys
BIG = 1 << 62

# per-image appearance vector (B, APP_W): columns
APP = {
    "skin": (0, 3),
    "palm_mix": (3, 1),
    "palm_tone": (4, 3),
    "red": (7, 1),
    "pores": (8, 1),
    "blotch": (9, 1),
    "crease": (10, 1),
    "nail": (11, 3),
    "sleeve_start": (14, 1),
    "sleeve": (15, 3),
    "sleeve_period": (18, 1),
    "sleeve_stripe": (19, 1),
    "ambient": (20, 3),
    "wrap": (23, 1),
    "sss": (24, 1),
    "spec": (25, 1),
    "rim": (26, 1),
    "lights": (27, 18),  # three (direction (3), colour (3))
    "tex_off": (45, 2),
}
APP_W = 48
NUM_LIGHTS = 3
AO_RADIUS = 3  # pixels
AO_OFFSETS = ((-3, 0), (3, 0), (0, -3), (0, 3), (-2, -2), (-2, 2), (2, -2), (2, 2))
AO_STEP = 0.06
PORE_SCALE = 1024.0  # texels per UV unit (the atlas is ~1.2 m wide: ~1.2 mm per texel)
BLOTCH_SCALE = 160.0


def _dot(a, b):
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def _sqrt(x):
    return torch.sqrt(x.double()).to(x.dtype)


def _unit(v):
    return v * (1.0 / _sqrt(_dot(v, v)))[..., None]


def vertex_normals(P: torch.Tensor, faces: torch.Tensor, inc: torch.Tensor) -> torch.Tensor:
    """Smooth unit vertex normals (B, V, 3) of vertices P (B, V, 3): the sum of the (area-weighted)
    normals of the triangles ``faces`` (T, 3) around each vertex, in the order of ``inc`` (V, D)
    (``mesh.incidence``; index T adds nothing)."""
    idx = faces.long()
    a, b, c = P[:, idx[:, 0]], P[:, idx[:, 1]], P[:, idx[:, 2]]
    e1, e2 = b - a, c - a
    fn = torch.stack(
        [
            e1[..., 1] * e2[..., 2] - e1[..., 2] * e2[..., 1],
            e1[..., 2] * e2[..., 0] - e1[..., 0] * e2[..., 2],
            e1[..., 0] * e2[..., 1] - e1[..., 1] * e2[..., 0],
        ],
        -1,
    )
    fn = torch.cat([fn, torch.zeros_like(fn[:, :1])], 1)
    n = fn[:, inc[:, 0]]
    for k in range(1, inc.shape[1]):
        n = n + fn[:, inc[:, k]]
    return _unit(n)


def app_slice(app: torch.Tensor, name: str) -> torch.Tensor:
    a, n = APP[name]
    return app[..., a : a + n] if n > 1 else app[..., a]


# ---------------------------------------------------------------------------------------------
# set-up and coverage


def setup(P: torch.Tensor, faces: torch.Tensor, K: torch.Tensor, H: int, W: int) -> dict:
    """Per (image, triangle) screen-space set-up: corners u, v (B, Nt, 3), inverse depths iz,
    area, sign (+1 counter-clockwise in pixels, -1 clockwise), bounding box of covered pixel
    centres x0, x1, y0, y1 (inclusive, int64) and valid (B, Nt) bool."""
    fx, fy, cx, cy = (K[:, 0, 0, None], K[:, 1, 1, None], K[:, 0, 2, None], K[:, 1, 2, None])
    z = P[..., 2]
    iz = 1.0 / z
    u = fx * (P[..., 0] * iz) + cx
    v = fy * (P[..., 1] * iz) + cy
    idx = faces.long()
    U, Vv, IZ, Z = (t[:, idx] for t in (u, v, iz, z))  # (B, Nt, 3)
    area = (U[..., 1] - U[..., 0]) * (Vv[..., 2] - Vv[..., 0]) - (Vv[..., 1] - Vv[..., 0]) * (
        U[..., 2] - U[..., 0]
    )
    sgn = torch.where(area > 0, 1.0, -1.0)
    umin, umax = U.amin(-1), U.amax(-1)
    vmin, vmax = Vv.amin(-1), Vv.amax(-1)
    x0 = torch.ceil(umin - 0.5).clamp(0, W).long()
    x1 = torch.floor(umax - 0.5).clamp(-1, W - 1).long()
    y0 = torch.ceil(vmin - 0.5).clamp(0, H).long()
    y1 = torch.floor(vmax - 0.5).clamp(-1, H - 1).long()
    valid = (Z.amin(-1) > NEAR) & (area != 0) & torch.isfinite(area) & (x0 <= x1) & (y0 <= y1)
    inv_area = 1.0 / (area * sgn)
    return {
        "u": U,
        "v": Vv,
        "iz": IZ,
        "inv_area": inv_area,
        "sgn": sgn,
        "x0": x0,
        "x1": x1,
        "y0": y0,
        "y1": y1,
        "valid": valid,
    }


def back_faces(s: dict, P, N, faces, mat) -> torch.Tensor:
    """(B, Nt) bool triangles that turn their back to the camera, which the rasterizer skips:
    hand triangles wound clockwise on screen (the mesh's faces wind counter-clockwise seen from
    outside; image v points down), object triangles whose three vertex normals all point away
    from the camera (the objects are closed and convex)."""
    idx = faces.long()
    away = None
    for k in range(3):
        a = _dot(N[:, idx[:, k]], P[:, idx[:, k]]) > 0
        away = a if away is None else away & a
    return torch.where(mat == 0, s["sgn"] > 0, away)


def weights_at(s: dict, bi, ti, x, y):
    """Edge tests and perspective-correct weights of pixel centres (x, y) (n,) in triangles ti of
    images bi: ``(inside (n,) bool, z (n,), w (n, 3))``."""
    U, Vv, IZ = s["u"][bi, ti], s["v"][bi, ti], s["iz"][bi, ti]
    sg, inv = s["sgn"][bi, ti], s["inv_area"][bi, ti]
    u0, u1, u2 = U.unbind(-1)
    v0, v1, v2 = Vv.unbind(-1)
    e0 = ((u2 - u1) * (y - v1) - (v2 - v1) * (x - u1)) * sg
    e1 = ((u0 - u2) * (y - v2) - (v0 - v2) * (x - u2)) * sg
    e2 = ((u1 - u0) * (y - v0) - (v1 - v0) * (x - u0)) * sg
    inside = (e0 >= 0) & (e1 >= 0) & (e2 >= 0)
    q0 = (e0 * inv) * IZ[:, 0]
    q1 = (e1 * inv) * IZ[:, 1]
    q2 = (e2 * inv) * IZ[:, 2]
    z = 1.0 / ((q0 + q1) + q2)
    return inside, z, torch.stack([q0 * z, q1 * z, q2 * z], -1)


def rasterize(s: dict, is_hand: torch.Tensor, H: int, W: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Depth keys (B, H * W) int64 of the nearest hand and object triangle per pixel: the float32
    bits of z shifted left by ``_TRI_BITS``, or-ed with the triangle index (``BIG``: none)."""
    B, Nt = s["valid"].shape
    dev = s["u"].device
    bw = (s["x1"] - s["x0"] + 1).clamp_min(0)
    bh = (s["y1"] - s["y0"] + 1).clamp_min(0)
    count = torch.where(s["valid"], bw * bh, 0).flatten()
    pair = torch.repeat_interleave(torch.arange(B * Nt, device=dev), count)
    start = torch.cumsum(count, 0) - count
    k = torch.arange(pair.shape[0], device=dev) - start[pair]
    bi, ti = pair // Nt, pair % Nt
    wbox = bw.flatten()[pair]
    px = s["x0"][bi, ti] + k % wbox
    py = s["y0"][bi, ti] + k // wbox
    inside, z, _ = weights_at(s, bi, ti, px.float() + 0.5, py.float() + 0.5)
    key = (z.view(torch.int32).long() << _TRI_BITS) | ti
    key = torch.where(inside, key, BIG)
    pix = bi * (H * W) + py * W + px
    hand = is_hand.to(dev)[ti]
    zh = torch.full((B * H * W,), BIG, dtype=torch.int64, device=dev)
    zo = zh.clone()
    zh.scatter_reduce_(0, pix[hand], key[hand], "amin")
    zo.scatter_reduce_(0, pix[~hand], key[~hand], "amin")
    return zh.reshape(B, H * W), zo.reshape(B, H * W)


def key_depth(key: torch.Tensor) -> torch.Tensor:
    """z (float32, inf where none) of depth keys."""
    z = (key >> _TRI_BITS).to(torch.int32).view(torch.float32)
    return torch.where(key < BIG, z, float("inf"))


# ---------------------------------------------------------------------------------------------
# shading


def _tex(tex: torch.Tensor, c: int, s, t):
    """Nearest texel of channel c of a wrapping (2, n, n) texture at texel coordinates s, t."""
    n = tex.shape[-1]
    i = torch.floor(t).long() % n
    j = torch.floor(s).long() % n
    return tex[c, i, j]


def ambient_occlusion(z: torch.Tensor) -> torch.Tensor:
    """Screen-space ambient occlusion (B, H, W) in [1 - 8 AO_STEP, 1] of the front depth z (B, H, W)
    (inf: nothing): one minus AO_STEP per neighbour, of the 8 at AO_RADIUS pixels (axes and
    diagonals), whose surface is 4-60 mm in front of the pixel's (creases between fingers, a
    palm behind curled fingers, the skin next to a held object get darker)."""
    B, H, W = z.shape
    r = AO_RADIUS
    zp = torch.nn.functional.pad(z, (r, r, r, r), value=float("inf"))
    count = torch.zeros_like(z)
    for dy, dx in AO_OFFSETS:
        nb = zp[:, r + dy : r + dy + H, r + dx : r + dx + W]
        count = count + ((nb < z - 4.0) & (nb > z - 60.0)).float()
    return 1.0 - AO_STEP * count


def shade_points(p, nrm, mat, attr, app, objapp, tex, ao):
    """Colours (n, 3) of surface points p (n, 3) (camera frame) with interpolated normals nrm (n, 3)
    (not unit), material mat (n,), attributes attr (n, 8), per-point
    appearance app (n, APP_W) and object appearance objapp (n, 6, 8), detail texture tex (2, n, n),
    ambient occlusion ao (n,) (:func:`ambient_occlusion`)."""
    n = _unit(nrm)
    hand = mat == 0
    d = _unit(p)
    ndv = _dot(n, d)
    refl = d - n * (2.0 * ndv)[:, None]  # the view ray reflected: Phong highlights
    palm, red, nail, fa_mm, crease, tu, tv = (attr[:, i] for i in range(7))
    off = app_slice(app, "tex_off")
    pores = _tex(tex, 0, tu * PORE_SCALE + off[:, 0], tv * PORE_SCALE + off[:, 1])
    blotch = _tex(tex, 1, tu * BLOTCH_SCALE + off[:, 1], tv * BLOTCH_SCALE + off[:, 0])
    # skin albedo: tone, lighter palm, redder knuckles and tips, blotches, pores, creases, nails
    skin = app_slice(app, "skin")
    pm = (palm * app_slice(app, "palm_mix"))[:, None]
    alb = skin + (app_slice(app, "palm_tone") - skin) * pm
    r = (red * app_slice(app, "red"))[:, None]
    alb = alb * (1.0 + r * torch.tensor([0.10, -0.16, -0.14], device=p.device))
    grain = 1.0 + (app_slice(app, "pores") * pores + app_slice(app, "blotch") * blotch)
    alb = alb * grain[:, None]
    alb = alb * (1.0 - crease * app_slice(app, "crease"))[:, None]
    ns = ((nail - 0.5) * 3.0 + 0.5).clamp(0, 1)[:, None]
    alb = alb + (app_slice(app, "nail") - alb) * ns
    # sleeve over the forearm
    start = app_slice(app, "sleeve_start")
    period = app_slice(app, "sleeve_period")
    band = fa_mm / period
    stripe = band - 2.0 * torch.floor(band * 0.5)  # in [0, 2)
    stripe = torch.where(stripe >= 1.0, app_slice(app, "sleeve_stripe"), 0.0)
    cloth = app_slice(app, "sleeve") * (1.0 - stripe + 0.5 * app_slice(app, "pores") * pores)[:, None]
    sleeve = hand & (fa_mm > start)
    alb = torch.where(sleeve[:, None], cloth, alb)
    # objects: colour and checker or stripes in camera-frame millimetres (as engine v1)
    k = (mat - 1).clamp(0, objapp.shape[1] - 1)
    oa = objapp[torch.arange(mat.shape[0], device=p.device), k]
    sc = oa[:, 4]
    cell = torch.floor(p / sc[:, None])
    cs = (cell[:, 0] + cell[:, 1]) + cell[:, 2]
    checker = (cs - 2.0 * torch.floor(cs * 0.5)) * 0.35
    sb = torch.floor(_dot(p, oa[:, 5:8]) / sc)
    stripes = (sb - 2.0 * torch.floor(sb * 0.5)) * 0.35
    fac = 1.0 - torch.where(oa[:, 3] == 1, checker, torch.where(oa[:, 3] == 2, stripes, 0.0))
    alb = torch.where(hand[:, None], alb, oa[:, :3] * fac[:, None])
    # lights
    skin_px = hand & ~sleeve
    wrap = torch.where(skin_px, app_slice(app, "wrap"), 0.1)
    sss = torch.where(skin_px, app_slice(app, "sss"), 0.0)
    spec_k = app_slice(app, "spec") * torch.where(skin_px, 1.0 + 2.0 * ns[:, 0], torch.where(hand, 0.3, 1.5))
    inv_wrap = 1.0 / (1.0 + wrap)
    light = app_slice(app, "ambient")
    scatter = torch.zeros_like(light)
    spec = torch.zeros_like(light)
    lights = app_slice(app, "lights")
    for i in range(NUM_LIGHTS):
        L = lights[:, 6 * i : 6 * i + 3]
        C = lights[:, 6 * i + 3 : 6 * i + 6]
        ndl = _dot(n, L)
        diff = ((ndl + wrap) * inv_wrap).clamp_min(0)
        light = light + C * diff[:, None]
        scatter = scatter + C * (diff - ndl.clamp_min(0))[:, None]
        s1 = _dot(refl, L).clamp_min(0)
        s2 = s1 * s1
        s4 = s2 * s2
        s8 = s4 * s4
        s16 = s8 * s8
        spec = spec + C * (s16 * spec_k)[:, None]
    tint = torch.tensor([1.0, 0.45, 0.3], device=p.device)
    f = 1.0 - (-ndv).clamp(0, 1)
    f2 = f * f
    rim = (f2 * f2) * f * app_slice(app, "rim") * torch.where(skin_px, 1.0, 0.3)
    o = ao[:, None]
    colour = alb * (light * o + scatter * (sss[:, None] * tint)) + spec * o + (light * rim[:, None]) * 0.5
    return colour.clamp(0, 1)


def shade(s, key, P, N, faces, mat, CA, app, objapp, tex, W, ao):
    """Colour (B, H*W, 3) of every pixel whose key (B, H*W) shows a triangle (0 elsewhere)."""
    B, HW = key.shape
    hit = key < BIG
    bi, q = hit.nonzero().unbind(1)
    ti = key[bi, q] & ((1 << _TRI_BITS) - 1)
    x = (q % W).float() + 0.5
    y = (q // W).float() + 0.5
    _, _, w = weights_at(s, bi, ti, x, y)
    idx = faces.long()[ti]  # (n, 3)

    def interp(a):  # a (n, 3, k) corner values -> (n, k)
        return (w[:, 0:1] * a[:, 0] + w[:, 1:2] * a[:, 1]) + w[:, 2:3] * a[:, 2]

    p = interp(P[bi[:, None], idx])
    nrm = interp(N[bi[:, None], idx])
    attr = interp(CA[ti])
    col = shade_points(p, nrm, mat[ti], attr, app[bi], objapp[bi], tex, ao.reshape(B, HW)[bi, q])
    out = torch.zeros(B, HW, 3, device=key.device)
    out[bi, q] = col
    return out


def render_pixels(P, N_obj, faces, mat, CA, inc, K, app, objapp, tex, bg, H: int, W: int):
    """The torch reference of the kernel: triangles over the backgrounds bg (B, 3, H, W). The hand
    is the first ``len(inc)`` vertices and the triangles with material 0 (listed first); its
    normals come from :func:`vertex_normals`, the objects' are N_obj (B, Nv - len(inc), 3).

    Returns ``(image (B, 3, H, W), mask (B, H, W) bool (the hand is the front surface), depth
    (B, H, W) (its z there, else 0), zh (B, H, W) hand depth (inf where none), zo (B, H, W)
    object depth, tri_h (B, H, W) int32 the nearest hand triangle (-1: none),
    occlusion_fraction (B,) (share of the hand's pixels behind an object))``."""
    B = P.shape[0]
    nvh, nth = inc.shape[0], int((mat == 0).sum())
    N = torch.cat([vertex_normals(P[:, :nvh], faces[:nth], inc), N_obj], 1)
    s = setup(P, faces, K, H, W)
    s["valid"] = s["valid"] & ~back_faces(s, P, N, faces, mat)
    kh, ko = rasterize(s, mat == 0, H, W)
    key = torch.minimum(kh, ko)
    ao = ambient_occlusion(key_depth(key).reshape(B, H, W))
    colour = shade(s, key, P, N, faces, mat, CA, app, objapp, tex, W, ao)
    hit = (key < BIG).reshape(B, 1, H, W)
    image = torch.where(hit, colour.reshape(B, H, W, 3).permute(0, 3, 1, 2), bg)
    hand_any = kh < BIG
    front = hand_any & (kh == key)
    frac = (hand_any & ~front).sum(1).float() / hand_any.sum(1).clamp_min(1).float()
    zh = key_depth(kh).reshape(B, H, W)
    mask = front.reshape(B, H, W)
    tri_h = torch.where(hand_any, kh & ((1 << _TRI_BITS) - 1), -1).to(torch.int32).reshape(B, H, W)
    return image, mask, torch.where(mask, zh, 0.0), zh, key_depth(ko).reshape(B, H, W), tri_h, frac
