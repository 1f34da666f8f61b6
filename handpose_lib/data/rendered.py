"""Procedural sets rendered once into the cache and reused: training sets and the test set.

- :func:`cached_synthetic`: ``SyntheticHands(n, seed, config)`` rendered (by DataLoader workers)
  into an :class:`~handpose_lib.data.cached.ArraySet` folder under ``cache_dir("sets")``; the
  folder's name holds the generator version, seed, n and a hash of the config, so a new engine
  version or config renders a new set and never mixes with an old one.
- :func:`test_set`: the versioned procedural test set (``synthetic-v<version>-seed2-n2000``),
  what ``handpose eval`` and the book model's report measure on.

Layer 2: imports the engine (``data.synthetic``) and the set format (``data.cached``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .cached import TEST_SEED, ArraySet, cache_dir, is_complete, write_labels
from .synthetic import GENERATOR_VERSION, SyntheticConfig, SyntheticHands

TEST_N = 2000  # samples of the test set
# engine v2 as the test set draws it (and book model v4 trains on it): the mesh hand, left hands
# half of the time, the engine's default occluders. ``test_set(hand_model="capsule")`` gives the
# set of engine v1 (GENERATOR_VERSION 1.1), bit for bit, under a name of its own.
TEST_ENGINE = {"hand_model": "mesh", "left_hand_prob": 0.5}
RENDER_CHUNK = 64  # samples per render call of cached_synthetic (speed only)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) float images in [0, 1] -> (B, H, W, 3) uint8 (rounded), the cached form."""
    return (images.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


class _RenderChunks(Dataset):
    """Chunk ``k`` of a procedural set: ``(k, uint8 images, labels)``, rendered in a worker."""

    def __init__(self, ds: SyntheticHands, n: int, chunk: int):
        self.ds, self.n, self.chunk = ds, n, chunk

    def __len__(self):
        return (self.n + self.chunk - 1) // self.chunk

    def __getitem__(self, k):
        idx = list(range(k * self.chunk, min(self.n, (k + 1) * self.chunk)))
        b = self.ds.render_batch(idx)
        keys = ("joints2d", "joints3d", "K", "visibility", "occlusion_fraction")
        return k, to_uint8(b["image"]), {key: b[key].cpu().numpy() for key in keys}


def _identity(x):
    return x


def _one_thread(_worker_id: int) -> None:
    torch.set_num_threads(1)


def cached_synthetic(
    n: int, seed: int, config: SyntheticConfig | None = None, *, workers: int = 2, progress: bool = True
) -> ArraySet:
    """``SyntheticHands(n, seed, config)`` rendered once into ``cache_dir("sets")`` and reused.

    Samples are named ``synthetic-<seed>-<i>`` (``meta["generator_version"]`` set); the result
    is the same whatever ``workers`` (rendering is a pure function of seed and index). Two
    processes asking for the same set at once each render it and one keeps its (see
    :func:`_move_into_place`).
    """
    config = config or SyntheticConfig()
    cdict = config.to_dict()
    h = hashlib.sha256(json.dumps(cdict, sort_keys=True).encode()).hexdigest()[:8]
    folder = cache_dir("sets") / f"synthetic-v{GENERATOR_VERSION}-seed{seed}-n{n}-{h}"
    if is_complete(folder):
        return ArraySet.load(folder)
    # rendered into a folder of this process's own and renamed into place when complete, so that
    # two processes asking for the same set at once each render it whole (one of them keeps its)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    workers = max(1, min(8, os.cpu_count() or 2)) if workers is None else workers
    labels = _render_into(tmp, SyntheticHands(n, seed=seed, config=config), workers, progress)
    meta = {
        "name": f"synthetic-{seed}",
        "dataset": "synthetic",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "config": cdict,
    }
    write_labels(tmp, labels, meta)  # meta.json last: marks the set complete
    _move_into_place(tmp, folder)
    return ArraySet.load(folder)


def _move_into_place(tmp: Path, folder: Path) -> None:
    """Rename the complete set ``tmp`` to ``folder``; if another process got there first, keep
    its set and drop ours; an incomplete ``folder`` (an interrupted render) is replaced."""
    if folder.exists() and not is_complete(folder):
        shutil.rmtree(folder, ignore_errors=True)
    try:
        tmp.rename(folder)
    except OSError:
        if not is_complete(folder):
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def _render_into(folder: Path, ds: SyntheticHands, workers: int, progress: bool) -> dict[str, np.ndarray]:
    """Render every sample of ``ds`` (chunks of :data:`RENDER_CHUNK`, in DataLoader workers) into
    ``folder/images.npy`` (written through a memory map); returns the labels (with ``scene``)."""
    n, size = len(ds), ds.config.crop_size
    images = np.lib.format.open_memmap(
        folder / "images.npy", mode="w+", dtype=np.uint8, shape=(n, size, size, 3)
    )
    labels: dict[str, np.ndarray] = {"scene": np.arange(n, dtype=np.int64)}
    chunks = _RenderChunks(ds, n, RENDER_CHUNK)
    loader = DataLoader(
        chunks, batch_size=None, num_workers=workers, worker_init_fn=_one_thread, collate_fn=_identity
    )
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=f"render {folder.name}", unit="img", leave=False)
    for k, img, lab in loader:
        lo = k * RENDER_CHUNK
        images[lo : lo + len(img)] = img
        for key, v in lab.items():
            if key not in labels:
                labels[key] = np.zeros((n, *v.shape[1:]), dtype=v.dtype)
            labels[key][lo : lo + len(v)] = v
        if bar is not None:
            bar.update(len(img))
    if bar is not None:
        bar.close()
    images.flush()
    return labels


def test_set(n: int = TEST_N, image_size: int = 128, hand_model: str = "mesh") -> tuple[ArraySet, str]:
    """The versioned procedural test set: ``n`` samples (default 2000) of :data:`TEST_ENGINE`
    (the engine's default occluders), seed :data:`~handpose_lib.data.cached.TEST_SEED`; returns
    ``(dataset, name)``. The name carries the generator version (bump the version when the
    engine changes, so that numbers of different engines are never compared):
    ``synthetic-v2.0-seed2-n2000``. ``hand_model="capsule"`` draws engine v1's right-hand capsule
    set instead (the v1.1 test set's samples, bit for bit), named ``synthetic-v2.0-capsule-...``.
    """
    if hand_model == "mesh":
        config, tag = SyntheticConfig(crop_size=image_size, **TEST_ENGINE), ""
    elif hand_model == "capsule":
        config, tag = SyntheticConfig(crop_size=image_size), "capsule-"
    else:
        raise ValueError(f"test_set: hand_model must be 'mesh' or 'capsule', got {hand_model!r}")
    ds = cached_synthetic(n, TEST_SEED, config, progress=False)
    return ds, f"synthetic-v{GENERATOR_VERSION}-{tag}seed{TEST_SEED}-n{n}"


test_set.__test__ = False  # not a pytest test, though its name starts with "test"
