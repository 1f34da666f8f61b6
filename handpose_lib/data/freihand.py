"""FreiHAND (Zimmermann et al., ICCV 2019).

On disk (``root`` = ``FreiHAND_pub_v2/``; the evaluation zip adds the ``evaluation*`` parts)::

    training/rgb/%08d.jpg           224x224, 4 x 32,560 images (background versions)
    training_xyz.json               32,560 x 21 x 3, metres, camera frame
    training_K.json                 32,560 x 3 x 3
    evaluation/rgb/%08d.jpg         3,960 images
    evaluation_xyz.json, evaluation_K.json

Conventions applied (checked against lmb-freiburg/freihand ``utils/fh_utils.py`` and README):

- joint order identity (wrist, then each finger root -> tip; ``plot_hand`` bones
  ``(0,1),(1,2),...,(0,17),...``);
- 2D = ``projectPoints(xyz, K)`` = ``(K @ xyz^T)^T`` then divide by z (no 2D file);
- image ``id`` shows label ``id % 32560``: ``sample_version.map_id(id, version) = id +
  32560 * [gs, hom, sample, auto].index(version)`` (green screen, homogenised, two automatic
  colourisations); the evaluation split only has ``gs``;
- metres -> mm (x 1000); the hands are RIGHT hands (MANO right hand).

Visibility is unknown (``VIS_UNKNOWN``).
"""

from __future__ import annotations

import json

import numpy as np

from .common import HandDataset, load_or_build_index, read_rgb
from .sample import make_sample, project

DB_SIZE = {"training": 32560, "evaluation": 3960}
VERSIONS = ("gs", "hom", "sample", "auto")

LAYOUT = """\
<root>/training/rgb/00000000.jpg ... 00130239.jpg   (224x224)
<root>/training_xyz.json, training_K.json   (also training_mano.json, training_scale.json)
<root>/evaluation/rgb/00000000.jpg ..., evaluation_xyz.json, evaluation_K.json   (optional)
"""


def _load_json_array(path, shape_tail, what) -> np.ndarray:
    try:
        arr = np.asarray(json.loads(path.read_text()), dtype=np.float64)
    except (ValueError, OSError) as e:
        raise ValueError(f"FreiHAND: cannot read {what} {path} ({e})") from e
    if arr.ndim != 1 + len(shape_tail) or arr.shape[1:] != shape_tail:
        raise ValueError(
            f"FreiHAND: {path} should be N x {' x '.join(map(str, shape_tail))}, got {arr.shape}"
        )
    return arr


class FreiHAND(HandDataset):
    """FreiHAND loader: 224x224 images, per-sample K, 3D in mm.

    Args:
        root: ``FreiHAND_pub_v2/``.
        split: ``"training"`` or ``"evaluation"``.
        versions: background versions to include (training only; default all four).
        crop, transform, cache_dir: see :class:`~handpose_lib.data.common.HandDataset`.
    """

    name = "FreiHAND"
    layout = LAYOUT
    url = "https://lmb.informatik.uni-freiburg.de/resources/datasets/FreihandDataset.en.html"

    def __init__(
        self, root, split: str = "training", versions=VERSIONS, crop=None, transform=None, cache_dir="auto"
    ):
        super().__init__(root, crop, transform)
        if split not in DB_SIZE:
            raise ValueError(f"FreiHAND: split must be one of {sorted(DB_SIZE)}, got {split!r}")
        bad = [v for v in versions if v not in VERSIONS]
        if bad:
            raise ValueError(f"FreiHAND: unknown versions {bad}; choose from {VERSIONS}")
        if split == "evaluation":
            versions = ("gs",)
        self.split, self.versions = split, tuple(versions)
        self._require(self.root, "data set folder")
        self._require(self.root / split / "rgb", f"{split}/rgb/ folder")
        params = {"split": split, "versions": list(self.versions)}
        stamp = [self.root / f"{split}_xyz.json", self.root / f"{split}_K.json", self.root / split / "rgb"]
        self._finish_index(
            load_or_build_index(self.name, self.root, params, self._build_index, cache_dir, stamp)
        )

    def _build_index(self) -> dict:
        xyz = _load_json_array(
            self._require(self.root / f"{self.split}_xyz.json", "3D labels"), (21, 3), "3D labels"
        )
        K = _load_json_array(
            self._require(self.root / f"{self.split}_K.json", "camera file"), (3, 3), "cameras"
        )
        if len(xyz) != len(K):
            raise ValueError(f"FreiHAND: {len(xyz)} 3D labels but {len(K)} camera matrices")
        n = len(xyz)
        ids = np.concatenate([np.arange(n) + n * VERSIONS.index(v) for v in self.versions])
        index = {
            "path": np.array([f"{self.split}/rgb/{i:08d}.jpg" for i in ids], dtype=str),
            "image_id": ids.astype(np.int64),
            "label": (ids % n).astype(np.int64),
            "joints3d": xyz * 1000.0,
            "K": K,
        }
        return self._drop_missing_rows(index)

    def _drop_missing_rows(self, index: dict) -> dict:
        labels = {k: index.pop(k) for k in ("joints3d", "K")}
        index = self._drop_missing(index)
        index.update(labels)  # label tables stay whole; rows point into them through "label"
        return index

    def _load(self, i: int) -> dict:
        img = read_rgb(self._image_path(i))
        lab = int(self.index["label"][i])
        xyz, K = self.index["joints3d"][lab], self.index["K"][lab]
        image_id = int(self.index["image_id"][i])
        return make_sample(
            img,
            project(xyz, K),
            xyz,
            K,
            dataset="freihand",
            sample_id=f"{self.split}/{image_id:08d}",
            hand_side="right",
            meta={"path": str(self.index["path"][i]), "root": "wrist", "has_3d": True},
        )
