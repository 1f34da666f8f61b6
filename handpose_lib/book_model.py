"""The book model: its recipes and training stages, building and packaging it, and loading it.

- version 5 (the book model since 2026-12-03): version 4's package trained on in a richer
  scene, :func:`book_v5_stage3_recipe` (stage 3), :func:`book_stages`;
- version 4 (engine v2's mesh hand): :func:`book_v4_recipe` (stage 1) and
  :func:`book_v4_stage2_recipe` (stage 2, a warm restart from stage 1's weights),
  :func:`book_v4_stages`, packaged in ``models/book-tiny-v4``;
- version 3 (engine v1's capsule hand): :func:`book_recipe` and :func:`book_stage2_recipe`
  (:func:`book_v3_stages`), whose loss and optimiser v4 keeps.

What is done with them:

- :func:`train_stages` trains, resumes or reuses each stage; :func:`build_book_model`
  (``make model``) evaluates the result on the test set and writes ``models/book-tiny`` (fp16
  weights, a sidecar with provenance: :func:`git_commit`).
- :func:`load_book_model`: what the chapters call. The committed model when present, else a
  model trained once by the active profile (:func:`profile`): ``quick`` (default,
  :func:`quick_recipe`, minutes on a CPU) or ``full`` (the book recipe's stages).

Profiles (``HANDPOSE_PROFILE``): ``quick`` (the default: CPU, minutes) and ``full``.

Layer 4: imports ``checkpoint``, ``config``, ``data``, ``evaluate``, ``inference`` and ``train``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import torch

from . import checkpoint as ckpt
from . import train as tr
from .config import ConfigError, TrainConfig, same_recipe, tiny_recipe
from .data.rendered import TEST_ENGINE, test_set
from .inference import load_trained, model_from_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]
BOOK_MODEL_DIR = REPO_ROOT / "models" / "book-tiny"
QUICK_RUN_DIR = REPO_ROOT / "runs" / "quick-book"
# the run folders of the book model's two stages; their names change with the recipe (v1 ran in
# runs/book-tiny), so a run of an older recipe is never resumed or packaged as the new one
BOOK_RUN_DIR = REPO_ROOT / "runs" / "book-tiny-v2"  # stage 1 (it was the whole of version 2)
BOOK_STAGE2_DIR = REPO_ROOT / "runs" / "book-tiny-v3"  # stage 2, a warm restart from stage 1
BOOK_V4_DIR = REPO_ROOT / "runs" / "book-tiny-v4"  # version 4, stage 1: engine v2 (mesh hand), from scratch
BOOK_V4_STAGE2_DIR = REPO_ROOT / "runs" / "book-tiny-v4-stage2"  # version 4, stage 2: a warm restart
# version 5 starts from version 4's package (committed: its stage 2's run folder is not)
BOOK_V4_PACKAGE_DIR = REPO_ROOT / "models" / "book-tiny-v4"
BOOK_V5_STAGE3_DIR = REPO_ROOT / "runs" / "book-tiny-v5-stage3"  # version 5: v4 + stage 3
PROFILES = ("quick", "full")


def git_commit() -> str:
    """The current git commit of the repository (with ``+dirty``), or ``"unknown"``."""
    root = REPO_ROOT
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if sha.returncode != 0:
        return "unknown"
    return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def profile(name: str | None = None) -> str:
    """The active profile: ``name``, else ``$HANDPOSE_PROFILE``, else ``"quick"``."""
    p = (name or os.environ.get("HANDPOSE_PROFILE") or "quick").strip().lower()
    if p not in PROFILES:
        raise ConfigError(f"HANDPOSE_PROFILE must be one of {PROFILES}, got {p!r}")
    return p


def quick_recipe() -> TrainConfig:
    """The few-minute fallback the chapters train when the committed book model is missing."""
    return tiny_recipe(n_train=2048, n_val=128, epochs=3, batch_size=32, lr=3e-3, ckpt_every_min=2.0)


def _shown(path: str | os.PathLike) -> str:
    """A path as the book prints it: relative to the repository when inside it (the chapters'
    output then never shows where a build happened to put the checkout)."""
    p = Path(path).resolve()
    return str(p.relative_to(REPO_ROOT)) if p.is_relative_to(REPO_ROOT) else str(p)


def load_book_model(profile_name: str | None = None, device: str = "cpu", verbose: bool = True):
    """The model the book's chapters use: ``(model in eval mode, info dict)``.

    1. ``models/book-tiny`` (the committed book checkpoint, see ``make model``) when present;
    2. otherwise a quick model trained once into ``runs/quick-book`` (a few minutes on a CPU;
       ``HANDPOSE_PROFILE=full`` trains the stages of ``make model`` instead, :func:`book_stages`).
       A finished run is reused, never silently retrained; an unfinished one is resumed.

    ``info`` says which (``source``: ``"book"`` or ``"quick"``), the checkpoint path and its metrics.
    """
    prof = profile(profile_name)
    say = print if verbose else (lambda *a, **k: None)
    if (BOOK_MODEL_DIR / ckpt.SIDECAR_FILE).is_file():
        model, c = load_trained(BOOK_MODEL_DIR, device=device)
        command = c.meta.get("provenance", {}).get("command", "?")
        say(f"book model: {_shown(c.path)} (trained with: {command})")
        return model, {
            "source": "book",
            "path": str(c.path),
            "metrics": c.meta.get("metrics", {}),
            "meta": c.meta,
        }
    if prof == "quick":
        stages, what = [(QUICK_RUN_DIR, quick_recipe())], "a quick model into runs/quick-book"
    else:
        stages = book_stages()
        what = f"the book recipe's stage 3 into {_shown(stages[0][0])}"
    done = all(_pointer_step(d) >= _total_steps(sc) for d, sc in stages)
    if not done:
        say(
            f"NOTE: the book model ({BOOK_MODEL_DIR.relative_to(REPO_ROOT)}) is missing, so this chapter "
            f"trains {what} (once; later runs reuse it). "
            + (
                "Its accuracy is lower than the book model's; `make model` trains the real one."
                if prof == "quick"
                else "`make model` packages it into models/book-tiny."
            )
        )
    else:
        say(f"NOTE: the book model is missing; using the model trained earlier in {_shown(stages[-1][0])}")
    c, message = train_stages(stages, progress=verbose)  # trains what is missing; loads the last once
    if c is None:
        raise RuntimeError(message)
    model = model_from_checkpoint(c, device)
    return model, {
        "source": "quick",
        "path": str(c.path),
        "metrics": c.meta.get("metrics", {}),
        "meta": c.meta,
    }


def _pointer_step(run_dir: Path) -> int:
    """The step of a run folder's latest checkpoint, from its small ``last.json`` pointer
    (0 when there is none); loading the checkpoint itself would read and hash the weights."""
    p = run_dir / ckpt.LAST_FILE
    return int(json.loads(p.read_text()).get("step", 0)) if p.is_file() else 0


def _epochs(cfg: TrainConfig) -> int:
    """The epochs a stage trains (a ``max_steps`` stage stops after fewer than ``epochs``)."""
    return -(-_total_steps(cfg) // (cfg.n_train // cfg.batch_size))


def _total_steps(cfg: TrainConfig) -> int:
    """The steps a stage trains: its schedule's length, or ``max_steps`` where that is shorter."""
    planned = cfg.epochs * (cfg.n_train // cfg.batch_size)
    return planned if cfg.max_steps is None else min(planned, cfg.max_steps)


def book_recipe() -> TrainConfig:
    """Stage 1 of the book model (``make model``; it was the whole of version 2): the tiny
    ResUnet on 30,000 procedural samples (rendered once, then rotated/scaled/colour-jittered
    anew each epoch), 10 epochs of batch 32 (9,370 AdamW steps, one-cycle schedule peaking at
    2e-3). :func:`book_stage2_recipe` continues from its weights.

    The loss differs from the ``LossWeights`` defaults (v1, 13 epochs, used them): the
    intermediate heatmaps are weighted 10x with Gaussians twice as wide (``heatmaps = 5``,
    ``heatmap_sigma = 2``), the 2D term 10x (``coords2d = 1``), and DSNT's latent term is on
    (``latent = 1``). With the default weights the deeply supervised maps barely learnt their
    targets; ``models/README.md`` has the A/B runs behind each change and the measured time
    (about 2 hours on 2 free AVX2 cores, minutes on a GPU).
    """
    return tiny_recipe(
        n_train=30_000,
        n_val=512,
        epochs=10,
        batch_size=32,
        lr=2e-3,
        warmup_frac=0.03,
        weight_decay=1e-4,
        loss={"heatmaps": 5.0, "heatmap_sigma": 2.0, "latent": 1.0, "coords2d": 1.0},
        num_workers=1,
        threads=2,  # 42-45 img/s on 2 free cores against 32 with one thread
        ckpt_every_min=4.0,
        keep_last=2,
    )


def book_stage2_recipe(stage1_dir: str | os.PathLike | None = None) -> TrainConfig:
    """Stage 2 of the book model (version 3): a warm restart from stage 1's final weights.

    Stage 1's schedule ended with the validation error still falling (about 0.1 px per epoch)
    and the training error as high as the validation error (no overfitting), so the model
    needs more steps, not more data. Stage 2 raises the learning rate again, to half of stage
    1's peak (1e-3 after a 5 % warm-up), and decays it over 7 more epochs (6,559 steps) of the
    same 30,000 samples, drawing other augmentations and another order (``seed=1``; with
    seed 0 its epochs would repeat stage 1's first seven). Loss and batch are stage 1's.
    ``init_from`` is stage 1's run folder (default :data:`BOOK_RUN_DIR`; its last checkpoint).
    """
    stage1 = Path(stage1_dir or BOOK_RUN_DIR).resolve()
    return dataclasses.replace(
        book_recipe(), epochs=7, lr=1e-3, warmup_frac=0.05, seed=1, init_from=str(stage1)
    )


def book_v3_stages(
    stage1_dir: str | os.PathLike | None = None, stage2_dir: str | os.PathLike | None = None
) -> list[tuple[Path, TrainConfig]]:
    """Version 3's training stages (engine v1, the capsule hand), ``[(run folder, config), ...]``;
    the folders default to :data:`BOOK_RUN_DIR` and :data:`BOOK_STAGE2_DIR`. The book model is
    version 4 since 2026-12-03 (:func:`book_stages`); v3 stays reproducible from git history."""
    stage1, stage2 = Path(stage1_dir or BOOK_RUN_DIR), Path(stage2_dir or BOOK_STAGE2_DIR)
    return [(stage1, book_recipe()), (stage2, book_stage2_recipe(stage1))]


def book_v4_recipe() -> TrainConfig:
    """Stage 1 of version 4 of the book model (issue 18): the tiny ResUnet from scratch on engine v2.

    What changes against v3, and why:

    - **engine v2**: the rigged MakeHuman mesh hand (``hand_model="mesh"``) instead of capsules,
      with left hands half of the time (``left_hand_prob=0.5``): real photos show both hands
      and a crop around a hand does not say which side it is, so the model learns both (the
      photo pipeline still mirrors left hands the detector names);
    - **the mesh hand transfers**: from scratch, 2,000 steps each, engine v2 scored PCK@0.2
      0.467 on the real photos against engine v1's 0.365 (``models/README.md``);
    - **a camera per sample** (``camera``: exposure, white balance, gamma, vignetting, blur,
      noise, JPEG, low resolution): the only ingredient ahead with both seeds of the first A/B
      fine-tunes (``models/README.md``);
    - **more, and fresh, data**: 48,000 samples, batch 32, a one-cycle schedule (3 % warm-up
      to 2e-3) planned for 16 epochs (24,000 steps) and **stopped after 4 epochs**
      (``max_steps=6000``): the plan assumed the 100 img/s of the bare model step on two free
      AVX-512 cores, but the whole step, with the camera augmentation in a loader worker,
      measured 53-56 img/s, so 24,000 steps would have taken 3.9 hours. Stage 2
      (:func:`book_v4_stage2_recipe`) continues with a schedule of its own, so that the two
      stages together train 15,000 steps (v3: 15,929) in about 2.4 hours; the real-photo PCK
      had stopped rising after epoch 2 (0.35, 0.48, 0.45, 0.45), so more steps of the same
      schedule were not what the model lacked. bf16 autocast measured slower on that CPU
      (86-93 img/s against 103 in float32), so the recipe keeps ``amp="auto"``, off on a CPU;
    - **validated on the real photos every epoch** (``val_real``), besides 512 procedural
      samples of the same engine (seed 1).

    The loss and optimiser are v3's (:func:`book_recipe`).
    """
    return dataclasses.replace(
        book_recipe(),
        n_train=48_000,
        epochs=16,
        max_steps=6_000,
        engine=dict(TEST_ENGINE),  # {"hand_model": "mesh", "left_hand_prob": 0.5}
        camera=True,
        val_real=True,
        ckpt_every_min=5.0,
    )


def book_v4_stage2_recipe(stage1_dir: str | os.PathLike | None = None) -> TrainConfig:
    """Stage 2 of version 4: a warm restart from stage 1's weights, as v3's stage 2 was.

    Stage 1 stopped with its learning rate still near the peak (1.76e-3), so stage 2 trains
    6 more epochs (9,000 steps) of the same 48,000 samples on a one-cycle schedule of its own
    (5 % warm-up to 1e-3, half of stage 1's peak, then down to zero), with other augmentations
    and another order (``seed=1``). ``init_from`` is stage 1's run folder (default
    :data:`BOOK_V4_DIR`; its last checkpoint).
    """
    stage1 = Path(stage1_dir or BOOK_V4_DIR).resolve()
    return dataclasses.replace(
        book_v4_recipe(),
        epochs=6,
        max_steps=None,
        lr=1e-3,
        warmup_frac=0.05,
        seed=1,
        init_from=str(stage1),
    )


def book_v5_stage3_recipe(init: str | os.PathLike | None = None) -> TrainConfig:
    """Stage 3 (version 5): v4's final weights trained on in a richer scene (issue 18).

    - **from version 4's package** (``init``, default :data:`BOOK_V4_PACKAGE_DIR`, the fp16
      weights of ``models/book-tiny`` at v4, committed so that this stage can be re-run);
    - **the scene extras** (``extras="rich"``: rings, watches, held things, another hand, a
      body, dead-leaves backgrounds, gray and infrared looks): the only engine ingredient ahead
      of the plain mesh hand in the 2,000-step A/B runs (real PCK@0.2 0.517 against 0.467);
    - **fresh data**: 48,000 new samples (``data_seed=3``; validation seed 4, test seed 2 is
      untouched) and other augmentation draws (``seed=3``);
    - a gentler warm restart than stage 2's (5 % warm-up to 5e-4, then cosine), 8 epochs
      (12,000 steps), since the weights start converged;
    - ``amp="measure"``: bf16 autocast where the CPU makes it faster (2026-12-03, AVX-512 with
      AMX: the bare tiny step 166 img/s in bf16 against 100 in float32, ``benchmarks/train.py
      --quick``), float32 elsewhere.
    """
    return dataclasses.replace(
        book_v4_recipe(),
        engine={**TEST_ENGINE, "extras": "rich"},
        data_seed=3,
        seed=3,
        epochs=8,
        max_steps=None,
        lr=5e-4,
        warmup_frac=0.05,
        amp="measure",
        init_from=str(Path(init or BOOK_V4_PACKAGE_DIR).resolve()),
    )


def book_v4_stages(
    stage1_dir: str | os.PathLike | None = None, stage2_dir: str | os.PathLike | None = None
) -> list[tuple[Path, TrainConfig]]:
    """Version 4's two training stages, ``[(run folder, config), ...]`` (default
    :data:`BOOK_V4_DIR` and :data:`BOOK_V4_STAGE2_DIR`)."""
    stage1, stage2 = Path(stage1_dir or BOOK_V4_DIR), Path(stage2_dir or BOOK_V4_STAGE2_DIR)
    return [(stage1, book_v4_recipe()), (stage2, book_v4_stage2_recipe(stage1))]


def book_v5_stages(stage3_dir: str | os.PathLike | None = None) -> list[tuple[Path, TrainConfig]]:
    """Version 5's training stage, ``[(run folder, config)]``: stage 3 (default
    :data:`BOOK_V5_STAGE3_DIR`) from the committed v4 package (:data:`BOOK_V4_PACKAGE_DIR`),
    whose sidecar and ``metrics.jsonl`` carry v4's two stages (:func:`base_package`)."""
    return [(Path(stage3_dir or BOOK_V5_STAGE3_DIR), book_v5_stage3_recipe())]


book_stages = book_v5_stages  # the book model's stages (``make model``): version 5 (from v4's package)


def base_package(stages: Sequence[tuple[Path, TrainConfig]]) -> ckpt.Checkpoint | None:
    """The packaged book model the first stage starts from (v5: v4's package), or ``None``.

    A package (``build_book_model``'s output) has a ``provenance`` with a ``budget`` in its
    sidecar; a run folder (v4's stage 2 starts from stage 1's) has none.
    """
    init = stages[0][1].init_from if stages else None
    if not init:
        return None
    folder = Path(init)
    stamp = tuple(
        (f.stat().st_mtime_ns, f.stat().st_size) if f.is_file() else None
        for f in (folder / ckpt.SIDECAR_FILE, folder / ckpt.MODEL_FILE)
    )
    c = _load_package(str(folder.resolve()), stamp)
    return c if "budget" in c.meta.get("provenance", {}) else None


@functools.lru_cache(maxsize=2)
def _load_package(folder: str, stamp: tuple) -> ckpt.Checkpoint:
    """A package read once while its files stay the same (``stamp``: their mtimes and sizes):
    packaging asks :func:`base_package` three times (stages, curves, provenance)."""
    return ckpt.load_checkpoint(folder)


def train_stages(
    stages: Sequence[tuple[Path, TrainConfig]], progress: bool = True
) -> tuple[ckpt.Checkpoint | None, str]:
    """Train, resume or reuse each stage (e.g. of :func:`book_stages`) in turn.

    A stage's folder must hold a run of that stage's recipe (bookkeeping fields aside), and a
    later stage must have started from the earlier stage's final weights (the ``init_from``
    sha256 in its sidecar; the folder's path itself may have moved); otherwise
    :class:`ConfigError`, and nothing is overwritten.

    Returns:
        ``(last stage's final checkpoint, "")`` when every stage is finished, or
        ``(None, message)`` when a run stopped early (a signal): run again to resume.
    """
    prev = base_package(stages)  # v5's stage 3 must have started from v4's package
    first = 1 + (len(prev.meta["provenance"].get("stages") or []) if prev is not None else 0)
    for k, (run_dir, cfg) in enumerate(stages, first):
        run_dir, total = Path(run_dir), _total_steps(cfg)
        last = ckpt.load_checkpoint(run_dir) if (run_dir / ckpt.LAST_FILE).is_file() else None
        if last is not None:
            if not same_recipe(last.meta.get("train_config", {}), cfg.to_dict(), ignore=("init_from",)):
                raise ConfigError(
                    f"{run_dir} holds a run of another recipe (an older version?) than its stage "
                    f"({k} of {first + len(stages) - 1}) needs; move it away or pass another run folder "
                    "(the book model: handpose book-model --stage3 DIR)"
                )
            started = last.meta.get("init_from", {}).get("sha256")
            if prev is not None and started != prev.weights_sha256:
                before = f"stage {k - 1}" if k > first else "the package it starts from"
                raise ConfigError(
                    f"{run_dir} (stage {k}) did not start from the final weights of {before} "
                    f"({prev.path}); move it away so that stage {k} is trained again"
                )
        if last is None or last.step < total:
            res = tr.train(cfg, run_dir, resume=last is not None, progress=progress)
            if not res.finished and res.step < total:  # max_steps ends a stage as planned
                return None, (
                    f"training ({run_dir}) stopped at step {res.step} of {total}; "
                    "run the same command again to resume"
                )
            last = ckpt.load_checkpoint(run_dir)
        prev = last
    return prev, ""


def book_history(stages: Sequence[tuple[Path, TrainConfig]]) -> list[dict]:
    """The stages' ``metrics.jsonl`` rows as one curve: each row gets its ``stage`` (1, 2, ..),
    and ``epoch``/``step`` count on from the earlier stages (v4's stage 2 starts at epoch 5).
    A :func:`base_package`'s curve comes first (v5: v4's stages 1-2, then stage 3)."""
    base = base_package(stages)
    rows: list[dict] = [{"stage": 1, **r} for r in ckpt.read_metrics(base.path)] if base else []
    epochs = base.meta["provenance"]["budget"]["epochs"] if base else 0
    steps = base.meta["provenance"]["budget"]["steps"] if base else 0
    first = max((r["stage"] for r in rows), default=0) + 1  # v5's stage 3 follows v4's two
    for k, (run_dir, cfg) in enumerate(stages, first):
        for r in ckpt.read_metrics(run_dir):
            rows.append({**r, "stage": k, "epoch": r["epoch"] + epochs, "step": r["step"] + steps})
        epochs, steps = epochs + _epochs(cfg), steps + _total_steps(cfg)
    return rows


def build_book_model(
    out_dir: str | os.PathLike,
    stage_dirs: Sequence[str | os.PathLike | None] = (None,),
    progress: bool = True,
) -> str:
    """Train (or resume, or reuse) the book model's stages (:func:`book_stages`; one run folder
    each, ``None`` for the default), evaluate the final weights on the procedural test set and
    write the compact fp16 checkpoint with its provenance to ``out_dir``, with both stages'
    learning curves in one ``metrics.jsonl`` (:func:`book_history`)."""
    from . import evaluate as ev

    out_dir = Path(out_dir)
    stages = book_stages(*stage_dirs)
    final, message = train_stages(stages, progress)
    if final is None:
        return message
    model = model_from_checkpoint(final).half().float()  # exactly what the fp16 checkpoint will hold
    data, name = test_set()
    rep = ev.evaluate(model, data, dataset=name, batch_size=64, device="cpu")
    hist = book_history(stages)
    sidecar = {
        "model_config": final.meta["model_config"],
        "train_config": final.meta["train_config"],
        "epoch": final.epoch,
        "step": final.step,
        "metrics": _headline(rep, name),
        "provenance": _provenance(stages, final, hist),
    }
    ckpt.save_checkpoint(out_dir, model, sidecar, save_rng=False, weights_dtype=torch.float16)
    ev.write_report(rep, out_dir / "benchmark.json")
    if hist:  # the learning curves chapter 6 plots
        ckpt.write_metrics(out_dir, hist)
    size_mb = (out_dir / ckpt.MODEL_FILE).stat().st_size / 1e6
    return f"book model: {out_dir} ({size_mb:.1f} MB)\n" + ev.summary(rep)


def _headline(rep: dict, name: str) -> dict:
    """The sidecar's ``metrics``: the test set's name (key ``benchmark``, as the committed model
    has it) and the report's headline numbers, overall and for visible / hidden joints."""
    o = rep["overall"]
    return {
        "benchmark": name,
        "epe2d_px": o["epe2d_px"],
        "epe3d_mm": o["epe3d_mm"],
        "auc3d_20_50": o["auc3d_20_50"],
        "auc2d_0_30": o["auc2d_0_30"],
        **{
            f"{g}_{k}": rep["by_visibility"][g][k]
            for g in ("visible", "hidden")
            if g in rep.get("by_visibility", {})
            for k in ("epe2d_px", "epe3d_mm", "auc3d_20_50")
        },
        "protocol_3d": rep["protocol"]["3d"],
    }


def _precision(final: ckpt.Checkpoint) -> str:
    """How the last stage computed: "in float32", or "with bf16 autocast" (``amp``, or what
    ``amp="measure"`` chose on the training machine)."""
    cfg = final.meta.get("train_config", {})
    amp = final.meta.get("amp_measured", {}).get("choice") or cfg.get("amp", "auto")
    if amp in ("bf16", "fp16"):
        return f"with {amp} autocast"
    return "in float32" if amp == "off" else f"with amp={amp} (float32 on a CPU)"


def _provenance(stages: Sequence[tuple[Path, TrainConfig]], final: ckpt.Checkpoint, hist: list[dict]) -> dict:
    """The sidecar's ``provenance``: command, commit, compute budget, stage folders, machine."""
    import platform

    started = dict(final.meta.get("init_from") or {})  # path, step, sha256 of stage 1's end
    parts = Path(started.get("path", "")).parts
    for top in ("runs", "models"):  # trained in another checkout: shown from the repository's top
        if top in parts:
            started["path"] = str(Path(*parts[parts.index(top) :]))
            break
    base = base_package(stages)
    before = base.meta["provenance"] if base else {"budget": {}, "stages": []}
    b = before["budget"]
    out = {
        "command": "make model  (python -m handpose_lib.cli book-model)",
        "commit": git_commit(),
        "budget": {
            "steps": b.get("steps", 0) + sum(_total_steps(sc) for _, sc in stages),
            "steps_per_stage": b.get("steps_per_stage", []) + [_total_steps(sc) for _, sc in stages],
            "epochs": b.get("epochs", 0) + sum(_epochs(sc) for _, sc in stages),
            "samples_seen": b.get("samples_seen", 0)
            + sum(_total_steps(sc) * sc.batch_size for _, sc in stages),
            # a stage on another engine or seed renders a set of its own (v5: v4's + stage 3's)
            "unique_procedural_samples": b.get("unique_procedural_samples", 0) + stages[-1][1].n_train,
            "train_wall_time_s": round(sum(r.get("time_s", 0.0) for r in hist), 1),
        },
        "stages": before["stages"] + [_shown(d) for d, _ in stages],
        "last_stage_started_from": started,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}",
        "weights": f"float16 (trained {_precision(final)})",
    }
    if base is not None:  # the package the first stage started from, as built (its own provenance)
        out["base_package"] = {"path": _shown(base.path), "sha256": base.weights_sha256, "provenance": before}
    return out
