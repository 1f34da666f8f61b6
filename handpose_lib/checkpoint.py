"""Checkpoints: safetensors weights + a JSON sidecar, written atomically.

A checkpoint is a folder::

    step-00001234/
        model.safetensors         model weights (no pickle: safe to load from anyone)
        train_state.safetensors   optimiser tensors and RNG state tensors (resumable checkpoints only)
        checkpoint.json           the sidecar: format, model config, training config, epoch, step,
                                  optimiser/scheduler state (non-tensor part), RNG states,
                                  metrics, provenance, sha256 of the tensor files

A training run folder keeps its checkpoints under ``checkpoints/`` and names the newest
complete one in ``last.json``, and the best one (training: the epoch with the lowest validation
3D EPE) in ``best.json``; pruning keeps both::

    RUN_DIR/
        checkpoints/step-00000500/ ...
        checkpoints/step-00001000/ ...
        last.json                 {"path": "checkpoints/step-00001000", "step": 1000, ...}
        best.json                 {"path": "checkpoints/step-00000500", "metric": "val_epe3d_mm",
                                   "value": 12.3, "step": 500, "epoch": 1}
        metrics.jsonl             one row of metrics per epoch (:func:`read_metrics`)

**Atomicity.** Every file is written to a temporary name in the same folder, flushed to disk and
renamed into place (``os.replace`` is atomic on POSIX and Windows). A checkpoint folder is first
built under a temporary name and renamed as a whole, and ``last.json`` is only updated after
that. A crash at any moment therefore leaves ``last.json`` naming a complete checkpoint: a
checkpoint file is never half-written.

Layer 2: imports only torch, safetensors and the standard library.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

FORMAT = "handpose-checkpoint/1"
CONFIG_METADATA = "handpose.model_config"  # the model config, also inside the weights file
MODEL_FILE = "model.safetensors"
STATE_FILE = "train_state.safetensors"
SIDECAR_FILE = "checkpoint.json"
LAST_FILE = "last.json"
METRICS_FILE = "metrics.jsonl"
BEST_FILE = "best.json"
CKPT_SUBDIR = "checkpoints"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or does not match what is asked of it."""


# ----------------------------------------------------------------------------------------
# atomic file writes


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    """The process's umask (Linux: read from /proc, so it is never changed, even briefly)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, rename.

    Readers see either the old file or the complete new one, never a partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):  # mkstemp makes 0600; a plain open() would honour the umask
                os.fchmod(f.fileno(), 0o666 & ~_umask())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """:func:`atomic_write_bytes` of ``json.dumps(obj, indent=2)`` (numpy values converted)."""
    return atomic_write_bytes(path, (json.dumps(to_jsonable(obj), indent=2) + "\n").encode())


def to_jsonable(obj: Any) -> Any:
    """Numpy scalars/arrays, tensors, tuples, paths and dataclasses -> plain JSON values."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return to_jsonable(obj.detach().cpu().numpy())
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None if np.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__dataclass_fields__"):
        from dataclasses import asdict

        return to_jsonable(asdict(obj))
    return obj


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(obj: Any) -> str:
    return json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"))


# ----------------------------------------------------------------------------------------
# RNG and optimiser state <-> (tensors, json)


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The RNG states of python, numpy and torch (CPU and every CUDA device).

    Returns ``(tensors, json)``: tensors go to the safetensors file, the rest to the sidecar.
    """
    tensors = {"rng.torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.torch_cuda.{i}"] = s
    np_state = np.random.get_state()  # noqa: NPY002 (the legacy global RNG is what we save)
    tensors["rng.numpy_keys"] = torch.from_numpy(np_state[1].astype(np.int64))
    py = random.getstate()
    meta = {
        "numpy": {"name": np_state[0], "pos": int(np_state[2]), "has_gauss": int(np_state[3])},
        "numpy_cached_gauss": float(np_state[4]),
        "python": {"version": py[0], "state": list(py[1]), "gauss": py[2]},
    }
    return tensors, meta


def set_rng_state(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(tensors["rng.torch_cpu"].to(torch.uint8))
    cuda = sorted(k for k in tensors if k.startswith("rng.torch_cuda."))
    if cuda and torch.cuda.is_available():
        states = [tensors[k].to(torch.uint8) for k in cuda][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(states)
    n = meta["numpy"]
    keys = tensors["rng.numpy_keys"].numpy().astype(np.uint32)
    state = (n["name"], keys, n["pos"], n["has_gauss"], meta["numpy_cached_gauss"])
    np.random.set_state(state)  # noqa: NPY002
    p = meta["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


def _flatten_optimizer(state_dict: dict, prefix: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``optimizer.state_dict()`` into tensors and a JSON-able rest.

    Tensors in ``state[param_id][name]`` become ``{prefix}.{param_id}.{name}``; everything else
    (scalars, ``param_groups``) is kept in the JSON part.
    """
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in state_dict["state"].items():
        for name, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{prefix}.{pid}.{name}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[name] = v
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: Mapping[str, torch.Tensor], meta: dict, prefix: str) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if not key.startswith(prefix + "."):
            continue
        pid, name = key[len(prefix) + 1 :].split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    for pid, st in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(st)
    return {"state": state, "param_groups": meta["param_groups"]}


# ----------------------------------------------------------------------------------------
# saving


def _state_dict_tensors(model_or_state, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    sd = model_or_state.state_dict() if isinstance(model_or_state, torch.nn.Module) else model_or_state
    out = {}
    for k, v in sd.items():
        k = k.removeprefix("module.").removeprefix("_orig_mod.")  # DDP / torch.compile wrappers
        v = v.detach().cpu().contiguous()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        out[k] = v
    return out


def save_checkpoint(
    ckpt_dir: str | os.PathLike,
    model,
    sidecar: Mapping[str, Any] | None = None,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler=None,
    scaler=None,
    save_rng: bool = True,
    weights_dtype: torch.dtype | None = None,
) -> Path:
    """Write one checkpoint folder atomically and return its path.

    Args:
        ckpt_dir: the checkpoint folder to create (replaced if it exists).
        model: an ``nn.Module`` (DDP-wrapped is fine) or a state dict.
        sidecar: JSON-able information (``config``, ``epoch``, ``step``, ``metrics``, ...).
        optimizer, scheduler, scaler: saved for an exact resume when given.
        save_rng: save the python/numpy/torch RNG states (for an exact resume).
        weights_dtype: e.g. ``torch.float16`` for a compact inference checkpoint.
    """
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, **to_jsonable(dict(sidecar or {}))}
    # the model config travels inside the weights file too, so that an edited sidecar (another
    # heatmap_size loads into the same tensors and moves every joint) is refused on load
    extra = {CONFIG_METADATA: _canonical(meta["model_config"])} if "model_config" in meta else None
    files: dict[str, bytes] = {MODEL_FILE: st_save(_state_dict_tensors(model, weights_dtype), extra)}
    state_tensors: dict[str, torch.Tensor] = {}
    train_state: dict[str, Any] = {}
    if optimizer is not None:
        t, j = _flatten_optimizer(optimizer.state_dict(), "optim")
        state_tensors.update(t)
        train_state["optimizer"] = j
    if scheduler is not None:
        train_state["scheduler"] = scheduler.state_dict()
    if scaler is not None and scaler.is_enabled():
        train_state["scaler"] = scaler.state_dict()
    if save_rng:
        t, j = rng_state()
        state_tensors.update(t)
        train_state["rng"] = j
    if state_tensors:
        files[STATE_FILE] = st_save(state_tensors)
    if train_state:
        meta["train_state"] = to_jsonable(train_state)
    meta["files"] = {name: {"sha256": _sha256(b), "bytes": len(b)} for name, b in files.items()}

    tmp = Path(tempfile.mkdtemp(prefix=f".{ckpt_dir.name}.", suffix=".tmp", dir=ckpt_dir.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; a plain mkdir would honour the umask
    try:
        for name, data in files.items():
            atomic_write_bytes(tmp / name, data)
        atomic_write_json(tmp / SIDECAR_FILE, meta)  # the sidecar last: its presence = complete
        if ckpt_dir.exists():
            trash = ckpt_dir.with_name(f".{ckpt_dir.name}.old-{os.getpid()}")
            os.replace(ckpt_dir, trash)
            os.replace(tmp, ckpt_dir)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, ckpt_dir)
        _fsync_dir(ckpt_dir.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ckpt_dir


def save_run_checkpoint(
    run_dir: str | os.PathLike, step: int, model, sidecar: Mapping[str, Any], *, keep_last: int = 2, **kw
) -> Path:
    """Save ``RUN_DIR/checkpoints/step-XXXXXXXX`` and point ``RUN_DIR/last.json`` at it.

    Older checkpoints beyond ``keep_last`` are removed, except the one ``best.json`` names.
    """
    run_dir = Path(run_dir)
    path = save_checkpoint(run_dir / CKPT_SUBDIR / f"step-{step:08d}", model, sidecar, **kw)
    rel = path.relative_to(run_dir).as_posix()
    atomic_write_json(
        run_dir / LAST_FILE,
        {"path": rel, "step": step, "epoch": sidecar.get("epoch"), "metrics": sidecar.get("metrics", {})},
    )
    prune_checkpoints(run_dir, keep_last)
    return path


def mark_best(run_dir: str | os.PathLike, ckpt_path: str | os.PathLike, info: Mapping[str, Any]) -> None:
    """Point ``RUN_DIR/best.json`` at a saved checkpoint (kept by :func:`prune_checkpoints`);
    ``info`` says why (training writes ``metric``, ``value``, ``step``, ``epoch``)."""
    run_dir = Path(run_dir)
    rel = Path(ckpt_path).resolve().relative_to(run_dir.resolve()).as_posix()
    atomic_write_json(run_dir / BEST_FILE, {"path": rel, **to_jsonable(dict(info))})


def read_best(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The content of ``RUN_DIR/best.json`` (``None`` when there is none or it is unreadable)."""
    p = Path(run_dir) / BEST_FILE
    try:
        return json.loads(p.read_text()) if p.is_file() else None
    except ValueError:
        return None


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """The per-epoch rows of ``RUN_DIR/metrics.jsonl`` (``[]`` when there is none)."""
    p = Path(run_dir) / METRICS_FILE
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def append_metrics(run_dir: str | os.PathLike, row: Mapping[str, Any]) -> None:
    """Add one row (an epoch's metrics) to ``RUN_DIR/metrics.jsonl``."""
    with open(Path(run_dir) / METRICS_FILE, "a") as f:
        f.write(json.dumps(to_jsonable(dict(row))) + "\n")


def write_metrics(run_dir: str | os.PathLike, rows: Sequence[Mapping[str, Any]]) -> None:
    """Replace ``RUN_DIR/metrics.jsonl`` with ``rows``, atomically."""
    text = "".join(json.dumps(to_jsonable(dict(r))) + "\n" for r in rows)
    atomic_write_bytes(Path(run_dir) / METRICS_FILE, text.encode())


def _pointer(run_dir: Path, name: str) -> Path | None:
    p = run_dir / name
    if not p.is_file():
        return None
    try:
        return run_dir / json.loads(p.read_text())["path"]
    except (ValueError, KeyError):
        return None


def prune_checkpoints(run_dir: str | os.PathLike, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` checkpoints (never the last or best one)."""
    run_dir = Path(run_dir)
    root = run_dir / CKPT_SUBDIR
    if not root.is_dir() or keep_last <= 0:
        return
    done = sorted(p for p in root.glob("step-*") if (p / SIDECAR_FILE).is_file())
    protect = {_pointer(run_dir, LAST_FILE), _pointer(run_dir, BEST_FILE)}
    protect = {p.resolve() for p in protect if p is not None}
    for p in done[:-keep_last]:
        if p.resolve() not in protect:
            shutil.rmtree(p, ignore_errors=True)
    for p in root.glob(".*.tmp"):  # leftovers of a crash during a save
        shutil.rmtree(p, ignore_errors=True)


# ----------------------------------------------------------------------------------------
# loading


@dataclass
class Checkpoint:
    """A loaded checkpoint: ``weights`` (state dict), ``meta`` (the sidecar), its ``path``,
    and ``state`` (optimiser/RNG tensors; empty for a weights-only checkpoint)."""

    path: Path
    weights: dict[str, torch.Tensor]
    meta: dict[str, Any]
    state: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def step(self) -> int:
        return int(self.meta.get("step", 0))

    @property
    def epoch(self) -> int:
        return int(self.meta.get("epoch", 0))

    @property
    def weights_sha256(self) -> str | None:
        """The sha256 of the weights file, as the sidecar records it (``None`` if it does not)."""
        return self.meta.get("files", {}).get(MODEL_FILE, {}).get("sha256")

    @property
    def resumable(self) -> bool:
        return "optimizer" in self.meta.get("train_state", {})

    def restore(self, optimizer=None, scheduler=None, scaler=None, rng: bool = True) -> None:
        """Load the optimiser, scheduler, grad scaler and RNG states saved with this checkpoint."""
        ts = self.meta.get("train_state", {})
        if optimizer is not None:
            if "optimizer" not in ts:
                raise CheckpointError(f"{self.path}: no optimiser state saved (a weights-only checkpoint)")
            optimizer.load_state_dict(_unflatten_optimizer(self.state, ts["optimizer"], "optim"))
        if scheduler is not None and "scheduler" in ts:
            scheduler.load_state_dict(ts["scheduler"])
        if scaler is not None and "scaler" in ts:
            scaler.load_state_dict(ts["scaler"])
        if rng and "rng" in ts:
            set_rng_state(self.state, ts["rng"])


def resolve_checkpoint(path: str | os.PathLike, which: str = "last") -> Path:
    """Find the checkpoint folder for ``path``.

    ``path`` may be a run folder (its ``last.json`` or ``best.json`` is followed), a checkpoint
    folder, or a ``model.safetensors`` / ``checkpoint.json`` file inside one.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(
            f"checkpoint not found: {p} does not exist. Pass a run folder written by "
            "`handpose train --out RUN_DIR`, or a checkpoint folder containing model.safetensors."
        )
    if p.is_file():
        if p.name not in (MODEL_FILE, SIDECAR_FILE):
            raise CheckpointError(f"{p}: not a checkpoint file (expected {MODEL_FILE} or {SIDECAR_FILE})")
        p = p.parent
    if (p / SIDECAR_FILE).is_file():
        return p
    pointer = _pointer(p, BEST_FILE if which == "best" else LAST_FILE)
    if pointer is not None and (pointer / SIDECAR_FILE).is_file():
        return pointer
    # a run folder whose pointer is missing: the newest complete checkpoint
    done = sorted(c for c in (p / CKPT_SUBDIR).glob("step-*") if (c / SIDECAR_FILE).is_file())
    if done:
        return done[-1]
    raise CheckpointError(
        f"no checkpoint in {p}: expected {SIDECAR_FILE} + {MODEL_FILE}, or a run folder with "
        f"{LAST_FILE}. Has training saved one yet? (`handpose train ... --out {p}`)"
    )


def load_checkpoint(path: str | os.PathLike, which: str = "last", verify: bool = True) -> Checkpoint:
    """Load a checkpoint (see :func:`resolve_checkpoint` for what ``path`` may be).

    Only safetensors and JSON are read (no pickle). ``verify`` checks the sha256 sums that the
    sidecar records.
    """
    ckpt = resolve_checkpoint(path, which)
    try:
        meta = json.loads((ckpt / SIDECAR_FILE).read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{ckpt / SIDECAR_FILE}: not valid JSON ({e})") from e
    check_sidecar(meta, ckpt / SIDECAR_FILE)
    blobs = {}
    for name in (MODEL_FILE, STATE_FILE):
        f = ckpt / name
        if not f.is_file():
            if name == MODEL_FILE:
                raise CheckpointError(f"{ckpt}: {MODEL_FILE} is missing")
            continue
        data = f.read_bytes()
        want = meta.get("files", {}).get(name, {}).get("sha256")
        if verify and want and _sha256(data) != want:
            raise CheckpointError(f"{f}: sha256 does not match the sidecar (file corrupted or replaced)")
        blobs[name] = data
    try:
        weights = st_load(blobs[MODEL_FILE])
        state = st_load(blobs[STATE_FILE]) if STATE_FILE in blobs else {}
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{ckpt}: cannot read safetensors ({e})") from e
    _check_config_matches_weights(meta, _safetensors_metadata(blobs[MODEL_FILE]), ckpt)
    return Checkpoint(ckpt, weights, meta, state)


# the sidecar's keys that handpose reads, and what each must be (others are kept as they are)
_SIDECAR_TYPES: dict[str, tuple[type, ...]] = {
    "format": (str,),
    "step": (int,),
    "epoch": (int,),
    "steps_per_epoch": (int,),
    "total_steps": (int,),
    "world_size": (int,),
    "model_config": (dict,),
    "train_config": (dict,),
    "metrics": (dict,),
    "files": (dict,),
    "train_state": (dict,),
    "provenance": (dict,),
    "init_from": (dict, type(None)),
}


def check_sidecar(meta: Any, where: str | os.PathLike = SIDECAR_FILE) -> None:
    """Refuse a sidecar this version cannot read correctly, naming the key and the fix.

    The format must be exactly :data:`FORMAT` (a newer version is refused rather than misread);
    the keys handpose reads must have their types (integers for ``step``, objects for the
    configs, ``{"sha256": str, "bytes": int}`` per file). The configs' own fields are checked
    when the model is built from them (``ModelConfig`` / ``TrainConfig``).
    """
    if not isinstance(meta, dict):
        raise CheckpointError(f"{where}: expected a JSON object, got {type(meta).__name__}")
    fmt = meta.get("format")
    if not (isinstance(fmt, str) and fmt.startswith("handpose-checkpoint/")):
        raise CheckpointError(f"{where}: not a handpose checkpoint (format={fmt!r}, expected {FORMAT!r})")
    if fmt != FORMAT:
        raise CheckpointError(
            f"{where}: checkpoint format {fmt!r} is not one this handpose reads ({FORMAT!r}); "
            "it was written by another version: upgrade handpose (pip install -U handpose) to load it"
        )
    for key, types in _SIDECAR_TYPES.items():
        if key not in meta:
            continue
        v = meta[key]
        if not isinstance(v, types) or isinstance(v, bool):
            want = " or ".join("null" if t is type(None) else _TYPE_NAMES[t] for t in types)
            raise CheckpointError(
                f"{where}: {key!r} must be {want}, got {v!r:.80} ({type(v).__name__}); "
                "the sidecar was edited or damaged: restore it from the run folder or a copy"
            )
        if key in ("step", "epoch") and v < 0:
            raise CheckpointError(f"{where}: {key!r} must be >= 0, got {v}")
    for name, entry in meta.get("files", {}).items():
        ok = isinstance(entry, dict) and isinstance(entry.get("sha256", ""), str)
        if not ok or isinstance(entry.get("bytes", 0), bool) or not isinstance(entry.get("bytes", 0), int):
            raise CheckpointError(
                f"{where}: files[{name!r}] must be {{'sha256': str, 'bytes': int}}, got {entry!r:.80}"
            )


_TYPE_NAMES = {str: "a string", int: "an integer", dict: "a JSON object"}


def _safetensors_metadata(blob: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file's JSON header (empty when there is none)."""
    n = int.from_bytes(blob[:8], "little")
    try:
        header = json.loads(blob[8 : 8 + n])
    except ValueError:
        return {}
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else {}


def _check_config_matches_weights(meta: dict, weights_meta: dict[str, str], ckpt: Path) -> None:
    """The sidecar's ``model_config`` must be the one saved inside the weights file.

    Checkpoints written before the weights carried their config (no metadata) are not checked.
    """
    saved = weights_meta.get(CONFIG_METADATA)
    if saved is None:
        return
    if "model_config" not in meta:
        raise CheckpointError(
            f"{ckpt / SIDECAR_FILE}: 'model_config' is missing but the weights were saved with one; "
            "restore the sidecar"
        )
    want = json.loads(saved)
    got = meta["model_config"]
    if _canonical(got) != saved:
        diff = [
            f"{k}: {got.get(k)!r} (weights: {want.get(k)!r})"
            for k in sorted(set(want) | set(got))
            if _canonical(got.get(k)) != _canonical(want.get(k))
        ]
        raise CheckpointError(
            f"{ckpt / SIDECAR_FILE}: the weights do not fit this model_config, which differs from the "
            f"config saved with them ({'; '.join(diff)}); weights only work with the config they were "
            "trained with: restore the sidecar's model_config"
        )


def load_weights(model: torch.nn.Module, ckpt: Checkpoint, strict: bool = True) -> torch.nn.Module:
    """Copy a checkpoint's weights into ``model`` (converted to the model's dtypes)."""
    target = model.module if hasattr(model, "module") else model
    own = target.state_dict()
    sd = {k: v.to(own[k].dtype) if k in own else v for k, v in ckpt.weights.items()}
    try:
        target.load_state_dict(sd, strict=strict)
    except RuntimeError as e:
        raise CheckpointError(
            f"{ckpt.path}: weights do not fit this model (a different config?): {str(e)[:400]}"
        ) from e
    return model
