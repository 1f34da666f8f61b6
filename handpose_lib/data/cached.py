"""Cached rendered sets: one on-disk format, where caches live, and the procedural seeds.

Rendering a 128x128 procedural sample costs milliseconds; reading a cached one costs
microseconds. Every rendered set that training, evaluation and the occlusion study keep is one
folder in one format, read by one class, :class:`ArraySet`::

    FOLDER/
        images.npy    (N, H, W, 3) uint8 RGB, read memory-mapped (a 30,000-sample set is 1.4 GB)
        labels.npz    joints2d (N, 21, 2) px, joints3d (N, 21, 3) mm, K (N, 3, 3),
                      visibility (N, 21) VIS_* codes, occlusion_fraction (N,), scene (N,) int64
        meta.json     name, dataset, n, format; written last: a folder without it is incomplete

``scene`` is the engine's scene index of each sample (sample ``i`` of a training set is scene
``i``; an occlusion test set keeps the scenes that fell into its bin). Items are the sample dicts
of :mod:`handpose_lib.data.sample` with ``occlusion_fraction``; their id is ``NAME-SCENE``.

``DiskHands`` (PNG images + safetensors labels, written by ``handpose render``) stays the format
for exchanging a rendered set with other tools; this one is the library's own cache.

Where caches live: :func:`cache_dir` (``$HANDPOSE_CACHE/<kind>``, default
``~/.cache/handpose/<kind>``) for the rendered sets (``sets``), the real data sets' indexes
(``index``) and the engine's compiled C++ kernel (``native``).

The procedural seeds (one place for all of them): :data:`TRAIN_SEED`, :data:`VAL_SEED`,
:data:`TEST_SEED` (the versioned test set) and :data:`OCCLUSION_TEST_SEED` (the occlusion test
sets); the unit tests use seed 7.

Layer 2: imports ``data.sample`` and ``checkpoint`` (atomic writes); not the engine (the engine's
``native`` module asks :func:`cache_dir` where to build). Rendering sets into this format is
:mod:`handpose_lib.data.rendered`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from ..checkpoint import atomic_write_json
from .sample import make_sample

CACHE_ENV = "HANDPOSE_CACHE"
DEFAULT_CACHE = Path("~") / ".cache" / "handpose"

TRAIN_SEED = 0  # the procedural training sets (TrainConfig.data_seed)
VAL_SEED = 1  # their validation sets (data_seed + 1)
TEST_SEED = 2  # the versioned test set (data.rendered.test_set)
OCCLUSION_TEST_SEED = 80  # the occlusion test sets (occlusion.build_test_sets)

FORMAT = "handpose-array-set/1"
IMAGES_FILE = "images.npy"
LABELS_FILE = "labels.npz"
META_FILE = "meta.json"
LABEL_KEYS = ("joints2d", "joints3d", "K", "visibility", "occlusion_fraction", "scene")


def cache_dir(kind: str) -> Path:
    """Where caches of ``kind`` live: ``$HANDPOSE_CACHE/<kind>``, default ``~/.cache/handpose/<kind>``.

    Kinds in use: ``sets`` (rendered sets, :class:`ArraySet` folders), ``index`` (the real data
    set loaders' indexes) and ``native`` (the engine's compiled kernel). Not created here.
    """
    if not kind or os.sep in kind or kind in (".", ".."):
        raise ValueError(f"cache kind must be a plain folder name, got {kind!r}")
    root = os.environ.get(CACHE_ENV) or DEFAULT_CACHE.expanduser()
    return Path(root) / kind


class ArraySet(Dataset):
    """Rendered samples held in arrays: ``images`` (N, H, W, 3) uint8 and ``labels``
    (:data:`LABEL_KEYS`, each with N rows), plus ``meta`` (``name``, ``dataset``, ...).

    Build one in memory (``ArraySet(images, labels, meta)``) and :meth:`save` it, or open a saved
    folder with :meth:`load` (images memory-mapped, opened lazily in each DataLoader worker).
    """

    def __init__(
        self,
        images: np.ndarray | None,
        labels: Mapping[str, np.ndarray],
        meta: Mapping[str, Any],
        folder: str | os.PathLike | None = None,
    ):
        missing = [k for k in LABEL_KEYS if k not in labels]
        if missing:
            raise ValueError(f"ArraySet: labels lack {missing} (needs {list(LABEL_KEYS)})")
        if "name" not in meta:
            raise ValueError("ArraySet: meta needs a 'name' (the samples' id prefix)")
        self.labels = dict(labels)
        self.meta = dict(meta)
        self.folder = Path(folder) if folder is not None else None
        self._images = images
        if images is None and self.folder is None:
            raise ValueError("ArraySet: give the images or the folder that holds them")

    @property
    def name(self) -> str:
        return str(self.meta["name"])

    @property
    def images(self) -> np.ndarray:
        """(N, H, W, 3) uint8; memory-mapped from ``images.npy`` for a loaded set."""
        if self._images is None:
            self._images = np.load(self.folder / IMAGES_FILE, mmap_mode="r")
        return self._images

    def __getstate__(self):  # a DataLoader worker maps the file again instead of copying it
        state = dict(self.__dict__)
        if self.folder is not None:
            state["_images"] = None
        return state

    def __len__(self) -> int:
        return len(self.labels["scene"])

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} samples")
        i = int(i) % len(self)
        lab = self.labels
        extra = {k: self.meta[k] for k in ("generator_version",) if k in self.meta}
        sample = make_sample(
            np.array(self.images[i]),
            lab["joints2d"][i],
            lab["joints3d"][i],
            lab["K"][i],
            dataset=str(self.meta.get("dataset", "synthetic")),
            sample_id=f"{self.name}-{int(lab['scene'][i])}",
            visibility=lab["visibility"][i],
            meta=extra,
        )
        sample["occlusion_fraction"] = float(lab["occlusion_fraction"][i])
        return sample

    @classmethod
    def load(cls, folder: str | os.PathLike) -> ArraySet:
        """A saved set (:meth:`save`, :func:`write_labels`); ``FileNotFoundError`` when the folder
        is not a complete one (no ``meta.json``: not written by this format, or interrupted)."""
        folder = Path(folder)
        if not (folder / META_FILE).is_file():
            raise FileNotFoundError(f"{folder}: not a complete rendered set (no {META_FILE})")
        meta = json.loads((folder / META_FILE).read_text())
        with np.load(folder / LABELS_FILE, allow_pickle=False) as z:
            labels = {k: z[k] for k in z.files}
        return cls(None, labels, meta, folder)

    def save(self, folder: str | os.PathLike) -> Path:
        """Write this set as ``folder`` (images, labels, then ``meta.json``); returns the folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / IMAGES_FILE, np.ascontiguousarray(self.images, dtype=np.uint8))
        write_labels(folder, self.labels, self.meta)
        return folder


def is_complete(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a complete saved :class:`ArraySet`."""
    return (Path(folder) / META_FILE).is_file()


def write_labels(
    folder: str | os.PathLike, labels: Mapping[str, np.ndarray], meta: Mapping[str, Any]
) -> None:
    """Finish a set folder whose ``images.npy`` is written: ``labels.npz``, then ``meta.json``
    (with ``n`` and ``format``), which marks the folder complete."""
    folder = Path(folder)
    np.savez(folder / LABELS_FILE, **{k: np.asarray(v) for k, v in labels.items()})
    n = len(labels["scene"])
    atomic_write_json(folder / META_FILE, {**dict(meta), "n": n, "format": FORMAT})
