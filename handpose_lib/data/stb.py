"""Stereo Hand Pose Tracking Benchmark (STB, Zhang et al. 2016/2017).

On disk (``root`` = the folder holding ``images/`` and ``labels/``)::

    images/B{1..6}{Counting,Random}/{BB_left,BB_right,SK_color,SK_depth}_{i}.png   i = 0..1499, 640x480
    labels/B{1..6}{Counting,Random}_{BB,SK}.mat   variable handPara, (3, 21, 1500), mm

(hand3d's ``create_db.m`` reads the sequence folders directly under the root; both are accepted.)

Conventions applied (sources checked with the code-search tools):

- joint order palm centre, little, ring, middle, index, thumb (MCP -> tip) -> canonical with
  ``skeleton.to_canonical(.., "stb")`` (STB README, zhjwustc/icip17_stereo_hand_pose_dataset;
  Idein/chainer-hand-pose ``stb_dataset.py`` DEFAULT_KEYPOINT_NAMES);
- ``BB``: labels are in the left Bumblebee camera frame and project with
  f = 822.79041, c = (318.47345, 250.31296) (hand3d ``data/stb/create_db.m``: ``K * R_l`` with
  ``R_l = [I | 0]``); ``BB_right``: ``X - (120.054, 0, 0)`` (same file: ``R_r(1, 4) = -base``);
- ``SK``: labels are in the RealSense depth frame; the README's rotation vector / translation map
  colour -> depth (``X_d = R X_c + t``), so ``X_c = R^T (X_d - t)`` (STB ``positionCalc.m``:
  ``colorXYZ = stereoR \\ (depthXYZ - stereoT)``; MengHao666/Minimal-Hand-pytorch
  ``datasets/stb.py`` ``sk_xyz_depth2color``). Colour K: f = (607.92271, 607.88192),
  c = (314.78337, 236.42484);
- root: the palm centre is replaced by a wrist estimate, ``skeleton.stb_palm_to_wrist``
  (default ``"ring"``: ``W = ringMCP + 2 (P - ringMCP)``, hand3d ``BinaryDbReaderSTB.py``,
  Minimal-Hand ``ge_palm2wrist``); ``wrist="palm"`` keeps the palm centre (hand3d's palm-rooted
  protocol; ``meta["root"] == "palm"`` then);
- split: B1 (Counting + Random, 3,000 frames) test, B2-B6 (15,000) train (Minimal-Hand
  ``datasets/stb.py``; Idein ``stb_dataset.py``; hand3d evaluates on B1);
- the subject shows a LEFT hand (Idein ``stb_dataset.py`` sets ``hand_side = "left"``,
  Minimal-Hand flips STB to get right hands); ``mirror_to_right=True`` mirrors it.

2D joints are the projection of the 3D labels (STB ships no 2D labels); visibility unknown.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from .. import skeleton
from .common import HandDataset, intrinsics, load_or_build_index, mirror_sample, read_rgb, rodrigues
from .sample import make_sample, project

SEQUENCES = {
    "test": [f"B1{k}" for k in ("Counting", "Random")],
    "train": [f"B{b}{k}" for b in range(2, 7) for k in ("Counting", "Random")],
}
SEQUENCES["all"] = SEQUENCES["test"] + SEQUENCES["train"]

K_BB = intrinsics(822.79041, 822.79041, 318.47345, 250.31296)
BB_BASELINE_MM = 120.054
K_SK_COLOR = intrinsics(607.92271, 607.88192, 314.78337, 236.42484)
K_SK_DEPTH = intrinsics(475.62768, 474.77709, 336.41179, 238.77962)
SK_RVEC = np.array([0.00531, -0.01196, 0.00301])
SK_T_MM = np.array([-24.0381, -0.4563, -1.2326])
CAMERAS = ("BB", "BB_right", "SK")
_IMAGE_PREFIX = {"BB": "BB_left", "BB_right": "BB_right", "SK": "SK_color"}
_LABEL_CAM = {"BB": "BB", "BB_right": "BB", "SK": "SK"}

LAYOUT = """\
<root>/
  images/B1Counting/BB_left_0.png ... BB_left_1499.png, BB_right_*.png, SK_color_*.png, SK_depth_*.png
  images/B1Random/ ... images/B6Random/          (12 sequence folders)
  labels/B1Counting_BB.mat, labels/B1Counting_SK.mat, ... (handPara: 3 x 21 x 1500, mm)
"""


def sk_depth_to_color(xyz_depth):
    """STB RealSense labels: depth-camera frame -> colour-camera frame, ``R^T (X - t)`` (mm)."""
    R = rodrigues(SK_RVEC)
    return (np.asarray(xyz_depth, dtype=np.float64) - SK_T_MM) @ R  # row-vector form of R^T (X - t)


def load_hand_para(path) -> np.ndarray:
    """Read ``handPara`` from an STB .mat file -> (N, 21, 3) mm in STB's joint order."""
    try:
        mat = scipy.io.loadmat(str(path), variable_names=["handPara"])
    except (ValueError, OSError, NotImplementedError) as e:
        raise ValueError(f"STB: cannot read label file {path} ({e})") from e
    if "handPara" not in mat:
        raise ValueError(f"STB: {path} has no variable 'handPara'")
    hp = np.asarray(mat["handPara"], dtype=np.float64)
    if hp.ndim != 3 or hp.shape[:2] != (3, 21):
        raise ValueError(f"STB: {path}: handPara should be 3 x 21 x N, got {hp.shape}")
    return hp.transpose(2, 1, 0)


class STB(HandDataset):
    """STB loader. Samples are 640x480 (before ``crop``), 3D in mm in the chosen camera.

    Args:
        root: folder with ``images/`` and ``labels/``.
        split: ``"test"`` (B1), ``"train"`` (B2-B6) or ``"all"``.
        camera: ``"BB"`` (Bumblebee left), ``"BB_right"`` or ``"SK"`` (RealSense colour).
        wrist: palm -> wrist conversion, one of ``skeleton.STB_WRIST_VARIANTS``
            (``"palm"`` keeps the palm centre as root).
        mirror_to_right: mirror the (left) hand to a right hand.
        crop, transform: applied to each sample (e.g. :class:`~handpose_lib.data.crop.HandCrop`).
        cache_dir: index cache (``"auto"``: ``$HANDPOSE_CACHE/index``; a folder; None = off).
    """

    name = "STB"
    layout = LAYOUT
    url = "https://github.com/zhjwustc/icip17_stereo_hand_pose_dataset"

    def __init__(
        self,
        root,
        split: str = "test",
        camera: str = "BB",
        wrist: str = "ring",
        mirror_to_right: bool = False,
        crop=None,
        transform=None,
        cache_dir="auto",
    ):
        super().__init__(root, crop, transform)
        if split not in SEQUENCES:
            raise ValueError(f"STB: split must be one of {sorted(SEQUENCES)}, got {split!r}")
        if camera not in CAMERAS:
            raise ValueError(f"STB: camera must be one of {CAMERAS}, got {camera!r}")
        if wrist not in skeleton.STB_WRIST_VARIANTS:
            raise ValueError(f"STB: wrist must be one of {skeleton.STB_WRIST_VARIANTS}, got {wrist!r}")
        self.split, self.camera, self.wrist, self.mirror_to_right = split, camera, wrist, mirror_to_right
        self.K = K_SK_COLOR if camera == "SK" else K_BB
        self._require(self.root, "data set folder")
        self._require(self.root / "labels", "labels/ folder")
        params = {"split": split, "camera": camera, "wrist": wrist}
        stamp = sorted((self.root / "labels").iterdir()) + [self._image_dir(s) for s in SEQUENCES[split]]
        self._finish_index(
            load_or_build_index(self.name, self.root, params, self._build_index, cache_dir, stamp)
        )

    def _image_dir(self, seq: str) -> Path:
        for cand in (self.root / "images" / seq, self.root / seq):
            if cand.is_dir():
                return cand
        return self.root / "images" / seq

    def _build_index(self) -> dict:
        paths, joints, ids = [], [], []
        for seq in SEQUENCES[self.split]:
            label = self._require(self.root / "labels" / f"{seq}_{_LABEL_CAM[self.camera]}.mat", "label file")
            xyz = load_hand_para(label)
            if self.camera == "SK":
                xyz = sk_depth_to_color(xyz)
            elif self.camera == "BB_right":
                xyz = xyz - np.array([BB_BASELINE_MM, 0.0, 0.0])
            xyz = skeleton.stb_palm_to_wrist(skeleton.to_canonical(xyz, "stb"), self.wrist)
            img_dir = self._image_dir(seq).relative_to(self.root)
            for i in range(len(xyz)):
                paths.append(str(img_dir / f"{_IMAGE_PREFIX[self.camera]}_{i}.png"))
                ids.append(f"{seq}/{_IMAGE_PREFIX[self.camera]}_{i}")
            joints.append(xyz)
        index = {"path": np.array(paths), "id": np.array(ids), "joints3d": np.concatenate(joints)}
        return self._drop_missing(index)

    def _load(self, i: int) -> dict:
        img = read_rgb(self._image_path(i))
        xyz = self.index["joints3d"][i]
        sample = make_sample(
            img,
            project(xyz, self.K),
            xyz,
            self.K,
            dataset="stb",
            sample_id=str(self.index["id"][i]),
            hand_side="left",
            meta={
                "path": str(self.index["path"][i]),
                "root": "palm" if self.wrist == "palm" else "wrist",
                "has_3d": True,
            },
        )
        return mirror_sample(sample) if self.mirror_to_right else sample
