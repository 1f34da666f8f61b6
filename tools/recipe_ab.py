"""Short A/B runs of training recipes on the cached procedural data (what limits the book model).

    python tools/recipe_ab.py NAME --steps 400 [--set JSON] [--init-from CKPT] [--overfit N]

Each run trains the book recipe (``book_model.book_recipe()``) changed by ``--set`` (a JSON object of
``TrainConfig`` fields, e.g. ``'{"loss": {"latent": 1.0}}'`` or
``'{"model_overrides": {"decoder_widths": [128, 64, 32, 16]}}'``) for ``--steps`` optimiser
steps of batch 32 with its own one-cycle schedule, into ``runs/ab/NAME``, and prints one
``RESULT`` line of JSON:

- default: the first ``steps x 32`` samples of the 30,000-sample training cache (seed 0, as
  ``make model``), one epoch, then the validation metrics on the 512 validation samples
  (seed 1): 2D EPE (px), 3D EPE (mm), 3D AUC 20-50 mm, visible / hidden 2D EPE;
- ``--init-from CKPT``: the same, starting from a checkpoint's weights (a second stage);
- ``--overfit N``: a capacity / optimisation check: ``steps x 32 / N`` epochs over the first
  ``N`` training samples without augmentation, then the 2D EPE **on those same samples**.

The caches are rendered on first use (about 5 minutes on 2 cores for the 30,000 samples). Run
one at a time with one thread (``taskset -c 0`` keeps it off the other core); the numbers in
``models/README.md`` were measured this way. Deterministic: the same command gives the same
result on the same machine and torch build.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from handpose_lib import train as T  # noqa: E402
from handpose_lib.book_model import book_recipe  # noqa: E402
from handpose_lib.checkpoint import read_metrics  # noqa: E402
from handpose_lib.config import TrainConfig, build_for_config  # noqa: E402
from handpose_lib.data.cached import TRAIN_SEED, VAL_SEED  # noqa: E402
from handpose_lib.data.rendered import cached_synthetic  # noqa: E402
from handpose_lib.data.sample import collate  # noqa: E402
from handpose_lib.data.synthetic import SyntheticConfig  # noqa: E402

VAL_KEYS = (
    "val_epe2d_px",
    "val_epe3d_mm",
    "val_auc3d_20_50",
    "val_visible_epe2d_px",
    "val_hidden_epe2d_px",
    "img_per_s",
)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", help="run name (folder runs/ab/NAME, must not exist)")
    ap.add_argument("--steps", type=int, default=400, help="optimiser steps of batch 32")
    ap.add_argument("--set", default="{}", help="JSON object of TrainConfig fields to change")
    ap.add_argument("--init-from", default=None, help="start from this checkpoint's weights")
    ap.add_argument("--overfit", type=int, default=None, metavar="N", help="fit the first N samples")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "ab")
    a = ap.parse_args(argv)
    try:
        changes = json.loads(a.set)
    except ValueError as e:
        ap.error(f"--set: not valid JSON ({e})")
    if not isinstance(changes, dict):
        ap.error("--set: expected a JSON object of TrainConfig fields")

    sc = SyntheticConfig(crop_size=128)
    train_cache = cached_synthetic(30_000, TRAIN_SEED, sc, progress=False)
    val_cache = cached_synthetic(512, VAL_SEED, sc, progress=False)
    base = {**book_recipe().to_dict(), "ckpt_every_min": 1e6, "log_every": 50}
    if a.overfit:
        n = a.overfit
        run = {"n_train": n, "epochs": max(1, a.steps * 32 // n), "augment": False}
    else:
        n = a.steps * 32
        run = {"n_train": n, "epochs": 1}
    if a.init_from:
        run["init_from"] = a.init_from
    cfg = TrainConfig.from_dict({**base, **run, **changes})
    data = Subset(train_cache, range(cfg.n_train))
    model = build_for_config(cfg)
    t0 = time.time()
    T.fit(model, data, None if a.overfit else val_cache, cfg, a.out / a.name, progress=False)
    result: dict = {"steps": read_metrics(a.out / a.name)[-1]["step"], "changes": changes}
    if a.overfit:
        model.eval()
        errs = []
        with torch.inference_mode():
            for b in DataLoader(data, batch_size=64, collate_fn=collate):
                errs.append((model(b["image"]).coords2d - b["joints2d"]).norm(dim=-1).mean(-1))
        result["train_set_epe2d_px"] = round(torch.cat(errs).mean().item(), 3)
    else:
        m = read_metrics(a.out / a.name)[-1]
        result.update({k: round(m[k], 3) for k in VAL_KEYS if k in m})
    result["wall_s"] = round(time.time() - t0)
    print("RESULT", a.name, json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
