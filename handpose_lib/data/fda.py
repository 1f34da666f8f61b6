"""Fourier domain adaptation (FDA, Yang & Soatto, CVPR 2020): give a rendered crop the image
statistics of photographs without any hand photo.

An image's Fourier amplitude spectrum carries its "style" (overall colour, contrast, how much
energy sits at each coarse scale), its phase carries the content (edges, where the hand is).
:func:`fda` keeps the rendered crop's phase and replaces the amplitude in a small square band
around the zero frequency (half-side ``floor(beta * min(H, W))`` frequencies) by a mix with the
amplitude of a photograph; higher frequencies (the hand's edges and texture) stay the engine's.
The photographs are the engine's own background pool
(:func:`handpose_lib.data.synthetic.backgrounds.photographs`: scikit-image's sample photos),
cropped at random scales (:func:`amplitude_pool`), so no hand photograph is involved and the
real photos the book evaluates on stay unseen.

:class:`FDA` is the random transform of a training sample (a pool entry, ``beta`` and the mix
drawn per sample from its numpy ``Generator``); its cost per 128x128 crop is about that of the
rest of the training augmentation (``python benchmarks/augment.py``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np
import torch


def band_halfwidth(h: int, w: int, beta: float) -> int:
    """Half-side of the low-frequency square FDA replaces: ``floor(beta * min(h, w))``."""
    return int(np.floor(beta * min(h, w)))


def amplitude(img: np.ndarray) -> np.ndarray:
    """Centred amplitude spectrum (zero frequency at ``(H // 2, W // 2)``) of an (H, W, C) image,
    per channel: (H, W, C) float32."""
    return np.fft.fftshift(np.abs(np.fft.fft2(img, axes=(0, 1))), axes=(0, 1)).astype(np.float32)


@functools.lru_cache(maxsize=16)
def _band_dft(n: int, b: int) -> torch.Tensor:
    """(2b+1, n) complex128 DFT rows for the frequencies -b..b of a length-n axis."""
    k = torch.arange(-b, b + 1, dtype=torch.float64)[:, None]
    return torch.exp(-2j * torch.pi * k * torch.arange(n, dtype=torch.float64)[None, :] / n)


def _along_first(a: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Apply the matrix ``m`` (P, N) along the first axis of ``a`` (N, M, C) and move that axis
    to the second place: (M, P, C). Twice gives both image axes, as 2D matrix products."""
    n, mm, c = a.shape
    return (m @ a.reshape(n, mm * c)).reshape(len(m), mm, c).transpose(0, 1)


def fda(src: np.ndarray, target_amplitude: np.ndarray, beta: float, mix: float = 1.0) -> np.ndarray:
    """Mix the low-frequency amplitude of ``src`` with ``target_amplitude``, keeping the phase.

    Args:
        src: (H, W, C) float image (the rendered crop).
        target_amplitude: (H, W, C) centred amplitude spectrum (:func:`amplitude`) of a photo.
        beta: band size, as in the paper: half-side ``b = floor(beta * min(H, W))`` frequencies
            (0: only the mean of each channel).
        mix: 1 replaces the band's amplitude (the paper's FDA), 0 keeps it, between interpolates.
    Returns:
        (H, W, C) float32, not clipped. Every frequency outside the band, and the phase of every
        frequency, is the source's (``tests/test_camera_effects.py`` checks this with full FFTs).

    Only the (2b+1)^2 band frequencies change, so they are computed with two small DFT matrices
    (``Ey @ x @ Ex^T`` per channel, torch matrix products: one thread in a DataLoader worker)
    and the change is added back with their inverses, instead of two full FFTs (several times
    faster on a 128x128 crop). The band is symmetric about the zero frequency and amplitude
    spectra of real images are even, so the change is real.
    """
    if src.shape != target_amplitude.shape:
        raise ValueError(f"fda: image {src.shape} and target amplitude {target_amplitude.shape} differ")
    h, w = src.shape[:2]
    b = band_halfwidth(h, w, beta)
    Ey, Ex = _band_dft(h, b), _band_dft(w, b)
    x = torch.from_numpy(np.asarray(src, dtype=np.float64)).to(torch.complex128)
    spec = _along_first(_along_first(x, Ey), Ex)  # (K, K, C): the band of each channel's DFT
    amp = spec.abs()
    tb = target_amplitude[h // 2 - b : h // 2 + b + 1, w // 2 - b : w // 2 + b + 1]
    new_amp = (1.0 - mix) * amp + mix * torch.from_numpy(np.asarray(tb, dtype=np.float64))
    unit = torch.where(amp > 0, spec / amp.clamp_min(1e-300), 1.0)  # the phase, exp(i phi)
    delta = (new_amp - amp) * unit
    change = _along_first(_along_first(delta, Ey.conj().T), Ex.conj().T).real.numpy()
    return (np.asarray(src, dtype=np.float32) + (change / (h * w)).astype(np.float32)).astype(np.float32)


@functools.lru_cache(maxsize=2)
def amplitude_pool(h: int, w: int, per_photo: int = 6) -> np.ndarray:
    """(N, h, w, 3) float32 centred amplitude spectra of random crops (a quarter to the whole of
    the shorter side, fixed seed) of the engine's background photographs, resized to h x w."""
    from .synthetic.backgrounds import photographs

    rng = np.random.default_rng(2020)
    out = []
    for img in photographs():
        H, W = img.shape[:2]
        for _ in range(per_photo):
            side = int(min(H, W) * rng.uniform(0.25, 1.0))
            ch, cw = side, max(1, round(side * w / h))
            y0, x0 = int(rng.integers(0, H - ch + 1)), int(rng.integers(0, max(1, W - cw + 1)))
            crop = cv2.resize(img[y0 : y0 + ch, x0 : x0 + cw], (w, h), interpolation=cv2.INTER_AREA)
            out.append(amplitude(crop.astype(np.float32) / 255.0))
    return np.stack(out)


@dataclass
class FDA:
    """Random FDA of a training sample with probability ``prob``: a photo's amplitude from
    :func:`amplitude_pool`, ``beta ~ U(beta_range)``, ``mix ~ U(mix_range)``; clipped to [0, 1]."""

    prob: float = 0.5
    beta_range: tuple[float, float] = (0.01, 0.05)
    mix_range: tuple[float, float] = (0.5, 1.0)

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        u = rng.uniform(size=4)  # a fixed number of draws per sample
        if u[0] >= self.prob:
            return sample
        hwc = sample["image"].permute(1, 2, 0).numpy()
        pool = amplitude_pool(*hwc.shape[:2])
        target = pool[int(u[1] * len(pool))]
        beta = self.beta_range[0] + u[2] * (self.beta_range[1] - self.beta_range[0])
        mix = self.mix_range[0] + u[3] * (self.mix_range[1] - self.mix_range[0])
        img = np.clip(fda(hwc, target, beta, mix), 0.0, 1.0)
        out = dict(sample)
        out["image"] = torch.from_numpy(img).permute(2, 0, 1)
        return out
