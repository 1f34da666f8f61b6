"""Pixel rays, the 8 x 8 tile layout and the per-tile culling of the renderer.

Shared by the torch renderer (``render.py``) and the C++ kernel (``native.py``), which checks
at load time that its own rays and culling give these functions' bits. Pixels are ordered
"tile-major": (tile row, tile col, row in tile, col in tile). Culling gives every primitive slot
a conservative screen-space bound (a 2D capsule around its projected axis); the (image, slot,
tile) triples whose tile centre is close enough become the renderer's work list.
"""

from __future__ import annotations

import torch

from .occluders import NUM_BOXES, NUM_CYLINDERS, NUM_SPHERES

TILE = 8


# ---------------------------------------------------------------------------------------------
# pixel layout helpers: "tile-major" order = (tile row, tile col, row in tile, col in tile)


def tile_pixel_centres(H: int, W: int, device) -> torch.Tensor:
    """(H * W, 2) pixel centres (u, v) in tile-major order."""
    if H % TILE or W % TILE:
        raise ValueError(f"image size must be a multiple of {TILE}, got {W}x{H}")
    ty, tx, py, px = torch.meshgrid(
        torch.arange(H // TILE, device=device),
        torch.arange(W // TILE, device=device),
        torch.arange(TILE, device=device),
        torch.arange(TILE, device=device),
        indexing="ij",
    )
    u = (tx * TILE + px).flatten().float() + 0.5
    v = (ty * TILE + py).flatten().float() + 0.5
    return torch.stack([u, v], -1)


def from_tiles(x: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """(B, H*W, C) tile-major -> (B, C, H, W)."""
    B, _, C = x.shape
    x = x.reshape(B, H // TILE, W // TILE, TILE, TILE, C)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(B, C, H, W)


def pixel_rays(K: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """(B, 3, 3) intrinsics -> (B, H*W, 3) unit ray directions through the pixel centres,
    tile-major."""
    uv = tile_pixel_centres(H, W, K.device)
    Kinv = torch.linalg.inv(K)
    homo = torch.cat([uv, torch.ones_like(uv[:, :1])], -1)  # (HW, 3)
    d = homo @ Kinv.transpose(-1, -2)  # (B, HW, 3)
    return d / d.norm(dim=-1, keepdim=True)


# ---------------------------------------------------------------------------------------------
# scene -> primitive slots


def slot_layout(num_cones: int) -> dict[str, tuple[int, int]]:
    """Slot ranges [start, stop) of each primitive type."""
    s0 = num_cones
    s1 = s0 + NUM_SPHERES
    s2 = s1 + NUM_BOXES
    s3 = s2 + NUM_CYLINDERS
    return {"cone": (0, s0), "sphere": (s0, s1), "box": (s1, s2), "cyl": (s2, s3)}


def _bounds(scene: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Capsule bounds (a, b, r) of every slot and the slots' active flags: (B,P,3)x2, (B,P), (B,P)."""
    ob = scene["objects"]
    B, C = scene["cone_ra"].shape
    act = ob["active"]
    a = torch.cat([scene["cone_a"], ob["sph_c"], ob["box_c"], ob["cyl_a"]], 1)
    b = torch.cat([scene["cone_b"], ob["sph_c"], ob["box_c"], ob["cyl_b"]], 1)
    r = torch.cat(
        [
            torch.maximum(scene["cone_ra"], scene["cone_rb"]),
            ob["sph_r"],
            ob["box_half"].norm(dim=-1),
            ob["cyl_r"],
        ],
        1,
    )
    active = torch.cat([torch.ones(B, C, dtype=torch.bool, device=a.device), act], 1)
    return a, b, r, active


def cull_bounds(scene: dict, K: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Screen-space bound of every slot: a 2D capsule around its projected axis.

    Returns ``(ua (B, P, 2) projected first end, e (B, P, 2) projected axis (second end - first),
    ee (B, P) squared length of e (at least 1e-9), reach (B, P) pixels: a tile whose centre is
    farther from the segment cannot see the slot, ok (B, P) bool: the bound holds (else every
    tile is kept), active (B, P) bool)``.

    Bound: a sphere of radius r at distance d, seen at angle theta from the optical axis,
    projects within ``f * asin(r / d) / cos^2(theta + asin(r / d))`` pixels of its projected
    centre; the capsule's projection lies within that radius of the projected axis segment
    (theta is largest at an end of the segment, d smallest at the segment's closest point).
    """
    a, b, r, active = _bounds(scene)
    f = torch.maximum(K[:, 0, 0], K[:, 1, 1])[:, None]
    ab = b - a
    s = (-(a * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-9)).clamp(0, 1)
    dmin = (a + s[..., None] * ab).norm(dim=-1)
    cos_t = torch.minimum(a[..., 2] / a.norm(dim=-1), b[..., 2] / b.norm(dim=-1))
    beta = torch.asin((r / dmin).clamp(max=0.999))
    ang = torch.acos(cos_t.clamp(-1, 1)) + beta
    ok = (ang < 1.4) & (torch.minimum(a[..., 2], b[..., 2]) - r > 1.0)
    rs = f * beta / torch.cos(ang.clamp(max=1.4)) ** 2 + 1.0
    pa = a @ K.transpose(-1, -2)
    pb = b @ K.transpose(-1, -2)
    ua = pa[..., :2] / pa[..., 2:3].clamp_min(1e-3)
    ub = pb[..., :2] / pb[..., 2:3].clamp_min(1e-3)
    e = ub - ua
    return ua, e, (e * e).sum(-1).clamp_min(1e-9), rs + TILE * 0.7072, ok, active


def cull(scene: dict, K: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """Work list of (image, slot, tile) triples whose tile may see the slot: (N, 3) int64, sorted.

    A tile is kept when its centre lies within ``reach`` of the slot's projected axis segment
    (see :func:`cull_bounds`; ``reach`` includes the tile's half diagonal)."""
    ua, e, ee, reach, ok, active = cull_bounds(scene, K)
    dev = ua.device
    ty, tx = torch.meshgrid(
        torch.arange(H // TILE, device=dev), torch.arange(W // TILE, device=dev), indexing="ij"
    )
    c = torch.stack([tx.flatten(), ty.flatten()], -1).float() * TILE + TILE / 2  # (T, 2)
    e = e[:, :, None]  # (B, P, 1, 2)
    w = c[None, None] - ua[:, :, None]  # (B, P, T, 2)
    h = ((w * e).sum(-1) / ee[..., None]).clamp(0, 1)
    dist = (w - h[..., None] * e).norm(dim=-1)
    keep = dist <= reach[..., None]
    keep = (keep | ~ok[..., None]) & active[..., None]
    return keep.nonzero()
