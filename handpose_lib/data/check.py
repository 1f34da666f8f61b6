"""Validate a data set folder and show one sample's labels (``handpose data check NAME ROOT``).

Checks: the folder layout (a missing or mis-laid-out folder gets the expected layout), the
sample count, image files listed by the labels but missing, images that fail to decode (up to
``--decode`` images spread over the set, all with ``--decode 0``), and label ranges on the
decoded samples: finite values, depth ``z > 0``, bone lengths within 2-150 mm, 2D joints
inside the image, and the reprojection error ``|joints2d - project(joints3d, K)|`` in pixels
(the loaders that read published 2D labels, GANerated and RHD, are checked against their 3D).
"""

from __future__ import annotations

import json

import numpy as np

from .. import skeleton
from .coco import COCOHands
from .common import CorruptImageError, DatasetNotFoundError, verify_image
from .freihand import FreiHAND
from .ganerated import GANerated
from .rhd import RHD
from .sample import VIS_NAMES, project
from .stb import STB
from .synthhands import SynthHands

# name -> (loader, keyword arguments used by the check)
LOADERS = {
    "stb": (STB, {"split": "all"}),
    "ganerated": (GANerated, {"subset": "all", "mirror_to_right": False}),
    "synthhands": (SynthHands, {}),
    "rhd": (RHD, {"split": "training"}),
    "freihand": (FreiHAND, {"split": "training"}),
    "coco": (COCOHands, {}),
}

BONE_RANGE_MM = (2.0, 150.0)
MAX_REPROJECTION_PX = 2.0


def _label_problems(sample: dict) -> list[str]:
    probs = []
    sid = sample["meta"]["id"]
    uv = sample["joints2d"].double().numpy()
    H, W = sample["image"].shape[1:]
    ok2d = np.isfinite(uv).all(axis=1)
    if not ok2d.any():
        probs.append(f"{sid}: no finite 2D joint")
    outside = ok2d & ((uv[:, 0] < 0) | (uv[:, 0] > W) | (uv[:, 1] < 0) | (uv[:, 1] > H))
    if outside.sum() > 10:
        probs.append(f"{sid}: {int(outside.sum())} of 21 2D joints lie outside the {W}x{H} image")
    if not sample["meta"].get("has_3d", True):
        return probs
    xyz = sample["joints3d"].double().numpy()
    K = sample["K"].double().numpy()
    if not (np.isfinite(xyz).all() and np.isfinite(K).all()):
        return probs + [f"{sid}: non-finite 3D joints or camera matrix"]
    if (xyz[:, 2] <= 0).any():
        probs.append(f"{sid}: joints behind the camera (z <= 0 mm)")
    bones = skeleton.bone_lengths(xyz)
    lo, hi = BONE_RANGE_MM
    if bones.min() < lo or bones.max() > hi:
        rng = f"{bones.min():.1f}..{bones.max():.1f}"
        probs.append(f"{sid}: bone lengths {rng} mm outside {lo}..{hi} mm (wrong units?)")
    err = np.linalg.norm(project(xyz, K) - uv, axis=1)
    if np.nanmax(err) > MAX_REPROJECTION_PX:
        probs.append(f"{sid}: 2D labels are {np.nanmax(err):.2f} px from the projected 3D labels")
    return probs


def sample_labels(sample: dict) -> dict:
    """JSON-ready labels of one sample."""

    def lst(t):
        rows = t.double().numpy()
        return [[None if not np.isfinite(v) else round(float(v), 4) for v in row] for row in rows]

    H, W = sample["image"].shape[1:]
    return {
        "id": sample["meta"]["id"],
        "dataset": sample["meta"]["dataset"],
        "hand_side": sample["hand_side"],
        "image_size": [int(W), int(H)],
        "joints3d": lst(sample["joints3d"]),
        "joints2d": lst(sample["joints2d"]),
        "K": lst(sample["K"]),
        "visibility": [VIS_NAMES[int(v)] for v in sample["visibility"]],
        "meta": {k: v for k, v in sample["meta"].items() if isinstance(v, str | int | float | bool)},
    }


def check_dataset(name: str, root, index: int = 0, decode: int = 64, **loader_kwargs) -> dict:
    """Validate a data set folder.

    Args:
        name: a key of :data:`LOADERS` (``stb``, ``ganerated``, ``synthhands``, ``rhd``,
            ``freihand``, ``coco``; for ``coco`` ``root`` is the json file).
        root: the data set folder.
        index: the sample whose labels are returned.
        decode: how many images to decode (spread evenly, plus ``index``); 0 = all.
        loader_kwargs: override the loader's arguments (e.g. ``split="test"``).
    Returns:
        ``{"name", "root", "ok", "count", "missing_files", "bad_files", "problems", "checked",
        "sample"}``; ``ok`` is False when the folder is unusable or a problem was found.
    """
    key = name.lower()
    if key not in LOADERS:
        raise ValueError(f"unknown data set {name!r}; choose one of {sorted(LOADERS)}")
    cls, kwargs = LOADERS[key]
    kwargs = {**kwargs, **loader_kwargs}
    if key != "coco":
        kwargs.setdefault("cache_dir", None)
    report = {"name": key, "root": str(root), "ok": False, "count": 0, "missing_files": 0, "bad_files": []}
    report.update({"problems": [], "checked": 0, "sample": None})
    try:
        ds = cls(root, **kwargs)
    except (DatasetNotFoundError, ValueError) as e:
        report["problems"].append(str(e))
        return report
    n = len(ds)
    report["count"] = n
    report["missing_files"] = len(ds.missing_files)
    if ds.missing_files:
        report["problems"].append(
            f"{len(ds.missing_files)} images listed in the labels are missing, e.g. {ds.missing_files[:3]}"
        )
    if decode <= 0 or decode >= n:
        which = range(n)
    else:
        which = np.unique(np.linspace(0, n - 1, decode).round().astype(int))
    which = sorted(set(int(i) for i in which) | ({index % n} if n else set()))
    good = None
    for i in which:
        try:
            s = ds._load(i)
            if hasattr(ds, "_image_path"):  # opencv decodes a truncated JPEG without an error
                verify_image(ds._image_path(i))
        except (CorruptImageError, FileNotFoundError) as e:
            report["bad_files"].append(str(e))
            continue
        report["checked"] += 1
        report["problems"].extend(_label_problems(s))
        if i == index % n:
            good = s
    if report["bad_files"]:
        report["problems"].append(f"{len(report['bad_files'])} of {len(which)} decoded images are unreadable")
    if good is not None:
        report["sample"] = sample_labels(good)
    report["ok"] = not report["problems"]
    return report


def format_json(report: dict) -> str:
    """The report as JSON, with the sample's 3D/2D joints, camera matrix and image size on top."""
    out = dict(report)
    if report["sample"]:
        out.update({k: report["sample"][k] for k in ("joints3d", "joints2d", "K", "image_size")})
    return json.dumps(out, indent=1)


def format_report(report: dict) -> str:
    """Human-readable report."""
    lines = [f"data set: {report['name']}   root: {report['root']}"]
    lines.append(f"samples: {report['count']}   images decoded: {report['checked']}")
    lines.append(f"missing images: {report['missing_files']}   unreadable images: {len(report['bad_files'])}")
    for b in report["bad_files"][:5]:
        lines.append(f"  unreadable: {b}")
    if report["problems"]:
        lines.append(f"problems ({len(report['problems'])}):")
        lines.extend(f"  - {p}" for p in report["problems"][:20])
    s = report["sample"]
    if s:
        w, h = s["image_size"]
        lines.append(f"sample {s['id']}: {s['hand_side']} hand, image {w}x{h}")
        lines.append("  K = " + json.dumps(s["K"]))
        head = f"{'x mm':>9} {'y mm':>9} {'z mm':>9} {'u px':>8} {'v px':>8}"
        lines.append(f"  {'joint':<12} {head}  visibility")
        for j, name in enumerate(skeleton.JOINT_NAMES):
            x, y, z = (f"{v:9.1f}" if v is not None else f"{'-':>9}" for v in s["joints3d"][j])
            u, v = (f"{c:8.1f}" if c is not None else f"{'-':>8}" for c in s["joints2d"][j])
            lines.append(f"  {name:<12} {x} {y} {z} {u} {v}  {s['visibility'][j]}")
    lines.append("OK" if report["ok"] else "NOT OK")
    return "\n".join(lines)
