"""Engine v2: the rigged mesh hand (``mesh.py``), its rasterizer (``raster.py`` and the C++ kernel
``raster_engine.cpp``) and renderer (``mesh_render.py``, ``hand_model="mesh"``)."""

from __future__ import annotations

import math

import pytest
import torch
from test_synthetic import render_reference_and_native

from handpose_lib.data.sample import VIS_OBJECT, VIS_SELF, VIS_VISIBLE, project
from handpose_lib.data.synthetic import (
    SyntheticConfig,
    SyntheticHands,
    camera,
    hand,
    mesh,
    mesh_render,
    native,
    raster,
    raster_native,
)
from handpose_lib.data.synthetic.scene import sample_scene

SEED = 7


def _zero_pose(B=1):
    return torch.zeros(B, 20), torch.ones(B), torch.ones(B, 5, 3), torch.eye(3).expand(B, 3, 3)


def _winding(points: torch.Tensor, V: torch.Tensor, F: torch.Tensor) -> torch.Tensor:
    """Generalised winding numbers (N,) of points (N, 3) w.r.t. the triangles V[F] (about 1 inside;
    the mesh is open only at the elbow, far from the hand)."""
    a, b, c = (V[F[:, i]][None] - points[:, None] for i in range(3))
    la, lb, lc = a.norm(dim=-1), b.norm(dim=-1), c.norm(dim=-1)
    det = (a * torch.cross(b, c, dim=-1)).sum(-1)
    den = la * lb * lc + (a * b).sum(-1) * lc + (b * c).sum(-1) * la + (c * a).sum(-1) * lb
    return (2 * torch.atan2(det, den)).sum(-1) / (4 * math.pi)


def test_asset_and_weights():
    m = mesh.load_mesh_hand()
    V, F, W = m["vertices"], m["faces"], m["weights"]
    assert V.shape == (1842, 3) and F.shape == (3656, 3) and W.shape == (1842, 22)
    assert torch.allclose(W.sum(1), torch.ones(len(V)), atol=1e-5)
    assert int(F.min()) == 0 and int(F.max()) == len(V) - 1
    assert m["face_uv"].shape == (3656, 3, 2)


def test_rest_pose_reproduces_the_mesh():
    m = mesh.load_mesh_hand()
    V = m["vertices"][None]
    ident = torch.cat([torch.eye(3), torch.zeros(3, 1)], 1).expand(1, 22, 3, 4)
    assert torch.allclose(mesh.skin(V, ident), V, atol=1e-4)
    # every bone's map takes its rest head (and tail) exactly onto the kinematic joints
    angles, scale, seg, wrist = _zero_pose()
    joints, frames = hand.forward_kinematics(angles, scale, seg)
    rest = mesh.rest_skeleton()
    X = mesh.bone_transforms(joints, frames, scale, wrist, rest)
    names = m["names"]
    for f in range(5):
        for k in range(3):
            b = names.index(f"finger{f + 1}-{k + 1}.R")
            head = rest["ends"][0, b, 0]
            tail = rest["tip"][0, f] if k == 2 else rest["ends"][0, b, 1]
            for p, j in ((head, 1 + 4 * f + k), (tail, 2 + 4 * f + k)):
                assert torch.allclose(X[0, b, :, :3] @ p + X[0, b, :, 3], joints[0, j], atol=1e-3)


def test_bending_one_finger_moves_only_that_finger():
    m = mesh.load_mesh_hand()
    angles, scale, seg, wrist = _zero_pose()
    V0, _ = mesh.pose_mesh(angles, scale, seg, wrist)
    bent = angles.clone()
    bent[0, 2] = 1.2  # index PIP
    V1, _ = mesh.pose_mesh(bent, scale, seg, wrist)
    moved = (V1 - V0)[0].norm(dim=-1) > 1e-3
    names = m["names"]
    index_distal = m["weights"][:, [names.index("finger2-2.R"), names.index("finger2-3.R")]].sum(1) > 0
    assert moved.sum() > 50
    assert not (moved & ~index_distal).any()


@pytest.mark.parametrize("which", ["rest", "sampled"])
def test_joints_inside_the_mesh(which):
    """Fingertip joints lie inside the fingertip, just under its skin; MCPs inside the knuckles."""
    m = mesh.load_mesh_hand()
    if which == "rest":
        V, J = mesh.pose_mesh(*_zero_pose())
    else:
        p = sample_scene(SEED, torch.arange(6), SyntheticConfig())
        V, J = mesh.pose_mesh(p["angles"], p["scale"], p["seg"], p["wrist_rot"])
    own = m["weights"][m["faces"]].sum(1).argmax(1)  # bone of each triangle
    names = m["names"]
    for b in range(V.shape[0]):
        wn = _winding(J[b], V[b], m["faces"])
        assert (wn > 0.5).all(), wn
        d = torch.cdist(J[b], V[b])
        for f in range(5):
            tip = 4 + 4 * f
            assert d[tip].min() < 6.0  # under the skin of the fingertip
            near = d[tip].topk(3, largest=False).indices
            tri_of = (m["faces"][:, :, None] == near).any(1).any(1)
            assert (own[tri_of] == names.index(f"finger{f + 1}-3.R")).any()
        for j, meta in zip(
            (5, 9, 13, 17), ("metacarpal1.R", "metacarpal2.R", "metacarpal3.R", "metacarpal4.R")
        ):
            # inside the knuckle: the skin within 14 mm, some of the nearest is its own finger's
            assert d[j].min() < 14.0
            near = d[j].topk(10, largest=False).indices
            bones = m["weights"][near].argmax(1)
            ok = {names.index(meta), names.index(f"finger{(j - 1) // 4 + 1}-1.R")}
            assert any(int(x) in ok for x in bones), [names[int(x)] for x in bones]


def test_labels_equal_engine_v1_and_sample_is_deterministic():
    cfg_c = SyntheticConfig(crop_size=64)
    cfg_m = SyntheticConfig(crop_size=64, hand_model="mesh")
    cap = SyntheticHands(10, SEED, cfg_c).render_batch([3, 5])
    ds = SyntheticHands(10, SEED, cfg_m)
    a = ds.render_batch([3, 5])
    for k in ("joints2d", "joints3d", "K"):
        assert torch.equal(a[k], cap[k])
    assert torch.equal(a["meta"]["crop_box"], cap["meta"]["crop_box"])
    b = ds[5]  # alone, not in a batch
    for k in ("image", "mask", "depth", "visibility", "joints2d"):
        assert torch.equal(a[k][1], b[k])
    assert not torch.equal(a["image"], cap["image"])


def test_left_hands_are_exact_mirror_images():
    right = SyntheticHands(4, SEED, SyntheticConfig(crop_size=64, hand_model="mesh", left_hand_prob=0.0))
    left = SyntheticHands(4, SEED, SyntheticConfig(crop_size=64, hand_model="mesh", left_hand_prob=1.0))
    r, l_ = right.render_batch(range(4)), left.render_batch(range(4))
    assert torch.equal(l_["image"], r["image"].flip(-1))
    assert torch.equal(l_["mask"], r["mask"].flip(-1))
    assert torch.equal(l_["visibility"], r["visibility"])
    assert torch.allclose(l_["joints2d"][..., 0], 64 - r["joints2d"][..., 0])
    assert torch.equal(l_["joints3d"][..., 0], -r["joints3d"][..., 0])
    assert l_["hand_side"] == ["left"] * 4


def _render(n=6, size=64, occlusion="heavy", native=None, edit=None):
    p = sample_scene(SEED, torch.arange(n), SyntheticConfig(occlusion=occlusion))
    if edit:
        edit(p)
    K = camera.crop_intrinsics(p["K_full"], p["box"], size)
    out, joints = mesh_render.render_mesh(p, K, size, size, native=native)
    return p, K, out, joints


@pytest.mark.skipif(native._compiler() is None, reason="no C++ compiler")
def test_cpp_kernel_matches_torch_reference_bit_for_bit():
    assert raster_native.available()  # a compiler is there: the kernel must build
    _, _, ref, _ = _render(native=False)
    _, _, out, _ = _render(native=True)
    for k in ("image", "mask", "depth", "occlusion_fraction", "visibility"):
        assert torch.equal(out[k], ref[k]), k
    assert ref["mask"].any() and (ref["occlusion_fraction"] > 0).any()


@pytest.mark.skipif(native._compiler() is None, reason="no C++ compiler")
def test_samples_at_the_benchmark_settings_equal_the_torch_reference():
    """Six samples with the benchmark's settings (128 px crops, default occlusion and scene)
    through ``render_batch``: the C++ path (skinning, rasterizer and shader, blur and noise) gives
    the torch reference's images and labels bit for bit (the reference code the kernel is sped up
    against is unchanged; speed is measured by benchmarks/synthetic_bench.py)."""
    ds = SyntheticHands(10**6, SEED, SyntheticConfig(hand_model="mesh"))
    idx = [0, 1, 17, 123, 4096, 99999]
    ref, out = render_reference_and_native(ds, idx)
    keys = [k for k, v in ref.items() if isinstance(v, torch.Tensor)]
    assert {"image", "mask", "depth", "visibility", "joints2d", "joints3d"} <= set(keys)
    for k in keys:
        assert torch.equal(ref[k], out[k]), k
    assert torch.equal(ref["meta"]["crop_box"], out["meta"]["crop_box"])
    assert ref["mask"].any() and ref["hand_side"] == out["hand_side"]


def test_visibility_agrees_with_the_depth_buffer():
    p, K, out, joints = _render(n=8, occlusion="none", native=False)
    assert not (out["visibility"] == VIS_OBJECT).any()
    uv = project(joints, K)
    inside = (uv >= 0).all(-1) & (uv < 64).all(-1)
    x, y = uv[..., 0].floor().long().clamp(0, 63), uv[..., 1].floor().long().clamp(0, 63)
    b = torch.arange(8)[:, None]
    depth = out["depth"][b, y, x]  # the hand's surface at the joint's pixel (0: none)
    ahead = joints[..., 2] - depth
    r = mesh_render.JOINT_RADIUS * p["scale"][:, None]
    vis, hid = (out["visibility"] == VIS_VISIBLE) & inside, (out["visibility"] == VIS_SELF) & inside
    assert vis.any() and hid.any()
    assert (ahead[vis & (depth > 0)] <= 2.5 * r[vis & (depth > 0)] + 10.0 + 1e-4).all()
    assert (ahead[hid] > r[hid] + mesh_render.SELF_TOL_MM).all()
    # a ball put on the line of sight of the index fingertip hides it
    cam_tip = joints[:, 8]

    def ball(q):
        q["objects"] = {k: v.clone() for k, v in q["objects"].items()}
        q["objects"]["sph_c"][:, 1] = cam_tip * 0.7
        q["objects"]["sph_r"][:, 1] = 8.0
        q["objects"]["active"][:, 1] = True

    _, _, out2, _ = _render(n=8, occlusion="none", native=False, edit=ball)
    assert (out2["visibility"][inside[:, 8], 8] == VIS_OBJECT).all()


def test_rasterizer_perspective_correct_depth_and_coverage():
    """A square of two triangles at a slant: the depth buffer is the plane's exact depth and the
    shared edge leaves no gap."""
    P = torch.tensor([[[-40.0, -40, 300], [40, -40, 380], [40, 40, 380], [-40, 40, 300]]])
    faces = torch.tensor([[0, 2, 1], [0, 3, 2]])
    K = torch.tensor([[[200.0, 0, 32], [0, 200, 32], [0, 0, 1]]])
    s = raster.setup(P, faces, K, 64, 64)
    kh, _ = raster.rasterize(s, torch.tensor([True, True]), 64, 64)
    z = raster.key_depth(kh).reshape(64, 64)
    covered = torch.isfinite(z)
    assert covered.sum() > 500
    for line in (*covered, *covered.T):  # the projected square is convex: one run per row/column
        xs = line.nonzero()[:, 0]
        assert len(xs) == 0 or line[xs.min() : xs.max() + 1].all()
    u = (torch.arange(64) + 0.5 - 32) / 200.0  # x / z along each column
    expect = 340.0 / (1 - 1.0 * u)  # plane z = 340 + x, x = u z
    assert torch.allclose(z[covered], expect[None].expand(64, 64)[covered], rtol=1e-5)
