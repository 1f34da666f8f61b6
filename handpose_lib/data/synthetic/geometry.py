"""Sphere-mesh hand geometry and analytic ray intersections.

The hand is a union of *round cones* (two spheres of radii ``ra``, ``rb`` and the cone tangent to
both; a capsule when ``ra == rb``): three tapering cones per finger, a palm of overlapping cones
from the carpus to the knuckles plus a knuckle bar and a carpal bar, a thenar cone for the thumb's
metacarpal, a thin web between thumb and index, and a forearm stub. Occluders add spheres,
oriented boxes and capped cylinders (``occluders.py``).

All intersection functions take rays from the camera centre (the origin) with unit directions
``d`` (N, 3) and primitive parameters broadcast to (N, ...); they return the ray parameter ``t``
(N,) of the first hit (``inf`` where missed), which is the distance in mm, and optionally the unit
outward normal (N, 3). Formulas are Inigo Quilez's closed forms
(https://iquilezles.org/articles/intersectors/) specialised to a ray origin at 0.
"""

from __future__ import annotations

import torch

from .hand import FINGER_ORDER

INF = float("inf")

# ---------------------------------------------------------------------------------------------
# hand: which joints/points each cone joins, and its radii (mm at hand scale 1)

# palm anchor points in the hand frame (mm, scale 1)
PALM_POINTS = {
    "carpal_r": (15.0, 12.0, 3.0),
    "carpal_m": (4.0, 16.0, 1.0),
    "carpal_m2": (-6.0, 15.0, 2.0),
    "carpal_u": (-17.0, 12.0, 4.0),
    "web": (22.0, 62.0, 6.0),
}
# finger radii at base, 2nd, 3rd joint and tip (mm)
FINGER_RADII = {
    "thumb": (13.0, 10.5, 9.5, 8.5),
    "index": (9.5, 8.6, 7.7, 6.9),
    "middle": (10.0, 9.0, 8.0, 7.2),
    "ring": (9.3, 8.4, 7.6, 6.9),
    "pinky": (8.3, 7.4, 6.7, 6.1),
}
FOREARM_LENGTH = 95.0
FOREARM_RADII = (24.0, 27.0)
TIP_INSET = 0.8  # the tip sphere's centre sits TIP_INSET * radius behind the tip joint


def _cone_table():
    """Static list of hand cones: (name, end a, end b, ra, rb); ends are joint ids or names."""
    cones = []
    for f, name in enumerate(FINGER_ORDER):
        j = [1 + 4 * f + k for k in range(4)]
        r = FINGER_RADII[name]
        cones += [
            (f"{name}_1", j[0], j[1], r[0], r[1]),
            (f"{name}_2", j[1], j[2], r[1], r[2]),
            (f"{name}_3", j[2], "tip:" + name, r[2], r[3]),
        ]
    cones += [
        ("palm_index", "carpal_r", 5, 13.0, 11.0),
        ("palm_middle", "carpal_m", 9, 13.0, 11.5),
        ("palm_ring", "carpal_m2", 13, 13.0, 11.0),
        ("palm_pinky", "carpal_u", 17, 13.0, 10.0),
        ("knuckles", 5, 17, 10.5, 9.5),
        ("carpus", "carpal_r", "carpal_u", 15.0, 15.0),
        ("thenar", 1, "web", 12.0, 9.0),
        ("web", "web", 2, 6.0, 6.0),
        ("forearm", 0, "forearm", FOREARM_RADII[0], FOREARM_RADII[1]),
    ]
    return cones


HAND_CONES = _cone_table()
NUM_HAND_CONES = len(HAND_CONES)
HAND_CONE_NAMES = tuple(c[0] for c in HAND_CONES)


def _incidence() -> torch.Tensor:
    """(21, NUM_HAND_CONES) bool: the cones a joint belongs to (its own surface)."""
    inc = torch.zeros(21, NUM_HAND_CONES, dtype=torch.bool)
    for p, (_, a, b, _, _) in enumerate(HAND_CONES):
        for e in (a, b):
            if isinstance(e, int):
                inc[e, p] = True
            elif e.startswith("tip:"):
                inc[1 + 4 * FINGER_ORDER.index(e[4:]) + 3, p] = True
    names = HAND_CONE_NAMES
    for n in ("palm_index", "palm_middle", "palm_ring", "palm_pinky", "carpus", "forearm"):
        inc[0, names.index(n)] = True  # the wrist sits inside the carpus
    for j, n in ((5, "palm_index"), (9, "palm_middle"), (13, "palm_ring"), (17, "palm_pinky")):
        inc[j, names.index("knuckles")] = True
        inc[j, names.index(n)] = True
    inc[1, names.index("carpus")] = True
    inc[1, names.index("palm_index")] = True
    inc[2, names.index("thenar")] = True
    return inc


INCIDENCE = _incidence()


def hand_cones(joints: torch.Tensor, frames: torch.Tensor, scale: torch.Tensor, wrist_rot: torch.Tensor):
    """Round cones of a posed hand, in the hand frame.

    Args:
        joints: (B, 21, 3) mm, from ``hand.forward_kinematics``.
        frames: (B, 5, 3, 3, 3) segment frames from the same call.
        scale: (B,) hand scale.
        wrist_rot: (B, 3, 3) rotation of the forearm relative to the hand (wrist flexion and
            deviation); the forearm stub points along ``-wrist_rot[:, :, 1]``.
    Returns:
        ``(pa, pb, ra, rb)``: (B, C, 3), (B, C, 3), (B, C), (B, C) with C = NUM_HAND_CONES.
    """
    B, dev = joints.shape[0], joints.device
    s = scale[:, None]
    pts = {k: torch.tensor(v, device=dev) * s for k, v in PALM_POINTS.items()}
    for f, name in enumerate(FINGER_ORDER):
        tip = joints[:, 4 + 4 * f]
        pts["tip:" + name] = tip - frames[:, f, 2, :, 1] * (TIP_INSET * FINGER_RADII[name][3]) * s
    pts["forearm"] = -wrist_rot[:, :, 1] * (FOREARM_LENGTH * s)

    def point(e):
        return joints[:, e] if isinstance(e, int) else pts[e]

    pa = torch.stack([point(c[1]) for c in HAND_CONES], 1)
    pb = torch.stack([point(c[2]) for c in HAND_CONES], 1)
    radii = torch.tensor([[c[3], c[4]] for c in HAND_CONES], device=dev)
    ra = radii[:, 0] * s
    rb = radii[:, 1] * s
    return pa, pb, ra.expand(B, -1), rb.expand(B, -1)


# ---------------------------------------------------------------------------------------------
# signed distances (tests and joint-inside checks)


def sdf_round_cone(p, a, b, ra, rb):
    """Signed distance from points p (..., 3) to round cones (..., 3), (..., 3), (...), (...)."""
    ba = b - a
    l2 = (ba * ba).sum(-1)
    rr = ra - rb
    a2 = l2 - rr * rr
    il2 = 1.0 / l2
    pa = p - a
    y = (pa * ba).sum(-1)
    z = y - l2
    xv = pa * l2[..., None] - ba * y[..., None]
    x2 = (xv * xv).sum(-1)
    y2 = y * y * l2
    z2 = z * z * l2
    k = torch.sign(rr) * rr * rr * x2
    d_b = torch.sqrt(x2 + z2) * il2 - rb
    d_a = torch.sqrt(x2 + y2) * il2 - ra
    d_m = (torch.sqrt(x2 * a2 * il2) + y * rr) * il2 - ra
    return torch.where(torch.sign(z) * a2 * z2 > k, d_b, torch.where(torch.sign(y) * a2 * y2 < k, d_a, d_m))


# ---------------------------------------------------------------------------------------------
# ray intersections, ray origin at 0, unit directions


# The intersection code is written with explicit elementwise products and sums (no ``sum(-1)``,
# ``norm``, ``@`` or ``**``) and a correctly rounded square root, so that the eager code and its
# ``torch.compile``-d version (``compiled.py``) round identically: the same bits on every path.


def _dot(a, b):
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def _sqrt(x):
    """Correctly rounded square root: torch's vectorised float32 ``sqrt`` is not always (it
    depends on the CPU's vector unit), float64's rounded back to float32 is."""
    return torch.sqrt(x.double()).to(x.dtype)


def _unit(v, eps: float = 0.0):
    """v (..., 3) / its length (at least ``eps``)."""
    n = _sqrt(_dot(v, v))
    return v / (n.clamp_min(eps) if eps else n)[..., None]


def _rot_t(rot, v):
    """rot^T v for rotations (..., 3, 3) and vectors (..., 3): the coordinates of v on rot's
    columns."""
    return torch.stack([_dot(rot[..., :, i], v) for i in range(3)], -1)


def _rot(rot, v):
    """rot v for rotations (..., 3, 3) and vectors (..., 3)."""
    return rot[..., :, 0] * v[..., 0:1] + rot[..., :, 1] * v[..., 1:2] + rot[..., :, 2] * v[..., 2:3]


def ray_round_cone(d, pa, pb, ra, rb, normals: bool = False):
    """First hit of rays ``t * d`` with round cones: d (N, 3); pa, pb (N, 3); ra, rb (N,)."""
    ba = pb - pa
    rr = ra - rb
    m0 = _dot(ba, ba)
    m1 = -_dot(ba, pa)
    m5 = _dot(pa, pa)
    m2 = _dot(ba, d)
    m3 = -_dot(d, pa)
    m6 = m3 - m2
    m7 = _dot(pb, pb)
    d2 = m0 - rr * rr
    k2 = d2 - m2 * m2
    k1 = d2 * m3 - m1 * m2 + m2 * rr * ra
    k0 = d2 * m5 - m1 * m1 + m1 * rr * ra * 2.0 - m0 * ra * ra
    h = k1 * k1 - k0 * k2
    t_body = (-_sqrt(h.clamp_min(0)) - k1) / k2
    y = m1 - ra * rr + t_body * m2
    body = (h >= 0) & (y > 0) & (y < d2)
    h1 = m3 * m3 - m5 + ra * ra
    h2 = m6 * m6 - m7 + rb * rb
    t1 = torch.where(h1 > 0, -m3 - _sqrt(h1.clamp_min(0)), INF)
    t2 = torch.where(h2 > 0, -m6 - _sqrt(h2.clamp_min(0)), INF)
    t_cap = torch.minimum(t1, t2)
    t = torch.where(body, t_body, t_cap)
    t = torch.where(t > 0, t, INF)
    if not normals:
        return t
    p = d * t[:, None]
    n_body = (p - pa) * d2[:, None] - ba * y[:, None]
    n_cap = torch.where((t1 <= t2)[:, None], (p - pa) / ra[:, None], (p - pb) / rb[:, None])
    n = torch.where(body[:, None], n_body, n_cap)
    return t, _unit(n, 1e-9)


def ray_sphere(d, c, r, normals: bool = False):
    """First hit with spheres: d (N, 3), c (N, 3), r (N,)."""
    b = _dot(d, c)
    h = b * b - _dot(c, c) + r * r
    t = torch.where(h > 0, b - _sqrt(h.clamp_min(0)), INF)
    t = torch.where(t > 0, t, INF)
    if not normals:
        return t
    n = (d * t[:, None] - c) / r[:, None]
    return t, n


def ray_box(d, c, rot, half, normals: bool = False):
    """First hit with oriented boxes: centre c (N, 3), rot (N, 3, 3) (columns = box axes), half
    extents (N, 3)."""
    o = -_rot_t(rot, c)  # ray origin in box coordinates
    dl = _rot_t(rot, d)
    inv = 1.0 / torch.where(dl.abs() < 1e-12, torch.full_like(dl, 1e-12), dl)
    n = -o * inv
    k = inv.abs() * half
    t1 = n - k
    t2 = n + k
    tn = t1.amax(-1)
    tf = t2.amin(-1)
    hit = (tn < tf) & (tf > 0)
    t = torch.where(hit & (tn > 0), tn, INF)
    if not normals:
        return t
    axis = t1.argmax(-1)
    nl = torch.zeros_like(dl).scatter_(-1, axis[:, None], 1.0) * -torch.sign(dl)
    return t, _rot(rot, nl)


def ray_cylinder(d, pa, pb, r, normals: bool = False):
    """First hit with capped cylinders: axis ends pa, pb (N, 3), radius r (N,)."""
    ba = pb - pa
    oc = -pa
    baba = _dot(ba, ba)
    bard = _dot(ba, d)
    baoc = _dot(ba, oc)
    k2 = baba - bard * bard
    k1 = baba * _dot(oc, d) - baoc * bard
    k0 = baba * _dot(oc, oc) - baoc * baoc - r * r * baba
    h = k1 * k1 - k2 * k0
    hs = _sqrt(h.clamp_min(0))
    t_body = (-k1 - hs) / k2
    y = baoc + t_body * bard
    body = (h >= 0) & (y > 0) & (y < baba)
    t_cap = (torch.where(y < 0, torch.zeros_like(y), baba) - baoc) / bard
    cap = (h >= 0) & ((k1 + k2 * t_cap).abs() < hs)
    t = torch.where(body, t_body, torch.where(cap, t_cap, INF))
    t = torch.where(t > 0, t, INF)
    if not normals:
        return t
    p = d * t[:, None]
    n_body = (p - pa - ba * (y / baba)[:, None]) / r[:, None]
    n_cap = ba * (torch.sign(y) / _sqrt(baba))[:, None]
    return t, torch.where(body[:, None], n_body, n_cap)
