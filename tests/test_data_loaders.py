"""Real data set loaders on tiny fixtures in the exact on-disk formats (tests/_data_fixtures.py)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from handpose_lib.data import (
    REQUIRED_KEYS,
    RHD,
    STB,
    DatasetNotFoundError,
    FreiHAND,
    GANerated,
    HandCrop,
    SynthHands,
    project,
)
from handpose_lib.data import ganerated as gn
from handpose_lib.data import stb as stb_mod
from handpose_lib.data import synthhands as sh
from handpose_lib.data.examples import (
    SIZES,
    corrupt,
    dots_at,
    write_freihand,
    write_ganerated,
    write_rhd,
    write_stb,
    write_synthhands,
)


@pytest.fixture(autouse=True)
def _private_index_cache(tmp_path, monkeypatch):
    """Loaders cache their index under $HANDPOSE_CACHE: keep it inside the test's tmp folder."""
    monkeypatch.setenv("HANDPOSE_CACHE", str(tmp_path / "handpose-cache"))


def assert_consistent(sample, size, tol_px=0.5):
    """Shapes, dtypes, 2D == project(3D, K) within tol_px, image and labels aligned (dots)."""
    for k in REQUIRED_KEYS:
        assert k in sample, k
    assert sample["image"].shape == (3, size[1], size[0]) and sample["image"].dtype == torch.float32
    assert 0.0 <= float(sample["image"].min()) and float(sample["image"].max()) <= 1.0
    err = (project(sample["joints3d"].double(), sample["K"].double()) - sample["joints2d"].double()).norm(
        dim=-1
    )
    assert float(err.max()) < tol_px, f"reprojection error {float(err.max()):.3f} px"
    assert dots_at(sample).all(), "image and 2D labels are not aligned"
    for key in ("dataset", "id", "path", "root", "has_3d"):
        assert key in sample["meta"]


# ----------------------------------------------------------------------------------------
# STB


@pytest.fixture(scope="module")
def stb_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("stb")
    return root, write_stb(root)


@pytest.mark.parametrize("camera", ["BB", "BB_right", "SK"])
def test_stb_cameras_return_known_joints(stb_root, camera):
    root, truth = stb_root
    ds = STB(root, split="test", camera=camera)
    assert len(ds) == 4  # B1Counting + B1Random, 2 frames each in the fixture
    s = ds[1]
    X = truth["B1Counting"][1]
    if camera == "BB_right":
        X = X - [stb_mod.BB_BASELINE_MM, 0, 0]
    np.testing.assert_allclose(s["joints3d"].numpy(), X, atol=1e-3)  # wrist recovered from the palm centre
    K = stb_mod.K_SK_COLOR if camera == "SK" else stb_mod.K_BB
    np.testing.assert_allclose(s["K"].numpy(), K, rtol=1e-6)
    assert (
        s["hand_side"] == "left"
        and s["meta"]["root"] == "wrist"
        and s["meta"]["id"]
        == "B1Counting/" + ({"BB": "BB_left", "BB_right": "BB_right", "SK": "SK_color"}[camera] + "_1")
    )
    assert_consistent(s, SIZES["stb"])


def test_stb_palm_root_and_wrist_variants(stb_root):
    root, truth = stb_root
    palm = STB(root, split="test", wrist="palm")[0]
    X = truth["B1Counting"][0]
    np.testing.assert_allclose(palm["joints3d"][0].numpy(), (X[0] + X[13]) / 2, atol=1e-3)
    assert palm["meta"]["root"] == "palm"
    mid = STB(root, split="test", wrist="middle")[0]
    P = (X[0] + X[13]) / 2
    np.testing.assert_allclose(mid["joints3d"][0].numpy(), X[9] + 2.2 * (P - X[9]), atol=1e-3)
    with pytest.raises(ValueError, match="wrist"):
        STB(root, wrist="elbow")


def test_stb_split_counts_missing_images_and_mirror(stb_root, caplog):
    root, truth = stb_root
    with caplog.at_level(logging.WARNING, logger="handpose_lib.data"):
        train = STB(root, split="train")
    # only B2Counting has images in the fixture: the other 9 train sequences' frames are missing
    assert len(train) == 2 and len(train.missing_files) == 18
    assert "missing" in caplog.text
    assert len(STB(root, split="all")) == 6
    m = STB(root, split="test", mirror_to_right=True)[0]
    X = truth["B1Counting"][0] * [-1, 1, 1]
    np.testing.assert_allclose(m["joints3d"].numpy(), X, atol=1e-3)
    assert m["hand_side"] == "right"
    np.testing.assert_allclose(float(m["K"][0, 2]), 640 - stb_mod.K_BB[0, 2], atol=1e-4)
    assert_consistent(m, SIZES["stb"])


def test_stb_sk_extrinsics_direction():
    """X_d = R X_c + t (README: colour -> depth); the loader inverts it exactly."""
    Xc = np.random.default_rng(0).normal(size=(5, 21, 3)) * 50 + [0, 0, 500]
    R = stb_mod.rodrigues(stb_mod.SK_RVEC)
    Xd = Xc @ R.T + stb_mod.SK_T_MM
    np.testing.assert_allclose(stb_mod.sk_depth_to_color(Xd), Xc, atol=1e-9)


def test_stb_missing_and_mislaid_folders(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="expected layout") as e:
        STB(tmp_path / "nope")
    assert "labels/B1Counting_BB.mat" in str(e.value)
    (tmp_path / "stb").mkdir()
    with pytest.raises(DatasetNotFoundError, match="labels/ folder"):
        STB(tmp_path / "stb")


# ----------------------------------------------------------------------------------------
# GANerated


@pytest.fixture(scope="module")
def gan_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("gan")
    return root, write_ganerated(root)


def test_ganerated_crop_params_and_left_hands(gan_root):
    root, truth = gan_root
    ds = GANerated(root, mirror_to_right=False)
    assert len(ds) == 4
    for i in range(len(ds)):
        s = ds[i]
        X, uv = truth[s["meta"]["id"]]
        np.testing.assert_allclose(s["joints3d"].numpy(), X, atol=1e-3)
        np.testing.assert_allclose(s["joints2d"].numpy(), uv, atol=1e-3)
        assert s["hand_side"] == "left"
        assert_consistent(s, SIZES["ganerated"])  # K from crop_params reproduces joint2D.txt


def test_ganerated_mirror_to_right_is_consistent(gan_root):
    root, truth = gan_root
    ds = GANerated(root)  # default: mirrored to right hands
    s = ds[0]
    X, uv = truth[s["meta"]["id"]]
    np.testing.assert_allclose(s["joints3d"].numpy(), X * [-1, 1, 1], atol=1e-3)
    np.testing.assert_allclose(s["joints2d"].numpy(), np.c_[256 - uv[:, 0], uv[:, 1]], atol=1e-3)
    assert s["hand_side"] == "right"
    assert_consistent(s, SIZES["ganerated"])
    assert len(GANerated(root, subset="withObject")) == 2
    # the data root may be given with or without the data/ level
    assert len(GANerated(root / "data", subset="noObject")) == 2


def test_ganerated_crop_camera_formula():
    u0, v0, s = 100.0, 50.0, 1.7
    K = gn.crop_camera([u0, v0, s])
    X = np.array([[30.0, -20.0, 500.0]])
    full = project(X, gn.K_FULL)
    np.testing.assert_allclose(project(X, K), s * (full - [u0, v0]), atol=1e-9)


# ----------------------------------------------------------------------------------------
# SynthHands


def test_synthhands_depth_to_colour(tmp_path):
    truth = write_synthhands(tmp_path)
    ds = SynthHands(tmp_path)
    assert len(ds) == 2
    for i in range(2):
        s = ds[i]
        np.testing.assert_allclose(s["joints3d"].numpy(), truth[s["meta"]["id"]], atol=1e-3)
        np.testing.assert_allclose(s["K"].numpy(), sh.K_COLOR, rtol=1e-6)
        assert s["hand_side"] == "left"
        assert_consistent(s, SIZES["synthhands"])
    m = SynthHands(tmp_path, mirror_to_right=True)[0]
    assert m["hand_side"] == "right"
    assert_consistent(m, SIZES["synthhands"])


# ----------------------------------------------------------------------------------------
# RHD


@pytest.fixture(scope="module")
def rhd_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("rhd")
    return root, write_rhd(root)


def test_rhd_both_hands_per_sample_K(rhd_root):
    root, truth = rhd_root
    ds = RHD(root, split="training", hands="both")
    assert len(ds) == 5  # sample 2's left hand has no visible joint
    for i in range(len(ds)):
        s = ds[i]
        sid, side = int(s["meta"]["id"].split("/")[1]), s["meta"]["id"].split("/")[2]
        assert s["hand_side"] == side
        np.testing.assert_allclose(s["joints3d"].numpy(), truth[sid][side], atol=1e-2)  # float32 metres
        np.testing.assert_allclose(s["K"].numpy(), truth[sid]["K"], rtol=1e-6)
        assert_consistent(s, SIZES["rhd"])
        # RHD joint 3 (thumb, RHD order tip->MCP: index 3 = thumb MCP... canonical slot 2) is hidden
        assert s["visibility"].tolist()[2] == 2 and not bool(s["visible"][2])
        assert int(s["visible"].sum()) == 20


def test_rhd_hand_selection_and_mirror(rhd_root):
    root, _ = rhd_root
    assert len(RHD(root, hands="left")) == 2
    assert len(RHD(root, hands="right")) == 3
    assert [s["hand_side"] for s in RHD(root, hands="dominant")] == ["left", "left", "right"]
    m = RHD(root, hands="left", mirror_to_right=True)[0]
    assert m["hand_side"] == "right"
    assert_consistent(m, SIZES["rhd"])


def test_rhd_pickle_is_loaded_restricted(tmp_path):
    write_rhd(tmp_path, protocol=4)
    assert len(RHD(tmp_path)) == 5

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    import pickle

    (tmp_path / "training" / "anno_training.pickle").write_bytes(pickle.dumps({0: Evil()}))
    with pytest.raises(ValueError, match="refusing to load builtins.print"):
        RHD(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="evaluation/ folder"):
        RHD(tmp_path, split="evaluation")


# ----------------------------------------------------------------------------------------
# FreiHAND


def test_freihand_versions_share_labels(tmp_path):
    truth = write_freihand(tmp_path, n_labels=2, versions=2)
    ds = FreiHAND(tmp_path)
    # 4 versions requested, 2 present on disk: the other 4 images are counted missing
    assert len(ds) == 4 and len(ds.missing_files) == 4
    for i in range(len(ds)):
        s = ds[i]
        image_id = int(s["meta"]["id"].split("/")[1])
        X, K = truth[image_id % 2]
        np.testing.assert_allclose(s["joints3d"].numpy(), X, atol=1e-3)
        np.testing.assert_allclose(s["K"].numpy(), K, rtol=1e-6)
        assert s["hand_side"] == "right"
        assert_consistent(s, SIZES["freihand"])
    assert len(FreiHAND(tmp_path, versions=("gs",))) == 2


# ----------------------------------------------------------------------------------------
# corrupt images, crop on every loader


def test_corrupt_image_is_skipped_counted_and_reported(tmp_path, caplog):
    write_synthhands(tmp_path)
    ds = SynthHands(tmp_path)
    corrupt(tmp_path / ds.index["path"][0])
    with caplog.at_level(logging.WARNING, logger="handpose_lib.data"):
        s = ds[0]
    assert s["meta"]["id"] == str(ds.index["path"][1])[: -len("_color.png")]  # the next sample
    assert len(ds.bad_files) == 1 and "cannot decode" in caplog.text
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))  # an epoch does not crash
    assert batch["image"].shape[0] == 2
    corrupt(tmp_path / ds.index["path"][1])
    with pytest.raises(RuntimeError, match="unreadable images in a row"):
        ds[0]


def test_every_loader_with_the_hand_crop(tmp_path, stb_root, gan_root, rhd_root):
    crop = HandCrop(size=128)
    write_freihand(tmp_path / "fh")
    write_synthhands(tmp_path / "sh")
    sets = [
        STB(stb_root[0], crop=crop),
        GANerated(gan_root[0], crop=crop),
        SynthHands(tmp_path / "sh", crop=crop),
        RHD(rhd_root[0], crop=crop),
        FreiHAND(tmp_path / "fh", crop=crop),
    ]
    for ds in sets:
        s = ds[0]
        assert_consistent(s, (128, 128))
        assert set(s["meta"]["crop"]) == {"x0", "y0", "side", "size"}
        batch = torch.utils.data.default_collate([ds[0], ds[1]])
        assert batch["image"].shape == (2, 3, 128, 128)


def test_index_cache_roundtrip(tmp_path):
    truth = write_synthhands(tmp_path / "sh")
    a = SynthHands(tmp_path / "sh", cache_dir=tmp_path / "cache")
    files = list((tmp_path / "cache").glob("synthhands-*.npz"))
    assert len(files) == 1
    b = SynthHands(tmp_path / "sh", cache_dir=tmp_path / "cache")  # read from the cache
    np.testing.assert_array_equal(a.index["joints3d"], b.index["joints3d"])
    np.testing.assert_allclose(b[0]["joints3d"].numpy(), truth[b[0]["meta"]["id"]], atol=1e-3)
    files[0].write_bytes(b"not an npz")  # a broken cache is rebuilt, not fatal
    assert len(SynthHands(tmp_path / "sh", cache_dir=tmp_path / "cache")) == 2
