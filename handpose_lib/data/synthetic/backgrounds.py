"""Background images: real photographs shipped with scikit-image, plus procedural textures.

The pool is built once per image size (deterministically, with a fixed numpy seed) and kept in
memory as uint8. Each sample picks a pool entry, a shift, a flip and a colour jitter from its
random stream, so backgrounds cost one gather per batch.

Photographs (scikit-image ``skimage.data``, bundled with the package, public domain or
CC-licensed as listed in its ``skimage/data/README.txt``): astronaut, coffee, chelsea, rocket,
motorcycle left/right, hubble deep field; and, tinted, the grey images camera, brick, grass,
gravel, moon, text, page, coins. ``HANDPOSE_BACKGROUND_PHOTOS=DIR`` reads the same files from a
copy instead (a machine without scikit-image, e.g. a bare GPU node).
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

import cv2
import numpy as np
import torch

_RGB = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "motorcycle_left",
    "motorcycle_right",
    "hubble_deep_field",
)
_GREY = ("camera", "brick", "grass", "gravel", "moon", "text", "page", "coins")
PAD = 16  # pool entries are (size + PAD) so a random shift can be taken


@contextlib.contextmanager
def _libpng_quiet():
    """Hide libpng's stderr warnings while OpenCV reads the photographs (astronaut, chelsea and
    page carry an ICC profile libpng calls invalid; the pixels are read all the same)."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr file descriptor (some notebook or service hosts)
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


PHOTOS_ENV = "HANDPOSE_BACKGROUND_PHOTOS"


def photo_folder() -> Path:
    """Where the photographs are read from: ``$HANDPOSE_BACKGROUND_PHOTOS`` when set (a copy of
    the files, e.g. on a machine without scikit-image), else scikit-image's data folder."""
    if os.environ.get(PHOTOS_ENV):
        return Path(os.environ[PHOTOS_ENV]).expanduser()
    try:
        import skimage.data
    except ImportError:
        raise RuntimeError(
            "the procedural engine's background photographs come from scikit-image, which is not "
            "installed: pip install scikit-image, or point "
            f"{PHOTOS_ENV} at a folder holding a copy of them (skimage/data/*.png, *.jpg)"
        ) from None
    return Path(skimage.data.__file__).parent


@functools.lru_cache(maxsize=2)
def _photos() -> tuple[np.ndarray, ...]:
    """The photographs as (H, W, 3) uint8 RGB, read from :func:`photo_folder`."""
    folder = photo_folder()
    out = []
    rng = np.random.default_rng(0)
    for name in _RGB + _GREY:
        files = sorted(folder.glob(name + ".*"))
        with _libpng_quiet():
            img = (
                cv2.imread(str(files[0]), cv2.IMREAD_GRAYSCALE if name in _GREY else cv2.IMREAD_COLOR)
                if files
                else None
            )
        if img is None:
            continue  # a trimmed scikit-image install: use what is there
        if img.ndim == 2:
            img = (img[..., None] * rng.uniform(0.6, 1.0, 3)[None, None, :]).astype(np.uint8)
        else:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        out.append(np.ascontiguousarray(img))
    if not out:
        raise RuntimeError(
            f"no background photographs found in {folder}; reinstall scikit-image "
            f"(pip install --force-reinstall scikit-image), point {PHOTOS_ENV} at a copy of them, "
            "or set SyntheticConfig(background_prob=0)"
        )
    return tuple(out)


def photographs() -> tuple[np.ndarray, ...]:
    """The background photographs as (H, W, 3) uint8 RGB arrays (read once; the grey ones
    tinted). Also the photographs whose spectra ``data.fda`` mixes into training crops."""
    return _photos()


def _procedural(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random smooth colour field, stripes or blobs: (h, w, 3) uint8."""
    kind = rng.integers(3)
    if kind == 0:  # low-frequency colour noise
        g = rng.uniform(0, 255, (rng.integers(2, 6), rng.integers(2, 6), 3)).astype(np.float32)
        img = cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)
    elif kind == 1:  # stripes
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        a = rng.uniform(0, np.pi)
        period = rng.uniform(6, 40)
        s = (np.sin((x * np.cos(a) + y * np.sin(a)) * 2 * np.pi / period) > 0).astype(np.float32)
        c1, c2 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        img = s[..., None] * c1 + (1 - s[..., None]) * c2
    else:  # blobs
        img = np.full((h, w, 3), rng.uniform(0, 255, 3), np.float32)
        for _ in range(rng.integers(3, 10)):
            c = (int(rng.integers(w)), int(rng.integers(h)))
            axes = (int(rng.integers(5, w // 2)), int(rng.integers(5, h // 2)))
            cv2.ellipse(img, c, axes, float(rng.uniform(0, 180)), 0, 360, rng.uniform(0, 255, 3).tolist(), -1)
        img = cv2.GaussianBlur(img, (0, 0), 1.5)
    noise = rng.normal(0, 6, (h, w, 1)).astype(np.float32)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=4)
def background_pool(h: int, w: int) -> torch.Tensor:
    """(N, 3, h + PAD, w + PAD) uint8 pool: crops of the photographs at several scales and
    procedural textures (about one in five)."""
    rng = np.random.default_rng(12345)
    n_photo_crops = 24 if h * w <= 256 * 256 else 3  # keep big-frame pools small (about 60 MB)
    hh, ww = h + PAD, w + PAD
    out = []
    for img in _photos():
        H, W = img.shape[:2]
        for _ in range(n_photo_crops):
            frac = rng.uniform(0.25, 1.0)
            ch = int(min(H, W * hh / ww) * frac)
            cw = int(ch * ww / hh)
            y0 = int(rng.integers(0, H - ch + 1))
            x0 = int(rng.integers(0, W - cw + 1))
            out.append(cv2.resize(img[y0 : y0 + ch, x0 : x0 + cw], (ww, hh), interpolation=cv2.INTER_AREA))
    for _ in range(len(out) // 4):
        out.append(_procedural(rng, hh, ww))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


@functools.lru_cache(maxsize=2)
def noise_texture(n: int = 256) -> torch.Tensor:
    """(2, n, n) float32 fixed noise: channel 0 white noise in [-0.5, 0.5], channel 1 smooth
    noise (for skin), both tileable by wrapping indices."""
    rng = np.random.default_rng(777)
    white = rng.uniform(-0.5, 0.5, (n, n)).astype(np.float32)
    padded = np.pad(rng.normal(0, 1, (n, n)).astype(np.float32), 16, mode="wrap")
    smooth = cv2.GaussianBlur(padded, (0, 0), 3.0)[16:-16, 16:-16]
    smooth = smooth / (np.abs(smooth).max() + 1e-6)
    return torch.from_numpy(np.stack([white, smooth]))


DEAD_LEAVES_N = 48


def dead_leaves(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A dead-leaves image (h, w, 3) uint8: opaque discs and ellipses dropped on top of each other,
    radii with density ~ r^-3 (between 1.5 px and half the image at 128 px, scaled with the
    image), the model whose statistics (scale invariance, 1/f^2 power spectrum, occlusion edges)
    match natural images' (Lee, Mumford and Huang 2001). Colours from a few hues per image."""
    size = min(h, w) / 128.0
    r_min, r_max = 1.5 * size, 64.0 * size
    n = 5000
    u = rng.uniform(size=n)
    r = (r_min**-2 + u * (r_max**-2 - r_min**-2)) ** -0.5  # inverse CDF of p(r) ~ r^-3
    hues = rng.uniform(0, 1, rng.integers(1, 4))
    base_s, base_v = rng.uniform(0.05, 0.55), rng.uniform(0.25, 0.75)
    hsv = np.stack(
        [
            (hues[rng.integers(len(hues), size=n)] + rng.normal(0, 0.04, n)) % 1.0 * 180,
            np.clip(base_s + rng.normal(0, 0.2, n), 0, 1) * 255,
            np.clip(base_v + rng.normal(0, 0.25, n), 0.03, 1) * 255,
        ],
        -1,
    ).astype(np.uint8)
    rgb = cv2.cvtColor(hsv[None], cv2.COLOR_HSV2RGB)[0].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    img[:] = rgb[0]
    cx, cy = rng.uniform(-r_max, w + r_max, n), rng.uniform(-r_max, h + r_max, n)
    aspect, angle = rng.uniform(0.4, 1.0, n), rng.uniform(0, 180, n)
    for i in range(1, n):  # painted back to front: the last leaf is in front
        axes = (max(1, int(r[i])), max(1, int(r[i] * aspect[i])))
        cv2.ellipse(
            img, (int(cx[i]), int(cy[i])), axes, float(angle[i]), 0, 360, rgb[i].tolist(), -1, cv2.LINE_AA
        )
    img = cv2.GaussianBlur(img, (0, 0), 0.6)
    noise = rng.normal(0, 4, (h, w, 1)).astype(np.float32)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=4)
def dead_leaves_pool(h: int, w: int) -> torch.Tensor:
    """(DEAD_LEAVES_N, 3, h + PAD, w + PAD) uint8 dead-leaves images (fixed seed), drawn by the
    scene extras (``extras.py``) like the photograph pool."""
    rng = np.random.default_rng(2001)
    out = [dead_leaves(rng, h + PAD, w + PAD) for _ in range(DEAD_LEAVES_N)]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()
