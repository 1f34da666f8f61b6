"""A photometric camera for rendered crops: what a real camera does to the light of a scene.

The engine renders clean, noise-free, perfectly focused display-ready pixels; photographs have
been through a lens, a sensor and an image processor. :class:`CameraEffects` draws one such
camera per sample and applies it to a (3, H, W) float image in [0, 1], in the order light
travels (all OpenCV / numpy on one (H, W, 3) float32 array; per 128x128 crop about the cost of
the rest of the training augmentation, ``python benchmarks/augment.py``):

1. to linear light: ``x ** 2.2`` (the rendered pixels are taken as gamma-2.2 encoded);
2. lens: :func:`defocus` (a disk kernel) or :func:`motion_blur` (a line kernel), then
   :func:`vignette` (brightness falling off towards the corners);
3. sensor: :func:`exposure` (``x * 2 ** ev``), :func:`white_balance` (per-channel gains, green
   fixed), clipped to [0, 1] as a sensor saturates; then, sometimes, the resolution of a small
   hand in a photo: the image is shrunk by up to ``downscale`` (area average) before the noise,
   the tone curve and JPEG, and enlarged back to the crop's size after them (bilinear), as a
   crop of a hand covering few pixels of a photo is; :func:`sensor_noise` (signal-dependent
   shot noise plus read noise, per pixel and channel);
4. image processor: :func:`gamma_encode` with a random gamma around 2.2 (a tone curve), then
   :func:`jpeg` re-compression at a random quality.

Each function is pure (its randomness comes in as arguments or from the given numpy
``Generator``), so a sample's camera is reproducible from its seed; a strength of 0 (or a
probability of 0) switches that effect off. Labels are untouched: nothing here moves a pixel
by more than a blur kernel.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

DISPLAY_GAMMA = 2.2  # the rendered crops' (and sRGB's approximate) encoding gamma


# ----------------------------------------------------------------------------------------
# effects: (H, W, 3) float32 in [0, 1] (linear light unless named otherwise) -> same shape


def exposure(img: np.ndarray, ev: float) -> np.ndarray:
    """Scale linear light by ``2 ** ev`` (``ev`` stops; not clipped)."""
    return img * np.float32(2.0**ev)


def white_balance(img: np.ndarray, gains) -> np.ndarray:
    """Multiply the R, G, B channels of linear light by ``gains`` (3,) (not clipped)."""
    return img * np.asarray(gains, dtype=np.float32).reshape(1, 1, 3)


@functools.lru_cache(maxsize=8)
def _radius2(h: int, w: int) -> np.ndarray:
    """(h, w, 1) float32 squared distance from the image centre over the squared half-diagonal."""
    y, x = np.ogrid[0:h, 0:w]
    r2 = ((x - (w - 1) / 2) ** 2 + (y - (h - 1) / 2) ** 2) / (((w - 1) / 2) ** 2 + ((h - 1) / 2) ** 2)
    return r2.astype(np.float32)[..., None]


def vignette(img: np.ndarray, strength: float) -> np.ndarray:
    """Darken towards the corners: ``x * (1 - strength * r**2)``, ``r`` the distance from the
    centre divided by the half-diagonal (1 in the corners)."""
    if strength == 0:
        return img
    return img * (1.0 - np.float32(strength) * _radius2(*img.shape[:2]))


def _filter(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return cv2.filter2D(img, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)


def defocus(img: np.ndarray, radius: float) -> np.ndarray:
    """Out-of-focus blur: convolution with a disk of ``radius`` pixels (anti-aliased edge);
    ``radius < 0.5`` leaves the image as it is."""
    if radius < 0.5:
        return img
    n = int(math.ceil(radius))
    y, x = np.mgrid[-n : n + 1, -n : n + 1].astype(np.float32)
    disk = np.clip(radius + 0.5 - np.sqrt(x * x + y * y), 0.0, 1.0)
    return _filter(img, disk)


def motion_blur(img: np.ndarray, length: float, angle_deg: float) -> np.ndarray:
    """Camera or hand motion during the exposure: convolution with a line of ``length`` pixels
    at ``angle_deg`` (counter-clockwise from the image's x axis); ``length < 1`` does nothing."""
    if length < 1.0:
        return img
    n = int(math.ceil(length / 2))
    k = np.zeros((2 * n + 1, 2 * n + 1), np.float32)
    a = math.radians(angle_deg)
    dx, dy = math.cos(a) * length / 2, -math.sin(a) * length / 2
    fixed = lambda v: round(v * 16)  # noqa: E731  (cv2.line's 4-bit sub-pixel coordinates)
    p0, p1 = (fixed(n - dx), fixed(n - dy)), (fixed(n + dx), fixed(n + dy))
    cv2.line(k, p0, p1, 1.0, 1, cv2.LINE_AA, shift=4)
    return _filter(img, k)


def sensor_noise(img: np.ndarray, rng: np.random.Generator, shot: float, read: float) -> np.ndarray:
    """Gaussian approximation of a sensor's noise in linear light: variance
    ``shot**2 * x + read**2`` per pixel and channel (shot noise grows with the signal, read noise
    does not). ``shot = read = 0`` returns the image unchanged (no random numbers drawn).

    The normal deviates come from OpenCV's generator seeded from ``rng`` (``cv2.randn`` is three
    times faster than numpy's ``standard_normal`` here), so the noise is reproducible from ``rng``.
    """
    if shot == 0 and read == 0:
        return img
    sigma = np.sqrt(np.float32(shot * shot) * np.clip(img, 0.0, None) + np.float32(read * read))
    z = np.empty((img.shape[0], img.size // img.shape[0]), np.float32)  # one channel: N(0, 1) everywhere
    cv2.setRNGSeed(int(rng.integers(2**31)))
    cv2.randn(z, 0.0, 1.0)
    return img + sigma * z.reshape(img.shape)


def gamma_encode(img: np.ndarray, gamma: float) -> np.ndarray:
    """Linear light in [0, 1] -> encoded pixels ``x ** (1 / gamma)`` (monotone, 0 and 1 fixed)."""
    return np.power(np.clip(img, 0.0, 1.0), np.float32(1.0 / gamma))


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """JPEG re-compression at ``quality`` (1-100) through OpenCV: float [0, 1] in, float32 out
    (the decoded 8-bit pixels / 255), same shape."""
    u8 = cv2.cvtColor(np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("jpeg: OpenCV could not encode the image")
    rgb = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return rgb.astype(np.float32) * np.float32(1.0 / 255.0)


# ----------------------------------------------------------------------------------------
# the random camera


@dataclass
class CameraEffects:
    """A random camera per sample (see the module doc for the order); strengths of 0 switch an
    effect off, :meth:`off` is the camera that changes nothing.

    Attributes:
        exposure_ev: exposure change, ``U(-exposure_ev, exposure_ev)`` stops.
        white_balance: red and blue gains ``exp(U(-white_balance, white_balance))`` (green 1).
        vignette: corner darkening ``U(0, vignette)``.
        defocus_px, defocus_prob: disk radius ``U(0, defocus_px)`` with probability ``defocus_prob``.
        motion_px, motion_prob: line length ``U(0, motion_px)``, any angle, with probability
            ``motion_prob`` (not together with defocus).
        shot_noise, read_noise: noise standard deviations ``U(0, shot_noise)``, ``U(0, read_noise)``
            (in linear light of range 1; see :func:`sensor_noise`).
        gamma: encoding gamma ``2.2 * exp(U(-gamma, gamma))``.
        jpeg_quality, jpeg_prob: JPEG quality ``U{lo..hi}`` with probability ``jpeg_prob``.
        downscale, downscale_prob: with probability ``downscale_prob`` the sensor sees the crop
            shrunk by ``U(1, downscale)`` (and it is enlarged back after JPEG).
    """

    exposure_ev: float = 0.5
    white_balance: float = 0.15
    vignette: float = 0.3
    defocus_px: float = 1.5
    defocus_prob: float = 0.25
    motion_px: float = 5.0
    motion_prob: float = 0.15
    shot_noise: float = 0.03
    read_noise: float = 0.01
    gamma: float = 0.15
    jpeg_quality: tuple[int, int] = (30, 95)
    jpeg_prob: float = 0.5
    downscale: float = 3.0
    downscale_prob: float = 0.4

    @classmethod
    def off(cls) -> CameraEffects:
        """The camera that returns its input (up to float rounding of the gamma round trip)."""
        zero = ("exposure_ev", "white_balance", "vignette", "defocus_prob", "motion_prob", "shot_noise")
        return cls(**dict.fromkeys(zero, 0.0), read_noise=0.0, gamma=0.0, jpeg_prob=0.0, downscale_prob=0.0)

    def apply(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(H, W, 3) float32 in [0, 1] -> the same through one random camera drawn from ``rng``."""
        u = rng.uniform(size=14)  # a fixed number of draws: each effect's switch keeps the others' values
        x = np.power(np.clip(img, 0.0, 1.0, dtype=np.float32), np.float32(DISPLAY_GAMMA))
        if self.defocus_px and u[0] < self.defocus_prob:
            x = defocus(x, self.defocus_px * u[1])
        elif self.motion_px and u[0] >= 1.0 - self.motion_prob:
            x = motion_blur(x, self.motion_px * u[1], 360.0 * u[2])
        x = vignette(x, self.vignette * u[3])
        x = exposure(x, self.exposure_ev * (2 * u[4] - 1))
        wb = np.exp(self.white_balance * (2 * u[5:7] - 1))
        x = white_balance(x, (wb[0], 1.0, wb[1]))
        x = np.clip(x, 0.0, 1.0)
        h, w = x.shape[:2]
        small = self.downscale > 1 and u[12] < self.downscale_prob
        if small:
            f = 1.0 + (self.downscale - 1.0) * u[13]
            x = cv2.resize(x, (max(8, round(w / f)), max(8, round(h / f))), interpolation=cv2.INTER_AREA)
        x = sensor_noise(x, rng, self.shot_noise * u[7], self.read_noise * u[8])
        x = gamma_encode(x, DISPLAY_GAMMA * math.exp(self.gamma * (2 * u[9] - 1)))
        if self.jpeg_prob and u[10] < self.jpeg_prob:
            lo, hi = self.jpeg_quality
            x = jpeg(x, lo + int(u[11] * (hi - lo + 1)))
        if small:
            x = cv2.resize(x, (w, h), interpolation=cv2.INTER_LINEAR)
        return x

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        """A sample with its ``image`` (3, H, W) through one random camera; labels unchanged."""
        hwc = sample["image"].permute(1, 2, 0).numpy().astype(np.float32)
        out = dict(sample)
        out["image"] = torch.from_numpy(np.ascontiguousarray(self.apply(hwc, rng))).permute(2, 0, 1)
        return out
