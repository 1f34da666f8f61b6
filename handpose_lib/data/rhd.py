"""Rendered Hand Pose data set (RHD, Zimmermann & Brox, ICCV 2017).

On disk (``root`` = ``RHD_published_v2/``, what ``RHD_v1-1.zip`` unpacks to)::

    {training,evaluation}/color/%05d.png      320x320
    {training,evaluation}/mask/%05d.png, depth/%05d.png
    {training,evaluation}/anno_{training,evaluation}.pickle

The pickle is a dict ``sample_id -> {"xyz": (42, 3) m, "uv_vis": (42, 3), "K": (3, 3)}``; it is
read with :func:`~handpose_lib.data.safe_pickle.safe_load` (containers and numpy arrays only).

Conventions applied (checked with the code-search tools):

- keys ``xyz`` (metres), ``uv_vis`` (u, v in pixels, visibility flag 1/0), ``K`` per sample
  (the data set's own ``view_samples.py`` as copied in several public repositories: it
  projects ``xyz @ K^T`` onto ``uv``); the focal length varies, so ``K`` is never hard-coded;
- joints 0-20 left hand, 21-41 right hand; per hand wrist, then each finger TIP -> MCP
  (Idein/chainer-hand-pose ``rhd_dataset.py``) -> ``skeleton.to_canonical(.., "rhd", offset)``;
- visibility: flag 1 -> ``VIS_VISIBLE``; outside the 320x320 image -> ``VIS_OUTSIDE``; other
  hidden joints -> ``VIS_SELF`` (RHD has no objects: they are hidden by a hand).

One sample per (image, hand). ``hands``: ``"both"``, ``"left"``, ``"right"`` or ``"dominant"``
(the hand with more visible joints; hand3d picks the hand with more mask pixels instead, which
needs every mask read). Hands with fewer than ``min_visible`` visible joints are skipped.
"""

from __future__ import annotations

import numpy as np

from .. import skeleton
from .common import HandDataset, load_or_build_index, mirror_sample, read_rgb, visibility_from_flags
from .safe_pickle import safe_load
from .sample import VIS_SELF, make_sample

SPLITS = ("training", "evaluation")
HANDS = ("both", "left", "right", "dominant")
IMAGE_SIZE = 320

LAYOUT = """\
<root>/training/color/00000.png ... (320x320), training/mask/, training/depth/
<root>/training/anno_training.pickle
<root>/evaluation/color/00000.png ..., evaluation/anno_evaluation.pickle
"""


def load_annotations(path) -> dict:
    """Read an RHD annotation pickle safely; check the keys and shapes of every entry."""
    try:
        anno = safe_load(path)
    except Exception as e:  # a corrupt pickle or one naming a forbidden global
        raise ValueError(f"RHD: cannot read annotation file {path}: {e}") from e
    if not isinstance(anno, dict):
        raise ValueError(f"RHD: {path} should hold a dict sample_id -> annotation, got {type(anno).__name__}")
    for sid, a in anno.items():
        shapes = {k: np.shape(a.get(k)) if isinstance(a, dict) else None for k in ("xyz", "uv_vis", "K")}
        if shapes != {"xyz": (42, 3), "uv_vis": (42, 3), "K": (3, 3)}:
            raise ValueError(f"RHD: {path}: sample {sid} has unexpected fields/shapes {shapes}")
    return anno


class RHD(HandDataset):
    """RHD loader: one sample per (image, hand), 320x320 before ``crop``, 3D in mm.

    Args:
        root: ``RHD_published_v2/``.
        split: ``"training"`` or ``"evaluation"``.
        hands: ``"both"``, ``"left"``, ``"right"`` or ``"dominant"`` (see module docstring).
        min_visible: skip hands with fewer visible joints.
        mirror_to_right: mirror left hands to right hands.
        crop, transform, cache_dir: see :class:`~handpose_lib.data.common.HandDataset`.
    """

    name = "RHD"
    layout = LAYOUT
    url = "https://lmb.informatik.uni-freiburg.de/resources/datasets/RenderedHandposeDataset.en.html"

    def __init__(
        self,
        root,
        split: str = "training",
        hands: str = "both",
        min_visible: int = 1,
        mirror_to_right: bool = False,
        crop=None,
        transform=None,
        cache_dir="auto",
    ):
        super().__init__(root, crop, transform)
        if split not in SPLITS:
            raise ValueError(f"RHD: split must be one of {SPLITS}, got {split!r}")
        if hands not in HANDS:
            raise ValueError(f"RHD: hands must be one of {HANDS}, got {hands!r}")
        self.split, self.hands, self.min_visible, self.mirror_to_right = (
            split,
            hands,
            min_visible,
            mirror_to_right,
        )
        self._require(self.root, "data set folder")
        self._require(self.root / split, f"{split}/ folder")
        params = {"split": split, "hands": hands, "min_visible": min_visible}
        stamp = [self.root / split / f"anno_{split}.pickle", self.root / split / "color"]
        self._finish_index(
            load_or_build_index(self.name, self.root, params, self._build_index, cache_dir, stamp)
        )

    def _build_index(self) -> dict:
        anno = load_annotations(
            self._require(self.root / self.split / f"anno_{self.split}.pickle", "annotation file")
        )
        rows = []
        for sid in sorted(anno):
            a = anno[sid]
            n_vis = [int((np.asarray(a["uv_vis"])[o : o + 21, 2] == 1).sum()) for o in (0, 21)]
            sides = {"both": (0, 1), "left": (0,), "right": (1,), "dominant": (int(n_vis[1] > n_vis[0]),)}[
                self.hands
            ]
            for h in sides:
                if n_vis[h] < self.min_visible:
                    continue
                off = 21 * h
                rows.append(
                    (
                        f"{self.split}/color/{int(sid):05d}.png",
                        f"{self.split}/{int(sid):05d}/{'left' if h == 0 else 'right'}",
                        h,
                        skeleton.to_canonical(np.asarray(a["xyz"], dtype=np.float64), "rhd", off) * 1000.0,
                        skeleton.to_canonical(np.asarray(a["uv_vis"], dtype=np.float64), "rhd", off),
                        np.asarray(a["K"], dtype=np.float64),
                    )
                )
        index = {
            "path": np.array([r[0] for r in rows], dtype=str),
            "id": np.array([r[1] for r in rows], dtype=str),
            "hand": np.array([r[2] for r in rows], dtype=np.int64),
            "joints3d": np.array([r[3] for r in rows], dtype=np.float64).reshape(-1, 21, 3),
            "uv_vis": np.array([r[4] for r in rows], dtype=np.float64).reshape(-1, 21, 3),
            "K": np.array([r[5] for r in rows], dtype=np.float64).reshape(-1, 3, 3),
        }
        return self._drop_missing(index)

    def _load(self, i: int) -> dict:
        img = read_rgb(self._image_path(i))
        uv_vis = self.index["uv_vis"][i]
        h, w = img.shape[:2]
        vis = visibility_from_flags(uv_vis[:, :2], uv_vis[:, 2] == 1, w, h, VIS_SELF)
        sample = make_sample(
            img,
            uv_vis[:, :2],
            self.index["joints3d"][i],
            self.index["K"][i],
            dataset="rhd",
            sample_id=str(self.index["id"][i]),
            visibility=vis,
            hand_side="left" if self.index["hand"][i] == 0 else "right",
            meta={"path": str(self.index["path"][i]), "root": "wrist", "has_3d": True},
        )
        if self.mirror_to_right and sample["hand_side"] == "left":
            sample = mirror_sample(sample)
        return sample
