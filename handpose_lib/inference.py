"""Inference: a trained model from its checkpoint, one image end to end, the fast paths, ONNX.

Layer 3 of the library (imports ``checkpoint``, ``config``, ``device``, ``model`` and
``data.crop``). Nothing here changes what the network computes; every fast path gives the eager
model's outputs within float tolerance (``tests/test_inference.py``), and each is measured in
``benchmarks/inference.py``.

Loading:

- :func:`load_trained`: the model of a run folder or checkpoint (eval mode) and its checkpoint.
- :func:`model_from_checkpoint`: the model of an already loaded checkpoint, built from the
  ``model_config`` (or ``train_config``) its JSON sidecar stores.

One image (what ``handpose predict``, the occlusion study's figures and the chapters use):

- :func:`predict_image`: crop a photo (around a hand box, or the centred square), run the model,
  and map the 2D joints back to the photo's pixels (:class:`ImagePrediction`, with the 3D joints).

Batches, fast (images (B, 3, S, S) float32 in [0, 1]; ``coords2d`` (B, 21, 2) pixels,
``joints3d`` (B, 21, 3) normalised units, see :mod:`handpose_lib.model`):

- :func:`fuse_conv_bn`: folds every eval-mode ``BatchNorm2d`` into the convolution before it
  (``conv(x) * g + b`` is one convolution with scaled weights), so BN costs nothing at run time.
- :func:`prepare_for_inference`: a copy of the model in eval mode, BN folded, weights in
  ``channels_last`` (NHWC) layout, gradients off. On CPU, oneDNN's NHWC convolutions avoid the
  layout reorders that NCHW tensors pay at every convolution.
- :func:`predict`: one forward pass in inference mode, with bfloat16 autocast on CPUs whose
  oneDNN has native bf16 kernels (:func:`~handpose_lib.device.cpu_bf16_supported`); outputs
  that matter (``coords2d``, ``joints3d``) stay float32 (LHR's softmax runs in float32).
- :func:`compile_model`: ``torch.compile`` (Inductor) of a prepared model, with a clear error
  where it cannot work (no C++ compiler, Windows without Triton...).

ONNX:

- :func:`export_onnx`: an ONNX graph (opset 17, TorchScript-based exporter) whose outputs are
  :data:`ONNX_OUTPUTS` ``(coords2d, joints3d, bones, heatmaps, probs)``.
- :func:`ort_session`: an ONNX Runtime session with the options that matter on a few cores
  (all graph optimisations, ``intra_op`` threads = the cores, one inter-op thread, sequential
  execution, memory arena and pattern) and :func:`ort_predict`, which asks only for the outputs
  it needs; :func:`onnx_max_diff` compares an exported graph with the PyTorch model.
"""

from __future__ import annotations

import copy
import os
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from . import checkpoint as ckpt
from .config import TrainConfig, build_for_config
from .data.crop import crop_image, uncrop_points
from .device import cpu_bf16_supported

# ----------------------------------------------------------------------------------------
# loading a trained model


def load_trained(path: str | os.PathLike, which: str = "last", device: str = "cpu"):
    """A trained model from a run folder or checkpoint: ``(model in eval mode, checkpoint)``."""
    c = ckpt.load_checkpoint(path, which)
    return model_from_checkpoint(c, device), c


def model_from_checkpoint(c: ckpt.Checkpoint, device: str = "cpu") -> torch.nn.Module:
    """The model (eval mode) of an already loaded checkpoint, built from its sidecar's config."""
    from .model import ModelConfig, build_model

    mc = c.meta.get("model_config")
    try:
        if mc is None:
            tc = c.meta.get("train_config")
            if tc is None:
                raise ckpt.CheckpointError(f"{c.path}: the sidecar names no model_config or train_config")
            model = build_for_config(TrainConfig.from_dict(tc))
        else:
            mc = dict(mc, pretrained=False, pretrained_path=None)
            model = build_model(ModelConfig.from_dict(mc))
    except (TypeError, ValueError) as e:  # an edited or damaged sidecar: a message, not a traceback
        raise ckpt.CheckpointError(
            f"{c.path / ckpt.SIDECAR_FILE}: its config cannot build a model ({e}); "
            "restore the sidecar from the run folder or a copy"
        ) from e
    ckpt.load_weights(model, c)
    return model.to(device).eval()


# ----------------------------------------------------------------------------------------
# one image end to end


@dataclass
class ImagePrediction:
    """The prediction of :func:`predict_image` for one image."""

    joints2d: np.ndarray  # (21, 2) pixels of the input image (continuous: pixel i's centre is i + 0.5)
    joints3d: np.ndarray  # (21, 3) root-relative (wrist = 0), in units of the middle MCP->PIP bone
    crop: dict  # {"x0", "y0", "side", "size"}: the square the model saw, in the image's pixels


def predict_image(model: nn.Module, image, box=None, margin: float = 0.2) -> ImagePrediction:
    """Predict one image end to end: crop, model, 2D joints back in the image's pixels, and 3D.

    Args:
        model: a model with ``config.input_size`` (a ResUnet, eval mode); runs on its device.
        image: (H, W, 3) uint8 RGB photo, or a (3, H, W) float tensor in [0, 1] (a sample's image).
        box: the hand's box ``(x0, y0, x1, y1)`` in image pixels, enlarged by ``margin`` of its
            larger side on each side (like the training crops); ``None``: the largest centred
            square (:func:`~handpose_lib.data.crop.crop_image`). A tensor already of the
            model's input size, without ``box``, is the crop itself (nothing is resampled).
        margin: space around ``box``, per side.
    """
    size = model.config.input_size
    as_is = box is None and isinstance(image, torch.Tensor) and tuple(image.shape[-2:]) == (size, size)
    if as_is:
        crop, params = image, {"x0": 0.0, "y0": 0.0, "side": float(size), "size": float(size)}
    else:
        crop, params = crop_image(image, size, box, margin)
    with torch.no_grad():
        out = model(crop[None].to(next(model.parameters()).device))
    uv = out.coords2d[0].float().cpu().numpy()
    return ImagePrediction(
        joints2d=uv if as_is else uncrop_points(uv, params),
        joints3d=out.joints3d[0].float().cpu().numpy(),
        crop=params,
    )


# ----------------------------------------------------------------------------------------
# batches, fast: BatchNorm folded, channels_last, bf16, torch.compile


def _fuse_pair(parent: nn.Module, conv_name: str, bn_name: str) -> bool:
    conv, bn = getattr(parent, conv_name, None), getattr(parent, bn_name, None)
    if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
        setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
        setattr(parent, bn_name, nn.Identity())
        return True
    return False


def fuse_conv_bn(model: nn.Module) -> int:
    """Fold every ``BatchNorm2d`` that directly follows a ``Conv2d`` into it, in place.

    Covers the two ways torchvision and ``model.py`` write conv + BN: named pairs of attributes
    used in that order in ``forward`` (``conv1``/``bn1``, ``conv2``/``bn2``, ``conv3``/``bn3``
    of ResNet stems and blocks) and consecutive entries of an ``nn.Sequential`` (ResNet's
    ``downsample``, the decoder's conv-BN-ReLU). The model must be in eval mode (BN then uses
    its running statistics, a fixed affine map). Returns the number of BatchNorms folded.
    """
    if model.training:
        raise ValueError("fuse_conv_bn: call model.eval() first (training-mode BN cannot be folded)")
    n = 0
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for a, b in zip(names, names[1:]):
                n += _fuse_pair(module, a, b)
        else:
            for k in (1, 2, 3):
                n += _fuse_pair(module, f"conv{k}", f"bn{k}")
    return n


def prepare_for_inference(
    model: nn.Module, *, channels_last: bool = True, fuse_bn: bool = True, copy_model: bool = True
) -> nn.Module:
    """The model made ready for fast inference: eval mode, BN folded, NHWC weights, no grads.

    Args:
        model: a :class:`~handpose_lib.model.ResUnet` (or any module).
        channels_last: store conv weights as NHWC (feed NHWC images too, see :func:`predict`).
        fuse_bn: fold BatchNorm into the convolutions (:func:`fuse_conv_bn`).
        copy_model: work on a deep copy (default) so the original stays trainable.
    Returns:
        the prepared module (same outputs as ``model.eval()`` within float tolerance).
    """
    m = copy.deepcopy(model) if copy_model else model
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    if fuse_bn:
        fuse_conv_bn(m)
    if channels_last:
        m.to(memory_format=torch.channels_last)
    return m


def _input(images: torch.Tensor, channels_last: bool) -> torch.Tensor:
    if channels_last and images.ndim == 4:
        return images.contiguous(memory_format=torch.channels_last)
    return images


def predict(
    model: nn.Module,
    images: torch.Tensor,
    *,
    channels_last: bool = True,
    bf16: bool = False,
    inference_mode: bool = True,
):
    """One forward pass in ``torch.inference_mode`` (and bf16 autocast when asked and supported).

    ``images`` (B, 3, S, S) -> the model's output (:class:`~handpose_lib.model.HandPoseOutput`).
    ``inference_mode=False`` uses ``torch.no_grad`` instead: needed for ``torch.compile``d models
    (Dynamo's guard on the model's constant numpy path matrix fails under inference mode in
    torch 2.14; :func:`compile_model`'s result works under ``no_grad``).
    ``bf16=True`` on a CPU without native bf16 (:func:`cpu_bf16_supported`) or a GPU without it
    raises ``RuntimeError`` rather than silently running the slow emulation.
    """
    device = images.device.type
    if bf16:
        ok = cpu_bf16_supported() if device == "cpu" else torch.cuda.is_bf16_supported()
        if not ok:
            raise RuntimeError(
                f"bf16 inference requested but this {device.upper()} has no native bfloat16 kernels; "
                "use bf16=False"
            )
    ctx = torch.autocast(device, dtype=torch.bfloat16) if bf16 else nullcontext()
    grad = torch.inference_mode() if inference_mode else torch.no_grad()
    with grad, ctx:
        return model(_input(images, channels_last))


def compile_model(
    model: nn.Module, mode: str | None = None, dynamic: bool = False, backend: str = "inductor"
) -> nn.Module:
    """``torch.compile`` (Inductor) of a model, with a readable error when it cannot compile.

    The first call per input shape compiles (about a minute for the paper model on 2 cores);
    later calls are fast. ``mode="max-autotune"`` tries more kernels (much longer to compile).
    Run the result with ``predict(..., inference_mode=False)`` (see :func:`predict`).
    """
    if not hasattr(torch, "compile"):
        raise RuntimeError(f"torch.compile needs torch >= 2.0 (this is {torch.__version__})")
    return torch.compile(model, mode=mode, dynamic=dynamic, backend=backend)


# ----------------------------------------------------------------------------------------
# ONNX: export and ONNX Runtime


class _ExportWrapper(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor):
        out = self.model(images)
        return out.coords2d, out.joints3d, out.bones, out.heatmaps, out.probs


ONNX_OUTPUTS = ("coords2d", "joints3d", "bones", "heatmaps", "probs")


def export_onnx(
    model: nn.Module, path, batch_size: int = 1, opset: int = 17, dynamic_batch: bool = True
) -> str:
    """Export to ONNX with the TorchScript-based exporter (``dynamo=False``).

    torch >= 2.9 defaults to the ``torch.export``-based exporter, which needs the ``onnxscript``
    package (not a dependency of this project); the TorchScript exporter needs nothing more and
    exports this model exactly (onnxruntime matches PyTorch within 1e-3 px, see the tests).

    Input ``images`` (B, 3, S, S) float32 in [0, 1]; outputs ``coords2d, joints3d, bones,
    heatmaps, probs`` (:data:`ONNX_OUTPUTS`), batch axis dynamic unless ``dynamic_batch=False``.
    The model is exported in eval mode (BatchNorm uses running statistics). Returns the path.
    """
    path = os.fspath(path)
    s = model.config.input_size
    device = next(model.parameters()).device
    dummy = torch.rand(batch_size, 3, s, s, device=device)
    was_training = model.training
    model.eval()
    kwargs = {}
    if "dynamo" in torch.onnx.export.__code__.co_varnames:
        kwargs["dynamo"] = False
    axes = {"images": {0: "batch"}, **{n: {0: "batch"} for n in ONNX_OUTPUTS}} if dynamic_batch else None
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # the shape checks and constant tensors are fixed by design: silence the tracer's notes
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)  # torch >= 2.9 calls this exporter legacy
            torch.onnx.export(
                _ExportWrapper(model),
                (dummy,),
                path,
                input_names=["images"],
                output_names=list(ONNX_OUTPUTS),
                opset_version=opset,
                dynamic_axes=axes,
                **kwargs,
            )
    finally:
        model.train(was_training)
    return path


def ort_session_options(threads: int | None = None, *, spin: bool = True):
    """ONNX Runtime ``SessionOptions`` for low-latency CPU inference on ``threads`` cores.

    - all graph optimisations (constant folding, conv+BN/activation fusion, layout transforms);
    - ``intra_op_num_threads = threads`` (default: all cores) and one inter-op thread with
      sequential execution (this graph is one chain: parallel branches gain nothing);
    - memory arena and memory-pattern planning on (buffers reused across runs);
    - ``spin``: worker threads spin between ops (lower latency, uses the cores while waiting);
      turn off on a machine shared with other work.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = int(threads or os.cpu_count() or 1)
    so.inter_op_num_threads = 1
    so.enable_cpu_mem_arena = True
    so.enable_mem_pattern = True
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return so


def ort_session(onnx_path, threads: int | None = None, *, providers=None, spin: bool = True):
    """An ``onnxruntime.InferenceSession`` for a model written by :func:`export_onnx`.

    ``providers`` defaults to CUDA when onnxruntime has it and a GPU is present, else CPU.
    A missing file gives ``FileNotFoundError`` naming it.
    """
    import onnxruntime as ort

    onnx_path = os.fspath(onnx_path)
    if not os.path.isfile(onnx_path):
        raise FileNotFoundError(
            f"ort_session: {onnx_path!r} does not exist; export it with export_onnx (handpose export)"
        )
    if providers is None:
        avail = ort.get_available_providers()
        providers = ["CPUExecutionProvider"]
        if "CUDAExecutionProvider" in avail and torch.cuda.is_available():
            providers = ["CUDAExecutionProvider", *providers]
    return ort.InferenceSession(onnx_path, ort_session_options(threads, spin=spin), providers=providers)


def ort_predict(session, images, outputs=("coords2d", "joints3d")) -> dict[str, np.ndarray]:
    """Run an ONNX session on ``images`` (B, 3, S, S) (numpy or tensor, float32 in [0, 1]).

    Returns ``{name: array}`` for the requested ``outputs`` only (the others are not copied out).
    """
    x = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"ort_predict: expected images (B, 3, S, S), got shape {x.shape}")
    names = list(outputs)
    return dict(zip(names, session.run(names, {"images": x})))


def onnx_max_diff(model: nn.Module, onnx_path, n: int = 2, seed: int = 0) -> dict[str, float]:
    """Largest ``|ONNX Runtime - PyTorch|`` of ``coords2d`` (px) and ``joints3d`` on ``n`` random
    images (CPU): ``{"coords2d": ..., "joints3d": ...}``."""
    s = model.config.input_size
    x = torch.rand(n, 3, s, s, generator=torch.Generator().manual_seed(seed))
    got = ort_predict(ort_session(onnx_path, providers=["CPUExecutionProvider"], spin=False), x)
    with torch.no_grad():
        ref = model.cpu().eval()(x)
    return {k: float(np.abs(got[k] - getattr(ref, k).numpy()).max()) for k in ("coords2d", "joints3d")}


class OnnxPoseModel:
    """A pose model run by ONNX Runtime at batch sizes of a few hands (the photo pipeline's), where
    it is faster than eager PyTorch on a CPU (``benchmarks/inference.py``: tiny model, batch 1).

    ``OnnxPoseModel(model, weights_sha256)(images (B, 3, S, S))`` -> an object with ``coords2d``
    (B, 21, 2), ``joints3d`` (B, 21, 3) and ``probs`` (B, 21, h, w) float32 tensors, as the
    model's output has. The model is exported once per weights (:func:`export_onnx`) into
    ``cache_dir("onnx")``, named by the weights' sha256, and reused; without a sha, or where the
    cache cannot be written, it is exported into a temporary folder for this object's life.
    ``threads``: ONNX Runtime's (default: torch's current number). ``spin``: whether its worker
    threads spin between runs; off by default, because in the pipeline PyTorch's detector runs
    between two pose-model runs and spinning workers take its cores (measured 2026-12-03 on 2
    cores, 2 threads, the 16 photos: 17.3 ms per frame spinning, 10.1 ms not; 1 thread: no
    difference).
    """

    OUTPUTS = ("coords2d", "joints3d", "probs")

    def __init__(
        self,
        model: nn.Module,
        weights_sha256: str | None = None,
        threads: int | None = None,
        spin: bool = False,
    ):
        import tempfile
        from types import SimpleNamespace

        from .data.cached import cache_dir

        self.config = model.config
        self._out = SimpleNamespace
        s = model.config.input_size
        path = cache_dir("onnx") / f"pose-{weights_sha256[:16]}-{s}.onnx" if weights_sha256 else None
        try:
            if path is not None and not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                part = path.with_name(f"{path.name}.{os.getpid()}.part")
                export_onnx(model, part)
                os.replace(part, path)  # whole or not at all, also with two processes at once
        except OSError:  # a cache that cannot be written: this object's own folder instead
            path = None
        if path is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="handpose-onnx-")
            path = Path(export_onnx(model, Path(self._tmp.name) / "pose.onnx"))
        self.path = path
        self.session = ort_session(
            path, threads or torch.get_num_threads(), providers=["CPUExecutionProvider"], spin=spin
        )

    def __call__(self, images: torch.Tensor):
        got = ort_predict(self.session, images, self.OUTPUTS)
        return self._out(**{k: torch.from_numpy(v) for k, v in got.items()})
