"""The occlusion study: occlusion test sets, metrics by occlusion level, and ablations.

**The occlusion test sets** (:func:`build_test_sets`, ``handpose occlusion``) are fixed
procedural sets, a pure function of the generator version and the arguments:

- *levels*: samples whose fraction of hidden hand pixels (the engine's exact
  ``occlusion_fraction``) falls in a bin around 0, 10, 20, 40 and 60 % (:data:`LEVEL_BINS`).
  Candidates are scenes ``0, 1, 2, ...`` of seed ``data.cached.OCCLUSION_TEST_SEED``, each rendered at the
  engine's occlusion settings ``0, 0.3, 0.5, 0.9, 1.0`` (the same hand, camera and background:
  only the objects change); every bin takes the first ``n`` candidates (scene order, then
  setting order) that land in it, at most one version of each scene per bin.
- *targeted*: the object-free version of scenes with a pasted soft-edged disc or bar
  (``data.occlude``) over one fingertip (the index tip), one finger (index MCP to tip), the
  palm (wrist and the four MCPs) or the thumb; visibility updated by the occluder's alpha.

The sets are stored in the library's one rendered-set format (``data.cached.ArraySet``: one
folder per set) under ``cache_dir("sets")`` (:func:`test_sets_dir`), with ``info.json`` naming each
set's folder, size and :func:`fingerprint`.

**Metrics** (:func:`evaluate_test_sets`): ``evaluate.evaluate_predictions`` on every set, which
splits 2D EPE, 3D EPE and AUC by visibility reason (visible / hidden by object / hidden by the
hand), per finger and per joint.

**Ablations** (:class:`Variant`, :data:`VARIANTS`, :func:`run_variant`): every variant trains
with the same profile (:class:`StudyProfile`, ``quick`` or ``full``) and seed; each variant
says what it changes against (a). Chapter 8's precomputed figures are made from the trained
variants by ``tools/occlusion_showcase.py``.

Layer 4: imports ``skeleton``, ``data``, ``lhr``, ``losses``, ``config``, ``checkpoint``, ``train``,
``evaluate`` and ``inference``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from . import skeleton
from .data.cached import OCCLUSION_TEST_SEED, TRAIN_SEED, ArraySet, cache_dir
from .data.rendered import to_uint8
from .data.sample import VIS_OUTSIDE, VIS_VISIBLE
from .lhr import argmax_decode

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "results" / "occlusion"
SET_DATASET = "occlusion-test"  # the samples' meta["dataset"]
ENGINE_SETTINGS = (0.0, 0.3, 0.5, 0.9, 1.0)
# level name -> [lo, hi) of the hidden fraction of hand pixels
LEVEL_BINS: dict[str, tuple[float, float]] = {
    "0%": (0.0, 0.005),
    "10%": (0.05, 0.15),
    "20%": (0.15, 0.30),
    "40%": (0.30, 0.50),
    "60%": (0.50, 0.80),
}
LEVEL_VALUES = {"0%": 0.0, "10%": 0.1, "20%": 0.2, "40%": 0.4, "60%": 0.6}
TARGETS = ("fingertip", "finger", "palm", "thumb")
SET_NAMES = tuple(LEVEL_BINS) + TARGETS
WRIST = 0
INDEX_TIP = skeleton.FINGERS["index"][-1]
PALM_JOINTS = (WRIST, *(skeleton.FINGERS[f][0] for f in ("index", "middle", "ring", "pinky")))  # + MCPs


# ----------------------------------------------------------------------------------------
# the occlusion test sets


def _render(seed: int, idx: list[int], level: float, size: int) -> dict[str, np.ndarray]:
    from .data.synthetic import SyntheticConfig, SyntheticHands

    ds = SyntheticHands(max(idx) + 1, seed=seed, config=SyntheticConfig(crop_size=size, occlusion=level))
    b = ds.render_batch(idx)
    out = {k: b[k].cpu().numpy() for k in ("joints2d", "joints3d", "K", "visibility", "occlusion_fraction")}
    out["image"] = to_uint8(b["image"])
    return out


def target_occluder(target: str, joints2d: np.ndarray, rng: np.random.Generator):
    """The pasted :class:`~handpose_lib.data.occlude.Occluder` of a targeted case."""
    from .data.occlude import Occluder

    j = np.asarray(joints2d, np.float64)
    span = float(np.linalg.norm(j.max(0) - j.min(0)))
    color = tuple(float(c) for c in rng.uniform(0.1, 0.9, 3))
    texture = ("flat", "stripes")[int(rng.integers(2))]
    if target == "fingertip":
        r = max(0.07 * span, 3.0)
        return Occluder(tuple(j[INDEX_TIP]), (r, r), 0.0, "ellipse", texture, color, 1.0)
    if target == "palm":
        pts = j[list(PALM_JOINTS)]
        c = pts.mean(0)
        r = max(0.6 * float(np.linalg.norm(pts - c, axis=1).max()), 4.0)
        return Occluder(tuple(c), (r, r), 0.0, "ellipse", texture, color, 1.5)
    pts = j[list(skeleton.FINGERS["index" if target == "finger" else "thumb"])]
    c = pts.mean(0)
    d = pts[-1] - pts[0]
    u = d / max(float(np.linalg.norm(d)), 1e-6)
    nrm = np.array([-u[1], u[0]])
    along, across = (pts - c) @ u, (pts - c) @ nrm
    margin = max(0.06 * span, 3.0)
    centre = c + u * (along.max() + along.min()) / 2 + nrm * (across.max() + across.min()) / 2
    half_len = (along.max() - along.min()) / 2 + margin
    half_wid = (across.max() - across.min()) / 2 + margin
    ang = float(np.degrees(np.arctan2(-u[1], u[0])))  # counter-clockwise on screen
    return Occluder(tuple(centre), (half_len, half_wid), ang, "rectangle", texture, color, 1.0)


def build_test_sets(
    n: int = 200, size: int = 128, max_scenes: int | None = None, chunk: int = 256, progress: bool = True
) -> dict[str, ArraySet]:
    """The occlusion test sets (``{name: ArraySet}``, names :data:`SET_NAMES`).

    Args:
        n: samples per set. size: crop side. max_scenes: stop looking after this many scenes
            (default ``40 * n``); a bin that is still short then holds fewer samples (the
            count is in each set's labels and in the report).
        chunk: scenes rendered per call (memory only; the result does not depend on it).
    """
    from .data.occlude import paste

    max_scenes = 40 * n if max_scenes is None else max_scenes
    keys = ("image", "joints2d", "joints3d", "K", "visibility", "occlusion_fraction")
    bins: dict[str, dict[str, list]] = {name: {k: [] for k in (*keys, "scene")} for name in LEVEL_BINS}
    start = 0
    t0 = time.time()
    while start < max_scenes and any(len(b["scene"]) < n for b in bins.values()):
        idx = list(range(start, min(max_scenes, start + chunk)))
        rendered = {lv: _render(OCCLUSION_TEST_SEED, idx, lv, size) for lv in ENGINE_SETTINGS}
        for k, scene in enumerate(idx):
            for lv in ENGINE_SETTINGS:
                frac = float(rendered[lv]["occlusion_fraction"][k])
                for name, (lo, hi) in LEVEL_BINS.items():
                    b = bins[name]
                    if (
                        lo <= frac < hi
                        and len(b["scene"]) < n
                        and (not b["scene"] or b["scene"][-1] != scene)
                    ):
                        for key in keys:
                            b[key].append(rendered[lv][key][k])
                        b["scene"].append(scene)
        start = idx[-1] + 1
        if progress:
            counts = ", ".join(f"{k}: {len(v['scene'])}" for k, v in bins.items())
            print(f"  scenes 0..{start - 1} ({time.time() - t0:.0f} s): {counts}", file=sys.stderr)
    sets = {}
    for name, b in bins.items():
        if not b["scene"]:
            raise RuntimeError(f"occlusion test sets: no scene fell into level {name}; raise max_scenes")
        labels = {k: np.stack(b[k]) for k in keys if k != "image"}
        labels["scene"] = np.asarray(b["scene"], np.int64)
        sets[name] = ArraySet(np.stack(b["image"]), labels, {"name": name, "dataset": SET_DATASET})
    # targeted cases: the object-free scenes of the 0% set with one pasted occluder
    clean = sets["0%"]
    for t_i, target in enumerate(TARGETS):
        imgs, labs = (
            [],
            {k: [] for k in ("joints2d", "joints3d", "K", "visibility", "occlusion_fraction", "scene")},
        )
        for i in range(len(clean)):
            s = clean[i]
            rng = np.random.default_rng([OCCLUSION_TEST_SEED, t_i, int(clean.labels["scene"][i])])
            occ = target_occluder(target, s["joints2d"].numpy(), rng)
            p = paste(s, occ, rng)
            imgs.append(to_uint8(p["image"][None])[0])
            for k in ("joints2d", "joints3d", "K", "visibility"):
                labs[k].append(p[k].numpy())
            labs["occlusion_fraction"].append(np.nan)  # unknown for pasted occluders (no hand mask)
            labs["scene"].append(int(clean.labels["scene"][i]))
        labels = {k: np.stack(v) for k, v in labs.items()}
        sets[target] = ArraySet(np.stack(imgs), labels, {"name": target, "dataset": SET_DATASET})
    return sets


def test_sets_dir(n: int = 200, size: int = 128) -> Path:
    """Where :func:`cached_test_sets` keeps the occlusion test sets: ``cache_dir("sets")``."""
    from .data.synthetic import GENERATOR_VERSION

    return cache_dir("sets") / f"occlusion-test-v{GENERATOR_VERSION}-n{n}-s{size}"


def save_test_sets(sets: dict[str, ArraySet], folder: str | os.PathLike) -> Path:
    """Write each set as an :class:`~handpose_lib.data.cached.ArraySet` folder ``set_<k>`` and
    ``info.json`` (each set's folder, size and :func:`fingerprint`), last: it marks ``folder``
    complete."""
    from .checkpoint import atomic_write_json

    folder = Path(folder)
    info = {"sets": {}}
    for name, s in sets.items():
        sub = f"set_{SET_NAMES.index(name)}"
        s.save(folder / sub)
        info["sets"][name] = {"folder": sub, "n": len(s), "sha256": fingerprint(s)}
    atomic_write_json(folder / "info.json", info)
    return folder


def load_test_sets(folder: str | os.PathLike) -> dict[str, ArraySet]:
    """The sets :func:`save_test_sets` wrote (images memory-mapped)."""
    folder = Path(folder)
    if not (folder / "info.json").is_file():
        raise FileNotFoundError(
            f"{folder}: no occlusion test sets here; create it with `handpose occlusion --out {folder}`"
        )
    info = json.loads((folder / "info.json").read_text())
    if any("folder" not in d for d in info["sets"].values()):  # set_<k>.npz files: the old format
        raise FileNotFoundError(
            f"{folder}: occlusion test sets in an older format (one .npz per set); delete the folder "
            f"and create them again with `handpose occlusion --out {folder}`"
        )
    return {name: ArraySet.load(folder / d["folder"]) for name, d in info["sets"].items()}


def cached_test_sets(
    n: int = 200, size: int = 128, progress: bool = True, folder: str | os.PathLike | None = None
) -> dict[str, ArraySet]:
    """The occlusion test sets, built once into ``folder`` (default :func:`test_sets_dir`) and reused."""
    folder = Path(folder) if folder else test_sets_dir(n, size)
    if (folder / "info.json").is_file():
        return load_test_sets(folder)
    sets = build_test_sets(n, size, progress=progress)
    save_test_sets(sets, folder)
    return sets


def fingerprint(s: ArraySet) -> str:
    """sha256 over a set's images and labels (the determinism check)."""
    h = hashlib.sha256(np.ascontiguousarray(s.images).tobytes())
    for k in sorted(s.labels):
        h.update(k.encode())
        h.update(np.ascontiguousarray(s.labels[k]).tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------
# the model variants of the ablations


@dataclass
class _Out:
    heatmaps: torch.Tensor
    probs: torch.Tensor
    coords2d: torch.Tensor
    bones: torch.Tensor
    joints3d: torch.Tensor
    intermediate: list = field(default_factory=list)


class DirectJoints(nn.Module):
    """Ablation (c): the same ResUnet, whose last FC layer's 60 outputs are read as the 20
    non-wrist joints (wrist-relative, reference-bone units) instead of 20 bones.

    ``bones`` of the output are then derived from the joints (for logging only); train it with
    :func:`joint_loss_fn` (L2 on joint positions, the analogue of eq. 4 on joints).
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor):
        o = self.net(images)
        joints = torch.cat([torch.zeros_like(o.bones[:, :1]), o.bones], dim=1)
        return _Out(o.heatmaps, o.probs, o.coords2d, skeleton.joints_to_bones(joints), joints, o.intermediate)


class ArgmaxDecoded(nn.Module):
    """Ablation (d) at test time: the model's 2D joints replaced by the argmax of its heatmaps
    (:func:`handpose_lib.lhr.argmax_decode`)."""

    def __init__(self, net: nn.Module, image_size: int):
        super().__init__()
        self.net, self.image_size = net, image_size

    def forward(self, images: torch.Tensor):
        o = self.net(images)
        c = argmax_decode(o.heatmaps.float(), self.image_size)
        return _Out(o.heatmaps, o.probs, c, o.bones, o.joints3d, o.intermediate)


def joint_loss_fn(weights: dict):
    """Loss of ablation (c): ``compute_loss`` without the bone term plus
    ``bones_weight * 1/2 sum_j ||j_pred - j_gt||^2`` on normalised, root-relative joints."""
    from . import losses

    w = losses.LossWeights(**weights)
    no_bones = losses.LossWeights(
        coords2d=w.coords2d, bones=0.0, heatmaps=w.heatmaps, heatmap_sigma=w.heatmap_sigma
    )

    def fn(out, batch):
        total, parts = losses.compute_loss(out, batch, no_bones)
        j3d = batch["joints3d"].to(out.joints3d.device, torch.float32)
        gt, _ = skeleton.normalise_3d(j3d)
        lj = 0.5 * (out.joints3d.float() - gt).pow(2).sum(-1).sum(-1).mean()
        total = total + w.bones * lj
        parts = dict(parts, joints3d=lj.detach(), total=total.detach())
        return total, parts

    return fn


# ----------------------------------------------------------------------------------------
# the ablations: variants and profiles


@dataclass(frozen=True)
class Variant:
    """One ablation: what it changes against (a), the full method.

    Every variant trains the tiny ResUnet with the same data seed, schedule, steps and
    initialisation seed (its :class:`StudyProfile`); the fields say what differs.
    """

    name: str  # results/occlusion/<name>.json and its run folder
    label: str  # the book's tables and plots
    about: str  # what it changes, in words
    training_occlusion: str = "default"  # the engine's object level in the training scenes
    paste_occluders: bool = True  # pasted occluders on the training samples (PASTE_PROB, PASTE_STRENGTH)
    direct_joints: bool = False  # the 3D branch regresses joints (DirectJoints) instead of bones
    intermediate_heatmaps: bool = True  # supervise the intermediate heatmaps
    argmax_2d: bool = False  # at test time, 2D by the heatmap argmax instead of LHR
    weights_of: str | None = None  # no training of its own: evaluates this variant's weights

    def loss_overrides(self) -> dict[str, float]:
        """The variant's changes to the recipe's loss weights."""
        return {} if self.intermediate_heatmaps else {"heatmaps": 0.0}


A_FULL = Variant(
    "a_full",
    "(a) full method",
    "procedural objects (default level) + pasted occluders (prob 0.3, strength 0.5), bones, LHR, "
    "intermediate heatmap supervision",
)
B_NO_OCC_AUG = Variant(
    "b_no_occ_aug",
    "(b) no occlusion augmentation",
    "training scenes rendered without objects (same hands/cameras) and no pasted occluders",
    training_occlusion="none",
    paste_occluders=False,
)
C_DIRECT_JOINTS = Variant(
    "c_direct_joints",
    "(c) direct 3D joints",
    "the 3D branch regresses 20 wrist-relative joints (L2 on joints) instead of 20 bones",
    direct_joints=True,
)
D_ARGMAX = Variant(
    "d_argmax",
    "(d) heatmap argmax for 2D",
    "no training of its own: the weights of (a), 2D read by argmax of the 64x64 latent heatmap "
    "(cell centres) instead of the LHR expectation",
    argmax_2d=True,
    weights_of="a_full",
)
E_NO_INTERMEDIATE = Variant(
    "e_no_intermediate",
    "(e) no intermediate heatmap supervision",
    "loss weight of the intermediate heatmaps 0 (the 2D loss on LHR coordinates and the bone loss stay)",
    intermediate_heatmaps=False,
)
VARIANTS: tuple[Variant, ...] = (A_FULL, B_NO_OCC_AUG, C_DIRECT_JOINTS, D_ARGMAX, E_NO_INTERMEDIATE)
VARIANT_NAMES: tuple[str, ...] = tuple(v.name for v in VARIANTS)

PASTE_PROB, PASTE_STRENGTH = 0.3, 0.5  # the pasted occluders of the training samples
PASTE_STREAM = 7  # random stream tag of the pasted occluders: default_rng([seed, 7, visit, i])


def variant(name: str) -> Variant:
    """The variant called ``name`` (a :data:`VARIANT_NAMES` entry)."""
    for v in VARIANTS:
        if v.name == name:
            return v
    raise ValueError(f"unknown variant {name!r}; choose from {list(VARIANT_NAMES)}")


@dataclass(frozen=True)
class StudyProfile:
    """How much compute the ablations spend: the training recipe's sizes and the test sets' size."""

    name: str  # quick | full
    n_train: int
    n_val: int
    epochs: int
    batch_size: int
    lr: float
    num_workers: int
    threads: int | None  # torch threads while training (None: the recipe's)
    test_n: int  # samples per occlusion test set
    runs_name: str  # runs/<runs_name>: the run folders (the quick profile's were made as "cpu")
    results_subdir: str  # results/occlusion/<results_subdir> ("": the book's committed table)

    def recipe_overrides(self) -> dict[str, Any]:
        """The fields of :func:`~handpose_lib.config.tiny_recipe` this profile sets."""
        out = dict(
            n_train=self.n_train,
            n_val=self.n_val,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            num_workers=self.num_workers,
        )
        return out if self.threads is None else dict(out, threads=self.threads)


# the book's CPU runs: minutes each on one core (noisy, single seed)
QUICK = StudyProfile("quick", 4096, 256, 3, 32, 3e-3, 0, 1, 200, "occlusion-cpu", "")
# the GPU recipe
FULL = StudyProfile("full", 30_000, 512, 13, 32, 2e-3, 4, None, 1000, "occlusion-full", "full")
PROFILES: tuple[StudyProfile, ...] = (QUICK, FULL)
OLD_PROFILE_NAMES = {"cpu": "quick"}  # the study's "budget" cpu is the quick profile


def study_profile(name: str) -> StudyProfile:
    """The profile called ``name`` (``quick``, ``full``; the old budget name ``cpu`` = quick)."""
    name = OLD_PROFILE_NAMES.get(name, name)
    for p in PROFILES:
        if p.name == name:
            return p
    raise ValueError(f"unknown profile {name!r}; choose from {[p.name for p in PROFILES]}")


# ----------------------------------------------------------------------------------------
# training and evaluating a variant


def _trim(report: dict) -> dict:
    """Keep what the book plots (drop the per-threshold curves except the overall 3D PCK)."""
    out = {k: report[k] for k in ("n_samples", "overall", "per_joint", "per_finger") if k in report}
    out["overall"] = {k: v for k, v in report["overall"].items() if k != "pck2d"}
    out["by_visibility"] = {
        g: {k: v for k, v in st.items() if k not in ("pck2d", "pck3d")}
        for g, st in report.get("by_visibility", {}).items()
    }
    out["per_finger"] = {
        f: {k: v for k, v in st.items() if k != "pck3d"} for f, st in report["per_finger"].items()
    }
    return out


def evaluate_test_sets(model, sets: dict[str, ArraySet], batch_size: int = 64) -> dict[str, Any]:
    """``{set name: trimmed evaluation report}`` plus each set's mean hidden fraction."""
    from .evaluate import evaluate_predictions, predict_dataset

    out = {}
    for name, s in sets.items():
        p = predict_dataset(model, s, batch_size=batch_size, device="cpu")
        rep = _trim(
            evaluate_predictions(
                p["pred2d"], p["gt2d"], p["pred3d"], p["gt3d"], p["visibility"], dataset=name
            )
        )
        frac = s.labels["occlusion_fraction"]
        rep["mean_occlusion_fraction"] = None if np.isnan(frac).all() else float(np.nanmean(frac))
        vis = s.labels["visibility"]
        rep["hidden_joint_fraction"] = float(((vis != VIS_VISIBLE) & (vis != VIS_OUTSIDE)).mean())
        out[name] = rep
    return out


class PastedSet(Dataset):
    """``base`` with pasted occluders (``data.occlude.PasteOccluders``) drawn per sample and visit.

    The generator is ``default_rng([seed, PASTE_STREAM, visit, i])``, ``visit`` counting how
    often sample ``i`` was read in this process (the epoch, for one process and
    ``num_workers=0``, which the quick profile uses); ``fit`` then applies its rotation/scale/colour
    augmentation on top, so the occluder turns with the hand and the labels stay consistent.
    """

    def __init__(self, base: Dataset, paste, seed: int = 0):
        self.base, self.paste, self.seed = base, paste, seed
        self.visits: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        i = int(i)
        k = self.visits.get(i, 0)
        self.visits[i] = k + 1
        return self.paste(self.base[i], np.random.default_rng([self.seed, PASTE_STREAM, k, i]))


def variant_paths(profile: str = "quick", seed: int = 0) -> tuple[Path, Path]:
    """``(run root, results folder)`` of a profile and training seed.

    Seed 0 (the book's table): ``runs/<runs_name>`` and ``results/occlusion/<results_subdir>``
    (:class:`StudyProfile`). Another seed gets its own folders (``...-seed<k>`` and
    ``.../seed<k>``), so a replicate never reuses or overwrites seed 0's runs.
    """
    p = study_profile(profile)
    tag = "" if seed == 0 else f"-seed{seed}"
    results = RESULTS_DIR / p.results_subdir
    return REPO_ROOT / "runs" / f"{p.runs_name}{tag}", results if seed == 0 else results / f"seed{seed}"


def _train_variant(v: Variant, cfg, run_dir: Path) -> None:
    """Train variant ``v`` with recipe ``cfg`` into ``run_dir``."""
    from .config import build_for_config, model_config
    from .data.occlude import PasteOccluders
    from .data.rendered import cached_synthetic
    from .data.synthetic import SyntheticConfig
    from .train import fit

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    net = build_for_config(cfg)
    model = DirectJoints(net) if v.direct_joints else net
    size = model_config(cfg).input_size
    train_set = cached_synthetic(
        cfg.n_train, cfg.data_seed, SyntheticConfig(crop_size=size, occlusion=v.training_occlusion)
    )
    if v.paste_occluders:
        train_set = PastedSet(train_set, PasteOccluders(prob=PASTE_PROB, strength=PASTE_STRENGTH), cfg.seed)
    val_set = cached_synthetic(cfg.n_val, cfg.data_seed + 1, SyntheticConfig(crop_size=size))
    loss_fn = joint_loss_fn(cfg.loss) if v.direct_joints else None
    fit(
        model,
        train_set,
        val_set,
        cfg,
        run_dir,
        loss_fn=loss_fn,
        progress=False,
        extra_meta={"variant": v.name},
    )


def _load_variant(v: Variant, cfg, run_dir: Path):
    """``(model in eval mode, checkpoint)`` of variant ``v``'s trained run, as ``v`` evaluates it."""
    from . import checkpoint as ckpt
    from .config import build_for_config, model_config
    from .inference import load_trained

    if v.direct_joints:  # saved as the DirectJoints wrapper (keys "net.*")
        c = ckpt.load_checkpoint(run_dir)
        model = ckpt.load_weights(DirectJoints(build_for_config(cfg)), c)
    else:
        model, c = load_trained(run_dir)
    if v.argmax_2d:
        model = ArgmaxDecoded(model, model_config(cfg).input_size)
    return model.eval(), c


def run_variant(
    name: str, profile: str = "quick", run_root: str | os.PathLike | None = None, seed: int = 0
) -> dict:
    """Train (unless the variant reuses another's weights) and evaluate one ablation variant.

    ``seed`` is the training seed (initialisation, batch order, augmentation; the training
    samples stay those of data seed 0). Writes ``<results folder>/<name>.json`` (see
    :func:`variant_paths`) and returns its content.
    """
    from .checkpoint import LAST_FILE, atomic_write_json, read_metrics
    from .config import model_config, tiny_recipe

    v, p = variant(name), study_profile(profile)
    trained = variant(v.weights_of) if v.weights_of else v  # the variant whose weights v evaluates
    default_root, out_dir = variant_paths(p.name, seed)
    run_dir = Path(run_root or default_root) / trained.name
    cfg = tiny_recipe(seed=seed, data_seed=TRAIN_SEED, loss=trained.loss_overrides(), **p.recipe_overrides())
    t0 = time.time()
    if not (run_dir / LAST_FILE).is_file():
        if trained is not v:
            raise FileNotFoundError(
                f"variant {v.name} evaluates {trained.name}'s weights: run {trained.name} first"
            )
        _train_variant(v, cfg, run_dir)
        train_s = time.time() - t0
    else:  # trained earlier: the training time from its log (sum of the epochs' times)
        rows = read_metrics(run_dir)
        train_s = sum(r.get("time_s", 0.0) for r in rows) if trained is v and rows else None
    model, c = _load_variant(v, cfg, run_dir)
    sets = cached_test_sets(p.test_n, model_config(cfg).input_size)
    t1 = time.time()
    results = evaluate_test_sets(model, sets)
    res = {
        "variant": v.name,
        "label": v.label,
        "about": v.about,
        "profile": p.name,
        "train_config": c.meta.get("train_config"),
        "steps": c.step,
        "seed": seed,
        "train_seconds": train_s,
        "eval_seconds": round(time.time() - t1, 1),
        "benchmark": {"n_per_set": p.test_n, "sets": {k: len(s) for k, s in sets.items()}},
        "results": results,
    }
    atomic_write_json(out_dir / f"{v.name}.json", res)
    return res


def format_results(result: dict) -> str:
    """One line per occlusion test set of a :func:`run_variant` result: 2D/3D EPE and AUC."""
    lines = []
    for s in SET_NAMES:
        o = result["results"][s]["overall"]
        lines.append(
            f"  {s:10s} 2D {o['epe2d_px']:.2f} px  3D {o['epe3d_mm']:.2f} mm  AUC {o['auc3d_20_50']:.3f}"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------
# results


def load_results(folder: str | os.PathLike | None = None) -> dict[str, dict]:
    """``{variant name: result}`` of the committed ablation results (in :data:`VARIANTS` order)."""
    folder = Path(folder or RESULTS_DIR)
    out = {}
    for v in VARIANTS:
        p = folder / f"{v.name}.json"
        if p.is_file():
            out[v.name] = json.loads(p.read_text())
    return out


def table_rows(results: dict[str, dict], sets=SET_NAMES) -> list[dict]:
    """One row per variant and set: 2D/3D EPE and AUC overall, visible and hidden joints."""
    rows = []
    for r in results.values():
        for s in sets:
            rep = r["results"].get(s)
            if rep is None:
                continue
            bv = rep.get("by_visibility", {})
            rows.append(
                {
                    "variant": r["label"],
                    "set": s,
                    "epe2d_px": rep["overall"]["epe2d_px"],
                    "epe3d_mm": rep["overall"]["epe3d_mm"],
                    "auc3d_20_50": rep["overall"]["auc3d_20_50"],
                    "epe3d_visible_mm": bv.get("visible", {}).get("epe3d_mm"),
                    "epe3d_hidden_obj_mm": bv.get("hidden_by_object", {}).get("epe3d_mm"),
                    "epe3d_hidden_hand_mm": bv.get("hidden_by_hand", {}).get("epe3d_mm"),
                    "epe2d_visible_px": bv.get("visible", {}).get("epe2d_px"),
                    "epe2d_hidden_obj_px": bv.get("hidden_by_object", {}).get("epe2d_px"),
                }
            )
    return rows


def seed_rows(
    by_seed: dict[int, dict[str, dict]], set_name: str = "0%", metric: str = "epe3d_mm"
) -> list[dict]:
    """How much of a variant's number is the training seed: one row per variant present in
    every seed of ``by_seed`` (``{seed: load_results(...)}``).

    Each row: ``variant`` (label), ``values`` (``{seed: overall metric on set_name}``), ``mean``
    and ``spread`` (max - min over the seeds). A gap between two variants smaller than their
    spreads is not evidence of a difference.
    """
    seeds = sorted(by_seed)
    names = [v.name for v in VARIANTS if all(v.name in by_seed[s] for s in seeds)]
    rows = []
    for n in names:
        vals = {s: by_seed[s][n]["results"][set_name]["overall"][metric] for s in seeds}
        v = list(vals.values())
        rows.append(
            {
                "variant": by_seed[seeds[0]][n]["label"],
                "values": vals,
                "mean": sum(v) / len(v),
                "spread": max(v) - min(v),
            }
        )
    return rows


METRIC_TITLES = {"epe3d_mm": "3D EPE (mm)", "epe2d_px": "2D EPE (px)", "auc3d_20_50": "AUC 20-50 mm"}


def curve_figure(results: dict[str, dict], metric: str = "epe3d_mm", group: str = "all"):
    """Accuracy vs occlusion level, one line per variant (plotly).

    ``group``: ``"all"`` (every joint), ``"visible"``, ``"hidden_by_object"``, ``"hidden_by_hand"``.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    levels = list(LEVEL_BINS)
    for r in results.values():
        ys = []
        for lv in levels:
            rep = r["results"].get(lv, {})
            st = rep.get("overall") if group == "all" else rep.get("by_visibility", {}).get(group)
            ys.append(None if st is None else st.get(metric))
        fig.add_trace(
            go.Scatter(
                x=[100 * LEVEL_VALUES[lv] for lv in levels], y=ys, mode="lines+markers", name=r["label"]
            )
        )
    unit = METRIC_TITLES.get(metric, metric)
    fig.update_layout(
        title=f"{unit} vs occlusion ({group.replace('_', ' ')} joints)",
        xaxis_title="hand pixels hidden by objects (%)",
        yaxis_title=unit,
        template="plotly_white",
        height=420,
    )
    return fig
