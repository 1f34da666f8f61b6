"""Is this detection a hand? A verifier that asks the pose model.

Layer 4: uses the detector (``detect.py``) and a trained pose model; ``pipeline.py`` uses it.

The detector proposes boxes; on photos its best scores often go to faces, arms and textures
(``models/detector/README.md``). The pose model sees every proposed box anyway (it has to, to
give the hand's joints), and its latent heatmaps (LHR, ``lhr.py``) say how sure it is: on a hand
each joint's probability map has a sharp peak, on a face or a wall it is spread out. This is the
role of the "hand presence" output of MediaPipe's landmark model (Zhang et al. 2020), here read
off the maps the model already has, with no training of the pose model.

For each of the detector's best ``candidates`` boxes (score at least ``candidate_thresh``)::

    confidence c = mean over the 21 joints of the peak of the joint's probability map  (B,)
    p(hand)      = sigmoid(w_det * logit(detector score) + w_pose * log(c) + bias)

and a box is a hand when ``p >= threshold``. The three weights are a logistic regression fitted
on the candidates of held-out procedural frames (``detector_train.VAL_SEED``: frames composed of
pasted hands and the engine's own full frames, half each), a candidate being a hand when its box
has IoU >= 0.5 with a labelled hand's; the threshold is the one with the best F1 there. Nothing
of the real photos is used. The fit belongs to one (pose model, detector) pair: the file
``verifier.json`` (in the detector's folder) records both weights' sha256, and
:func:`load_verifier` refuses another pair.

    python -m handpose_lib.verify --model models/book-tiny --detector models/detector
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .data.crop import crop_image
from .detect import HandDetector

VERIFIER_FILE = "verifier.json"


def pose_confidence(probs: Tensor) -> Tensor:
    """(B, 21, h, w) LHR probability maps (each sums to 1) -> (B,) the mean of their peaks."""
    return probs.flatten(2).amax(-1).float().mean(1)


def _features(scores, confidences) -> np.ndarray:
    s = np.clip(np.asarray(scores, np.float64), 1e-4, 1 - 1e-4)
    c = np.clip(np.asarray(confidences, np.float64), 1e-6, 1.0)
    return np.stack([np.log(s / (1 - s)), np.log(c), np.ones_like(s)], -1)


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1e-3, iters: int = 50) -> np.ndarray:
    """Logistic regression weights (D,) of features ``X`` (N, D) for labels ``y`` (N,) in {0, 1}
    by Newton's method with a small L2 penalty (not on the last, constant, column)."""
    w = np.zeros(X.shape[1])
    reg = np.full(X.shape[1], l2)
    reg[-1] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-X @ w))
        grad = X.T @ (p - y) + reg * w
        H = (X * (p * (1 - p))[:, None]).T @ X + np.diag(reg) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(H, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


@dataclass
class HandVerifier:
    """The fitted verifier (see the module docstring).

    Attributes:
        w_det, w_pose, bias: the logistic regression's weights.
        threshold: ``p(hand)`` at or above which a candidate is a hand.
        candidates: at most this many of the detector's best boxes are verified per image.
        candidate_thresh: the smallest detector score of a candidate.
        model_sha256, detector_sha256: the weights the fit belongs to.
        metrics, provenance: measured on procedural frames; how it was made.
    """

    w_det: float
    w_pose: float
    bias: float
    threshold: float
    candidates: int = 4
    candidate_thresh: float = 0.05
    model_sha256: str | None = None
    detector_sha256: str | None = None
    metrics: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    def prob(self, scores, confidences) -> np.ndarray:
        """p(hand) (N,) of detector ``scores`` (N,) and pose ``confidences`` (N,)."""
        z = _features(scores, confidences) @ np.array([self.w_det, self.w_pose, self.bias])
        return 1.0 / (1.0 + np.exp(-z))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> HandVerifier:
        return cls(**d)


def load_verifier(path, model_sha256: str | None, detector_sha256: str | None) -> HandVerifier:
    """The verifier in ``path`` (a ``verifier.json`` or the folder holding it); a ``ValueError``
    naming the problem when it was fitted for other weights (fit it again: ``python -m
    handpose_lib.verify``)."""
    p = Path(path)
    p = p / VERIFIER_FILE if p.is_dir() else p
    v = HandVerifier.from_dict(json.loads(p.read_text()))
    for what, have, want in (
        ("pose model", model_sha256, v.model_sha256),
        ("detector", detector_sha256, v.detector_sha256),
    ):
        if have and want and have != want:
            raise ValueError(
                f"{p}: fitted for another {what} (sha256 {want[:12]}..., this one {have[:12]}...); "
                "fit it again with python -m handpose_lib.verify"
            )
    return v


# ----------------------------------------------------------------------------------------
# fitting on procedural frames


def candidates_of(model, detector: HandDetector, image: np.ndarray, k: int, thresh: float):
    """The detector's best ``k`` detections with score >= ``thresh`` in ``image`` and the pose
    model's confidence on each one's crop: (detections, confidences (N,))."""
    dets = detector(image, score_thresh=thresh, max_hands=k)
    if not dets:
        return dets, np.zeros(0)
    size = int(getattr(getattr(model, "config", None), "input_size", 128))
    x = torch.stack([crop_image(image, size, d.box)[0] for d in dets])  # the training crops' margin
    with torch.no_grad():
        conf = pose_confidence(model(x.to(next(model.parameters()).device)).probs).cpu().numpy()
    return dets, conf


def collect(model, detector: HandDetector, frames: list[dict], k: int, thresh: float) -> dict:
    """Candidates of ``frames`` (``HandFrames`` dicts): ``scores``, ``confidences``, ``labels``
    (1: IoU >= 0.5 with a labelled hand, each hand matched once, best score first), ``frame``
    index of each, and ``n_hands`` labelled."""
    from .detector_train import match

    out = {"scores": [], "confidences": [], "labels": [], "frame": []}
    n_hands = 0
    for i, f in enumerate(frames):
        dets, conf = candidates_of(model, detector, f["image"], k, thresh)
        gt = np.asarray(f["boxes"]).reshape(-1, 4)
        n_hands += len(gt)
        d_of, _ = match(dets, gt)  # the detector's own matching (best score first, IoU >= 0.5)
        out["labels"] += (d_of >= 0).astype(float).tolist()
        out["scores"] += [d.score for d in dets]
        out["confidences"] += conf.tolist()
        out["frame"] += [i] * len(dets)
    res = {key: np.asarray(v, np.float64) for key, v in out.items()}
    res["n_hands"] = n_hands
    return res


def _pr_at(values: np.ndarray, labels: np.ndarray, n_hands: int, t: float) -> tuple[float, float]:
    keep = values >= t
    tp = float(labels[keep].sum())
    return tp / max(n_hands, 1), tp / max(int(keep.sum()), 1)


def best_f1_threshold(values: np.ndarray, labels: np.ndarray, n_hands: int) -> float:
    """The threshold in 0.05..0.95 (steps of 0.025) with the best F1 (recall over all labelled hands)."""
    best, best_t = -1.0, 0.5
    for t in np.round(np.arange(0.05, 0.951, 0.025), 3):
        r, p = _pr_at(values, labels, n_hands, t)
        f1 = 2 * p * r / max(p + r, 1e-9)
        if f1 > best:
            best, best_t = f1, float(t)
    return best_t


def summarise(v: HandVerifier, c: dict, det_thresh: float) -> dict:
    """AP, recall and precision of the detector alone (its own threshold) and verified, on ``c``."""
    from .detector_train import average_precision

    p = v.prob(c["scores"], c["confidences"])
    rd, pd = _pr_at(c["scores"], c["labels"], c["n_hands"], det_thresh)
    rv, pv = _pr_at(p, c["labels"], c["n_hands"], v.threshold)
    r3 = lambda x: round(float(x), 3)  # noqa: E731
    return {
        "hands": int(c["n_hands"]),
        "candidates": len(p),
        "detector": {
            "ap50": r3(average_precision(c["scores"], c["labels"].astype(bool), c["n_hands"])),
            "recall": r3(rd),
            "precision": r3(pd),
        },
        "verified": {
            "ap50": r3(average_precision(p, c["labels"].astype(bool), c["n_hands"])),
            "recall": r3(rv),
            "precision": r3(pv),
        },
    }


def fit_verifier(
    model, detector: HandDetector, frames: list[dict], k: int = 4, thresh: float = 0.05
) -> HandVerifier:
    """Fit the weights and the threshold on the candidates of ``frames``."""
    c = collect(model, detector, frames, k, thresh)
    if c["labels"].sum() < 5 or (1 - c["labels"]).sum() < 5:
        raise ValueError(f"too few hands or non-hands among {len(c['labels'])} candidates to fit a verifier")
    w = fit_logistic(_features(c["scores"], c["confidences"]), c["labels"])
    v = HandVerifier(float(w[0]), float(w[1]), float(w[2]), 0.5, candidates=k, candidate_thresh=thresh)
    v.threshold = best_f1_threshold(v.prob(c["scores"], c["confidences"]), c["labels"], c["n_hands"])
    v.metrics["val"] = summarise(v, c, detector.score_thresh)
    return v


def procedural_frames(seed: int, n: int) -> list[dict]:
    """``n`` frames of seed ``seed``: the first half composed of pasted mesh hands, the second
    half the engine's own full frames (``FrameConfig(scene_prob=1)``)."""
    from .data.synthetic.frames import FrameConfig
    from .detector_train import DetectorTrainConfig, _frames, hand_renderer

    renderer = hand_renderer("mesh")
    composed = _frames(seed, n - n // 2, DetectorTrainConfig(), renderer)
    scenes = _frames(seed, n // 2, DetectorTrainConfig(frames=FrameConfig(scene_prob=1.0)), renderer)
    return composed + scenes


def main(argv=None) -> int:
    from . import checkpoint as ckpt
    from .detect import load_detector
    from .detector_train import TEST_SEED, VAL_SEED
    from .inference import load_trained

    ap = argparse.ArgumentParser(description="Fit the hand verifier of a (pose model, detector) pair.")
    ap.add_argument("--model", default="models/book-tiny")
    ap.add_argument("--detector", default="models/detector")
    ap.add_argument("--out", help=f"file to write (default: DETECTOR/{VERIFIER_FILE})")
    ap.add_argument("--n", type=int, default=300, help="validation frames (and as many test frames)")
    ap.add_argument("--candidates", type=int, default=4)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        model, c = load_trained(a.model)
        det = load_detector(a.detector)
    except (ckpt.CheckpointError, OSError) as e:
        print(f"verify: {e}", file=sys.stderr)
        return 2
    v = fit_verifier(model.eval(), det, procedural_frames(VAL_SEED, a.n), k=a.candidates)
    test = collect(model, det, procedural_frames(TEST_SEED, a.n), v.candidates, v.candidate_thresh)
    v.metrics["test"] = summarise(v, test, det.score_thresh)
    v.model_sha256 = c.weights_sha256
    v.detector_sha256 = ckpt.load_checkpoint(a.detector).weights_sha256
    v.provenance = {
        "command": "python -m handpose_lib.verify " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": str(a.model),
        "detector": str(a.detector),
        "val_frames": f"seed {VAL_SEED}: {a.n - a.n // 2} composed + {a.n // 2} engine full frames (fit)",
        "test_frames": f"seed {TEST_SEED}: the same kinds (metrics.test)",
    }
    out = Path(a.out) if a.out else Path(a.detector) / VERIFIER_FILE
    out.write_text(json.dumps(v.to_dict(), indent=1) + "\n")
    print(
        json.dumps({k: v.to_dict()[k] for k in ("w_det", "w_pose", "bias", "threshold", "metrics")}, indent=1)
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
