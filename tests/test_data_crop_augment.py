"""Hand crop (forward and inverse), label-preserving augmentation, the COCO reader on the 16
shipped real photos, the restricted unpickler and ``handpose data check``."""

from __future__ import annotations

import json
import pickle

import cv2
import numpy as np
import pytest
import torch

from handpose_lib import cli, skeleton
from handpose_lib.data import (
    Augment,
    COCOHands,
    HandCrop,
    check_dataset,
    crop_box_from_joints,
    crop_image,
    make_sample,
    project,
    real_hands_sample,
    uncrop_points,
)
from handpose_lib.data.augment import adjust_hue, color_jitter, flip, rotate
from handpose_lib.data.examples import (
    corrupt,
    dot_image,
    dots_at,
    known_hand,
    write_freihand,
    write_rhd,
    write_stb,
)
from handpose_lib.data.safe_pickle import safe_load


@pytest.fixture(autouse=True)
def _private_index_cache(tmp_path, monkeypatch):
    """Loaders cache their index under $HANDPOSE_CACHE: keep it inside the test's tmp folder."""
    monkeypatch.setenv("HANDPOSE_CACHE", str(tmp_path / "handpose-cache"))


K = np.array([[600.0, 0, 320.0], [0, 598.0, 240.0], [0, 0, 1]])


def synthetic_sample(seed=0):
    X = known_hand(seed)
    uv = project(X, K)
    return make_sample(dot_image(uv, 640, 480), uv, X, K, dataset="t", sample_id=str(seed), hand_side="right")


def reproj(s):
    return float(
        (project(s["joints3d"].double(), s["K"].double()) - s["joints2d"].double()).norm(dim=-1).max()
    )


# ----------------------------------------------------------------------------------------
# crop


def test_crop_box_hand_computed():
    uv = np.zeros((21, 2))
    uv[:, 0] = np.linspace(100, 200, 21)  # 100 px wide
    uv[:, 1] = np.linspace(50, 110, 21)  # 60 px tall
    uv[3] = np.nan  # unannotated joints are ignored
    x0, y0, side = crop_box_from_joints(uv, margin=0.25)
    assert side == pytest.approx(150.0) and (x0, y0) == pytest.approx((75.0, 5.0))
    with pytest.raises(ValueError, match="no finite"):
        crop_box_from_joints(np.full((21, 2), np.nan))


def test_crop_updates_K_and_joints_and_inverts():
    s = synthetic_sample()
    c = HandCrop(size=128, margin=0.2)(s)
    assert c["image"].shape == (3, 128, 128)
    assert reproj(c) < 1e-3
    assert dots_at(c).all()
    np.testing.assert_allclose(c["joints3d"].numpy(), s["joints3d"].numpy())  # 3D untouched
    back = uncrop_points(c["joints2d"].numpy(), c["meta"]["crop"])
    np.testing.assert_allclose(back, s["joints2d"].numpy(), atol=1e-3)
    p = c["meta"]["crop"]
    scale = 128 / p["side"]
    np.testing.assert_allclose(c["K"][0, 0].item(), 600 * scale, rtol=1e-5)
    np.testing.assert_allclose(c["K"][0, 2].item(), (320 - p["x0"]) * scale, rtol=1e-5)
    with pytest.raises(ValueError, match="already cropped"):
        HandCrop()(c)


def test_crop_augmentation_and_batched_uncrop():
    crop = HandCrop(size=128, jitter=0.1, scale_range=(0.9, 1.3))
    rng = np.random.default_rng(3)
    samples = [crop(synthetic_sample(k), rng) for k in range(3)]
    assert len({round(s["meta"]["crop"]["side"], 3) for s in samples}) == 3
    for s in samples:
        assert reproj(s) < 1e-3 and dots_at(s).all()
    batch = torch.utils.data.default_collate(samples)
    full = uncrop_points(batch["joints2d"].double(), batch["meta"]["crop"])
    for k in range(3):
        np.testing.assert_allclose(full[k].numpy(), synthetic_sample(k)["joints2d"].numpy(), atol=1e-3)
    # same generator state -> same crop
    a = crop(synthetic_sample(0), np.random.default_rng(7))["meta"]["crop"]
    b = crop(synthetic_sample(0), np.random.default_rng(7))["meta"]["crop"]
    assert a == b


def test_crop_image_of_a_photo_around_a_box_and_centred():
    """The crop of a user's photo: the dots of its joints land where the crop's map puts them."""
    X = known_hand(0)
    uv = project(X, K)
    photo = dot_image(uv, 640, 480)
    x0, y0 = uv.min(0)
    x1, y1 = uv.max(0)
    img, p = crop_image(photo, 128, box=(x0, y0, x1, y1), margin=0.2)
    assert img.shape == (3, 128, 128) and img.dtype == torch.float32
    assert p["side"] == pytest.approx(max(x1 - x0, y1 - y0) * 1.4) and p["size"] == 128.0
    in_crop = (uv - [p["x0"], p["y0"]]) * 128 / p["side"]
    crop = make_sample(img, in_crop, X, K, dataset="t", sample_id="0")
    assert dots_at(crop).all()
    np.testing.assert_allclose(uncrop_points(in_crop, p), uv, atol=1e-9)
    # no box: the largest centred square
    img, p = crop_image(photo, 64)
    assert img.shape == (3, 64, 64) and (p["x0"], p["y0"], p["side"]) == (80.0, 0.0, 480.0)
    with pytest.raises(ValueError, match="X1 > X0"):
        crop_image(photo, 128, box=(50, 50, 10, 10))


# ----------------------------------------------------------------------------------------
# augmentation


def test_rotation_rotates_3d_about_camera_axis():
    s = HandCrop()(synthetic_sample())
    r = rotate(s, 90.0)
    assert reproj(r) < 1e-3 and dots_at(r).all()
    np.testing.assert_allclose(r["joints3d"][:, 2].numpy(), s["joints3d"][:, 2].numpy(), atol=1e-3)  # z kept
    np.testing.assert_allclose(
        skeleton.bone_lengths(r["joints3d"].numpy()), skeleton.bone_lengths(s["joints3d"].numpy()), rtol=1e-5
    )
    # 90 degrees counter-clockwise on screen about the centre (64, 64): (u, v) -> (v, 128 - u)
    u, v = s["joints2d"].double().unbind(-1)
    np.testing.assert_allclose(r["joints2d"].numpy(), torch.stack([v, 128 - u], -1).numpy(), atol=1e-3)
    # camera x (right) becomes -y (up)
    np.testing.assert_allclose(r["joints3d"][:, 1].numpy(), -s["joints3d"][:, 0].numpy(), atol=1e-3)


def test_flip_swaps_hand_and_is_an_involution():
    s = HandCrop()(synthetic_sample())
    f = flip(s)
    assert f["hand_side"] == "left" and reproj(f) < 1e-3 and dots_at(f).all()
    np.testing.assert_allclose(f["joints3d"][:, 0].numpy(), -s["joints3d"][:, 0].numpy())
    ff = flip(f)
    assert ff["hand_side"] == "right"
    for k in ("joints2d", "joints3d", "K", "image"):
        np.testing.assert_allclose(ff[k].numpy(), s[k].numpy(), atol=1e-4)


def test_augment_keeps_labels_and_is_reproducible():
    s = HandCrop()(synthetic_sample())
    aug = Augment(rotation_deg=40, scale_range=(0.8, 1.2), flip_prob=0.5)
    out = [aug(s, np.random.default_rng(k)) for k in range(8)]
    assert {o["hand_side"] for o in out} == {"left", "right"}
    for o in out:
        assert reproj(o) < 1e-2
    again = aug(s, np.random.default_rng(5))
    torch.testing.assert_close(again["image"], out[5]["image"])
    c = color_jitter(s, np.random.default_rng(0))
    assert not torch.equal(c["image"], s["image"]) and torch.equal(c["joints2d"], s["joints2d"])


def test_hue_is_torchvisions_function():
    import torchvision.transforms.v2.functional as TF

    crop = HandCrop()(synthetic_sample())["image"]
    rand = torch.rand(3, 40, 56, generator=torch.Generator().manual_seed(0))
    rand[:, :5] = rand[0, :5]  # grey pixels (no hue) too
    for img in (crop, rand):
        for f in (-0.5, -0.3, -0.05, 0.0, 0.01, 0.05, 0.25, 0.5):
            got, want = adjust_hue(img, f), TF.adjust_hue(img, f)
            assert got.shape == img.shape and got.dtype == img.dtype
            torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert not torch.allclose(adjust_hue(rand, 0.2), rand, atol=1e-2)


def test_leaving_joints_are_marked_outside():
    s = HandCrop()(synthetic_sample())
    z = rotate(s, 0.0, scale=3.0)  # zoom in: fingertips leave the crop
    out = ~((z["joints2d"] >= 0) & (z["joints2d"] <= 128)).all(-1)
    assert out.any()
    assert (z["visibility"][out] == 3).all() and not z["visible"][out].any()


# ----------------------------------------------------------------------------------------
# COCO reader and the 16 real photos


def test_real_hands_through_the_coco_reader():
    ds = real_hands_sample()
    assert len(ds) == 16 and not ds.bad_files and not ds.missing_files
    sources = [s["meta"]["dataset"] for s in ds]
    assert (
        sources.count("freihand") == 8 and sources.count("onehand10k") == 4 and sources.count("panoptic") == 4
    )
    by_id = {s["meta"]["id"]: s for s in ds}
    # FreiHAND background versions 32,560 ids apart share one label (fh_utils sample_version.map_id)
    for a in (17620, 355):
        for k in (1, 2, 3):
            torch.testing.assert_close(
                by_id[f"freihand/{a}"]["joints2d"], by_id[f"freihand/{a + 32560 * k}"]["joints2d"]
            )
    assert (
        by_id["panoptic/100586"]["hand_side"] == "left" and by_id["panoptic/100587"]["hand_side"] == "right"
    )
    s9 = by_id["onehand10k/9"]  # its wrist is not annotated (v = 0)
    assert torch.isnan(s9["joints2d"][0]).all() and not s9["visible"][0]
    for s in ds:
        assert torch.isnan(s["joints3d"]).all() and not s["meta"]["has_3d"]
        uv = s["joints2d"][s["visible"]]
        H, W = s["image"].shape[1:]
        assert ((uv >= 0) & (uv <= torch.tensor([W, H]))).all()
    cropped = real_hands_sample(crop=HandCrop())
    for i in range(len(cropped)):
        c, s = cropped[i], ds[i]
        vis = s["visible"]
        np.testing.assert_allclose(
            uncrop_points(c["joints2d"].numpy(), c["meta"]["crop"])[vis.numpy()],
            s["joints2d"][vis].numpy(),
            atol=1e-3,
        )


def test_coco_reader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="annotation file not found") as e:
        COCOHands(tmp_path / "missing.json")
    assert "data_scripts" not in str(e.value)  # there is no get_coco.py
    (tmp_path / "bad.json").write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="not a COCO keypoints file"):
        COCOHands(tmp_path / "bad.json")


def test_layout_errors_name_only_scripts_that_exist():
    from pathlib import Path

    from handpose_lib.data.common import DOWNLOAD_SCRIPTS, missing_layout_error

    scripts = Path(__file__).resolve().parents[1] / "data_scripts"
    assert sorted(p.stem.removeprefix("get_") for p in scripts.glob("get_*.py")) == sorted(DOWNLOAD_SCRIPTS)
    for name in ("STB", "FreiHAND", "COCO"):
        msg = str(missing_layout_error(name, "/nowhere", "missing", "layout"))
        named = [w for w in msg.split() if w.startswith("data_scripts/")]
        assert all((scripts.parent / w).is_file() for w in named), msg
        assert bool(named) == (name != "COCO")


# ----------------------------------------------------------------------------------------
# restricted unpickler


def test_safe_pickle_loads_arrays_and_refuses_code():
    d = {0: {"xyz": np.arange(6.0).reshape(2, 3), "n": np.float32(2), "l": [1, (2, 3)]}}
    for proto in (2, 4, 5):
        out = safe_load(pickle.dumps(d, protocol=proto))
        np.testing.assert_array_equal(out[0]["xyz"], d[0]["xyz"])
        assert out[0]["l"] == [1, (2, 3)]

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned",))

    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        safe_load(pickle.dumps(Evil()))


# ----------------------------------------------------------------------------------------
# handpose data check


def test_data_check_reports_counts_labels_and_corrupt_images(tmp_path, capsys):
    write_stb(tmp_path)
    rep = check_dataset("stb", tmp_path, index=1, split="test")
    assert rep["ok"] and rep["count"] == 4 and rep["checked"] == 4 and not rep["problems"]
    assert np.array(rep["sample"]["joints3d"]).shape == (21, 3)
    corrupt(tmp_path / "images" / "B1Random" / "BB_left_0.png")
    rep = check_dataset("stb", tmp_path, split="test")
    assert not rep["ok"] and len(rep["bad_files"]) == 1 and "BB_left_0.png" in rep["bad_files"][0]
    assert cli.main(["data", "check", "stb", str(tmp_path), "--split", "test", "--index", "1", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert np.array(out["joints3d"]).shape == (21, 3) and np.array(out["joints2d"]).shape == (21, 2)
    assert np.array(out["K"]).shape == (3, 3) and out["image_size"] == [640, 480]


def test_truncated_jpeg_is_reported_by_data_check_and_read_rgb(tmp_path, capsys):
    from handpose_lib.data.common import CorruptImageError, read_rgb

    write_freihand(tmp_path, n_labels=2, versions=2)
    jpg = tmp_path / "training" / "rgb" / "00000001.jpg"
    jpg.write_bytes(jpg.read_bytes()[: jpg.stat().st_size // 3])  # opencv still decodes it
    assert read_rgb(jpg).shape == (224, 224, 3)
    with pytest.raises(CorruptImageError, match="truncated"):
        read_rgb(jpg, verify=True)
    rep = check_dataset("freihand", tmp_path, decode=0)
    assert not rep["ok"] and rep["checked"] == 3
    assert len(rep["bad_files"]) == 1 and "00000001.jpg" in rep["bad_files"][0]
    assert cli.main(["data", "check", "freihand", str(tmp_path), "--decode", "0"]) == 1
    assert "00000001.jpg" in capsys.readouterr().out


def test_data_check_missing_folder_shows_layout(tmp_path, capsys):
    assert cli.main(["data", "check", "rhd", str(tmp_path / "nowhere")]) == 1
    text = capsys.readouterr().out
    assert "expected layout" in text and "anno_training.pickle" in text and "NOT OK" in text


def test_data_check_text_and_wrong_units(tmp_path, capsys):
    write_rhd(tmp_path)
    assert cli.main(["data", "check", "rhd", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "samples: 5" in text and "wrist" in text and text.strip().endswith("OK")
    rep = check_dataset("coco", "handpose_lib/assets/real_hands/panoptic/test_panoptic.json")
    assert rep["ok"] and rep["count"] == 4


def test_crop_image_reads_only_the_crop_and_matches_the_whole_image_warp():
    """``crop_image`` resamples only the pixels its crop reads; it equals warping the whole photo
    (``warp_sample``, the training crops' path) where the crop is not shrunk, and within a
    resampling phase where it is (area-averaging starts at the cut, not at the photo's corner);
    a crop that leaves the photo is black there either way."""
    from handpose_lib.data.common import affine_crop_matrix, warp_sample
    from handpose_lib.data.crop import crop_image
    from handpose_lib.data.sample import make_sample

    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8), (0, 0), 2)

    def whole(box, size):
        x0, y0, x1, y1 = box
        side = max(x1 - x0, y1 - y0) * 1.4
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        s = make_sample(img, np.zeros((21, 2)), np.ones((21, 3)), np.eye(3), dataset="t", sample_id="0")
        A = affine_crop_matrix(cx - side / 2, cy - side / 2, size / side)
        return warp_sample(s, A, (size, size))["image"]

    for box, size, exact in [
        ((600.3, 300.7, 660.2, 370.1), 128, True),  # a small hand: enlarged, exact
        ((-30.0, 650.0, 40.0, 740.0), 128, True),  # leaves the photo at a corner: black there
        ((100.0, 100.0, 700.0, 600.0), 128, False),  # a large hand: area-averaged
    ]:
        got, params = crop_image(img, size, box)
        ref = whole(box, size)
        assert got.shape == (3, size, size) and got.dtype == torch.float32
        d = (got - ref).abs()
        if exact:
            assert float(d.max()) < 1e-5
        else:
            assert float(d.mean()) < 0.01 and float(d.max()) < 0.1
    corner, _ = crop_image(img, 128, (-30.0, 650.0, 40.0, 740.0))
    assert float(corner[:, :5, :5].abs().max()) == 0.0  # outside the photo
