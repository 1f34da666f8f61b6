"""Tests of the procedural hand engine (handpose_lib.data.synthetic)."""

from __future__ import annotations

import math

import pytest
import torch

from handpose_lib import cli, skeleton
from handpose_lib.data.sample import REQUIRED_KEYS, VIS_OBJECT, VIS_OUTSIDE, VIS_SELF, VIS_VISIBLE, project
from handpose_lib.data.synthetic import (
    DiskHands,
    SyntheticConfig,
    SyntheticHands,
    camera,
    compiled,
    dataset,
    hand,
    native,
    render,
    render_to_disk,
    tiles,
)
from handpose_lib.data.synthetic.geometry import ray_round_cone, sdf_round_cone
from handpose_lib.data.synthetic.rng import Stream
from handpose_lib.data.synthetic.scene import sample_scene, scene_of

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def batch():
    ds = SyntheticHands(1000, seed=7, config=SyntheticConfig(occlusion="heavy"))
    return ds.render_batch(range(48))


def test_sample_structure():
    s = SyntheticHands(10, seed=1)[3]
    assert set(REQUIRED_KEYS) <= set(s)
    assert s["image"].shape == (3, 128, 128) and s["image"].dtype == torch.float32
    assert 0 <= s["image"].min() and s["image"].max() <= 1
    assert s["mask"].shape == (128, 128) and s["mask"].dtype == torch.bool
    assert s["depth"].shape == (128, 128)
    assert torch.equal(s["mask"], s["depth"] > 0)
    assert s["hand_side"] == "right"
    assert s["meta"]["dataset"] == "synthetic" and s["meta"]["generator_version"] == dataset.GENERATOR_VERSION
    assert s["meta"]["pose_family"] in hand.POSE_FAMILIES
    assert isinstance(s["occlusion_fraction"], float)


def test_projection_consistency(batch):
    uv = project(batch["joints3d"], batch["K"])
    assert (uv - batch["joints2d"]).abs().max() < 0.5
    # the crop camera is a crop of the full frame: full-frame pixels -> box -> crop pixels
    cfg = SyntheticConfig()
    p = sample_scene(7, torch.arange(8), cfg)
    out = dataset.render_scene(p, cfg)
    full = dataset.render_scene(p, SyntheticConfig(full_frame=True))
    assert full["image"].shape[-2:] == (480, 640)
    box = out["meta"]["crop_box"]
    mapped = (full["joints2d"] - box[:, None, :2]) * (128 / box[:, None, 2:3])
    assert (mapped - out["joints2d"]).abs().max() < 0.05
    assert torch.allclose(full["joints3d"], out["joints3d"])


def test_bone_lengths_in_range(batch):
    lo, hi = hand.segment_lengths_range()
    lengths = skeleton.bone_lengths(batch["joints3d"])
    assert (lengths >= lo - 1e-2).all() and (lengths <= hi + 1e-2).all()
    ref = skeleton.reference_bone_length(batch["joints3d"])
    assert 30 < ref.min() and ref.max() < 55  # compare skeleton.MEAN_REFERENCE_BONE_MM = 43


def _flexion_deg(joints, a, b, c):
    u = joints[:, b] - joints[:, a]
    v = joints[:, c] - joints[:, b]
    cos = (u * v).sum(-1) / (u.norm(dim=-1) * v.norm(dim=-1))
    return torch.rad2deg(torch.acos(cos.clamp(-1, 1)))


def test_joint_angles_within_limits():
    rs = Stream(3, torch.arange(2000))
    angles, fam = hand.sample_pose(rs)
    lim = hand.LIMITS_DEG * hand.DEG
    assert (angles >= lim[:, 0] - 1e-6).all() and (angles <= lim[:, 1] + 1e-6).all()
    assert set(fam.tolist()) == set(range(len(hand.POSE_FAMILIES)))
    j, _ = hand.forward_kinematics(angles)
    for f in range(4):  # PIP and DIP are hinges: the bend between bones is the joint angle
        m, p, d, t = 5 + 4 * f, 6 + 4 * f, 7 + 4 * f, 8 + 4 * f
        pip = _flexion_deg(j, m, p, d)
        dip = _flexion_deg(j, p, d, t)
        assert torch.allclose(pip, angles[:, 4 * f + 2].abs() / hand.DEG, atol=0.3)  # float32 acos
        assert pip.max() <= 105 + 1e-2 and dip.max() <= 80 + 1e-2
        signed_dip = angles[:, 4 * f + 3] / hand.DEG
        coupled = (signed_dip - hand.DIP_PIP_RATIO * angles[:, 4 * f + 2] / hand.DEG).abs()
        assert (coupled <= hand.DIP_COUPLING_TOL_DEG + 1e-3).float().mean() > 0.97
    # the fist family curls the fingers: fingertips end up close to the palm
    fist = fam == hand.POSE_FAMILIES.index("fist")
    tip_to_wrist = (j[fist][:, 12] - j[fist][:, 0]).norm(dim=-1)
    assert tip_to_wrist.max() < 120


def test_determinism_and_batch_independence():
    ds = SyntheticHands(100, seed=5)
    b = ds.render_batch([9, 3, 42])
    s3 = SyntheticHands(100, seed=5)[3]
    assert torch.equal(b["image"][1], s3["image"])
    assert torch.equal(b["joints3d"][1], s3["joints3d"])
    assert torch.equal(b["visibility"][1], s3["visibility"])
    assert not torch.equal(b["image"][0], b["image"][1])
    other = SyntheticHands(100, seed=6)[3]
    assert not torch.equal(other["joints3d"], s3["joints3d"])
    collated = torch.utils.data.default_collate([ds[i] for i in (9, 3, 42)])
    for k in ("image", "joints2d", "joints3d", "K", "visibility", "mask", "depth", "occlusion_fraction"):
        assert torch.equal(collated[k], b[k]), k
    assert collated["meta"]["id"] == b["meta"]["id"]


def test_visibility_agrees_with_depth_map(batch):
    uv = batch["joints2d"]
    inside = (uv[..., 0] >= 1) & (uv[..., 0] < 127) & (uv[..., 1] >= 1) & (uv[..., 1] < 127)
    px = uv.long().clamp(0, 127)
    bi = torch.arange(uv.shape[0])[:, None].expand(-1, 21)
    mask_at = batch["mask"][bi, px[..., 1], px[..., 0]]
    depth_at = batch["depth"][bi, px[..., 1], px[..., 0]]
    vis = batch["visibility"]
    # the outside code is exactly "outside the image"
    assert torch.equal(vis == VIS_OUTSIDE, ~((uv >= 0).all(-1) & (uv[..., 0] < 128) & (uv[..., 1] < 128)))
    v = (vis == VIS_VISIBLE) & inside
    assert v.sum() > 100
    assert mask_at[v].float().mean() > 0.95
    z = batch["joints3d"][..., 2]
    close = (depth_at[v] <= z[v] + 1) & (depth_at[v] >= z[v] - 40)
    assert close.float().mean() > 0.95
    o = (vis == VIS_OBJECT) & inside
    assert o.sum() > 20
    assert (~mask_at[o]).float().mean() > 0.9
    s = (vis == VIS_SELF) & inside  # hidden by the hand: the hand is seen, well in front
    assert s.sum() > 20
    assert (mask_at[s] & (depth_at[s] < z[s] - 5)).float().mean() > 0.85


def _frontal_open_hand(level=0.0):
    """One scene: an open right hand, palm to the camera, 400 mm away, no objects."""
    cfg = SyntheticConfig(occlusion=level, blur_prob=0, noise_max=0)
    p = sample_scene(0, torch.tensor([0]), cfg)
    p["angles"] = torch.zeros(1, 20)
    p["angles"][0, 17] = 0.3  # thumb abducted a little
    p["scale"] = torch.ones(1)
    p["seg"] = torch.ones(1, 5, 3)
    p["R"] = torch.tensor([[[1.0, 0, 0], [0, -1, 0], [0, 0, -1]]])
    p["wrist_rot"] = torch.eye(3)[None]
    p["T"] = torch.tensor([[0.0, 70.0, 400.0]])
    joints = (hand.forward_kinematics(p["angles"])[0] @ p["R"].transpose(-1, -2)) + p["T"][:, None]
    p["box"] = torch.tensor([[p["K_full"][0, 0, 2] - 150, p["K_full"][0, 1, 2] - 150, 300.0]])
    p["objects"]["active"][:] = False
    return cfg, p, joints


def test_occluder_over_one_fingertip():
    cfg, p, joints = _frontal_open_hand()
    clean = dataset.render_scene(p, cfg)
    assert (clean["visibility"][0, 5:] == VIS_VISIBLE).all()
    tip = joints[0, 8]
    p["objects"]["sph_c"][0, 1] = tip * (1 - 30.0 / tip.norm())  # 30 mm in front of the tip
    p["objects"]["sph_r"][0, 1] = 6.0
    p["objects"]["active"][0, 1] = True
    occ = dataset.render_scene(p, cfg)
    vis = occ["visibility"][0]
    assert vis[8] == VIS_OBJECT
    assert (vis[torch.arange(21) != 8] != VIS_OBJECT).all()
    assert torch.equal(vis[torch.arange(21) != 8], clean["visibility"][0, torch.arange(21) != 8])
    assert 0 < occ["occlusion_fraction"][0] < 0.05
    # a bigger ball over the index finger's last two joints hides exactly those
    p["objects"]["sph_c"][0, 1] = (joints[0, 7] + joints[0, 8]) / 2 * 0.9
    p["objects"]["sph_r"][0, 1] = 14.0
    vis = dataset.render_scene(p, cfg)["visibility"][0]
    assert set((vis == VIS_OBJECT).nonzero()[:, 0].tolist()) == {7, 8}


def test_left_hand_is_the_mirror_image():
    right = SyntheticHands(50, seed=2, config=SyntheticConfig(left_hand_prob=0.0)).render_batch([1, 4])
    left = SyntheticHands(50, seed=2, config=SyntheticConfig(left_hand_prob=1.0)).render_batch([1, 4])
    assert left["hand_side"] == ["left", "left"] and right["hand_side"] == ["right", "right"]
    assert torch.equal(left["image"], right["image"].flip(-1))
    assert torch.equal(left["mask"], right["mask"].flip(-1))
    assert torch.allclose(left["joints3d"], skeleton.mirror_x(right["joints3d"]))
    assert torch.allclose(left["joints2d"], skeleton.mirror_x(right["joints2d"], 128), atol=1e-4)
    assert (project(left["joints3d"], left["K"]) - left["joints2d"]).abs().max() < 1e-3
    assert torch.equal(left["visibility"], right["visibility"])

    # a mirrored right hand is a left hand: the hand frame's handedness flips
    def handedness(j):
        x = j[:, 5] - j[:, 17]  # pinky MCP -> index MCP (radial)
        y = j[:, 9] - j[:, 0]  # wrist -> middle MCP (distal)
        n = torch.cross(x, y, dim=-1)  # palmar for a right hand
        return torch.sign((n * (j[:, 10] - j[:, 9])).sum(-1))

    assert not torch.equal(handedness(left["joints3d"]), handedness(right["joints3d"]))


def test_culling_matches_brute_force():
    cfg = SyntheticConfig(occlusion="heavy")
    p = sample_scene(11, torch.arange(6), cfg)
    out = dataset.render_scene(p, cfg)
    # rebuild the scene and compare the culled depth pass with testing every tile
    scene, _ = scene_of(p)
    K = camera.crop_intrinsics(p["K_full"], p["box"], 128)
    rays = tiles.pixel_rays(K, 128, 128)
    tri = tiles.cull(scene, K, 128, 128)
    B, P = 6, scene["cone_ra"].shape[1] + 6
    _, _, _, active = tiles._bounds(scene)
    allt = torch.stack(torch.meshgrid(torch.arange(B), torch.arange(P), torch.arange(256), indexing="ij"), -1)
    allt = allt.reshape(-1, 3)
    allt = allt[active[allt[:, 0], allt[:, 1]]]
    assert tri.shape[0] < allt.shape[0] / 4
    assert [
        torch.equal(x, y)
        for x, y in zip(render.depth_pass(scene, rays, tri), render.depth_pass(scene, rays, allt))
    ] == [True, True]
    assert out["mask"].any()


def test_round_cone_intersection_matches_sphere_tracing():
    g = torch.Generator().manual_seed(0)
    N = 3000
    pa = torch.randn(N, 3, generator=g) * 30 + torch.tensor([0, 0, 300.0])
    pb = pa + torch.randn(N, 3, generator=g) * 25
    ra = torch.rand(N, generator=g) * 10 + 5
    rb = torch.rand(N, generator=g) * 10 + 5
    d = pa + torch.randn(N, 3, generator=g) * 15
    d = d / d.norm(dim=-1, keepdim=True)
    t = ray_round_cone(d, pa, pb, ra, rb)
    s = torch.zeros(N)
    for _ in range(200):
        s = s + sdf_round_cone(d * s[:, None], pa, pb, ra, rb).clamp_min(0)
    hit = sdf_round_cone(d * s[:, None], pa, pb, ra, rb).abs() < 1e-2
    assert (torch.isfinite(t) == hit).float().mean() > 0.999
    m = hit & torch.isfinite(t)
    assert (t[m] - s[m]).abs().quantile(0.999) < 0.05


def test_occlusion_level_controls_objects():
    fr = []
    for occ in ("none", 0.3, "heavy"):
        b = SyntheticHands(64, seed=4, config=SyntheticConfig(occlusion=occ)).render_batch(range(64))
        fr.append(b["occlusion_fraction"].mean().item())
        if occ == "none":
            assert (b["visibility"] != VIS_OBJECT).all() and b["occlusion_fraction"].max() == 0
    assert fr[0] < fr[1] < fr[2]


def test_writer_reader_round_trip(tmp_path):
    cfg = SyntheticConfig(left_hand_prob=0.5)
    render_to_disk(tmp_path / "ds", 6, seed=9, config=cfg, progress=False)
    disk = DiskHands(tmp_path / "ds")
    ref = SyntheticHands(6, seed=9, config=cfg)
    assert len(disk) == 6
    for i in range(6):
        a, b = disk[i], ref[i]
        assert (a["image"] - b["image"]).abs().max() <= 1 / 255 + 1e-6
        for k in ("joints2d", "joints3d", "K", "visibility", "visible", "mask"):
            assert torch.equal(a[k], b[k]), k
        assert (a["depth"] - b["depth"]).abs().max() <= 1 / 32 + 1e-4
        assert a["hand_side"] == b["hand_side"] and a["meta"]["id"] == b["meta"]["id"]
        assert math.isclose(a["occlusion_fraction"], b["occlusion_fraction"], rel_tol=1e-9)
    assert (
        cli.main(
            [
                "render",
                "--out",
                str(tmp_path / "cli"),
                "--n",
                "2",
                "--seed",
                "1",
                "--occlusion",
                "0.2",
                "--quiet",
            ]
        )
        == 0
    )
    assert len(DiskHands(tmp_path / "cli")) == 2


def test_bad_input_messages(tmp_path):
    with pytest.raises(ValueError, match="occlusion"):
        SyntheticHands(3, config=SyntheticConfig(occlusion="lots"))
    with pytest.raises(ValueError, match="multiple of 8"):
        SyntheticHands(3, config=SyntheticConfig(crop_size=100))
    with pytest.raises(FileNotFoundError, match="handpose render"):
        DiskHands(tmp_path / "missing")
    with pytest.raises(IndexError):
        SyntheticHands(3)[3]
    with pytest.raises(SystemExit):
        cli.main(["render", "--out", str(tmp_path), "--n", "2", "--occlusion", "2"])


def test_set_compile_rejects_bad_mode():
    with pytest.raises(ValueError, match="set_compile"):
        compiled.set_compile("sometimes")
    assert not compiled.use_compiled(torch.device("cpu"), compiled.MIN_COMPILE_BATCH - 1)


@pytest.mark.slow
@pytest.mark.skipif(
    not compiled.can_compile("cpu"), reason="torch.compile needs torch >= 2.4 and a C++ compiler"
)
def test_compiled_kernels_equal_reference():
    """The fast path (torch.compile of the ray kernels) gives the eager reference's bits."""
    cfg = SyntheticConfig(occlusion="heavy")
    p = sample_scene(13, torch.arange(4), cfg)
    joints_h, frames = hand.forward_kinematics(p["angles"], p["scale"], p["seg"])
    from handpose_lib.data.synthetic.geometry import hand_cones

    pa, pb, ra, rb = hand_cones(joints_h, frames, p["scale"], p["wrist_rot"])
    Rt = p["R"].transpose(-1, -2)
    scene = {"cone_a": pa @ Rt + p["T"][:, None], "cone_b": pb @ Rt + p["T"][:, None], "cone_ra": ra,
             "cone_rb": rb, "objects": p["objects"], "appearance": p["appearance"]}  # fmt: skip
    K = camera.crop_intrinsics(p["K_full"], p["box"], 128)
    rays = tiles.pixel_rays(K, 128, 128)
    tri = tiles.cull(scene, K, 128, 128)
    lay = tiles.slot_layout(ra.shape[1])
    rays_t = rays.reshape(-1, 64, 3)
    for kind in ("cone", "box"):  # the two most involved intersections (labels depend on them)
        lo, hi = lay[kind]
        sel = tri[(tri[:, 1] >= lo) & (tri[:, 1] < hi)]
        if kind == "box" and sel.shape[0] == 0:  # make sure the box kernel is exercised
            sel = torch.stack([torch.arange(4), torch.full((4,), lo), torch.full((4,), 100)], 1)
        bi, si, ti = sel.unbind(1)
        args = (kind, rays_t, bi * 256 + ti, bi, si - lo, si, render._params(scene, kind))
        assert torch.equal(render._tile_keys(*args, compiled=True), render._tile_keys.reference(*args)), kind


def render_reference_and_native(ds, idx):
    """``ds.render_batch(idx)`` twice: the eager torch reference, then the C++ kernel's path
    (both switches back on "auto" afterwards, also after an error)."""
    try:
        native.set_native(False)
        compiled.set_compile(False)
        ref = ds.render_batch(idx)
        native.set_native(True)
        out = ds.render_batch(idx)
    finally:
        native.set_native("auto")
        compiled.set_compile("auto")
    return ref, out


@pytest.mark.skipif(not native.available(), reason="the C++ kernel needs a C++ compiler")
@pytest.mark.parametrize(
    "cfg",
    [
        SyntheticConfig(occlusion="heavy", blur_prob=0.5),
        SyntheticConfig(full_frame=True, left_hand_prob=0.5, jpeg_prob=0.5),
    ],
    ids=["crops-heavy", "full-frame-left-jpeg"],
)
def test_native_kernel_equals_torch_reference(cfg):
    """The C++ kernel (native.py) gives the eager torch reference's labels bit for bit and its
    images and depth to float32 rounding (in fact the same bits)."""
    ds = SyntheticHands(1000, seed=21, config=cfg)
    idx = range(8) if cfg.full_frame else range(24)
    ref, out = render_reference_and_native(ds, idx)
    for k, v in ref.items():
        if k in ("image", "depth"):
            assert (v - out[k]).abs().max() <= 1e-4, k
        elif isinstance(v, torch.Tensor):
            assert torch.equal(v, out[k]), k
    assert out["mask"].any() and (out["occlusion_fraction"] > 0).any()


def test_native_kernel_rays_and_culling_equal_torch():
    """The kernel's own pixel rays and culling are tiles.pixel_rays's and tiles.cull's bits
    (the check native.py runs when it loads the library)."""
    if not native.available():
        pytest.skip("the C++ kernel needs a C++ compiler")
    native._check(native._library())


def test_native_kernel_skewed_camera_uses_torch_rays():
    """Cameras the kernel's own ray formula does not cover (skew) get torch's rays: same output."""
    if not native.available():
        pytest.skip("the C++ kernel needs a C++ compiler")
    p = sample_scene(3, torch.arange(4), SyntheticConfig(occlusion="heavy"))
    scene, _ = scene_of(p)
    K = camera.crop_intrinsics(p["K_full"], p["box"], 64)
    assert render._pinhole(K)
    K[:, 0, 1] = 3.0
    assert not render._pinhole(K)
    ref = render.render(scene, K, 64, 64, compiled=False, native=False)
    out = render.render(scene, K, 64, 64, native=True)
    for k, v in ref.items():
        assert torch.equal(v, out[k]), k
    assert out["mask"].any()


def test_native_kernel_falls_back_without_compiler(monkeypatch):
    """No C++ compiler: one warning, then the torch code renders (same outputs)."""
    cfg = SyntheticConfig()
    ds = SyntheticHands(10, seed=4, config=cfg)
    monkeypatch.setattr(native, "_compiler", lambda: None)
    native._library.cache_clear()
    try:
        with pytest.warns(UserWarning, match="C\\+\\+ kernel is not available"):
            assert not native.available()
        assert not native.use_native(torch.device("cpu"))
        out = ds.render_batch(range(2))
        assert out["image"].shape == (2, 3, 128, 128) and out["mask"].any()
    finally:
        native._library.cache_clear()


def test_background_photos_from_a_copy_without_scikit_image(tmp_path, monkeypatch):
    """A bare GPU node without scikit-image reads the same photographs from a copied folder."""
    import shutil
    import sys

    from handpose_lib.data.synthetic import backgrounds as bg

    src = bg.photo_folder()
    for f in src.iterdir():
        if f.suffix in (".png", ".jpg"):
            shutil.copy(f, tmp_path / f.name)
    bg._photos.cache_clear()
    want = bg._photos()
    monkeypatch.setitem(sys.modules, "skimage", None)  # import skimage fails from here on
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    try:
        bg._photos.cache_clear()
        with pytest.raises(RuntimeError, match=f"scikit-image, which is not installed.*{bg.PHOTOS_ENV}"):
            bg._photos()
        monkeypatch.setenv(bg.PHOTOS_ENV, str(tmp_path))
        got = bg._photos()
        assert len(got) == len(want) == 15 and all((a == b).all() for a, b in zip(got, want))
    finally:
        bg._photos.cache_clear()


def test_render_never_replaces_files_it_did_not_write(tmp_path):
    user = tmp_path / "mine"
    (user / "images").mkdir(parents=True)
    (user / "images" / "000000.png").write_bytes(b"my photo")
    (user / "meta.json").write_text("{}")
    with pytest.raises(FileExistsError, match="not empty.*--overwrite"):
        render_to_disk(user, 2, seed=1, progress=False)
    with pytest.raises(FileExistsError, match="only replaces a data set written by handpose render"):
        render_to_disk(user, 2, seed=1, progress=False, overwrite=True)
    assert (user / "images" / "000000.png").read_bytes() == b"my photo"
    assert (user / "meta.json").read_text() == "{}"
    with pytest.raises(FileExistsError, match="is a file"):
        render_to_disk(user / "meta.json", 2, progress=False)


def test_smaller_rerender_with_overwrite_leaves_no_stale_images(tmp_path):
    out = tmp_path / "ds"
    render_to_disk(out, 3, seed=1, progress=False)
    render_to_disk(out, 1, seed=2, progress=False, overwrite=True)
    assert sorted(p.name for p in (out / "images").iterdir()) == ["000000.png"]
    assert sorted(p.name for p in (out / "depth").iterdir()) == ["000000.png"]
    disk = DiskHands(out)
    assert len(disk) == 1 and disk.meta["seed"] == 2
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="notes.txt is not part of a rendered data set"):
        render_to_disk(out, 1, seed=3, progress=False, overwrite=True)


def test_render_fails_loudly_when_an_image_cannot_be_written(tmp_path, monkeypatch):
    import handpose_lib.data.synthetic.io as sio

    monkeypatch.setattr(sio.cv2, "imwrite", lambda path, img: False)  # what OpenCV does on failure
    with pytest.raises(OSError, match="cannot write .*000000.png"):
        render_to_disk(tmp_path / "ds", 1, seed=1, progress=False)


def test_test_sets_are_versioned_and_the_capsule_set_is_engine_v1s(tmp_path, monkeypatch):
    """The test set of GENERATOR_VERSION 2.0 draws engine v2 (mesh hands, both sides); the capsule
    set keeps engine v1's samples bit for bit under a name of its own."""
    from handpose_lib.data.rendered import TEST_ENGINE, test_set
    from handpose_lib.data.synthetic import SyntheticConfig, SyntheticHands

    monkeypatch.setenv("HANDPOSE_CACHE", str(tmp_path))
    mesh, name = test_set(n=4, image_size=64)
    caps, cname = test_set(n=4, image_size=64, hand_model="capsule")
    v = dataset.GENERATOR_VERSION
    assert (name, cname) == (f"synthetic-v{v}-seed2-n4", f"synthetic-v{v}-capsule-seed2-n4")
    for got, engine in ((caps, {}), (mesh, TEST_ENGINE)):
        ref = SyntheticHands(4, seed=2, config=SyntheticConfig(crop_size=64, **engine))
        for i in range(4):
            want = (ref[i]["image"].clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0)
            assert torch.equal(torch.from_numpy(got.images[i].copy()), want)
            assert torch.allclose(got[i]["joints2d"], ref[i]["joints2d"])
    with pytest.raises(ValueError, match="hand_model"):
        test_set(n=4, hand_model="sphere")


def test_cached_sets_are_rendered_aside_and_moved_into_place(tmp_path, monkeypatch):
    """A cached set is rendered into a folder of the process's own and renamed when complete: the
    next call reuses it, an interrupted render left in its place is replaced, and when another
    process finished the same set first, its set is kept and ours dropped."""
    import shutil

    from handpose_lib.data import rendered
    from handpose_lib.data.cached import META_FILE, is_complete
    from handpose_lib.data.synthetic import SyntheticConfig

    monkeypatch.setenv("HANDPOSE_CACHE", str(tmp_path))
    cfg = SyntheticConfig(crop_size=32)
    a = rendered.cached_synthetic(3, 5, cfg, workers=0, progress=False)
    (folder,) = list((tmp_path / "sets").iterdir())  # no temporary folder left
    assert is_complete(folder) and not folder.name.startswith(".")
    first = a.images.copy()
    # interrupted: images written, no meta.json
    (folder / META_FILE).unlink()
    (folder / "images.npy").write_bytes(b"half")
    b = rendered.cached_synthetic(3, 5, cfg, workers=0, progress=False)
    assert (b.images == first).all() and is_complete(folder)
    assert [p.name for p in (tmp_path / "sets").iterdir()] == [folder.name]
    # another process was first: its set stays, ours goes
    ours = tmp_path / "sets" / f".{folder.name}.tmp-1"
    shutil.copytree(folder, ours)
    (folder / "theirs").write_text("x")
    rendered._move_into_place(ours, folder)
    assert not ours.exists() and (folder / "theirs").exists()
