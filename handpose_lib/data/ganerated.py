"""GANerated Hands (Mueller et al., CVPR 2018).

On disk (``root`` = ``GANeratedHands_Release/`` holding ``data/``, or ``data/`` itself)::

    data/{noObject,withObject}/<NNNN>/<FFFF>_color_composed.png    256x256 crop
                                      <FFFF>_crop_params.txt        u0, v0, scale
                                      <FFFF>_joint2D.txt            21 x 2, pixels of the crop
                                      <FFFF>_joint_pos.txt          21 x 3, normalised, not used
                                      <FFFF>_joint_pos_global.txt   21 x 3, mm, camera frame

Each ``.txt`` holds one comma-separated line.

Conventions applied (checked with the code-search tools):

- joint order wrist, thumb..pinky root -> tip: identity (Idein/chainer-hand-pose
  ``ganerated_dataset.py`` DEFAULT_KEYPOINT_NAMES ``W, T0..T3, I0.., L3``);
- camera of the 640x480 frame: f = 617.173, c = (315.453, 242.259) (same file; data set README);
- crop: pixel ``u`` of the full frame lands at ``scale * (u - u0)`` in the crop (Idein's
  ``translate_camera(-crop_v, -crop_u)`` then ``scale_camera(scale)``), so the crop's camera
  matrix is ``K_crop = diag(s, s, 1) [[1, 0, -u0], [0, 1, -v0], [0, 0, 1]] K``;
- 3D: ``joint_pos_global.txt`` in mm (MengHao666/Minimal-Hand-pytorch ``ganerated_hands.py``
  uses it as the camera-frame joints);
- the hands are LEFT hands (Idein: ``hand_side = "left"``; Minimal-Hand flips image, 2D and 3D
  to make them right). ``mirror_to_right=True`` (default) mirrors image, 2D (``u -> 256 - u``),
  3D (``x -> -x``) and K (``cx -> 256 - cx``) consistently.

2D joints are ``joint2D.txt`` as published; ``handpose data check`` reports how far they are
from ``K_crop`` applied to the 3D joints. Visibility is unknown (``VIS_UNKNOWN``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .common import (
    HandDataset,
    affine_crop_matrix,
    intrinsics,
    load_or_build_index,
    mirror_sample,
    read_rgb,
    read_txt_array,
)
from .sample import make_sample

K_FULL = intrinsics(617.173, 617.173, 315.453, 242.259)
SUBSETS = {"all": ("noObject", "withObject"), "noObject": ("noObject",), "withObject": ("withObject",)}
SUFFIX = "_color_composed.png"

LAYOUT = """\
<root>/data/noObject/0001/0001_color_composed.png, 0001_crop_params.txt, 0001_joint2D.txt,
                          0001_joint_pos.txt, 0001_joint_pos_global.txt, 0002_... (up to 1024 frames)
<root>/data/noObject/0002/ ...
<root>/data/withObject/0001/ ...
"""


def crop_camera(crop_params) -> np.ndarray:
    """(3, 3) camera matrix of a GANerated 256x256 crop from ``crop_params.txt`` (u0, v0, scale)."""
    u0, v0, scale = (float(x) for x in np.asarray(crop_params).reshape(3))
    return affine_crop_matrix(u0, v0, scale) @ K_FULL


class GANerated(HandDataset):
    """GANerated Hands loader (256x256 images before ``crop``).

    Args:
        root: ``GANeratedHands_Release/`` (with ``data/``) or its ``data/`` folder.
        subset: ``"all"``, ``"noObject"`` or ``"withObject"``.
        mirror_to_right: mirror the left hands to right hands (default True).
        crop, transform, cache_dir: see :class:`~handpose_lib.data.common.HandDataset`.
    """

    name = "GANerated"
    layout = LAYOUT
    url = "https://handtracker.mpi-inf.mpg.de/projects/GANeratedHands/GANeratedDataset.htm"

    def __init__(
        self,
        root,
        subset: str = "all",
        mirror_to_right: bool = True,
        crop=None,
        transform=None,
        cache_dir="auto",
    ):
        super().__init__(root, crop, transform)
        if subset not in SUBSETS:
            raise ValueError(f"GANerated: subset must be one of {sorted(SUBSETS)}, got {subset!r}")
        self.subset, self.mirror_to_right = subset, mirror_to_right
        self._require(self.root, "data set folder")
        if not any((self.root / s).is_dir() for s in SUBSETS["all"]):
            self.root = self._require(self.root / "data", "data/ folder (with noObject/ and withObject/)")
        subs = [self.root / sub for sub in SUBSETS[subset] if (self.root / sub).is_dir()]
        stamp = [d for sub in subs for d in sorted(sub.iterdir())]  # folder times: frames added/removed
        params = {"subset": subset}
        self._finish_index(
            load_or_build_index(self.name, self.root, params, self._build_index, cache_dir, stamp)
        )

    def _build_index(self) -> dict:
        paths, j2d, j3d, crops, missing = [], [], [], [], []
        for sub in SUBSETS[self.subset]:
            sub_dir = self.root / sub
            if not sub_dir.is_dir():
                if self.subset == "all":
                    continue
                self._require(sub_dir, f"{sub}/ folder")
            for folder in sorted(d for d in os.listdir(sub_dir) if (sub_dir / d).is_dir()):
                names = set(os.listdir(sub_dir / folder))
                frames = sorted(
                    n[: -len("_joint_pos_global.txt")] for n in names if n.endswith("_joint_pos_global.txt")
                )
                for f in frames:
                    base = sub_dir / folder / f
                    rel = str(Path(sub) / folder / f"{f}{SUFFIX}")
                    if f + SUFFIX not in names:
                        missing.append(rel)
                        continue
                    j3d.append(read_txt_array(f"{base}_joint_pos_global.txt", (21, 3)))
                    j2d.append(read_txt_array(f"{base}_joint2D.txt", (21, 2)))
                    crops.append(read_txt_array(f"{base}_crop_params.txt", (3,)))
                    paths.append(rel)
        if not paths and not missing:
            self._require(self.root / "noObject" / "0001", "frames (no *_joint_pos_global.txt files found)")
        return {
            "path": np.array(paths, dtype=str),
            "joints2d": np.array(j2d, dtype=np.float64).reshape(-1, 21, 2),
            "joints3d": np.array(j3d, dtype=np.float64).reshape(-1, 21, 3),
            "crop_params": np.array(crops, dtype=np.float64).reshape(-1, 3),
            "missing": np.array(missing, dtype=str),
        }

    def _load(self, i: int) -> dict:
        img = read_rgb(self._image_path(i))
        rel = str(self.index["path"][i])
        sample = make_sample(
            img,
            self.index["joints2d"][i],
            self.index["joints3d"][i],
            crop_camera(self.index["crop_params"][i]),
            dataset="ganerated",
            sample_id=rel[: -len(SUFFIX)],
            hand_side="left",
            meta={"path": rel, "root": "wrist", "has_3d": True},
        )
        return mirror_sample(sample) if self.mirror_to_right else sample
