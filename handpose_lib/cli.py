"""The ``handpose`` command line: train, eval, predict, export, render, data check,
occlusion, book-model. Every subcommand's parser and handler is here; the handlers
call the library.

Every sub-command has ``--help`` with an example. Heavy modules (torch models, data sets) are
imported inside the sub-commands, so ``handpose --help`` stays fast. Expected problems (a
missing checkpoint, a wrong config, an unreadable image, a missing data set) print one
``handpose: error: ...`` line and exit with status 2, as does a file that cannot be read or
written (``OSError``); ``--debug`` (anywhere on the line) or ``HANDPOSE_DEBUG=1`` shows the
traceback instead. A NaN loss exits with 3; a run stopped by Ctrl-C/SIGTERM saves a checkpoint
and exits with 130; a batch command (predict, eval) whose inputs were partly unreadable does the
rest and exits with 1.

Layer 5: imports everything below it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

EXIT_USAGE = 2
EXIT_NAN = 3
EXIT_STOPPED = 130


class CLIError(Exception):
    """An expected problem with the user's input; printed without a traceback."""


def _fmt(text: str) -> str:
    return text.strip("\n")


def _number(text: str, kind, ok, want: str):
    try:
        v = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {want}, got {text!r}") from None
    if not ok(v):
        raise argparse.ArgumentTypeError(f"expected {want}, got {text}")
    return v


def _positive_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 1, "an integer >= 1")


def _non_negative_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 0, "an integer >= 0")


def _positive_float(text: str) -> float:
    import math

    return _number(text, float, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")


# ----------------------------------------------------------------------------------------
# handpose train


TRAIN_HELP = """
examples:
  handpose train --recipe tiny --data synthetic --out runs/x            # minutes on a laptop CPU
  handpose train --recipe tiny --data synthetic --out runs/x --resume   # continue after Ctrl-C
  handpose train --recipe paper --data synthetic --out runs/paper       # the paper's model, one GPU
  handpose train --recipe my.yaml --data stb --data-root ~/data/STB --out runs/stb
  handpose train --recipe tiny --data stb --data-root ~/data/STB --init-from models/book-tiny --out runs/ft
  torchrun --nproc_per_node 4 -m handpose_lib.cli train --recipe paper --data synthetic --out runs/p

Ctrl-C (or SIGTERM) saves a checkpoint and stops; --resume continues exactly where it stopped,
with the settings the run started with (another --epochs or --lr is refused; to train a finished
run longer, start a new run from its weights: --init-from RUN_DIR --out NEW_DIR).
A recipe is a named one (tiny, paper) or a YAML file of TrainConfig fields, optionally on top
of a named one (base: tiny); the flags below override single fields.
RUN_DIR receives checkpoints/ (safetensors + JSON), last.json, best.json (the epoch with the
lowest validation 3D EPE; handpose eval --which best), metrics.jsonl and config.json.
"""


def _add_train(sub):
    p = sub.add_parser(
        "train",
        help="train a model (tiny or paper recipe) into a run folder",
        description="Train a ResUnet; writes checkpoints and per-epoch metrics into --out.",
        epilog=_fmt(TRAIN_HELP),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--recipe", default="tiny", help="tiny | paper | a YAML file of TrainConfig fields")
    p.add_argument("--config", dest="recipe", default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # old name
    p.add_argument(
        "--data", default="synthetic", help="synthetic | stb | ganerated | synthhands | rhd | freihand"
    )
    p.add_argument("--data-root", default=None, help="folder of a real data set (not for synthetic)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (created)")
    p.add_argument("--epochs", type=int, default=None, help="number of epochs (overrides the recipe)")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in RUN_DIR exactly where it stopped"
    )
    p.add_argument("--batch-size", type=int, default=None, help="per process")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate")
    p.add_argument("--n-train", type=int, default=None, help="procedural training samples")
    p.add_argument("--n-val", type=int, default=None, help="procedural validation samples")
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:1 | mps")
    p.add_argument(
        "--amp",
        default=None,
        choices=["auto", "bf16", "fp16", "off", "measure"],
        help="mixed precision (measure: on a CPU, time float32 and bf16 first and train with the faster)",
    )
    p.add_argument("--workers", type=int, default=None, help="DataLoader worker processes")
    p.add_argument("--max-steps", type=int, default=None, help="stop (with a checkpoint) after this step")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument(
        "--init-from",
        default=None,
        metavar="CHECKPOINT",
        help="start from this run's or checkpoint's weights (fine-tune / second stage)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    p.set_defaults(func=cmd_train)


def _train_config(a):
    from .config import load_config

    overrides = {
        k: v
        for k, v in {
            "epochs": a.epochs,
            "batch_size": a.batch_size,
            "lr": a.lr,
            "n_train": a.n_train,
            "n_val": a.n_val,
            "device": a.device,
            "amp": a.amp,
            "num_workers": a.workers,
            "max_steps": a.max_steps,
            "seed": a.seed,
            "data": a.data,
            "data_root": a.data_root,
            "init_from": a.init_from,
        }.items()
        if v is not None
    }
    return load_config(a.recipe, **overrides)


def cmd_train(a) -> int:
    from . import train as tr
    from .book_model import git_commit
    from .config import REAL_DATASETS

    cfg = _train_config(a)
    if cfg.data != "synthetic" and cfg.data not in REAL_DATASETS:
        raise CLIError(
            f"--data: unknown data set {cfg.data!r}; choose synthetic or one of {sorted(REAL_DATASETS)}"
        )
    prov = {
        "command": "handpose " + " ".join(shlex.quote(x) for x in a.argv),
        "commit": git_commit(),
    }
    t0 = time.time()
    res = tr.train(cfg, a.out, resume=a.resume, progress=not a.no_progress, extra_meta={"provenance": prov})
    if not res.finished:
        args = [x for x in a.argv if x not in ("--resume",)]
        i = args.index("--max-steps") if "--max-steps" in args else -1
        if i >= 0:  # the resumed run should go to the end
            del args[i : i + 2]
        again = "handpose " + " ".join(shlex.quote(str(x)) for x in args) + " --resume"
        print(f"stopped at step {res.step} ({res.stopped_by}); checkpoint: {res.checkpoint}")
        print(f"resume with: {again}")
        return EXIT_STOPPED if res.stopped_by in ("SIGINT", "SIGTERM") else 0
    last = res.history[-1] if res.history else {}
    shown = {k: round(v, 4) for k, v in last.items() if k.startswith("val_") and isinstance(v, float)}
    print(f"done: {res.step} steps in {time.time() - t0:.0f} s; checkpoint {res.checkpoint}; {shown}")
    return 0


# ----------------------------------------------------------------------------------------
# handpose eval


EVAL_HELP = """
examples:
  handpose eval --checkpoint runs/x                                   # the procedural test set
  handpose eval --checkpoint models/book-tiny --json book.json --figures figs/
  handpose eval --checkpoint runs/stb --data stb --data-root ~/data/STB --alignment hand3d
  handpose eval --checkpoint runs/x --data real-hands     # 2D EPE on the 16 shipped real photos

The procedural test set: 2000 samples of the synthetic engine (default occluders) with a fixed
seed; its name includes the generator version, so numbers from different versions are never mixed.
3D metrics are root-relative and scale-aligned by the reference bone (the report states how).
"""


def _add_eval(sub):
    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint: 2D/3D EPE, PCK, AUC, visible vs hidden",
        description="Evaluate a trained model on a data set and print/write the report.",
        epilog=_fmt(EVAL_HELP),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="run folder, checkpoint folder or model.safetensors")
    p.add_argument(
        "--which",
        default="last",
        choices=["last", "best"],
        help="checkpoint of a run folder: the last, or the best (lowest validation 3D EPE, best.json)",
    )
    p.add_argument(
        "--data",
        default="synthetic",
        help="synthetic (the test set) | real-hands (the 16 photos) | stb | rhd | ...",
    )
    p.add_argument("--data-root", default=None, help="folder of a real data set")
    p.add_argument(
        "--hand-model",
        default="mesh",
        choices=["mesh", "capsule"],
        help="--data synthetic: engine v2's mesh hands, both sides (the test set), or engine v1's "
        "capsule hands (right hands; the test set of models v1-v3)",
    )
    p.add_argument(
        "--n", type=_positive_int, default=None, help="number of samples (default: all / 2000 for synthetic)"
    )
    p.add_argument("--alignment", default="gt_ref", choices=["gt_ref", "hand3d"], help="3D scale alignment")
    p.add_argument("--json", default=None, metavar="OUT.json", help="write the full report here")
    p.add_argument("--figures", default=None, metavar="DIR", help="write PCK figures (HTML) here")
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json report or figures")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=_non_negative_int, default=0)
    p.set_defaults(func=cmd_eval)


def cmd_eval(a) -> int:
    from . import evaluate as ev
    from .config import REAL_DATASETS, real_dataset
    from .data.rendered import TEST_N, test_set
    from .device import pick_device
    from .inference import load_trained

    if a.data not in ("synthetic", "real-hands", *REAL_DATASETS):
        raise CLIError(
            f"--data: unknown data set {a.data!r}; choose synthetic, real-hands or one of "
            f"{sorted(REAL_DATASETS)}"
        )
    for flag, path in (("--json", a.json), ("--figures", a.figures)):
        if path and Path(path).is_dir() == (flag == "--json") and Path(path).exists():
            want = "a file path" if flag == "--json" else "a folder path"
            raise CLIError(f"{flag} {path}: expected {want}")
    if a.json:
        _refuse_to_replace([Path(a.json)], a.overwrite, "--json")
    if a.figures:
        _refuse_to_replace([Path(a.figures) / f for f in FIGURE_FILES], a.overwrite, "--figures")
    model, c = load_trained(a.checkpoint, which=a.which, device=str(pick_device(a.device)))
    size = model.config.input_size
    if a.data == "synthetic":
        data, name = test_set(n=a.n or TEST_N, image_size=size, hand_model=a.hand_model)
    elif a.data == "real-hands":  # the 16 shipped photos: 2D labels only, cropped around them
        from .data import real_hands_sample
        from .data.crop import HandCrop

        data, name = real_hands_sample(crop=HandCrop(size=size)), "real-hands (16 photos, 2D only)"
    else:
        if a.data_root is None:
            raise CLIError(f"--data {a.data} needs --data-root (the data set's folder)")
        data, name = real_dataset(a.data, a.data_root, "test", size), a.data
        if a.n:
            import torch

            data = torch.utils.data.Subset(data, range(min(a.n, len(data))))
    rep = ev.evaluate(
        model,
        data,
        alignment=a.alignment,
        dataset=name,
        batch_size=a.batch_size,
        device=a.device,
        num_workers=a.workers,
        progress=sys.stderr.isatty(),
    )
    rep["checkpoint"] = {"path": str(c.path), "step": c.step, "epoch": c.epoch}
    print(ev.summary(rep))
    if a.json:
        print(f"report: {ev.write_report(rep, a.json)}")
    if a.figures:
        from .viz import write_figures

        for p in write_figures(rep, a.figures):
            print(f"figure: {p}")
    skipped = rep["samples"]["skipped"]
    if skipped:
        print(f"handpose: {skipped} unreadable samples were skipped (listed in the report)", file=sys.stderr)
        return 1
    return 0


# ----------------------------------------------------------------------------------------
# handpose predict


PREDICT_HELP = """
examples:
  handpose predict --checkpoint models/book-tiny handpose_lib/assets/real_hands/onehand10k/ --out pred/
  handpose predict --checkpoint models/book-tiny --no-detector photo.jpg --out pred/
  handpose predict --checkpoint runs/x photo.jpg --box 120 80 360 330 --out pred/

By default every input goes through the pipeline below: the shipped detector finds the hands.
With --no-detector or --box (and none of the pipeline's other options), each image is cropped to
one square and resized to the model's input (128x128): around --box
(the hand's box X0 Y0 X1 Y1 in pixels, enlarged by 20% on each side like the training crops),
or, without --box, the largest centred square. Writes IMAGE_pred.png (the 2D skeleton drawn on
the photo; IMAGE-2_pred.png ... where two images share a name) and predictions.json (2D joints
in photo pixels; 3D joints root-relative in units of the reference bone and in mm for an assumed
hand size, --ref-bone-mm). Files already in DIR are never replaced without --overwrite. An image
that cannot be read or written is reported and skipped; the exit status is then 1.

Every hand, photos and videos (handpose_lib.pipeline), the default:
  handpose predict --checkpoint models/book-tiny photos/ clip.mp4 --out pred/
  handpose predict --checkpoint models/book-tiny hand.jpg --box 120 80 360 330 --side left --fov 70 --out p/

Without --box, each input goes through the pipeline: the hand detector (--detector DIR; by
default the repository's models/detector) finds every hand (box, score). Its best boxes are
checked by the pose model: the detector folder's verifier.json (python -m handpose_lib.verify)
keeps those whose detector score and pose confidence say hand (--no-verifier: every detection
above the threshold). Left or right: a model trained on both hands (book models v4 and v5) is
shown the crop as it is and the side is read off its own 3D (its chirality); for a model trained
on right hands only, the detector's side is used and left hands are mirrored into the model and
back (as every hand of --side left is). 3D comes also in the camera frame (root depth from the 2D
and the relative 3D with a --ref-bone-mm hand-size prior and the camera: --K FX FY CX CY, or
--fov, horizontal degrees, default 65 for phones and webcams). --box and --side override the
detector. Writes NAME_pred.png (or NAME_pred.mp4 for a video: the previous frame's hand gives the
next box, One-Euro smoothing, frames/s printed) and NAME_hands.json (per hand: box, side, score,
pose confidence, 2D px, 3D root-relative mm, 3D camera mm). An image without a hand says so and
is not an error: give its --box, or --no-detector for the centred square. Folders give their
images and videos.

The shipped detector is trained on procedural frames only. On the shipped photos the whole
pipeline beats the centred square (PCK@0.2 0.340 against 0.276, hands found 9 against 2 of 16),
but it still misses 7 of their 16 hands and its own left/right is at chance
(benchmarks/results/pipeline.json, models/detector/README.md). --no-detector (or a --box) without
the pipeline's other options gives the single-crop output above (predictions.json).
"""


def _add_predict(sub):
    p = sub.add_parser(
        "predict",
        help="predict 2D/3D joints on photos; writes overlay PNGs and a JSON",
        description="Run a trained model on images.",
        epilog=_fmt(PREDICT_HELP),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="run folder, checkpoint folder or model.safetensors")
    p.add_argument(
        "images",
        nargs="+",
        metavar="INPUT",
        help="image files (png, jpg, ...); videos and folders (pipeline)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--box", type=float, nargs=4, metavar=("X0", "Y0", "X1", "Y1"), help="hand box (all images)"
    )
    p.add_argument("--margin", type=float, default=0.2, help="space added around --box, per side")
    p.add_argument(
        "--ref-bone-mm", type=_positive_float, default=None, help="assumed middle MCP->PIP length (mm)"
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--overwrite", action="store_true", help="replace earlier outputs in --out")
    det = p.add_mutually_exclusive_group()
    det.add_argument(
        "--detector", metavar="DIR", help="hand detector folder (default: the shipped models/detector)"
    )
    det.add_argument(
        "--no-detector",
        action="store_true",
        help="no detector: one hand in the largest centred square (or --box)",
    )
    p.add_argument(
        "--no-verifier",
        action="store_true",
        help="keep every detection above the detector's threshold (no check by the pose model)",
    )
    p.add_argument(
        "--side", choices=("left", "right"), help="the hands' side (pipeline; overrides the detector)"
    )
    cam = p.add_mutually_exclusive_group()
    cam.add_argument(
        "--K",
        type=float,
        nargs=4,
        metavar=("FX", "FY", "CX", "CY"),
        help="camera intrinsics in pixels (pipeline)",
    )
    cam.add_argument(
        "--fov", type=_positive_float, help="horizontal field of view, degrees (pipeline; default 65)"
    )
    p.set_defaults(func=cmd_predict)


def _refuse_to_replace(paths: list[Path], overwrite: bool, flag: str) -> None:
    """Stop before any work when an output would replace an existing file (unless --overwrite)."""
    there = [str(p) for p in paths if p.exists()]
    if there and not overwrite:
        raise CLIError(
            f"{flag}: {', '.join(there[:3])} already exists; nothing was written. "
            "Choose another path or pass --overwrite to replace it"
        )


# what viz.write_figures writes into eval's --figures folder
FIGURE_FILES = ("pck3d.html", "pck2d.html", "epe3d_per_joint.html", "plotly.min.js")


def _overlay_names(images: list[str]) -> list[str]:
    """``STEM_pred.png`` per image, ``STEM-2_pred.png``... where stems repeat (a/x.jpg, b/x.jpg)."""
    seen: dict[str, int] = {}
    names = []
    for path in images:
        stem = Path(path).stem
        seen[stem] = seen.get(stem, 0) + 1
        names.append(f"{stem}_pred.png" if seen[stem] == 1 else f"{stem}-{seen[stem]}_pred.png")
    return names


def _output_dir(path: str, files: list[str], overwrite: bool) -> Path:
    """``--out`` as a folder to write ``files`` into, refusing to replace what is there."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} is a file, not a folder; choose a folder path")
    there = [f for f in files if (out / f).exists()]
    if there and not overwrite:
        raise CLIError(
            f"--out {out} already holds {', '.join(there[:3])}{' ...' if len(there) > 3 else ''}; "
            "nothing was written. Choose another folder or pass --overwrite to replace them"
        )
    out.mkdir(parents=True, exist_ok=True)
    return out


def _detector_dir(a) -> str | None:
    """The detector ``predict`` uses: ``--detector``, else the shipped one unless ``--no-detector``
    or ``--box`` (a box needs none) says otherwise; ``None`` where the shipped one is missing (a
    note says so and the centred square is used)."""
    from .checkpoint import SIDECAR_FILE
    from .detect import SHIPPED_DETECTOR_DIR

    if a.detector or a.no_detector or a.box is not None:
        return a.detector
    if (SHIPPED_DETECTOR_DIR / SIDECAR_FILE).is_file():
        return str(SHIPPED_DETECTOR_DIR)
    print(
        f"handpose: no hand detector at {SHIPPED_DETECTOR_DIR} (run `make detector` or pass --detector DIR); "
        "using the largest centred square",
        file=sys.stderr,
    )
    return None


def _uses_pipeline(a) -> bool:
    from .pipeline import VIDEO_SUFFIXES

    flags = a.detector or a.side or a.K or a.fov
    return bool(flags) or any(Path(x).is_dir() or Path(x).suffix.lower() in VIDEO_SUFFIXES for x in a.images)


def cmd_predict_pipeline(a) -> int:
    """``handpose predict`` through :mod:`handpose_lib.pipeline` (every hand, videos, camera 3D)."""
    from . import skeleton
    from .checkpoint import CheckpointError
    from .device import pick_device
    from .pipeline import DEFAULT_FOV_DEG, load_pipeline, predict_files

    if a.margin <= -0.5:
        raise CLIError(f"--margin must be > -0.5 (a crop of positive size), got {a.margin}")
    if a.fov is not None and not a.fov < 179:
        raise CLIError(f"--fov must be below 179 degrees, got {a.fov}")
    device = str(pick_device(a.device))
    det = None
    if a.detector:
        from .detect import load_detector

        try:
            det = load_detector(a.detector, device=device)
        except CheckpointError as e:
            raise CLIError(f"--detector: {e}") from e
    K = None
    if a.K:
        fx, fy, cx, cy = a.K
        K = [[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]
    pipe = load_pipeline(
        a.checkpoint,
        det,
        device=device,
        K=K,
        fov=a.fov or DEFAULT_FOV_DEG,
        ref_bone_mm=a.ref_bone_mm or skeleton.MEAN_REFERENCE_BONE_MM,
        margin=a.margin,
        verifier=None if a.no_verifier else "auto",
    )
    try:
        res = predict_files(pipe, a.images, a.out, box=a.box, side=a.side, overwrite=a.overwrite)
    except FileExistsError as e:
        raise CLIError(f"--out: {e}. Choose another folder or pass --overwrite to replace them") from e
    if res["errors"]:
        n = len(res["errors"]) + len(res["inputs"])
        print(f"handpose: {len(res['errors'])} of {n} inputs failed (listed above)", file=sys.stderr)
        for e in res["errors"]:
            print(f"handpose: skipped {e['input']}: {e['error']}", file=sys.stderr)
        return 1
    return 0


def cmd_predict(a) -> int:
    a.detector = _detector_dir(a)
    if _uses_pipeline(a):
        return cmd_predict_pipeline(a)
    from . import skeleton
    from .checkpoint import atomic_write_json
    from .data.common import read_rgb
    from .device import pick_device
    from .inference import load_trained, predict_image

    names = _overlay_names(a.images)
    out_dir = _output_dir(a.out, [*names, "predictions.json"], a.overwrite)
    model, c = load_trained(a.checkpoint, device=str(pick_device(a.device)))
    ref_mm = a.ref_bone_mm or skeleton.MEAN_REFERENCE_BONE_MM
    rows, failed = [], []
    for path, name in zip(a.images, names):
        try:
            img = read_rgb(path, verify=True)
        except (FileNotFoundError, OSError) as e:
            failed.append({"image": str(path), "error": f"cannot read: {e}"})
            print(f"handpose: skipping {path}: cannot read it ({e})", file=sys.stderr)
            continue
        try:
            pred = predict_image(model, img, a.box, a.margin)
        except ValueError as e:  # a --box or --margin that crops nothing
            raise CLIError(f"--{e}") from e
        try:
            png = _write_overlay(img, pred, out_dir / name)
        except OSError as e:
            failed.append({"image": str(path), "error": f"cannot write {out_dir / name}: {e}"})
            print(f"handpose: skipping {path}: cannot write {out_dir / name} ({e})", file=sys.stderr)
            continue
        rows.append(_prediction_row(path, png, pred, ref_mm))
        print(f"{path} -> {png}")
    info = {
        "checkpoint": str(c.path),
        "joint_names": list(skeleton.JOINT_NAMES),
        "units": {
            "joints2d_px": "pixels of the input photo (continuous, pixel centres at i + 0.5)",
            "joints3d_units": "root-relative (wrist = 0), in units of the middle MCP->PIP bone",
            "joints3d_mm": f"joints3d_units x {ref_mm} mm (an assumed reference bone length; "
            "one RGB image does not give the hand's absolute size)",
        },
        "predictions": rows,
        "failed": failed,
    }
    print(f"predictions: {atomic_write_json(out_dir / 'predictions.json', info)}")
    if failed:
        print(
            f"handpose: {len(failed)} of {len(a.images)} images failed (listed in predictions.json)",
            file=sys.stderr,
        )
        return 1
    return 0


def _write_overlay(img, pred, png: Path) -> Path:
    """The 2D skeleton and the crop's square drawn on the photo (enlarged to about 512 px)."""
    import cv2

    from .checkpoint import atomic_write_bytes
    from .viz import overlay_2d

    longest = max(img.shape[:2])
    scale = max(1, round(512 / longest))
    over = overlay_2d(
        img,
        pred.joints2d,
        scale=scale,
        radius=max(2, round(longest * scale / 150)),
        thickness=max(1, round(longest * scale / 300)),
    )
    x0, y0, side = (pred.crop[k] * scale for k in ("x0", "y0", "side"))
    cv2.rectangle(over, (round(x0), round(y0)), (round(x0 + side), round(y0 + side)), (255, 255, 255), 1)
    ok, data = cv2.imencode(".png", cv2.cvtColor(over, cv2.COLOR_RGB2BGR))
    if not ok:  # cv2.imwrite only returns False: an unwritable path must be an error
        raise OSError(f"OpenCV could not encode the overlay for {png}")
    atomic_write_bytes(png, data.tobytes())
    return png


def _prediction_row(path, png: Path, pred, ref_mm: float) -> dict:
    """One image's entry of predictions.json."""
    import numpy as np

    from .skeleton import denormalise_3d

    return {
        "image": str(path),
        "overlay": str(png),
        "crop": pred.crop,
        "joints2d_px": np.round(pred.joints2d, 2).tolist(),
        "joints3d_units": np.round(pred.joints3d, 4).tolist(),
        "joints3d_mm": np.round(denormalise_3d(pred.joints3d, ref_mm), 2).tolist(),
    }


# ----------------------------------------------------------------------------------------
# handpose export


EXPORT_HELP = """
example:
  handpose export --checkpoint models/book-tiny --onnx book-tiny.onnx

The ONNX graph takes images (B, 3, 128, 128) float32 in [0, 1] and returns coords2d, joints3d,
bones, heatmaps, probs. The export is checked with onnxruntime against PyTorch (--no-check skips).
"""


def _add_export(sub):
    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX (checked with onnxruntime)",
        description="Export a trained model to ONNX.",
        epilog=_fmt(EXPORT_HELP),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="run folder, checkpoint folder or model.safetensors")
    p.add_argument("--onnx", required=True, metavar="MODEL.onnx", help="output file")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    p.add_argument("--overwrite", action="store_true", help="replace an existing MODEL.onnx")
    p.set_defaults(func=cmd_export)


def cmd_export(a) -> int:
    from .inference import export_onnx, load_trained, onnx_max_diff

    out = Path(a.onnx)
    _refuse_to_replace([out], a.overwrite, "--onnx")
    model, _ = load_trained(a.checkpoint, device="cpu")
    out.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(model, out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    if not a.no_check:
        d = onnx_max_diff(model, out)
        d2, d3 = d["coords2d"], d["joints3d"]
        print(f"onnxruntime vs PyTorch: max |coords2d| diff {d2:.2e} px, max |joints3d| diff {d3:.2e}")
        if d2 > 1e-2 or d3 > 1e-3:
            raise CLIError(f"the ONNX model disagrees with PyTorch (coords2d {d2:.3g} px, joints3d {d3:.3g})")
    return 0


# ----------------------------------------------------------------------------------------
# handpose book-model


BOOK_HELP = """
example:
  make model          # = python -m handpose_lib.cli book-model

Trains book model v5: stage 3 (12,000 steps, runs/book-tiny-v5-stage3) from book model v4's
committed package (models/book-tiny-v4: the tiny config trained on engine v2's mesh hands in two
stages, 15,000 steps; book_model.book_v4_stages() re-trains those), resuming a stopped run and
reusing a finished one; evaluates the result on the procedural test set, and writes
models/book-tiny/ (fp16 safetensors and a JSON sidecar with the command, commit, budget, metrics
and the package it started from).
"""


def _add_book(sub):
    p = sub.add_parser(
        "book-model",
        help="train (or reuse) and package the book model in models/book-tiny",
        description="Build the book's model checkpoint.",
        epilog=_fmt(BOOK_HELP),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--stage3", default=None, help="stage 3's run folder (default runs/book-tiny-v5-stage3)")
    p.add_argument("--out", default=None, help="package folder (default models/book-tiny)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_book_model)


def cmd_book_model(a) -> int:
    from . import book_model

    out = Path(a.out) if a.out else book_model.BOOK_MODEL_DIR
    report = book_model.build_book_model(out, (a.stage3,), progress=not a.no_progress)
    print(report)
    return 0


# ----------------------------------------------------------------------------------------
# handpose render


RENDER_HELP = """
example:
  handpose render --out data/synth-val --n 2000 --seed 1 --occlusion heavy

Writes samples 0..N-1 of the procedural engine (seed --seed) into OUT: images/*.png, depth/*.png
(16-bit), labels.safetensors and meta.json, the exchange format that DiskHands reads back.
OUT must be new or empty; --overwrite replaces a data set rendered there before (and nothing else).
"""


def _occlusion_level(text: str):
    """``--occlusion``: a named level of the engine or a number in [0, 1]."""
    from .data.synthetic import OCCLUSION_LEVELS

    if text in OCCLUSION_LEVELS:
        return text
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"use a number in [0, 1] or one of {list(OCCLUSION_LEVELS)}"
        ) from None
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError("occlusion level must be in [0, 1]")
    return v


def _add_render(sub):
    p = sub.add_parser(
        "render",
        help="render procedural hand images and labels to disk",
        description="Render a procedural hand data set to disk.",
        epilog=_fmt(RENDER_HELP),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--n", type=int, required=True, help="number of samples")
    p.add_argument("--seed", type=int, default=0, help="data set seed (use different seeds for splits)")
    p.add_argument(
        "--occlusion",
        type=_occlusion_level,
        default="default",
        help="level in [0,1] or none/light/default/heavy",
    )
    p.add_argument("--left-prob", type=float, default=0.0, help="probability of a (mirrored) left hand")
    p.add_argument("--size", type=int, default=128, help="crop size (multiple of 8)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true", help="replace a data set rendered into --out before")
    p.set_defaults(func=cmd_render)


def cmd_render(a) -> int:
    from .data.synthetic import SyntheticConfig, render_to_disk

    if a.n < 0:
        raise CLIError("--n must be >= 0")
    if a.size % 8:
        raise CLIError("--size must be a multiple of 8")
    cfg = SyntheticConfig(crop_size=a.size, occlusion=a.occlusion, left_hand_prob=a.left_prob)
    out = render_to_disk(a.out, a.n, a.seed, cfg, progress=not a.quiet, overwrite=a.overwrite)
    print(f"wrote {a.n} samples to {out}")
    return 0


# ----------------------------------------------------------------------------------------
# handpose data check


DATA_HELP = """
example:
  handpose data check stb ~/data/STB
  handpose data check stb ~/data/STB --split test --json

Validates a data set folder (layout, missing and corrupt images, label ranges) and prints one
sample's labels; exits with 0 when the folder is usable, 1 when a problem was found.
"""

DATA_SETS = "stb | ganerated | synthhands | rhd | freihand | coco"  # data.check.LOADERS


def _add_data(sub):
    p = sub.add_parser(
        "data",
        help="data set tools: handpose data check NAME ROOT",
        description="Data set tools.",
        usage="handpose data check NAME ROOT [--index I] [--decode N] [--split S] [--json]",
        epilog=_fmt(DATA_HELP),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=lambda a: _print_help(p))
    dsub = p.add_subparsers(dest="data_command", metavar="check", title="commands")
    c = dsub.add_parser(
        "check",
        help="validate a data set folder",
        description="Validate a data set folder and show one sample's labels.",
        epilog=_fmt(DATA_HELP),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("name", metavar="NAME", help=DATA_SETS)
    c.add_argument("root", metavar="ROOT", help="data set folder (for coco: the annotation json)")
    c.add_argument("--index", type=int, default=0, help="sample whose labels are printed")
    c.add_argument("--decode", type=int, default=64, help="images to decode (0 = all)")
    c.add_argument("--split", default=None, help="split for stb (test/train/all), rhd and freihand")
    c.add_argument("--json", action="store_true", help="print a JSON object instead of text")
    c.set_defaults(func=cmd_data_check)


def _print_help(parser) -> int:
    parser.print_help()
    return EXIT_USAGE


def cmd_data_check(a) -> int:
    from .data.check import LOADERS, check_dataset, format_json, format_report

    if a.name not in LOADERS:
        raise CLIError(f"unknown data set {a.name!r}; choose one of {sorted(LOADERS)}")
    kwargs = {"split": a.split} if a.split and a.name in ("stb", "rhd", "freihand") else {}
    report = check_dataset(a.name, a.root, index=a.index, decode=a.decode, **kwargs)
    print(format_json(report) if a.json else format_report(report))
    return 0 if report["ok"] else 1


# ----------------------------------------------------------------------------------------
# handpose occlusion


OCCLUSION_HELP = """
examples:
  handpose occlusion --n 200                       # build (cached); print the sets' hashes
  handpose occlusion --ablate all --profile quick  # train + evaluate every variant
  handpose occlusion --ablate a_full --profile full
  handpose occlusion --showcase                    # chapter 8's figures (after (a), (b))

The occlusion test sets: procedural scenes binned by the fraction of hand pixels hidden by
objects (0-60%) and four targeted cases (fingertip, finger, palm, thumb). The ablations train
each variant with the profile's recipe and write results/occlusion/VARIANT.json.
"""


def _variant_names(text: str) -> list[str]:
    """``--ablate``: a variant name, a comma list, or ``all``."""
    from .occlusion import VARIANT_NAMES

    names = list(VARIANT_NAMES) if text == "all" else text.split(",")
    bad = [x for x in names if x not in VARIANT_NAMES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown variants {bad}; choose from {list(VARIANT_NAMES)}")
    return names


def _profile_name(text: str) -> str:
    """``--profile`` (and the old ``--budget``, whose ``cpu`` is the quick profile)."""
    name = {"cpu": "quick"}.get(text, text)
    if name not in ("quick", "full"):
        raise argparse.ArgumentTypeError(f"choose quick or full, got {text!r}")
    return name


def _add_occlusion(sub):
    p = sub.add_parser(
        "occlusion",
        help="occlusion test sets, the ablations on them, chapter 8's figures",
        description="Build the occlusion test sets, or train and evaluate the ablation variants.",
        epilog=_fmt(OCCLUSION_HELP),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--n", type=int, default=200, help="samples per set (default 200)")
    p.add_argument("--size", type=int, default=128, help="crop side in pixels")
    p.add_argument("--out", default=None, help="folder for the test sets (default: the cache)")
    p.add_argument("--ablate", type=_variant_names, default=None, help="variant name, comma list, or 'all'")
    p.add_argument("--profile", type=_profile_name, default="quick", help="quick (CPU, minutes) | full (GPU)")
    p.add_argument("--budget", type=_profile_name, dest="profile", help=argparse.SUPPRESS)  # old name
    p.add_argument("--seed", type=int, default=0, help="training seed of the ablations")
    p.add_argument(
        "--showcase", action="store_true", help="write results/occlusion/showcase.json (after (a), (b))"
    )
    p.set_defaults(func=cmd_occlusion)


def _run_tool(script: str, argv: list[str]) -> int:
    """``main(argv)`` of a script in the repository's ``tools/`` (it needs a checkout, like the
    ``results/`` folder it writes into)."""
    import runpy

    path = Path(__file__).resolve().parents[1] / "tools" / script
    if not path.is_file():
        raise CLIError(f"{path} not found: this needs a checkout of the handpose-book repository")
    return int(runpy.run_path(str(path))["main"](argv) or 0)


def cmd_occlusion(a) -> int:
    from . import occlusion as occ

    if a.n < 1:
        raise CLIError("--n must be >= 1")
    if a.showcase:
        return _run_tool("occlusion_showcase.py", ["--profile", a.profile])
    if a.ablate:
        for name in a.ablate:
            print(f"== {name}: {occ.variant(name).about}", flush=True)
            r = occ.run_variant(name, a.profile, seed=a.seed)
            print(occ.format_results(r))
        return 0
    folder = Path(a.out) if a.out else occ.test_sets_dir(a.n, a.size)
    sets = occ.cached_test_sets(a.n, a.size, folder=folder)
    print(f"occlusion test sets in {folder}")
    for name, s in sets.items():
        print(f"  {name:10s} n={len(s):4d}  sha256 {occ.fingerprint(s)[:16]}")
    return 0


# ----------------------------------------------------------------------------------------
# main


MAIN_HELP = """
quick start:
  handpose train --recipe tiny --data synthetic --out runs/x
  handpose eval --checkpoint runs/x
  handpose predict --checkpoint runs/x handpose_lib/assets/real_hands/freihand/*.jpg --out pred/

`handpose COMMAND --help` shows each command's options and examples.
"""

# every subcommand, in the order `handpose --help` lists them
OLD_OCCLUSION_NAME = "occlusion-benchmark"  # `benchmark` now names only benchmarks/ (README: words)

SUBCOMMANDS = (
    _add_train,
    _add_eval,
    _add_predict,
    _add_export,
    _add_render,
    _add_data,
    _add_occlusion,
    _add_book,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="handpose",
        description="3D hand pose from one RGB image (ResUnet + LHR + bones): train, evaluate, predict.",
        epilog=_fmt(MAIN_HELP),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from . import __version__

    p.add_argument("--version", action="version", version=f"handpose {__version__}")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks (also HANDPOSE_DEBUG=1)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for add in SUBCOMMANDS:
        add(sub)
    return p


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Errors that are the user's input, printed as one line (imported lazily)."""
    errs: list[type[BaseException]] = [CLIError, FileNotFoundError, FileExistsError]
    mods = {
        "handpose_lib.checkpoint": ("CheckpointError",),
        "handpose_lib.config": ("ConfigError",),
        "handpose_lib.data.common": ("DatasetNotFoundError", "CorruptImageError", "DatasetError"),
        "handpose_lib.model": ("PretrainedWeightsUnavailable",),
        "handpose_lib.device": ("DeviceUnavailableError",),
    }
    for mod, names in mods.items():
        m = sys.modules.get(mod)
        if m is not None:
            errs += [getattr(m, n) for n in names if hasattr(m, n)]
    return tuple(errs)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``handpose`` command (``[project.scripts]`` in pyproject.toml)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("HANDPOSE_DEBUG", "") not in ("", "0")
    argv = [x for x in argv if x != "--debug"]
    if argv[:1] == [OLD_OCCLUSION_NAME]:  # the command's old name still works
        argv[0] = "occlusion"
    parser = build_parser()
    try:
        a = parser.parse_args(argv)
        a.argv = argv
        if a.command is None:
            parser.print_help()
            return EXIT_USAGE
        return a.func(a)
    except (*_expected_errors(), OSError) as e:
        if debug:
            raise
        msg = str(e).strip() or type(e).__name__
        if isinstance(e, OSError) and e.strerror and e.filename:  # e.g. [Errno 13] Permission denied: 'x'
            msg = f"cannot use {e.filename}: {e.strerror}"
        print(f"handpose: error: {msg}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("handpose: interrupted", file=sys.stderr)
        return EXIT_STOPPED
    except Exception as e:  # NaN loss: a clear message, no traceback
        if type(e).__name__ == "NonFiniteLossError":
            print(f"handpose: error: {e}", file=sys.stderr)
            return EXIT_NAN
        raise


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
