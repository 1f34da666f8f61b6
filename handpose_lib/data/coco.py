"""COCO-keypoints reader for 2D hand annotations (FreiHAND / OneHand10K / CMU Panoptic as
distributed by mmpose), and the 16 real photos shipped with the library.

Format: ``images[i]`` has ``file_name``, ``width``, ``height``, ``id``; ``annotations[j]`` has
``image_id``, ``bbox`` ``[x, y, w, h]`` and ``keypoints``, a flat list of 21 x (x, y, v) in image
pixels, ``v > 0`` where annotated. Joint order wrist, thumb..pinky root -> tip (canonical).

What a sample holds (2D only):

- ``joints2d`` (21, 2): as annotated; joints with ``v == 0`` are NaN and ``visible`` False;
- ``visibility``: ``visibility="labeled"`` (default; mmpose's hand files use ``v = 1`` for every
  annotated joint) gives ``VIS_UNKNOWN`` for annotated joints; ``visibility="coco"`` reads
  the COCO meaning, ``v = 2`` visible and ``v = 1`` hidden (``VIS_SELF``);
- ``joints3d`` and ``K`` are NaN (no camera, no 3D): ``meta["has_3d"]`` is False. After
  :class:`~handpose_lib.data.crop.HandCrop` ``K`` stays NaN; ``joints2d`` is cropped correctly;
- ``hand_side``: from a file name ending in ``_l``/``_r`` (Panoptic), ``"right"`` for FreiHAND,
  else ``"unknown"``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .common import HandDataset, missing_layout_error, read_rgb
from .sample import VIS_OUTSIDE, VIS_SELF, VIS_UNKNOWN, VIS_VISIBLE, make_sample

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "real_hands"
REAL_HANDS_JSONS = (
    "freihand/test_freihand.json",
    "onehand10k/test_onehand10k.json",
    "panoptic/test_panoptic.json",
)

LAYOUT = """\
<annotations>.json   COCO keypoints: images[{file_name, width, height, id}],
                     annotations[{image_id, bbox, keypoints: 21 x (x, y, v)}]
<image_dir>/<file_name> for every image   (default image_dir: the json's folder)
"""


def _source_name(info: dict, json_path: Path) -> str:
    desc = str(info.get("description", "") if isinstance(info, dict) else "").strip().lower()
    return desc or json_path.stem.replace("test_", "").lower()


def _hand_side(file_name: str, source: str) -> str:
    stem = Path(file_name).stem.lower()
    if stem.endswith("_l"):
        return "left"
    if stem.endswith("_r"):
        return "right"
    return "right" if source == "freihand" else "unknown"


class COCOHands(HandDataset):
    """2D hand keypoints from one or more COCO-keypoints json files.

    Args:
        json_path: a json file or a list of them.
        image_dir: folder of the images (default: each json's own folder).
        visibility: ``"labeled"`` or ``"coco"`` (see module docstring).
        crop, transform: applied to each sample.
    """

    name = "COCO"
    layout = LAYOUT

    def __init__(self, json_path, image_dir=None, visibility: str = "labeled", crop=None, transform=None):
        paths = [
            Path(p).expanduser() for p in (json_path if isinstance(json_path, list | tuple) else [json_path])
        ]
        super().__init__(paths[0].parent if image_dir is None else image_dir, crop, transform)
        if visibility not in ("labeled", "coco"):
            raise ValueError(f"COCOHands: visibility must be 'labeled' or 'coco', got {visibility!r}")
        self.visibility = visibility
        self.json_paths = paths
        rows = []
        for jp in paths:
            if not jp.is_file():
                raise missing_layout_error(self.name, jp, f"annotation file not found: {jp}", self.layout)
            try:
                data = json.loads(jp.read_text())
                images = {im["id"]: im for im in data["images"]}
                anns = data["annotations"]
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"COCOHands: {jp} is not a COCO keypoints file ({e})") from e
            source = _source_name(data.get("info", {}), jp)
            img_dir = (jp.parent if image_dir is None else Path(image_dir)).resolve()
            for ann in anns:
                kp = np.asarray(ann["keypoints"], dtype=np.float64)
                if kp.size != 63:
                    raise ValueError(
                        f"COCOHands: {jp}: annotation {ann.get('id')} has {kp.size} values, expected 63"
                    )
                im = images[ann["image_id"]]
                rows.append((str(img_dir / im["file_name"]), source, im, kp.reshape(21, 3), ann.get("bbox")))
        self.root = Path("/")  # paths in the index are absolute
        index = {
            "path": np.array([r[0] for r in rows], dtype=str),
            "source": np.array([r[1] for r in rows], dtype=str),
            "image_id": np.array([r[2]["id"] for r in rows], dtype=np.int64),
            "size": np.array([(r[2]["width"], r[2]["height"]) for r in rows], dtype=np.int64).reshape(-1, 2),
            "keypoints": np.array([r[3] for r in rows], dtype=np.float64).reshape(-1, 21, 3),
            "bbox": np.array([r[4] if r[4] is not None else [np.nan] * 4 for r in rows], dtype=np.float64),
        }
        self._finish_index(self._drop_missing(index))

    def _load(self, i: int) -> dict:
        img = read_rgb(self._image_path(i))
        h, w = img.shape[:2]
        kp = self.index["keypoints"][i]
        labeled = kp[:, 2] > 0
        uv = np.where(labeled[:, None], kp[:, :2], np.nan)
        if self.visibility == "coco":
            vis = np.where(kp[:, 2] >= 2, VIS_VISIBLE, VIS_SELF)
        else:
            vis = np.full(21, VIS_UNKNOWN)
        inside = (uv[:, 0] >= 0) & (uv[:, 0] <= w) & (uv[:, 1] >= 0) & (uv[:, 1] <= h)
        vis = np.where(labeled & ~inside, VIS_OUTSIDE, vis)
        source = str(self.index["source"][i])
        path = str(self.index["path"][i])
        sample = make_sample(
            img,
            uv,
            np.full((21, 3), np.nan),
            np.full((3, 3), np.nan),
            dataset=source,
            sample_id=f"{source}/{int(self.index['image_id'][i])}",
            visibility=vis,
            hand_side=_hand_side(path, source),
            meta={"path": path, "root": "wrist", "has_3d": False},
        )
        sample["visible"] = sample["visible"] & torch.from_numpy(labeled)
        return sample


def real_hands_sample(crop=None, transform=None) -> COCOHands:
    """The 16 real photos shipped in ``handpose_lib/assets/real_hands`` (8 FreiHAND, 4 OneHand10K,
    4 CMU Panoptic; mmpose test fixtures, see that folder's PROVENANCE.md), all three jsons."""
    return COCOHands([ASSETS / j for j in REAL_HANDS_JSONS], crop=crop, transform=transform)


FREIHAND_SAMPLES = 32560  # FreiHAND's training images i, i + 32560, .. are one frame in 4 versions


def real_hand_id(path: str | Path) -> str:
    """Which hand a shipped photo shows (16 photos, 10 hands; see the folder's PROVENANCE.md):
    FreiHAND's four versions of one sample share an id (``freihand/<i mod 32560>``); a Panoptic
    frame annotated for its left and its right hand is two hands; other photos are their own."""
    p = Path(path)
    source, stem = p.parent.name, p.stem
    if source == "freihand" and stem.isdigit():
        return f"freihand/{int(stem) % FREIHAND_SAMPLES}"
    return f"{source}/{stem}"
