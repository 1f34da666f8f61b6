"""Scene extras of engine v2 (``SyntheticConfig(extras=SceneExtras(...))``, mesh hand only): what
photographs of hands have and the bare engine lacks.

- worn things (``accessories.py``): rings, a watch or a bracelet;
- held things (``held.py``): a bottle, cup, phone, pen or ball in the grasp of the pose
  families that hold things (replacing ``occluders.py``'s grasped cylinder or ball there);
- context (``context.py``): the other hand, a head and shoulders behind the hand;
- backgrounds: dead leaves (``backgrounds.dead_leaves_pool``) besides the photographs;
- grayscale and infrared-looking frames.

Every option is off by default, and with all off nothing here runs: today's samples stay the
same bit for bit. The draws come from their own stream (``Stream(seed, i, salt=EXTRAS_SALT)``),
all of them whatever the probabilities, so turning one option on leaves the hand, camera and
everything else of sample i as they were, and the other options' draws too.

How it is drawn (``extras_render.composite``): the hand pass of ``mesh_render.render_mesh`` is unchanged;
the extras of the samples that have any are rasterized in a second pass of the same rasterizer
(skin parts by its skin shader with this sample's appearance, the rest as objects with the
materials :data:`MATERIALS`), and the two passes are merged pixel by pixel by depth (the nearer
surface wins; ties go to the hand). Labels then come from the merged depth: anything of the
extras nearer than the hand's skin at a joint's pixel hides it as an object (``VIS_OBJECT``),
its pixels leave the hand mask and count in the occlusion fraction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch

from . import accessories, camera, hand, held
from .backgrounds import dead_leaves_pool
from .bust import load_bust
from .occluders import hsv_to_rgb
from .rng import Stream
from .shapes import head_rotation, mirror_cols, rotate, unit

EXTRAS_SALT = 181
# the extras pass's object materials (rasterizer slots 0..5, material ids 1..6)
MATERIALS = ("metal", "strap", "glass", "object", "object detail", "hair")
HEAD_ONLY = ("head_near_prob", "mesh_head_prob")  # options that change a drawn head, no more
CLOTH_MM = 2e5  # forearm_mm of cloth that is not a sleeve (the torso): beyond any sleeve start


@dataclass
class SceneExtras:
    """Per-sample probabilities of the scene extras (all 0: off).

    Attributes:
        ring_prob: a ring on a finger's proximal segment (a second ring with 0.3 x this).
        watch_prob: a watch (60 %) or a bracelet at the wrist (when no sleeve covers it).
        held_prob: an object in the hand, for the pose families that hold things.
        other_hand_prob: the other hand, partly in the crop.
        body_prob: a head and shoulders behind the hand.
        head_near_prob: given a head, the share placed as in a photograph of a person taken from
            a few metres (50-350 mm behind the palm, 120-450 mm to a side of it: the face about
            the hand's size, the hand at arm's reach from it) instead of 200-700 mm behind (a
            hand held up to the camera, the face smaller than the hand). 0 in ``rich()``, so
            the scenes book model v5 trained on stay as they were.
        mesh_head_prob: given a head, the share that is the MakeHuman bust (a real face, neck
            and shoulders, ``context.py``) instead of ellipsoids. 0 in ``rich()``, as above.
        dead_leaves_prob: a dead-leaves background instead of the photograph or colour.
        gray_prob: a grayscale frame.
        infrared_prob: an infrared-looking frame (bright, waxy skin, the illuminator's falloff).
    """

    ring_prob: float = 0.0
    watch_prob: float = 0.0
    held_prob: float = 0.0
    other_hand_prob: float = 0.0
    body_prob: float = 0.0
    head_near_prob: float = 0.0
    mesh_head_prob: float = 0.0
    dead_leaves_prob: float = 0.0
    gray_prob: float = 0.0
    infrared_prob: float = 0.0

    @classmethod
    def rich(cls) -> SceneExtras:
        """Every extra at a rate like the photographs' (one knob for all)."""
        return cls(
            ring_prob=0.25,
            watch_prob=0.3,
            held_prob=0.7,
            other_hand_prob=0.25,
            body_prob=0.3,
            dead_leaves_prob=0.2,
            gray_prob=0.05,
            infrared_prob=0.05,
        )

    @classmethod
    def parse(cls, text: str) -> SceneExtras:
        """``"off"``, ``"rich"`` or ``"NAME=P,NAME=P"`` (fields of this class) -> SceneExtras."""
        if text == "off":
            return cls()
        if text == "rich":
            return cls.rich()
        names = [f.name for f in fields(cls)]
        kw = {}
        for item in text.split(","):
            name, _, value = item.partition("=")
            if name not in names or not value:
                raise ValueError(f"scene extras {item!r}: use off, rich or NAME=P with NAME one of {names}")
            kw[name] = float(value)
        out = cls(**kw)
        out.check()
        return out

    def active(self) -> bool:
        # these two only place or shape a head that body_prob draws
        return any(getattr(self, f.name) > 0 for f in fields(self) if f.name not in HEAD_ONLY)

    def check(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"SceneExtras.{f.name} must be a probability in [0, 1], got {v}")

    def to_dict(self) -> dict:
        """The fields; the head options only when on, so that the dicts of configs made before
        them (and their cached sets' hashes) stay the same."""
        return {k: v for k, v in asdict(self).items() if k not in HEAD_ONLY or v}


# ---------------------------------------------------------------------------------------------
# draws


def _materials(u: torch.Tensor, kind: torch.Tensor) -> torch.Tensor:
    """(B, 6, 8) colours, texture kind, scale and axis of :data:`MATERIALS` from uniforms u (B, 24)."""
    B, dev = u.shape[0], u.device
    metals = torch.tensor(
        [[0.86, 0.70, 0.38], [0.78, 0.78, 0.80], [0.80, 0.56, 0.48], [0.16, 0.16, 0.18]], device=dev
    )
    metal = metals[(u[:, 0] * 4).long().clamp_max(3)] * (0.85 + 0.25 * u[:, 1:2])
    strap = hsv_to_rgb(u[:, 2], 0.2 + 0.6 * u[:, 3], 0.08 + 0.6 * u[:, 4])
    glass = (0.04 + 0.2 * u[:, 5:6]) * torch.tensor([0.9, 0.95, 1.0], device=dev)
    obj = hsv_to_rgb(u[:, 6], 0.15 + 0.75 * u[:, 7], 0.2 + 0.75 * u[:, 8])
    detail = hsv_to_rgb(u[:, 9], 0.2 + 0.7 * u[:, 10], 0.15 + 0.8 * u[:, 11])
    drinks = torch.tensor(
        [[0.25, 0.13, 0.06], [0.55, 0.35, 0.18], [0.92, 0.9, 0.85], [0.5, 0.1, 0.1]], device=dev
    )
    drink = drinks[(u[:, 12] * 4).long().clamp_max(3)]
    screen = (0.02 + 0.1 * u[:, 13:14]).expand(B, 3)
    detail = torch.where((kind == 1)[:, None], drink, torch.where((kind == 2)[:, None], screen, detail))
    hairs = torch.tensor(
        [[0.04, 0.03, 0.03], [0.18, 0.11, 0.06], [0.42, 0.28, 0.14], [0.75, 0.6, 0.38], [0.55, 0.53, 0.5]],
        device=dev,
    )
    x = u[:, 14] * 4
    i0 = x.floor().long().clamp_max(3)
    hair = hairs[i0] + (hairs[i0 + 1] - hairs[i0]) * (x - i0)[:, None]
    color = torch.stack([metal, strap, glass, obj, detail, hair], 1)
    tex = torch.zeros(B, 6, device=dev)
    tex[:, 3] = torch.where(u[:, 15] < 0.25, 2.0, torch.where(u[:, 15] < 0.35, 1.0, 0.0))
    tex[:, 1] = torch.where(u[:, 16] < 0.2, 2.0, 0.0)
    scale = torch.full((B, 6), 8.0, device=dev)
    scale[:, 3] = 5.0 + 20.0 * u[:, 17]
    scale[:, 1] = 2.0 + 2.0 * u[:, 18]
    axis = (
        unit(torch.stack([u[:, 19] - 0.5, u[:, 20] - 0.5, u[:, 21] - 0.5], -1))
        .expand(6, B, 3)
        .transpose(0, 1)
    )
    return torch.cat([color.clamp(0, 1), tex[..., None], scale[..., None], axis], -1)


def sample_extras(seed: int, idx: torch.Tensor, ex: SceneExtras, p: dict, H: int, W: int) -> dict:
    """The extras' draws for samples idx (B,) of data set seed, given the scene parameters p of
    ``scene.sample_scene`` (pose family, hand pose and size, camera) and the image size: every
    number is drawn whatever the probabilities."""
    rs = Stream(seed, idx, salt=EXTRAS_SALT)
    dev = idx.device
    u = rs.uniform(32)
    g = rs.normal(8)
    e = {}
    # rings: up to two, on different fingers
    f1 = rs.choice(accessories.RING_FINGER_PROBS)
    f2 = (f1 + 1 + (u[:, 1] * 4).long().clamp_max(3)) % 5
    e["ring_on"] = torch.stack([u[:, 0] < ex.ring_prob, u[:, 0] < 0.3 * ex.ring_prob], 1)
    e["ring_finger"] = torch.stack([f1, f2], 1)
    e["ring_thick"] = 1.4 + 1.4 * rs.uniform(2)
    e["ring_width"] = 2.0 + 4.0 * rs.uniform(2)
    # watch or bracelet
    wrist = u[:, 2] < ex.watch_prob
    e["watch_on"] = wrist & (u[:, 3] < 0.6)
    e["bracelet_on"] = wrist & (u[:, 3] >= 0.6)
    w = rs.uniform(5)
    e["case_r"], e["case_h"] = 14.0 + 7.0 * w[:, 0], 7.0 + 4.0 * w[:, 1]
    e["strap_w"] = 16.0 + 6.0 * w[:, 2]
    e["bracelet_thick"], e["bracelet_w"] = 2.0 + 3.0 * w[:, 3], 2.5 + 5.5 * w[:, 4]
    # held object
    kind = held.holds(p["family"], u[:, 5])
    e["held_kind"] = torch.where(u[:, 4] < ex.held_prob, kind, -1)
    e["held_u"], e["held_g"] = rs.uniform(8), rs.normal(3)
    # the other hand: its own pose, rotation and forearm; its palm 90-200 mm from this one's
    e["hand2_on"] = u[:, 6] < ex.other_hand_prob
    e["hand2_angles"], _ = hand.sample_pose(rs)
    e["hand2_R"] = camera.sample_rotation(rs, p["egocentric"])
    e["hand2_wrist"] = camera.sample_wrist(rs, e["hand2_R"])
    s = p["scale"][:, None]
    centre = torch.tensor(camera.PALM_CENTRE_MM, device=dev) * s
    palm = p["T"] + rotate(p["R"], centre[:, None])[:, 0]
    ang = 6.2831853 * u[:, 7]
    dist = (90.0 + 110.0 * u[:, 8:9]) * s
    off = torch.stack([torch.cos(ang), torch.sin(ang), 0.4 * g[:, 0]], -1) * dist
    target = palm + off
    target = torch.stack([target[:, 0], target[:, 1], target[:, 2].clamp_min(150.0)], -1)
    e["hand2_T"] = target - rotate(mirror_cols(e["hand2_R"]), centre[:, None])[:, 0]
    # a head and shoulders behind
    e["body_on"] = u[:, 9] < ex.body_prob
    e["hair_on"] = u[:, 10] < 0.9
    e["hair_long"] = (u[:, 26] < 0.4).float()
    k = 0.9 + 0.2 * u[:, 11:12]
    e["mesh_head"] = e["body_on"] & (u[:, 30] < ex.mesh_head_prob)
    axes = torch.tensor([72.0, 98.0, 88.0], device=dev)  # the ellipsoid's; the bust's head box's
    e["head_axes"] = torch.where(e["mesh_head"][:, None], load_bust()["head_half_axes"].to(dev), axes) * k
    e["hair_scale"] = torch.stack([1.08 + 0.04 * u[:, 12], 0.9 + 0.08 * u[:, 13], 1.06 + 0.04 * u[:, 12]], -1)
    near = u[:, 27] < ex.head_near_prob  # a photograph of a person (see SceneExtras)
    behind = torch.where(near, 50.0 + 300.0 * u[:, 14], 200.0 + 500.0 * u[:, 14])
    ang, reach = 6.2831853 * u[:, 28], 120.0 + 330.0 * u[:, 29]
    dx = torch.where(near, reach * torch.cos(ang), 150.0 * g[:, 1])
    dy = torch.where(near, reach * torch.sin(ang), 120.0 * g[:, 2])
    e["head_c"] = palm + torch.stack([dx, dy, behind], -1)
    e["head_R"] = head_rotation(0.45 * g[:, 3], 0.2 * g[:, 4], 0.15 * g[:, 5])
    e["torso_offset"] = torch.stack([20.0 * g[:, 6], e["head_axes"][:, 1] + 215.0, 40.0 + 0 * g[:, 6]], -1)
    e["torso_axes"] = torch.tensor([185.0, 240.0, 110.0], device=dev) * k
    # background, tone
    e["dead_leaves"] = u[:, 15] < ex.dead_leaves_prob
    n_dl = dead_leaves_pool(H, W).shape[0] if ex.dead_leaves_prob > 0 else 1
    e["dl_entry"] = (u[:, 16] * n_dl).long().clamp_max(n_dl - 1)
    e["dl_shift"] = (u[:, 17:19] * 16).long().clamp_max(15)
    e["dl_flip"] = u[:, 19] < 0.5
    e["dl_gain"] = 0.75 + 0.5 * rs.uniform(3)
    e["gray"] = u[:, 20] < ex.gray_prob
    e["infrared"] = ~e["gray"] & (u[:, 21] < ex.infrared_prob)
    e["ir_gamma"] = 0.6 + 0.3 * u[:, 22]
    e["ir_falloff"] = 0.2 + 0.5 * u[:, 23]
    e["ir_centre"] = 0.3 + 0.4 * u[:, 24:26]
    e["objapp"] = _materials(rs.uniform(24), e["held_kind"])
    return e


def with_extras(p: dict, e: dict, H: int, W: int) -> dict:
    """p with the extras e: ``occluders.py``'s grasped object switched off where a held object
    replaces it, and a dead-leaves background's mean colour as the plain background colour (the
    hand's ambient light; ``composite`` paints the leaves)."""
    p = dict(p)
    holding = e["held_kind"] >= 0
    ob = dict(p["objects"])
    active = ob["active"].clone()
    active[:, 0] &= ~holding  # the grasped or pinched ball
    active[:, 4] &= ~holding  # the grasped cylinder
    ob["active"], ob["grasped"] = active, ob["grasped"] | holding
    p["objects"] = ob
    if bool(e["dead_leaves"].any()):
        ap = dict(p["appearance"])
        mean = dead_leaves_pool(H, W).float().mean((2, 3))[e["dl_entry"]] / 255.0
        ap["bg_plain"] = torch.where(
            e["dead_leaves"][:, None], (mean * e["dl_gain"]).clamp(0, 1), ap["bg_plain"]
        )
        ap["bg_prob"] = torch.where(e["dead_leaves"], 0.0, ap["bg_prob"])
        p["appearance"] = ap
    p["extras"] = e
    return p
