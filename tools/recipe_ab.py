"""Short A/B runs of training recipes on the cached procedural data (what limits the book model,
and which ingredient of the engine and the augmentation transfers to real photos).

    python tools/recipe_ab.py NAME --steps 400 [--set JSON] [--engine JSON] [--init-from CKPT] [--overfit N]
    python tools/recipe_ab.py NAME --steps 300 --ingredients baseline camera fda recrop [--set JSON]

Each run trains the book recipe (``book_model.book_recipe()``) changed by ``--set`` (a JSON object of
``TrainConfig`` fields, e.g. ``'{"loss": {"latent": 1.0}}'`` or
``'{"model_overrides": {"decoder_widths": [128, 64, 32, 16]}}'``) for ``--steps`` optimiser
steps of batch 32 with its own one-cycle schedule, into ``runs/ab/NAME``, and prints one
``RESULT`` line of JSON:

- default: the first ``steps x 32`` samples of the procedural training set (seed 0, as
  ``make model``; ``--engine`` changes ``SyntheticConfig`` fields of the training samples,
  e.g. ``'{"hand_model": "mesh"}'``), one epoch, then the validation metrics on the 512
  validation samples of the default engine (seed 1): 2D EPE (px), 3D EPE (mm), 3D AUC 20-50 mm,
  visible / hidden 2D EPE; and on the 16 shipped real photos (``TrainConfig.val_real``,
  ground-truth-box crops): PCK@0.2 of the box's longer side (overall and per source) and 2D EPE
  in the photos' pixels and in crop pixels;
- ``--init-from CKPT``: the same, starting from a checkpoint's weights (a second stage);
- ``--overfit N``: a capacity / optimisation check: ``steps x 32 / N`` epochs over the first
  ``N`` training samples without augmentation, then the 2D EPE **on those same samples**.

``--record FILE`` adds each run's result (with its command, date and machine) to a JSON file
of A/B results, replacing an earlier run of the same name; ``models/transfer_ab.json`` is the
record the data chapter's table of what transfers to real photos is made from.

``--ingredients A B ...`` runs one such training per ingredient (:data:`INGREDIENTS`: each is
the recipe changed in one way only, on top of ``--set``; ``baseline`` changes nothing) into
``runs/ab/NAME/<ingredient>``, one after the other, and prints a table of the real-photo and
procedural numbers. Short runs are noisy: a difference of a few PCK points on 16 photos (about
300 joints) after a few hundred steps is not yet an effect; repeat with another ``seed`` in
``--set`` before believing one.

The training samples are rendered on first use (sample ``i`` of a seed is the same whatever the
set's size, so the first ``steps x 32`` are those of ``make model``'s 30,000). Run one at a time
with one thread (``--set '{"threads": 1, "num_workers": 0}'``; ``taskset -c 0`` keeps it off the
other core); the numbers in ``models/README.md`` were measured this way. Deterministic: the same
command gives the same result on the same machine and torch build.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

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
    "val_real_pck_0.2",
    "val_real_pck_0.2_freihand",
    "val_real_pck_0.2_onehand10k",
    "val_real_pck_0.2_panoptic",
    "val_real_epe2d_image_px",
    "val_real_epe2d_px",
    "val_epe2d_px",
    "val_epe3d_mm",
    "val_auc3d_20_50",
    "val_visible_epe2d_px",
    "val_hidden_epe2d_px",
    "img_per_s",
)


# one ingredient each: TrainConfig changes ("set") or SyntheticConfig changes of the training
# samples ("engine"); compared with "baseline" (the recipe as it is)
INGREDIENTS: dict[str, dict] = {
    "baseline": {},
    "camera": {"set": {"camera": True}},
    "fda": {"set": {"fda": 0.5}},
    "recrop": {"set": {"recrop": True}},
    "mesh": {"engine": {"hand_model": "mesh"}},
}

TABLE = (  # (column, metrics key, digits)
    ("PCK@0.2", "val_real_pck_0.2", 3),
    ("FreiHAND", "val_real_pck_0.2_freihand", 3),
    ("OneHand10K", "val_real_pck_0.2_onehand10k", 3),
    ("Panoptic", "val_real_pck_0.2_panoptic", 3),
    ("EPE photo px", "val_real_epe2d_image_px", 1),
    ("EPE crop px", "val_real_epe2d_px", 1),
    ("proc. 2D EPE px", "val_epe2d_px", 2),
    ("proc. 3D EPE mm", "val_epe3d_mm", 1),
)


class RunStopped(RuntimeError):
    """A run that ``fit`` stopped before its last step (a signal): it has no result."""


def run_one(run_dir: Path, steps: int, changes: dict, engine: dict, init_from=None, overfit=None) -> dict:
    """Train one A/B run into ``run_dir``; its RESULT dict (:class:`RunStopped` if it was stopped)."""
    val_cache = cached_synthetic(512, VAL_SEED, SyntheticConfig(crop_size=128), progress=False)
    base = {**book_recipe().to_dict(), "ckpt_every_min": 1e6, "log_every": 50, "val_real": True}
    if overfit:
        n = overfit
        run = {"n_train": n, "epochs": max(1, steps * 32 // n), "augment": False}
    else:
        n = steps * 32
        run = {"n_train": n, "epochs": 1}
    if init_from:
        run["init_from"] = init_from
    cfg = TrainConfig.from_dict({**base, **run, **changes})
    data = cached_synthetic(cfg.n_train, TRAIN_SEED, SyntheticConfig(crop_size=128, **engine), progress=False)
    model = build_for_config(cfg)
    t0 = time.time()
    res = T.fit(model, data, None if overfit else val_cache, cfg, run_dir, progress=False)
    if not res.finished and res.stopped_by != "max_steps":  # max_steps ends a run as planned
        raise RunStopped(
            f"{run_dir.name}: stopped by {res.stopped_by or 'a signal'} at step {res.step} of {steps}; "
            f"nothing recorded (a short A/B run does not resume: delete {run_dir} and run it again)"
        )
    result: dict = {"steps": read_metrics(run_dir)[-1]["step"], "changes": changes}
    if engine:
        result["engine"] = engine
    if overfit:
        model.eval()
        errs = []
        with torch.inference_mode():
            for b in DataLoader(data, batch_size=64, collate_fn=collate):
                errs.append((model(b["image"]).coords2d - b["joints2d"]).norm(dim=-1).mean(-1))
        result["train_set_epe2d_px"] = round(torch.cat(errs).mean().item(), 3)
    else:
        m = read_metrics(run_dir)[-1]
        result.update({k: round(m[k], 3) for k in VAL_KEYS if m.get(k) is not None})
    result["wall_s"] = round(time.time() - t0)
    return result


def command_line(argv: list[str]) -> str:
    """The command that repeats a run, quoted for a shell (its JSON arguments too), without
    ``--record`` (where the result is kept is not part of what was trained)."""
    args, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--record":
            skip = True
        elif not arg.startswith("--record="):
            args.append(arg)
    return "python tools/recipe_ab.py " + shlex.join(args)


def record(path: Path, name: str, result: dict, command: str) -> None:
    """Add (or replace) run ``name``'s ``result`` in the JSON record ``path``
    (``{"runs": [{"name", "command", "date", "machine", **result}, ...]}``)."""
    import platform
    from datetime import date

    runs = json.loads(path.read_text())["runs"] if path.is_file() else []
    entry = {
        "name": name,
        "command": command,
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}",
        **result,
    }
    runs = [r for r in runs if r["name"] != name] + [entry]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"runs": runs}, indent=1) + "\n")


def table(results: dict[str, dict]) -> str:
    """A markdown table of the ingredients' results, differences to ``baseline`` in brackets."""
    base = results.get("baseline", {})
    lines = ["| ingredient | " + " | ".join(c for c, _, _ in TABLE) + " | wall s |"]
    lines.append("|---" * (len(TABLE) + 2) + "|")
    for name, r in results.items():
        cells = []
        for _, key, digits in TABLE:
            v = r.get(key)
            cell = "-" if v is None else f"{v:.{digits}f}"
            if v is not None and name != "baseline" and base.get(key) is not None:
                cell += f" ({v - base[key]:+.{digits}f})"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r.get('wall_s', '-')} |")
    return "\n".join(lines)


def _json_object(ap, text: str, flag: str) -> dict:
    try:
        d = json.loads(text)
    except ValueError as e:
        ap.error(f"{flag}: not valid JSON ({e})")
    if not isinstance(d, dict):
        ap.error(f"{flag}: expected a JSON object of fields")
    return d


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", help="run name (folder runs/ab/NAME, must not exist)")
    ap.add_argument("--steps", type=int, default=400, help="optimiser steps of batch 32")
    ap.add_argument("--set", default="{}", help="JSON object of TrainConfig fields to change")
    ap.add_argument("--engine", default="{}", help="JSON object of SyntheticConfig fields (training samples)")
    ap.add_argument("--init-from", default=None, help="start from this checkpoint's weights")
    ap.add_argument("--overfit", type=int, default=None, metavar="N", help="fit the first N samples")
    ap.add_argument(
        "--ingredients",
        nargs="+",
        choices=list(INGREDIENTS),
        default=None,
        help="one run per ingredient, a table",
    )
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "ab")
    ap.add_argument("--record", type=Path, default=None, help="add the results to this JSON record")
    a = ap.parse_args(argv)
    try:
        return _run(ap, a, argv)
    except RunStopped as e:
        print(f"recipe_ab: {e}", file=sys.stderr, flush=True)
        return 1


def _run(ap: argparse.ArgumentParser, a: argparse.Namespace, argv) -> int:
    """main's work once the arguments are parsed (results are printed and recorded run by run)."""
    changes = _json_object(ap, a.set, "--set")
    engine = _json_object(ap, a.engine, "--engine")
    command = command_line(argv if argv is not None else sys.argv[1:])
    if not a.ingredients:
        result = run_one(a.out / a.name, a.steps, changes, engine, a.init_from, a.overfit)
        print("RESULT", a.name, json.dumps(result), flush=True)
        if a.record:
            record(a.record, a.name, result, command)
        return 0
    results = {}
    for ing in a.ingredients:
        spec = INGREDIENTS[ing]
        r = run_one(
            a.out / a.name / ing,
            a.steps,
            {**changes, **spec.get("set", {})},
            {**engine, **spec.get("engine", {})},
            a.init_from,
        )
        results[ing] = r
        print("RESULT", f"{a.name}/{ing}", json.dumps(r), flush=True)
        if a.record:
            record(a.record, f"{a.name}/{ing}", r, command)
    print(f"\n{a.steps} steps of batch 32 each, real photos: 16 shipped photos, GT-box crops\n")
    print(table(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
