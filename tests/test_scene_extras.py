"""Engine v2's scene extras (``extras.py``, ``extras_render.py``, ``accessories.py``, ``held.py``,
``context.py``, ``shapes.py``, ``backgrounds.dead_leaves_pool``): off they change nothing, on
each changes the image, samples stay deterministic and mirrored exactly, labels follow the
merged depth."""

from __future__ import annotations

from dataclasses import fields

import pytest
import torch

from handpose_lib.data.sample import VIS_OBJECT, VIS_OUTSIDE, project
from handpose_lib.data.synthetic import SyntheticConfig, SyntheticHands, camera, mesh_render, native, shapes
from handpose_lib.data.synthetic.extras import HEAD_ONLY, SceneExtras
from handpose_lib.data.synthetic.scene import sample_scene

SEED = 4
SIZE = 64


def _cfg(**kw) -> SyntheticConfig:
    return SyntheticConfig(crop_size=SIZE, hand_model="mesh", occlusion="none", extras=SceneExtras(**kw))


def test_off_is_the_engine_without_extras():
    plain = SyntheticConfig(crop_size=SIZE, hand_model="mesh")
    off = SyntheticConfig(crop_size=SIZE, hand_model="mesh", extras=SceneExtras())
    assert "extras" not in off.to_dict() and off.to_dict() == plain.to_dict()
    assert "extras" not in sample_scene(SEED, torch.arange(3), off)
    a, b = (SyntheticHands(6, SEED, c).render_batch(range(6)) for c in (plain, off))
    for k in ("image", "mask", "depth", "visibility", "occlusion_fraction"):
        assert torch.equal(a[k], b[k]), k
    assert SyntheticConfig(hand_model="mesh", extras=SceneExtras.rich()).to_dict()["extras"]["held_prob"] > 0


def test_extras_from_json_configs():
    rich = SyntheticConfig(hand_model="mesh", extras=SceneExtras.rich())
    assert SyntheticConfig(hand_model="mesh", extras="rich") == rich
    assert SyntheticConfig(**rich.to_dict()).extras == rich.extras  # the dict round trip (TrainConfig.engine)
    # the head options appear only when on: the dicts (and cache hashes) of earlier configs stay
    assert not set(HEAD_ONLY) & set(rich.to_dict()["extras"])
    bust = SyntheticConfig(hand_model="mesh", extras={**rich.extras.to_dict(), "mesh_head_prob": 0.5})
    assert bust.to_dict()["extras"]["mesh_head_prob"] == 0.5
    assert SyntheticConfig(**bust.to_dict()).extras == bust.extras
    assert SyntheticConfig(hand_model="mesh", extras="held_prob=0.5").extras == SceneExtras(held_prob=0.5)
    with pytest.raises(ValueError, match="unknown fields"):
        SyntheticConfig(hand_model="mesh", extras={"rings": 0.5})


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="mesh hand"):
        SyntheticConfig(extras=SceneExtras(ring_prob=0.5)).check()
    with pytest.raises(ValueError, match="ring_prob"):
        SyntheticConfig(hand_model="mesh", extras=SceneExtras(ring_prob=1.5)).check()


@pytest.mark.parametrize("name", [f.name for f in fields(SceneExtras)])
def test_each_option_changes_the_image_and_not_the_hand(name):
    idx = range(12)  # holds every pose family that holds things for this seed
    base = {"body_prob": 1.0} if name in HEAD_ONLY else {}  # these change a drawn head
    off = SyntheticHands(12, SEED, _cfg(**base)).render_batch(idx)
    on = SyntheticHands(12, SEED, _cfg(**base, **{name: 1.0})).render_batch(idx)
    changed = (on["image"] != off["image"]).flatten(1).any(1)
    assert changed.any(), name
    for k in ("joints2d", "joints3d", "K"):
        assert torch.equal(on[k], off[k]), k
    assert torch.equal(on["meta"]["crop_box"], off["meta"]["crop_box"])


def test_samples_are_deterministic_alone_or_in_a_batch():
    rich = {f.name: getattr(SceneExtras.rich(), f.name) for f in fields(SceneExtras)}
    # half the heads the bust: a sample drawn alone lacks it where its batch has one
    ds = SyntheticHands(20, SEED, _cfg(**{**rich, "body_prob": 0.6, "mesh_head_prob": 0.5}))
    batch = ds.render_batch([3, 7, 11, 2])
    for j, i in enumerate([3, 7, 11, 2]):
        one = ds[i]
        for k in ("image", "mask", "depth", "visibility"):
            assert torch.equal(batch[k][j], one[k]), (i, k)


def test_left_hands_are_exact_mirror_images():
    rich = {f.name: 0.6 for f in fields(SceneExtras)}
    r = SyntheticHands(
        6, SEED, SyntheticConfig(crop_size=SIZE, hand_model="mesh", extras=SceneExtras(**rich))
    )
    cfg_l = SyntheticConfig(crop_size=SIZE, hand_model="mesh", left_hand_prob=1.0, extras=SceneExtras(**rich))
    a, b = r.render_batch(range(6)), SyntheticHands(6, SEED, cfg_l).render_batch(range(6))
    assert torch.equal(b["image"], a["image"].flip(-1))
    assert torch.equal(b["mask"], a["mask"].flip(-1))
    assert torch.equal(b["visibility"], a["visibility"])


def _render(cfg, n, native_):
    p = sample_scene(SEED, torch.arange(n), cfg)
    K = camera.crop_intrinsics(p["K_full"], p["box"], SIZE)
    out, joints = mesh_render.render_mesh(p, K, SIZE, SIZE, native=native_)
    return out, project(joints, K)


def test_visibility_agrees_with_the_merged_depth():
    """A joint is hidden by an object exactly where its pixel does not show the hand's skin, and
    the extras (held objects, the other hand, worn things) hide joints the bare scene shows."""
    n = 24
    ex = dict(held_prob=1.0, other_hand_prob=1.0, ring_prob=1.0, watch_prob=1.0, body_prob=1.0)
    out, uv = _render(_cfg(**ex), n, False)
    bare, _ = _render(_cfg(), n, False)
    vis = out["visibility"]
    inside = vis != VIS_OUTSIDE
    x, y = uv[..., 0].floor().long().clamp(0, SIZE - 1), uv[..., 1].floor().long().clamp(0, SIZE - 1)
    b = torch.arange(n)[:, None]
    skin = out["mask"][b, y, x]
    # (joints whose pixel misses the hand's surface, a fingertip at a silhouette's edge, are
    # visible in the bare scene too: left out)
    on_hand = inside & bare["mask"][b, y, x]
    assert torch.equal((vis == VIS_OBJECT)[on_hand], ~skin[on_hand])
    new = (vis == VIS_OBJECT) & (bare["visibility"] != VIS_OBJECT)
    assert new.sum() >= 10  # the extras hide joints
    # where they do, the picture shows something else than the bare scene's hand there
    assert (out["image"][b, :, y, x] != bare["image"][b, :, y, x]).any(-1)[new].float().mean() > 0.9
    # depth is the hand's only where its skin shows; the occlusion fraction grows
    assert torch.equal(out["depth"] > 0, out["mask"])
    assert (out["occlusion_fraction"] >= bare["occlusion_fraction"]).all()
    assert (out["occlusion_fraction"] > bare["occlusion_fraction"]).sum() >= n // 2


@pytest.mark.skipif(native._compiler() is None, reason="no C++ compiler")
def test_cpp_kernel_matches_torch_reference_with_extras():
    cfg = _cfg(**{f.name: 0.7 for f in fields(SceneExtras)})
    ref, _ = _render(cfg, 8, False)
    out, _ = _render(cfg, 8, True)
    for k in ("image", "mask", "depth", "occlusion_fraction", "visibility"):
        assert torch.equal(out[k], ref[k]), k


@pytest.mark.parametrize("shape", ["sphere", "tube", "box", "ring"])
def test_shapes_wind_outwards(shape):
    """Triangles wind counter-clockwise seen from outside and normals point outwards."""
    c, Rm = torch.tensor([[1.0, 2.0, 3.0]]), torch.eye(3)[None]
    if shape == "sphere":
        V, N = shapes.ellipsoid(c, Rm, torch.tensor([[3.0, 4.0, 5.0]]))
        F = shapes.sphere_template()[1]
        centre = c[:, None]
    elif shape == "tube":
        V, N = shapes.tube(
            c, c + torch.tensor([[0.0, 0.0, 10.0]]), torch.tensor([3.0]), torch.tensor([2.0]), Rm[:, 0]
        )
        F = shapes.tube_template()[1]
        centre = (c + torch.tensor([[0.0, 0.0, 5.0]]))[:, None]
    elif shape == "box":
        V, N = shapes.box(c, Rm, torch.tensor([[1.0, 2.0, 3.0]]))
        F = shapes.box_template()[2]
        centre = c[:, None]
    else:
        r = torch.tensor([20.0])
        V, N = shapes.ring(c, Rm, r, r, torch.tensor([2.0]), torch.tensor([4.0]))
        F = shapes.ring_template()[1]
        d = V - c[:, None]
        d[..., 2] = 0
        centre = c[:, None] + 20.0 * d / d.norm(dim=-1, keepdim=True)  # each vertex's tube centre
    a, b_, c_ = (V[0, F[:, i]] for i in range(3))
    fn = torch.cross(b_ - a, c_ - a, dim=-1)
    mid = (a + b_ + c_) / 3
    ref = centre[0] if centre.shape[1] == 1 else centre[0, F].mean(1)
    ok = fn.norm(dim=-1) > 1e-6
    assert ((fn * (mid - ref)).sum(-1)[ok] > 0).all()
    assert ((N[0] * (V[0] - centre[0])).sum(-1) > 0).float().mean() > 0.9


def test_the_bust_is_a_head_and_shoulders_facing_the_camera():
    """The MakeHuman bust in the head frame (x right, y down, z away from the camera): the nose in
    front in the middle, the eyes either side above it, the chin below, cloth only below the
    neckline, the head's triangles wound outwards, the head box the skin's extent."""
    from handpose_lib.data.synthetic.bust import load_bust

    b = load_bust()
    V, skin = b["vertices"], b["skin"]
    face = skin & (V[:, 1] < b["head_half_axes"][1])
    nose = V[face][V[face][:, 2].argmin()]
    assert nose[2] < -0.8 * b["head_half_axes"][2] and nose[0].abs() < 5
    left, right = b["eye_centres"]
    assert left[0] < -20 and right[0] > 20 and torch.allclose(left[1:], right[1:], atol=1.0)
    assert (b["eye_centres"][:, 1] < nose[1]).all() and (b["eye_centres"][:, 2] < 0).all()
    head = V[skin & (V[:, 1] <= b["head_half_axes"][1] + 1e-3)]
    torch.testing.assert_close(head[:, 1].min(), -b["head_half_axes"][1])  # the crown
    assert V[~skin, 1].min() > head[:, 1].max() - 60  # cloth starts at the neck, below the chin
    assert (b["below_neckline_mm"][skin] == 0).all() and (b["below_neckline_mm"][~skin] >= 0).all()
    # the cranium's triangles face away from the head's centre (the face's folds left out)
    F = b["faces"]
    tri = V[F]
    n = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    c = tri.mean(1)
    top = skin[F].all(1) & (c[:, 1] < -0.4 * b["head_half_axes"][1])
    assert ((n * c).sum(-1)[top] > 0).float().mean() > 0.95
    assert b["face_uv"].min() >= 0 and b["face_uv"].max() <= 1


def _palm(p: dict) -> torch.Tensor:
    centre = torch.tensor(camera.PALM_CENTRE_MM) * p["scale"][:, None]
    return p["T"] + shapes.rotate(p["R"], centre[:, None])[:, 0]


@pytest.mark.parametrize("near", [0.0, 1.0])
def test_heads_behind_the_hand_or_near_it_like_a_photograph(near):
    """Held up to the camera, the head is 200-700 mm behind the palm; photographed from a few
    metres (``head_near_prob``), 50-350 mm behind and 120-450 mm to a side of it."""
    cfg = SyntheticConfig(hand_model="mesh", extras=SceneExtras(body_prob=1.0, head_near_prob=near))
    p = sample_scene(SEED, torch.arange(64), cfg)
    d = p["extras"]["head_c"] - _palm(p)
    lo, hi = (50.0, 350.0) if near else (200.0, 700.0)
    assert (d[:, 2] >= lo - 1e-3).all() and (d[:, 2] <= hi + 1e-3).all()
    side = d[:, :2].norm(dim=-1)
    if near:
        assert (side >= 120 - 1e-3).all() and (side <= 450 + 1e-3).all()
    else:
        assert side.min() < 120  # some heads right behind the hand


def test_mesh_heads_replace_the_ellipsoids_where_drawn():
    """``mesh_head_prob`` picks the bust for a share of the drawn heads (never without a head),
    sized by the same factor as the ellipsoid head; the skin layout holds the bust only for a
    batch with one (the rendering: ``test_each_option_changes_the_image_and_not_the_hand``, the
    C++ kernel against the torch reference, the mirror and batch tests, all with busts)."""
    from handpose_lib.data.synthetic import context
    from handpose_lib.data.synthetic.bust import load_bust

    ex = SceneExtras(body_prob=0.7, mesh_head_prob=0.5)
    e = sample_scene(SEED, torch.arange(200), SyntheticConfig(hand_model="mesh", extras=ex))["extras"]
    m = e["mesh_head"]
    assert (m <= e["body_on"]).all() and 0.2 < m.float().mean() < 0.5
    k = e["head_axes"][m] / load_bust()["head_half_axes"]
    assert torch.allclose(k, k[:, :1].expand_as(k)) and (k >= 0.9 - 1e-6).all() and (k <= 1.1 + 1e-6).all()
    assert context.with_bust(e) and not context.with_bust({**e, "mesh_head": torch.zeros_like(m)})
    n_plain = context.skin_layout(False)[0].shape[0]
    assert context.skin_layout(True)[0].shape[0] == n_plain + load_bust()["faces"].shape[0]
