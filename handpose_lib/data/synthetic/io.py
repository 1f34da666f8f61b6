"""Writer and reader of rendered data sets on disk, and the ``handpose render`` command.

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

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..sample import make_sample
from .dataset import GENERATOR_VERSION, SyntheticHands
from .hand import POSE_FAMILIES
from .scene import OCCLUSION_LEVELS, SyntheticConfig

FORMAT = "handpose-synthetic-v1"
DEPTH_SCALE = 16.0


def render_to_disk(
    out_dir,
    n: int,
    seed: int = 0,
    config: SyntheticConfig | None = None,
    progress: bool = True,
    batch_size: int = 256,
) -> Path:
    """Render samples 0..n-1 of ``SyntheticHands(n, seed, config)`` into ``out_dir``."""
    out = Path(out_dir)
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
            cv2.imwrite(str(out / "images" / f"{i:06d}.png"), imgs[k][..., ::-1])
            cv2.imwrite(str(out / "depth" / f"{i:06d}.png"), depth[k])
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


def _occlusion_arg(s: str):
    if s in OCCLUSION_LEVELS:
        return s
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"use a number in [0, 1] or one of {list(OCCLUSION_LEVELS)}"
        ) from None
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError("occlusion level must be in [0, 1]")
    return v


def render_main(argv=None) -> int:
    """``handpose render --out DIR --n N --seed S [--occlusion LEVEL] [--left-prob P] [--size 128]``."""
    ap = argparse.ArgumentParser(
        prog="handpose render",
        description="Render a procedural hand data set to disk.",
        epilog="example:\n  handpose render --out data/synth-val --n 2000 --seed 1 --occlusion heavy",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--n", type=int, required=True, help="number of samples")
    ap.add_argument("--seed", type=int, default=0, help="data set seed (use different seeds for splits)")
    ap.add_argument(
        "--occlusion",
        type=_occlusion_arg,
        default="default",
        help="level in [0,1] or none/light/default/heavy",
    )
    ap.add_argument("--left-prob", type=float, default=0.0, help="probability of a (mirrored) left hand")
    ap.add_argument("--size", type=int, default=128, help="crop size (multiple of 8)")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    if a.n < 0:
        ap.error("--n must be >= 0")
    if a.size % 8:
        ap.error("--size must be a multiple of 8")
    cfg = SyntheticConfig(crop_size=a.size, occlusion=a.occlusion, left_hand_prob=a.left_prob)
    out = render_to_disk(a.out, a.n, a.seed, cfg, progress=not a.quiet)
    print(f"wrote {a.n} samples to {out}")
    return 0
