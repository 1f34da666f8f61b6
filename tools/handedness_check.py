"""Left or right from the pose model itself: the side read off its predicted 3D joints.

    python tools/handedness_check.py CHECKPOINT [--which last|best] [--n 512]

A model trained on both hands (book model v4: ``left_hand_prob=0.5``) has to predict a left
hand's 3D as the mirror image of a right hand's, so the sign of ``skeleton.chirality`` of its
prediction says which hand it saw (the hand detector's side head does not learn this; issue 19).
Prints the fraction of sides right:

- on ``--n`` procedural validation samples of engine v2 with both hands (seed 1, the v4
  recipe's validation set; the side of each sample is its ground truth's chirality, which the
  skeleton tests show to be exact);
- on the shipped real photos whose side is known (FreiHAND: right hands; Panoptic: ``_l`` /
  ``_r``), ground-truth-box crops as ``handpose eval --data real-hands``.

A model trained on right hands only (v1-v3) answers "right" for nearly everything: its score
is then the share of right hands.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from handpose_lib import skeleton  # noqa: E402
from handpose_lib.data import HandCrop, real_hands_sample  # noqa: E402
from handpose_lib.data.cached import VAL_SEED  # noqa: E402
from handpose_lib.data.rendered import cached_synthetic  # noqa: E402
from handpose_lib.data.sample import collate  # noqa: E402
from handpose_lib.data.synthetic import SyntheticConfig  # noqa: E402
from handpose_lib.evaluate import predict_dataset  # noqa: E402
from handpose_lib.inference import load_trained  # noqa: E402


def procedural(model, n: int) -> dict:
    """Side accuracy on ``n`` engine v2 samples with both hands (seed 1)."""
    cfg = SyntheticConfig(crop_size=model.config.input_size, hand_model="mesh", left_hand_prob=0.5)
    data = cached_synthetic(n, VAL_SEED, cfg, progress=False)
    p = predict_dataset(model, data, device="cpu", batch_size=64)
    truth = np.array(skeleton.side_from_3d(p["gt3d"]))
    pred = np.array(skeleton.side_from_3d(p["pred3d"]))
    return {
        "n": n,
        "left_share": float((truth == "left").mean()),
        "accuracy": float((pred == truth).mean()),
        "accuracy_right": float((pred[truth == "right"] == "right").mean()),
        "accuracy_left": float((pred[truth == "left"] == "left").mean()),
    }


def photos(model) -> dict:
    """Side accuracy on the shipped photos whose side is known, and each photo's answer."""
    data = real_hands_sample(crop=HandCrop(size=model.config.input_size))
    samples = [data[i] for i in range(len(data))]
    p = predict_dataset(model, DataLoader(samples, batch_size=len(samples), collate_fn=collate), device="cpu")
    pred = skeleton.side_from_3d(p["pred3d"])
    rows = [
        {"id": s["meta"]["id"], "side": s["hand_side"], "predicted": q}
        for s, q in zip(samples, pred, strict=True)
    ]
    known = [r for r in rows if r["side"] in ("left", "right")]
    right = sum(r["side"] == r["predicted"] for r in known)
    acc = right / len(known) if known else None
    return {"correct": f"{right}/{len(known)}", "accuracy": acc, "photos": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", help="a run folder, model folder or checkpoint")
    ap.add_argument("--which", default="last", choices=("last", "best"))
    ap.add_argument("--n", type=int, default=512, help="procedural samples")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    model, c = load_trained(a.checkpoint, a.which)
    out = {"checkpoint": str(c.path), "step": c.step}
    out.update(procedural=procedural(model, a.n), photos=photos(model))
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
