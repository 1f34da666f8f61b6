"""Training: the loop from a recipe to a run folder of checkpoints and metrics.

:func:`fit` is the whole loop; it reads as this outline, one named step per line::

    run = _start(...)                            # start or resume: run folder, weights, optimiser,
                                                 # schedule, data order (DistributedSampler(seed))
    for epoch:
        for batch:
            _train_step                          # autocast(bf16/fp16 on CUDA): out = model(images),
                                                 # loss; backward; clip; one host copy; stop if the
                                                 # loss or gradients are NaN/inf; AdamW; LR schedule
            _show_progress                       # progress bar (or a line every 2 minutes)
            _checkpoint_or_stop                  # every ckpt_every_min: a checkpoint; Ctrl-C,
                                                 # SIGTERM, max_steps: a checkpoint, then stop
        _end_epoch                               # validate (+ real photos) -> metrics.jsonl,
                                                 # checkpoint, best.json

What makes it reproducible: the seed fixes the initial weights (``torch.manual_seed``), the
data order (``DistributedSampler(seed)``, ``set_epoch``) and the augmentation, which is drawn
from a generator seeded by ``(seed, epoch, sample index)`` inside the data set (so it does not
depend on the number of DataLoader workers or on where a run was resumed). Checkpoints store
the optimiser, scheduler, grad scaler and RNG states and the position inside the epoch, so
``--resume`` continues exactly: training N steps straight or N/2 + resume + N/2 gives the same
weights (``tests/test_train.py::test_resume_is_exact``).

The run folder (``checkpoint.py``): ``checkpoints/step-*`` (the last ``keep_last``), ``last.json``
(the newest), ``best.json`` (the checkpoint of the epoch with the lowest validation 3D EPE so far,
kept when older ones are pruned; ``handpose eval --which best``), ``config.json`` and
``metrics.jsonl`` (one row per epoch).

Several GPUs or machines: launch with ``torchrun`` (it sets ``RANK``/``WORLD_SIZE``/
``LOCAL_RANK``); :func:`fit` then wraps the model in ``DistributedDataParallel`` and shards the
data with ``DistributedSampler``; rank 0 validates, logs and writes checkpoints::

    torchrun --nproc_per_node 4 -m handpose_lib.cli train --recipe paper --data synthetic --out runs/p

The batch size in the recipe is per process (the effective batch is ``batch_size x world``).

Layer 3: imports ``checkpoint``, ``config``, ``device``, ``losses``, ``data`` and ``evaluate``.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from . import checkpoint as ckpt
from .config import (
    RESUME_MAY_CHANGE,
    ConfigError,
    TrainConfig,
    build_datasets,
    build_for_config,
    default_loss_fn,
    make_augment,
    make_optimizer,
    make_scheduler,
    recipe_diff,
)
from .data.augment import EpochSampler, TrainView
from .data.sample import collate
from .device import (
    DistInfo,
    autocast,
    autocast_dtype,
    measure_cpu_amp,
    pick_device,
    setup_distributed,
    to_device,
    to_host,
)
from .evaluate import evaluate_predictions, real_photos_metrics

BEST_METRIC = "val_epe3d_mm"  # best.json: the epoch with the lowest validation 3D EPE


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; training stopped without saving the broken state."""


def _ignore_ctrl_c(_worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C to the training process (:class:`StopFlag`), which
    saves a checkpoint and then shuts them down; a worker killed by it first could break the save."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# ----------------------------------------------------------------------------------------
# stop signals


class StopFlag:
    """Turns Ctrl-C (SIGINT) and SIGTERM into a flag the loop checks after each step.

    A second Ctrl-C raises ``KeyboardInterrupt`` at once. The previous handlers come back on exit.
    """

    def __init__(self):
        self.requested = False
        self.signal_name = ""
        self._old: dict[int, Any] = {}

    def _handler(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        self.signal_name = signal.Signals(signum).name

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                try:
                    self._old[s] = signal.signal(s, self._handler)
                except (ValueError, OSError):
                    pass
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        return False


# ----------------------------------------------------------------------------------------
# validation


@torch.no_grad()
def validate(model, loader, loss_fn, device, amp_dtype, channels_last: bool, max_batches: int | None = None):
    """Mean loss parts and the evaluation report's headline metrics over ``loader``."""
    model.eval()
    sums: dict[str, float] = {}
    n = 0
    pred2d, pred3d, gt2d, gt3d, vis = [], [], [], [], []
    for bi, batch in enumerate(loader):
        if max_batches is not None and bi >= max_batches:
            break
        batch = to_device(batch, device, channels_last)
        with autocast(device, amp_dtype):
            out = model(batch["image"])
            _, parts = loss_fn(out, batch)
        b = batch["image"].shape[0]
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach() if torch.is_tensor(v) else v) * b
        n += b
        pred2d.append(out.coords2d.float().cpu().numpy())
        pred3d.append(out.joints3d.float().cpu().numpy())
        gt2d.append(batch["joints2d"].cpu().numpy())
        gt3d.append(batch["joints3d"].cpu().numpy())
        if "visibility" in batch:
            vis.append(batch["visibility"].cpu().numpy())
    model.train()
    rep = evaluate_predictions(
        np.concatenate(pred2d),
        np.concatenate(gt2d),
        np.concatenate(pred3d),
        np.concatenate(gt3d),
        np.concatenate(vis) if vis else None,
    )
    o = rep["overall"]
    metrics = {f"val_{k}": v / max(1, n) for k, v in sums.items()}
    metrics.update({f"val_{k}": o[k] for k in ("epe2d_px", "epe3d_mm", "auc3d_20_50", "auc2d_0_30")})
    for g in ("visible", "hidden"):
        if g in rep.get("by_visibility", {}):
            metrics[f"val_{g}_epe2d_px"] = rep["by_visibility"][g]["epe2d_px"]
            metrics[f"val_{g}_auc3d_20_50"] = rep["by_visibility"][g]["auc3d_20_50"]
    return metrics


# ----------------------------------------------------------------------------------------
# the run folder and its log


@dataclass
class FitResult:
    """What :func:`fit` returns: the run folder, the last checkpoint, the per-epoch metrics,
    the global step reached, and whether the run finished or was stopped early."""

    run_dir: Path
    checkpoint: Path | None
    history: list[dict]
    step: int
    finished: bool
    stopped_by: str = ""


# what fit writes into a run folder (besides last.json)
RUN_FILES = ("config.json", "metrics.jsonl", ckpt.CKPT_SUBDIR, ckpt.BEST_FILE)


def check_run_dir(run_dir: Path, resume: bool, cfg: TrainConfig, world: int | None = None):
    """The checkpoint to resume from (``None`` for a new run); refuses to overwrite a run, to
    resume a run that has no checkpoint, or to resume with another recipe (any
    :class:`TrainConfig` field but the bookkeeping ones, ``data_root`` and ``init_from``: another
    ``epochs`` or ``lr`` would change the schedule, so the resumed run would not be exact) or
    (``world`` given) another number of processes."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"--out {run_dir} is a file, not a run folder; choose a folder path")
    has_ckpt = (run_dir / ckpt.LAST_FILE).is_file()
    if not resume:
        if has_ckpt:
            raise ckpt.CheckpointError(
                f"{run_dir} already holds a training run (last checkpoint: "
                f"{ckpt.resolve_checkpoint(run_dir).name}); pass --resume to continue it or choose "
                "another --out folder"
            )
        found = [name for name in RUN_FILES if (run_dir / name).exists()]
        if found:  # e.g. a copied run without its last.json: training would mix two runs
            raise ckpt.CheckpointError(
                f"{run_dir} holds files of another training run ({', '.join(found)}) but no "
                f"{ckpt.LAST_FILE}; a new run would replace its config.json and mix two recipes in "
                "one metrics.jsonl. Choose another --out folder (or move those files away)"
            )
        return None
    if not has_ckpt:
        raise ckpt.CheckpointError(
            f"--resume: {run_dir} has no checkpoint to resume from (no {ckpt.LAST_FILE}); "
            "start a new run without --resume"
        )
    last = ckpt.load_checkpoint(run_dir)
    if cfg.data == "synthetic" and "generator_version" in last.meta:
        from .data.synthetic import GENERATOR_VERSION

        if last.meta["generator_version"] != GENERATOR_VERSION:
            raise ConfigError(
                f"--resume: the run was trained on procedural data of generator version "
                f"{last.meta['generator_version']}, the engine is now version {GENERATOR_VERSION}; "
                "resuming would change the training data mid-run. Start a new run (another --out)."
            )
    saved = last.meta.get("train_config")
    now = cfg.to_dict()
    # a moved data folder or a moved checkout (init_from: only a new run reads it) is no change
    diff = recipe_diff(saved, now, ignore=RESUME_MAY_CHANGE) if saved is not None else []
    diff = [k for k in diff if k in saved]  # a field added to TrainConfig since keeps its default
    if diff:
        shown = "; ".join(f"{k}: {saved.get(k)!r} there, {now.get(k)!r} now" for k in diff)
        raise ConfigError(
            f"--resume: the run in {run_dir} was started with other settings ({shown}). A resumed "
            "run continues its own schedule exactly, so resume with the settings it started with "
            "(the command printed when it stopped, or its config.json), or train on from its "
            f"weights as a new run: --init-from {run_dir} --out NEW_FOLDER"
        )
    if world is not None and last.meta.get("world_size", world) != world:
        raise ConfigError(
            f"--resume: the run in {run_dir} was trained by {last.meta['world_size']} process(es), "
            f"this is {world}; the data order and steps per epoch depend on it, so resume "
            f"with the same number (torchrun --nproc_per_node {last.meta['world_size']})"
        )
    return last


def _nonfinite_message(
    loss_value: float, parts: Mapping, step: int, epoch: int, last_path, grad_norm=None
) -> str:
    """What :class:`NonFiniteLossError` says: which value broke, where, and what to try."""
    keep = f"the last good checkpoint is {last_path}" if last_path else "no checkpoint was saved yet"
    shown = {k: float(v.detach() if torch.is_tensor(v) else v) for k, v in parts.items()}
    what = f"the loss became {loss_value}"
    if grad_norm is not None:
        what = f"the gradients' norm became {grad_norm} (the loss, {loss_value:.4g}, was finite)"
    return (
        f"{what} at step {step + 1} (epoch {epoch + 1}); loss parts: {shown}. "
        f"Training stopped; {keep}. Try a lower learning rate (lr), amp=off, or check the data for NaN "
        "labels."
    )


# ----------------------------------------------------------------------------------------
# the loop's state and steps


@dataclass
class _Run:
    """What :func:`fit`'s steps share: the model and optimiser, the data and the bookkeeping
    (one object passed to each step instead of closures over the loop's locals)."""

    cfg: TrainConfig
    run_dir: Path
    model: torch.nn.Module  # the bare model (checkpoints, validation)
    loss_fn: Callable
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    device: torch.device
    amp_dtype: torch.dtype | None
    info: DistInfo
    steps_per_epoch: int
    train_model: torch.nn.Module | None = None  # the model that trains: the model, or DDP's wrapper
    step: int = 0
    view: TrainView | None = None  # the training set through the augmentation
    sampler: DistributedSampler | None = None
    loader_kw: dict = field(default_factory=dict)
    val_loader: DataLoader | None = None
    meta: dict = field(default_factory=dict)  # what every checkpoint's sidecar holds
    history: list[dict] = field(default_factory=list)
    last_path: Path | None = None  # the latest checkpoint
    best: float | None = None  # the best BEST_METRIC so far
    last_save: float = 0.0
    last_print: float = 0.0
    carried: dict | None = None  # a resumed epoch's running sums before the stop (epoch_progress)

    def __post_init__(self):
        if self.train_model is None:
            self.train_model = self.model

    @property
    def total_steps(self) -> int:
        return self.cfg.epochs * self.steps_per_epoch

    @property
    def world_batch(self) -> int:
        return self.cfg.batch_size * self.info.world

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]


@dataclass
class _Epoch:
    """One epoch's running sums (the loss parts) and progress timers."""

    epoch: int
    sums: dict[str, float] = field(default_factory=dict)
    n_batches: int = 0
    t_start: float = field(default_factory=time.perf_counter)
    t_log: float = field(default_factory=time.perf_counter)
    seen_log: int = 0

    def add(self, parts: Mapping[str, float], n_images: int) -> None:
        self.n_batches += 1
        for k, v in parts.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.seen_log += n_images


def _engine(cfg: TrainConfig) -> tuple[torch.device, DistInfo, torch.dtype | None]:
    """The device (this process's GPU under torchrun), the process group and the autocast dtype."""
    device = pick_device(cfg.device)
    info = setup_distributed(device.type)
    if device.type == "cuda" and info.enabled:
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return device, info, autocast_dtype(cfg.amp, device)


def _start(model, train_set, val_set, cfg, run_dir: Path, loss_fn, resume: bool, extra_meta) -> _Run:
    """Start or resume: check the run folder, load the weights (the run's own, ``init_from``'s or
    the seed's), build optimiser, schedule and grad scaler, restore their states and the RNGs
    when resuming, then the data loaders and the sidecar fields. The order is part of exact
    resume: nothing may draw from the global RNGs between the restore and the first batch."""
    device, info, amp_dtype = _engine(cfg)
    last = check_run_dir(run_dir, resume, cfg, info.world)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)  # noqa: NPY002 (legacy global state for third-party code)
    init = _load_start_weights(model, cfg, last)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if cfg.amp == "measure" and device.type == "cpu":
        measured = _measure_amp(model, cfg, info, last)
        amp_dtype = torch.bfloat16 if measured["choice"] == "bf16" else None
        extra_meta = {**dict(extra_meta or {}), "amp_measured": measured}
    optimizer = make_optimizer(model, cfg)
    steps_per_epoch = len(train_set) // (cfg.batch_size * info.world)
    if steps_per_epoch < 1:
        raise ConfigError(
            f"the training set has {len(train_set)} samples, fewer than one batch of "
            f"{cfg.batch_size * info.world} (batch_size x processes); lower batch_size or use more data"
        )
    scheduler = make_scheduler(optimizer, cfg, cfg.epochs * steps_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    if last is not None:
        last.restore(optimizer, scheduler, scaler, rng=True)
    run = _Run(
        cfg, run_dir, model, loss_fn, optimizer, scheduler, scaler, device, amp_dtype, info, steps_per_epoch
    )
    run.step = last.step if last is not None else 0
    if info.enabled:
        ids = [device.index] if device.type == "cuda" else None
        run.train_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    _make_loaders(run, train_set, val_set)
    _start_bookkeeping(run, last, init, resume, extra_meta)
    return run


def _measure_amp(model, cfg: TrainConfig, info: DistInfo, last: ckpt.Checkpoint | None) -> dict:
    """``amp="measure"`` on a CPU: the resumed run's recorded choice, or float32 against bf16
    timed on this machine (:func:`~handpose_lib.device.measure_cpu_amp`, a random batch of the
    recipe's size, no global RNG draw); every process of a distributed run takes rank 0's."""
    if last is not None and isinstance(last.meta.get("amp_measured"), dict):
        return last.meta["amp_measured"]
    measured = None
    if info.is_main:
        size = getattr(getattr(model, "config", None), "input_size", 128)
        x = torch.rand((cfg.batch_size, 3, size, size), generator=torch.Generator().manual_seed(0))
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        measured = measure_cpu_amp(model, x)
    if info.enabled:
        box = [measured]
        torch.distributed.broadcast_object_list(box, src=0)
        measured = box[0]
    return measured


def _load_start_weights(model, cfg: TrainConfig, last: ckpt.Checkpoint | None) -> ckpt.Checkpoint | None:
    """The resumed run's own weights, or ``init_from``'s (returned: its provenance), or none."""
    if last is not None:
        ckpt.load_weights(model, last)
        return None
    if cfg.init_from:  # a new run that starts from another checkpoint's weights
        init = ckpt.load_checkpoint(cfg.init_from)
        ckpt.load_weights(model, init)
        return init
    return None


def _make_loaders(run: _Run, train_set: Dataset, val_set: Dataset | None) -> None:
    """The augmented view of the training set, its sampler, the loader settings and, on rank 0,
    the validation loader."""
    cfg, info = run.cfg, run.info
    run.view = TrainView(train_set, make_augment(cfg) if cfg.augment else None, seed=cfg.seed)
    run.sampler = DistributedSampler(
        train_set, num_replicas=info.world, rank=info.rank, shuffle=True, seed=cfg.seed, drop_last=True
    )
    run.loader_kw = dict(
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        collate_fn=collate,
        pin_memory=run.device.type == "cuda",
        drop_last=True,
        persistent_workers=False,
        worker_init_fn=_ignore_ctrl_c,
    )
    if val_set is not None and info.is_main:
        val_kw = {k: v for k, v in run.loader_kw.items() if k not in ("batch_size", "drop_last")}
        run.val_loader = DataLoader(val_set, batch_size=cfg.batch_size, shuffle=False, **val_kw)


def _start_bookkeeping(run: _Run, last, init, resume: bool, extra_meta) -> None:
    """The sidecar fields (written to ``config.json``), the log so far, the best metric so far."""
    meta = {
        "train_config": run.cfg.to_dict(),
        "steps_per_epoch": run.steps_per_epoch,
        "total_steps": run.total_steps,
        "world_size": run.info.world,
        "torch": torch.__version__,
        **dict(extra_meta or {}),
    }
    if init is not None:  # where the starting weights came from (kept across resumes)
        meta["init_from"] = {"path": str(init.path), "step": init.step, "sha256": init.weights_sha256}
    elif last is not None and "init_from" in last.meta:
        meta["init_from"] = last.meta["init_from"]
    bare = getattr(run.model, "module", run.model)  # a model passed in DDP's wrapper
    if hasattr(bare, "config") and hasattr(bare.config, "to_dict"):
        meta.setdefault("model_config", bare.config.to_dict())
    finished_before = last is not None and last.step >= run.total_steps
    if last is not None and isinstance(last.meta.get("provenance"), dict):
        # the command that started the run stays its command; a resume is recorded beside it
        prov = dict(last.meta["provenance"])
        new = meta.get("provenance", {}).get("command")
        if new is not None and not finished_before:
            prov["resumed_by"] = [*prov.get("resumed_by", []), new]
        meta["provenance"] = prov
    run.meta = meta
    if run.info.is_main and not finished_before:  # resuming a finished run writes nothing
        ckpt.atomic_write_json(run.run_dir / "config.json", meta)
    if last is not None and last.step % run.steps_per_epoch:
        # a run stopped mid-epoch saved the epoch's running loss sums: the resumed epoch's
        # logged training loss is then the mean over all its batches, as in an unbroken run
        run.carried = last.meta.get("epoch_progress")
    run.history = ckpt.read_metrics(run.run_dir) if resume else []
    if last is not None and any(r.get("step", 0) > last.step for r in run.history):
        # a run killed between an epoch's log row and its checkpoint redoes that epoch: drop the
        # row, or the curve would hold the epoch twice
        run.history = [r for r in run.history if r.get("step", 0) <= last.step]
        if run.info.is_main:
            ckpt.write_metrics(run.run_dir, run.history)
    best = ckpt.read_best(run.run_dir) if resume else None
    if best is not None and best.get("metric") == BEST_METRIC:
        run.best = best.get("value")
    run.last_path = last.path if last is not None else None
    run.last_save = run.last_print = time.monotonic()


def _sync_flags(run: _Run, nonfinite: bool, stop: bool, save_now: bool) -> tuple[bool, bool, bool]:
    """One small all-reduce so every process agrees on NaN, stop and checkpoint decisions."""
    if not run.info.enabled:
        return nonfinite, stop, save_now
    t = torch.tensor([float(nonfinite), float(stop), float(save_now)], device=run.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t[0]), bool(t[1]), bool(t[2])


def _epoch_batches(run: _Run, epoch: int, skip_batches: int) -> DataLoader:
    """This process's batches of ``epoch``, from batch ``skip_batches`` on (a resumed epoch)."""
    sampler = EpochSampler(run.sampler, epoch, skip_batches * run.cfg.batch_size)
    # its own generator: creating the loader must not consume the global RNG
    gen = torch.Generator().manual_seed(run.cfg.seed * 100_003 + epoch)
    return DataLoader(run.view, sampler=sampler, generator=gen, **run.loader_kw)


def _train_step(run: _Run, batch: dict, epoch: int) -> tuple[float, dict[str, float]]:
    """One optimiser step on ``batch``: forward and loss under autocast, backward, gradient
    clipping, one device-to-host copy (loss, gradients' norm, loss parts), the NaN/inf check
    before the optimiser step (the weights stay the last good ones), AdamW and the schedule.
    Returns the loss and its parts as floats."""
    cfg, scaler = run.cfg, run.scaler
    batch = to_device(batch, run.device, cfg.channels_last)
    with autocast(run.device, run.amp_dtype):
        out = run.train_model(batch["image"])
        loss, parts = run.loss_fn(out, batch)
    run.optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    # fp16's GradScaler skips steps with inf gradients by itself; otherwise the gradients' norm
    # is checked, so that NaN never reaches the weights
    check_grads = not scaler.is_enabled()
    gnorm = None
    if cfg.grad_clip or check_grads:
        scaler.unscale_(run.optimizer)
        # max_norm inf: no clipping, only the norm (x 1.0 leaves gradients exact)
        gnorm = torch.nn.utils.clip_grad_norm_(run.train_model.parameters(), cfg.grad_clip or float("inf"))
    head = [loss] + ([gnorm] if check_grads else [])
    values = to_host([*head, *parts.values()], loss.device)
    loss_value, gnorm_value = values[0], (values[1] if check_grads else None)
    part_values = dict(zip(parts, values[len(head) :]))
    bad_loss = not math.isfinite(loss_value)
    bad_grads = gnorm_value is not None and not math.isfinite(gnorm_value)
    bad, _, _ = _sync_flags(run, bad_loss or bad_grads, False, False)
    if bad:
        raise NonFiniteLossError(
            _nonfinite_message(
                loss_value, part_values, run.step, epoch, run.last_path, None if bad_loss else gnorm_value
            )
        )
    scaler.step(run.optimizer)
    scaler.update()
    run.scheduler.step()
    run.step += 1
    return loss_value, part_values


def _show_progress(run: _Run, bar, ep: _Epoch, loss_value: float) -> None:
    """The progress bar's loss, learning rate and images/s, or (no bar) a line every 2 minutes."""
    if bar is not None:
        if run.step % run.cfg.log_every == 0 or run.step == run.total_steps:
            dt = time.perf_counter() - ep.t_log
            rate = ep.seen_log / max(dt, 1e-9)
            bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{run.lr:.2e}", img_s=f"{rate:.0f}", refresh=False)
            ep.t_log, ep.seen_log = time.perf_counter(), 0
        bar.update(1)
    elif run.info.is_main and time.monotonic() - run.last_print > 120:
        run.last_print = time.monotonic()
        rate = (ep.n_batches * run.world_batch) / max(time.perf_counter() - ep.t_start, 1e-9)
        print(
            f"step {run.step}/{run.total_steps} epoch {ep.epoch + 1} loss {loss_value:.4f} "
            f"lr {run.lr:.2e} {rate:.0f} img/s",
            flush=True,
        )


def _save(run: _Run, epoch: int, metrics: Mapping[str, Any], reason: str, ep: _Epoch | None = None) -> None:
    """A checkpoint of the current step (rank 0 writes it; every rank restarts the timer).
    ``ep``: a checkpoint in the middle of an epoch keeps its running loss sums."""
    run.last_save = time.monotonic()
    if not run.info.is_main:
        return
    sidecar = {**run.meta, "epoch": epoch, "step": run.step, "reason": reason, "metrics": dict(metrics)}
    if ep is not None:
        sidecar["epoch_progress"] = {"sums": dict(ep.sums), "batches": ep.n_batches}
    run.last_path = ckpt.save_run_checkpoint(
        run.run_dir,
        run.step,
        run.model,
        sidecar,
        keep_last=run.cfg.keep_last,
        optimizer=run.optimizer,
        scheduler=run.scheduler,
        scaler=run.scaler,
    )


def _checkpoint_or_stop(run: _Run, stop_flag: StopFlag, ep: _Epoch, loss_value: float) -> str:
    """After a step: a checkpoint every ``ckpt_every_min``; on Ctrl-C, SIGTERM or ``max_steps`` a
    checkpoint and the reason to stop (``""``: go on). All processes decide together."""
    cfg, epoch = run.cfg, ep.epoch
    due = (time.monotonic() - run.last_save) > 60.0 * cfg.ckpt_every_min
    at_max = cfg.max_steps is not None and run.step >= cfg.max_steps
    _, stop, save_now = _sync_flags(run, False, stop_flag.requested or at_max, due)
    if stop:
        stopped_by = stop_flag.signal_name or ("max_steps" if at_max else "another process")
        _save(run, epoch, {"train_loss": loss_value}, f"stopped ({stopped_by})", ep)
        return stopped_by
    if save_now and run.step < (epoch + 1) * run.steps_per_epoch:  # the epoch's end saves anyway
        _save(run, epoch, {"train_loss": loss_value}, "periodic", ep)
    return ""


def _end_epoch(run: _Run, ep: _Epoch, bar) -> None:
    """Validate (every ``val_every`` epochs and after the last; on the real photos too with
    ``cfg.val_real``), log a row to ``metrics.jsonl``,
    save a checkpoint, and point ``best.json`` at it when the validation 3D EPE improved."""
    cfg, epoch = run.cfg, ep.epoch
    dt = time.perf_counter() - ep.t_start
    row = {
        "epoch": epoch + 1,
        "step": run.step,
        "lr": run.lr,
        "time_s": dt,
        "img_per_s": ep.n_batches * run.world_batch / max(dt, 1e-9),
        **{f"train_{k}": v / max(1, ep.n_batches) for k, v in ep.sums.items()},
    }
    validating = (epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs
    if run.val_loader is not None and validating:
        row.update(
            validate(run.model, run.val_loader, run.loss_fn, run.device, run.amp_dtype, cfg.channels_last)
        )
    if cfg.val_real and validating and run.info.is_main:  # the 16 shipped photos: a few seconds
        row.update(real_photos_metrics(run.model, run.device))
    if run.info.is_main:
        run.history.append(row)
        ckpt.append_metrics(run.run_dir, row)
        shown = ", ".join(
            f"{k[4:]}={row[k]:.3g}"
            for k in ("val_epe2d_px", "val_epe3d_mm", "val_auc3d_20_50")
            if row.get(k) is not None
        )
        line = f"epoch {epoch + 1}/{cfg.epochs}: train loss {row.get('train_total', float('nan')):.4f}"
        line += f", {shown}" if shown else ""
        bar.write(line) if bar is not None else print(line, flush=True)
    _save(run, epoch + 1, row, "epoch end")
    _mark_if_best(run, row)
    if run.info.enabled:
        dist.barrier()


def _mark_if_best(run: _Run, row: Mapping[str, Any]) -> None:
    """Point ``best.json`` at the checkpoint just saved when its :data:`BEST_METRIC` is the
    lowest of the run so far (epochs without validation leave it alone)."""
    value = row.get(BEST_METRIC)
    if not run.info.is_main or value is None or not math.isfinite(value):
        return
    if run.best is None or value < run.best:
        run.best = float(value)
        info = {"metric": BEST_METRIC, "value": run.best, "step": run.step, "epoch": row["epoch"]}
        ckpt.mark_best(run.run_dir, run.last_path, info)


# ----------------------------------------------------------------------------------------
# the loop


def fit(
    model: torch.nn.Module,
    train_set: Dataset,
    val_set: Dataset | None,
    cfg: TrainConfig,
    run_dir: str | os.PathLike,
    *,
    loss_fn: Callable | None = None,
    resume: bool = False,
    progress: bool | None = None,
    on_step: Callable[[int, dict], None] | None = None,
    extra_meta: Mapping[str, Any] | None = None,
) -> FitResult:
    """Train ``model`` on ``train_set`` as ``cfg`` says, writing checkpoints into ``run_dir``.

    Start or resume (:func:`_start`); then for each epoch, for each batch: one training step
    (:func:`_train_step`), progress, a checkpoint when due or a stop when asked
    (:func:`_checkpoint_or_stop`); at the end of each epoch validation, the log row, a checkpoint
    and ``best.json`` (:func:`_end_epoch`).

    Args:
        model: any ``nn.Module`` whose output has ``coords2d`` and ``joints3d`` (validation).
        train_set, val_set: Datasets of sample dicts (``val_set=None`` skips validation).
        loss_fn: ``loss_fn(output, batch) -> (total, parts)``; default ``losses.compute_loss``.
        resume: continue from ``run_dir``'s last checkpoint (exactly where it stopped).
        progress: show a tqdm bar (default: on for rank 0).
        on_step: called as ``on_step(step, info)`` after each optimiser step (tests, notebooks).
        extra_meta: more JSON for every checkpoint's sidecar (e.g. the model config, provenance).
    Returns:
        :class:`FitResult`. Raises :class:`NonFiniteLossError` on a NaN/inf loss.
    """
    run = _start(
        model, train_set, val_set, cfg, Path(run_dir), loss_fn or default_loss_fn(cfg), resume, extra_meta
    )
    bar = _progress_bar(run, progress)
    start_epoch, skip_batches = divmod(run.step, run.steps_per_epoch)
    run.train_model.train()
    with StopFlag() as stop_flag:
        try:
            for epoch in range(start_epoch, cfg.epochs):
                ep = _Epoch(epoch)
                if run.carried and epoch == start_epoch:
                    ep.sums, ep.n_batches = dict(run.carried["sums"]), int(run.carried["batches"])
                for batch in _epoch_batches(run, epoch, skip_batches if epoch == start_epoch else 0):
                    loss_value, parts = _train_step(run, batch, epoch)
                    ep.add(parts, batch["image"].shape[0] * run.info.world)
                    _show_progress(run, bar, ep, loss_value)
                    if on_step is not None:
                        on_step(run.step, {"epoch": epoch, "loss": loss_value, "lr": run.lr})
                    stopped_by = _checkpoint_or_stop(run, stop_flag, ep, loss_value)
                    if stopped_by:
                        return FitResult(run.run_dir, run.last_path, run.history, run.step, False, stopped_by)
                _end_epoch(run, ep, bar)
        finally:
            if bar is not None:
                bar.close()
    return FitResult(run.run_dir, run.last_path, run.history, run.step, True)


def _progress_bar(run: _Run, progress: bool | None):
    """A tqdm bar over the run's steps (rank 0 only; ``progress=False``: none)."""
    show = run.info.is_main if progress is None else (progress and run.info.is_main)
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=run.total_steps, initial=run.step, desc="train", unit="step", dynamic_ncols=True)


# ----------------------------------------------------------------------------------------
# from a recipe to a trained run (what `handpose train` calls)


def train(
    cfg: TrainConfig,
    run_dir: str | os.PathLike,
    *,
    resume: bool = False,
    progress: bool | None = None,
    extra_meta: Mapping[str, Any] | None = None,
) -> FitResult:
    """Build the model and data of ``cfg`` and :func:`fit` them (the ``handpose train`` command)."""
    check_run_dir(Path(run_dir), resume, cfg)  # before any slow set-up
    pick_device(cfg.device)  # a missing GPU fails now too
    if cfg.init_from:
        ckpt.resolve_checkpoint(cfg.init_from)  # a missing --init-from fails now, not after the data
    torch.manual_seed(cfg.seed)
    model = build_for_config(cfg)
    train_set, val_set = build_datasets(cfg, progress=progress is not False)
    meta = dict(extra_meta or {})
    if cfg.data == "synthetic":  # recorded so that --resume refuses data of another engine version
        from .data.synthetic import GENERATOR_VERSION

        meta["generator_version"] = GENERATOR_VERSION
    with _undone_if_failed(Path(run_dir)):
        return fit(model, train_set, val_set, cfg, run_dir, resume=resume, progress=progress, extra_meta=meta)


@contextlib.contextmanager
def _undone_if_failed(run_dir: Path):
    """A run that fails before its first checkpoint leaves nothing behind: the files and folders
    it created are removed (never what was there before), so the same command can run again."""
    existed = run_dir.exists()
    top = run_dir  # the outermost folder this run creates
    while not top.parent.exists():
        top = top.parent
    before = set(run_dir.iterdir()) if existed else set()
    try:
        yield
    except BaseException:
        main = int(os.environ.get("RANK", "0")) == 0
        if main and run_dir.is_dir() and not (run_dir / ckpt.LAST_FILE).exists():
            for p in set(run_dir.iterdir()) - before:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            d = run_dir
            while not existed and d.is_dir() and not any(d.iterdir()):
                d.rmdir()
                if d == top:
                    break
                d = d.parent
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use the command line: python -m handpose_lib.cli train --help")
