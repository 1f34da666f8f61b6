"""Triangle shapes of the scene extras (``extras.py``): ellipsoids, tubes, boxes and rings, and
:class:`Parts`, which puts a batch's shapes together into one triangle list for the rasterizer.

Every shape is a fixed template (vertex parameters and triangles, the same for the whole batch)
placed per sample by elementwise arithmetic (no matrix products, whose rounding can depend on
the batch size: sample i gets the same bits alone or in a batch). A part is switched off per
sample by moving its vertices behind the camera, where the rasterizer drops its triangles.

Triangles wind counter-clockwise seen from outside (the convention of the hand mesh, which the
rasterizer's back-face test for skin relies on); object normals point outwards.
"""

from __future__ import annotations

import functools
import math

import torch


def rotate(Rm: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Rm x for rotations Rm (B, 3, 3) and points (B, N, 3), elementwise."""
    return Rm[:, None, :, 0] * x[..., 0:1] + Rm[:, None, :, 1] * x[..., 1:2] + Rm[:, None, :, 2] * x[..., 2:3]


def unit(v: torch.Tensor) -> torch.Tensor:
    return v / torch.sqrt((v * v).sum(-1, keepdim=True)).clamp_min(1e-9)


def frame_from_axis(a: torch.Tensor, hint: torch.Tensor) -> torch.Tensor:
    """Rotation (B, 3, 3) with column 2 along a (B, 3) and column 0 towards hint (B, 3)."""
    z = unit(a)
    x = unit(hint - (hint * z).sum(-1, keepdim=True) * z)
    return torch.stack([x, torch.cross(z, x, dim=-1), z], -1)


def matmul3(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """A B for (B, 3, 3) matrices, elementwise."""
    return torch.stack([rotate(A, B[:, None, :, j])[:, 0] for j in range(3)], -1)


def mirror_cols(R: torch.Tensor) -> torch.Tensor:
    """R diag(-1, 1, 1): a mirrored (left) hand frame's rotation."""
    return R * torch.tensor([-1.0, 1.0, 1.0], device=R.device)


def head_rotation(yaw: torch.Tensor, pitch: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) a head's orientation in the camera frame (identity: upright, facing the camera;
    head frame x right, y down, z away from the camera), from angles (B,) rad."""
    cy, sy, cp, sp, cr, sr = (f(a) for a in (yaw, pitch, roll) for f in (torch.cos, torch.sin))
    o, z = torch.ones_like(yaw), torch.zeros_like(yaw)
    Ry = torch.stack([cy, z, sy, z, o, z, -sy, z, cy], -1).reshape(-1, 3, 3)
    Rx = torch.stack([o, z, z, z, cp, -sp, z, sp, cp], -1).reshape(-1, 3, 3)
    Rz = torch.stack([cr, -sr, z, sr, cr, z, z, z, o], -1).reshape(-1, 3, 3)
    return matmul3(matmul3(Ry, Rx), Rz)


# ---------------------------------------------------------------------------------------------
# templates: (parameters (n, k), triangles (t, 3), part of each triangle (t,))


@functools.cache
def sphere_template(rings: int = 10, segments: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit sphere: vertices (n, 3) (= its normals) and triangles (t, 3), outward winding."""
    th = torch.arange(rings + 1) * (math.pi / rings)
    ph = torch.arange(segments + 1) * (2 * math.pi / segments)
    t, p = torch.meshgrid(th, ph, indexing="ij")
    v = torch.stack([torch.sin(t) * torch.cos(p), torch.sin(t) * torch.sin(p), torch.cos(t)], -1)
    S = segments + 1
    f = []
    for i in range(rings):
        for j in range(segments):
            a, b, c, d = i * S + j, i * S + j + 1, (i + 1) * S + j, (i + 1) * S + j + 1
            f += [(a, c, b), (b, c, d)]
    return v.reshape(-1, 3), torch.tensor(f)


@functools.cache
def tube_template(segments: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Capped unit cylinder along z in [0, 1], radius 1: vertex parameters (n, 4) = (cos, sin, z,
    kind) with kind 0 side, 1 a cap's rim, 2 a cap's centre; triangles (t, 3); part (t,) 0 side,
    1 the bottom cap, 2 the top cap. Outward winding."""
    a = torch.arange(segments + 1) * (2 * math.pi / segments)
    c, s = torch.cos(a), torch.sin(a)
    rows = []
    for z in (0.0, 1.0):
        rows.append(torch.stack([c, s, torch.full_like(c, z), torch.zeros_like(c)], -1))
    for z in (0.0, 1.0):
        rows.append(torch.tensor([[0.0, 0.0, z, 2.0]]))
        rows.append(torch.stack([c, s, torch.full_like(c, z), torch.ones_like(c)], -1))
    v = torch.cat(rows)
    S = segments + 1
    f, part = [], []
    for j in range(segments):
        f += [(j, j + 1, S + j + 1), (j, S + j + 1, S + j)]
        part += [0, 0]
    for cap, z in ((0, 0.0), (1, 1.0)):
        base = 2 * S + cap * (S + 1)
        for j in range(segments):
            f.append((base, base + 2 + j, base + 1 + j) if z == 0.0 else (base, base + 1 + j, base + 2 + j))
            part.append(1 + cap)
    return v, torch.tensor(f), torch.tensor(part)


@functools.cache
def box_template() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cube [-1, 1]^3: vertices (24, 3), normals (24, 3), triangles (12, 3), part (12,) = the
    face's index 0..5 (-x, +x, -y, +y, -z, +z). Outward winding."""
    v, n, f, part = [], [], [], []
    for axis in range(3):
        for k, sign in enumerate((-1.0, 1.0)):
            a, b = [i for i in range(3) if i != axis]
            base = len(v)
            for s, t in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                p = [0.0, 0.0, 0.0]
                p[axis], p[a], p[b] = sign, s, t
                v.append(p)
                nn = [0.0, 0.0, 0.0]
                nn[axis] = sign
                n.append(nn)
            # (a, b, axis) is a cyclic order for axis 0 and 2 (y, z, x / x, y, z) and not for 1
            ccw = (sign > 0) == (axis != 1)
            f += [(base, base + 1, base + 2), (base, base + 2, base + 3)] if ccw else [
                (base, base + 2, base + 1), (base, base + 3, base + 2)]  # fmt: skip
            part += [2 * axis + k] * 2
    return torch.tensor(v), torch.tensor(n), torch.tensor(f), torch.tensor(part)


@functools.cache
def ring_template(segments: int = 20, tube: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Torus parameters (n, 2) = (angle around the ring, angle around the tube) and triangles."""
    A = torch.arange(segments + 1) * (2 * math.pi / segments)
    Bt = torch.arange(tube + 1) * (2 * math.pi / tube)
    a, b = torch.meshgrid(A, Bt, indexing="ij")
    T = tube + 1
    f = []
    for i in range(segments):
        for j in range(tube):
            p, q, r, s = i * T + j, i * T + j + 1, (i + 1) * T + j, (i + 1) * T + j + 1
            f += [(p, r, q), (q, r, s)]
    return torch.stack([a, b], -1).reshape(-1, 2), torch.tensor(f)


# ---------------------------------------------------------------------------------------------
# placed shapes: (vertices (B, n, 3), normals (B, n, 3))


def ellipsoid(c, Rm, axes, rings: int = 10, segments: int = 16, taper: float = 0.0):
    """Ellipsoid with centre c (B, 3), orientation Rm (B, 3, 3) and semi-axes (B, 3); ``taper``
    narrows its +y half across x (1 - taper y): a jaw (the normals stay the ellipsoid's)."""
    v, _ = sphere_template(rings, segments)
    v = v.to(c.device)[None]
    if taper:
        v = v * torch.stack(
            [1 - taper * v[..., 1].clamp_min(0), torch.ones_like(v[..., 1]), torch.ones_like(v[..., 1])], -1
        )
    P = c[:, None] + rotate(Rm, v * axes[:, None])
    return P, unit(rotate(Rm, v / axes[:, None]))


def tube(a, b, r0, r1, hint, segments: int = 16):
    """Capped tube from a (B, 3) to b (B, 3), radius r0 (B,) at a and r1 (B,) at b (a cone when
    they differ); ``hint`` (B, 3) fixes where the seam is."""
    prm, _, _ = tube_template(segments)
    prm = prm.to(a.device)
    Rm = frame_from_axis(b - a, hint)
    L = torch.sqrt(((b - a) ** 2).sum(-1))
    z = prm[None, :, 2]
    r = r0[:, None] + (r1 - r0)[:, None] * z
    rim = torch.where(prm[None, :, 3] == 2.0, 0.0, r)
    local = torch.stack([prm[None, :, 0] * rim, prm[None, :, 1] * rim, z * L[:, None]], -1)
    slope = ((r0 - r1) / L.clamp_min(1e-6))[:, None]
    side_n = torch.stack([prm[None, :, 0].expand_as(r), prm[None, :, 1].expand_as(r), slope.expand_as(r)], -1)
    cap_n = torch.stack([torch.zeros_like(r), torch.zeros_like(r), (2.0 * z - 1.0).expand_as(r)], -1)
    n = torch.where((prm[None, :, 3] == 0.0)[..., None], side_n, cap_n)
    return a[:, None] + rotate(Rm, local), unit(rotate(Rm, n))


def box(c, Rm, half):
    """Box with centre c (B, 3), orientation Rm (B, 3, 3) and half sides half (B, 3)."""
    v, n, _, _ = box_template()
    return c[:, None] + rotate(Rm, v.to(c.device)[None] * half[:, None]), rotate(
        Rm, n.to(c.device)[None].expand(c.shape[0], -1, -1)
    )


def ring(c, Rm, a, b, thick, width, segments: int = 20, tube_segments: int = 6):
    """A ring (a torus with an elliptic cross-section) around axis Rm[:, :, 2] at c (B, 3): the
    middle of its band is the ellipse of semi-axes a (B,) along Rm[:, :, 0] and b (B,) along
    Rm[:, :, 1]; the band is ``thick`` (B,) across (radially) and ``width`` (B,) along the axis."""
    prm, _ = ring_template(segments, tube_segments)
    prm = prm.to(c.device)
    ca, sa = torch.cos(prm[None, :, 0]), torch.sin(prm[None, :, 0])
    cb, sb = torch.cos(prm[None, :, 1]), torch.sin(prm[None, :, 1])
    a, b = a[:, None], b[:, None]
    nx, ny = b * ca, a * sa  # outward normal of the ellipse
    nl = torch.sqrt(nx * nx + ny * ny)
    nx, ny = nx / nl, ny / nl
    ht, hw = thick[:, None] / 2, width[:, None] / 2
    local = torch.stack([a * ca + ht * cb * nx, b * sa + ht * cb * ny, hw * sb], -1)
    n = torch.stack([cb * nx / ht, cb * ny / ht, sb / hw], -1)
    return c[:, None] + rotate(Rm, local), unit(rotate(Rm, n))


# ---------------------------------------------------------------------------------------------
# a batch's triangle list


class Parts:
    """Shapes of a batch put together: ``add`` a placed shape with its triangles, material and
    per-sample switch; ``build`` returns one vertex and triangle list."""

    def __init__(self, B: int, device):
        self.B, self.device = B, device
        self.V, self.N, self.F, self.M = [], [], [], []
        self.count = 0

    def add(self, V, N, faces, mat, on) -> None:
        """V, N (B, n, 3); faces (t, 3) into V; mat (t,) or an int; on (B,) bool (off: the shape's
        vertices go behind the camera, keeping the triangles' shapes)."""
        V = torch.where(on[:, None, None], V, V - torch.tensor([0.0, 0.0, 1e5], device=V.device))
        self.V.append(V)
        self.N.append(N)
        faces = faces.to(self.device)
        self.F.append(faces + self.count)
        m = torch.as_tensor(mat, device=self.device)
        self.M.append(m.expand(faces.shape[0]) if m.dim() == 0 else m)
        self.count += V.shape[1]

    def build(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(V (B, n, 3), N (B, n, 3), faces (t, 3), mat (t,))``; empty when nothing was added."""
        if not self.V:
            z = torch.zeros(self.B, 0, 3, device=self.device)
            return z, z, torch.zeros(0, 3, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)
        return torch.cat(self.V, 1), torch.cat(self.N, 1), torch.cat(self.F), torch.cat(self.M).long()
