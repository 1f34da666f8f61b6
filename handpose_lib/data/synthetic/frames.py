"""Full frames with several hands, for training and testing the hand detector.

A frame is 640 x 480 (the engine's full camera frame): a background from the engine's pool
(photographs and procedural textures, zoomed and flipped), distractors (skin-coloured ellipses
and capsules like faces and arms, coloured shapes, patches of other photographs), and 0 to 4
hands. Each hand is a crop rendered by a *hand renderer* (the engine's 128 x 128 crops with
their hand masks), scaled to a random size, pasted through its feathered mask at a random
place, with a forearm drawn from its wrist out of the hand (skin, then often a sleeve). Left
hands are mirrored right hands (as in the engine). Then colour gain, blur, noise and JPEG.

Labels per hand: ``boxes`` (N, 4) the box of its 21 joints (x0, y0, x1, y1) clipped to the frame
(the same rule as a keypoint-annotated photo), ``sides`` ("left"/"right"), ``joints2d``
(N, 21, 2) frame pixels. Hands are placed so that their boxes overlap little (IoU <= 0.2) and at
least ``min_inside`` of each box is in the frame.

The renderer is a parameter: any ``HandRenderer`` (a function ``(seed, indices) -> {"image":
(B, 3, S, S) float [0, 1], "mask": (B, S, S) bool, "joints2d": (B, 21, 2) crop pixels}``) works,
so the detector can be retrained on another engine (e.g. a mesh hand) by passing its renderer.
Frame ``i`` of seed ``s`` is a pure function of ``(s, i, config, renderer)``.

**Scene frames** (``FrameConfig.scene_prob``): with that probability frame ``i`` is instead one of
the engine's own full frames (``SyntheticConfig(full_frame=True)``, :func:`engine_scenes`): the
mesh hand at the end of its forearm and sleeve, seen by the engine's camera, often with a head and
a torso behind it, something held, rings and watches, grayscale or infrared looks. That is what
the composed frames lack: skin that is not a hand (a shaded face, an arm) next to the hand, and
arms that belong to it. With probability ``scene_other_hand_prob`` the person's other hand is
there too, labelled like the first (its joints from the same pose as its mesh; not where it is
hidden); before detector v7 it was off (it would have been an unlabelled hand). The frame is
zoomed on the hand by a random factor (the hand's long side log-uniform in ``hand_size``, at most
``scene_max_zoom`` times; zoomed out to ``scene_min_zoom``, the shrunk frame lies on a background
of the pool) and finished like the others (blur, noise, JPEG).
Whether frame ``i`` is a scene is drawn from its own stream, so with ``scene_prob`` 0 every frame
is the composed one it always was.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch

from ..sample import project
from . import camera
from .backgrounds import background_pool
from .context import other_hand_joints
from .dataset import SyntheticHands, render_scene
from .extras import SceneExtras
from .mesh_render import sample_mesh_params
from .scene import SyntheticConfig, sample_scene

HandRenderer = Callable[[int, Sequence[int]], dict]
HANDS_PER_FRAME_SLOTS = 8  # hand indices of frame i: i * 8 + k
OTHER_HAND_MIN_JOINTS = 6  # an engine frame's other hand is labelled when this many joints are seen
OTHER_HAND_FLESH_MM = 25.0  # a joint is seen where nothing is nearer than this in front of it
SCENE_SALT = 5309  # frame i is a scene frame when default_rng([seed, i, SCENE_SALT]) says so


def engine_renderer(config: SyntheticConfig | None = None) -> HandRenderer:
    """The engine's hand crops as a :data:`HandRenderer`. Default: right hands without objects
    (the frame adds its own clutter) and without blur or noise (added to the whole frame)."""
    cfg = config or SyntheticConfig(occlusion="none", left_hand_prob=0.0, blur_prob=0.0, noise_max=0.0)

    def render(seed: int, indices: Sequence[int]) -> dict:
        idx = [int(i) for i in indices]
        return SyntheticHands(max(idx) + 1, seed, cfg).render_batch(idx)

    render.config = cfg.to_dict()  # provenance for the detector's sidecar
    return render


def scene_config(
    other_hand_prob: float = 0.0, head_near_prob: float = 0.0, mesh_head_prob: float = 0.0
) -> SyntheticConfig:
    """The engine's full frames for :attr:`FrameConfig.scene_prob`: the mesh hand, half of them
    left hands, light object occlusion, the scene extras at the photographs' rates
    (``SceneExtras.rich``) with a head and body more often (0.6: faces are what a hand detector
    most often mistakes for hands) and the other hand (labelled, see :func:`engine_scenes`) with
    probability ``other_hand_prob`` (0 until detector v7: the frames of v1-v6 had none), the
    head near the hand's depth (a photograph of a person, ``SceneExtras.head_near_prob``) in a
    share ``head_near_prob`` of the frames with a head and the MakeHuman bust in a share
    ``mesh_head_prob`` of them (both 0 in the frames of v1-v7); the frame adds its own blur,
    noise and JPEG."""
    ex = SceneExtras.rich()
    ex.other_hand_prob, ex.body_prob = float(other_hand_prob), 0.6
    ex.head_near_prob, ex.mesh_head_prob = float(head_near_prob), float(mesh_head_prob)
    return SyntheticConfig(
        full_frame=True,
        hand_model="mesh",
        left_hand_prob=0.5,
        occlusion="light",
        blur_prob=0.0,
        noise_max=0.0,
        extras=ex,
    )


def _other_hand_uv(p: dict, b: dict) -> tuple[np.ndarray, np.ndarray]:
    """The other hand of the frames of ``sample_scene``'s ``p`` and their rendered batch ``b``:
    ((B, 21, 2) frame pixels, (B,) whether it is drawn and shows). It shows where at least
    :data:`OTHER_HAND_MIN_JOINTS` of its joints are seen: inside the frame, and nothing (the first
    hand, a head, a torso, an object) nearer than the joint's own flesh at its pixel
    (``b["scene_depth"]``); a hand hidden behind a head or the other hand is not labelled."""
    app = p["appearance"]
    draws = sample_mesh_params(p["seed"], p["idx"], app["skin"], app["light_dir"], app["light_color"])
    joints = other_hand_joints(p, draws["shape"])
    uv = project(joints, p["K_full"])
    left = p["left"]
    uv = torch.where(left[:, None, None], torch.stack([camera.FRAME_W - uv[..., 0], uv[..., 1]], -1), uv)
    H, W = b["scene_depth"].shape[-2:]
    inside = (uv[..., 0] >= 0) & (uv[..., 0] < W) & (uv[..., 1] >= 0) & (uv[..., 1] < H)
    u = uv[..., 0].long().clamp(0, W - 1)
    v = uv[..., 1].long().clamp(0, H - 1)
    front = b["scene_depth"][torch.arange(len(u))[:, None], v, u]
    seen = inside & (front > joints[..., 2] - OTHER_HAND_FLESH_MM * p["scale"][:, None])
    shows = p["extras"]["hand2_on"] & (seen.sum(1) >= OTHER_HAND_MIN_JOINTS)
    return uv.numpy().astype(np.float64), shows.numpy()


def engine_scenes(config: SyntheticConfig | None = None) -> Callable[[int, Sequence[int]], list[dict]]:
    """``(seed, indices) -> [{"image" (480, 640, 3) uint8 RGB, "box" (4,) of the 21 joints,
    "side", "joints2d" (21, 2), "others" [{"box", "side", "joints2d"}]}]``: the engine's full
    frames (:func:`scene_config`) in one batch. ``others`` holds the other hand where the
    config's extras draw it (the opposite side; not where it is hidden: :func:`_other_hand_uv`)."""
    cfg = config or scene_config()
    if not cfg.full_frame:
        raise ValueError("engine_scenes needs a SyntheticConfig with full_frame=True")
    cfg.check()

    def render(seed: int, indices: Sequence[int]) -> list[dict]:
        idx = [int(i) for i in indices]
        p = sample_scene(seed, idx, cfg)
        b = render_scene(p, cfg)
        img = (b["image"].permute(0, 2, 3, 1).clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
        uv = b["joints2d"].numpy().astype(np.float64)
        n = len(idx)
        uv2, shows = _other_hand_uv(p, b) if cfg.extras.other_hand_prob > 0 else (None, np.zeros(n, bool))
        other = {"left": "right", "right": "left"}
        return [
            {
                "image": img[k],
                "box": _joint_box(uv[k]),
                "side": b["hand_side"][k],
                "joints2d": uv[k],
                "others": (
                    [{"box": _joint_box(uv2[k]), "side": other[b["hand_side"][k]], "joints2d": uv2[k]}]
                    if shows[k]
                    else []
                ),
            }
            for k in range(n)
        ]

    render.config = cfg.to_dict()
    return render


@dataclass
class FrameConfig:
    """What a frame holds.

    Attributes:
        width, height: frame size in pixels.
        hand_probs: P(0, 1, 2, ... hands).
        hand_size: range of the long side of a hand's joint box in pixels (drawn log-uniform).
        left_prob: probability that a hand is a left hand.
        arm_prob: probability of a forearm drawn from the wrist.
        max_distractors: up to this many distractor shapes.
        min_inside: smallest fraction of a hand's joint box inside the frame.
        max_iou: largest IoU between two hands' boxes.
        blur_prob, jpeg_prob: per frame.
        scene_prob: probability that a frame is one of the engine's full frames instead (see
            the module's docstring), zoomed in at most ``scene_max_zoom`` times and out to
            ``scene_min_zoom`` (1: never, the frames of detectors v1-v6) in a share
            ``scene_zoom_out_prob`` of the frames whose hand would shrink (the rest stay at 1).
        scene_other_hand_prob: probability that such a frame shows the person's other hand
            too, labelled (:func:`scene_config`; 0 in the frames of detectors v1-v6).
        scene_head_near_prob: share of such frames' heads placed as in a photograph of a
            person, near the hand's depth and about its size (:func:`scene_config`; 0 in the
            frames of detectors v1-v7).
        scene_mesh_head_prob: share of those heads that are the MakeHuman bust, a real face,
            neck and shoulders, rather than ellipsoids (0 in the frames of detectors v1-v7).
    """

    width: int = 640
    height: int = 480
    hand_probs: tuple[float, ...] = (0.08, 0.37, 0.3, 0.15, 0.1)
    hand_size: tuple[float, float] = (24.0, 440.0)
    left_prob: float = 0.5
    arm_prob: float = 0.8
    max_distractors: int = 5
    min_inside: float = 0.7
    max_iou: float = 0.2
    blur_prob: float = 0.3
    jpeg_prob: float = 0.3
    scene_prob: float = 0.0
    scene_max_zoom: float = 4.0
    scene_other_hand_prob: float = 0.0
    scene_min_zoom: float = 1.0
    scene_zoom_out_prob: float = 0.3
    scene_head_near_prob: float = 0.0
    scene_mesh_head_prob: float = 0.0

    def scenes(self) -> SyntheticConfig:
        """The engine's config of this frame set's full frames (:func:`scene_config`)."""
        return scene_config(self.scene_other_hand_prob, self.scene_head_near_prob, self.scene_mesh_head_prob)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _skin_colour(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Median colour (3,) float 0..255 of the hand's pixels."""
    px = img[mask]
    return np.median(px, axis=0) if len(px) else np.array([200.0, 150.0, 120.0])


@functools.lru_cache(maxsize=2)
def _pool_hwc(h: int, w: int) -> np.ndarray:
    """The engine's background pool as (N, h + PAD, w + PAD, 3) uint8 (channels last, for OpenCV)."""
    return np.ascontiguousarray(background_pool(h, w).permute(0, 2, 3, 1).numpy())


def _background(rng: np.random.Generator, cfg: FrameConfig) -> np.ndarray:
    """(H, W, 3) uint8: a pool entry zoomed in by up to 2x, maybe flipped, colour gain."""
    H, W = cfg.height, cfg.width
    if rng.uniform() < 0.1:  # plain colour with a gradient
        a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        t = np.linspace(0, 1, W, dtype=np.float32)[None, :, None]
        return np.broadcast_to(a * (1 - t) + b * t, (H, W, 3)).astype(np.uint8)
    pool = _pool_hwc(H, W)
    img = pool[int(rng.integers(len(pool)))]
    ph, pw = img.shape[:2]
    z = rng.uniform(0.5, 1.0)
    ch, cw = int(ph * z), int(pw * z)
    y0, x0 = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
    img = cv2.resize(img[y0 : y0 + ch, x0 : x0 + cw], (W, H), interpolation=cv2.INTER_LINEAR)
    if rng.uniform() < 0.5:
        img = cv2.flip(img, 1)
    gain = rng.uniform(0.6, 1.3, 3).astype(np.float32)
    return cv2.convertScaleAbs(img.astype(np.float32) * gain)


def _distractors(img: np.ndarray, rng: np.random.Generator, cfg: FrameConfig, skin: np.ndarray) -> None:
    """Draw up to ``max_distractors`` shapes in place: skin ellipses (faces), skin capsules
    (arms), coloured polygons, patches of another background."""
    H, W = img.shape[:2]
    for _ in range(int(rng.integers(0, cfg.max_distractors + 1))):
        kind = rng.integers(4)
        tone = np.clip(skin * rng.uniform(0.7, 1.2, 3), 0, 255).tolist()
        c = (int(rng.integers(W)), int(rng.integers(H)))
        if kind == 0:
            ax = int(rng.uniform(15, 160))
            axes = (ax, int(ax * rng.uniform(1.1, 1.5)))
            cv2.ellipse(img, c, axes, float(rng.uniform(-30, 30)), 0, 360, tone, -1, cv2.LINE_AA)
        elif kind == 1:
            ang = rng.uniform(0, 2 * math.pi)
            length = rng.uniform(60, 400)
            end = (int(c[0] + length * math.cos(ang)), int(c[1] + length * math.sin(ang)))
            cv2.line(img, c, end, tone, int(rng.uniform(12, 70)), cv2.LINE_AA)
        elif kind == 2:
            pts = (np.array(c) + rng.normal(0, rng.uniform(15, 90), (int(rng.integers(3, 7)), 2))).astype(
                np.int32
            )
            cv2.fillPoly(img, [pts], rng.uniform(0, 255, 3).tolist(), cv2.LINE_AA)
        else:
            other = _background(rng, cfg)
            h, w = int(rng.uniform(30, H / 2)), int(rng.uniform(30, W / 2))
            y, x = int(rng.integers(0, H - h)), int(rng.integers(0, W - w))
            img[y : y + h, x : x + w] = other[y : y + h, x : x + w]


def _arm(img: np.ndarray, rng: np.random.Generator, uv: np.ndarray, size: float, skin: np.ndarray) -> None:
    """A forearm from the wrist (joint 0) away from the middle knuckle (joint 9): skin, then a
    sleeve of a random colour with probability 0.6."""
    d = uv[0] - uv[9]
    n = np.linalg.norm(d)
    if not np.isfinite(n) or n < 1e-3:
        return
    d = d / n
    width = max(3, int(size * rng.uniform(0.28, 0.4)))
    start = uv[0] - d * size * 0.05
    length = size * rng.uniform(1.5, 4.0)
    skin_len = length if rng.uniform() < 0.4 else length * rng.uniform(0.15, 0.6)
    tone = np.clip(skin * rng.uniform(0.85, 1.1, 3), 0, 255).tolist()
    p0, p1 = start, start + d * skin_len
    cv2.line(img, tuple(int(v) for v in p0), tuple(int(v) for v in p1), tone, width, cv2.LINE_AA)
    if skin_len < length:
        p2 = start + d * length
        cv2.line(
            img,
            tuple(int(v) for v in p1),
            tuple(int(v) for v in p2),
            rng.uniform(0, 255, 3).tolist(),
            int(width * 1.3),
            cv2.LINE_AA,
        )


def _paste(img: np.ndarray, crop: np.ndarray, alpha: np.ndarray, x0: int, y0: int) -> None:
    """Alpha-blend ``crop`` (h, w, 3) float with ``alpha`` (h, w) at (x0, y0), clipped."""
    H, W = img.shape[:2]
    h, w = alpha.shape
    ax0, ay0, ax1, ay1 = max(0, -x0), max(0, -y0), min(w, W - x0), min(h, H - y0)
    if ax1 <= ax0 or ay1 <= ay0:
        return
    a = alpha[ay0:ay1, ax0:ax1, None]
    roi = img[y0 + ay0 : y0 + ay1, x0 + ax0 : x0 + ax1].astype(np.float32)
    img[y0 + ay0 : y0 + ay1, x0 + ax0 : x0 + ax1] = (roi * (1 - a) + crop[ay0:ay1, ax0:ax1] * a).astype(
        np.uint8
    )


def _joint_box(uv: np.ndarray) -> np.ndarray:
    return np.concatenate([uv.min(0), uv.max(0)])


def _zoom(img: np.ndarray, box: np.ndarray, uv: np.ndarray, rng: np.random.Generator, cfg: FrameConfig):
    """A window of ``img`` round the hand's ``box`` resized to the frame: the hand's long side
    becomes log-uniform in ``cfg.hand_size`` (zoomed by ``scene_min_zoom`` to ``scene_max_zoom``);
    the hand's box stays in the window where it fits. Zoomed out (< 1), the whole rendered frame
    is shrunk and laid somewhere on a background of the pool (:func:`_background`), its edges
    feathered. Returns (image, box, joints2d, to_window), ``to_window`` the map of frame pixels
    (..., 2) into the window (for other hands' joints)."""
    H, W = img.shape[:2]
    side = max(box[2] - box[0], box[3] - box[1], 1.0)
    target = np.exp(rng.uniform(np.log(cfg.hand_size[0]), np.log(cfg.hand_size[1])))
    z = float(np.clip(target / side, min(1.0, cfg.scene_min_zoom), cfg.scene_max_zoom))
    if z < 1.0 and rng.uniform() >= cfg.scene_zoom_out_prob:
        z = 1.0
    if z < 1.0:  # the whole frame, shrunk, on a background
        nw, nh = max(1, round(z * cfg.width)), max(1, round(z * cfg.height))
        ox, oy = int(rng.integers(0, cfg.width - nw + 1)), int(rng.integers(0, cfg.height - nh + 1))
        out = _background(rng, cfg).astype(np.float32)
        a = np.zeros(out.shape[:2], np.float32)  # the frame's place, edges feathered
        a[oy : oy + nh, ox : ox + nw] = 1.0
        a = cv2.GaussianBlur(a, (0, 0), 0.03 * max(nw, nh))[..., None] * a[..., None]
        small = np.zeros_like(out)
        small[oy : oy + nh, ox : ox + nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
        out = (a * small + (1 - a) * out + 0.5).astype(np.uint8)

        def to_window(q: np.ndarray) -> np.ndarray:
            return q * [nw / W, nh / H] + [ox, oy]

    else:
        w, h = W / z, H / z
        x0 = _window_start(box[0], box[2], w, W, rng)
        y0 = _window_start(box[1], box[3], h, H, rng)
        sx, sy = z * cfg.width / W, z * cfg.height / H
        M = np.array([[sx, 0, -x0 * sx], [0, sy, -y0 * sy]])
        out = cv2.warpAffine(
            img, M, (cfg.width, cfg.height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )

        def to_window(q: np.ndarray) -> np.ndarray:
            return (q - [x0, y0]) * [sx, sy]

    zoomed = to_window(uv)
    return out, _joint_box(zoomed), zoomed, to_window


def _window_start(lo: float, hi: float, size: float, full: int, rng: np.random.Generator) -> float:
    """Start of a window of ``size`` in [0, full] holding [lo, hi] where it fits (else centred on it)."""
    a, b = max(0.0, hi - size), min(full - size, lo)
    if a <= b:
        return float(rng.uniform(a, b))
    return float(np.clip((lo + hi - size) / 2, 0, full - size))


def _max_iou(b: np.ndarray, others: np.ndarray) -> float:
    lo = np.maximum(b[:2], others[:, :2])
    hi = np.minimum(b[2:], others[:, 2:])
    inter = np.clip(hi - lo, 0, None).prod(-1)
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    # IoU, and the share of the smaller box covered (one hand inside another's box)
    small = np.minimum(area(b), area(others))
    return float(np.maximum(inter / (area(b) + area(others) - inter), inter / small / 2).max())


def _place(rng, box_wh, placed, cfg: FrameConfig) -> np.ndarray | None:
    """A joint box position (x0, y0, x1, y1) with enough of it inside and little overlap."""
    W, H = cfg.width, cfg.height
    bw, bh = box_wh
    for _ in range(20):
        cx = rng.uniform(-0.2 * bw, W + 0.2 * bw)
        cy = rng.uniform(-0.2 * bh, H + 0.2 * bh)
        b = np.array([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])
        inside = np.clip(np.minimum(b[2:], [W, H]) - np.maximum(b[:2], 0), 0, None).prod()
        if inside < cfg.min_inside * bw * bh:
            continue
        if placed and _max_iou(b, np.array(placed)) > cfg.max_iou:
            continue
        return b
    return None


@functools.lru_cache(maxsize=2)
def _noise(h: int, w: int) -> np.ndarray:
    """(h + 64, w + 64, 3) float32 N(0, 1) noise, made once; frames take shifted windows of it."""
    return np.random.default_rng(4242).normal(0, 1, (h + 64, w + 64, 3)).astype(np.float32)


def _finish(img: np.ndarray, rng: np.random.Generator, cfg: FrameConfig) -> np.ndarray:
    """Blur, brightness gain, sensor noise and JPEG, each with its probability."""
    if rng.uniform() < cfg.blur_prob:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.5))
    H, W = img.shape[:2]
    dy, dx = int(rng.integers(64)), int(rng.integers(64))
    noise = _noise(H, W)[dy : dy + H, dx : dx + W]
    out = img.astype(np.float32)
    out *= rng.uniform(0.8, 1.15)
    out += noise * rng.uniform(0, 8)
    img = np.clip(out, 0, 255).astype(np.uint8)
    if rng.uniform() < cfg.jpeg_prob:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.uniform(40, 90))])
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return img


class HandFrames:
    """Frames ``i`` of seed ``seed``: ``frames[i]`` or ``frames.batch(indices)`` (one renderer call
    for all the hands of the batch).

    Each frame is a dict: ``image`` (H, W, 3) uint8 RGB, ``boxes`` (N, 4) float (x0, y0, x1, y1)
    pixels, ``sides`` list of "left"/"right", ``joints2d`` (N, 21, 2) pixels.
    """

    def __init__(
        self,
        seed: int,
        config: FrameConfig | None = None,
        renderer: HandRenderer | None = None,
        scenes: Callable[[int, Sequence[int]], list[dict]] | None = None,
    ):
        self.seed = int(seed)
        self.config = config or FrameConfig()
        self.renderer = renderer or engine_renderer()
        if scenes is None and self.config.scene_prob > 0:
            scenes = engine_scenes(self.config.scenes())
        self.scenes = scenes

    def is_scene(self, i: int) -> bool:
        """Whether frame ``i`` is an engine full frame (its own stream; never when scene_prob is 0)."""
        p = self.config.scene_prob
        return p > 0 and np.random.default_rng([self.seed, int(i), SCENE_SALT]).uniform() < p

    def __getitem__(self, i: int) -> dict:
        return self.batch([i])[0]

    def batch(self, indices: Sequence[int]) -> list[dict]:
        indices = [int(i) for i in indices]
        scene = [i for i in indices if self.is_scene(i)]
        out = dict(zip(scene, self._scenes(scene), strict=True)) if scene else {}
        composed = [i for i in indices if i not in out]
        if composed:
            out.update(zip(composed, self._composed(composed), strict=True))
        return [out[i] for i in indices]

    def _scenes(self, indices: list[int]) -> list[dict]:
        """Engine full frames, zoomed in on the hand and finished (labels in the frame's pixels)."""
        cfg = self.config
        out = []
        for i, sc in zip(indices, self.scenes(self.seed, indices), strict=True):
            rng = np.random.default_rng([self.seed, i, SCENE_SALT, 1])
            img, box, uv, to_window = _zoom(sc["image"], sc["box"], sc["joints2d"], rng, cfg)
            hands = [(box, sc["side"], uv)]
            for o in sc.get("others", []):
                ouv = to_window(o["joints2d"])
                hands.append((_joint_box(ouv), o["side"], ouv))
            boxes, sides, joints = [], [], []
            for hb, side, huv in hands:
                clipped = np.clip(hb, 0, [cfg.width, cfg.height, cfg.width, cfg.height])
                inside = np.prod(np.clip(clipped[2:] - clipped[:2], 0, None))
                if inside >= 0.5 * max(np.prod(hb[2:] - hb[:2]), 1e-6):
                    boxes.append(clipped)
                    sides.append(side)
                    joints.append(huv)
            out.append(
                {
                    "image": _finish(img, rng, cfg),
                    "boxes": np.array(boxes).reshape(-1, 4),
                    "sides": sides,
                    "joints2d": np.array(joints).reshape(-1, 21, 2),
                }
            )
        return out

    def _composed(self, indices: list[int]) -> list[dict]:
        cfg = self.config
        rngs = [np.random.default_rng([self.seed, int(i)]) for i in indices]
        counts = [
            int(r.choice(len(cfg.hand_probs), p=np.array(cfg.hand_probs) / sum(cfg.hand_probs))) for r in rngs
        ]
        hand_idx = [
            int(i) * HANDS_PER_FRAME_SLOTS + k for i, n in zip(indices, counts, strict=True) for k in range(n)
        ]
        rendered = self.renderer(self.seed, hand_idx) if hand_idx else None
        out, j = [], 0
        for rng, n in zip(rngs, counts, strict=True):
            hands = []
            for _ in range(n):
                hands.append(
                    (
                        (rendered["image"][j].permute(1, 2, 0).numpy() * 255).astype(np.float32),
                        rendered["mask"][j].numpy(),
                        rendered["joints2d"][j].numpy().astype(np.float64),
                    )
                )
                j += 1
            out.append(self._compose(rng, hands))
        return out

    def _compose(self, rng: np.random.Generator, hands: list) -> dict:
        cfg = self.config
        img = _background(rng, cfg)
        img = np.ascontiguousarray(img)
        skin0 = _skin_colour(hands[0][0], hands[0][1]) if hands else rng.uniform(60, 240, 3)
        _distractors(img, rng, cfg, skin0)
        boxes, sides, joints, placed = [], [], [], []
        lo, hi = np.log(cfg.hand_size[0]), np.log(cfg.hand_size[1])
        pastes = []
        for crop, mask, uv in hands:
            left = rng.uniform() < cfg.left_prob
            S = crop.shape[1]
            if left:
                crop, mask = crop[:, ::-1], mask[:, ::-1]
                uv = np.stack([S - uv[:, 0], uv[:, 1]], -1)
            jb = _joint_box(uv)
            size = float(np.exp(rng.uniform(lo, hi)))
            s = size / max(jb[2] - jb[0], jb[3] - jb[1], 1.0)
            b = _place(rng, ((jb[2] - jb[0]) * s, (jb[3] - jb[1]) * s), placed, cfg)
            if b is None:
                continue
            placed.append(b)
            x0, y0 = int(round(b[0] - jb[0] * s)), int(round(b[1] - jb[1] * s))
            uv_f = uv * s + [x0, y0]
            if rng.uniform() < cfg.arm_prob:  # all arms first: an arm never covers another hand
                _arm(img, rng, uv_f, size, _skin_colour(crop, mask))
            pastes.append((crop, mask, s, x0, y0))
            fb = np.clip(_joint_box(uv_f), 0, [cfg.width, cfg.height, cfg.width, cfg.height])
            boxes.append(fb)
            sides.append("left" if left else "right")
            joints.append(uv_f)
        for crop, mask, s, x0, y0 in pastes:
            side_px = max(2, int(round(crop.shape[1] * s)))
            interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
            big = cv2.resize(np.ascontiguousarray(crop), (side_px, side_px), interpolation=interp)
            a = cv2.resize(mask.astype(np.float32), (side_px, side_px), interpolation=interp)
            a = cv2.GaussianBlur(a, (0, 0), max(0.5, 0.6 * s)) if side_px > 4 else a
            _paste(img, big, np.clip(a, 0, 1), x0, y0)
        img = _finish(img, rng, cfg)
        return {
            "image": img,
            "boxes": np.array(boxes, np.float64).reshape(-1, 4),
            "sides": sides,
            "joints2d": np.array(joints, np.float64).reshape(-1, 21, 2),
        }
