"""SynthHands (Mueller et al., ICCV 2017).

On disk (``root`` = ``SynthHands_Release/``)::

    {male,female}_{object,noobject}/seq01..seq07/cam01..cam05/01..03/
        %08d_color.png  %08d_color_on_depth.png  %08d_depth.png  %08d_joint_pos.txt

``%08d_color.png`` is 640x480 from the colour camera; ``%08d_joint_pos.txt`` is one
comma-separated line of 21 x 3 values in mm in the DEPTH camera frame.

Conventions applied (checked with the code-search tools):

- joint order identity (Idein/chainer-hand-pose ``synth_dataset.py`` ``W, T0..L3``);
- depth -> colour frame: ``X_color = X_depth + (24.7, -0.0471401, 3.72045)`` mm (Idein
  ``synth_dataset.py``: ``rgb_joint = world_joint + TRANSLATION_VECTOR``; a second public
  SynthHands viewer applies ``color_ex = [I | t]`` the same way);
- colour K: f = 617.173, c = (315.453, 242.259); depth K: f = 475.62, c = (311.125, 245.965);
- the hands are LEFT hands (Idein sets ``hand_side = "left"``); ``mirror_to_right`` mirrors.

2D joints are the projection of the 3D joints by the colour K; visibility unknown.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .common import HandDataset, intrinsics, load_or_build_index, mirror_sample, read_rgb, read_txt_array
from .sample import make_sample, project

K_COLOR = intrinsics(617.173, 617.173, 315.453, 242.259)
K_DEPTH = intrinsics(475.62, 475.62, 311.125, 245.965)
DEPTH_TO_COLOR_MM = np.array([24.7, -0.0471401, 3.72045])
GROUPS = tuple(f"{s}_{o}" for s in ("male", "female") for o in ("object", "noobject"))

LAYOUT = """\
<root>/male_object/seq01/cam01/01/00000000_color.png, 00000000_joint_pos.txt, ... (also
       _color_on_depth.png, _depth.png)
<root>/{male,female}_{object,noobject}/seq01..seq07/cam01..cam05/01..03/
"""


class SynthHands(HandDataset):
    """SynthHands loader: colour images 640x480, 3D moved into the colour camera frame.

    Args:
        root: ``SynthHands_Release/``.
        groups: which of ``male_object, male_noobject, female_object, female_noobject``.
        mirror_to_right: mirror the left hands to right hands.
        crop, transform, cache_dir: see :class:`~handpose_lib.data.common.HandDataset`.
    """

    name = "SynthHands"
    layout = LAYOUT
    url = "https://handtracker.mpi-inf.mpg.de/projects/OccludedHands/SynthHands.htm"

    def __init__(
        self, root, groups=GROUPS, mirror_to_right: bool = False, crop=None, transform=None, cache_dir="auto"
    ):
        super().__init__(root, crop, transform)
        bad = [g for g in groups if g not in GROUPS]
        if bad:
            raise ValueError(f"SynthHands: unknown groups {bad}; choose from {GROUPS}")
        self.groups, self.mirror_to_right = tuple(groups), mirror_to_right
        self._require(self.root, "data set folder")
        if not any((self.root / g).is_dir() for g in self.groups):
            self._require(self.root / self.groups[0], "group folder")
        params = {"groups": list(self.groups)}
        stamp = [self.root / g for g in self.groups]  # folder times: frames added or removed
        self._finish_index(
            load_or_build_index(self.name, self.root, params, self._build_index, cache_dir, stamp)
        )

    def _build_index(self) -> dict:
        paths, j3d, missing = [], [], []
        for group in self.groups:
            gdir = self.root / group
            if not gdir.is_dir():
                continue
            for dirpath, dirnames, filenames in os.walk(gdir):
                dirnames.sort()
                names = set(filenames)
                rel_dir = Path(dirpath).relative_to(self.root)
                for n in sorted(names):
                    if not n.endswith("_joint_pos.txt"):
                        continue
                    frame = n[: -len("_joint_pos.txt")]
                    rel = str(rel_dir / f"{frame}_color.png")
                    if f"{frame}_color.png" not in names:
                        missing.append(rel)
                        continue
                    xyz_depth = read_txt_array(Path(dirpath) / n, (21, 3))
                    j3d.append(xyz_depth + DEPTH_TO_COLOR_MM)
                    paths.append(rel)
        return {
            "path": np.array(paths, dtype=str),
            "joints3d": np.array(j3d, dtype=np.float64).reshape(-1, 21, 3),
            "missing": np.array(missing, dtype=str),
        }

    def _load(self, i: int) -> dict:
        img = read_rgb(self._image_path(i))
        xyz = self.index["joints3d"][i]
        rel = str(self.index["path"][i])
        sample = make_sample(
            img,
            project(xyz, K_COLOR),
            xyz,
            K_COLOR,
            dataset="synthhands",
            sample_id=rel[: -len("_color.png")],
            hand_side="left",
            meta={"path": rel, "root": "wrist", "has_3d": True},
        )
        return mirror_sample(sample) if self.mirror_to_right else sample
