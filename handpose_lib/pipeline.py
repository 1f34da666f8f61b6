"""From a photo or a video to hands: detect, crop, estimate, un-crop, 3D in the camera frame.

Layer 4: uses the detector (``detect.py``), the crop (``data/crop.py``) and a trained pose model.

For every hand of an image (:class:`HandPipeline`)::

    image (H, W, 3) uint8 --detector--> boxes, sides, scores          (or --box/--side given)
      per hand: square crop around the box (+20 % per side), the crops of all the hands in one
                batch (B, 3, 128, 128) -> model -> 2D (21, 2) in image px (un-cropped), 3D (21, 3)
                root-relative in units of one bone
                left hand: predicted on the mirrored image around the mirrored box, so the
                model (trained on right hands) sees a right hand; the answer is mirrored back
                (u -> W - u, x -> -x)
                (a model trained on both hands, book models v4 and v5: the side is read off its own 3D,
                ``skeleton.chirality``, on the unmirrored crop; see "Left or right" below)
                3D x hand-size prior -> root-relative mm
                root solve -> 3D in the camera frame (mm)

**Camera frame.** One image does not fix a hand's size and distance separately, so the hand's
size is a prior: the reference bone (middle MCP -> PIP) is ``ref_bone_mm`` = 43 mm, an adult's
average. With the relative 3D ``X_j`` in mm and the camera ``K`` (``fx, fy, cx, cy``), the root
``t`` (the wrist) is the one that projects ``X_j + t`` onto the predicted 2D ``(u_j, v_j)``
best: each joint gives two equations linear in ``t``,

    fx t_x - (u_j - cx) t_z = (u_j - cx) X_jz - fx X_jx
    fy t_y - (v_j - cy) t_z = (v_j - cy) X_jz - fy X_jy

solved by least squares, then refined by a few Gauss-Newton steps on the reprojection error in
pixels (:func:`solve_root`). A hand 10 % larger than the prior comes out 10 % further away.
Without ``K`` the camera is a pinhole with the principal point at the image centre and a
horizontal field of view ``fov`` (:data:`DEFAULT_FOV_DEG` = 65 degrees: phone main cameras are
about 65-70 degrees (26 mm equivalent), webcams 55-70 degrees horizontally).

**Left or right** (``side_source``). A model trained on right hands only (v1-v3) must be shown
a right hand, so the side has to come from elsewhere (the detector's side head, which is at
chance: ``models/detector/README.md``). A model trained on both hands (``left_hand_prob > 0`` in
its recipe's engine, book models v4 and v5) sees the crop as it is, and its 3D answer is a left or a
right hand: the sign of :func:`~handpose_lib.skeleton.chirality` of the predicted joints is the
side (right on 0.74 of engine v2 samples, ``tools/handedness_check.py``). ``side_source="auto"``
(the default) picks ``"pose"`` for such a model and ``"detector"`` otherwise. A side given by
the caller (``--side``) always wins: that hand is mirrored in and out as above.

**Video** (:class:`HandTracker`): the detector runs on the first frame and again whenever a hand
is lost; otherwise the box of each hand is the box of its joints in the previous frame. A hand
is lost when the detector's centre heatmap on its crop has no peak above ``keep_thresh`` (one
small detector pass on the 128 x 128 crop; by default half the detector's threshold). Joints
are smoothed with One-Euro filters (:class:`OneEuroFilter`). :func:`run_video` reads and writes
videos with OpenCV and reports the frames per second; :func:`live_camera` runs the same frame
step (:func:`process_frame`) on a webcam in JupyterLab, showing each frame in an ipywidgets image.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from . import skeleton
from .data.crop import crop_image, uncrop_points
from .detect import Detection, HandDetector
from .verify import VERIFIER_FILE, HandVerifier, load_verifier, pose_confidence

DEFAULT_FOV_DEG = 65.0
MARGIN = 0.2  # crop margin around a box, per side (the training crops' margin)


# ----------------------------------------------------------------------------------------
# camera


def intrinsics_from_fov(width: int, height: int, fov_deg: float = DEFAULT_FOV_DEG) -> np.ndarray:
    """(3, 3) pinhole K of a ``width`` x ``height`` image with horizontal field of view ``fov_deg``
    and the principal point at the image centre (continuous pixels: ``(width / 2, height / 2)``)."""
    if not 1.0 <= fov_deg < 179.0:
        raise ValueError(f"fov must be in [1, 179) degrees, got {fov_deg}")
    f = width / 2.0 / math.tan(math.radians(fov_deg) / 2.0)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


def _project(P: np.ndarray, K: np.ndarray) -> np.ndarray:
    p = P @ K.T
    return p[:, :2] / p[:, 2:3]


def solve_root(uv, rel_mm, K, iters: int = 5) -> np.ndarray:
    """Camera-frame root ``t`` (3,) mm such that ``rel_mm + t`` projects onto ``uv`` (see the module
    docstring).

    Args:
        uv: (J, 2) pixels (NaN rows ignored).
        rel_mm: (J, 3) root-relative joints, mm, camera axes.
        K: (3, 3) intrinsics (no skew).
    """
    uv, X, K = np.asarray(uv, np.float64), np.asarray(rel_mm, np.float64), np.asarray(K, np.float64)
    ok = np.isfinite(uv).all(1) & np.isfinite(X).all(1)
    uv, X = uv[ok], X[ok]
    if len(uv) < 2:
        raise ValueError("solve_root: needs at least 2 joints with finite 2D and 3D")
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    du, dv = uv[:, 0] - cx, uv[:, 1] - cy
    n = len(uv)
    A = np.zeros((2 * n, 3))
    A[:n, 0], A[:n, 2] = fx, -du
    A[n:, 1], A[n:, 2] = fy, -dv
    b = np.concatenate([du * X[:, 2] - fx * X[:, 0], dv * X[:, 2] - fy * X[:, 1]])
    t = np.linalg.lstsq(A, b, rcond=None)[0]
    for _ in range(iters):  # Gauss-Newton on the pixel reprojection error
        P = X + t
        z = P[:, 2].clip(1e-3, None)
        r = (_project(P, K) - uv).reshape(-1)
        J = np.zeros((n, 2, 3))
        J[:, 0, 0] = fx / z
        J[:, 0, 2] = -fx * P[:, 0] / z**2
        J[:, 1, 1] = fy / z
        J[:, 1, 2] = -fy * P[:, 1] / z**2
        J = J.reshape(-1, 3)
        step = np.linalg.lstsq(J, -r, rcond=None)[0]
        t = t + step
        if np.abs(step).max() < 1e-4:
            break
    return t


# ----------------------------------------------------------------------------------------
# one image


@dataclass
class Hand:
    """One hand of an image.

    Attributes:
        box: (x0, y0, x1, y1) pixels, the detector's (or the given / tracked) box.
        side: "left" or "right".
        score: detector score (1.0 for a given box); with a verifier (``verify.py``), the
            verified probability that it is a hand.
        joints2d: (21, 2) image pixels.
        joints3d_rel_mm: (21, 3) root-relative (wrist = 0) mm, camera axes, for the size prior.
        joints3d_cam_mm: (21, 3) camera frame mm (root depth from the solve).
        crop: the crop parameters ``{"x0", "y0", "side", "size"}``.
        confidence: the pose model's confidence (``verify.pose_confidence``: the mean peak of
            its 21 joint probability maps; high on hands, low on faces and textures).
    """

    box: tuple[float, float, float, float]
    side: str
    score: float
    joints2d: np.ndarray
    joints3d_rel_mm: np.ndarray
    joints3d_cam_mm: np.ndarray
    crop: dict = field(default_factory=dict)
    confidence: float = float("nan")

    def to_dict(self) -> dict:
        r = lambda a, d: np.round(np.asarray(a, np.float64), d).tolist()  # noqa: E731
        return {
            "box": r(self.box, 2),
            "side": self.side,
            "score": round(float(self.score), 4),
            "pose_confidence": round(float(self.confidence), 4),
            "joints2d_px": r(self.joints2d, 2),
            "joints3d_rel_mm": r(self.joints3d_rel_mm, 2),
            "joints3d_cam_mm": r(self.joints3d_cam_mm, 2),
            "root_depth_mm": round(float(self.joints3d_cam_mm[0, 2]), 1),
        }


def joints_box(uv) -> tuple[float, float, float, float]:
    """The box (x0, y0, x1, y1) of (21, 2) points (finite rows)."""
    uv = np.asarray(uv, np.float64)
    uv = uv[np.isfinite(uv).all(1)]
    return (*uv.min(0).tolist(), *uv.max(0).tolist())


class HandPipeline:
    """Image -> hands (see the module docstring).

    Args:
        model: a trained pose model (``inference.load_trained``), eval mode.
        detector: a :class:`~handpose_lib.detect.HandDetector`; ``None``: one hand in the largest
            centred square of each image unless boxes are given.
        K: (3, 3) camera intrinsics of the images; ``None``: from ``fov`` and each image's size.
        fov: horizontal field of view in degrees when ``K`` is ``None``.
        ref_bone_mm: the hand-size prior (middle MCP -> PIP length).
        margin: crop margin around a box, per side.
        side_source: where a hand's side comes from when the caller gives none: ``"pose"`` (the
            chirality of the model's 3D on the unmirrored crop), ``"detector"`` (its side head,
            else right) or ``"auto"``: ``"pose"`` when ``both_hands`` is true.
        both_hands: whether the model was trained on left and right hands (``load_pipeline``
            reads it from the checkpoint's recipe).
        verifier: a :class:`~handpose_lib.verify.HandVerifier`: the detector's best few boxes
            are all estimated and kept when the verifier, from the detector's score and the pose
            model's confidence, calls them hands (``None``: every detection above the
            detector's threshold is a hand).
        bf16: run the pose model under bfloat16 autocast (the detector has its own ``bf16``,
            which ``load_pipeline`` turns on where the CPU has native bf16).
        onnx: an :class:`~handpose_lib.inference.OnnxPoseModel` of ``model`` that runs the pose
            model instead (``load_pipeline``'s ``backend``); ``None``: PyTorch.
        channels_last: feed the model NHWC crops (its weights are NHWC after
            :func:`~handpose_lib.inference.prepare_for_inference`, as ``load_pipeline`` leaves them).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        detector: HandDetector | None = None,
        K=None,
        fov: float = DEFAULT_FOV_DEG,
        ref_bone_mm: float = skeleton.MEAN_REFERENCE_BONE_MM,
        margin: float = MARGIN,
        side_source: str = "auto",
        both_hands: bool = False,
        verifier: HandVerifier | None = None,
        bf16: bool = False,
        onnx=None,
        channels_last: bool = False,
    ):
        if side_source not in ("auto", "pose", "detector"):
            raise ValueError(f"side_source must be 'auto', 'pose' or 'detector', not {side_source!r}")
        if side_source == "auto":
            side_source = "pose" if both_hands else "detector"
        self.side_source = side_source
        self.model = model.eval()
        self.detector = detector
        self.verifier = verifier
        self.bf16 = bf16
        self.onnx = onnx
        self.channels_last = channels_last
        self.K = None if K is None else np.asarray(K, np.float64).reshape(3, 3)
        self.fov = fov
        self.ref_bone_mm = ref_bone_mm
        self.margin = margin
        self.size = int(getattr(getattr(model, "config", None), "input_size", 128))
        self.device = next(model.parameters()).device

    def camera(self, image: np.ndarray) -> np.ndarray:
        """The (3, 3) K used for ``image``."""
        h, w = image.shape[:2]
        return self.K if self.K is not None else intrinsics_from_fov(w, h, self.fov)

    def detect(self, image: np.ndarray) -> list[Detection]:
        """The detector's hands; without a detector, one right hand in the box whose crop is the
        image's largest centred square (what ``handpose predict`` did before the detector)."""
        if self.detector is None:
            h, w = image.shape[:2]
            s = min(h, w) / (1.0 + 2.0 * self.margin)
            return [
                Detection((w / 2 - s / 2, h / 2 - s / 2, w / 2 + s / 2, h / 2 + s / 2), "right", 1.0, 0.0)
            ]
        return self.detector(image)

    def crop(self, image: np.ndarray, box, side: str) -> tuple[torch.Tensor, dict]:
        """The model's input for one hand: (3, S, S) in [0, 1], mirrored for a left hand."""
        x, params = crop_image(image, self.size, box, self.margin)
        return (x.flip(-1) if side == "left" else x), params

    def estimate(self, image: np.ndarray, boxes, sides, scores=None) -> list[Hand]:
        """The hands in the given boxes (x0, y0, x1, y1) with the given sides.

        The crops of all the hands go through the model as one batch (as
        :func:`~handpose_lib.inference.predict_image` one by one). A left hand's crop is cut from
        the mirrored image around the mirrored box (u -> W - u), and its answer mirrored back
        (u -> W - u, x -> -x in 3D). A side of ``None``: the crop as it is, the side read off the
        predicted 3D (:func:`~handpose_lib.skeleton.side_from_3d`)."""
        if len(boxes) == 0:
            return []
        K = self.camera(image)
        W = image.shape[1]
        mirrored = None
        boxes = [tuple(float(v) for v in b) for b in boxes]
        crops, params = [], []
        for box, side in zip(boxes, sides, strict=True):
            if side == "left":
                if mirrored is None:
                    mirrored = np.ascontiguousarray(image[:, ::-1])
                x, pr = crop_image(mirrored, self.size, (W - box[2], box[1], W - box[0], box[3]), self.margin)
            else:
                x, pr = crop_image(image, self.size, box, self.margin)
            crops.append(x)
            params.append(pr)
        if self.onnx is not None:
            out = self.onnx(torch.stack(crops))
        else:
            x = torch.stack(crops).to(self.device)
            x = x.contiguous(memory_format=torch.channels_last) if self.channels_last else x
            with torch.no_grad(), torch.autocast(self.device.type, torch.bfloat16, enabled=self.bf16):
                out = self.model(x)
        conf_all = pose_confidence(out.probs).cpu().numpy()
        uv_all = out.coords2d.float().cpu().numpy().astype(np.float64)
        rel_all = out.joints3d.float().cpu().numpy().astype(np.float64)
        hands = []
        for i, (box, side, pr) in enumerate(zip(boxes, sides, params, strict=True)):
            uv, rel = uncrop_points(uv_all[i], pr), rel_all[i]
            if side == "left":
                uv = np.stack([W - uv[:, 0], uv[:, 1]], -1)
                rel = rel * np.array([-1.0, 1.0, 1.0])
                crop = dict(pr, x0=W - pr["x0"] - pr["side"], mirrored=True)
            else:
                crop = dict(pr, mirrored=False)
                if side is None:
                    side = skeleton.side_from_3d(rel)[0]
            rel_mm = skeleton.denormalise_3d(rel, self.ref_bone_mm)
            root = solve_root(uv, rel_mm, K)
            score = 1.0 if scores is None else float(scores[i])
            hands.append(Hand(box, side, score, uv, rel_mm, rel_mm + root, crop, float(conf_all[i])))
        return hands

    def find(self, image: np.ndarray, sides=None) -> list[Hand]:
        """The hands the detector finds in an image, best first. With a verifier, its
        ``candidates`` best boxes (score >= ``candidate_thresh``) are estimated in one batch and
        those it calls hands are kept, their ``score`` the verified probability."""
        v = self.verifier if self.detector is not None else None
        if v is None:
            dets = self.detect(image)
        else:
            dets = self.detector(image, score_thresh=v.candidate_thresh, max_hands=v.candidates)
        boxes, scores = [d.box for d in dets], [d.score for d in dets]
        sides = [self.side_of(d) for d in dets] if sides is None else _broadcast(sides, len(dets))
        hands = self.estimate(image, boxes, sides, scores)
        if v is None or not hands:
            return hands
        p = v.prob([h.score for h in hands], [h.confidence for h in hands])
        for h, pi in zip(hands, p, strict=True):
            h.score = float(pi)
        return sorted((h for h in hands if h.score >= v.threshold), key=lambda h: -h.score)

    def __call__(self, image: np.ndarray, boxes=None, sides=None) -> list[Hand]:
        """All hands of an (H, W, 3) uint8 RGB image (:meth:`find`). ``boxes`` (N, 4) skip the
        detector (then ``sides`` default to the detector's guess when one is loaded, else "right")."""
        if boxes is None:
            return self.find(image, sides)
        boxes = [tuple(float(v) for v in b) for b in boxes]
        if sides is None:
            sides = [self.guess_side(image, b) for b in boxes]
            return self.estimate(image, boxes, sides)
        return self.estimate(image, boxes, _broadcast(sides, len(boxes)))

    def side_of(self, det: Detection) -> str | None:
        """A detection's side for :meth:`estimate`: ``None`` (read off the pose) or the detector's."""
        return None if self.side_source == "pose" else det.side

    def guess_side(self, image: np.ndarray, box) -> str | None:
        """The side for a given box: ``None`` with ``side_source="pose"`` (read off the pose);
        else the detector's (its best detection overlapping it), else right."""
        if self.side_source == "pose":
            return None
        if self.detector is None:
            return "right"
        from .detect import box_iou

        dets = self.detector(image)
        if not dets:
            return "right"
        iou = box_iou([d.box for d in dets], box)[:, 0]
        return dets[int(np.argmax(iou))].side if iou.max() > 0.3 else "right"

    def presence(self, image: np.ndarray, box, side: str) -> float:
        """The detector's score that the crop around ``box`` still shows a hand (tracking)."""
        if self.detector is None:
            return 1.0
        x, _ = self.crop(image, box, side)
        return self.detector.presence(x)


def load_pipeline(
    model="models/book-tiny",
    detector="models/detector",
    device: str = "cpu",
    verifier="auto",
    fast: bool = True,
    bf16="auto",
    backend: str = "auto",
    **kw,
) -> HandPipeline:
    """A :class:`HandPipeline` from a pose model checkpoint and a detector (a folder, an already
    loaded :class:`~handpose_lib.detect.HandDetector`, or ``None``: no detector, boxes must be
    given). Whether the model was trained on both hands is read from its recipe (``both_hands``).

    ``fast``: the networks PyTorch runs made ready for inference
    (:func:`~handpose_lib.inference.prepare_for_inference`: BatchNorm folded into the
    convolutions, NHWC weights and inputs): the detector, and the pose model unless ONNX Runtime
    runs it (which folds it itself). The same answers within float tolerance (0.003 px on the
    shipped photos) in about a fifth less time per frame on a CPU. A given detector object is not
    changed (the pipeline gets a copy).

    ``bf16``: bfloat16 autocast. ``"auto"`` (the default): the detector's network only, and only
    on a CPU with native bf16 kernels (:func:`~handpose_lib.device.cpu_bf16_supported`:
    AVX512-BF16 or AMX), where it was about 25 % faster with the same hands found on the shipped
    photos; the pose model stays in float32 (at batch 1 its bf16 was 10-20 % slower, 2026-12-03).
    ``True``: both networks (e.g. on a GPU); ``False``: neither.

    ``backend``: what runs the pose model. ``"onnx"``: ONNX Runtime
    (:class:`~handpose_lib.inference.OnnxPoseModel`, exported once per weights into the cache;
    the same joints within 0.003 px on the shipped photos, and a sixth off the whole frame there:
    19.2 against 22.9 ms, one thread, 2026-12-03); ``"torch"``: PyTorch; ``"auto"`` (the
    default): ONNX Runtime on a CPU unless ``bf16`` is ``True``, PyTorch on a GPU.

    ``verifier``: ``"auto"`` uses the detector folder's ``verifier.json`` when it was fitted for
    this model and detector (otherwise a warning says so and none is used); a path loads that
    one (an error if it belongs to other weights); ``None`` or ``False``: none.
    ``kw`` go to :class:`HandPipeline` (``K``, ``fov``, ...)."""
    from .detect import load_detector
    from .inference import load_trained, prepare_for_inference

    net, c = load_trained(model, device=device)
    det = (
        detector
        if detector is None or isinstance(detector, HandDetector)
        else load_detector(detector, device=device)
    )
    if bf16 == "auto":
        from .device import cpu_bf16_supported

        det_bf16 = torch.device(device).type == "cpu" and cpu_bf16_supported()
        pose_bf16 = False
    else:
        det_bf16 = pose_bf16 = bool(bf16)
    if backend not in ("auto", "onnx", "torch"):
        raise ValueError(f"backend must be 'auto', 'onnx' or 'torch', not {backend!r}")
    if backend == "onnx" or (backend == "auto" and torch.device(device).type == "cpu" and not pose_bf16):
        from .inference import OnnxPoseModel

        try:
            kw.setdefault("onnx", OnnxPoseModel(net, c.weights_sha256))
        except Exception as e:  # "auto" never fails for want of ONNX Runtime: PyTorch answers the same
            if backend == "onnx":
                raise
            warnings.warn(
                f"the pose model runs in PyTorch: ONNX Runtime could not take it ({e})", stacklevel=2
            )
    if det is not None and (fast or det_bf16):
        det = copy.copy(det)
        det.bf16 = det_bf16
        if fast:
            det.net, det.channels_last = prepare_for_inference(det.net), True
    if fast and kw.get("onnx") is None:  # ONNX Runtime folds the pose model itself
        net = prepare_for_inference(net)
        kw["channels_last"] = True
    kw.setdefault("bf16", pose_bf16)
    kw.setdefault("both_hands", trained_on_both_hands(c.meta))
    kw["verifier"] = _verifier(verifier, det, c.weights_sha256)
    return HandPipeline(net, det, **kw)


def _verifier(which, det: HandDetector | None, model_sha: str | None) -> HandVerifier | None:
    """The verifier ``load_pipeline`` was asked for (see there)."""
    if which is None or which is False or det is None:
        return None
    det_sha = getattr(det, "weights_sha256", None)
    if which != "auto":
        return load_verifier(which, model_sha, det_sha)
    folder = getattr(det, "folder", None)
    if folder is None or not (Path(folder) / VERIFIER_FILE).is_file():
        return None
    try:
        return load_verifier(folder, model_sha, det_sha)
    except ValueError as e:
        warnings.warn(f"{e}; the pipeline runs without it", stacklevel=3)
        return None


def trained_on_both_hands(meta: dict) -> bool:
    """Whether a pose checkpoint's recipe (its sidecar ``meta``) trained on left hands as well:
    procedural data with ``left_hand_prob > 0`` in its ``engine`` overrides."""
    tc = meta.get("train_config") or {}
    engine = tc.get("engine") or {}
    return tc.get("data", "synthetic") == "synthetic" and float(engine.get("left_hand_prob", 0.0)) > 0


def _broadcast(sides, n: int) -> list[str]:
    sides = [sides] if isinstance(sides, str) else list(sides)
    if len(sides) == 1:
        sides = sides * n
    for s in sides:
        if s not in ("left", "right"):
            raise ValueError(f"side must be 'left' or 'right', got {s!r}")
    if len(sides) != n:
        raise ValueError(f"{len(sides)} sides for {n} hands")
    return sides


# ----------------------------------------------------------------------------------------
# video


class OneEuroFilter:
    """One-Euro filter (Casiez, Roussel and Vogel, CHI 2012) for arrays of any shape.

    A low-pass filter whose cut-off frequency rises with the speed of the signal: slow motion is
    smoothed hard (cut-off ``min_cutoff`` Hz, no jitter), fast motion little (cut-off
    ``min_cutoff + beta * |speed|``, little lag). ``d_cutoff`` filters the speed estimate.
    Call with the new value and its time in seconds; the first call returns it unchanged.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.x = self.dx = self.t = None

    @staticmethod
    def _alpha(cutoff, dt):
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x, t: float) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self.x is None or t <= self.t:
            self.x, self.dx, self.t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self.t
        dx = (x - self.x) / dt
        a_d = self._alpha(self.d_cutoff, dt)
        self.dx = a_d * dx + (1 - a_d) * self.dx
        cutoff = self.min_cutoff + self.beta * np.abs(self.dx)
        a = self._alpha(cutoff, dt)
        self.x = a * x + (1 - a) * self.x
        self.t = t
        return self.x.copy()


@dataclass
class _Track:
    box: tuple[float, float, float, float]
    side: str | None  # None: read off the pose in every frame, reported by the majority so far
    score: float
    f2d: OneEuroFilter
    f3d: OneEuroFilter
    votes: int = 0  # frames read as right minus frames read as left


class HandTracker:
    """Hands over the frames of a video (see the module docstring).

    Args:
        pipeline: the :class:`HandPipeline`.
        max_hands: hands tracked at most.
        keep_thresh: presence score below which a tracked hand is lost; ``None``: half the
            detector's score threshold (hysteresis: a hand is harder to find than to keep).
        min_cutoff, beta: One-Euro parameters for the joints (2D in px, 3D in mm).
        box, side: a fixed box (x0, y0, x1, y1) for every frame (no detector, no tracking) and a
            forced side ("left"/"right"; otherwise a hand's side comes from the pipeline's
            ``side_source``: read off the pose in every frame and reported as the track's
            majority so far, or the detector's).
    """

    def __init__(
        self,
        pipeline: HandPipeline,
        max_hands: int = 2,
        keep_thresh: float | None = None,
        min_cutoff: float = 1.0,
        beta: float = 0.05,
        box=None,
        side: str | None = None,
    ):
        self.pipeline = pipeline
        self.max_hands = max_hands
        if keep_thresh is None:
            keep_thresh = 0.5 * float(getattr(pipeline.detector, "score_thresh", 0.3))
        self.keep_thresh = keep_thresh
        self.min_cutoff, self.beta = min_cutoff, beta
        self.box, self.side = box, side
        self.tracks: list[_Track] = []
        self.detector_runs = 0

    def _track(self, box, side: str | None, score: float) -> _Track:
        return _Track(
            tuple(box),
            self.side or side,
            score,
            OneEuroFilter(self.min_cutoff, self.beta),
            OneEuroFilter(self.min_cutoff, self.beta),
        )

    def _new_tracks(self, image) -> None:
        self.detector_runs += 1
        p = self.pipeline
        if p.verifier is None or p.detector is None:
            found = [(d.box, p.side_of(d), d.score) for d in p.detect(image)]
        else:  # the verified hands (their crops are estimated once more by step: simple, rare)
            found = [(h.box, None if p.side_source == "pose" else h.side, h.score) for h in p.find(image)]
        self.tracks = [self._track(*f) for f in found[: self.max_hands]]

    def step(self, image: np.ndarray, t: float) -> list[Hand]:
        """The hands of one frame (uint8 RGB) at time ``t`` seconds, joints smoothed."""
        p = self.pipeline
        if self.box is not None:
            if not self.tracks:
                self.tracks = [self._track(self.box, self.side or p.guess_side(image, self.box), 1.0)]
        elif self.tracks:
            for tr in self.tracks:
                tr.score = p.presence(image, tr.box, tr.side)
            if any(tr.score < self.keep_thresh for tr in self.tracks):  # a hand was lost: look again now
                self._new_tracks(image)
        else:
            self._new_tracks(image)
        hands = p.estimate(
            image,
            [tr.box for tr in self.tracks],
            [tr.side for tr in self.tracks],
            [tr.score for tr in self.tracks],
        )
        for tr, h in zip(self.tracks, hands, strict=True):
            if tr.side is None:  # the side read off the pose: the track's majority, steadier
                tr.votes += 1 if h.side == "right" else -1
                h.side = "right" if tr.votes >= 0 else "left"
            h.joints2d = tr.f2d(h.joints2d, t)
            cam = tr.f3d(h.joints3d_cam_mm, t)
            h.joints3d_cam_mm, h.joints3d_rel_mm = cam, cam - cam[:1]
            if self.box is None:
                tr.box = joints_box(h.joints2d)  # the next frame's box
        return hands


def _frames(cap: cv2.VideoCapture):
    """Yield the frames of an open capture as (H, W, 3) uint8 RGB until it ends."""
    while True:
        ok, f = cap.read()
        if not ok:
            return
        yield cv2.cvtColor(f, cv2.COLOR_BGR2RGB)


def read_video(path) -> tuple[list[np.ndarray], float]:
    """All frames of a video file as (H, W, 3) uint8 RGB, and its frames per second (30 if the
    file does not say). Raises ``FileNotFoundError`` / ``ValueError`` (not a readable video)."""
    path = str(path)
    if not Path(path).is_file():
        raise FileNotFoundError(f"video file is missing: {path}")
    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            raise ValueError(f"cannot open video (corrupt or not a video): {path}")
        fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
        frames = list(_frames(cap))
    finally:
        cap.release()
    if not frames:
        raise ValueError(f"no frame could be decoded from {path} (corrupt or not a video)")
    return frames, float(fps)


def write_video(path, frames, fps: float) -> Path:
    """Write (H, W, 3) uint8 RGB frames to an MP4 (``mp4v``) file."""
    path = Path(path)
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
    if not vw.isOpened():
        raise OSError(f"OpenCV cannot write the video {path}")
    try:
        for f in frames:
            vw.write(cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2BGR))
    finally:
        vw.release()
    return path


def draw_hands(image: np.ndarray, hands: list[Hand]) -> np.ndarray:
    """A copy of the image with each hand's box (blue left, green right), side and skeleton."""
    from .viz import overlay_2d

    out = np.ascontiguousarray(image.copy())
    for h in hands:
        out = overlay_2d(out, h.joints2d, radius=max(2, round(max(image.shape[:2]) / 200)))
        x0, y0, x1, y1 = (round(v) for v in h.box)
        colour = (60, 120, 255) if h.side == "left" else (40, 200, 40)
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, 2)
        cv2.putText(
            out,
            f"{h.side} {h.score:.2f}",
            (x0, max(12, y0 - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            colour,
            1,
            cv2.LINE_AA,
        )
    return out


def process_frame(tracker: HandTracker, frame: np.ndarray, t: float, draw: bool = True):
    """One video frame through the tracker: ``(hands, overlay or None, seconds spent tracking)``.

    The one code path of every video source: :func:`run_video` (files) and :func:`live_camera`
    (a webcam in JupyterLab)."""
    t0 = time.perf_counter()
    hands = tracker.step(frame, t)
    busy = time.perf_counter() - t0
    return hands, (draw_hands(frame, hands) if draw else None), busy


def run_video(tracker: HandTracker, path, out_path=None) -> dict:
    """Track the hands of a video file: ``{"fps_video", "fps_pipeline", "frames": [[hand dicts]],
    "detector_runs"}``; writes an overlay MP4 to ``out_path`` when given. ``fps_pipeline`` counts
    the pipeline only (not decoding or drawing)."""
    frames, fps = read_video(path)
    per_frame, overlays, busy = [], [], 0.0
    for i, f in enumerate(frames):
        hands, overlay, dt = process_frame(tracker, f, i / fps, draw=out_path is not None)
        busy += dt
        per_frame.append([h.to_dict() for h in hands])
        if overlay is not None:
            overlays.append(overlay)
    if out_path is not None:
        write_video(out_path, overlays, fps)
    return {
        "fps_video": fps,
        "fps_pipeline": len(frames) / max(busy, 1e-9),
        "frames": per_frame,
        "detector_runs": tracker.detector_runs,
    }


def live_camera(tracker: HandTracker, source=0, max_frames: int = 300, widget=None, log=print) -> dict:
    """Track hands live from a camera in JupyterLab: each frame's overlay is shown in an
    ``ipywidgets.Image`` as it is processed (the same :func:`process_frame` as :func:`run_video`).

    Args:
        tracker: a :class:`HandTracker` (its pipeline, detector and smoothing).
        source: a camera index (0: the default webcam) or a video file (to replay a recording).
        max_frames: frames processed before it stops (interrupting the kernel stops it too).
        widget: an ``ipywidgets.Image`` to update; ``None``: a new one, displayed.
        log: where the no-camera message and the summary go.

    Without a camera (or a readable file) nothing fails: the message says so and is returned in
    ``{"message"}`` with ``frames == 0``. Returns ``{"frames", "fps_pipeline", "hands", "message"}``
    where ``hands`` is the last frame's hand dicts.
    """
    try:  # quiet OpenCV's own warnings about a missing /dev/video*
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except AttributeError:
        pass
    is_file = not isinstance(source, int)
    cap = cv2.VideoCapture(str(source) if is_file else source)
    try:
        ok, first = cap.read() if cap.isOpened() else (False, None)
        if not ok:
            what = f"the video file {source}" if is_file else f"camera {source}"
            msg = (
                f"No camera: {what} could not be opened or gave no frame. On your own machine, run "
                "this cell in JupyterLab with a webcam connected (and camera access allowed), or pass "
                "source='my_video.mp4' to replay a recording."
            )
            log(msg)
            return {"frames": 0, "fps_pipeline": 0.0, "hands": [], "message": msg}
        if widget is None:
            import ipywidgets
            from IPython.display import display

            widget = ipywidgets.Image(format="jpeg")
            display(widget)
        fps = (cap.get(cv2.CAP_PROP_FPS) or 30.0) if is_file else None
        start, n, busy, hands = time.perf_counter(), 0, 0.0, []
        frame = cv2.cvtColor(first, cv2.COLOR_BGR2RGB)
        frames = _frames(cap)
        try:
            while frame is not None and n < max_frames:
                t = n / fps if fps else time.perf_counter() - start
                hands, overlay, dt = process_frame(tracker, frame, t)
                busy += dt
                n += 1
                ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
                if ok:
                    widget.value = jpg.tobytes()
                frame = next(frames, None)
        except KeyboardInterrupt:  # the kernel's stop button ends the loop, not the session
            pass
    finally:
        cap.release()
    msg = f"{n} frames, {n / max(busy, 1e-9):.1f} frames/s (pipeline only), {len(hands)} hand(s) in the last"
    log(msg)
    return {
        "frames": n,
        "fps_pipeline": n / max(busy, 1e-9),
        "hands": [h.to_dict() for h in hands],
        "message": msg,
    }


# ----------------------------------------------------------------------------------------
# files: images, folders, videos (what `handpose predict` runs)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def expand_inputs(paths) -> list[Path]:
    """Files and folders -> files: a folder gives its images and videos (sorted, not recursive);
    a file is kept whatever its suffix (a missing or unreadable one is reported when it is read)."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES)
        else:
            out.append(p)
    return out


def _units(pipe: HandPipeline) -> dict:
    return {
        "box": "x0, y0, x1, y1 in pixels of the input (continuous: pixel i spans [i, i + 1))",
        "joints2d_px": "21 x (u, v) pixels of the input, joint order of joint_names",
        "joints3d_rel_mm": f"root-relative (wrist = 0) mm in camera axes, for a {pipe.ref_bone_mm} mm "
        "middle MCP->PIP bone (one image does not give the hand's size)",
        "joints3d_cam_mm": "camera frame mm (x right, y down, z forward); depth from the same size prior",
        "score": "the detector's score (1 for a given --box)",
    }


def output_stems(paths) -> list[str]:
    """The output name stem per input: its stem, ``STEM-2``, ``STEM-3`` ... where stems repeat
    (a/x.jpg, b/x.jpg, a/x.png)."""
    seen: dict[str, int] = {}
    out = []
    for p in map(Path, paths):
        seen[p.stem] = seen.get(p.stem, 0) + 1
        out.append(p.stem if seen[p.stem] == 1 else f"{p.stem}-{seen[p.stem]}")
    return out


def output_files(paths) -> list[tuple[str, str]]:
    """Per input its (overlay, json) file names: ``STEM_pred.png`` or ``STEM_pred.mp4`` for a
    video, and ``STEM_hands.json``."""
    return [
        (
            stem + ("_pred.mp4" if Path(p).suffix.lower() in VIDEO_SUFFIXES else "_pred.png"),
            stem + "_hands.json",
        )
        for p, stem in zip(paths, output_stems(paths), strict=True)
    ]


def predict_image_file(pipe: HandPipeline, path, overlay: Path, box=None, side=None) -> tuple[dict, str]:
    """One image: the overlay PNG written to ``overlay`` (atomically) and ``(info, message)``."""
    from .checkpoint import atomic_write_bytes
    from .data.common import read_rgb

    img = read_rgb(path, verify=True)
    hands = pipe(img, boxes=None if box is None else [box], sides=side)
    ok, data = cv2.imencode(".png", cv2.cvtColor(draw_hands(img, hands), cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"OpenCV could not encode the overlay for {overlay}")
    atomic_write_bytes(overlay, data.tobytes())
    info = {"input": str(path), "overlay": str(overlay), "size": [img.shape[1], img.shape[0]]}
    info["K"] = np.round(pipe.camera(img), 3).tolist()
    info["hands"] = [h.to_dict() for h in hands]
    return info, (f"{len(hands)} hand(s)" if hands else "no hand found")


def predict_video_file(pipe: HandPipeline, path, overlay: Path, box=None, side=None) -> tuple[dict, str]:
    """One video: the tracked hands per frame, the overlay MP4 written to ``overlay``."""
    res = run_video(HandTracker(pipe, box=box, side=side), path, overlay)
    n = sum(len(f) for f in res["frames"])
    msg = f"{len(res['frames'])} frames, {n} hands, {res['fps_pipeline']:.1f} frames/s"
    return {"input": str(path), "overlay": str(overlay), **res}, msg


def predict_files(
    pipe: HandPipeline, inputs, out_dir, box=None, side=None, overwrite: bool = False, log=print
) -> dict:
    """Run the pipeline on images and videos (folders give their images and videos); per input an
    overlay and a JSON of its hands in ``out_dir`` (names: :func:`output_files`).

    Nothing is written when an output exists already and ``overwrite`` is False
    (``FileExistsError``). ``box`` (x0, y0, x1, y1) skips the detector (every image, every frame);
    ``side`` forces "left"/"right". An image without a hand is reported, not an error; an input
    that cannot be read or written is recorded in ``errors`` and the others still run.
    Returns ``{"inputs": [{"input", "overlay", "json"}], "errors": [{"input", "error"}]}``.
    """
    from .checkpoint import atomic_write_json

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} is a file, not a folder; choose a folder path")
    paths = expand_inputs(inputs)
    names = output_files(paths)
    there = [n for pair in names for n in pair if (out_dir / n).exists()]
    if there and not overwrite:
        more = " ..." if len(there) > 3 else ""
        raise FileExistsError(f"{out_dir} already holds {', '.join(there[:3])}{more}; nothing was written")
    out_dir.mkdir(parents=True, exist_ok=True)
    done, errors = [], []
    for path, (ov, js) in zip(paths, names, strict=True):
        video = path.suffix.lower() in VIDEO_SUFFIXES
        run = predict_video_file if video else predict_image_file
        try:
            info, msg = run(pipe, path, out_dir / ov, box, side)
            info["units"] = _units(pipe)
            info["joint_names"] = list(skeleton.JOINT_NAMES)
            atomic_write_json(out_dir / js, info)
        except (OSError, ValueError) as e:  # missing, corrupt, not an image/video, not writable
            errors.append({"input": str(path), "error": str(e)})
            log(f"{path}: skipped: {e}")
            continue
        done.append({"input": str(path), "overlay": str(out_dir / ov), "json": str(out_dir / js)})
        log(f"{path}: {msg} -> {out_dir / ov}, {out_dir / js}")
    return {"inputs": done, "errors": errors}
