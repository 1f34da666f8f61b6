"""Tiny example folders in each real data set's exact on-disk format, written from a known 3D
hand and camera (file names, text/mat/pickle/json encodings, image sizes as published).

Used by the tests (the loaders must return the known joints) and by the data chapter to show
every format side by side without the real data::

    from handpose_lib.data.examples import write_example
    root = write_example("rhd", "/tmp/rhd")          # then RHD(root)[0]

Every image is a dark-grey frame with a bright dot at each joint's expected pixel, so one can
see (and test) that image and labels stay aligned through loading, mirroring and cropping.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import cv2
import numpy as np
import scipy.io

from handpose_lib import skeleton
from handpose_lib.data import ganerated as gn
from handpose_lib.data import stb
from handpose_lib.data import synthhands as sh
from handpose_lib.data.sample import project


def known_hand(seed: int = 0, z: float = 550.0, yaw: float = 0.3) -> np.ndarray:
    """(21, 3) mm, canonical order, camera frame: an open right hand, fingers pointing up (-y)."""
    rng = np.random.default_rng(seed)
    J = np.zeros((21, 3))
    roots = {1: (-22, -18, -8), 5: (-22, -85, 0), 9: (0, -90, 0), 13: (18, -85, 0), 17: (34, -75, 0)}
    lengths = {1: (34, 30, 25), 5: (40, 24, 20), 9: (43, 27, 22), 13: (40, 25, 21), 17: (31, 19, 18)}
    dirs = {
        1: (-0.7, -0.7, -0.1),
        5: (-0.15, -1, -0.1),
        9: (0, -1, -0.12),
        13: (0.12, -1, -0.1),
        17: (0.3, -1, -0.1),
    }
    for f, root in roots.items():
        J[f] = root
        d = np.asarray(dirs[f], dtype=float)
        for k, length in enumerate(lengths[f]):
            d = d + np.array([0.0, 0.0, -0.15]) + 0.02 * rng.standard_normal(3)
            J[f + k + 1] = J[f + k] + length * d / np.linalg.norm(d)
    c, s = np.cos(yaw), np.sin(yaw)
    R = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return J @ R.T + np.array([10.0 * rng.standard_normal(), 40.0, z])


def dot_image(uv, width: int, height: int, r: int = 3) -> np.ndarray:
    """(H, W, 3) uint8 RGB: grey 50 with a (2r+1)^2 white dot at each (u, v) (continuous pixels);
    dots survive a 3x shrink by the crop."""
    img = np.full((height, width, 3), 50, np.uint8)
    for u, v in np.asarray(uv):
        if np.isfinite(u) and np.isfinite(v):
            i, j = int(np.floor(v)), int(np.floor(u))
            img[max(i - r, 0) : i + r + 1, max(j - r, 0) : j + r + 1] = 255
    return img


def write_image(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def corrupt(path: Path) -> None:
    """Overwrite an image with bytes no decoder accepts (a truncated PNG header)."""
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 10)


def dots_at(sample, min_value: float = 0.6, atol: int = 0) -> np.ndarray:
    """(21,) bool: the image is bright within ``atol`` pixels of each (inside) 2D joint."""
    img = sample["image"].numpy().max(axis=0)
    H, W = img.shape
    out = np.zeros(21, bool)
    for j, (u, v) in enumerate(sample["joints2d"].numpy()):
        if not (np.isfinite(u) and 0 <= u < W and 0 <= v < H):
            out[j] = True
            continue
        i0, j0 = int(np.floor(v)), int(np.floor(u))
        patch = img[max(i0 - atol, 0) : i0 + atol + 1, max(j0 - atol, 0) : j0 + atol + 1]
        out[j] = patch.max() >= min_value
    return out


# ----------------------------------------------------------------------------------------
# STB


def write_stb(root: Path, n_frames: int = 2, with_images=("B1Counting", "B1Random", "B2Counting")) -> dict:
    """All 12 label files (n_frames each), images for ``with_images`` sequences only.

    Returns {seq: (n_frames, 21, 3) known canonical joints with the true wrist, BB-left frame}.
    """
    truth = {}
    R = stb.rodrigues(stb.SK_RVEC)
    for s, seq in enumerate(stb.SEQUENCES["all"]):
        joints = np.stack([known_hand(seed=10 * s + f) for f in range(n_frames)])
        truth[seq] = joints
        palm = joints.copy()
        palm[:, 0] = (joints[:, 0] + joints[:, 13]) / 2.0  # so that ring + 2 (palm - ring) = wrist
        stb_order = skeleton.from_canonical(palm, "stb")
        for cam in ("BB", "SK"):
            # the SK labels live in the depth frame: X_d = R X_c + t (README direction)
            xyz = stb_order if cam == "BB" else stb_order @ R.T + stb.SK_T_MM
            (root / "labels").mkdir(parents=True, exist_ok=True)
            scipy.io.savemat(str(root / "labels" / f"{seq}_{cam}.mat"), {"handPara": xyz.transpose(2, 1, 0)})
        if seq in with_images:
            for f in range(n_frames):
                uv_l = project(joints[f], stb.K_BB)
                uv_r = project(joints[f] - [stb.BB_BASELINE_MM, 0, 0], stb.K_BB)
                uv_sk = project(joints[f], stb.K_SK_COLOR)
                d = root / "images" / seq
                write_image(d / f"BB_left_{f}.png", dot_image(uv_l, 640, 480))
                write_image(d / f"BB_right_{f}.png", dot_image(uv_r, 640, 480))
                write_image(d / f"SK_color_{f}.png", dot_image(uv_sk, 640, 480))
                write_image(d / f"SK_depth_{f}.png", np.zeros((480, 640, 3), np.uint8))
    return truth


# ----------------------------------------------------------------------------------------
# GANerated


def _line(path: Path, values) -> None:
    path.write_text(",".join(f"{v:.6f}" for v in np.asarray(values).ravel()) + "\n")


def write_ganerated(root: Path, frames_per_folder: int = 2) -> dict:
    """``data/{noObject,withObject}/0001/`` with 2 frames each; returns {id: (joints3d, joint2D)}."""
    truth = {}
    for s, sub in enumerate(("noObject", "withObject")):
        d = root / "data" / sub / "0001"
        d.mkdir(parents=True, exist_ok=True)
        for f in range(1, frames_per_folder + 1):
            X = known_hand(seed=100 + 10 * s + f, z=480.0)
            X[:, 0] *= -1  # GANerated shows left hands
            uv_full = project(X, gn.K_FULL)
            lo, hi = uv_full.min(0), uv_full.max(0)
            side = (hi - lo).max() * 1.3
            u0, v0 = (lo + hi) / 2 - side / 2
            scale = 256.0 / side
            uv = scale * (uv_full - [u0, v0])
            stem = d / f"{f:04d}"
            write_image(Path(f"{stem}_color_composed.png"), dot_image(uv, 256, 256))
            _line(Path(f"{stem}_crop_params.txt"), [u0, v0, scale])
            _line(Path(f"{stem}_joint2D.txt"), uv)
            _line(Path(f"{stem}_joint_pos_global.txt"), X)
            rel = X - X[9]
            _line(Path(f"{stem}_joint_pos.txt"), rel / np.linalg.norm(X[0] - X[9]))
            truth[f"{sub}/0001/{f:04d}"] = (X, uv)
    return truth


# ----------------------------------------------------------------------------------------
# SynthHands


def write_synthhands(root: Path) -> dict:
    """Two frames in male_object/seq01/cam01/01; returns {id: joints in the COLOUR frame}."""
    truth = {}
    d = root / "male_object" / "seq01" / "cam01" / "01"
    d.mkdir(parents=True, exist_ok=True)
    for f in range(2):
        Xc = known_hand(seed=200 + f, z=420.0)
        Xc[:, 0] *= -1  # left hands
        Xd = Xc - sh.DEPTH_TO_COLOR_MM
        write_image(d / f"{f:08d}_color.png", dot_image(project(Xc, sh.K_COLOR), 640, 480))
        write_image(d / f"{f:08d}_color_on_depth.png", dot_image(project(Xd, sh.K_DEPTH), 640, 480))
        write_image(d / f"{f:08d}_depth.png", np.zeros((480, 640, 3), np.uint8))
        _line(d / f"{f:08d}_joint_pos.txt", Xd)
        truth[f"male_object/seq01/cam01/01/{f:08d}"] = Xc
    return truth


# ----------------------------------------------------------------------------------------
# RHD


def write_rhd(root: Path, split: str = "training", protocol: int = 2) -> dict:
    """Three 320x320 samples with per-sample K; sample 2's left hand has no visible joint.

    Returns {sample_id: {"left": joints mm canonical, "right": ..., "K": K, "vis": {...}}}.
    """
    truth, anno = {}, {}
    (root / split / "color").mkdir(parents=True, exist_ok=True)
    (root / split / "mask").mkdir(parents=True, exist_ok=True)
    for sid in range(3):
        f = 280.0 + 15 * sid
        K = np.array([[f, 0, 160.0 + sid], [0, f, 158.0], [0, 0, 1]])
        left = known_hand(seed=300 + sid, z=700.0, yaw=-0.2)
        left[:, 0] *= -1  # a left hand
        left -= [60.0, 0, 0]
        right = known_hand(seed=310 + sid, z=750.0) + [70.0, 0, 0]
        xyz = (
            np.concatenate([skeleton.from_canonical(left, "rhd"), skeleton.from_canonical(right, "rhd")])
            / 1000
        )
        uv = project(xyz, K)
        vis = np.ones(42)
        vis[[3, 24]] = 0  # one hidden joint per hand (RHD order)
        if sid == 2:
            vis[:21] = 0
        anno[sid] = {
            "xyz": xyz.astype(np.float32),
            "uv_vis": np.concatenate([uv, vis[:, None]], 1).astype(np.float32),
            "K": K.astype(np.float32),
        }
        img = dot_image(uv, 320, 320)
        write_image(root / split / "color" / f"{sid:05d}.png", img)
        write_image(root / split / "mask" / f"{sid:05d}.png", np.zeros((320, 320, 3), np.uint8))
        truth[sid] = {"left": left, "right": right, "K": K, "vis_rhd": vis}
    with open(root / split / f"anno_{split}.pickle", "wb") as fo:
        pickle.dump(anno, fo, protocol=protocol)
    return truth


# ----------------------------------------------------------------------------------------
# FreiHAND


def write_freihand(root: Path, n_labels: int = 2, versions: int = 2) -> dict:
    """``training_xyz.json``/``training_K.json`` for n_labels, images for the first ``versions``
    background versions (ids ``label + n_labels * version``); returns {label: (xyz mm, K)}."""
    truth, xyz_all, K_all = {}, [], []
    (root / "training" / "rgb").mkdir(parents=True, exist_ok=True)
    for lab in range(n_labels):
        X = known_hand(seed=400 + lab, z=650.0)
        f = 450.0 + 40 * lab
        K = np.array([[f, 0, 112.0 - lab], [0, f, 111.5], [0, 0, 1]])
        uv = project(X, K)
        xyz_all.append((X / 1000.0).tolist())
        K_all.append(K.tolist())
        truth[lab] = (X, K)
        for v in range(versions):
            img = dot_image(uv, 224, 224)
            path = root / "training" / "rgb" / f"{lab + n_labels * v:08d}.jpg"
            assert cv2.imwrite(
                str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]
            )
    (root / "training_xyz.json").write_text(json.dumps(xyz_all))
    (root / "training_K.json").write_text(json.dumps(K_all))
    return truth


# image sizes (W, H) of each format, as the real data sets have them
SIZES = {
    "stb": (640, 480),
    "ganerated": (256, 256),
    "synthhands": (640, 480),
    "rhd": (320, 320),
    "freihand": (224, 224),
}


def write_example(name: str, root) -> Path:
    """Write the example folder of one data set (``stb``, ``ganerated``, ``synthhands``, ``rhd``,
    ``freihand``) under ``root`` and return the folder to give its loader."""
    root = Path(root)
    writers = {
        "stb": write_stb,
        "ganerated": write_ganerated,
        "synthhands": write_synthhands,
        "rhd": write_rhd,
        "freihand": write_freihand,
    }
    if name not in writers:
        raise ValueError(f"no example for {name!r}; choose one of {sorted(writers)}")
    writers[name](root)
    return root


__all__ = [
    "corrupt",
    "dot_image",
    "dots_at",
    "SIZES",
    "known_hand",
    "write_freihand",
    "write_ganerated",
    "write_rhd",
    "write_stb",
    "write_synthhands",
    "write_example",
]
