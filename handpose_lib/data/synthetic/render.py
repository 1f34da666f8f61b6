"""Batched ray casting of sphere-mesh hands and objects with 8 x 8 tile culling (torch, CPU/CUDA).

Pipeline for a batch of B images of H x W pixels (H, W multiples of 8):

1. *Culling* (``tiles.py``): every primitive gets a conservative screen-space bound (a 2D
   capsule around its projected axis); the (image, primitive, tile) triples whose tile centre is
   close enough become the work list. A hand covers a small part of the tiles, so this removes
   most tests.
2. *Depth pass*: the 64 rays of each listed tile are intersected with its primitive (closed
   forms from ``geometry.py``) and ``scatter_reduce(amin)`` keeps, per pixel, the nearest hit as
   an int64 key ``depth * 16 << 6 | primitive``, separately for the hand and for the objects.
3. *Shading pass*: for the pixels that hit something, the winning primitive is intersected again
   for the exact point and normal; skin and object albedo (with texture), one random directional
   light, ambient, a specular highlight and a soft rim term give the colour.
4. Composition over the background, optional blur, noise and JPEG; labels.

Joint visibility casts one exact ray per joint against every primitive (see :func:`visibility`).

This torch code is the reference and the CUDA path. For CPU tensors, steps 1 (the per-tile
test) to 4 (except JPEG) run by default in a C++ kernel (``native.py``, ``native_engine.cpp``)
that repeats these operations in the same order, one image at a time: the same bits, about 7
times faster than the ``torch.compile``-d kernels (``compiled.py``) on one core.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..sample import VIS_OBJECT, VIS_OUTSIDE, VIS_SELF, VIS_VISIBLE
from . import native as _native
from .backgrounds import PAD, background_pool, noise_texture
from .compiled import fast, use_compiled
from .geometry import INF, _dot, _unit, ray_box, ray_cylinder, ray_round_cone, ray_sphere
from .occluders import TEX_CHECKER, TEX_STRIPES
from .tiles import TILE, cull, from_tiles, pixel_rays, slot_layout

DEPTH_QUANT = 16.0  # key resolution: 1/16 mm
_ID_BITS = 6  # primitive slot ids < 64
_BIG = 1 << 62
SELF_TOL_MM = 3.0


def _params(scene: dict, kind: str) -> tuple[torch.Tensor, ...]:
    """The (B, S, ...) parameter tensors of the slots of one primitive type."""
    ob = scene["objects"]
    if kind == "cone":
        return scene["cone_a"], scene["cone_b"], scene["cone_ra"], scene["cone_rb"]
    if kind == "sphere":
        return ob["sph_c"], ob["sph_r"]
    if kind == "box":
        return ob["box_c"], ob["box_rot"], ob["box_half"]
    return ob["cyl_a"], ob["cyl_b"], ob["cyl_r"]


def _intersect(kind: str, d, params, bi, k, normals: bool):
    """Intersect rays d (N, ..., 3) with slots k (N,) of images bi (N,) of one primitive type;
    ``params`` from :func:`_params`."""
    extra = (None,) * (d.dim() - 2)  # broadcast parameters over the ray dimensions
    g = [x[bi, k][(slice(None), *extra)] for x in params]
    if kind == "cone":
        return ray_round_cone(d, *g, normals)
    if kind == "sphere":
        return ray_sphere(d, *g, normals)
    if kind == "box":
        return ray_box(d, *g, normals)
    return ray_cylinder(d, *g, normals)


@fast
def _tile_keys(kind: str, rays_t, tile, bi, k, si, params):
    """Depth keys (n, 64) int64 of the 64 rays of tiles ``tile`` (n,) (rows of ``rays_t``
    (B * T, 64, 3)) against slot ``si`` = type start + ``k`` of image ``bi``."""
    t = _intersect(kind, rays_t[tile], params, bi, k, normals=False)  # (n, 64)
    key = torch.where(torch.isfinite(t), (t * DEPTH_QUANT).clamp_max(2**40).long() << _ID_BITS, _BIG)
    return key | si[:, None]


def depth_pass(scene: dict, rays: torch.Tensor, triples: torch.Tensor, chunk: int = 8192, compiled=False):
    """Nearest-hit keys per pixel: returns (hand_keys, object_keys), each (B, HW) int64
    (``_BIG`` where nothing was hit). ``compiled``: use the compiled kernel (same keys)."""
    B, HW, _ = rays.shape
    C = scene["cone_ra"].shape[1]
    lay = slot_layout(C)
    rays_t = rays.reshape(B * (HW // 64), 64, 3)
    T = HW // 64
    zh = torch.full((B * HW,), _BIG, dtype=torch.int64, device=rays.device)
    zo = torch.full_like(zh, _BIG)
    lane = torch.arange(64, device=rays.device)
    if compiled:
        chunk = max(chunk, 65536)  # the fused kernel holds only its (n, 64) output
    for kind, (lo, hi) in lay.items():
        sel = triples[(triples[:, 1] >= lo) & (triples[:, 1] < hi)]
        params = _params(scene, kind)
        for c0 in range(0, sel.shape[0], chunk):
            tri = sel[c0 : c0 + chunk]
            bi, si, ti = tri.unbind(1)
            tile = bi * T + ti
            key = _tile_keys(kind, rays_t, tile, bi, si - lo, si, params, compiled=compiled)
            idx = (tile[:, None] * 64 + lane).flatten()
            (zh if kind == "cone" else zo).scatter_reduce_(0, idx, key.flatten(), "amin")
    return zh.reshape(B, HW), zo.reshape(B, HW)


# ---------------------------------------------------------------------------------------------
# shading


def _gather_tex(tex: torch.Tensor, bi: torch.Tensor, q: torch.Tensor, offs: torch.Tensor, W: int):
    """Sample a (n, n) wrapping texture at pixel index q (row-major in a W-wide image) shifted
    per image by offs (B, 2)."""
    n = tex.shape[-1]
    y = (q // W + offs[bi, 1]) % n
    x = (q % W + offs[bi, 0]) % n
    return tex[y, x]


@fast
def _hit_normals(kind: str, d, params, bi, k):
    """Distance t (n,) and unit normal (n, 3) of rays d (n, 3) at slots k of images bi."""
    return _intersect(kind, d, params, bi, k, normals=True)


@fast
def _surface_colour(d, t, nrm, bi, si, q, C: int, W: int, app: dict, ob: dict, tex):
    """Colour (n, 3) in [0, 1] and camera-frame point (n, 3) of hit pixels: rays d (n, 3) hit
    slot si (n,) of image bi (n,) at distance t (n,) with normal nrm (n, 3); q (n,) tile-major
    pixel index (for the skin texture), C hand cones, W image width, tex (2, n, n) noise."""
    p = d * t[:, None]
    is_hand = si < C
    # albedo: skin with smooth texture, objects with their texture
    # image-layout pixel index of tile-major q, for texture lookups
    T_w = W // TILE
    tile, lane = q // 64, q % 64
    row = (tile // T_w) * TILE + lane // TILE
    col = (tile % T_w) * TILE + lane % TILE
    qi = row * W + col
    skin_n = _gather_tex(tex[1], bi, qi, app["tex_offset"], W)
    albedo = app["skin"][bi] * (1.0 + app["skin_texture"][bi, None] * skin_n[:, None])
    oi = (si - C).clamp(0, ob["color"].shape[1] - 1)
    oc = ob["color"][bi, oi]
    kind = ob["tex"][bi, oi]
    sc = ob["tex_scale"][bi, oi]
    cell = torch.floor(p / sc[:, None])
    checker = ((cell[:, 0] + cell[:, 1] + cell[:, 2]) % 2) * 0.35
    stripes = (torch.floor(_dot(p, ob["tex_axis"][bi, oi]) / sc) % 2) * 0.35
    fac = 1.0 - torch.where(kind == TEX_CHECKER, checker, torch.where(kind == TEX_STRIPES, stripes, 0.0))
    albedo = torch.where(is_hand[:, None], albedo, oc * fac[:, None])
    # lighting
    L = app["light_dir"][bi]
    ndl = _dot(nrm, L)
    wrap = app["wrap"][bi]
    diffuse = ((ndl + wrap) / (1 + wrap)).clamp_min(0)
    s = _dot(nrm, _unit(L - d)).clamp_min(0)  # cosine to the half vector
    s8 = (s * s) * (s * s)
    s8 = s8 * s8
    spec = (s8 * s8) * s8 * app["specular"][bi] * torch.where(is_hand, 1.0, 1.6)  # s ** 24
    rim = 0.7 + 0.3 * (-_dot(nrm, d)).clamp(0, 1)
    light = app["ambient"][bi] + app["light_power"][bi] * diffuse
    colour = albedo * (light * rim)[:, None] * app["light_color"][bi] + spec[:, None]
    return colour.clamp(0, 1), p


def shade(scene: dict, rays: torch.Tensor, key: torch.Tensor, H: int, W: int, compiled: bool = False):
    """Colour, hit point and normal of every pixel that hits something.

    Returns ``(colour (B, HW, 3), z (B, HW) camera-frame depth of the visible surface (0 where
    nothing), slot (B, HW) int64 (-1 where nothing))``, tile-major.
    """
    B, HW, _ = rays.shape
    C = scene["cone_ra"].shape[1]
    lay = slot_layout(C)
    dev = rays.device
    hit = key < _BIG
    bi, q = hit.nonzero().unbind(1)
    si = key[bi, q] & ((1 << _ID_BITS) - 1)
    d = rays[bi, q]
    n_hit = bi.shape[0]
    t = torch.zeros(n_hit, device=dev)
    nrm = torch.zeros(n_hit, 3, device=dev)
    for kind, (lo, hi) in lay.items():
        m = ((si >= lo) & (si < hi)).nonzero()[:, 0]
        if m.numel():
            t[m], nrm[m] = _hit_normals(
                kind, d[m], _params(scene, kind), bi[m], si[m] - lo, compiled=compiled
            )
    tex = noise_texture().to(dev)
    col, p = _surface_colour(
        d, t, nrm, bi, si, q, C, W, scene["appearance"], scene["objects"], tex, compiled=compiled
    )
    colour = torch.zeros(B, HW, 3, device=dev)
    colour[bi, q] = col
    z = torch.zeros(B, HW, device=dev)
    z[bi, q] = p[:, 2]
    slot = torch.full((B, HW), -1, dtype=torch.int64, device=dev)
    slot[bi, q] = si
    return colour, z, slot


@fast
def _background(pool, bg_u, gain, plain, prob, H: int, W: int):
    """(B, 3, H, W) backgrounds: crops of pool images (N, 3, H + PAD, W + PAD) uint8 chosen,
    shifted and flipped by bg_u (B, 5), colour-jittered by gain (B, 3), or the plain colour
    (B, 3) where ``bg_u[:, 4] >= prob`` (B,)."""
    dev = pool.device
    idx = (bg_u[:, 0] * pool.shape[0]).long().clamp_max(pool.shape[0] - 1)
    oy = (bg_u[:, 1] * PAD).long()
    ox = (bg_u[:, 2] * PAD).long()
    rows = oy[:, None] + torch.arange(H, device=dev)
    cols = ox[:, None] + torch.arange(W, device=dev)
    flip = bg_u[:, 3] < 0.5
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    bg = pool[
        idx[:, None, None, None],
        torch.arange(3, device=dev)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]
    bg = bg.float() * (1.0 / 255.0)
    bg = (bg * gain[:, :, None, None]).clamp(0, 1)  # colour jitter
    use_photo = bg_u[:, 4] < prob
    return torch.where(use_photo[:, None, None, None], bg, plain[:, :, None, None].expand_as(bg))


def backgrounds(scene: dict, H: int, W: int, compiled: bool = False) -> torch.Tensor:
    """(B, 3, H, W) background images for the batch."""
    app = scene["appearance"]
    pool = background_pool(H, W).to(app["skin"].device)
    args = (app["bg_u"], app["bg_gain"], app["bg_plain"], app["bg_prob"])
    return _background(pool, *args, H, W, compiled=compiled)


@fast
def _composite(colour, slot, z, bg, C: int):
    """Hand and objects over the background: colour (B, HW, 3), slot (B, HW), z (B, HW) from
    :func:`shade` (tile-major), bg (B, 3, H, W) -> image (B, 3, H, W), hand mask (B, H, W) bool,
    hand depth (B, H, W)."""
    H, W = bg.shape[-2:]
    hand = (slot >= 0) & (slot < C)
    hit = (slot >= 0)[..., None].float()
    img = from_tiles(torch.cat([colour, hit, hand[..., None].float(), (z * hand)[..., None]], -1), H, W)
    return img[:, :3] + bg * (1 - img[:, 3:4]), img[:, 4] > 0.5, img[:, 5]


def _gauss5(sigma):
    """(B, 5) normalised Gaussian taps for sigmas (B,) (at least 0.3). Computed eagerly, outside
    the compiled kernels: ``exp`` need not round the same way there."""
    k = torch.arange(-2, 3, device=sigma.device).float()
    gk = torch.exp(-(k**2)[None] / (2 * sigma.clamp_min(0.3)[:, None] ** 2))
    return gk / gk.sum(-1, keepdim=True)


@fast
def _blur(img, gk, sigma):
    """5-tap separable blur with taps gk (B, 5) of images (B, 3, H, W) whose sigma (B,) is > 0."""
    _, _, H, W = img.shape
    w = gk[:, :, None, None, None]  # (B, 5, 1, 1, 1)
    xp = F.pad(img, (2, 2, 0, 0), mode="replicate")
    x = sum(w[:, k] * xp[..., k : k + W] for k in range(5))
    xp = F.pad(x, (0, 0, 2, 2), mode="replicate")
    x = sum(w[:, k] * xp[..., k : k + H, :] for k in range(5))
    return torch.where((sigma > 0)[:, None, None, None], x, img)


@fast
def _add_noise(img, tex, off, noise):
    """Sensor noise: images (B, 3, H, W) plus ``noise`` (B,) times a shifted (by off (B, 2)) crop
    of the white noise texture tex (n, n), clamped to [0, 1]."""
    _, _, H, W = img.shape
    n = tex.shape[-1]
    ys = (torch.arange(H, device=img.device)[None] + off[:, 1:2] * 3) % n
    xs = (torch.arange(W, device=img.device)[None] + off[:, 0:1] * 7) % n
    nz = tex[ys[:, :, None], xs[:, None, :]]  # (B, H, W)
    img = img + (noise * math.sqrt(12.0))[:, None, None, None] * nz[:, None]
    return img.clamp(0, 1)


def postprocess(img: torch.Tensor, scene: dict, compiled: bool = False, native: bool = False) -> torch.Tensor:
    """Blur (per-image flag), sensor noise, optional JPEG: (B, 3, H, W) -> (B, 3, H, W).

    ``native``: blur and noise by the C++ kernel (``native.py``), in place (CPU tensors)."""
    app = scene["appearance"]
    B = img.shape[0]
    blur = app["blur"]  # (B,) sigma, 0 = none
    tex = noise_texture().to(img.device)[0]
    if native:
        if bool((blur > 0).any()):
            img = _native.blur_(img, _gauss5(blur), blur)
        img = _native.add_noise_(img, tex, app["tex_offset"], app["noise"])
    else:
        if bool((blur > 0).any()):
            img = _blur(img, _gauss5(blur), blur, compiled=compiled)
        img = _add_noise(img, tex, app["tex_offset"], app["noise"], compiled=compiled)
    jq = app["jpeg_quality"]
    if bool((jq > 0).any()):
        out = []
        for i in range(B):
            if jq[i] > 0:
                arr = (img[i].permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)
                ok, buf = cv2.imencode(".jpg", arr[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(jq[i])])
                dec = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()
                out.append(torch.from_numpy(dec).to(img.device).permute(2, 0, 1).float() / 255.0)
            else:
                out.append(img[i])
        img = torch.stack(out)
    return img


# ---------------------------------------------------------------------------------------------
# visibility of the joints


def first_hits(scene: dict, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest hand and object hits along the rays from the camera through points (B, J, 3):
    returns ``(t_hand, t_object)`` (B, J) distances in mm (inf where missed)."""
    B, J, _ = points.shape
    d = points / points.norm(dim=-1, keepdim=True)
    ob = scene["objects"]
    dd = d[:, :, None]  # (B, J, 1, 3)

    def e(x):  # (B, S, ...) -> (B, 1, S, ...)
        return x[:, None]

    th = ray_round_cone(dd, e(scene["cone_a"]), e(scene["cone_b"]), e(scene["cone_ra"]), e(scene["cone_rb"]))
    ts = ray_sphere(dd, e(ob["sph_c"]), e(ob["sph_r"]))
    tb = ray_box(dd, e(ob["box_c"]), e(ob["box_rot"]), e(ob["box_half"]))
    tc = ray_cylinder(dd, e(ob["cyl_a"]), e(ob["cyl_b"]), e(ob["cyl_r"]))
    to = torch.cat([ts, tb, tc], -1)
    to = torch.where(ob["active"][:, None], to, INF)
    return th.amin(-1), to.amin(-1)


def visibility(
    scene: dict, joints: torch.Tensor, uv: torch.Tensor, joint_radius: torch.Tensor, H: int, W: int
):
    """Per-joint visibility codes (B, 21) int64.

    Along the line of sight through joint j (distance ``t_j``), with ``t_h``/``t_o`` the first
    hand/object surfaces: outside the image if the 2D joint is outside ``[0, W) x [0, H)``; else
    hidden by an object if ``t_o < t_h`` (the first surface seen there is an object); else hidden
    by the hand itself if ``t_h < t_j - joint_radius_j - 3 mm`` (the first surface is farther
    from the joint than the joint's own flesh); else visible.
    """
    tj = joints.norm(dim=-1)
    th, to = first_hits(scene, joints)
    code = torch.full(tj.shape, VIS_VISIBLE, dtype=torch.int64, device=joints.device)
    code = torch.where(th < tj - joint_radius - SELF_TOL_MM, VIS_SELF, code)
    code = torch.where(to < th, VIS_OBJECT, code)
    outside = (uv[..., 0] < 0) | (uv[..., 0] >= W) | (uv[..., 1] < 0) | (uv[..., 1] >= H)
    return torch.where(outside, VIS_OUTSIDE, code)


# ---------------------------------------------------------------------------------------------
# the whole image


def _pinhole(K: torch.Tensor) -> bool:
    """Whether all intrinsics (B, 3, 3) have no skew and last row (0, 0, 1): the C++ kernel's
    own ray formula then rounds like :func:`pixel_rays`."""
    z = torch.stack([K[:, 0, 1], K[:, 1, 0], K[:, 2, 0], K[:, 2, 1], K[:, 2, 2] - 1], -1)
    return bool((z == 0).all())


def render(
    scene: dict, K: torch.Tensor, H: int, W: int, compiled: bool | None = None, native: bool | None = None
) -> dict:
    """Render a batch: returns image (B,3,H,W) [0,1], mask (B,H,W) bool, depth (B,H,W) mm (z of
    the visible hand surface, 0 where the pixel does not show the hand), occlusion_fraction (B,).

    ``native``: for CPU tensors, do the per-pixel work in the C++ kernel (``native.py``, the same
    bits); ``None`` decides by :func:`native.use_native` (availability, ``HANDPOSE_SYNTH_NATIVE``).
    ``compiled`` (torch code only): use the ``torch.compile``-d kernels (``compiled.py``); ``None``
    decides by :func:`compiled.use_compiled` (batch size, availability, ``HANDPOSE_SYNTH_COMPILE``)."""
    if native is None:
        native = _native.use_native(K.device)
    if native and K.device.type == "cpu":
        rays = None if _pinhole(K) else pixel_rays(K, H, W)
        image, mask, depth, frac = _native.render_images(scene, K, H, W, rays)
        image = postprocess(image, scene, native=True)
        return {"image": image, "mask": mask, "depth": depth, "occlusion_fraction": frac}
    if compiled is None:
        compiled = use_compiled(K.device, K.shape[0])
    rays = pixel_rays(K, H, W)
    triples = cull(scene, K, H, W)
    zh, zo = depth_pass(scene, rays, triples, compiled=compiled)
    key = torch.minimum(zh, zo)
    colour, z, slot = shade(scene, rays, key, H, W, compiled=compiled)
    hand_any = zh < _BIG
    occluded = hand_any & (zo < zh)
    frac = occluded.sum(1).float() / hand_any.sum(1).clamp_min(1).float()
    bg = backgrounds(scene, H, W, compiled=compiled)
    C = scene["cone_ra"].shape[1]
    image, mask, depth = _composite(colour, slot, z, bg, C, compiled=compiled)
    image = postprocess(image, scene, compiled=compiled)
    return {"image": image, "mask": mask, "depth": depth, "occlusion_fraction": frac}
