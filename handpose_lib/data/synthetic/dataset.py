"""The procedural data set: configuration, scene generation, ``SyntheticHands``.

Sample ``i`` of seed ``s`` is a pure function of ``(s, i, config)`` (see ``rng.py``), rendered
on demand: splits are fixed without files. ``render_batch`` renders many samples in one
vectorised call (the fast path for training and benchmarks); ``__getitem__`` renders one.

Every random draw happens whatever the configuration, so changing only ``occlusion`` or
``left_hand_prob`` keeps the same hand, camera and background: sample ``i`` with
``occlusion="none"`` is the same scene as with objects, and the left-hand version of a sample is
the exact mirror image of its right-hand version.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..sample import VIS_VISIBLE
from . import camera, hand, occluders
from .geometry import FINGER_RADII, FOREARM_RADII, TIP_INSET, hand_cones
from .render import render, visibility
from .rng import Stream

# 1.1: correctly rounded square roots and explicit dot products in the ray kernels (so eager and
# compiled kernels give the same bits); images and depth moved by float32 rounding only
# (<= 3e-5 and <= 2e-4 mm), joints, visibility and masks unchanged.
GENERATOR_VERSION = "1.1"

OCCLUSION_LEVELS = {"none": 0.0, "light": 0.3, "default": 0.5, "heavy": 0.9}

# skin tones (linear-ish sRGB in [0, 1]) from very light to very dark; samples interpolate
SKIN_TONES = torch.tensor(
    [
        [0.97, 0.82, 0.72],
        [0.92, 0.74, 0.62],
        [0.84, 0.62, 0.49],
        [0.72, 0.50, 0.37],
        [0.56, 0.38, 0.27],
        [0.40, 0.27, 0.19],
        [0.28, 0.19, 0.14],
    ]
)


@dataclass
class SyntheticConfig:
    """What the engine draws. Probabilities are per sample.

    Attributes:
        crop_size: side of the square crop (multiple of 8), 128 as in the paper.
        full_frame: render the whole 640 x 480 frame instead of the crop; the crop box is in
            ``meta["crop_box"]`` (x0, y0, side) either way.
        occlusion: object level in [0, 1] or a name in ``OCCLUSION_LEVELS``
            ("none", "light", "default", "heavy").
        background_prob: photograph/texture background (else a plain colour).
        left_hand_prob: mirror the image into a left hand (0: right hands only, the default).
        egocentric_prob: egocentric viewpoint (else third-person).
        family_probs: pose family probabilities, order ``hand.POSE_FAMILIES``.
        noise_max: sensor noise std drawn in U(0, noise_max).
        blur_prob: Gaussian blur (sigma U(0.5, 1.2)) probability.
        jpeg_prob: JPEG re-encoding probability (quality U(40, 90)); slow-ish (per image).
    """

    crop_size: int = 128
    full_frame: bool = False
    occlusion: float | str = "default"
    background_prob: float = 0.9
    left_hand_prob: float = 0.0
    egocentric_prob: float = 0.5
    family_probs: tuple[float, ...] = hand.FAMILY_PROBS
    noise_max: float = 0.03
    blur_prob: float = 0.25
    jpeg_prob: float = 0.0

    def level(self) -> float:
        """The occlusion level as a float in [0, 1]."""
        if isinstance(self.occlusion, str):
            if self.occlusion not in OCCLUSION_LEVELS:
                raise ValueError(
                    f"occlusion {self.occlusion!r}: use a float in [0, 1] or one of {list(OCCLUSION_LEVELS)}"
                )
            return OCCLUSION_LEVELS[self.occlusion]
        lv = float(self.occlusion)
        if not 0.0 <= lv <= 1.0:
            raise ValueError(f"occlusion level must be in [0, 1], got {lv}")
        return lv

    def to_dict(self) -> dict:
        d = asdict(self)
        d["family_probs"] = list(self.family_probs)
        return d


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


def _appearance(rs: Stream, cfg: SyntheticConfig) -> dict:
    B, dev = rs._base.shape[0], rs.device
    u = rs.uniform(16)
    tones = SKIN_TONES.to(dev)
    x = u[:, 0] * (len(tones) - 1)
    i0 = x.floor().long().clamp_max(len(tones) - 2)
    w = (x - i0)[:, None]
    skin = tones[i0] * (1 - w) + tones[i0 + 1] * w
    skin = (skin * (1 + 0.06 * (rs.uniform(3) - 0.5))).clamp(0, 1)
    g = rs.normal(3)
    light = torch.stack([g[:, 0], g[:, 1] - 0.5, -1.2 + 0.3 * g[:, 2]], -1)
    light = light / light.norm(dim=-1, keepdim=True)
    tint = 1 + 0.15 * (rs.uniform(3) - 0.5)
    return {
        "skin": skin,
        "skin_texture": 0.05 + 0.1 * u[:, 1],
        "light_dir": light,
        "light_color": tint,
        "ambient": 0.25 + 0.25 * u[:, 2],
        "light_power": 0.55 + 0.45 * u[:, 3],
        "wrap": 0.1 + 0.4 * u[:, 4],
        "specular": 0.03 + 0.12 * u[:, 5],
        "tex_offset": (rs.uniform(2) * 256).long(),
        "bg_u": torch.cat([u[:, 6:10], rs.uniform(1)], 1),
        "bg_prob": torch.full((B,), cfg.background_prob, device=dev),
        "bg_gain": 0.7 + 0.6 * rs.uniform(3),
        "bg_plain": rs.uniform(3, 0.05, 0.95),
        "noise": cfg.noise_max * u[:, 10],
        "blur": torch.where(u[:, 11] < cfg.blur_prob, 0.5 + 0.7 * u[:, 12], 0.0),
        "jpeg_quality": torch.where(u[:, 13] < cfg.jpeg_prob, 40 + 50 * u[:, 14], 0.0).round(),
    }


def sample_scene(seed: int, idx, cfg: SyntheticConfig, device="cpu") -> dict:
    """All random parameters of samples ``idx`` (B,) of data set ``seed`` (no rendering)."""
    idx = torch.as_tensor(idx, dtype=torch.int64, device=device).reshape(-1)
    rs = Stream(seed, idx)
    p = {"seed": int(seed), "idx": idx}
    p["angles"], p["family"] = hand.sample_pose(rs, cfg.family_probs)
    p["scale"], p["seg"] = hand.sample_scales(rs)
    p["egocentric"] = rs.uniform(1)[:, 0] < cfg.egocentric_prob
    p["R"] = camera.sample_rotation(rs, p["egocentric"])
    p["wrist_rot"] = camera.sample_wrist(rs, p["R"])
    p["K_full"] = camera.full_intrinsics(rs)
    p["T"] = camera.sample_translation(rs, p["K_full"], p["R"], p["scale"], p["egocentric"])
    joints_h, _ = hand.forward_kinematics(p["angles"], p["scale"], p["seg"])
    joints = joints_h @ p["R"].transpose(-1, -2) + p["T"][:, None]
    p["objects"] = occluders.sample_objects(rs, cfg.level(), p["family"], joints, p["R"], p["T"], p["scale"])
    p["appearance"] = _appearance(rs, cfg)
    p["box"] = camera.crop_box(rs, camera.project(joints, p["K_full"]))
    p["left"] = rs.uniform(1)[:, 0] < cfg.left_hand_prob
    return p


def scene_of(p: dict) -> tuple[dict, torch.Tensor]:
    """The renderer's scene dict (camera-frame hand cones, objects, appearance) of the parameters
    of :func:`sample_scene`, and the camera-frame joints (B, 21, 3)."""
    joints_h, frames = hand.forward_kinematics(p["angles"], p["scale"], p["seg"])
    R, T = p["R"], p["T"]
    joints = joints_h @ R.transpose(-1, -2) + T[:, None]
    pa, pb, ra, rb = hand_cones(joints_h, frames, p["scale"], p["wrist_rot"])
    scene = {
        "cone_a": pa @ R.transpose(-1, -2) + T[:, None],
        "cone_b": pb @ R.transpose(-1, -2) + T[:, None],
        "cone_ra": ra,
        "cone_rb": rb,
        "objects": p["objects"],
        "appearance": p["appearance"],
    }
    return scene, joints


def render_scene(p: dict, cfg: SyntheticConfig, compiled: bool | None = None) -> dict:
    """Render the parameters of :func:`sample_scene` (possibly edited): the collated batch.

    CPU renders use the C++ kernel of ``native.py`` when it builds (same output bit for bit).
    ``compiled``: otherwise run the renderer's ``torch.compile``-d kernels (same output bit for
    bit, faster on large batches); ``None`` decides automatically (see ``compiled.py``)."""
    device = p["angles"].device
    idx, seed, left, box = p["idx"], p["seed"], p["left"], p["box"]
    scene, joints = scene_of(p)
    if cfg.full_frame:
        K, H, W = p["K_full"], camera.FRAME_H, camera.FRAME_W
    else:
        K, H, W = camera.crop_intrinsics(p["K_full"], box, cfg.crop_size), cfg.crop_size, cfg.crop_size
    out = render(scene, K, H, W, compiled=compiled)
    uv = camera.project(joints, K)
    vis = visibility(scene, joints, uv, JOINT_RADIUS.to(device) * p["scale"][:, None], H, W)
    # left hands: mirror image, labels and camera (u -> W - u, x -> -x)
    if bool(left.any()):
        m = left[:, None, None, None]
        out["image"] = torch.where(m, out["image"].flip(-1), out["image"])
        out["mask"] = torch.where(m[:, 0], out["mask"].flip(-1), out["mask"])
        out["depth"] = torch.where(m[:, 0], out["depth"].flip(-1), out["depth"])
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
    surface, 0 where the pixel does not show the hand) and ``occlusion_fraction`` (float).
    """

    def __init__(self, n: int, seed: int = 0, config: SyntheticConfig | None = None, device="cpu"):
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        self.n = int(n)
        self.seed = int(seed)
        self.config = config or SyntheticConfig()
        self.config.level()  # validate early
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
