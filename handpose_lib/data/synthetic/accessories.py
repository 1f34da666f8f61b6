"""Things worn on the mesh hand (scene extras, ``extras.py``): rings on a finger's proximal
segment, a watch or a bracelet round the wrist.

They are fitted to the *posed* mesh of each sample, so they move with the skinned skin: a ring
sits round the skin vertices of its segment's middle (fixed on the rest mesh: the band of
vertices 30-60 % along the bone), its centre their mean, its axis the segment's, its elliptic
inner edge just outside the farthest of them along the segment's flexion axis and across it; a
watch sits the same way round the forearm's skin 15-32 mm above the wrist joint (the
``forearm_mm`` surface attribute of ``mesh.py``), its case on the back of the wrist.

What their pixels mean for the labels (``extras.composite``): worn things are objects. Where a
ring or watch is nearer than the hand's skin at a joint's pixel, the joint is hidden by an
object (``VIS_OBJECT``); their pixels are not in the hand mask (the mask is the hand's skin
that shows) and count in the occlusion fraction. The sleeve, part of the mesh, stays the hand.
"""

from __future__ import annotations

import functools

import torch

from . import mesh
from .shapes import Parts, ring, ring_template, rotate, tube, tube_template, unit

# materials of the extras pass (object slots of the rasterizer, ``extras.MATERIALS``)
MAT_METAL, MAT_STRAP, MAT_GLASS = 1, 2, 3
RING_FINGER_PROBS = (0.05, 0.15, 0.2, 0.4, 0.2)  # thumb, index, middle, ring, little
WATCH_BAND_MM = (15.0, 32.0)


def _proximal_bone(f: int) -> str:
    """The MakeHuman bone of finger f's proximal phalanx (the thumb's is its second bone)."""
    return f"finger{f + 1}-2.R" if f == 0 else f"finger{f + 1}-1.R"


def _proximal_joints(f: int) -> tuple[int, int]:
    """Our joints at the two ends of finger f's proximal phalanx."""
    return (2, 3) if f == 0 else (1 + 4 * f, 2 + 4 * f)


@functools.lru_cache(maxsize=1)
def band_vertices() -> tuple[list[torch.Tensor], torch.Tensor]:
    """Rest-mesh vertex indices of each finger's ring band (5 tensors) and of the watch band."""
    m = mesh.load_mesh_hand()
    V, W, ends, names = m["vertices"], m["weights"], m["bone_ends"], m["names"]
    rings = []
    for f in range(5):
        b = names.index(_proximal_bone(f))
        h, t = ends[b, 0], ends[b, 1]
        along = ((V - h) @ (t - h)) / ((t - h) @ (t - h))
        rings.append(torch.nonzero((W[:, b] > 0.5) & (along > 0.3) & (along < 0.6))[:, 0])
    fa = mesh.surface_attributes()[:, 3]
    watch = torch.nonzero((fa > WATCH_BAND_MM[0]) & (fa < WATCH_BAND_MM[1]))[:, 0]
    return rings, watch


def _fit(Pb: torch.Tensor, axis: torch.Tensor, e1: torch.Tensor):
    """Centre (B, 3), frame (B, 3, 3) (columns e1, e2, axis) and extents (B,), (B,) along e1 and
    e2 of the skin vertices Pb (B, n, 3) round ``axis`` (B, 3), e1 (B, 3) a hint across it."""
    c = Pb.mean(1)
    z = unit(axis)
    x = unit(e1 - (e1 * z).sum(-1, keepdim=True) * z)
    y = torch.cross(z, x, dim=-1)
    d = Pb - c[:, None]
    ext1 = ((d * x[:, None]).sum(-1)).abs().amax(1)
    ext2 = ((d * y[:, None]).sum(-1)).abs().amax(1)
    return c, torch.stack([x, y, z], -1), ext1, ext2


def add_rings(parts: Parts, P_hand, joints, frames_cam, prm: dict) -> None:
    """Two ring slots on the posed hand P_hand (B, V, 3) (camera frame), with joints (B, 21, 3)
    and the kinematic segment frames in the camera frame (B, 5, 3, 3, 3); prm from
    ``extras.sample_extras`` (``ring_on`` (B, 2), ``ring_finger`` (B, 2), ``ring_thick``,
    ``ring_width`` (B, 2) mm)."""
    bands, _ = band_vertices()
    _, faces = ring_template()
    B = P_hand.shape[0]
    b_idx = torch.arange(B, device=P_hand.device)
    for k in range(2):
        f = prm["ring_finger"][:, k]
        # fit on every finger, keep the drawn one (a fixed amount of work per sample)
        fits = []
        for g in range(5):
            j0, j1 = _proximal_joints(g)
            seg = 1 if g == 0 else 0
            fits.append(_fit(P_hand[:, bands[g]], joints[:, j1] - joints[:, j0], frames_cam[:, g, seg, :, 2]))
        c = torch.stack([x[0] for x in fits], 1)[b_idx, f]
        Rm = torch.stack([x[1] for x in fits], 1)[b_idx, f]
        e1 = torch.stack([x[2] for x in fits], 1)[b_idx, f]
        e2 = torch.stack([x[3] for x in fits], 1)[b_idx, f]
        thick, width = prm["ring_thick"][:, k], prm["ring_width"][:, k]
        a, b = e1 + 0.5 * thick + 0.3, e2 + 0.5 * thick + 0.3
        V, N = ring(c, Rm, a, b, thick, width)
        parts.add(V, N, faces, MAT_METAL, prm["ring_on"][:, k])


def add_watch(parts: Parts, P_hand, R, wrist_rot, prm: dict) -> None:
    """A watch (strap and case) or a bracelet round the wrist of the posed hand P_hand (B, V, 3);
    R (B, 3, 3) hand-to-camera rotation, wrist_rot (B, 3, 3) the forearm's (``camera.sample_wrist``);
    prm: ``watch_on``, ``bracelet_on`` (B,) bool, ``case_r``, ``case_h``, ``strap_w``,
    ``bracelet_thick``, ``bracelet_w`` (B,) mm."""
    _, band = band_vertices()
    Pb = P_hand[:, band]
    cols = [rotate(R, wrist_rot[:, None, :, j])[:, 0] for j in range(3)]  # forearm axes, camera frame
    c, Rm, e1, e2 = _fit(Pb, -cols[1], cols[2])  # along the forearm; e1 palmar
    _, faces = ring_template()
    strap = 2.2
    V, N = ring(
        c, Rm, e1 + 0.5 * strap + 0.4, e2 + 0.5 * strap + 0.4, torch.full_like(e1, strap), prm["strap_w"]
    )
    parts.add(V, N, faces, MAT_STRAP, prm["watch_on"])
    # the case: a short tube on the back of the wrist (-e1), its glass the top cap
    back = -Rm[:, :, 0]
    base = c + back * (e1 + strap)[:, None]
    top = base + back * prm["case_h"][:, None]
    V, N = tube(base, top, prm["case_r"], prm["case_r"] * 0.96, Rm[:, :, 1])
    _, tf, tpart = tube_template()
    mat = torch.where(tpart == 2, MAT_GLASS, MAT_METAL)
    parts.add(V, N, tf, mat, prm["watch_on"])
    # a bracelet: a loose ring a little further up the arm
    bt = prm["bracelet_thick"]
    cb = c + Rm[:, :, 2] * 6.0
    V, N = ring(cb, Rm, e1 + 0.5 * bt + 2.5, e2 + 0.5 * bt + 2.5, bt, prm["bracelet_w"])
    parts.add(V, N, faces, MAT_STRAP, prm["bracelet_on"])


def camera_frames(frames: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """Kinematic segment frames (B, 5, 3, 3, 3) of ``hand.forward_kinematics`` turned into the
    camera frame by R (B, 3, 3), elementwise."""
    B = R.shape[0]
    cols = frames.reshape(B, 15, 3, 3).transpose(-1, -2).reshape(B, 45, 3)  # every column
    return rotate(R, cols).reshape(B, 15, 3, 3).transpose(-1, -2).reshape(B, 5, 3, 3, 3)
