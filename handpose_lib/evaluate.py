"""Evaluation: run a model over a data set and measure 2D EPE, 3D EPE, PCK and AUC.

What is measured, and how (stated in every report under ``"protocol"``):

- **2D**: pixels of the model's input crop (128x128 for the paper's model), hand3d's
  convention (:mod:`handpose_lib.metrics`): per-joint statistics, then the mean over joints.
  PCK over 0..30 px (20 thresholds, hand3d's 2D grid); AUC over the same grid.
- **3D**: root-relative at the wrist and **scale-aligned by the reference bone**: the network
  predicts joints in units of the middle MCP -> PIP bone (see
  :func:`handpose_lib.skeleton.denormalise_3d`); the prediction is converted to millimetres with
  the ground truth's length of that bone (``alignment="gt_ref"``, the default). The alternative
  ``alignment="hand3d"`` rescales the prediction so that its own reference bone has the ground
  truth's length (lmb-freiburg/hand3d ``eval_full.py``). The EPE under the other alignment is
  reported too. AUC over 20..50 mm (31 thresholds, the paper's AUC 20-50 mm); the PCK curve
  for plots spans 0..50 mm.
- **Splits**: per joint, per finger, and by visibility where the data set knows it
  (``visibility`` codes of :mod:`handpose_lib.data.sample`): visible, hidden (by an object or by
  the hand), hidden by an object, hidden by the hand. Joints outside the image are left out of
  the visible/hidden splits but counted in ``all``.
- **The 16 shipped real photos** (:func:`real_photos_metrics`, what training logs per epoch with
  ``TrainConfig.val_real``): crops around the ground-truth joints' box (``HandCrop``, margin
  0.2, as ``handpose eval --data real-hands``), 2D EPE in crop pixels (that command's number),
  2D EPE in the photos' pixels and PCK@0.2 of the box's longer side (``benchmarks/inference.py``'s
  numbers, there with the ground-truth box standing in for a detector), PCK per source.

Layer 3: imports ``skeleton``, ``metrics``, ``device``, ``checkpoint`` (to write the report),
the sample codes, ``data.common`` (its unreadable-image error) and, for the real photos,
``data.coco`` and ``data.crop``; it draws nothing (the
figures of a report are in :mod:`handpose_lib.viz`). The model is any callable that maps
``(B, 3, H, W)`` images in [0, 1] to an object with ``coords2d`` (B, 21, 2) px and ``joints3d``
(B, 21, 3) in reference-bone units.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import metrics, skeleton
from .data.common import CorruptImageError
from .data.sample import VIS_OBJECT, VIS_OUTSIDE, VIS_SELF, VIS_UNKNOWN, VIS_VISIBLE, collate
from .device import pick_device

log = logging.getLogger(__name__)

THRESHOLDS_3D_AUC = metrics.DEFAULT_3D_THRESHOLDS  # 20..50 mm, 31 values
THRESHOLDS_3D_CURVE = np.linspace(0.0, 50.0, 51)  # mm, for plots
THRESHOLDS_2D = metrics.DEFAULT_2D_THRESHOLDS  # 0..30 px, 20 values

ALIGNMENTS = {
    "gt_ref": "root-relative at the wrist; prediction (units of the reference bone) multiplied by the "
    "ground truth's middle MCP->PIP length",
    "hand3d": "root-relative at the wrist; prediction rescaled so its own middle MCP->PIP bone has the "
    "ground truth's length (hand3d eval_full.py)",
}

EVAL_KEYS = ("image", "joints2d", "joints3d", "visibility")


# ----------------------------------------------------------------------------------------
# helpers


class _SkipUnreadable(torch.utils.data.Dataset):
    """``data[i]``, or ``{"skipped": {"index": i, "reason": ...}}`` when its image cannot be read.

    The real data sets' loaders otherwise return the next sample in its place, which is right
    for training and wrong for a metric; :func:`_no_substitution` switches that off.
    """

    def __init__(self, data):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        try:
            return self.data[i]
        except (CorruptImageError, FileNotFoundError) as e:
            return {"skipped": {"index": int(i), "reason": str(e)}}


def _collate_skipping(samples) -> dict[str, Any]:
    good = [s for s in samples if "skipped" not in s]
    batch = collate(good) if good else {}
    batch["skipped"] = [s["skipped"] for s in samples if "skipped" in s]
    return batch


@contextmanager
def _no_substitution(data):
    """Switch off :class:`HandDataset`'s replacement of unreadable samples in ``data`` and the
    datasets it wraps (``Subset``, ``ConcatDataset``...) for the duration."""
    seen, stack, changed = set(), [data], []
    while stack:
        d = stack.pop()
        if d is None or id(d) in seen:
            continue
        seen.add(id(d))
        if getattr(d, "substitute_bad", False) is True:
            d.substitute_bad = False
            changed.append(d)
        stack.append(getattr(d, "dataset", None))
        stack.extend(getattr(d, "datasets", []) or [])
    try:
        yield
    finally:
        for d in changed:
            d.substitute_bad = True


def _iter_batches(data, batch_size: int, num_workers: int) -> Iterable[dict]:
    if isinstance(data, torch.utils.data.DataLoader):
        yield from data
        return
    with _no_substitution(data):
        loader = torch.utils.data.DataLoader(
            _SkipUnreadable(data),
            batch_size=batch_size,
            shuffle=False,
            num_workers=num_workers,
            collate_fn=_collate_skipping,
        )
        yield from loader


@torch.no_grad()
def predict_dataset(
    model,
    data,
    *,
    batch_size: int = 64,
    device: str | torch.device | None = "auto",
    num_workers: int = 0,
    max_samples: int | None = None,
    progress: bool = False,
    channels_last: bool = False,
) -> dict[str, np.ndarray]:
    """Run ``model`` over ``data`` (a Dataset of sample dicts or a DataLoader of batches).

    Returns numpy arrays: ``pred2d`` (N, 21, 2) px, ``pred3d`` (N, 21, 3) reference-bone units,
    ``gt2d`` (N, 21, 2), ``gt3d`` (N, 21, 3) mm, ``visibility`` (N, 21) codes, and ``skipped``:
    a list of ``{"index", "reason"}`` for the samples whose image could not be read (left out,
    never replaced by another sample).
    """
    dev = pick_device(device)
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    acc: dict[str, list[np.ndarray]] = {k: [] for k in ("pred2d", "pred3d", "gt2d", "gt3d", "visibility")}
    n = 0
    skipped: list[dict[str, Any]] = []
    total = len(data.dataset) if isinstance(data, torch.utils.data.DataLoader) else len(data)
    if max_samples is not None:
        total = min(total, max_samples)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="evaluate", unit="img", leave=False)
    try:
        for batch in _iter_batches(data, batch_size, num_workers):
            for sk in batch.get("skipped", []):
                log.warning("evaluate: skipping sample %d: %s", sk["index"], sk["reason"])
            skipped.extend(batch.get("skipped", []))
            if bar is not None and batch.get("skipped"):
                bar.update(len(batch["skipped"]))
            if "image" not in batch:  # every sample of the batch was unreadable
                continue
            images = batch["image"].to(dev, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            out = model(images)
            b = images.shape[0]
            if max_samples is not None and n + b > max_samples:
                b = max_samples - n
            acc["pred2d"].append(out.coords2d[:b].float().cpu().numpy())
            acc["pred3d"].append(out.joints3d[:b].float().cpu().numpy())
            acc["gt2d"].append(batch["joints2d"][:b].numpy())
            acc["gt3d"].append(batch["joints3d"][:b].numpy())
            vis = batch.get("visibility")
            if vis is None:
                vis = torch.full((images.shape[0], 21), VIS_UNKNOWN, dtype=torch.int64)
            acc["visibility"].append(vis[:b].numpy())
            n += b
            if bar is not None:
                bar.update(b)
            if max_samples is not None and n >= max_samples:
                break
    finally:
        if bar is not None:
            bar.close()
        if was_training and hasattr(model, "train"):
            model.train()
    if n == 0:
        if skipped:
            raise ValueError(
                f"evaluate: none of the {len(skipped)} samples could be read "
                f"(e.g. {skipped[0]['reason']}); check the folder with `handpose data check`"
            )
        raise ValueError("evaluate: the data set is empty")
    return {**{k: np.concatenate(v) for k, v in acc.items()}, "skipped": skipped}


# ----------------------------------------------------------------------------------------
# metrics of predictions


def align_3d(pred_norm, gt_mm, alignment: str = "gt_ref") -> np.ndarray:
    """Predicted joints (N, 21, 3) in reference-bone units -> root-relative mm (see module doc)."""
    pred_norm = np.asarray(pred_norm, dtype=np.float64)
    gt_mm = np.asarray(gt_mm, dtype=np.float64)
    if alignment == "gt_ref":
        ref = skeleton.reference_bone_length(gt_mm)
        return skeleton.denormalise_3d(metrics.align_root(pred_norm), ref)
    if alignment == "hand3d":
        return metrics.align_scale(pred_norm, gt_mm)
    raise ValueError(f"unknown alignment {alignment!r}; choose one of {sorted(ALIGNMENTS)}")


def _nan_to_none(x):
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


def _group_stats(pred2d, gt2d, pred3d_mm, gt3d_mm, mask) -> dict[str, Any]:
    mask = np.ones(gt2d.shape[:2], dtype=bool) if mask is None else mask
    m2 = mask & np.isfinite(gt2d).all(-1)  # joints without a 2D / 3D label are left out
    m3 = mask & np.isfinite(gt3d_mm).all(-1) & np.isfinite(pred3d_mm).all(-1)
    gt2d, gt3d_mm = np.nan_to_num(gt2d), np.nan_to_num(gt3d_mm)
    pred3d_mm = np.nan_to_num(pred3d_mm)
    e2 = metrics.epe(pred2d, gt2d, m2)
    e3 = metrics.epe(pred3d_mm, gt3d_mm, m3)
    a3 = metrics.auc(pred3d_mm, gt3d_mm, THRESHOLDS_3D_AUC, m3)
    a2 = metrics.auc(pred2d, gt2d, THRESHOLDS_2D, m2)
    c3 = metrics.pck(pred3d_mm, gt3d_mm, THRESHOLDS_3D_CURVE, m3)
    return {
        "n_joints": int(e2.count),
        "n_joints_3d": int(e3.count),
        "epe2d_px": _nan_to_none(e2.mean),
        "epe2d_median_px": _nan_to_none(e2.median),
        "epe3d_mm": _nan_to_none(e3.mean),
        "epe3d_median_mm": _nan_to_none(e3.median),
        "auc3d_20_50": _nan_to_none(a3.auc),
        "auc2d_0_30": _nan_to_none(a2.auc),
        "pck3d": [_nan_to_none(float(v)) for v in c3.pck],
        "pck2d": [_nan_to_none(float(v)) for v in a2.curve.pck],
        "_per_joint": {
            "epe2d_px": e2.per_joint_mean,
            "epe3d_mm": e3.per_joint_mean,
            "auc3d_20_50": a3.per_joint,
            "auc2d_0_30": a2.per_joint,
        },
    }


def evaluate_predictions(
    pred2d,
    gt2d,
    pred3d,
    gt3d_mm,
    visibility=None,
    *,
    alignment: str = "gt_ref",
    dataset: str = "",
) -> dict[str, Any]:
    """The evaluation report (a JSON-able dict) from arrays; see the module doc for the protocol.

    Args:
        pred2d, gt2d: (N, 21, 2) px. pred3d: (N, 21, 3) in reference-bone units (root-relative).
        gt3d_mm: (N, 21, 3) mm. visibility: optional (N, 21) ``VIS_*`` codes.
    """
    pred2d = np.asarray(pred2d, dtype=np.float64)
    gt2d = np.asarray(gt2d, dtype=np.float64)
    gt3d_mm = np.asarray(gt3d_mm, dtype=np.float64)
    n = pred2d.shape[0]
    if pred2d.shape != (n, 21, 2) or gt2d.shape != (n, 21, 2):
        raise ValueError(f"2D: expected (N, 21, 2), got {pred2d.shape} and {gt2d.shape}")
    if np.asarray(pred3d).shape != (n, 21, 3) or gt3d_mm.shape != (n, 21, 3):
        raise ValueError(f"3D: expected (N, 21, 3), got {np.asarray(pred3d).shape} and {gt3d_mm.shape}")
    vis = np.full((n, 21), VIS_UNKNOWN) if visibility is None else np.asarray(visibility).reshape(n, 21)
    pred_mm = align_3d(pred3d, gt3d_mm, alignment)
    other = "hand3d" if alignment == "gt_ref" else "gt_ref"
    gt_rel = metrics.align_root(gt3d_mm)
    finite = np.isfinite(pred2d).all(-1) & np.isfinite(np.asarray(pred3d, dtype=np.float64)).all(-1)
    if not finite.all():
        raise ValueError(f"evaluate: the model predicted NaN/inf for {int((~finite).sum())} joints")

    overall = _group_stats(pred2d, gt2d, pred_mm, gt_rel, None)
    per_joint_arrays = overall.pop("_per_joint")
    report: dict[str, Any] = {
        "dataset": dataset,
        "n_samples": int(n),
        "protocol": {
            "2d": "pixels of the model input crop; hand3d convention (per-joint mean, then mean over joints)",
            "3d": ALIGNMENTS[alignment],
            "alignment": alignment,
            "auc3d_thresholds_mm": THRESHOLDS_3D_AUC.tolist(),
            "pck3d_thresholds_mm": THRESHOLDS_3D_CURVE.tolist(),
            "pck2d_thresholds_px": THRESHOLDS_2D.tolist(),
        },
        "overall": overall,
        f"epe3d_mm_{other}": _group_stats(pred2d, gt2d, align_3d(pred3d, gt3d_mm, other), gt_rel, None)[
            "epe3d_mm"
        ],
    }
    report["per_joint"] = {
        name: {k: _nan_to_none(float(v[j])) for k, v in per_joint_arrays.items()}
        for j, name in enumerate(skeleton.JOINT_NAMES)
    }
    fingers: dict[str, Any] = {}
    for finger, joints in skeleton.FINGERS.items():
        mask = np.zeros((n, 21), dtype=bool)
        mask[:, list(joints)] = True
        st = _group_stats(pred2d, gt2d, pred_mm, gt_rel, mask)
        st.pop("_per_joint")
        st.pop("pck2d")
        fingers[finger] = st
    report["per_finger"] = fingers

    known = vis != VIS_UNKNOWN
    if known.any():
        groups = {
            "visible": vis == VIS_VISIBLE,
            "hidden": (vis == VIS_OBJECT) | (vis == VIS_SELF),
            "hidden_by_object": vis == VIS_OBJECT,
            "hidden_by_hand": vis == VIS_SELF,
            "outside_image": vis == VIS_OUTSIDE,
        }
        split = {}
        for name, m in groups.items():
            if m.any():
                st = _group_stats(pred2d, gt2d, pred_mm, gt_rel, m)
                st.pop("_per_joint")
                st["fraction_of_joints"] = float(m.mean())
                split[name] = st
        report["by_visibility"] = split
    return report


def evaluate(
    model,
    data,
    *,
    alignment: str = "gt_ref",
    dataset: str = "",
    batch_size: int = 64,
    device: str | torch.device | None = "auto",
    num_workers: int = 0,
    max_samples: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run ``model`` over ``data`` and return the report of :func:`evaluate_predictions`."""
    p = predict_dataset(
        model,
        data,
        batch_size=batch_size,
        device=device,
        num_workers=num_workers,
        max_samples=max_samples,
        progress=progress,
    )
    report = evaluate_predictions(
        p["pred2d"], p["gt2d"], p["pred3d"], p["gt3d"], p["visibility"], alignment=alignment, dataset=dataset
    )
    report["samples"] = {
        "read": report["n_samples"],
        "skipped": len(p["skipped"]),
        "skipped_samples": p["skipped"],
    }
    return report


PCK_REAL_THRESHOLD = 0.2  # fraction of the hand box's longer side (mmpose's PCK for hands)


@torch.no_grad()
def real_photos_metrics(model, device: str | torch.device | None = "cpu", prefix: str = "val_real_") -> dict:
    """2D accuracy on the 16 real photos shipped with the library, cropped around their
    ground-truth boxes (see the module doc); a few seconds on a CPU.

    Returns ``{prefix + key: value}`` with keys ``epe2d_px`` (crop pixels, the overall 2D EPE
    of ``handpose eval --data real-hands``), ``epe2d_image_px`` (photo pixels, mean over all
    annotated joints as mmpose's EPE), ``pck_0.2`` (fraction of annotated joints within 0.2 of
    the box's longer side) and ``pck_0.2_<source>`` for freihand, onehand10k and panoptic.
    """
    from .data.coco import real_hands_sample
    from .data.crop import HandCrop, uncrop_points

    size = model.config.input_size
    data = real_hands_sample(crop=HandCrop(size=size))
    samples = [data[i] for i in range(len(data))]
    batch = collate(samples)
    one = torch.utils.data.DataLoader(samples, batch_size=len(samples), collate_fn=collate)
    p = predict_dataset(model, one, device=device)  # in eval mode; training mode restored after
    pred, gt = p["pred2d"].astype(np.float64), p["gt2d"].astype(np.float64)
    report = evaluate_predictions(pred, gt, p["pred3d"], p["gt3d"], p["visibility"])
    mask = batch["visible"].numpy() & np.isfinite(gt).all(-1)
    box = metrics.bbox_size(np.nan_to_num(gt), mask)
    correct = np.linalg.norm(pred - np.nan_to_num(gt), axis=-1) < PCK_REAL_THRESHOLD * box[:, None]
    crops = [m["crop"] for m in batch["meta"]]
    crop = {k: np.array([c[k] for c in crops], dtype=np.float64) for k in ("x0", "y0", "side", "size")}
    pred_img, gt_img = uncrop_points(pred, crop), uncrop_points(np.nan_to_num(gt), crop)
    out = {
        "epe2d_px": report["overall"]["epe2d_px"],
        "epe2d_image_px": metrics.mmpose_epe(pred_img, gt_img, mask),
        "pck_0.2": float(correct[mask].mean()),
    }
    sources = np.array([m["dataset"] for m in batch["meta"]])
    for src in sorted(set(sources)):
        m = mask & (sources == src)[:, None]
        out[f"pck_0.2_{src}"] = float(correct[m].mean())
    return {prefix + k: v for k, v in out.items()}


def summary(report: Mapping[str, Any]) -> str:
    """A few lines of text: the headline numbers of a report, with the protocol."""
    o = {k: (float("nan") if v is None else v) for k, v in report["overall"].items()}
    counts = f"{report['n_samples']} samples"
    skipped = report.get("samples", {}).get("skipped_samples", [])
    if skipped:
        counts += f" read, {len(skipped)} skipped (unreadable: {skipped[0]['reason']}"
        counts += f" and {len(skipped) - 1} more)" if len(skipped) > 1 else ")"
    lines = [
        f"{report.get('dataset') or 'data'}: {counts}",
        f"  2D EPE {o['epe2d_px']:.2f} px (median {o['epe2d_median_px']:.2f}), "
        f"2D AUC(0-30 px) {o['auc2d_0_30']:.3f}",
        f"  3D EPE {o['epe3d_mm']:.2f} mm (median {o['epe3d_median_mm']:.2f}), "
        f"3D AUC(20-50 mm) {o['auc3d_20_50']:.3f}",
    ]
    for name, st in report.get("by_visibility", {}).items():
        st = {k: (float("nan") if v is None else v) for k, v in st.items()}
        if name in ("visible", "hidden"):
            lines.append(
                f"  {name:8s} joints ({100 * st['fraction_of_joints']:.0f}%): "
                f"2D EPE {st['epe2d_px']:.2f} px, 3D EPE {st['epe3d_mm']:.2f} mm, AUC {st['auc3d_20_50']:.3f}"
            )
    lines.append(f"  3D protocol: {report['protocol']['3d']}")
    return "\n".join(lines)


def write_report(report: Mapping[str, Any], path: str | Path) -> Path:
    """Write the report as JSON (atomically)."""
    from .checkpoint import atomic_write_json

    return atomic_write_json(path, report)


def load_report(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
