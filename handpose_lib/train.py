"""Training: a readable loop from a config to a run folder of checkpoints and metrics.

One function does the work, :func:`fit`. Read it top to bottom; it is the whole recipe::

    for epoch:                                   # DistributedSampler order, seeded by (seed, epoch)
        for batch:
            with autocast(bf16/fp16 on CUDA):    # mixed precision
                out = model(images)              # channels_last images
                loss, parts = loss_fn(out, batch)
            stop if the loss is NaN/inf          # the last good checkpoint stays
            backward, clip gradients, AdamW step, LR schedule step
            every few minutes: save a checkpoint (atomic, safetensors + JSON)
            Ctrl-C / SIGTERM: save a checkpoint, then stop
        validate: loss parts, 2D EPE, 3D EPE, AUC  -> metrics.jsonl, checkpoint

What makes it reproducible: the seed fixes the initial weights (``torch.manual_seed``), the
data order (``DistributedSampler(seed)``, ``set_epoch``) and the augmentation, which is drawn
from a generator seeded by ``(seed, epoch, sample index)`` inside the data set (so it does not
depend on the number of DataLoader workers or on where a run was resumed). Checkpoints store
the optimiser, scheduler, grad scaler and RNG states and the position inside the epoch, so
``--resume`` continues exactly: training N steps straight or N/2 + resume + N/2 gives the same
weights (``tests/test_train.py::test_resume_is_exact``).

Several GPUs or machines: launch with ``torchrun`` (it sets ``RANK``/``WORLD_SIZE``/
``LOCAL_RANK``); :func:`fit` then wraps the model in ``DistributedDataParallel`` and shards the
data with ``DistributedSampler``; rank 0 validates, logs and writes checkpoints::

    torchrun --nproc_per_node 4 -m handpose_lib.cli train --config paper --data synthetic --out runs/p

The batch size in the config is per process (the effective batch is ``batch_size x world``).

Profiles (``HANDPOSE_PROFILE``): ``quick`` (default: CPU, minutes) and ``full`` (the GPU recipe);
:func:`load_book_model` is what the book's chapters call.

Layer 3: imports ``model``, ``losses``, ``data`` (lazily), ``evaluate`` and ``checkpoint``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler

from . import checkpoint as ckpt
from .config import (
    RESUME_MAY_CHANGE,
    ConfigError,
    TrainConfig,
    build_for_config,
    lr_factor,
    model_config,
    recipe_diff,
    same_recipe,
    tiny_recipe,
)
from .data.common import DatasetError, DatasetNotFoundError
from .data.sample import collate
from .device import autocast_dtype, pick_device, setup_distributed
from .evaluate import evaluate_predictions
from .inference import load_trained, model_from_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]
BOOK_MODEL_DIR = REPO_ROOT / "models" / "book-tiny"
QUICK_RUN_DIR = REPO_ROOT / "runs" / "quick-book"
# the run folders of the book model's two stages; their names change with the recipe (v1 ran in
# runs/book-tiny), so a run of an older recipe is never resumed or packaged as the new one
BOOK_RUN_DIR = REPO_ROOT / "runs" / "book-tiny-v2"  # stage 1 (it was the whole of version 2)
BOOK_STAGE2_DIR = REPO_ROOT / "runs" / "book-tiny-v3"  # stage 2, a warm restart from stage 1
PROFILES = ("quick", "full")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; training stopped without saving the broken state."""


# ----------------------------------------------------------------------------------------
# data


class TrainView(Dataset):
    """A data set seen through per-sample augmentation keyed by ``(epoch, index)``.

    Indexed by ``(epoch, i)`` pairs (what :class:`EpochSampler` yields). The augmentation's
    random numbers come from ``numpy.random.default_rng([seed, epoch, i])``, so a sample looks
    the same whichever worker loads it and whether or not the run was resumed.
    """

    def __init__(self, base: Dataset, transform: Callable | None = None, seed: int = 0):
        self.base, self.transform, self.seed = base, transform, seed

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key):
        epoch, i = key if isinstance(key, tuple) else (0, key)
        sample = self.base[i]
        if self.transform is not None:
            sample = self.transform(sample, np.random.default_rng([self.seed, epoch, i]))
        return sample


class EpochSampler(Sampler):
    """This process's shard of one epoch (``DistributedSampler`` order), from batch ``skip`` on.

    Yields ``(epoch, index)`` pairs for :class:`TrainView`.
    """

    def __init__(self, dist_sampler: DistributedSampler, epoch: int, skip_samples: int = 0):
        self.ds, self.epoch, self.skip = dist_sampler, epoch, skip_samples

    def __iter__(self):
        self.ds.set_epoch(self.epoch)
        for i in list(self.ds)[self.skip :]:
            yield (self.epoch, int(i))

    def __len__(self) -> int:
        return max(0, len(self.ds) - self.skip)


BENCHMARK_SEED = 2  # procedural seeds: 0 training, 1 validation, 2 the benchmark
BENCHMARK_N = 2000


def cache_root() -> Path:
    """Where rendered procedural sets are cached: ``$HANDPOSE_CACHE`` or ``runs/cache``."""
    return Path(os.environ.get("HANDPOSE_CACHE") or REPO_ROOT / "runs" / "cache")


class CachedHands(Dataset):
    """Procedural samples rendered once into a folder (uint8 images in a memory-mapped ``.npy``).

    Rendering costs about 5 ms per 128x128 sample on one CPU core; reading a cached one costs
    microseconds, so a training run renders its pool once (:func:`cached_synthetic`) and then
    spends its CPU on the model. Items are the sample dicts of ``data/sample.py`` (no ``mask``
    or ``depth``), with ``occlusion_fraction`` and ``meta["generator_version"]``.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        info = self.folder / "info.json"
        if not info.is_file():
            raise FileNotFoundError(f"{self.folder}: not a complete procedural cache (no info.json)")
        self.info = json.loads(info.read_text())
        self.labels = dict(np.load(self.folder / "labels.npz"))
        self._images = None  # opened lazily (also in each DataLoader worker)

    def __len__(self) -> int:
        return int(self.info["n"])

    @property
    def images(self) -> np.ndarray:
        if self._images is None:
            self._images = np.load(self.folder / "images.npy", mmap_mode="r")
        return self._images

    def __getstate__(self):
        return {**self.__dict__, "_images": None}

    def __getitem__(self, i: int) -> dict:
        from .data.sample import make_sample

        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} samples")
        i = int(i) % len(self)
        lab = self.labels
        sample = make_sample(
            np.array(self.images[i]),
            lab["joints2d"][i],
            lab["joints3d"][i],
            lab["K"][i],
            dataset="synthetic",
            sample_id=f"synthetic-{self.info['seed']}-{i}",
            visibility=lab["visibility"][i],
            meta={"generator_version": self.info["generator_version"]},
        )
        sample["occlusion_fraction"] = float(lab["occlusion_fraction"][i])
        return sample


class _RenderChunks(Dataset):
    def __init__(self, ds, n: int, chunk: int):
        self.ds, self.n, self.chunk = ds, n, chunk

    def __len__(self):
        return (self.n + self.chunk - 1) // self.chunk

    def __getitem__(self, k):
        idx = list(range(k * self.chunk, min(self.n, (k + 1) * self.chunk)))
        b = self.ds.render_batch(idx)
        img = (b["image"].clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        keys = ("joints2d", "joints3d", "K", "visibility", "occlusion_fraction")
        return k, img, {key: b[key].cpu().numpy() for key in keys}


def cached_synthetic(
    n: int, seed: int, config=None, *, workers: int = 2, progress: bool = True
) -> CachedHands:
    """``SyntheticHands(n, seed, config)`` rendered once into :func:`cache_root` and reused.

    The folder name holds the generator version, seed, n and a hash of the config, so a new
    engine version or config renders a new cache and never mixes with an old one.
    """
    import hashlib

    from .data.synthetic import GENERATOR_VERSION, SyntheticConfig, SyntheticHands

    config = config or SyntheticConfig()
    cdict = config.to_dict()
    h = hashlib.sha256(json.dumps(cdict, sort_keys=True).encode()).hexdigest()[:8]
    folder = cache_root() / f"synthetic-v{GENERATOR_VERSION}-seed{seed}-n{n}-{h}"
    if (folder / "info.json").is_file():
        return CachedHands(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ds = SyntheticHands(n, seed=seed, config=config)
    workers = max(1, min(8, os.cpu_count() or 2)) if workers is None else workers
    size = config.crop_size
    images = np.lib.format.open_memmap(
        folder / "images.npy", mode="w+", dtype=np.uint8, shape=(n, size, size, 3)
    )
    labels: dict[str, np.ndarray] = {}
    chunk = 64
    loader = DataLoader(
        _RenderChunks(ds, n, chunk),
        batch_size=None,
        num_workers=workers,
        worker_init_fn=_one_thread,
        collate_fn=_identity,
    )
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=f"render {folder.name}", unit="img", leave=False)
    for k, img, lab in loader:
        lo = k * chunk
        images[lo : lo + len(img)] = img
        for key, v in lab.items():
            if key not in labels:
                labels[key] = np.zeros((n, *v.shape[1:]), dtype=v.dtype)
            labels[key][lo : lo + len(v)] = v
        if bar is not None:
            bar.update(len(img))
    if bar is not None:
        bar.close()
    images.flush()
    del images
    np.savez(folder / "labels.npz", **labels)
    info = {"generator_version": GENERATOR_VERSION, "seed": seed, "n": n, "config": cdict}
    ckpt.atomic_write_json(folder / "info.json", info)  # written last: marks the cache complete
    return CachedHands(folder)


def _identity(x):
    return x


def _one_thread(_worker_id: int) -> None:
    torch.set_num_threads(1)


def _ignore_ctrl_c(_worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C to the training process (:class:`StopFlag`), which
    saves a checkpoint and then shuts them down; a worker killed by it first could break the save."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def benchmark_dataset(n: int = BENCHMARK_N, image_size: int = 128) -> tuple[Dataset, str]:
    """The versioned procedural benchmark: ``n`` samples (default 2000) of the engine with its
    default occluders, seed :data:`BENCHMARK_SEED`; returns ``(dataset, name)``, and the name
    carries the generator version (bump the version when the engine changes)."""
    from .data.synthetic import GENERATOR_VERSION, SyntheticConfig

    ds = cached_synthetic(n, BENCHMARK_SEED, SyntheticConfig(crop_size=image_size), progress=False)
    return ds, f"synthetic-v{GENERATOR_VERSION}-seed{BENCHMARK_SEED}-n{n}"


def build_datasets(cfg: TrainConfig, progress: bool = True) -> tuple[Dataset, Dataset | None]:
    """Training and validation sets for ``cfg.data`` (samples cropped to the model's input size).

    Procedural data is rendered once into a cache (:func:`cached_synthetic`, with a progress
    bar unless ``progress=False``): ``n_train`` samples of seed ``data_seed`` and ``n_val`` of
    seed ``data_seed + 1``. A real data set validates on its test split; where that split is
    optional (:data:`OPTIONAL_TEST_SPLIT`) and absent, the validation set is ``None``.
    """
    size = model_config(cfg).input_size
    if cfg.data == "synthetic":
        from .data.synthetic import SyntheticConfig

        sc = SyntheticConfig(crop_size=size)
        return (
            cached_synthetic(cfg.n_train, cfg.data_seed, sc, progress=progress),
            cached_synthetic(cfg.n_val, cfg.data_seed + 1, sc, progress=progress),
        )
    if cfg.data_root is None:
        raise ConfigError(f"data {cfg.data!r} needs data_root (the folder of the downloaded data set)")
    train_set = real_dataset(cfg.data, cfg.data_root, "train", size)
    try:
        val_set = real_dataset(cfg.data, cfg.data_root, "test", size)
    except DatasetNotFoundError as e:
        if cfg.data not in OPTIONAL_TEST_SPLIT:
            raise
        print(
            f"note: {cfg.data}'s test split is not there ({str(e).splitlines()[0]}); "
            "training without validation",
            file=sys.stderr,
        )
        val_set = None
    return train_set, val_set


# name -> (class name in handpose_lib.data, loader arguments per split "train"/"test")
REAL_DATASETS: dict[str, tuple[str, dict[str, dict]]] = {
    "stb": ("STB", {"train": {"split": "train"}, "test": {"split": "test"}}),
    "rhd": ("RHD", {"train": {"split": "training"}, "test": {"split": "evaluation"}}),
    "freihand": ("FreiHAND", {"train": {"split": "training"}, "test": {"split": "evaluation"}}),
    "ganerated": ("GANerated", {"train": {}, "test": {}}),
    "synthhands": ("SynthHands", {"train": {}, "test": {}}),
}


# data sets whose layout calls the test split optional (FreiHAND's evaluation zip is separate)
OPTIONAL_TEST_SPLIT = ("freihand",)


def real_dataset(name: str, root: str, split: str, size: int = 128) -> Dataset:
    """A real data set (a key of :data:`REAL_DATASETS`), hand-cropped to ``size x size``.

    GANerated and SynthHands have no official split: both "splits" are the whole set.
    """
    from . import data
    from .data.crop import HandCrop

    if name not in REAL_DATASETS:
        raise ConfigError(f"unknown data set {name!r}; choose synthetic or one of {sorted(REAL_DATASETS)}")
    cls_name, splits = REAL_DATASETS[name]
    try:
        return getattr(data, cls_name)(root, crop=HandCrop(size=size), **splits[split])
    except (ValueError, KeyError, pickle.UnpicklingError) as e:  # labels it cannot use, a refused pickle
        raise DatasetError(
            f"{name} in {root}: {e}; check the folder with `handpose data check {name} {root}`"
        ) from e


def make_augment(cfg: TrainConfig):
    """The training augmentation of a config (``None`` when ``cfg.augment`` is off)."""
    if not cfg.augment:
        return None
    from .data.augment import Augment

    return Augment(rotation_deg=cfg.rotation_deg, scale_range=cfg.scale_range, flip_prob=cfg.flip_prob)


# ----------------------------------------------------------------------------------------
# engine helpers: distributed set-up, precision, schedule, optimiser


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with weight decay on conv/linear weights only (not on biases, norms, LHR beta)."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999))


def default_loss_fn(cfg: TrainConfig) -> Callable:
    """``losses.compute_loss`` with the config's loss weights."""
    from . import losses

    weights = losses.LossWeights(**cfg.loss)
    return functools.partial(losses.compute_loss, weights=weights)


def _to_device(batch: dict, device: torch.device, channels_last: bool) -> dict:
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            v = v.to(device, non_blocking=True)
            if k == "image" and channels_last:
                v = v.contiguous(memory_format=torch.channels_last)
        out[k] = v
    return out


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


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
        batch = _to_device(batch, device, channels_last)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
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
    metrics.update(
        {
            "val_epe2d_px": o["epe2d_px"],
            "val_epe3d_mm": o["epe3d_mm"],
            "val_auc3d_20_50": o["auc3d_20_50"],
            "val_auc2d_0_30": o["auc2d_0_30"],
        }
    )
    for g in ("visible", "hidden"):
        if g in rep.get("by_visibility", {}):
            metrics[f"val_{g}_epe2d_px"] = rep["by_visibility"][g]["epe2d_px"]
            metrics[f"val_{g}_auc3d_20_50"] = rep["by_visibility"][g]["auc3d_20_50"]
    return metrics


# ----------------------------------------------------------------------------------------
# the loop


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


def _append_jsonl(path: Path, row: Mapping[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(ckpt.to_jsonable(dict(row))) + "\n")


def _write_jsonl(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Replace ``path`` with ``rows``, one JSON object per line, atomically."""
    text = "".join(json.dumps(ckpt.to_jsonable(dict(r))) + "\n" for r in rows)
    ckpt.atomic_write_bytes(path, text.encode())


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """The per-epoch rows of ``RUN_DIR/metrics.jsonl``."""
    p = Path(run_dir) / "metrics.jsonl"
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


# what fit writes into a run folder (besides last.json)
RUN_FILES = ("config.json", "metrics.jsonl", ckpt.CKPT_SUBDIR, ckpt.BEST_FILE)


def check_run_dir(run_dir: Path, resume: bool, cfg: TrainConfig):
    """The checkpoint to resume from (``None`` for a new run); refuses to overwrite a run, to
    resume a run that has no checkpoint, or to resume with another recipe (any
    :class:`TrainConfig` field but the bookkeeping ones, ``data_root`` and ``init_from``: another
    ``epochs`` or ``lr`` would change the schedule, so the resumed run would not be exact)."""
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
    return last


def _to_host(values: Sequence[Any], device: torch.device) -> list[float]:
    """Scalar tensors (or numbers) as Python floats, with one device-to-host copy (each
    ``float(t)`` of a CUDA tensor would wait for the GPU again)."""
    return torch.stack(
        [torch.as_tensor(v, device=device).detach().float().reshape(()) for v in values]
    ).tolist()


def _nonfinite_message(
    loss_value: float,
    parts: Mapping[str, Any],
    step: int,
    epoch: int,
    last_path,
    grad_norm: float | None = None,
) -> str:
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
    run_dir = Path(run_dir)
    device = pick_device(cfg.device)
    info = setup_distributed(device.type)
    if device.type == "cuda" and info.enabled:
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    amp_dtype = autocast_dtype(cfg.amp, device)
    loss_fn = loss_fn or default_loss_fn(cfg)
    progress = info.is_main if progress is None else (progress and info.is_main)

    # --- the run folder: refuse to overwrite, or find the checkpoint to resume from
    last = check_run_dir(run_dir, resume, cfg)
    if last is not None and last.meta.get("world_size", info.world) != info.world:
        raise ConfigError(
            f"--resume: the run in {run_dir} was trained by {last.meta['world_size']} process(es), "
            f"this is {info.world}; the data order and steps per epoch depend on it, so resume "
            f"with the same number (torchrun --nproc_per_node {last.meta['world_size']})"
        )
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)

    # --- the model, optimiser, schedule, data
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)  # noqa: NPY002 (legacy global state for third-party code)
    init = None
    if last is not None:
        ckpt.load_weights(model, last)
    elif cfg.init_from:  # a new run that starts from another checkpoint's weights
        init = ckpt.load_checkpoint(cfg.init_from)
        ckpt.load_weights(model, init)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, cfg)

    world_batch = cfg.batch_size * info.world
    steps_per_epoch = len(train_set) // world_batch
    if steps_per_epoch < 1:
        raise ConfigError(
            f"the training set has {len(train_set)} samples, fewer than one batch of {world_batch} "
            "(batch_size x processes); lower batch_size or use more data"
        )
    total_steps = cfg.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        functools.partial(
            lr_factor,
            total=total_steps,
            schedule=cfg.schedule,
            warmup_frac=cfg.warmup_frac,
            final_frac=cfg.final_lr_frac,
            milestones=cfg.step_milestones,
            gamma=cfg.step_gamma,
        ),
    )
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    step = 0
    if last is not None:
        last.restore(optimizer, scheduler, scaler, rng=True)
        step = last.step
    start_epoch, skip_batches = divmod(step, steps_per_epoch)
    # a run stopped mid-epoch saved the epoch's running loss sums: the resumed epoch's logged
    # training loss is then the mean over all its batches, as in an uninterrupted run
    carried = last.meta.get("epoch_progress") if last is not None and skip_batches else None

    train_model = model
    if info.enabled:
        ids = [device.index] if device.type == "cuda" else None
        train_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    view = TrainView(train_set, make_augment(cfg) if cfg.augment else None, seed=cfg.seed)
    dsampler = DistributedSampler(
        train_set, num_replicas=info.world, rank=info.rank, shuffle=True, seed=cfg.seed, drop_last=True
    )
    loader_kw = dict(
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
        drop_last=True,
        persistent_workers=False,
        worker_init_fn=_ignore_ctrl_c,
    )
    val_loader = None
    if val_set is not None and info.is_main:
        val_kw = {k: v for k, v in loader_kw.items() if k not in ("batch_size", "drop_last")}
        val_loader = DataLoader(val_set, batch_size=cfg.batch_size, shuffle=False, **val_kw)

    meta_base = {
        "train_config": cfg.to_dict(),
        "steps_per_epoch": steps_per_epoch,
        "total_steps": total_steps,
        "world_size": info.world,
        "torch": torch.__version__,
        **dict(extra_meta or {}),
    }
    if init is not None:  # where the starting weights came from (kept across resumes)
        meta_base["init_from"] = {
            "path": str(init.path),
            "step": init.step,
            "sha256": init.weights_sha256,
        }
    elif last is not None and "init_from" in last.meta:
        meta_base["init_from"] = last.meta["init_from"]
    if hasattr(_unwrap(model), "config") and hasattr(_unwrap(model).config, "to_dict"):
        meta_base.setdefault("model_config", _unwrap(model).config.to_dict())
    finished_before = last is not None and step >= total_steps
    if last is not None and isinstance(last.meta.get("provenance"), dict):
        # the command that started the run stays its command; a resume is recorded beside it
        prov = dict(last.meta["provenance"])
        new = meta_base.get("provenance", {}).get("command")
        if new is not None and not finished_before:
            prov["resumed_by"] = [*prov.get("resumed_by", []), new]
        meta_base["provenance"] = prov
    if info.is_main and not finished_before:  # resuming a finished run writes nothing
        ckpt.atomic_write_json(run_dir / "config.json", meta_base)

    history = read_metrics(run_dir) if resume else []
    if last is not None and any(r.get("step", 0) > last.step for r in history):
        # a run killed between an epoch's log row and its checkpoint redoes that epoch: drop the
        # row, or the curve would hold the epoch twice
        history = [r for r in history if r.get("step", 0) <= last.step]
        if info.is_main:
            _write_jsonl(run_dir / "metrics.jsonl", history)
    last_path = last.path if last is not None else None
    last_save = last_print = time.monotonic()

    def save(
        epoch: int, metrics: Mapping[str, Any], reason: str, progress: dict | None = None
    ) -> Path | None:
        nonlocal last_path, last_save
        last_save = time.monotonic()
        if not info.is_main:
            return None
        sidecar = {**meta_base, "epoch": epoch, "step": step, "reason": reason, "metrics": dict(metrics)}
        if progress is not None:
            sidecar["epoch_progress"] = progress
        last_path = ckpt.save_run_checkpoint(
            run_dir,
            step,
            model,
            sidecar,
            keep_last=cfg.keep_last,
            optimizer=optimizer,
            scheduler=scheduler,
            scaler=scaler,
        )
        return last_path

    def sync_flags(nonfinite: bool, stop: bool, save_now: bool) -> tuple[bool, bool, bool]:
        """One small all-reduce so every process agrees on NaN, stop and checkpoint decisions."""
        if not info.enabled:
            return nonfinite, stop, save_now
        t = torch.tensor([float(nonfinite), float(stop), float(save_now)], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t[0]), bool(t[1]), bool(t[2])

    # --- train
    train_model.train()
    stopped_by = ""
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, initial=step, desc="train", unit="step", dynamic_ncols=True)
    with StopFlag() as stop_flag:
        try:
            for epoch in range(start_epoch, cfg.epochs):
                sampler = EpochSampler(dsampler, epoch, skip_batches * cfg.batch_size)
                skip_batches = 0
                # its own generator: creating the loader must not consume the global RNG
                gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
                loader = DataLoader(view, sampler=sampler, generator=gen, **loader_kw)
                sums: dict[str, float] = dict(carried["sums"]) if carried else {}
                n_batches = int(carried["batches"]) if carried else 0
                carried = None
                t_epoch = time.perf_counter()
                t_log, seen_log = time.perf_counter(), 0
                for batch in loader:
                    batch = _to_device(batch, device, cfg.channels_last)
                    with torch.autocast(
                        device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
                    ):
                        out = train_model(batch["image"])
                        loss, parts = loss_fn(out, batch)
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    # fp16's GradScaler skips steps with inf gradients by itself; otherwise the
                    # gradients' norm is checked, so that NaN never reaches the weights
                    check_grads = not scaler.is_enabled()
                    gnorm = None
                    if cfg.grad_clip or check_grads:
                        scaler.unscale_(optimizer)
                        # max_norm inf: no clipping, only the norm (x 1.0 leaves gradients exact)
                        gnorm = torch.nn.utils.clip_grad_norm_(
                            train_model.parameters(), cfg.grad_clip or float("inf")
                        )
                    # one device-to-host copy per step: the loss, the gradients' norm, the parts
                    head = [loss] + ([gnorm] if check_grads else [])
                    values = _to_host([*head, *parts.values()], loss.device)
                    loss_value = values[0]
                    gnorm_value = values[1] if check_grads else None
                    part_values = dict(zip(parts, values[len(head) :]))
                    bad_loss = not math.isfinite(loss_value)
                    bad_grads = gnorm_value is not None and not math.isfinite(gnorm_value)
                    bad, _, _ = sync_flags(bad_loss or bad_grads, False, False)
                    if bad:  # before the optimiser step: the weights stay the last good ones
                        raise NonFiniteLossError(
                            _nonfinite_message(
                                loss_value,
                                part_values,
                                step,
                                epoch,
                                last_path,
                                None if bad_loss else gnorm_value,
                            )
                        )
                    scaler.step(optimizer)
                    scaler.update()
                    scheduler.step()
                    step += 1
                    n_batches += 1
                    for k, v in part_values.items():
                        sums[k] = sums.get(k, 0.0) + v
                    seen_log += batch["image"].shape[0] * info.world
                    step_info = {"epoch": epoch, "loss": loss_value, "lr": optimizer.param_groups[0]["lr"]}
                    if bar is not None and (step % cfg.log_every == 0 or step == total_steps):
                        dt = time.perf_counter() - t_log
                        bar.set_postfix(
                            loss=f"{loss_value:.4f}",
                            lr=f"{step_info['lr']:.2e}",
                            img_s=f"{seen_log / max(dt, 1e-9):.0f}",
                            refresh=False,
                        )
                        t_log, seen_log = time.perf_counter(), 0
                    if bar is not None:
                        bar.update(1)
                    elif info.is_main and time.monotonic() - last_print > 120:
                        last_print = time.monotonic()
                        rate = (n_batches * world_batch) / max(time.perf_counter() - t_epoch, 1e-9)
                        print(
                            f"step {step}/{total_steps} epoch {epoch + 1} loss {loss_value:.4f} "
                            f"lr {step_info['lr']:.2e} {rate:.0f} img/s",
                            flush=True,
                        )
                    if on_step is not None:
                        on_step(step, step_info)
                    due = (time.monotonic() - last_save) > 60.0 * cfg.ckpt_every_min
                    at_max = cfg.max_steps is not None and step >= cfg.max_steps
                    _, stop, save_now = sync_flags(False, stop_flag.requested or at_max, due)
                    if stop:
                        stopped_by = stop_flag.signal_name or ("max_steps" if at_max else "another process")
                        progress_now = {"sums": dict(sums), "batches": n_batches}
                        save(epoch, {"train_loss": loss_value}, f"stopped ({stopped_by})", progress_now)
                        return FitResult(run_dir, last_path, history, step, False, stopped_by)
                    if save_now and step < (epoch + 1) * steps_per_epoch:
                        save(
                            epoch,
                            {"train_loss": loss_value},
                            "periodic",
                            {"sums": dict(sums), "batches": n_batches},
                        )

                # --- end of epoch: validate, log, checkpoint
                dt = time.perf_counter() - t_epoch
                row = {
                    "epoch": epoch + 1,
                    "step": step,
                    "lr": optimizer.param_groups[0]["lr"],
                    "time_s": dt,
                    "img_per_s": n_batches * world_batch / max(dt, 1e-9),
                    **{f"train_{k}": v / max(1, n_batches) for k, v in sums.items()},
                }
                if val_loader is not None and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
                    row.update(validate(model, val_loader, loss_fn, device, amp_dtype, cfg.channels_last))
                if info.is_main:
                    history.append(row)
                    _append_jsonl(run_dir / "metrics.jsonl", row)
                    msg = ", ".join(
                        f"{k[4:]}={row[k]:.3g}"
                        for k in ("val_epe2d_px", "val_epe3d_mm", "val_auc3d_20_50")
                        if row.get(k) is not None
                    )
                    tl = row.get("train_total", float("nan"))
                    line = f"epoch {epoch + 1}/{cfg.epochs}: train loss {tl:.4f}"
                    line += f", {msg}" if msg else ""
                    if bar is not None:
                        bar.write(line)
                    else:
                        print(line, flush=True)
                save(epoch + 1, row, "epoch end")
                if info.enabled:
                    dist.barrier()
        finally:
            if bar is not None:
                bar.close()
    return FitResult(run_dir, last_path, history, step, True)


# ----------------------------------------------------------------------------------------
# from a config to a trained run (what `handpose train` calls)


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


# ----------------------------------------------------------------------------------------
# the book model


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
        say(f"book model: {c.path} (trained with: {c.meta.get('provenance', {}).get('command', '?')})")
        return model, {
            "source": "book",
            "path": str(c.path),
            "metrics": c.meta.get("metrics", {}),
            "meta": c.meta,
        }
    if prof == "quick":
        stages, what = [(QUICK_RUN_DIR, quick_recipe())], "a quick model into runs/quick-book"
    else:
        stages, what = book_stages(), "the book recipe's two stages into runs/book-tiny-v2 and -v3"
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
        say(f"NOTE: the book model is missing; using the model trained earlier in {stages[-1][0]}")
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


def _total_steps(cfg: TrainConfig) -> int:
    return cfg.epochs * (cfg.n_train // cfg.batch_size)


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


def book_stages(
    stage1_dir: str | os.PathLike | None = None, stage2_dir: str | os.PathLike | None = None
) -> list[tuple[Path, TrainConfig]]:
    """The book model's training stages in order, ``[(run folder, config), ...]``; the folders
    default to :data:`BOOK_RUN_DIR` and :data:`BOOK_STAGE2_DIR`."""
    stage1, stage2 = Path(stage1_dir or BOOK_RUN_DIR), Path(stage2_dir or BOOK_STAGE2_DIR)
    return [(stage1, book_recipe()), (stage2, book_stage2_recipe(stage1))]


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
    prev: ckpt.Checkpoint | None = None
    for k, (run_dir, cfg) in enumerate(stages, 1):
        run_dir, total = Path(run_dir), _total_steps(cfg)
        last = ckpt.load_checkpoint(run_dir) if (run_dir / ckpt.LAST_FILE).is_file() else None
        if last is not None:
            if not same_recipe(last.meta.get("train_config", {}), cfg.to_dict(), ignore=("init_from",)):
                raise ConfigError(
                    f"{run_dir} holds a run of another recipe (an older version?) than its stage "
                    f"({k} of {len(stages)}) needs; move it away or pass another run folder "
                    "(the book model: handpose book-model --stage1 DIR --stage2 DIR)"
                )
            started = last.meta.get("init_from", {}).get("sha256")
            if prev is not None and started != prev.weights_sha256:
                raise ConfigError(
                    f"{run_dir} (stage {k}) did not start from the final weights of stage {k - 1} "
                    f"({prev.path}); move it away so that stage {k} is trained again"
                )
        if last is None or last.step < total:
            res = train(cfg, run_dir, resume=last is not None, progress=progress)
            if not res.finished:
                return None, (
                    f"training ({run_dir}) stopped at step {res.step} of {total}; "
                    "run `make model` (or the chapter) again to resume"
                )
            last = ckpt.load_checkpoint(run_dir)
        prev = last
    return prev, ""


def book_history(stages: Sequence[tuple[Path, TrainConfig]]) -> list[dict]:
    """The stages' ``metrics.jsonl`` rows as one curve: each row gets its ``stage`` (1, 2, ..),
    and ``epoch``/``step`` count on from the earlier stages (stage 2's first epoch is 11)."""
    rows: list[dict] = []
    epochs = steps = 0
    for k, (run_dir, cfg) in enumerate(stages, 1):
        for r in read_metrics(run_dir):
            rows.append({**r, "stage": k, "epoch": r["epoch"] + epochs, "step": r["step"] + steps})
        epochs, steps = epochs + cfg.epochs, steps + _total_steps(cfg)
    return rows


def build_book_model(
    out_dir: str | os.PathLike,
    stage_dirs: Sequence[str | os.PathLike | None] = (None, None),
    progress: bool = True,
) -> str:
    """Train (or resume, or reuse) the book model's stages (:func:`book_stages`; one run folder
    each, ``None`` for the default), evaluate the final weights on the procedural benchmark and
    write the compact fp16 checkpoint with its provenance to ``out_dir``, with both stages'
    learning curves in one ``metrics.jsonl`` (:func:`book_history`)."""
    import platform

    from . import evaluate as ev

    out_dir = Path(out_dir)
    stages = book_stages(*stage_dirs)
    final, message = train_stages(stages, progress)
    if final is None:
        return message
    cfg, c = stages[-1][1], final
    model = model_from_checkpoint(c).half().float()  # exactly what the fp16 checkpoint will hold
    data, name = benchmark_dataset()
    rep = ev.evaluate(model, data, dataset=name, batch_size=64, device="cpu")
    hist = book_history(stages)
    o = rep["overall"]
    headline = {
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
    sidecar = {
        "model_config": c.meta["model_config"],
        "train_config": c.meta["train_config"],
        "epoch": c.epoch,
        "step": c.step,
        "metrics": headline,
        "provenance": {
            "command": "make model  (python -m handpose_lib.cli book-model)",
            "commit": git_commit(),
            "budget": {
                "steps": sum(_total_steps(sc) for _, sc in stages),
                "steps_per_stage": [_total_steps(sc) for _, sc in stages],
                "epochs": sum(sc.epochs for _, sc in stages),
                "samples_seen": sum(_total_steps(sc) * sc.batch_size for _, sc in stages),
                "unique_procedural_samples": cfg.n_train,
                "train_wall_time_s": round(sum(r.get("time_s", 0.0) for r in hist), 1),
            },
            "stages": [
                str(d.resolve().relative_to(REPO_ROOT)) if d.resolve().is_relative_to(REPO_ROOT) else str(d)
                for d, _ in stages
            ],
            "last_stage_started_from": c.meta.get("init_from"),  # path, step, sha256 of stage 1's end
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}",
            "weights": "float16 (trained in float32)",
        },
    }
    ckpt.save_checkpoint(out_dir, model, sidecar, save_rng=False, weights_dtype=torch.float16)
    ev.write_report(rep, out_dir / "benchmark.json")
    if hist:  # the learning curves chapter 6 plots
        _write_jsonl(out_dir / "metrics.jsonl", hist)
    size_mb = (out_dir / ckpt.MODEL_FILE).stat().st_size / 1e6
    return f"book model: {out_dir} ({size_mb:.1f} MB)\n" + ev.summary(rep)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use the command line: python -m handpose_lib.cli train --help")
