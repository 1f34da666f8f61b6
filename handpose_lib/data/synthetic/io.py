"""Writer and reader of rendered data sets on disk (what ``handpose render`` writes).

Format (a folder, version ``FORMAT``):

- ``meta.json``: ``format``, ``generator_version``, ``seed``, ``n``, ``config`` (the
  ``SyntheticConfig`` as a dict), ``image_size`` [W, H], ``depth_scale`` and this description.
- ``labels.safetensors``: ``joints2d`` (N, 21, 2) f32 px, ``joints3d`` (N, 21, 3) f32 mm camera
  frame, ``K`` (N, 3, 3) f32, ``visibility`` (N, 21) int64 ``VIS_*`` codes,
  ``occlusion_fraction`` (N,) f64, ``left`` (N,) uint8 (1 = left hand), ``family`` (N,) int64
  (index into ``hand.POSE_FAMILIES``), ``crop_box`` (N, 3) f32, ``index`` (N,) int64.
- ``images/%06d.png``: RGB 8-bit.
- ``depth/%06d.png``: 16-bit depth of the visible hand in units of 1/``depth_scale`` mm
  (``depth_scale`` = 16), 0 where the pixel does not show the hand; the mask is ``depth > 0``.

The reader returns the same sample dicts as ``SyntheticHands`` (image quantised to 8 bits,
depth to 1/16 mm).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..sample import make_sample
from .dataset import GENERATOR_VERSION, SyntheticHands
from .hand import POSE_FAMILIES
from .scene import SyntheticConfig

FORMAT = "handpose-synthetic-v1"
DEPTH_SCALE = 16.0


def render_to_disk(
    out_dir,
    n: int,
    seed: int = 0,
    config: SyntheticConfig | None = None,
    progress: bool = True,
    batch_size: int = 256,
    overwrite: bool = False,
) -> Path:
    """Render samples 0..n-1 of ``SyntheticHands(n, seed, config)`` into ``out_dir``.

    ``out_dir`` must be new or empty: files already there are never replaced
    (``FileExistsError``). ``overwrite=True`` replaces a data set rendered there before (its
    ``meta.json`` says so), removing its images beyond the new ``n``, so that a smaller
    re-render leaves no stale images beside the new labels; a folder holding anything else is
    still refused.
    """
    out = Path(out_dir)
    _prepare_out_dir(out, overwrite)
    cfg = config or SyntheticConfig()
    ds = SyntheticHands(n, seed, cfg)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "depth").mkdir(parents=True, exist_ok=True)
    keys = (
        "joints2d",
        "joints3d",
        "K",
        "visibility",
        "occlusion_fraction",
        "left",
        "family",
        "crop_box",
        "index",
    )
    labels: dict[str, list] = {k: [] for k in keys}
    starts = range(0, n, batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc=f"rendering {n} samples to {out}", unit="batch")
    size = None
    for s in starts:
        b = ds.render_batch(range(s, min(n, s + batch_size)))
        imgs = (b["image"].permute(0, 2, 3, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
        depth = (b["depth"].cpu().numpy() * DEPTH_SCALE + 0.5).clip(0, 65535).astype(np.uint16)
        size = [imgs.shape[2], imgs.shape[1]]
        for k, i in enumerate(range(s, s + imgs.shape[0])):
            for path, pixels in (
                (out / "images" / f"{i:06d}.png", imgs[k][..., ::-1]),
                (out / "depth" / f"{i:06d}.png", depth[k]),
            ):
                if not cv2.imwrite(str(path), pixels):  # it returns False rather than raising
                    raise OSError(f"cannot write {path} (disk full or not writable?)")
        for k in ("joints2d", "joints3d", "K", "visibility", "occlusion_fraction"):
            labels[k].append(b[k].cpu())
        labels["left"].append(torch.tensor([h == "left" for h in b["hand_side"]], dtype=torch.uint8))
        labels["family"].append(torch.tensor([POSE_FAMILIES.index(f) for f in b["meta"]["pose_family"]]))
        labels["crop_box"].append(b["meta"]["crop_box"].float())
        labels["index"].append(b["meta"]["index"])
    tensors = {k: torch.cat(v).contiguous() for k, v in labels.items()} if n else {}
    if n:
        save_file(tensors, str(out / "labels.safetensors"))
    meta = {
        "format": FORMAT,
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "n": int(n),
        "config": cfg.to_dict(),
        "image_size": size,
        "depth_scale": DEPTH_SCALE,
        "description": __doc__,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return out


_OWN_FILES = ("meta.json", "labels.safetensors")


def _prepare_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse a folder with files in it, or (``overwrite``) empty a previous rendering's files."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"render: --out {out} is a file, not a folder; choose a folder path")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        shown = sorted(str(p.relative_to(out)) for p in out.iterdir())[:3]
        raise FileExistsError(
            f"render: {out} is not empty ({', '.join(shown)} ...); nothing was written. Choose a new "
            "or empty --out folder, or pass --overwrite to replace a data set rendered there before"
        )
    meta = out / "meta.json"
    try:
        ours = json.loads(meta.read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        ours = False
    rendered = [out / "images", out / "depth", *(out / f for f in _OWN_FILES)]
    others = [p for p in out.iterdir() if p not in rendered]
    if not ours or others:
        what = (
            f"{others[0].name} is not part of a rendered data set" if ours else f"{meta} is not a rendering's"
        )
        raise FileExistsError(
            f"render: --overwrite only replaces a data set written by handpose render, and {what}; "
            "nothing was written. Choose a new or empty --out folder"
        )
    for sub in ("images", "depth"):  # the previous rendering's numbered images, nothing else
        for f in (out / sub).glob("[0-9][0-9][0-9][0-9][0-9][0-9].png"):
            f.unlink()
    for name in _OWN_FILES:
        (out / name).unlink(missing_ok=True)


class DiskHands(torch.utils.data.Dataset):
    """Reader of a folder written by :func:`render_to_disk`; items are sample dicts."""

    def __init__(self, root):
        self.root = Path(root)
        meta_file = self.root / "meta.json"
        if not meta_file.is_file():
            raise FileNotFoundError(
                f"{meta_file} not found: {self.root} is not a rendered data set; "
                "create one with `handpose render --out DIR --n N`"
            )
        self.meta = json.loads(meta_file.read_text())
        if self.meta.get("format") != FORMAT:
            raise ValueError(f"{self.root}: unknown format {self.meta.get('format')!r}, expected {FORMAT!r}")
        self.n = int(self.meta["n"])
        self.labels = load_file(str(self.root / "labels.safetensors")) if self.n else {}
        if self.n and self.labels["joints2d"].shape[0] != self.n:
            raise ValueError(
                f"{self.root}: labels hold {self.labels['joints2d'].shape[0]} samples, meta says {self.n}"
            )

    def __len__(self) -> int:
        return self.n

    def _read(self, path: Path, flags) -> np.ndarray:
        img = cv2.imread(str(path), flags)
        if img is None:
            raise FileNotFoundError(f"cannot read {path} (missing or corrupt); re-render the data set")
        return img

    def __getitem__(self, i: int) -> dict:
        if not -self.n <= i < self.n:
            raise IndexError(f"index {i} out of range for {self.n} samples")
        i = i % self.n
        L = self.labels
        img = self._read(self.root / "images" / f"{i:06d}.png", cv2.IMREAD_COLOR)[..., ::-1]
        depth = self._read(self.root / "depth" / f"{i:06d}.png", cv2.IMREAD_UNCHANGED)
        depth = torch.from_numpy(depth.astype(np.float32) / self.meta["depth_scale"])
        idx = int(L["index"][i])
        seed = int(self.meta["seed"])
        return make_sample(
            np.ascontiguousarray(img),
            L["joints2d"][i],
            L["joints3d"][i],
            L["K"][i],
            dataset="synthetic",
            sample_id=f"synthetic-{seed}-{idx}",
            visibility=L["visibility"][i],
            hand_side="left" if int(L["left"][i]) else "right",
            meta={
                "seed": seed,
                "index": idx,
                "generator_version": self.meta["generator_version"],
                "pose_family": POSE_FAMILIES[int(L["family"][i])],
                "crop_box": L["crop_box"][i],
            },
            mask=depth > 0,
            depth=depth,
            occlusion_fraction=float(L["occlusion_fraction"][i]),
        )
