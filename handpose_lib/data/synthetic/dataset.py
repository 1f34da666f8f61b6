"""The procedural data set: rendering a scene into a labelled sample, ``SyntheticHands``.

Sample ``i`` of seed ``s`` is a pure function of ``(s, i, config)``: ``scene.py`` draws its
parameters, ``render.py`` draws the image, and :func:`render_scene` adds the labels (2D and 3D
joints, visibility, crop box) and mirrors left hands. Samples are rendered on demand, so splits
are fixed without files. ``render_batch`` renders many samples in one vectorised call (the fast
path for training and benchmarks); ``__getitem__`` renders one.
"""

from __future__ import annotations

import torch

from ..sample import VIS_VISIBLE, project
from . import camera, hand
from .geometry import FINGER_RADII, FOREARM_RADII, TIP_INSET
from .mesh_render import render_mesh
from .render import render, visibility
from .scene import SyntheticConfig, sample_scene, scene_of

# 1.1: correctly rounded square roots and explicit dot products in the ray kernels (so eager and
# compiled kernels give the same bits); images and depth moved by float32 rounding only
# (<= 3e-5 and <= 2e-4 mm), joints, visibility and masks unchanged.
# 2.0: engine v2 (issue 18): the rigged mesh hand (``hand_model="mesh"``), left hands, scene
# extras and the camera; the procedural test set is drawn from the mesh hand (both sides). The
# capsule hand renders the same bits as in 1.1 (its samples are only named 2.0).
GENERATOR_VERSION = "2.0"


def _joint_radius() -> torch.Tensor:
    """(21,) flesh radius around each joint at scale 1 (mm), for the visibility rule."""
    r = torch.zeros(21)
    r[0] = FOREARM_RADII[0]
    for f, name in enumerate(hand.FINGER_ORDER):
        for k in range(4):
            r[1 + 4 * f + k] = FINGER_RADII[name][k]
    r[[5, 9, 13, 17]] = torch.maximum(r[[5, 9, 13, 17]], torch.tensor(11.5))
    r[1] = 13.0
    r[[4, 8, 12, 16, 20]] *= 1.0 + TIP_INSET  # the tip joint sits inside its end sphere
    return r


JOINT_RADIUS = _joint_radius()


def render_scene(p: dict, cfg: SyntheticConfig, compiled: bool | None = None) -> dict:
    """Render the parameters of :func:`sample_scene` (possibly edited): the collated batch.

    ``cfg.hand_model`` picks the renderer: ``"capsule"`` (``render.py``) or ``"mesh"``
    (``mesh_render.py``, engine v2; the same joints, its own visibility from the depth buffers).
    CPU renders use the C++ kernels (``native.py``, ``raster_native.py``) when they build (same
    output bit for bit).
    ``compiled``: otherwise run the renderer's ``torch.compile``-d kernels (same output bit for
    bit, faster on large batches); ``None`` decides automatically (see ``compiled.py``)."""
    device = p["angles"].device
    idx, seed, left, box = p["idx"], p["seed"], p["left"], p["box"]
    if cfg.full_frame:
        K, H, W = p["K_full"], camera.FRAME_H, camera.FRAME_W
    else:
        K, H, W = camera.crop_intrinsics(p["K_full"], box, cfg.crop_size), cfg.crop_size, cfg.crop_size
    if cfg.hand_model == "mesh":
        out, joints = render_mesh(p, K, H, W, scene_depth=cfg.full_frame)
        vis = out.pop("visibility")
        uv = project(joints, K)
    else:
        scene, joints = scene_of(p)
        out = render(scene, K, H, W, compiled=compiled)
        uv = project(joints, K)
        vis = visibility(scene, joints, uv, JOINT_RADIUS.to(device) * p["scale"][:, None], H, W)
    # left hands: mirror image, labels and camera (u -> W - u, x -> -x)
    if bool(left.any()):
        li = left.nonzero()[:, 0]  # only the left samples' pixels move (in place)
        for key in ("image", "mask", "depth", "scene_depth"):
            if key in out:
                out[key][li] = out[key][li].flip(-1)
        M = torch.tensor([[-1.0, 0, W], [0, 1, 0], [0, 0, 1]], device=device)
        N = torch.diag(torch.tensor([-1.0, 1, 1], device=device))
        K = torch.where(left[:, None, None], M @ K @ N, K)
        joints = torch.where(left[:, None, None], joints * torch.tensor([-1.0, 1, 1], device=device), joints)
        uv = torch.where(left[:, None, None], torch.stack([W - uv[..., 0], uv[..., 1]], -1), uv)
        box = torch.where(
            left[:, None],
            torch.stack([camera.FRAME_W - box[:, 0] - box[:, 2], box[:, 1], box[:, 2]], -1),
            box,
        )
    B = idx.shape[0]
    extra = {"scene_depth": out["scene_depth"]} if "scene_depth" in out else {}
    return {
        "image": out["image"],
        "joints2d": uv,
        "joints3d": joints,
        "K": K,
        "visible": vis == VIS_VISIBLE,
        "visibility": vis,
        "hand_side": ["left" if x else "right" for x in left.tolist()],
        "meta": {
            "dataset": ["synthetic"] * B,
            "id": [f"synthetic-{seed}-{i}" for i in idx.tolist()],
            "seed": torch.full((B,), int(seed), dtype=torch.int64),
            "index": idx.cpu(),
            "generator_version": [GENERATOR_VERSION] * B,
            "pose_family": [hand.POSE_FAMILIES[f] for f in p["family"].tolist()],
            "egocentric": p["egocentric"].cpu(),
            "grasped_object": p["objects"]["grasped"].cpu(),
            "crop_box": box.cpu(),
        },
        "mask": out["mask"],
        "depth": out["depth"],
        "occlusion_fraction": out["occlusion_fraction"].double(),
        **extra,
    }


def uncollate(batch: dict, i: int) -> dict:
    """The i-th sample of a collated batch, as the sample dict of ``data/sample.py``."""
    out = {}
    for k, v in batch.items():
        if k == "meta":
            out[k] = {
                mk: (mv[i].item() if isinstance(mv, torch.Tensor) and mv.dim() == 1 else mv[i])
                for mk, mv in v.items()
            }
        elif isinstance(v, torch.Tensor):
            out[k] = v[i].item() if v.dim() == 1 and k == "occlusion_fraction" else v[i]
        else:
            out[k] = v[i]
    return out


class SyntheticHands(torch.utils.data.Dataset):
    """``n`` procedural samples of data set ``seed``; sample i is rendered from (seed, i).

    Use different seeds for train/val/test (e.g. 0, 1, 2). Items are the sample dicts of
    ``data/sample.py`` plus ``mask`` (H, W) bool, ``depth`` (H, W) f32 mm (z of the visible hand
    surface, 0 where the pixel does not show the hand) and ``occlusion_fraction`` (float); full
    frames of the mesh hand also ``scene_depth`` (H, W) f32 mm (the nearest surface of anything: the
    hand, objects, the scene extras; inf where only the background is seen).
    """

    def __init__(self, n: int, seed: int = 0, config: SyntheticConfig | None = None, device="cpu"):
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        self.n = int(n)
        self.seed = int(seed)
        self.config = config or SyntheticConfig()
        self.config.check()  # validate early
        if not self.config.full_frame and self.config.crop_size % 8:
            raise ValueError(f"crop_size must be a multiple of 8, got {self.config.crop_size}")
        self.device = torch.device(device)

    def __len__(self) -> int:
        return self.n

    def _check(self, i: int) -> int:
        if not -self.n <= i < self.n:
            raise IndexError(f"index {i} out of range for {self.n} samples")
        return i % self.n if self.n else i

    def __getitem__(self, i: int) -> dict:
        return uncollate(self.render_batch([self._check(int(i))]), 0)

    @torch.no_grad()
    def render_batch(self, indices) -> dict:
        """Render samples ``indices`` in one vectorised call: the dict that
        ``torch.utils.data.default_collate`` would build from the samples (tensors stacked on
        ``self.device``, strings in lists, ``meta`` a dict of lists/tensors)."""
        idx = [self._check(int(i)) for i in indices]
        return render_scene(sample_scene(self.seed, idx, self.config, self.device), self.config)
