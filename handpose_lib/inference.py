"""Inference: a trained model from its checkpoint, ready to predict.

- :func:`load_trained`: the model of a run folder or checkpoint (eval mode) and its checkpoint.
- :func:`model_from_checkpoint`: the model of an already loaded checkpoint, built from the
  ``model_config`` (or ``train_config``) its JSON sidecar stores.

(Coming here next: the export to ONNX and its ONNX Runtime session, the fused/compiled fast
paths of ``fast.py``, and predicting one image end to end.)

Layer 3: imports ``checkpoint``, ``config`` and ``model``.
"""

from __future__ import annotations

import os

import torch

from . import checkpoint as ckpt
from .config import TrainConfig, build_for_config


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
