"""Chapter 8's precomputed figures: ``results/occlusion/showcase.json`` from the trained ablations.

    python tools/occlusion_showcase.py [--profile quick|full]
    handpose occlusion --showcase [--profile quick|full]     # the same

Needs the trained variants (a) and (b) of the profile (``handpose occlusion --ablate
a_full,b_no_occ_aug``, in ``runs/<profile's runs folder>``). The static book has no Python
kernel, so what chapter 8 shows of the trained models is computed here once and stored: images
as base64 JPEG (quality 90; PNG of noisy renders is 6x larger) next to the labels and the
predictions. The JSON holds

- ``examples``: two images of every occlusion test set with their labels;
- ``failures``: the worst samples (3D EPE) of the 40% and 60% sets under (a);
- ``sweep``: a disc moved across the hand of the first 0% sample, predictions of (a) and (b);
- ``real``: the library's real photos with a pasted occluder, 2D predictions of (a) and (b).

Deterministic: the same trained runs give the same file.
"""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from handpose_lib import occlusion as occ  # noqa: E402
from handpose_lib.checkpoint import LAST_FILE, atomic_write_json  # noqa: E402
from handpose_lib.data.cached import OCCLUSION_TEST_SEED, ArraySet  # noqa: E402
from handpose_lib.inference import load_trained, predict_image  # noqa: E402

SHOWCASE_FILE = "showcase.json"
SHOWN_VARIANTS = (occ.A_FULL, occ.B_NO_OCC_AUG)
FAILURE_SETS = ("40%", "60%")
JPEG_QUALITY = 90
REAL_PHOTO_STREAM = 99  # random stream tag of the real photos' occluders: [seed, 99, photo]
SWEEP_COLOR = (0.2, 0.45, 0.8)  # the disc of the sweep (RGB in [0, 1])


def jpg_b64(img_u8: np.ndarray) -> str:
    """(H, W, 3) uint8 RGB -> base64 JPEG."""
    ok, buf = cv2.imencode(
        ".jpg", np.ascontiguousarray(img_u8[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return base64.b64encode(buf.tobytes()).decode()


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8."""
    return (image.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()


def sweep_frames(model, sample: dict, radius: float = 14.0, steps: int = 13) -> list[dict]:
    """A disc occluder moved left to right across the hand (through its palm centre): one frame
    per position with the image, predicted 2D joints and updated visibility."""
    from handpose_lib.data.occlude import Occluder, paste

    j = sample["joints2d"].numpy()
    c = j[list(occ.PALM_JOINTS)].mean(0)
    W = sample["image"].shape[-1]
    frames = []
    for k, x in enumerate(np.linspace(radius, W - radius, steps)):
        disc = Occluder((float(x), float(c[1])), (radius, radius), 0.0, "ellipse", "flat", SWEEP_COLOR, 1.2)
        p = paste(sample, disc, np.random.default_rng(k))
        pred2d = predict_image(model, p["image"]).joints2d
        frames.append(
            {
                "x": float(x),
                "jpg": jpg_b64(to_uint8(p["image"])),
                "pred2d": pred2d.round(2).tolist(),
                "visibility": p["visibility"].tolist(),
                "epe2d_px": float(np.linalg.norm(pred2d - j, axis=1).mean()),
            }
        )
    return frames


def set_examples(sets: dict[str, ArraySet], per_set: int = 2) -> dict[str, list[dict]]:
    """The first ``per_set`` images of every set with their labels (the chapter's overview)."""
    out = {}
    for name, s in sets.items():
        frac = s.labels["occlusion_fraction"]
        out[name] = [
            {
                "jpg": jpg_b64(s.images[i]),
                "gt2d": s.labels["joints2d"][i].round(2).tolist(),
                "visibility": s.labels["visibility"][i].tolist(),
                "occlusion_fraction": None if np.isnan(frac[i]) else float(frac[i]),
            }
            for i in range(min(per_set, len(s)))
        ]
    return out


def failures(model, sets: dict[str, ArraySet], k: int = 4) -> list[dict]:
    """The ``k`` worst samples (3D EPE) of each of :data:`FAILURE_SETS`: ground truth and
    prediction (mm, root-relative, reference-bone scaled), visibility and image."""
    from handpose_lib.evaluate import align_3d, predict_dataset

    out = []
    for lv in FAILURE_SETS:
        s = sets[lv]
        p = predict_dataset(model, s, device="cpu")
        pred_mm = align_3d(p["pred3d"], p["gt3d"])
        gt_rel = p["gt3d"] - p["gt3d"][:, :1]
        err = np.linalg.norm(pred_mm - gt_rel, axis=-1).mean(-1)
        for i in np.argsort(-err)[:k]:
            out.append(
                {
                    "set": lv,
                    "scene": int(s.labels["scene"][i]),
                    "epe3d_mm": float(err[i]),
                    "gt3d": gt_rel[i].round(2).tolist(),
                    "pred3d": pred_mm[i].round(2).tolist(),
                    "gt2d": p["gt2d"][i].round(2).tolist(),
                    "pred2d": p["pred2d"][i].round(2).tolist(),
                    "visibility": p["visibility"][i].tolist(),
                    "jpg": jpg_b64(s.images[i]),
                }
            )
    return out


def real_photos(models: dict[str, torch.nn.Module]) -> list[dict]:
    """The library's real photos with a pasted occluder: 2D predictions with and without it."""
    from handpose_lib.data import HandCrop, real_hands_sample
    from handpose_lib.data.occlude import paste, random_occluder

    photos = real_hands_sample(crop=HandCrop(size=128))
    rows = []
    for i in range(len(photos)):
        ph = photos[i]
        if not torch.isfinite(ph["joints2d"]).all():
            continue
        rng = np.random.default_rng([OCCLUSION_TEST_SEED, REAL_PHOTO_STREAM, i])
        hidden = paste(ph, random_occluder(ph, rng, strength=0.6), rng)
        row = {"jpg": jpg_b64(to_uint8(hidden["image"])), "gt2d": ph["joints2d"].numpy().round(2).tolist()}
        row["visibility"] = hidden["visibility"].tolist()
        for name, m in models.items():
            row[name] = predict_image(m, hidden["image"]).joints2d.round(2).tolist()
            row[name + "_clean"] = predict_image(m, ph["image"]).joints2d.round(2).tolist()
        rows.append(row)
    return rows


def showcase(run_root: str | Path, sets: dict[str, ArraySet], k: int = 4) -> dict[str, Any]:
    """Chapter 8's material from the trained variants (a) and (b) in ``run_root``."""
    models = {v.name: load_trained(Path(run_root) / v.name)[0] for v in SHOWN_VARIANTS}
    clean = sets["0%"][0]
    return {
        "failures": failures(models[occ.A_FULL.name], sets, k),
        "sweep": {
            "gt2d": clean["joints2d"].numpy().round(2).tolist(),
            "frames": {name: sweep_frames(m, clean) for name, m in models.items()},
        },
        "real": real_photos(models),
        "examples": set_examples(sets),
    }


def write_showcase(profile: str = "quick") -> Path:
    """Write ``<profile's results folder>/showcase.json`` and return its path."""
    p = occ.study_profile(profile)
    run_root, results = occ.variant_paths(p.name)
    missing = [v.name for v in SHOWN_VARIANTS if not (run_root / v.name / LAST_FILE).is_file()]
    if missing:  # before building the test sets (minutes)
        raise FileNotFoundError(
            f"no trained {', '.join(missing)} in {run_root}; train them first: "
            f"handpose occlusion --ablate {','.join(missing)} --profile {p.name}"
        )
    sets = occ.cached_test_sets(p.test_n, 128)
    return atomic_write_json(results / SHOWCASE_FILE, showcase(run_root, sets))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="quick", help="quick | full (the ablations' profile)")
    a = ap.parse_args(argv)
    print(f"wrote {write_showcase(a.profile)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
