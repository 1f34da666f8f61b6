"""A grid of engine v2 samples (``hand_model="mesh"``) next to the real photos the library ships.

    python tools/engine_v2_grid.py [--out test-output/engine_v2_grid.png] [--n 32] [--seed 0]
                                   [--extras off|rich|NAME=P,...] [--occlusion default]

Top rows: procedural crops of data set ``--seed`` (128 x 128, the training crops); bottom rows:
the 16 real photos of ``handpose_lib/assets/real_hands`` cropped around their ground-truth
joints the same way (``HandCrop``). For looking at how far the procedural hands are from
photographs (issue 18). ``--extras``: the scene extras (``SceneExtras.parse``: ``rich`` turns
them all on: rings, watches, held objects, the other hand, a head, dead leaves, gray and infrared
frames).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from handpose_lib.data import HandCrop, real_hands_sample
from handpose_lib.data.synthetic import OCCLUSION_LEVELS, SceneExtras, SyntheticConfig, SyntheticHands


def _tile(images: list[np.ndarray], cols: int) -> np.ndarray:
    rows = [images[i : i + cols] for i in range(0, len(images), cols)]
    blank = np.zeros_like(images[0])
    return np.concatenate([np.concatenate(r + [blank] * (cols - len(r)), 1) for r in rows], 0)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("test-output/engine_v2_grid.png"))
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hand-model", default="mesh", choices=("mesh", "capsule"))
    ap.add_argument("--extras", default="off", help="scene extras: off, rich or NAME=P,... (mesh hand)")
    ap.add_argument("--occlusion", default="default", help="occlusion level (name or 0..1)")
    args = ap.parse_args(argv)
    occ = args.occlusion if args.occlusion in OCCLUSION_LEVELS else float(args.occlusion)
    extras = SceneExtras.parse(args.extras)
    cfg = SyntheticConfig(hand_model=args.hand_model, left_hand_prob=0.5, occlusion=occ, extras=extras)
    batch = SyntheticHands(args.n, args.seed, cfg).render_batch(range(args.n))
    synth = [(x.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8) for x in batch["image"]]
    real = []
    for s in real_hands_sample(crop=HandCrop(size=128, margin=0.25)):
        img = s["image"]
        img = img.float() / 255.0 if img.dtype == torch.uint8 else img
        real.append((img.permute(1, 2, 0).numpy().clip(0, 1) * 255 + 0.5).astype(np.uint8))
    sep = np.full((8, 128 * 8, 3), 255, np.uint8)
    grid = np.concatenate([_tile(synth, 8), sep, _tile(real, 8)], 0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(args.out)
    print(
        f"{args.out}: {args.n} {args.hand_model} samples (extras {args.extras}) (top), "
        f"{len(real)} real photos (bottom)"
    )


if __name__ == "__main__":
    main()
