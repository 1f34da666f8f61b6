"""Where a model runs: the device, mixed precision and the processes of a distributed run.

- :func:`pick_device`: ``"auto"`` (CUDA, else Apple MPS, else CPU) or a named device that must
  exist (:class:`DeviceUnavailableError` at once, not a failure mid-run).
- :func:`autocast_dtype`: the autocast dtype a recipe's ``amp`` field means on a device.
- :func:`autocast` (that dtype's ``torch.autocast`` context), :func:`to_device` (a batch) and
  :func:`to_host` (scalars back as floats, one copy).
- :func:`cpu_bf16_supported`: whether this CPU has native bfloat16 kernels;
  :func:`measure_cpu_amp`: whether float32 or bf16 autocast trains a model faster on this CPU.
- :func:`setup_distributed`: joins the process group ``torchrun`` describes (:class:`DistInfo`).

Layer 2: imports only torch and ``config`` (for :class:`~handpose_lib.config.ConfigError`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from .config import ConfigError


class DeviceUnavailableError(ValueError):
    """The device asked for (``cuda``, ``mps``) is not there."""


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def pick_device(name: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``: CUDA, else Apple MPS, else CPU; or the device named (``"cuda:1"``, ``"cpu"``),
    which must exist (:class:`DeviceUnavailableError` otherwise, not a failure mid-run)."""
    if isinstance(name, torch.device):
        return name
    if name in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise DeviceUnavailableError(
            f"device {name!r} is not a device name (auto, cpu, cuda, cuda:N, mps): {e}"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailableError(
            f"device {name!r}: this torch ({torch.__version__}) sees no CUDA GPU "
            "(torch.cuda.is_available() is False); use device auto or cpu"
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise DeviceUnavailableError(
            f"device {name!r}: there are only {torch.cuda.device_count()} CUDA GPU(s), numbered from 0"
        )
    if dev.type == "mps" and not _mps_available():
        raise DeviceUnavailableError(
            f"device {name!r}: Apple MPS is not available here; use device auto or cpu"
        )
    return dev


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device`` (``None`` = full float32)."""
    if amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        if device.type != "cuda":
            raise ConfigError("amp=fp16 needs CUDA; use bf16 or off on this device")
        return torch.float16
    if device.type == "cuda":  # auto, measure
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None


def autocast(device: torch.device, amp_dtype: torch.dtype | None):
    """``torch.autocast`` to ``amp_dtype`` on ``device`` (off when ``amp_dtype`` is ``None``)."""
    return torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None)


def to_device(batch: dict, device: torch.device, channels_last: bool = False) -> dict:
    """A batch's tensors on ``device`` (non-blocking; ``image`` in channels-last layout on request)."""
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            v = v.to(device, non_blocking=True)
            if k == "image" and channels_last:
                v = v.contiguous(memory_format=torch.channels_last)
        out[k] = v
    return out


def to_host(values: Sequence[Any], device: torch.device) -> list[float]:
    """Scalar tensors (or numbers) as Python floats, with one device-to-host copy (each
    ``float(t)`` of a CUDA tensor would wait for the GPU again)."""
    return torch.stack(
        [torch.as_tensor(v, device=device).detach().float().reshape(()) for v in values]
    ).tolist()


def cpu_bf16_supported() -> bool:
    """True when this CPU has native bfloat16 kernels in oneDNN (AVX512-BF16 or AMX).

    Without them bf16 autocast on CPU is emulated and slower than float32, so callers fall back.
    """
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # older torch builds without the probe
        return False


def _tensors(out: Any) -> list[torch.Tensor]:
    """The tensors of a model's output: a tensor, a dict, a list/tuple or a dataclass of them."""
    if torch.is_tensor(out):
        return [out]
    if isinstance(out, dict):
        items = list(out.values())
    elif isinstance(out, (list, tuple)):
        items = list(out)
    else:
        items = list(getattr(out, "__dict__", {}).values())
    return [t for v in items for t in _tensors(v)]


def measure_cpu_amp(model: torch.nn.Module, example: torch.Tensor, passes: int = 3) -> dict:
    """Time training passes (forward, a scalar of all outputs, backward) of a copy of ``model`` on
    ``example`` (B, C, H, W) in float32 and in bf16 autocast on the CPU, alternating (after one
    warm-up pass each) so a load change on a shared machine hits both alike; the median of each.

    Returns ``{"choice": "bf16" | "off", "fp32_img_s", "bf16_img_s", "passes"}``; ``"off"`` where
    this CPU has no native bf16 kernels (emulated bf16 is slower; nothing is timed then).
    ``model`` itself is not touched: no weight, buffer or gradient changes, no global RNG draw.
    """
    import copy
    import statistics
    import time

    if not cpu_bf16_supported():
        return {"choice": "off", "fp32_img_s": None, "bf16_img_s": None, "passes": 0}
    net = copy.deepcopy(model).cpu().train()

    def one(dtype: torch.dtype | None) -> float:
        t = time.perf_counter()
        with autocast(torch.device("cpu"), dtype):
            out = net(example)
        sum(v.float().mean() for v in _tensors(out) if v.is_floating_point()).backward()
        net.zero_grad(set_to_none=True)
        return time.perf_counter() - t

    one(None), one(torch.bfloat16)  # warm-up: oneDNN builds its kernels on the first pass
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(passes):
        times["fp32"].append(one(None))
        times["bf16"].append(one(torch.bfloat16))
    speed = {k: len(example) / statistics.median(v) for k, v in times.items()}
    return {
        "choice": "bf16" if speed["bf16"] > speed["fp32"] else "off",
        "fp32_img_s": round(speed["fp32"], 1),
        "bf16_img_s": round(speed["bf16"], 1),
        "passes": passes,
    }


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def setup_distributed(device_type: str) -> DistInfo:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1); NCCL on CUDA, else gloo."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
