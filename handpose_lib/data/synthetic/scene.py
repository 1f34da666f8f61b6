"""The scene description: what the engine draws for sample ``i`` of data set ``seed``.

:class:`SyntheticConfig` says what to draw; :func:`sample_scene` draws every random parameter
of a batch of samples (pose, hand size, viewpoint, camera, objects, appearance, crop box) as a
pure function of ``(seed, i, config)`` (see ``rng.py``); :func:`scene_of` turns them into the
renderer's scene dict (camera-frame hand cones, objects, appearance). Nothing here renders:
``render.py`` (torch) and ``native.py`` (C++) draw the scene, ``dataset.py`` puts it together.

Every random draw happens whatever the configuration, so changing only ``occlusion`` or
``left_hand_prob`` keeps the same hand, camera and background: sample ``i`` with
``occlusion="none"`` is the same scene as with objects, and the left-hand version of a sample is
the exact mirror image of its right-hand version.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from ..sample import project
from . import camera, extras, hand, occluders
from .extras import SceneExtras
from .geometry import hand_cones
from .rng import Stream

HAND_MODELS = ("capsule", "mesh")
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
        hand_model: ``"capsule"`` (engine v1: round cones, ray cast) or ``"mesh"`` (engine v2:
            the rigged MakeHuman hand and forearm, rasterized, see ``mesh_render.py``); the same
            draws give the same skeleton, labels, camera, objects and background in both.
        extras: the scene extras of the mesh hand (``extras.py``: rings, watches, held objects,
            the other hand, a head and body, dead-leaves backgrounds, grayscale and infrared
            frames), each a probability, all 0 by default; ``SceneExtras.rich()`` turns them all
            on. With all 0 the samples are those of a config without them, bit for bit. A dict
            of its fields or a string of ``SceneExtras.parse`` (``"rich"``) is converted.
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
    hand_model: str = "capsule"
    extras: SceneExtras = field(default_factory=SceneExtras)

    def __post_init__(self):
        # JSON configs (``TrainConfig.engine``, ``to_dict``): a dict of probabilities or a preset
        if isinstance(self.extras, dict):
            unknown = sorted(set(self.extras) - set(SceneExtras.__dataclass_fields__))
            if unknown:
                raise ValueError(
                    f"extras: unknown fields {unknown}; known: {list(SceneExtras.__dataclass_fields__)}"
                )
            self.extras = SceneExtras(**self.extras)
        elif isinstance(self.extras, str):
            self.extras = SceneExtras.parse(self.extras)

    def check(self) -> None:
        """Raise a clear error for a value the engine cannot draw."""
        self.level()
        if self.hand_model not in HAND_MODELS:
            raise ValueError(f"hand_model {self.hand_model!r}: use one of {list(HAND_MODELS)}")
        if not isinstance(self.extras, SceneExtras):
            raise TypeError(f"extras must be a SceneExtras, got {type(self.extras).__name__}")
        self.extras.check()
        if self.extras.active() and self.hand_model != "mesh":
            raise ValueError(
                'the scene extras need the mesh hand: SyntheticConfig(hand_model="mesh", extras=...)'
            )

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
        if not self.extras.active():
            del d["extras"]  # configs without extras keep their dict (and the cached sets' hashes)
        else:
            d["extras"] = self.extras.to_dict()
        return d


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
    p["box"] = camera.crop_box(rs, project(joints, p["K_full"]))
    p["left"] = rs.uniform(1)[:, 0] < cfg.left_hand_prob
    if cfg.extras.active():  # their own stream: the draws above stay the same
        H, W = (camera.FRAME_H, camera.FRAME_W) if cfg.full_frame else (cfg.crop_size, cfg.crop_size)
        p = extras.with_extras(p, extras.sample_extras(seed, idx, cfg.extras, p, H, W), H, W)
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
