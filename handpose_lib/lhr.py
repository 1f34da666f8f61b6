"""Latent Heatmap Representation (LHR): 2D joints from latent heatmaps by a spatial soft-argmax,
and the plain argmax read-out it replaces (:func:`argmax_decode`, for the ablations and checks).

Layer 2 of the library (imports only torch).

The paper's eq. 1 turns the latent heatmap ``F_i`` of joint ``i`` into a probability map with a
learnable per-joint inverse temperature ``beta_i``::

    PM_i(p) = exp(beta_i F_i(p)) / sum_{p' in Omega} exp(beta_i F_i(p'))         (1)

and eq. 2 takes the expected position under that map::

    p_i = sum_{p in Omega} PM_i(p) * p                                            (2)

Choices made here (the paper does not state them):

- **Positive beta.** ``beta_i = exp(log_beta_i)``; ``log_beta_i`` is the learnable parameter,
  initialised to ``log(init_beta)`` (the model uses ``init_beta = 5``, see ``model.py``).
  A multiplicative parametrisation keeps beta positive (a negative beta would turn peaks into
  troughs) and makes its updates scale-free. A larger beta sharpens the map; a smaller one spreads it.
- **Pixel convention.** Cell ``k`` of a ``w``-wide map covers input pixels
  ``[k W/w, (k+1) W/w]`` and stands for its centre ``(k + 0.5) W / w``, so coordinates are in
  input-image pixels and lie inside ``[0, W]`` (the library's pixel-edge convention; pixel
  ``i``'s centre is ``i + 0.5``). A uniform map gives the image centre ``(W/2, H/2)``.
- **Numerics.** The softmax is written as ``exp(z - logsumexp(z))`` and always computed in
  float32 (also inside float16/bfloat16 autocast): a 64x64 softmax in half precision loses the
  small probabilities that the expectation needs. The outputs are float32 (float64 inputs
  stay float64, for gradcheck).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def _hw(image_size) -> tuple[int, int]:
    """``int`` or ``(height, width)`` -> ``(height, width)``."""
    if isinstance(image_size, int):
        return image_size, image_size
    h, w = image_size
    return int(h), int(w)


def cell_centres(n: int, extent: float, dtype=torch.float32, device=None) -> Tensor:
    """Centres of ``n`` equal cells spanning ``[0, extent]``: ``(k + 0.5) * extent / n``, shape (n,)."""
    return (torch.arange(n, dtype=dtype, device=device) + 0.5) * (extent / n)


def soft_argmax_2d(latent: Tensor, beta: Tensor, image_size) -> tuple[Tensor, Tensor]:
    """Spatial softmax (eq. 1) and expected coordinate (eq. 2).

    Args:
        latent: (B, J, h, w) latent heatmaps (any float dtype).
        beta: (J,) positive inverse temperatures (or a scalar).
        image_size: ``int`` or ``(height, width)`` of the input image in pixels; the
            coordinates are scaled to it.
    Returns:
        ``(coords, probs)``: coords (B, J, 2) as ``(x, y)`` input pixels in ``[0, W] x [0, H]``;
        probs (B, J, h, w), each map sums to 1. Both float32 (float64 for float64 input).
    """
    if latent.ndim != 4:
        raise ValueError(f"soft_argmax_2d: latent must be (B, J, h, w), got shape {tuple(latent.shape)}")
    height, width = _hw(image_size)
    b, j, h, w = latent.shape
    dtype = torch.float64 if latent.dtype == torch.float64 else torch.float32
    with torch.autocast(device_type=latent.device.type, enabled=False):
        z = latent.to(dtype).reshape(b, j, h * w)
        beta = (
            beta.to(device=latent.device, dtype=dtype)
            if torch.is_tensor(beta)
            else torch.tensor(beta, dtype=dtype)
        )
        z = z * (beta.reshape(1, -1, 1) if beta.ndim else beta)
        probs = torch.exp(z - torch.logsumexp(z, dim=-1, keepdim=True)).reshape(b, j, h, w)
        xs = cell_centres(w, float(width), dtype, latent.device)
        ys = cell_centres(h, float(height), dtype, latent.device)
        x = (probs.sum(dim=2) * xs).sum(dim=-1)  # marginal over rows, then E[x]
        y = (probs.sum(dim=3) * ys).sum(dim=-1)
        coords = torch.stack((x, y), dim=-1)
    return coords, probs


def argmax_decode(heatmaps: Tensor, image_size: int) -> Tensor:
    """Plain heatmap argmax, the read-out LHR replaces: (B, J, h, w) -> (B, J, 2) px.

    Each joint's best cell, at its centre: cell ``k`` of ``w`` covers ``[k W/w, (k+1) W/w]`` of
    the image (the convention above), so its centre is ``(k + 0.5) * W / w``. Ties go to the
    first cell in row-major order.
    """
    B, J, h, w = heatmaps.shape
    flat = heatmaps.reshape(B, J, h * w).argmax(-1)
    y, x = flat // w, flat % w
    return torch.stack([(x.float() + 0.5) * image_size / w, (y.float() + 0.5) * image_size / h], -1)


class LatentHeatmap2D(nn.Module):
    """LHR with one learnable ``beta_i = exp(log_beta_i)`` per joint.

    ``forward(latent (B, J, h, w), image_size)`` -> ``(coords (B, J, 2) pixels, probs (B, J, h, w))``.
    """

    def __init__(self, num_joints: int = 21, init_beta: float = 1.0):
        super().__init__()
        if init_beta <= 0:
            raise ValueError(f"init_beta must be positive, got {init_beta}")
        self.num_joints = num_joints
        self.log_beta = nn.Parameter(torch.full((num_joints,), math.log(init_beta)))

    @property
    def beta(self) -> Tensor:
        """(J,) the positive inverse temperatures."""
        return self.log_beta.exp()

    def forward(self, latent: Tensor, image_size) -> tuple[Tensor, Tensor]:
        if latent.ndim != 4 or latent.shape[1] != self.num_joints:
            raise ValueError(
                f"LatentHeatmap2D: expected latent (B, {self.num_joints}, h, w), got {tuple(latent.shape)}"
            )
        return soft_argmax_2d(latent, self.beta, image_size)

    def extra_repr(self) -> str:
        return f"num_joints={self.num_joints}"
