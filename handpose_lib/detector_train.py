"""Training and evaluating the hand detector (``detect.py``) on the engine's full frames.

Layer 3. ``train_detector(cfg, out)`` trains a fixed number of steps (the CPU budget is counted
in steps, not minutes) on frames of :class:`~handpose_lib.data.synthetic.frames.HandFrames`,
checkpoints a resumable run every ``checkpoint_every`` steps (``run/``), then writes the model
folder ``out`` (``model.safetensors`` in fp16 + ``checkpoint.json``: detector config, training
config, provenance and the metrics below)::

    python -m handpose_lib.detector_train --out models/detector --run runs/detector

Metrics (:func:`evaluate_frames`, :func:`evaluate_real_photos`):

- on held-out procedural frames (hand seed and frame seed ``TEST_SEED`` = 2; training uses 0):
  AP at IoU 0.5 (all-point interpolated, VOC 2010+), recall and precision at the score
  threshold (the best F1 on validation frames of seed ``VAL_SEED`` = 1, stored in the sidecar
  as the detector's default), handedness accuracy of the matched hands;
- on the 16 shipped real photos (``handpose_lib/assets/real_hands``): hands found (a detection
  above the threshold with IoU >= 0.5 with the box of the annotated keypoints), handedness
  where the side is known (Panoptic's ``_l``/``_r``, FreiHAND's right hands).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from . import checkpoint as ckpt
from .data.synthetic.frames import FrameConfig, HandFrames, HandRenderer, engine_renderer
from .data.synthetic.scene import SyntheticConfig
from .detect import DetectorConfig, HandDetector, HandDetectorNet, box_iou, detection_loss, encode_targets
from .device import autocast, measure_cpu_amp

TRAIN_SEED, VAL_SEED, TEST_SEED = 0, 1, 2
# the recipe's fields that change the trained weights (a run resumes only with the same ones)
TRAINING_FIELDS = (
    "steps",
    "batch_size",
    "lr",
    "weight_decay",
    "warmup_steps",
    "flip_prob",
    "hand_model",
    "init",
    "minutes",
    "detector",
    "frames",
    "amp",
    "frame_seed",
    "backbone_init",
    "freeze_backbone",
)
# a recorded run that predates a training field had this value (a run resumes only with the same)
FIELD_DEFAULTS = {"amp": "off", "frame_seed": 0, "backbone_init": None, "freeze_backbone": False}
# a batch's input shape (H, W) and its probability: landscape 4:3 frames, square and portrait
# windows of them (real photos come in every aspect)
SHAPES = (((192, 256), 0.6), ((256, 256), 0.2), ((256, 192), 0.2))


@dataclass
class DetectorTrainConfig:
    """How the detector is trained and evaluated.

    Attributes:
        steps: optimiser steps (the budget).
        batch_size: frames per step.
        lr, weight_decay, warmup_steps: AdamW with linear warm-up then cosine decay to 1%.
        flip_prob: probability that a training window is mirrored (its hands' sides swapped:
            a mirrored right hand is a left hand).
        hand_model: the engine's hand in the frames: ``"mesh"`` (engine v2) or ``"capsule"``.
        init: a detector folder whose weights start the training (``None``: from scratch).
        minutes: a wall-clock budget for the training steps (``None``: none). The cosine
            schedule follows whichever of ``steps`` and ``minutes`` runs out first (its progress
            is the larger of the two fractions), and training stops when the minutes are spent
            (after at least one step);
            the sidecar says how many steps were made. On a shared CPU this keeps a budget.
        checkpoint_every: resumable checkpoint interval (steps).
        n_val: procedural frames (seed ``VAL_SEED``) on which the score threshold is chosen.
        n_test: held-out procedural frames (seed ``TEST_SEED``) for the metrics.
        score_thresh: detections below are not reported (recall/precision/hands found);
            ``None``: the threshold with the best F1 on the validation frames.
        eval_long_side: input long side for the evaluation (the photos' default).
        threads: torch CPU threads of the training process.
        amp: ``"off"`` (float32) or ``"bf16"`` (bfloat16 autocast of the network's forward pass;
            the loss in float32). The command line's ``--amp measure`` (alias ``auto``) times both
            on this machine first (``device.measure_cpu_amp``, as the pose recipe's
            ``amp="measure"``) and records the faster.
        frame_seed: seed of the training frames (default :data:`TRAIN_SEED` = 0). A further
            stage started from a trained detector gets new frames with another seed (3, 4, ...;
            never ``VAL_SEED`` or ``TEST_SEED``).
        workers: processes that make the frames of the coming steps while the network trains
            (0: the training process makes them). Step ``s``'s batch is a pure function of
            ``s``, so the weights do not depend on it.
        backbone_init: a trained pose model's folder (e.g. ``models/book-tiny``) whose encoder
            starts the backbone (needs ``detector.backbone="pose"`` and a ``tiny`` pose model;
            ``None``: none). Applied after ``init``.
        freeze_backbone: keep the backbone's weights and BatchNorm statistics fixed and train
            only the top-down path and the heads (what the pose model learnt of hands is kept).
        detector, frames: the network and the frames.
    """

    steps: int = 1000
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    flip_prob: float = 0.5
    hand_model: str = "mesh"
    init: str | None = None
    minutes: float | None = None
    checkpoint_every: int = 100
    n_val: int = 150
    n_test: int = 300
    score_thresh: float | None = None
    eval_long_side: int = 320
    threads: int = 1
    amp: str = "off"
    workers: int = 0
    frame_seed: int = TRAIN_SEED
    backbone_init: str | None = None
    freeze_backbone: bool = False
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    frames: FrameConfig = field(default_factory=FrameConfig)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["detector"], d["frames"] = self.detector.to_dict(), self.frames.to_dict()
        return d


# ----------------------------------------------------------------------------------------
# batches


def hand_renderer(hand_model: str) -> HandRenderer:
    """The engine's right-hand crops for the frames: ``"mesh"`` (engine v2) or ``"capsule"``."""
    if hand_model not in ("mesh", "capsule"):
        raise ValueError(f"hand_model must be 'mesh' or 'capsule', not {hand_model!r}")
    return engine_renderer(
        SyntheticConfig(
            occlusion="none", left_hand_prob=0.0, blur_prob=0.0, noise_max=0.0, hand_model=hand_model
        )
    )


def _window(
    frame: dict, shape: tuple[int, int], rng: np.random.Generator, flip_prob: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A window of the frame with the aspect of ``shape`` (H, W), resized to it: (image, boxes,
    sides 1 = left). Hands with less than half their box inside the window are dropped. With
    probability ``flip_prob`` the window is mirrored: boxes ``x -> W - x`` and every side swapped."""
    img, boxes = frame["image"], frame["boxes"]
    fh, fw = img.shape[:2]
    H, W = shape
    if W / H >= fw / fh:
        cw, ch = fw, int(fw * H / W)
    else:
        ch = int(fh * rng.uniform(0.75, 1.0))
        cw = int(ch * W / H)
    x0, y0 = int(rng.integers(0, fw - cw + 1)), int(rng.integers(0, fh - ch + 1))
    b = boxes - [x0, y0, x0, y0]
    clipped = np.clip(b, 0, [cw, ch, cw, ch])
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    keep = area(clipped) >= 0.5 * np.maximum(area(b), 1e-6)
    s = np.array([W / cw, H / ch, W / cw, H / ch])
    small = cv2.resize(img[y0 : y0 + ch, x0 : x0 + cw], (W, H), interpolation=cv2.INTER_AREA)
    sides = np.array([sd == "left" for sd in frame["sides"]], np.float32)
    boxes_out, sides = clipped[keep] * s, sides[keep]
    if rng.uniform() < flip_prob:
        small = np.ascontiguousarray(small[:, ::-1])
        boxes_out = np.stack([W - boxes_out[:, 2], boxes_out[:, 1], W - boxes_out[:, 0], boxes_out[:, 3]], -1)
        sides = 1.0 - sides
    return small, boxes_out, sides


def make_batch(
    frames: list[dict], shape: tuple[int, int], rng: np.random.Generator, flip_prob: float = 0.0
) -> tuple[torch.Tensor, dict]:
    """Frames -> (images (B, 3, H, W) in [0, 1], targets of :func:`~handpose_lib.detect.encode_targets`);
    each window mirrored (sides swapped) with probability ``flip_prob``."""
    imgs, boxes, sides = [], [], []
    for f in frames:
        im, b, s = _window(f, shape, rng, flip_prob)
        imgs.append(im)
        boxes.append(b)
        sides.append(s)
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0
    return x, encode_targets(boxes, sides, *shape)


class StepBatches(torch.utils.data.Dataset):
    """Item ``s``: step ``s``'s training batch ``(x (B, 3, H, W), targets)``, a pure function of
    ``s`` (frames ``s * B .. (s + 1) * B - 1`` of the recipe's ``frame_seed``, the window shape
    and flips drawn from ``default_rng([frame_seed, s])``), so DataLoader workers may make it."""

    def __init__(self, cfg: DetectorTrainConfig, renderer: HandRenderer):
        self.cfg, self.frames = cfg, HandFrames(cfg.frame_seed, cfg.frames, renderer)

    def __len__(self) -> int:
        return self.cfg.steps

    def __getitem__(self, step: int) -> tuple[torch.Tensor, dict]:
        rng = np.random.default_rng([self.cfg.frame_seed, int(step)])
        shape = SHAPES[int(rng.choice(len(SHAPES), p=[p for _, p in SHAPES]))][0]
        b = self.cfg.batch_size
        batch = self.frames.batch(range(step * b, (step + 1) * b))
        return make_batch(batch, shape, rng, self.cfg.flip_prob)


def _one_thread(_worker_id: int) -> None:
    torch.set_num_threads(1)


def step_batches(cfg: DetectorTrainConfig, renderer: HandRenderer, start: int):
    """The batches of steps ``start .. cfg.steps - 1`` in order, made by ``cfg.workers`` processes
    (one thread each) ahead of the training, or in this process when ``cfg.workers`` is 0."""
    ds = StepBatches(cfg, renderer)
    if cfg.workers <= 0:
        return (ds[s] for s in range(start, cfg.steps))
    return torch.utils.data.DataLoader(
        ds,
        batch_size=None,
        sampler=range(start, cfg.steps),
        num_workers=cfg.workers,
        prefetch_factor=4,
        worker_init_fn=_one_thread,
    )


# ----------------------------------------------------------------------------------------
# metrics


def average_precision(scores, matched, n_gt: int) -> float:
    """All-point interpolated AP (VOC 2010+) of detections ``scores`` (N,) with ``matched`` (N,)
    True for true positives, against ``n_gt`` ground-truth hands."""
    if n_gt == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    tp = np.asarray(matched, bool)[order]
    ctp, cfp = np.cumsum(tp), np.cumsum(~tp)
    recall = ctp / n_gt
    precision = ctp / np.maximum(ctp + cfp, 1)
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[1.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    return float(np.sum((r[1:] - r[:-1]) * p[1:]))


def match(dets, gt_boxes, iou_thresh: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching, best score first: (per detection the matched ground-truth index or -1,
    per ground truth the matched detection index or -1)."""
    d_of = np.full(len(dets), -1)
    g_of = np.full(len(gt_boxes), -1)
    if len(dets) and len(gt_boxes):
        iou = box_iou([d.box for d in dets], gt_boxes)
        for i in np.argsort([-d.score for d in dets], kind="stable"):
            cand = np.where((g_of < 0) & (iou[i] >= iou_thresh))[0]
            if len(cand):
                g = cand[np.argmax(iou[i, cand])]
                d_of[i], g_of[g] = g, i
    return d_of, g_of


def evaluate_frames(detector: HandDetector, frames: list[dict], score_thresh: float) -> dict:
    """AP@0.5 (over all detections the detector returns), recall/precision at ``score_thresh``,
    handedness accuracy of the matched hands, on frames of :class:`HandFrames`."""
    scores, tps, n_gt, side_ok, n_side, n_det_thr, n_tp_thr = [], [], 0, 0, 0, 0, 0
    for f in frames:
        dets = detector(f["image"])
        d_of, _ = match(dets, f["boxes"])
        n_gt += len(f["boxes"])
        for d, g in zip(dets, d_of, strict=True):
            scores.append(d.score)
            tps.append(g >= 0)
            if d.score >= score_thresh:
                n_det_thr += 1
                n_tp_thr += int(g >= 0)
                if g >= 0:
                    n_side += 1
                    side_ok += int(d.side == f["sides"][g])
    return {
        "frames": len(frames),
        "hands": n_gt,
        "ap50": average_precision(scores, tps, n_gt),
        "recall": n_tp_thr / max(n_gt, 1),
        "precision": n_tp_thr / max(n_det_thr, 1),
        "side_accuracy": side_ok / max(n_side, 1),
        "score_thresh": score_thresh,
    }


def _scored(detector: HandDetector, frames: list[dict]) -> tuple[np.ndarray, np.ndarray, int]:
    scores, tps, n_gt = [], [], 0
    for f in frames:
        dets = detector(f["image"])
        d_of, _ = match(dets, f["boxes"])
        n_gt += len(f["boxes"])
        scores += [d.score for d in dets]
        tps += [g >= 0 for g in d_of]
    return np.array(scores), np.array(tps, bool), n_gt


def best_threshold(detector: HandDetector, frames: list[dict]) -> float:
    """The score threshold in 0.05..0.6 (steps of 0.025) with the best F1 on ``frames`` (the
    detector's own threshold must be lower)."""
    scores, tps, n_gt = _scored(detector, frames)
    best, best_f1 = 0.3, -1.0
    for t in np.arange(0.05, 0.6001, 0.025):
        keep = scores >= t
        tp = int(tps[keep].sum())
        f1 = 2 * tp / max(int(keep.sum()) + n_gt, 1)
        if f1 > best_f1 + 1e-12:
            best, best_f1 = round(float(t), 3), f1
    return best


def _frames(seed: int, n: int, cfg: DetectorTrainConfig, renderer) -> list[dict]:
    hf = HandFrames(seed, cfg.frames, renderer)
    return [f for i in range(0, n, 16) for f in hf.batch(range(i, min(n, i + 16)))]


def real_photos() -> list[dict]:
    """The 16 shipped photos: ``{"path", "image" (H, W, 3) uint8, "box" (4,) of the annotated
    keypoints, "side" ("left", "right" or "unknown")}``."""
    from .data.coco import real_hands_sample
    from .data.common import read_rgb

    ds = real_hands_sample()
    out = []
    for i in range(len(ds)):
        kp = ds.index["keypoints"][i]
        uv = kp[kp[:, 2] > 0, :2]
        path = str(ds.index["path"][i])
        out.append(
            {
                "path": path,
                "image": read_rgb(path),
                "box": np.concatenate([uv.min(0), uv.max(0)]),
                "side": ds[i]["hand_side"],
            }
        )
    return out


def evaluate_real_photos(detector: HandDetector, photos: list[dict] | None = None) -> dict:
    """Hands found on the shipped photos (IoU >= 0.5 with the keypoints' box, any detection above
    the detector's threshold) and handedness where the side is known, per photo too."""
    photos = real_photos() if photos is None else photos
    rows = []
    for p in photos:
        dets = detector(p["image"])
        ious = box_iou([d.box for d in dets], p["box"])[:, 0] if dets else np.zeros(0)
        best = int(np.argmax(ious)) if len(ious) else -1
        found = bool(len(ious) and ious[best] >= 0.5)
        rows.append(
            {
                "photo": Path(p["path"]).parent.name + "/" + Path(p["path"]).name,
                "found": found,
                "iou": round(float(ious[best]), 3) if best >= 0 else 0.0,
                "score": round(dets[best].score, 3) if best >= 0 else None,
                "side": p["side"],
                "predicted_side": dets[best].side if found else None,
                "detections": len(dets),
            }
        )
    known = [r for r in rows if r["found"] and r["side"] != "unknown"]
    return {
        "photos": len(rows),
        "found": sum(r["found"] for r in rows),
        "side_correct": sum(r["predicted_side"] == r["side"] for r in known),
        "side_known_and_found": len(known),
        "per_photo": rows,
    }


# ----------------------------------------------------------------------------------------
# training


def _lr_at(step: int, cfg: DetectorTrainConfig, seconds: float = 0.0) -> float:
    """Linear warm-up, then cosine to 1% over the larger of the step and time fractions."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    if cfg.minutes:
        t = max(t, seconds / (60.0 * cfg.minutes))
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def train_detector(
    cfg: DetectorTrainConfig,
    out: str | Path,
    run: str | Path | None = None,
    renderer: HandRenderer | None = None,
    log=print,
    command: str | None = None,
) -> dict:
    """Train the detector for ``cfg.steps`` steps (resuming ``run`` if it holds a checkpoint),
    evaluate it and write the model folder ``out`` (``command``: the command line, for its
    sidecar). Returns the sidecar's metrics."""
    torch.set_num_threads(cfg.threads)
    renderer = renderer or hand_renderer(cfg.hand_model)
    run = Path(run) if run is not None else Path(out).with_name(Path(out).name + "-run")
    torch.manual_seed(0)
    net = HandDetectorNet(cfg.detector)
    init_sha = None
    if cfg.init is not None:  # warm start: the weights of an earlier detector (same config)
        c0 = ckpt.load_checkpoint(cfg.init)
        ckpt.load_weights(net, c0)
        init_sha = c0.meta.get("files", {}).get(ckpt.MODEL_FILE, {}).get("sha256")
    backbone_sha = load_pose_backbone(net, cfg.backbone_init) if cfg.backbone_init is not None else None
    frozen = net.backbone_modules() if cfg.freeze_backbone else []
    for p in (p for m in frozen for p in m.parameters()):
        p.requires_grad_(False)
    trained = [p for p in net.parameters() if p.requires_grad]
    decay = [p for p in trained if p.ndim > 1]
    no_decay = [p for p in trained if p.ndim <= 1]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
    )
    start, history, seconds = 0, [], 0.0
    budget = 60.0 * cfg.minutes if cfg.minutes else math.inf
    if (run / ckpt.LAST_FILE).is_file():
        c = ckpt.load_checkpoint(run)
        old, new = c.meta.get("train_config") or {}, json.loads(json.dumps(cfg.to_dict()))
        if "frames" in old:  # a run that predates a frame option had its default
            old = {**old, "frames": {**FrameConfig().to_dict(), **old["frames"]}}
        if "detector" in old:  # the same for a detector option
            old = {**old, "detector": {**DetectorConfig().to_dict(), **old["detector"]}}
        if any(old.get(k, FIELD_DEFAULTS.get(k)) != new[k] for k in TRAINING_FIELDS):
            raise ckpt.CheckpointError(
                f"{run}: holds a run of another detector recipe; use another --run folder"
            )
        ckpt.load_weights(net, c)
        c.restore(optimizer=opt)
        start, history, seconds = c.step, c.meta.get("history", []), c.meta.get("train_seconds")
        log(f"resuming {run} at step {start}")
    if cfg.amp not in ("off", "bf16"):
        raise ValueError(f"amp must be 'off' or 'bf16', not {cfg.amp!r}")
    t0 = time.time()
    net.train()
    for m in frozen:  # fixed BatchNorm statistics too
        m.eval()
    done = start
    for step, (x, targets) in enumerate(step_batches(cfg, renderer, start), start):
        spent = (seconds or 0.0) + time.time() - t0
        if spent >= budget and step > 0:  # a run makes at least one step, whatever its budget
            log(f"the {cfg.minutes} minute budget is spent after {step} steps")
            break
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, cfg, spent)
        with autocast(torch.device("cpu"), torch.bfloat16 if cfg.amp == "bf16" else None):
            pred = net(x)
        losses = detection_loss(pred.float(), targets)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(trained, 10.0)
        opt.step()
        if not torch.isfinite(losses["loss"]):
            raise FloatingPointError(f"detector training: non-finite loss at step {step}")
        row = {"step": step + 1, **{k: round(float(v.detach()), 4) for k, v in losses.items()}}
        row["lr"] = round(opt.param_groups[0]["lr"], 7)
        history.append(row)
        done = step + 1
        if (step + 1) % 10 == 0:
            log(f"step {step + 1}/{cfg.steps} {row} {(time.time() - t0) / (step + 1 - start):.2f} s/step")
        last = step + 1 == cfg.steps or (seconds or 0.0) + time.time() - t0 >= budget
        if (step + 1) % cfg.checkpoint_every == 0 or last:
            side = {"train_config": cfg.to_dict(), "step": step + 1, "history": history}
            if seconds is not None:  # None: a run that did not record its time
                side["train_seconds"] = round(seconds + time.time() - t0, 1)
            ckpt.save_run_checkpoint(run, step + 1, net, side, optimizer=opt)
    if seconds is not None and start < done:
        seconds += time.time() - t0
    net.eval()
    det = HandDetector(net, long_side=cfg.eval_long_side, score_thresh=0.05, max_hands=20)
    thresh = cfg.score_thresh
    if thresh is None:
        thresh = best_threshold(det, _frames(VAL_SEED, cfg.n_val, cfg, renderer))
    metrics = {"test_frames": evaluate_frames(det, _frames(TEST_SEED, cfg.n_test, cfg, renderer), thresh)}
    det.score_thresh, det.max_hands = thresh, 8
    metrics["real_photos"] = evaluate_real_photos(det)
    log(f"metrics: {json.dumps(summary(metrics))}")
    sidecar = {
        "detector_config": cfg.detector.to_dict(),
        "score_thresh": thresh,
        "train_config": cfg.to_dict(),
        "step": done,
        "stopped_by": "steps" if done == cfg.steps else "minutes",
        "metrics": metrics,
        "history": history[-50:],
        "provenance": {
            "command": command,
            "init": cfg.init,
            "init_weights_sha256": init_sha,
            "backbone_init": cfg.backbone_init,
            "backbone_init_weights_sha256": backbone_sha,
            "renderer": getattr(renderer, "config", repr(renderer)),
            "scenes": (cfg.frames.scenes().to_dict() if cfg.frames.scene_prob > 0 else None),
            "train_frames": f"HandFrames seed {TRAIN_SEED}, {done * cfg.batch_size} frames",
            "val_frames": f"HandFrames seed {VAL_SEED}, frames 0..{cfg.n_val - 1} (choose score_thresh)",
            "test_frames": f"HandFrames seed {TEST_SEED}, frames 0..{cfg.n_test - 1}",
            "train_seconds": None if seconds is None else round(seconds, 1),
            "threads": cfg.threads,
            "git_commit": _git_commit(),
            "torch": torch.__version__,
        },
    }
    ckpt.save_checkpoint(out, net, sidecar, save_rng=False, weights_dtype=torch.float16)
    return metrics


def load_pose_backbone(net: HandDetectorNet, path) -> str | None:
    """Copy a trained tiny pose model's encoder (the folder ``path``) into a ``backbone="pose"``
    detector; returns the pose weights' sha256 (for the provenance)."""
    from .inference import load_trained
    from .model import PretrainedWeightsUnavailable

    if net.config.backbone != "pose":
        raise ValueError("--backbone-init needs a detector with backbone 'pose' (--backbone pose)")
    pose, c = load_trained(path)
    try:
        net.encoder.load_torchvision_state_dict(pose.encoder.state_dict(), source=str(path))
    except PretrainedWeightsUnavailable as e:  # the same check of names and shapes
        raise ckpt.CheckpointError(
            f"{e} Give a pose model of the tiny config (e.g. models/book-tiny)."
        ) from e
    return c.weights_sha256


def summary(metrics: dict) -> dict:
    """The metrics without the per-photo rows."""
    return {k: {m: v for m, v in d.items() if m != "per_photo"} for k, d in metrics.items()}


def _git_commit() -> str:
    import subprocess

    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def resolve_amp(amp: str, cfg: DetectorTrainConfig | None = None) -> str:
    """``"measure"`` (or ``"auto"``) -> ``"bf16"`` or ``"off"``, whichever trains ``cfg``'s
    network faster on this CPU (:func:`~handpose_lib.device.measure_cpu_amp` on a batch of
    landscape windows; ``"off"`` without native bf16 kernels); others as given."""
    if amp not in ("measure", "auto"):
        return amp
    cfg = cfg or DetectorTrainConfig()
    torch.set_num_threads(cfg.threads)  # timed with the training's threads
    x = torch.rand((cfg.batch_size, 3, *SHAPES[0][0]), generator=torch.Generator().manual_seed(0))
    measured = measure_cpu_amp(HandDetectorNet(cfg.detector), x)
    print(f"amp: {measured}", flush=True)
    return measured["choice"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Train the hand detector on procedural frames (make detector).")
    ap.add_argument("--out", default="models/detector", help="model folder to write")
    ap.add_argument("--run", default="runs/detector", help="resumable run folder (checkpoints)")
    ap.add_argument("--steps", type=int, default=DetectorTrainConfig.steps)
    ap.add_argument("--lr", type=float, default=DetectorTrainConfig.lr)
    ap.add_argument("--warmup-steps", type=int, default=DetectorTrainConfig.warmup_steps)
    ap.add_argument("--hand-model", choices=("mesh", "capsule"), default=DetectorTrainConfig.hand_model)
    ap.add_argument("--init", metavar="DIR", help="start from this detector's weights (e.g. models/detector)")
    ap.add_argument("--minutes", type=float, help="wall-clock budget of the training steps (see the recipe)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the training process")
    ap.add_argument(
        "--workers", type=int, default=0, help="processes making the frames ahead (0: the training one)"
    )
    ap.add_argument(
        "--amp",
        choices=("measure", "auto", "off", "bf16"),
        default="off",
        help="bf16 autocast; measure (or auto): time float32 and bf16 here first, train with the faster",
    )
    ap.add_argument(
        "--scene-prob",
        type=float,
        default=FrameConfig.scene_prob,
        help="share of frames that are the engine's full frames (a hand on its arm, faces, held things)",
    )
    ap.add_argument(
        "--other-hand-prob",
        type=float,
        default=FrameConfig.scene_other_hand_prob,
        help="share of those full frames that show the person's other hand too, labelled (v7: 0.5)",
    )
    ap.add_argument(
        "--scene-min-zoom",
        type=float,
        default=FrameConfig.scene_min_zoom,
        help="zoom those full frames out down to this factor (smaller hands, whole people; v7: 0.5)",
    )
    ap.add_argument(
        "--head-near-prob",
        type=float,
        default=FrameConfig.scene_head_near_prob,
        help="share of those full frames' heads near the hand's depth, about its size (a photo of a person)",
    )
    ap.add_argument(
        "--mesh-head-prob",
        type=float,
        default=FrameConfig.scene_mesh_head_prob,
        help="share of those heads that are the MakeHuman bust (a real face) rather than ellipsoids",
    )
    ap.add_argument(
        "--frame-seed",
        type=int,
        default=TRAIN_SEED,
        help=f"seed of the training frames (default {TRAIN_SEED}; a further stage takes new ones, e.g. 3)",
    )
    ap.add_argument(
        "--backbone",
        choices=("own", "pose"),
        default="own",
        help="the detector's own small ResNet, or the tiny pose model's encoder (see detect.DetectorConfig)",
    )
    ap.add_argument("--backbone-init", metavar="DIR", help="start the pose backbone from this pose model")
    ap.add_argument(
        "--freeze-backbone", action="store_true", help="train only the top-down path and the heads"
    )
    ap.add_argument("--force", action="store_true", help="train even if --out already holds a detector")
    a = ap.parse_args(argv)
    if (Path(a.out) / ckpt.SIDECAR_FILE).is_file() and not a.force:
        print(f"{a.out} already holds a trained detector (reused; --force trains it again)")
        return 0
    detector = DetectorConfig(backbone=a.backbone)
    if a.backbone_init is not None and a.backbone != "pose":
        ap.error("--backbone-init needs --backbone pose (the pose model's encoder)")
    if a.backbone_init is not None and not (Path(a.backbone_init) / ckpt.SIDECAR_FILE).is_file():
        ap.error(
            f"--backbone-init {a.backbone_init}: no pose model there (a folder with {ckpt.SIDECAR_FILE})"
        )
    cfg = DetectorTrainConfig(
        steps=a.steps,
        lr=a.lr,
        warmup_steps=a.warmup_steps,
        hand_model=a.hand_model,
        init=a.init,
        minutes=a.minutes,
        threads=a.threads,
        workers=a.workers,
        amp=resolve_amp(a.amp, DetectorTrainConfig(threads=a.threads, detector=detector)),
        backbone_init=a.backbone_init,
        freeze_backbone=a.freeze_backbone,
        detector=detector,
        frames=FrameConfig(
            scene_prob=a.scene_prob,
            scene_other_hand_prob=a.other_hand_prob,
            scene_min_zoom=a.scene_min_zoom,
            scene_head_near_prob=a.head_near_prob,
            scene_mesh_head_prob=a.mesh_head_prob,
        ),
        frame_seed=a.frame_seed,
    )
    if a.frame_seed in (VAL_SEED, TEST_SEED):
        ap.error(
            f"--frame-seed {a.frame_seed}: the validation ({VAL_SEED}) and test ({TEST_SEED}) frames "
            "use that seed; choose another (0, 3, 4, ...)"
        )
    for name, v in (
        ("--scene-prob", a.scene_prob),
        ("--other-hand-prob", a.other_hand_prob),
        ("--head-near-prob", a.head_near_prob),
        ("--mesh-head-prob", a.mesh_head_prob),
    ):
        if not 0 <= v <= 1:
            ap.error(f"{name} must be in [0, 1], got {v}")
    if not 0 < a.scene_min_zoom <= 1:
        ap.error(f"--scene-min-zoom must be in (0, 1], got {a.scene_min_zoom}")
    if a.minutes is not None and not a.minutes > 0:
        ap.error(f"--minutes must be positive, got {a.minutes}")
    if a.steps < 1:
        ap.error(f"--steps must be at least 1, got {a.steps}")
    if a.init is not None and not (Path(a.init) / ckpt.SIDECAR_FILE).is_file():
        ap.error(f"--init {a.init}: no detector there (a folder with {ckpt.SIDECAR_FILE} and weights)")
    command = "python -m handpose_lib.detector_train " + " ".join(argv if argv is not None else sys.argv[1:])
    try:
        metrics = train_detector(cfg, a.out, a.run, command=command)
    except ckpt.CheckpointError as e:  # a run of another recipe, weights of another config
        print(f"detector_train: {e}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {k: {m: v for m, v in d.items() if m != "per_photo"} for k, d in metrics.items()}, indent=1
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
