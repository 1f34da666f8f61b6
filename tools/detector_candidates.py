"""Where the annotated hand ranks among the detector's candidates on the 16 shipped photos, and
whether the pose model's own outputs could re-rank them (a detector + verifier cascade).

    python tools/detector_candidates.py [--detector models/detector] [--model models/book-tiny] [--k 10]

For each photo: the detector's top ``k`` boxes at a score floor of 0.02 (not its threshold), the
ranks of those with IoU >= 0.5 with the keypoints' box (the benchmark's "found"), and the best
IoU. Then each candidate is cropped like the pipeline does and run through the pose model, and
three signals are compared between the hits and the other candidates by their AUC (the
probability that a hit scores above a non-hit; 0.5 = no information):

- ``detector``: the detector's score;
- ``peak``: the mean over joints of the LHR map's largest probability (a sharp map);
- ``extent``: the predicted joints' spread, the larger side of their box over the crop's side.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from handpose_lib.data.crop import crop_image  # noqa: E402
from handpose_lib.detect import box_iou, load_detector  # noqa: E402
from handpose_lib.detector_train import real_photos  # noqa: E402
from handpose_lib.inference import load_trained  # noqa: E402
from handpose_lib.pipeline import MARGIN  # noqa: E402


def rank_auc(hit: np.ndarray, v: np.ndarray) -> float:
    """P(a hit's value > a non-hit's value), ties counted half (the ROC AUC)."""
    pos, neg = v[hit], v[~hit]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    return float((pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detector", default=str(REPO / "models" / "detector"))
    ap.add_argument("--model", default=str(REPO / "models" / "book-tiny"))
    ap.add_argument("--k", type=int, default=10, help="candidates per photo")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    thresh = load_detector(a.detector).score_thresh  # the sidecar's (its "found" needs this)
    det = load_detector(a.detector, score_thresh=0.02, max_hands=a.k)
    model, _ = load_trained(a.model)
    rows, in_top = [], 0
    for p in real_photos():
        dets = det(p["image"])
        name = Path(p["path"]).parent.name + "/" + Path(p["path"]).name
        if not dets:
            print(f"{name:<34} no candidate")
            continue
        ious = box_iou([d.box for d in dets], p["box"])[:, 0]
        xs = torch.stack([crop_image(p["image"], model.config.input_size, d.box, MARGIN)[0] for d in dets])
        with torch.no_grad():
            o = model(xs)
        peak = o.probs.flatten(2).max(-1).values.mean(-1).numpy()
        extent = np.ptp(o.coords2d.numpy(), axis=1).max(-1) / model.config.input_size
        hits = [i for i, v in enumerate(ious) if v >= 0.5]
        in_top += bool(hits)
        print(
            f"{name:<34} hit ranks {str(hits):<10} best IoU {ious.max():.2f}, top scores "
            f"{[round(d.score, 2) for d in dets[:3]]}"
        )
        rows += [(d.score, ious[i], peak[i], extent[i]) for i, d in enumerate(dets)]
    r = np.array(rows, float)
    hit = r[:, 1] >= 0.5
    print(f"\nthe detector's threshold: {thresh}")
    print(f"the annotated hand is among the top {a.k} candidates (IoU >= 0.5) in {in_top} photos")
    print(f"{int(hit.sum())} hits among {len(r)} candidates; AUC of hits against the others:")
    for k, name in ((0, "detector"), (2, "peak"), (3, "extent")):
        means = f"hits {r[hit, k].mean():.3f}, others {r[~hit, k].mean():.3f}"
        print(f"  {name:<9} {rank_auc(hit, r[:, k]):.3f}  ({means})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
