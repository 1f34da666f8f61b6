"""Counter-based random numbers: sample ``i`` of seed ``s`` always gets the same numbers.

Every random quantity of the engine is drawn from :class:`Stream`, which hashes
``(seed, sample index, draw counter)`` with an integer hash. The numbers therefore do not depend
on how samples are batched, on the device (CPU and CUDA give the same integers), or on what was
rendered before, so a data set is defined by ``(seed, n, config)`` alone and needs no files.

The hash is a 32-bit avalanche hash (the ``0x45d9f3b`` multiply-xorshift of Thomas Mueller,
public domain) evaluated in int64 with every product kept below 2**63, so no arithmetic ever
overflows.
"""

from __future__ import annotations

import math

import torch

_MASK = 0xFFFFFFFF
_MUL = 0x45D9F3B


def hash32(x: torch.Tensor) -> torch.Tensor:
    """Avalanche hash of int64 values in [0, 2**32): (...) -> (...) int64 in [0, 2**32)."""
    x = x & _MASK
    x = ((x >> 16) ^ x) * _MUL & _MASK
    x = ((x >> 16) ^ x) * _MUL & _MASK
    return (x >> 16) ^ x


class Stream:
    """Per-sample random streams for a batch of sample indices.

    ``Stream(seed, idx)`` with ``idx`` (B,) int64 hands out (B, n) tensors; the k-th number a
    sample receives depends only on ``(seed, idx, k)``. Code must draw in a fixed order (the
    generator's code order), which makes the output a pure function of ``(seed, idx)``.
    """

    def __init__(self, seed: int, idx: torch.Tensor, salt: int = 0):
        idx = torch.as_tensor(idx, dtype=torch.int64)
        self.device = idx.device
        s = hash32(torch.tensor([(int(seed) * 0x9E3779B1 + salt * 0x85EBCA6B) & _MASK], device=self.device))
        self._base = hash32(hash32(idx ^ s) + (idx >> 32))  # (B,)
        self._count = 0

    def bits(self, n: int) -> torch.Tensor:
        """(B, n) int64 uniform in [0, 2**32)."""
        k = torch.arange(self._count, self._count + n, device=self.device, dtype=torch.int64)
        self._count += n
        return hash32(hash32(self._base[:, None] ^ (k * 0x27D4EB2F & _MASK)[None, :]) + k[None, :])

    def uniform(self, n: int = 1, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
        """(B, n) float32 uniform in [lo, hi)."""
        u = (self.bits(n) >> 8).to(torch.float32) * (1.0 / 16777216.0)
        return lo + (hi - lo) * u

    def normal(self, n: int = 1) -> torch.Tensor:
        """(B, n) float32 standard normal (Box-Muller)."""
        u1 = self.uniform(n).clamp_min(1e-7)
        u2 = self.uniform(n)
        return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)

    def choice(self, probs) -> torch.Tensor:
        """(B,) int64 category drawn with the given (C,) probabilities."""
        p = torch.as_tensor(probs, dtype=torch.float32, device=self.device)
        cdf = torch.cumsum(p / p.sum(), 0)
        u = self.uniform(1)[:, 0]
        return torch.searchsorted(cdf, u.contiguous(), right=True).clamp_max(len(p) - 1)
