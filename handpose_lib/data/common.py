"""Shared machinery of the real data set loaders: image reading, label-preserving warps, the
base ``Dataset`` with corrupt-file handling, and the cached index.

Geometry (used by the crop, the augmentations and the left/right mirror): every image-plane
operation is a 3x3 affine map ``A`` of continuous pixel coordinates (the library's convention:
the image spans ``[0, W] x [0, H]``, pixel ``i``'s centre is ``i + 0.5``), optionally with a
3x3 orthogonal ``R`` applied to the camera-frame 3D joints (a rotation about the optical axis,
or the mirror ``diag(-1, 1, 1)``). The labels follow exactly::

    joints2d' = A (u, v, 1)        joints3d' = R X        K' = A K R^T

so that ``K' X' = A K X``: the new 2D joints are still the projection of the new 3D joints by
the new camera matrix (``K'`` may gain a tiny off-diagonal term when ``fx != fy`` and the image
is rotated; it is still a valid pinhole matrix with last row ``[0, 0, 1]``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from . import cached
from .sample import VIS_OUTSIDE, VIS_UNKNOWN, VIS_VISIBLE

log = logging.getLogger("handpose_lib.data")

INDEX_VERSION = 1


class DatasetNotFoundError(FileNotFoundError):
    """A data set folder is missing or not laid out as expected (the message shows the layout)."""


class CorruptImageError(OSError):
    """An image file exists but cannot be decoded."""


class DatasetError(ValueError):
    """A data set's files are there but cannot be used (labels of the wrong shape, a refused pickle)."""


# ----------------------------------------------------------------------------------------
# files


def missing_layout_error(name: str, root, what: str, layout: str, url: str = "") -> DatasetNotFoundError:
    """A :class:`DatasetNotFoundError` naming what is missing and showing the expected layout."""
    msg = f"{name}: {what}\nroot given: {Path(root).expanduser()}\nexpected layout:\n{layout.rstrip()}\n"
    if url:
        msg += f"get it from: {url}\n"
    if name.lower() in DOWNLOAD_SCRIPTS:
        msg += f"prepare it with: python data_scripts/get_{name.lower()}.py --root <folder>"
    return DatasetNotFoundError(msg.rstrip("\n"))


# the data sets that data_scripts/get_<name>.py downloads and prepares (COCO files are the user's)
DOWNLOAD_SCRIPTS = ("stb", "rhd", "freihand", "ganerated", "synthhands")


def read_rgb(path, verify: bool = False) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB (opencv decode, BGR -> RGB).

    ``verify`` also decodes the file strictly (:func:`verify_image`): opencv decodes a truncated
    JPEG or PNG without an error, filling the missing rows with grey. The training loaders skip
    this second decode; ``handpose predict`` and ``handpose data check`` do it.

    Raises:
        FileNotFoundError: the file does not exist.
        CorruptImageError: it exists but cannot be decoded (not an image; with ``verify``, also
            a truncated or damaged file).
    """
    path = str(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"image file is missing: {path}")
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None or img.ndim != 3 or img.size == 0:
        raise CorruptImageError(f"cannot decode image (corrupt or not an image): {path}")
    if verify:
        verify_image(path)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def verify_image(path) -> None:
    """Decode ``path`` fully with Pillow, refusing truncated data (:class:`CorruptImageError`).

    Formats Pillow does not know (but opencv does) pass unchecked.
    """
    from PIL import Image, ImageFile, UnidentifiedImageError

    lenient = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # another library may have switched it on
    try:
        with Image.open(path) as im:
            im.load()
    except UnidentifiedImageError:
        return
    except (OSError, SyntaxError, ValueError) as e:
        raise CorruptImageError(
            f"image file is truncated or damaged ({e}): {path}; copy or download it again"
        ) from e
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = lenient


def read_txt_array(path, shape) -> np.ndarray:
    """Read one comma- (or whitespace-) separated line of numbers into ``shape`` (float64)."""
    text = Path(path).read_text().replace(",", " ").split()
    arr = np.asarray([float(t) for t in text], dtype=np.float64)
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"{path}: expected {int(np.prod(shape))} numbers, found {arr.size}")
    return arr.reshape(shape)


# ----------------------------------------------------------------------------------------
# camera helpers


def intrinsics(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """(3, 3) pinhole camera matrix."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float64)


def rodrigues(rvec) -> np.ndarray:
    """Rotation vector -> (3, 3) rotation matrix (opencv's Rodrigues)."""
    R, _ = cv2.Rodrigues(np.asarray(rvec, dtype=np.float64).reshape(3, 1))
    return R


def affine_crop_matrix(x0: float, y0: float, scale: float) -> np.ndarray:
    """(3, 3) map of continuous pixels ``u' = scale * (u - x0)`` (and the same for v)."""
    return np.array([[scale, 0.0, -scale * x0], [0.0, scale, -scale * y0], [0.0, 0.0, 1.0]])


def mirror_matrix(width: float) -> np.ndarray:
    """(3, 3) horizontal mirror of continuous pixels: ``u' = width - u``."""
    return np.array([[-1.0, 0.0, width], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


MIRROR_3D = np.diag([-1.0, 1.0, 1.0])


def _to_index_coords(A: np.ndarray) -> np.ndarray:
    """Continuous-pixel affine -> opencv pixel-index affine (opencv puts pixel i's centre at i)."""
    S = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    S_inv = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
    return S_inv @ A @ S


def warp_image(img: np.ndarray, A, out_size: tuple[int, int]) -> np.ndarray:
    """The image part of :func:`warp_sample`: (H, W, C) float32 -> (H', W', C) under the affine
    map ``A`` of continuous pixels, ``out_size = (W', H')``; a shrinking map area-averages first
    (no aliasing), then the bilinear warp does the rest; black outside the image."""
    A = np.asarray(A, dtype=np.float64)
    A_img = A
    shrink = float(np.sqrt(abs(np.linalg.det(A[:2, :2]))))
    if shrink < 0.75:
        h0, w0 = img.shape[:2]
        w1, h1 = max(1, round(w0 * shrink)), max(1, round(h0 * shrink))
        img = cv2.resize(img, (w1, h1), interpolation=cv2.INTER_AREA)
        A_img = A @ np.diag([w0 / w1, h0 / h1, 1.0])
    warped = cv2.warpAffine(
        img,
        _to_index_coords(A_img)[:2],
        (int(out_size[0]), int(out_size[1])),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
    )
    return warped[:, :, None] if warped.ndim == 2 else warped


def warp_sample(sample: dict, A, out_size: tuple[int, int], R=None, swap_hand: bool = False) -> dict:
    """Apply an image-plane affine map (and a 3D rotation/mirror) to a sample, labels included.

    Args:
        sample: a sample dict (``image`` (3, H, W) in [0, 1]).
        A: (3, 3) affine map of continuous pixel coordinates (last row ``[0, 0, 1]``).
        out_size: ``(W, H)`` of the output image.
        R: optional (3, 3) orthogonal matrix applied to the 3D joints (camera frame).
        swap_hand: swap ``hand_side`` (for mirrors).
    Returns:
        a new sample; ``image`` (3, H', W'), ``joints2d``/``joints3d``/``K`` updated, joints that
        leave the image marked ``VIS_OUTSIDE``; ``mask``/``depth`` (if present) warped with
        nearest-neighbour sampling.
    """
    A = np.asarray(A, dtype=np.float64)
    W, H = int(out_size[0]), int(out_size[1])
    M = _to_index_coords(A)[:2]
    warped = warp_image(sample["image"].permute(1, 2, 0).numpy(), A, (W, H))
    out = dict(sample)
    out["meta"] = dict(sample["meta"])
    out["image"] = torch.from_numpy(np.ascontiguousarray(warped)).permute(2, 0, 1).float()

    uv = sample["joints2d"].double().numpy()
    uv_h = np.concatenate([uv, np.ones((uv.shape[0], 1))], axis=1)
    uv_new = (uv_h @ A.T)[:, :2]
    out["joints2d"] = torch.from_numpy(uv_new).float()

    R = np.eye(3) if R is None else np.asarray(R, dtype=np.float64)
    K = sample["K"].double().numpy()
    out["K"] = torch.from_numpy(A @ K @ R.T).float()
    out["joints3d"] = torch.from_numpy(sample["joints3d"].double().numpy() @ R.T).float()

    vis = sample["visibility"].clone()
    inside = (uv_new[:, 0] >= 0) & (uv_new[:, 0] <= W) & (uv_new[:, 1] >= 0) & (uv_new[:, 1] <= H)
    leaving = torch.from_numpy(~inside & np.isfinite(uv_new).all(axis=1))
    vis[leaving] = VIS_OUTSIDE
    out["visibility"] = vis
    out["visible"] = sample["visible"] & ~leaving

    for key in ("mask", "depth"):
        if key in sample and sample[key] is not None:
            arr = torch.as_tensor(sample[key]).numpy()
            src = arr.astype(np.float32) if arr.dtype == bool else arr
            w = cv2.warpAffine(src, M, (W, H), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
            out[key] = torch.from_numpy(w > 0.5) if arr.dtype == bool else torch.from_numpy(w)
    if swap_hand and out["hand_side"] in ("left", "right"):
        out["hand_side"] = "left" if out["hand_side"] == "right" else "right"
    return out


def mirror_sample(sample: dict) -> dict:
    """Mirror a sample left <-> right: image flipped, ``u -> W - u``, ``x -> -x``, ``cx -> W - cx``."""
    W, H = sample["image"].shape[2], sample["image"].shape[1]
    return warp_sample(sample, mirror_matrix(W), (W, H), R=MIRROR_3D, swap_hand=True)


def visibility_from_flags(uv, visible_flags, width: int, height: int, hidden_code: int) -> np.ndarray:
    """(21,) ``VIS_*`` codes: visible flag -> ``VIS_VISIBLE``; outside the image ->
    ``VIS_OUTSIDE``; otherwise ``hidden_code``. ``visible_flags`` None -> ``VIS_UNKNOWN``
    (except outside the image)."""
    uv = np.asarray(uv)
    inside = (uv[:, 0] >= 0) & (uv[:, 0] <= width) & (uv[:, 1] >= 0) & (uv[:, 1] <= height)
    if visible_flags is None:
        codes = np.full(len(uv), VIS_UNKNOWN, dtype=np.int64)
    else:
        codes = np.where(np.asarray(visible_flags, dtype=bool), VIS_VISIBLE, hidden_code).astype(np.int64)
    codes[~inside] = VIS_OUTSIDE
    return codes


# ----------------------------------------------------------------------------------------
# cached index


def _stamp(paths) -> list:
    out = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append([str(p), st.st_size, st.st_mtime_ns])
        except OSError:
            out.append([str(p), None, None])
    return out


def _cache_file(cache_dir: Path, name: str, root: Path, params: dict, stamp) -> Path:
    key = {"v": INDEX_VERSION, "name": name, "root": str(root), "p": params, "stamp": _stamp(stamp)}
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir / f"{name.lower()}-{digest}.npz"


def load_or_build_index(name, root, params, build, cache_dir="auto", stamp=(), rebuild=False) -> dict:
    """Return the data set's index (dict of numpy arrays), from the cache when possible.

    The cache is an ``.npz`` read with ``allow_pickle=False`` (strings stored as unicode arrays),
    keyed by data set, absolute root, loader parameters and the size and modification time of the
    ``stamp`` paths (label files, image folders: changing them invalidates the cache).
    ``cache_dir=None`` turns it off; ``"auto"`` uses ``data.cached.cache_dir("index")``.
    """
    root = Path(root).expanduser().resolve()
    if cache_dir is None:
        return build()
    cdir = cached.cache_dir("index") if cache_dir == "auto" else Path(cache_dir)
    path = _cache_file(cdir, name, root, params, stamp)
    if path.exists() and not rebuild:
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:  # a broken cache is rebuilt, not fatal
            log.warning("%s: index cache %s unreadable (%s); rebuilding", name, path, e)
    index = build()
    try:
        cdir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **index)
        os.replace(tmp, path)
    except OSError as e:
        log.warning("%s: could not write the index cache %s (%s)", name, path, e)
    return index


# ----------------------------------------------------------------------------------------
# the base data set


class HandDataset(Dataset):
    """Base class of the real data set loaders.

    Subclasses fill ``self.index`` (a dict of equal-length numpy arrays with at least ``path``,
    the image path relative to ``self.root``) and implement ``_load(i) -> sample``.

    Robustness: images listed in the labels but absent on disk are dropped when the index is
    built (``self.missing_files``, a warning with the count). An image that fails to decode
    while training does not stop the epoch: it is recorded in ``self.bad_files``, a warning is
    logged, and the next index (``i + 1``, deterministically) is returned instead; after
    ``max_bad_in_a_row`` failures in a row a ``RuntimeError`` names the files. (With
    ``DataLoader(num_workers > 0)`` each worker keeps its own ``bad_files``; ``handpose data
    check`` decodes in the main process and reports them.) With ``substitute_bad = False``
    (what evaluation sets: a metric must never count one sample twice) the error is raised
    instead, so that the caller can skip and report the sample.
    """

    name = "base"
    layout = ""
    url = ""
    substitute_bad = True

    def __init__(self, root, crop=None, transform=None, max_bad_in_a_row: int = 16):
        self.root = Path(root).expanduser()
        self.crop = crop
        self.transform = transform
        self.max_bad_in_a_row = max_bad_in_a_row
        self.bad_files: list[str] = []
        self.missing_files: list[str] = []
        self.index: dict[str, np.ndarray] = {}

    # -- helpers for subclasses
    def _require(self, path: Path, what: str) -> Path:
        if not path.exists():
            raise missing_layout_error(
                self.name, self.root, f"{what} not found: {path}", self.layout, self.url
            )
        return path

    def _drop_missing(self, index: dict) -> dict:
        """Remove entries whose image file is absent; remember them in ``missing_files``."""
        paths = index["path"]
        exists = np.array([os.path.exists(self.root / str(p)) for p in paths], dtype=bool)
        index["missing"] = paths[~exists]
        return {k: (v[exists] if k != "missing" else v) for k, v in index.items()}

    def _finish_index(self, index: dict) -> None:
        self.missing_files = [str(p) for p in index.pop("missing", np.array([], dtype=str))]
        self.index = index
        if self.missing_files:
            log.warning(
                "%s: %d image files listed in the labels are missing (first: %s); they are skipped",
                self.name,
                len(self.missing_files),
                self.missing_files[0],
            )
        if len(self.index["path"]) == 0:
            raise missing_layout_error(
                self.name, self.root, "no usable samples found (no images with labels)", self.layout, self.url
            )

    def _image_path(self, i: int) -> Path:
        return self.root / str(self.index["path"][i])

    def _load(self, i: int) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- Dataset protocol
    def __len__(self) -> int:
        return len(self.index["path"])

    def __getitem__(self, i: int) -> dict:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"{self.name}: index {i} out of range for {n} samples")
        i = i % n
        failures = []
        for attempt in range(min(self.max_bad_in_a_row, n)):
            j = (i + attempt) % n
            try:
                sample = self._load(j)
            except (CorruptImageError, FileNotFoundError) as e:
                path = str(self._image_path(j))
                if path not in self.bad_files:
                    self.bad_files.append(path)
                if not self.substitute_bad:
                    raise
                log.warning(
                    "%s: skipping sample %d (%s); using sample %d instead", self.name, j, e, (j + 1) % n
                )
                failures.append(path)
                continue
            if self.crop is not None:
                sample = self.crop(sample)
            if self.transform is not None:
                sample = self.transform(sample)
            return sample
        raise RuntimeError(
            f"{self.name}: {len(failures)} unreadable images in a row starting at index {i} "
            f"({failures[:3]} ...); check the files with "
            f"`handpose data check {self.name.lower()} {self.root}`"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, n={len(self) if self.index else 0})"
