"""Training configuration: :class:`TrainConfig`, the named recipes and how to load one.

A *recipe* is a complete :class:`TrainConfig`: the model, the data, the optimisation and the
bookkeeping of one training run. The named recipes are ``tiny`` (:func:`tiny_recipe`, CPU) and
``paper`` (:func:`paper_recipe`, one GPU); a YAML file holds a recipe too (:func:`load_config`),
and :mod:`handpose_lib.book_model` has the book model's stages. Every checkpoint's sidecar stores
its recipe (``TrainConfig.to_dict()``), so :func:`recipe_diff` can say whether a run may be
resumed with the recipe given now.

What a recipe builds: the model (:func:`model_config`, :func:`build_for_config`), the training and
validation sets (:func:`build_datasets`, :func:`real_dataset`), the augmentation
(:func:`make_augment`), the optimiser (:func:`make_optimizer`), the learning-rate schedule
(:func:`lr_factor`, :func:`make_scheduler`) and the loss (:func:`default_loss_fn`).

Layer 2: imports ``checkpoint``; ``model``, ``losses`` and ``data`` when a function needs them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import pickle
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from . import checkpoint as ckpt

if TYPE_CHECKING:
    from torch.utils.data import Dataset


class ConfigError(ValueError):
    """A training recipe (name, YAML file or field) is not valid."""


@dataclass
class TrainConfig:
    """Everything a training run needs besides the data set itself (saved in every checkpoint).

    Model:
        model: ``"tiny"`` or ``"paper"`` (:func:`handpose_lib.model.tiny_config` /
            ``paper_config``); ``model_overrides`` changes fields of that ``ModelConfig``.
    Data:
        data: ``"synthetic"`` (the procedural engine) or a real data set name (``stb``,
            ``ganerated``, ``synthhands``, ``rhd``, ``freihand``) with ``data_root``.
        n_train, n_val: number of procedural samples (train / validation; other seeds).
        data_seed: seed of the procedural training set (``data.cached.TRAIN_SEED``, 0); validation
            uses ``data_seed + 1`` (``VAL_SEED``); the test set's seed is ``TEST_SEED``, 2.
        augment: rotation/scale/colour augmentation (``data.augment.Augment``) of training samples.
        rotation_deg, scale_range, flip_prob: its geometry.
        recrop: first crop each (already cropped) sample again by the evaluation's rule (the
            joints' box plus 20 % per side, ``data.crop.HandCrop``) with its centre moved by up
            to ``crop_jitter`` of the side and its side scaled by ``U(crop_scale_range)``, the
            way a hand detector's box misses the hand's.
        fda: probability of Fourier domain adaptation (``data.fda.FDA``: the low-frequency
            amplitude of one of the engine's background photographs, half-band
            ``U(fda_beta) * 128`` frequencies); 0 = off.
        camera: a random camera per sample (``data.camera_effects.CameraEffects``: exposure,
            white balance, gamma, vignetting, defocus / motion blur, sensor noise, JPEG).
        All four are off by default: a recipe without them trains as before.
        engine: fields of the procedural engine's ``data.synthetic.SyntheticConfig`` for the
            training and validation samples (e.g. ``{"hand_model": "mesh", "left_hand_prob":
            0.5}``); empty = the engine's defaults (``crop_size`` follows the model's input).
    Optimisation:
        epochs, batch_size (per process), lr (peak), weight_decay (AdamW, not on norms/biases),
        schedule: ``"onecycle"`` (linear warm-up then cosine to ``lr * final_lr_frac``),
        ``"cosine"`` (no warm-up), ``"step"`` (x ``step_gamma`` at ``step_milestones``, fractions
        of the run) or ``"constant"``; warmup_frac: fraction of the steps spent warming up.
        grad_clip: max gradient norm (0 = off). loss: fields of ``losses.LossWeights``.
        init_from: start from the weights of this checkpoint (a run folder or checkpoint
        folder, e.g. a finished run or ``models/book-tiny``) instead of a random
        initialisation: a second training stage or a fine-tune. Only the weights are taken;
        optimiser, schedule and step start afresh (``--resume`` continues a run instead).
    Engine:
        device: ``"auto"`` (CUDA, else MPS, else CPU) or a torch device name.
        amp: ``"auto"`` (bf16 on CUDA where supported, else fp16; off on CPU/MPS), ``"bf16"``,
        ``"fp16"`` (CUDA only), ``"off"``, or ``"measure"``: as ``"auto"`` on a GPU; on a CPU
        the run times a few training passes of its model in float32 and in bf16 autocast
        (``device.measure_cpu_amp``), trains with the faster, and records both speeds and the
        choice in its sidecar (``amp_measured``; a resumed run keeps the recorded choice).
        channels_last: NHWC memory layout.
        num_workers: DataLoader worker processes; pin_memory on CUDA.
        threads: torch CPU threads (0 = torch's default).
    Bookkeeping:
        seed, ckpt_every_min (minutes between checkpoints), keep_last (checkpoints kept),
        val_every (epochs), log_every (steps between progress-bar updates),
        max_steps: stop (with a checkpoint) after this global step, the schedule unchanged,
        val_real: also validate on the 16 shipped real photos (``evaluate.real_photos_metrics``:
        ground-truth-box crops, 2D EPE and PCK@0.2) and log them as ``val_real_*``.
    """

    model: str = "tiny"
    model_overrides: dict = field(default_factory=dict)
    data: str = "synthetic"
    data_root: str | None = None
    n_train: int = 4096
    n_val: int = 256
    data_seed: int = 0
    augment: bool = True
    rotation_deg: float = 20.0
    scale_range: tuple[float, float] = (0.95, 1.05)
    flip_prob: float = 0.0
    recrop: bool = False
    crop_jitter: float = 0.08
    crop_scale_range: tuple[float, float] = (0.9, 1.1)
    fda: float = 0.0
    fda_beta: tuple[float, float] = (0.01, 0.05)
    camera: bool = False
    engine: dict = field(default_factory=dict)
    epochs: int = 4
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    schedule: str = "onecycle"
    warmup_frac: float = 0.05
    final_lr_frac: float = 0.01
    step_milestones: tuple[float, ...] = (0.6, 0.85)
    step_gamma: float = 0.1
    grad_clip: float = 5.0
    loss: dict = field(default_factory=dict)
    init_from: str | None = None
    device: str = "auto"
    amp: str = "auto"
    channels_last: bool = True
    num_workers: int = 2
    threads: int = 0
    seed: int = 0
    ckpt_every_min: float = 5.0
    keep_last: int = 2
    val_every: int = 1
    log_every: int = 5
    max_steps: int | None = None
    val_real: bool = False

    def __post_init__(self):
        self._check_types()
        if self.model not in ("tiny", "paper"):
            raise ConfigError(f"TrainConfig.model must be 'tiny' or 'paper', got {self.model!r}")
        if self.schedule not in ("onecycle", "cosine", "step", "constant"):
            raise ConfigError(f"TrainConfig.schedule: unknown schedule {self.schedule!r}")
        if self.amp not in ("auto", "bf16", "fp16", "off", "measure"):
            raise ConfigError(f"TrainConfig.amp must be auto, bf16, fp16, off or measure, got {self.amp!r}")
        for name in ("epochs", "batch_size", "n_train", "val_every", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("n_val", "num_workers", "threads", "keep_last", "weight_decay", "grad_clip"):
            if getattr(self, name) < 0:
                raise ConfigError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("warmup_frac", "final_lr_frac", "flip_prob", "fda", "crop_jitter"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"TrainConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        if not self.lr >= 0:
            raise ConfigError(f"TrainConfig.lr must be a learning rate >= 0 (e.g. 2e-3), got {self.lr}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(
                f"TrainConfig.max_steps must be >= 1 (or null for no limit), got {self.max_steps}"
            )
        if not self.ckpt_every_min > 0:
            raise ConfigError(f"TrainConfig.ckpt_every_min must be > 0 minutes, got {self.ckpt_every_min}")
        for name in ("scale_range", "crop_scale_range", "fda_beta"):
            lo_hi = getattr(self, name)
            if len(lo_hi) != 2 or not 0 < lo_hi[0] <= lo_hi[1]:
                raise ConfigError(f"TrainConfig.{name} must be [low, high] with 0 < low <= high, got {lo_hi}")
        self.scale_range = tuple(float(v) for v in self.scale_range)
        self.crop_scale_range = tuple(float(v) for v in self.crop_scale_range)
        self.fda_beta = tuple(float(v) for v in self.fda_beta)
        self.step_milestones = tuple(float(v) for v in self.step_milestones)

    def _check_types(self) -> None:
        """A YAML or sidecar value of the wrong type (``epochs: "10"``, ``lr: fast``) is named."""

        def number(v) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        checks = {
            "str": (lambda v: isinstance(v, str), "a string"),
            "str | None": (lambda v: v is None or isinstance(v, str), "a string or null"),
            "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
            "int | None": (
                lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)),
                "an integer or null",
            ),
            "float": (number, "a finite number"),
            "bool": (lambda v: isinstance(v, bool), "true or false"),
            "dict": (lambda v: isinstance(v, dict), "a mapping"),
            "tuple[float, float]": (
                lambda v: isinstance(v, (list, tuple)) and all(map(number, v)),
                "a list of numbers",
            ),
            "tuple[float, ...]": (
                lambda v: isinstance(v, (list, tuple)) and all(map(number, v)),
                "a list of numbers",
            ),
        }
        for f in dataclasses.fields(self):
            ok, want = checks[str(f.type)]
            v = getattr(self, f.name)
            if not ok(v):
                raise ConfigError(f"TrainConfig.{f.name} must be {want}, got {v!r} ({type(v).__name__})")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown training config keys {unknown}; known keys: {sorted(known)}")
        return cls(**d)


def tiny_recipe(**overrides) -> TrainConfig:
    """The CPU recipe (the ``tiny`` config): a narrow ResUnet on procedural data, minutes to an hour."""
    return TrainConfig(**overrides)


def paper_recipe(**overrides) -> TrainConfig:
    """The paper's model (ResNet-34 ResUnet, 128x128) on one GPU: ``handpose train --recipe paper``."""
    cfg = dict(
        model="paper",
        n_train=200_000,
        n_val=2000,
        epochs=30,
        batch_size=64,
        lr=1e-3,
        weight_decay=1e-4,
        num_workers=8,
        ckpt_every_min=10.0,
    )
    cfg.update(overrides)
    return TrainConfig(**cfg)


RECIPES: dict[str, Callable[..., TrainConfig]] = {"tiny": tiny_recipe, "paper": paper_recipe}


def load_config(name_or_path: str, **overrides) -> TrainConfig:
    """A named recipe (``"tiny"``, ``"paper"``) or a YAML file; ``overrides`` win.

    A YAML file holds :class:`TrainConfig` fields, optionally with ``base: tiny|paper`` to start
    from a named recipe, e.g.::

        base: tiny
        epochs: 20
        lr: 0.003
        loss: {heatmap: 1.0, bones: 1.0}
    """
    if name_or_path in RECIPES:
        return RECIPES[name_or_path](**overrides)
    p = Path(name_or_path)
    if not p.is_file():
        raise ConfigError(
            f"recipe {name_or_path!r} is neither a recipe name ({', '.join(RECIPES)}) "
            "nor an existing YAML file"
        )
    import yaml

    try:
        d = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({e})") from e
    if not isinstance(d, dict):
        raise ConfigError(f"{p}: expected a mapping of TrainConfig fields, got {type(d).__name__}")
    base = d.pop("base", "tiny")
    if base not in RECIPES:
        raise ConfigError(f"{p}: base must be one of {list(RECIPES)}, got {base!r}")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"{p}: unknown keys {unknown}; known keys: {sorted(known)}")
    try:
        return RECIPES[base](**{**d, **overrides})
    except TypeError as e:
        raise ConfigError(f"{p}: {e}") from e


def model_config(cfg: TrainConfig):
    """The ``ModelConfig`` a training config asks for."""
    from .model import paper_config, tiny_config

    make = tiny_config if cfg.model == "tiny" else paper_config
    try:
        return make(**cfg.model_overrides)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model_overrides: {e}") from e


def build_for_config(cfg: TrainConfig, checkpoint=None):
    """The model for ``cfg`` (with weights from a loaded checkpoint when given)."""
    from .model import build_model

    model = build_model(model_config(cfg))
    if checkpoint is not None:
        ckpt.load_weights(model, checkpoint)
    return model


def lr_factor(step: int, total: int, schedule: str, warmup_frac: float, final_frac: float, milestones, gamma):
    """The learning-rate multiplier at ``step`` of ``total`` (a pure function; see TrainConfig)."""
    total = max(1, total)
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        return gamma ** sum(step >= m * total for m in milestones)
    warm = int(warmup_frac * total) if schedule == "onecycle" else 0
    if step < warm:
        return (step + 1) / warm
    t = min(1.0, (step - warm) / max(1, total - warm))
    return final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * t))


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    """The learning-rate schedule of ``cfg`` over ``total_steps`` steps (``config.lr_factor``)."""
    factor = functools.partial(
        lr_factor,
        total=total_steps,
        schedule=cfg.schedule,
        warmup_frac=cfg.warmup_frac,
        final_frac=cfg.final_lr_frac,
        milestones=cfg.step_milestones,
        gamma=cfg.step_gamma,
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


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


# fields that do not change what a run computes (where it runs, how often it saves or logs)
BOOKKEEPING = (
    "device",
    "num_workers",
    "threads",
    "ckpt_every_min",
    "keep_last",
    "log_every",
    "max_steps",
    "val_real",
)
# ... and those a resumed run may change besides: where the data lies, and init_from (only a new
# run reads those weights; a resumed one reads its own checkpoint)
RESUME_MAY_CHANGE = ("data_root", "init_from")


def recipe_diff(a: Mapping[str, Any], b: Mapping[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    """The fields in which two ``TrainConfig.to_dict()`` dicts (or their JSON) differ, ignoring
    :data:`BOOKKEEPING` fields and those in ``ignore``. A field one of them lacks (a recipe saved
    before the field existed) counts as its default, which is what that run trained with."""
    skip = set(BOOKKEEPING) | set(ignore)
    defaults = TrainConfig().to_dict()

    def norm(d):
        d = {**defaults, **d}
        return json.loads(json.dumps(ckpt.to_jsonable({k: v for k, v in d.items() if k not in skip})))

    na, nb = norm(a), norm(b)
    return sorted(k for k in set(na) | set(nb) if na.get(k) != nb.get(k))


def same_recipe(a: Mapping[str, Any], b: Mapping[str, Any], ignore: tuple[str, ...] = ()) -> bool:
    """Whether two ``TrainConfig.to_dict()`` dicts (or their JSON) train the same model, ignoring
    :data:`BOOKKEEPING` fields and those in ``ignore``."""
    return not recipe_diff(a, b, ignore)


def build_datasets(cfg: TrainConfig, progress: bool = True) -> tuple[Dataset, Dataset | None]:
    """Training and validation sets for ``cfg.data`` (samples cropped to the model's input size).

    Procedural data is rendered once into the cache (``data.rendered.cached_synthetic``, with a
    progress bar unless ``progress=False``): ``n_train`` samples of seed ``data_seed`` and
    ``n_val`` of seed ``data_seed + 1``. A real data set validates on its test split; where that
    split is optional (:data:`OPTIONAL_TEST_SPLIT`) and absent, the validation set is ``None``.
    """
    from .data.common import DatasetNotFoundError

    size = model_config(cfg).input_size
    if cfg.data == "synthetic":
        from .data.rendered import cached_synthetic

        sc = engine_config(cfg, size)
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


def engine_config(cfg: TrainConfig, crop_size: int | None = None):
    """The ``SyntheticConfig`` of ``cfg``'s procedural samples (``cfg.engine`` over the engine's
    defaults, crops of the model's input size); an unknown or invalid field is a ``ConfigError``."""
    from .data.synthetic import SyntheticConfig

    known = {f.name for f in dataclasses.fields(SyntheticConfig)} - {"crop_size"}
    unknown = sorted(set(cfg.engine) - known)
    if unknown:
        raise ConfigError(f"TrainConfig.engine: unknown engine fields {unknown}; known: {sorted(known)}")
    try:
        sc = SyntheticConfig(crop_size=crop_size or model_config(cfg).input_size, **cfg.engine)
        sc.check()
        return sc
    except (TypeError, ValueError) as e:
        raise ConfigError(f"TrainConfig.engine {cfg.engine}: {e}") from None


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
    from .data.common import DatasetError
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
    from .data.camera_effects import CameraEffects
    from .data.crop import HandCrop
    from .data.fda import FDA

    recrop = None
    if cfg.recrop:
        size = model_config(cfg).input_size
        recrop = HandCrop(size=size, margin=0.2, jitter=cfg.crop_jitter, scale_range=cfg.crop_scale_range)
    return Augment(
        rotation_deg=cfg.rotation_deg,
        scale_range=cfg.scale_range,
        flip_prob=cfg.flip_prob,
        recrop=recrop,
        fda=FDA(prob=cfg.fda, beta_range=cfg.fda_beta) if cfg.fda else None,
        camera=CameraEffects() if cfg.camera else None,
    )
