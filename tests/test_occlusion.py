"""Occlusion studies: pasted occluders keep labels right, the benchmark is deterministic, the
visibility split metrics and the ablation helpers compute what they say."""

import numpy as np
import pytest
import torch

from handpose_lib import occlusion, skeleton
from handpose_lib.data.occlude import (
    ALPHA_HIDDEN,
    Chain,
    Occluder,
    PasteOccluders,
    occluder_alpha,
    paste,
    update_visibility,
)
from handpose_lib.data.sample import VIS_OBJECT, VIS_OUTSIDE, VIS_SELF, VIS_VISIBLE, make_sample
from handpose_lib.evaluate import evaluate_predictions
from handpose_lib.lhr import argmax_decode


def _sample(size=64):
    rng = np.random.default_rng(0)
    j2 = np.stack([np.linspace(8, 56, 21), np.linspace(10, 50, 21)], 1)
    j2[20] = [70.0, 30.0]  # outside the image
    vis = np.full(21, VIS_VISIBLE)
    vis[3] = VIS_SELF
    vis[20] = VIS_OUTSIDE
    img = rng.uniform(0, 1, (3, size, size)).astype(np.float32)
    return make_sample(
        torch.from_numpy(img),
        j2,
        rng.normal(0, 50, (21, 3)) + [0, 0, 500],
        np.eye(3),
        dataset="t",
        sample_id="0",
        visibility=vis,
    )


# ---------------------------------------------------------------------------- augmentation


def test_paste_keeps_joints_and_marks_covered_joints():
    s = _sample()
    j = s["joints2d"][10].numpy()
    occ = Occluder((float(j[0]), float(j[1])), (4.0, 4.0), feather=0.5)
    out = paste(s, occ, np.random.default_rng(1))
    for key in ("joints2d", "joints3d", "K"):
        assert torch.equal(out[key], s[key])  # the hand's joints do not move
    alpha = occluder_alpha(occ, 64, 64)
    covered = [
        k for k in range(20) if alpha[int(s["joints2d"][k, 1]), int(s["joints2d"][k, 0])] >= ALPHA_HIDDEN
    ]
    assert 10 in covered and len(covered) < 20
    for k in range(21):
        if k in covered:
            assert out["visibility"][k] == VIS_OBJECT
        else:
            assert out["visibility"][k] == s["visibility"][k]
    assert out["visibility"][20] == VIS_OUTSIDE
    assert torch.equal(out["visible"], out["visibility"] == VIS_VISIBLE)
    # the image changed under the occluder only
    diff = (out["image"] - s["image"]).abs().sum(0).numpy()
    assert diff[int(j[1]), int(j[0])] > 0.05
    assert diff[alpha == 0].max() == 0.0
    assert s["visibility"][10] == VIS_VISIBLE  # the input is not modified


def test_self_hidden_joint_under_an_object_becomes_object_hidden():
    vis = torch.tensor([VIS_SELF] * 21)
    j2 = torch.full((21, 2), 1.5)
    j2[5] = torch.tensor([10.5, 10.5])
    alpha = np.zeros((16, 16), np.float32)
    alpha[10, 10] = 0.6
    out = update_visibility(vis, j2, alpha)
    assert out[5] == VIS_OBJECT and (out[torch.arange(21) != 5] == VIS_SELF).all()
    alpha[10, 10] = 0.4  # below the threshold: unchanged
    assert torch.equal(update_visibility(vis, j2, alpha), vis)


def test_paste_occluders_probability_and_determinism():
    s = _sample()
    assert PasteOccluders(prob=0.0)(s, np.random.default_rng(0)) is s
    aug = Chain(None, PasteOccluders(prob=1.0, strength=1.0, max_count=2))
    a = aug(s, np.random.default_rng(3))
    b = aug(s, np.random.default_rng(3))
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["visibility"], b["visibility"])
    assert a["meta"]["pasted_occluders"] >= 1
    assert torch.equal(a["joints2d"], s["joints2d"])
    with pytest.raises(ValueError, match="prob and strength"):
        PasteOccluders(prob=1.5)
    with pytest.raises(ValueError, match="shape"):
        Occluder((0, 0), (1, 1), shape="star")


# ---------------------------------------------------------------------------- benchmark


@pytest.fixture(scope="module")
def small_bench():
    return occlusion.build_test_sets(n=2, size=64, max_scenes=24, chunk=12, progress=False)


def test_benchmark_is_deterministic_and_binned(small_bench, tmp_path):
    again = occlusion.build_test_sets(n=2, size=64, max_scenes=24, chunk=8, progress=False)  # other chunking
    assert set(small_bench) == set(occlusion.SET_NAMES)
    for name in small_bench:
        assert occlusion.fingerprint(small_bench[name]) == occlusion.fingerprint(again[name]), name
    for name, (lo, hi) in occlusion.LEVEL_BINS.items():
        f = small_bench[name].labels["occlusion_fraction"]
        assert ((f >= lo) & (f < hi)).all(), name
    # targeted cases reuse the object-free scenes; their target joints are hidden by the object
    clean = small_bench["0%"]
    assert (clean.labels["visibility"] != VIS_OBJECT).all()
    tips = small_bench["fingertip"]
    assert np.array_equal(tips.labels["joints2d"], clean.labels["joints2d"])
    assert (tips.labels["visibility"][:, 8] == VIS_OBJECT).all()
    assert (small_bench["thumb"].labels["visibility"][:, 1:5] == VIS_OBJECT).all()
    assert (small_bench["finger"].labels["visibility"][:, 5:9] == VIS_OBJECT).all()
    # save / load round trip
    folder = occlusion.save_test_sets(small_bench, tmp_path / "b")
    back = occlusion.load_test_sets(folder)
    for name in small_bench:
        assert occlusion.fingerprint(back[name]) == occlusion.fingerprint(small_bench[name])
    s = back["40%"][0]
    assert s["image"].shape == (3, 64, 64) and s["visibility"].shape == (21,)


def test_load_benchmark_missing_folder_says_how_to_build(tmp_path):
    with pytest.raises(FileNotFoundError, match="handpose occlusion"):
        occlusion.load_test_sets(tmp_path / "nothing")


# ---------------------------------------------------------------------------- metrics


def test_visibility_split_metrics_hand_made():
    n = 2
    gt2d = np.zeros((n, 21, 2))
    pred2d = gt2d.copy()
    vis = np.full((n, 21), VIS_VISIBLE)
    vis[:, 8] = VIS_OBJECT
    vis[:, 12] = VIS_SELF
    pred2d[:, 8] = [3.0, 4.0]  # 5 px on object-hidden joints
    pred2d[:, 12] = [0.0, 2.0]  # 2 px on self-hidden joints
    rng = np.random.default_rng(0)
    gt3d = rng.normal(0, 40, (n, 21, 3))
    gt3d[:, 0] = 0.0
    gt_norm, _ = skeleton.normalise_3d(torch.from_numpy(gt3d))
    pred3d = gt_norm.numpy().copy()
    ref = skeleton.reference_bone_length(gt3d)[:, None]
    pred3d[:, 8, 0] += 6.0 / ref[:, 0]  # 6 mm on the object-hidden joint
    rep = evaluate_predictions(pred2d, gt2d, pred3d, gt3d, vis)
    bv = rep["by_visibility"]
    assert bv["visible"]["epe2d_px"] == pytest.approx(0.0, abs=1e-9)
    assert bv["visible"]["epe3d_mm"] == pytest.approx(0.0, abs=1e-6)
    assert bv["hidden_by_object"]["epe2d_px"] == pytest.approx(5.0)
    assert bv["hidden_by_object"]["epe3d_mm"] == pytest.approx(6.0)
    assert bv["hidden_by_hand"]["epe2d_px"] == pytest.approx(2.0)
    assert bv["hidden"]["epe2d_px"] == pytest.approx(3.5)
    assert bv["hidden_by_object"]["fraction_of_joints"] == pytest.approx(1 / 21)
    # the ablation table and curve read these numbers back
    res = {"x": {"label": "X", "results": {"40%": occlusion._trim(rep)}}}
    (row,) = occlusion.table_rows(res)
    assert row["epe2d_hidden_obj_px"] == pytest.approx(5.0) and row["epe3d_hidden_obj_mm"] == pytest.approx(
        6.0
    )
    fig = occlusion.curve_figure(res, "epe2d_px", "hidden_by_object")
    assert fig.data[0].y[list(occlusion.LEVEL_BINS).index("40%")] == pytest.approx(5.0)


# ---------------------------------------------------------------------------- ablation helpers


def test_direct_joints_wrapper_and_loss():
    from handpose_lib.model import build_model, tiny_config

    torch.manual_seed(0)
    net = build_model(tiny_config(input_size=64, heatmap_size=32))
    m = occlusion.DirectJoints(net)
    x = torch.rand(2, 3, 64, 64)
    out = m(x)
    raw = net(x)
    assert out.joints3d.shape == (2, 21, 3)
    assert torch.equal(out.joints3d[:, 0], torch.zeros(2, 3))
    assert torch.allclose(out.joints3d[:, 1:], raw.bones)  # the FC outputs read as joints
    assert torch.allclose(skeleton.bones_to_joints(out.bones), out.joints3d, atol=1e-5)
    j3 = torch.randn(2, 21, 3) * 30 + torch.tensor([0.0, 0.0, 500.0])
    batch = {"image": x, "joints2d": torch.rand(2, 21, 2) * 64, "joints3d": j3}
    loss, parts = occlusion.joint_loss_fn({})(out, batch)
    loss.backward()
    assert torch.isfinite(loss) and "joints3d" in parts
    gt, _ = skeleton.normalise_3d(j3)
    assert parts["joints3d"] == pytest.approx(
        0.5 * (out.joints3d - gt).pow(2).sum((-1, -2)).mean().item(), rel=1e-5
    )
    a = occlusion.ArgmaxDecoded(net, 64)(x)
    assert torch.allclose(a.coords2d, argmax_decode(raw.heatmaps, 64))


def test_pasted_set_is_reproducible_per_visit():
    base = [_sample() for _ in range(2)]
    p1 = occlusion.PastedSet(base, PasteOccluders(prob=1.0), seed=0)
    p2 = occlusion.PastedSet(base, PasteOccluders(prob=1.0), seed=0)
    first = p1[1]
    assert torch.equal(first["image"], p2[1]["image"])
    assert not torch.equal(first["image"], p1[1]["image"])  # the second visit draws anew


def test_direct_joints_checkpoint_round_trip(tmp_path):
    """(c) is trained and saved as the DirectJoints wrapper and loaded back the same way."""
    from handpose_lib import checkpoint as ckpt
    from handpose_lib.config import build_for_config, tiny_recipe
    from handpose_lib.train import fit

    base = [_sample(64) for _ in range(2)]
    for s in base:
        s["image"] = torch.nn.functional.interpolate(s["image"][None], size=128)[0]
        s["joints2d"] = s["joints2d"] * 2
    cfg = tiny_recipe(batch_size=2, epochs=1, max_steps=1, num_workers=0, threads=1, augment=False, n_train=2)
    torch.manual_seed(0)
    model = occlusion.DirectJoints(build_for_config(cfg))
    fit(model, base, None, cfg, tmp_path / "c", loss_fn=occlusion.joint_loss_fn({}), progress=False)
    back = ckpt.load_weights(
        occlusion.DirectJoints(build_for_config(cfg)), ckpt.load_checkpoint(tmp_path / "c")
    )
    x = torch.rand(1, 3, 128, 128)
    model.eval(), back.eval()
    assert torch.allclose(model(x).joints3d, back(x).joints3d)


def test_variant_paths_keep_seeds_apart():
    root0, res0 = occlusion.variant_paths("quick", 0)
    root1, res1 = occlusion.variant_paths("quick", 1)
    assert res0 == occlusion.RESULTS_DIR and root0.name == "occlusion-cpu"
    assert res1 == occlusion.RESULTS_DIR / "seed1" and root1.name == "occlusion-cpu-seed1"
    assert occlusion.variant_paths("full", 2)[1] == occlusion.RESULTS_DIR / "full" / "seed2"
    assert occlusion.variant_paths("cpu", 1) == (root1, res1)  # the study's old name of the quick profile
    with pytest.raises(ValueError, match="unknown profile"):
        occlusion.variant_paths("huge")


def test_variants_and_profiles_are_frozen_and_named():
    assert occlusion.VARIANT_NAMES == (
        "a_full",
        "b_no_occ_aug",
        "c_direct_joints",
        "d_argmax",
        "e_no_intermediate",
    )
    assert occlusion.variant("d_argmax").weights_of == occlusion.A_FULL.name
    assert occlusion.variant("e_no_intermediate").loss_overrides() == {"heatmaps": 0.0}
    assert occlusion.A_FULL.loss_overrides() == {}
    with pytest.raises(ValueError, match="unknown variant"):
        occlusion.variant("z_nope")
    with pytest.raises(AttributeError):
        occlusion.A_FULL.paste_occluders = False  # frozen
    quick = occlusion.study_profile("quick").recipe_overrides()
    assert quick["n_train"] == 4096 and quick["threads"] == 1
    assert "threads" not in occlusion.FULL.recipe_overrides()


def test_committed_results_load():
    """results/occlusion/ (written as the "cpu" budget) loads as the quick profile's table."""
    for folder in (occlusion.RESULTS_DIR, occlusion.RESULTS_DIR / "seed1"):
        res = occlusion.load_results(folder)
        assert list(res) == list(occlusion.VARIANT_NAMES), folder
        assert all(set(occlusion.SET_NAMES) <= set(r["results"]) for r in res.values())
    assert occlusion.table_rows(occlusion.load_results())


def test_showcase_sweep_frames_on_a_tiny_model():
    """tools/occlusion_showcase.py (chapter 8's figures): the sweep's frames on an untrained model."""
    import base64
    import sys

    import cv2

    sys.path.insert(0, str(occlusion.REPO_ROOT / "tools"))
    import occlusion_showcase as show

    from handpose_lib.model import build_model, tiny_config

    torch.manual_seed(0)
    net = build_model(tiny_config(input_size=64, heatmap_size=32)).eval()
    frames = show.sweep_frames(net, _sample(64), radius=8.0, steps=3)
    assert [f["x"] for f in frames] == [8.0, 32.0, 56.0]
    img = cv2.imdecode(np.frombuffer(base64.b64decode(frames[1]["jpg"]), np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (64, 64, 3)
    assert np.asarray(frames[1]["pred2d"]).shape == (21, 2) and len(frames[1]["visibility"]) == 21
    assert (np.asarray(frames[1]["visibility"]) == VIS_OBJECT).any()  # the disc over the palm hides joints


def test_seed_rows_hand_made():
    def res(label, e0):
        return {"label": label, "results": {"0%": {"overall": {"epe3d_mm": e0}}}}

    by_seed = {
        0: {"a_full": res("(a)", 40.0), "b_no_occ_aug": res("(b)", 44.0)},
        1: {"a_full": res("(a)", 43.0)},  # (b) has no seed-1 run: left out
    }
    rows = occlusion.seed_rows(by_seed, "0%", "epe3d_mm")
    assert [r["variant"] for r in rows] == ["(a)"]
    assert rows[0]["values"] == {0: 40.0, 1: 43.0}
    assert rows[0]["mean"] == pytest.approx(41.5) and rows[0]["spread"] == pytest.approx(3.0)
