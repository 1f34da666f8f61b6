"""A hand detector of our own: for every hand in an image a box, left/right and a score.

Layer 3. Imports torch, torchvision's ``BasicBlock``, OpenCV and ``checkpoint.py``, and
``model.tiny_encoder`` for the ``backbone="pose"`` variant (:class:`DetectorConfig`).

**Architecture (CenterNet-style, Zhou et al. 2019, "Objects as Points").** A hand is the
centre of its box. A small ResNet turns the image into a feature map at stride 4 and four
1x1 heads read, at every output cell, whether a hand centre is there and what that hand is::

    image (B, 3, H, W) in [0, 1], H and W multiples of 4 (e.g. 240 x 320)
    stem    conv3x3 s2 + BN + ReLU                        -> (B,  16, H/2,  W/2)
    layer1  BasicBlock s2                                 -> (B,  24, H/4,  W/4)   C1
    layer2  BasicBlock s2                                 -> (B,  48, H/8,  W/8)   C2
    layer3  BasicBlock s2, BasicBlock                     -> (B,  96, H/16, W/16)  C3
    layer4  BasicBlock s2, BasicBlock                     -> (B, 128, H/32, W/32)  C4
    top-down (FPN-like): resize to the skip's size + 1x1 lateral(skip), conv3x3+BN+ReLU,
            C4 -> 16 -> 8 -> 4                            -> (B,  32, H/4,  W/4)   P1
    heads   conv3x3+ReLU, conv1x1 on P1                   -> (B,   6, H/4,  W/4)
            channel 0    centre heatmap logit (sigmoid: P(a hand's centre is in this cell))
            channels 1-2 sub-cell offset of the centre (x, y), in cells, in [0, 1)
            channels 3-4 log of the box width and height, in cells
            channel 5    handedness logit (sigmoid: P(left hand))

Stride-2 convolutions on odd sizes round up and the top-down path resizes to the skip's size,
so any H, W that are multiples of 4 work (the output is exactly (H/4, W/4)). The receptive
field of layer4 (a few hundred pixels) covers a hand that fills a 320 x 240 input.

**A second backbone** (``DetectorConfig(backbone="pose")``): the tiny pose model's encoder
(``model.tiny_encoder``: a 7x7 stride-2 stem and a max-pool, then stages of 16, 32, 64 and 128
channels at strides 4 to 32) in place of the small ResNet, under the same top-down path and
heads. Its weights can start from a trained pose model (``detector_train --backbone-init
models/book-tiny``) and stay fixed (``--freeze-backbone``): features learnt from 21 joints per
hand, rather than from one box, under a detector that learns only where hands are.

**Training targets** (:func:`encode_targets`): a Gaussian bump of peak 1 at each hand centre
(sigma grows with the box size), offset and size at the centre cell only, and the side at every
cell where the hand's bump is above one half (a few cells for a small hand, dozens for a large
one; where two bumps overlap, the higher one's hand). The loss (:func:`detection_loss`) is
CenterNet's penalty-reduced focal loss on the heatmap plus L1 on offsets and log sizes at the
centre cells and a cross-entropy on the side, averaged per hand. Reading the side over the
bump rather than at one cell gives its head many more examples per hand, and the decoded peak
(which may be a cell off the true centre) still sits where the side was trained.

**Decoding** (:func:`decode`): sigmoid heatmap, 3x3 max-pool "NMS" (a cell is a peak if it
equals its neighbourhood's maximum), the top ``k`` peaks, those above ``score_thresh``;
box = (cell + offset) * stride -/+ exp(log size) * stride / 2.

**Images** (:class:`HandDetector`): the photo is resized (aspect kept) to ``long_side`` pixels
on its longer side with the other side rounded to a multiple of 4, detected, and the boxes are
scaled back to the photo's pixels. Boxes are ``(x0, y0, x1, y1)`` in continuous pixels (pixel
``i`` spans ``[i, i + 1)``), like the rest of the library.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock

from .model import IMAGENET_MEAN, IMAGENET_STD, tiny_encoder

STRIDE = 4
HEAD_CHANNELS = 6  # heat, offset x/y, log w/h, side
# the detector the repository ships (models/README.md); ``handpose predict`` uses it by default
SHIPPED_DETECTOR_DIR = Path(__file__).resolve().parents[1] / "models" / "detector"
MEAN, STD = 0.45, 0.25  # input normalisation (images in [0, 1])


@dataclass
class DetectorConfig:
    """Widths of the small ResNet and its top-down path.

    Attributes:
        widths: channels of stem, layer1..layer4.
        blocks: BasicBlocks in layer1..layer4 (the first of each has stride 2).
        fpn_width: channels of the stride-4 output features.
        long_side: the longer side of the detector's input for photos (pixels).
        backbone: ``"own"``: the small ResNet of ``widths`` and ``blocks`` (the module
            docstring); ``"pose"``: the tiny pose model's encoder instead
            (:func:`~handpose_lib.model.tiny_encoder`: a 7x7 stem and max-pool, then stages of
            16, 32, 64 and 128 channels at strides 4 to 32, ImageNet normalisation), so that a
            trained pose model's encoder can start it (``detector_train --backbone-init``);
            ``widths`` and ``blocks`` are then unused.
    """

    widths: tuple[int, ...] = (16, 24, 48, 96, 128)
    blocks: tuple[int, ...] = (1, 1, 2, 2)
    fpn_width: int = 32
    long_side: int = 320
    backbone: str = "own"

    def __post_init__(self):
        if self.backbone not in ("own", "pose"):
            raise ValueError(f"backbone must be 'own' or 'pose', not {self.backbone!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"], d["blocks"] = list(self.widths), list(self.blocks)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DetectorConfig:
        d = dict(d)
        d["widths"], d["blocks"] = tuple(d["widths"]), tuple(d["blocks"])
        return cls(**d)


@dataclass
class Detection:
    """One hand: ``box`` (x0, y0, x1, y1) pixels, ``side`` "left"/"right", ``score`` in [0, 1],
    ``p_left`` the handedness probability."""

    box: tuple[float, float, float, float]
    side: str
    score: float
    p_left: float

    def to_dict(self) -> dict:
        return {"box": [round(v, 2) for v in self.box], "side": self.side, "score": round(self.score, 4)}


# ----------------------------------------------------------------------------------------
# the network


def _layer(cin: int, cout: int, n: int) -> nn.Sequential:
    down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm2d(cout))
    blocks = [BasicBlock(cin, cout, stride=2, downsample=down)]
    blocks += [BasicBlock(cout, cout) for _ in range(n - 1)]
    return nn.Sequential(*blocks)


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True))


class HandDetectorNet(nn.Module):
    """The CenterNet-style detector (see the module docstring): (B, 3, H, W) in [0, 1] ->
    (B, 6, H/4, W/4) raw head outputs (decode with :func:`decode`)."""

    def __init__(self, config: DetectorConfig | None = None):
        super().__init__()
        self.config = c = config or DetectorConfig()
        if c.backbone == "pose":
            self.encoder = tiny_encoder()
            channels = self.encoder.channels[1:]
            mean, std = IMAGENET_MEAN, IMAGENET_STD
        else:
            w = c.widths
            self.stem = nn.Sequential(
                nn.Conv2d(3, w[0], 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w[0]), nn.ReLU(True)
            )
            self.layers = nn.ModuleList(_layer(w[i], w[i + 1], c.blocks[i]) for i in range(4))
            channels, mean, std = w[1:], (MEAN,) * 3, (STD,) * 3
        self.register_buffer("mean", torch.tensor(mean).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).reshape(1, 3, 1, 1), persistent=False)
        f = c.fpn_width
        self.lateral = nn.ModuleList(nn.Conv2d(channels[i], f, 1) for i in range(4))
        self.smooth = nn.ModuleList(_conv_bn_relu(f, f) for _ in range(3))
        self.head = nn.Sequential(
            nn.Conv2d(f, f, 3, padding=1), nn.ReLU(True), nn.Conv2d(f, HEAD_CHANNELS, 1)
        )
        keep = set(self.encoder.modules()) if c.backbone == "pose" else set()  # initialised already
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m not in keep:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        # CenterNet's prior: every cell starts at P(centre) = 0.1, so the focal loss starts sane
        nn.init.normal_(self.head[-1].weight, std=0.001)
        nn.init.constant_(self.head[-1].bias[0], -2.19)

    def backbone_modules(self) -> list[nn.Module]:
        """The modules of the backbone (what ``detector_train --freeze-backbone`` keeps fixed)."""
        return [self.encoder] if self.config.backbone == "pose" else [self.stem, self.layers]

    def backbone(self, images: Tensor) -> list[Tensor]:
        """(B, 3, H, W) in [0, 1] -> the features at strides 4, 8, 16 and 32."""
        x = (images - self.mean) / self.std
        if self.config.backbone == "pose":
            return self.encoder(x)[1:]
        x = self.stem(x)
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats

    def forward(self, images: Tensor) -> Tensor:
        feats = self.backbone(images)
        p = self.lateral[3](feats[3])
        for i in (2, 1, 0):  # stride 16, 8, 4
            skip = self.lateral[i](feats[i])
            p = F.interpolate(p, size=skip.shape[-2:], mode="bilinear", align_corners=False) + skip
            p = self.smooth[i](p)
        return self.head(p)


# ----------------------------------------------------------------------------------------
# targets and loss


def gaussian_sigma(w: float, h: float) -> float:
    """Heatmap sigma in output cells for a box of w x h input pixels (CenterNet's radius for
    IoU 0.7 is about a sixth of the box: sigma = radius / 3)."""
    return max(0.6, 0.055 * math.sqrt(w * h) / STRIDE)


def encode_targets(boxes: list[np.ndarray], sides: list[np.ndarray], H: int, W: int) -> dict[str, Tensor]:
    """Training targets for a batch.

    Args:
        boxes: per image an (N, 4) array of (x0, y0, x1, y1) input pixels.
        sides: per image an (N,) array, 1 = left, 0 = right.
        H, W: input size (multiples of 4).
    Returns:
        ``heat`` (B, 1, H/4, W/4) Gaussian bumps in [0, 1]; ``mask`` (B, H/4, W/4) bool at the
        centre cells; ``reg`` (B, 5, H/4, W/4): offset x, y, log w, log h (cells) and side, read
        at ``mask``; ``side`` (B, H/4, W/4) the side (1 = left) of the hand whose bump is highest
        at each cell and ``side_weight`` (B, H/4, W/4): 1 / (cells of that hand) where its bump
        is above 0.5, else 0 (each hand weighs 1 in the side loss).
    """
    B, h, w = len(boxes), H // STRIDE, W // STRIDE
    heat = np.zeros((B, 1, h, w), np.float32)
    mask = np.zeros((B, h, w), bool)
    reg = np.zeros((B, 5, h, w), np.float32)
    side = np.zeros((B, h, w), np.float32)
    owner = np.full((B, h, w), -1)
    side_weight = np.zeros((B, h, w), np.float32)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    for b, (bx, sd) in enumerate(zip(boxes, sides, strict=True)):
        for k, ((x0, y0, x1, y1), s) in enumerate(
            zip(np.asarray(bx).reshape(-1, 4), np.asarray(sd).reshape(-1), strict=True)
        ):
            cx, cy = (x0 + x1) / 2 / STRIDE, (y0 + y1) / 2 / STRIDE
            ix, iy = int(cx), int(cy)
            if not (0 <= ix < w and 0 <= iy < h):
                continue
            sig = gaussian_sigma(x1 - x0, y1 - y0)
            g = np.exp(-((xs - ix) ** 2 + (ys - iy) ** 2) / (2 * sig * sig))
            mine = (g > heat[b, 0]) & (g > 0.5)
            mine[iy, ix] = True
            owner[b][mine], side[b][mine] = k, float(s)
            heat[b, 0] = np.maximum(heat[b, 0], g)
            mask[b, iy, ix] = True
            reg[b, :, iy, ix] = (
                cx - ix,
                cy - iy,
                math.log(max(x1 - x0, 1.0) / STRIDE),
                math.log(max(y1 - y0, 1.0) / STRIDE),
                float(s),
            )
    for b in range(B):
        ids, counts = np.unique(owner[b][owner[b] >= 0], return_counts=True)
        for k, n in zip(ids, counts, strict=True):
            side_weight[b][owner[b] == k] = 1.0 / n
    return {
        "heat": torch.from_numpy(heat),
        "mask": torch.from_numpy(mask),
        "reg": torch.from_numpy(reg),
        "side": torch.from_numpy(side),
        "side_weight": torch.from_numpy(side_weight),
    }


def detection_loss(out: Tensor, targets: dict[str, Tensor], size_weight: float = 0.5) -> dict[str, Tensor]:
    """CenterNet losses: (B, 6, h, w) raw outputs, targets of :func:`encode_targets` ->
    ``{"loss", "heat", "offset", "size", "side"}`` (scalars; the parts averaged per hand)."""
    heat_t, mask, reg = targets["heat"], targets["mask"], targets["reg"]
    logit = out[:, :1]
    p = torch.sigmoid(logit).clamp(1e-4, 1 - 1e-4)
    pos = heat_t.eq(1).float()
    # penalty-reduced focal loss (alpha 2, beta 4)
    pos_loss = -torch.log(p) * (1 - p) ** 2 * pos
    neg_loss = -torch.log(1 - p) * p**2 * (1 - heat_t) ** 4 * (1 - pos)
    n = pos.sum().clamp_min(1.0)
    heat = (pos_loss.sum() + neg_loss.sum()) / n
    m = mask[:, None].expand_as(reg)
    if bool(mask.any()):
        o = out[:, 1:3][m[:, :2]]
        offset = F.l1_loss(torch.sigmoid(o), reg[:, :2][m[:, :2]])
        size = F.l1_loss(out[:, 3:5][m[:, 2:4]], reg[:, 2:4][m[:, 2:4]])
        sw = targets["side_weight"]
        ce = F.binary_cross_entropy_with_logits(out[:, 5], targets["side"], reduction="none")
        side = (ce * sw).sum() / sw.sum()
    else:
        offset = size = side = out.sum() * 0.0
    loss = heat + offset + size_weight * size + side
    return {"loss": loss, "heat": heat, "offset": offset, "size": size, "side": side}


# ----------------------------------------------------------------------------------------
# decoding


def decode(out: Tensor, k: int = 20, score_thresh: float = 0.3) -> list[dict[str, Tensor]]:
    """Raw outputs (B, 6, h, w) -> per image ``{"boxes" (N, 4) input px (x0, y0, x1, y1),
    "scores" (N,), "p_left" (N,)}``, best first, N <= k.

    Peaks: cells equal to the maximum of their 3x3 neighbourhood (max-pool NMS), then top-k,
    then ``score >= score_thresh``.
    """
    B, _, h, w = out.shape
    heat = torch.sigmoid(out[:, 0])
    peaks = heat * (F.max_pool2d(heat[:, None], 3, stride=1, padding=1)[:, 0] == heat)
    scores, idx = peaks.reshape(B, -1).topk(min(k, h * w))
    res = []
    for b in range(B):
        keep = scores[b] >= score_thresh
        i = idx[b][keep]
        iy, ix = (i // w).float(), (i % w).float()
        o = out[b].reshape(HEAD_CHANNELS, -1)[:, i]
        cx = (ix + torch.sigmoid(o[1])) * STRIDE
        cy = (iy + torch.sigmoid(o[2])) * STRIDE
        bw, bh = torch.exp(o[3]) * STRIDE, torch.exp(o[4]) * STRIDE
        boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1)
        res.append({"boxes": boxes, "scores": scores[b][keep], "p_left": torch.sigmoid(o[5])})
    return res


def box_iou(a, b) -> np.ndarray:
    """IoU of (N, 4) and (M, 4) boxes (x0, y0, x1, y1) -> (N, M)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(hi - lo, 0, None).prod(-1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


# ----------------------------------------------------------------------------------------
# images


def input_size(h: int, w: int, long_side: int) -> tuple[int, int]:
    """(H, W) of the detector input for an h x w photo: longer side ``long_side``, aspect kept,
    both rounded to multiples of 4 (at least 32)."""
    s = long_side / max(h, w)
    return max(32, round(h * s / 4) * 4), max(32, round(w * s / 4) * 4)


def to_input(image_rgb: np.ndarray, long_side: int) -> tuple[Tensor, tuple[float, float]]:
    """(h, w, 3) uint8 RGB -> ((3, H, W) float in [0, 1], (sx, sy) photo px per input px)."""
    h, w = image_rgb.shape[:2]
    H, W = input_size(h, w, long_side)
    interp = cv2.INTER_AREA if H < h else cv2.INTER_LINEAR
    small = cv2.resize(image_rgb, (W, H), interpolation=interp)
    t = torch.from_numpy(np.ascontiguousarray(small)).permute(2, 0, 1).float() / 255.0
    return t, (w / W, h / H)


class HandDetector:
    """A trained :class:`HandDetectorNet` for photos: ``detector(image_rgb)`` -> list of
    :class:`Detection` in the photo's pixels, best first.

    Args:
        net: the network (put in eval mode here).
        long_side: input size for photos (default: the network config's).
        score_thresh: smallest score reported.
        max_hands: at most this many detections.
        bf16: run the network under bfloat16 autocast (fast on CPUs with native bf16; see
            ``load_pipeline``).
        channels_last: feed NHWC images (for a network whose weights are NHWC, as
            :func:`~handpose_lib.inference.prepare_for_inference` leaves them).

    ``folder`` and ``weights_sha256`` say where :func:`load_detector` read it (``None``
    otherwise); the pipeline finds the detector's verifier through them.
    """

    def __init__(
        self,
        net: HandDetectorNet,
        long_side: int | None = None,
        score_thresh: float = 0.3,
        max_hands: int = 8,
        bf16: bool = False,
        channels_last: bool = False,
    ):
        self.net = net.eval()
        self.bf16 = bf16
        self.channels_last = channels_last
        self.long_side = long_side or net.config.long_side
        self.score_thresh = score_thresh
        self.max_hands = max_hands
        self.folder: Path | None = None
        self.weights_sha256: str | None = None

    @torch.no_grad()
    def __call__(
        self, image_rgb: np.ndarray, score_thresh: float | None = None, max_hands: int | None = None
    ) -> list[Detection]:
        """The hands of an (H, W, 3) uint8 RGB image, best first; ``score_thresh`` and
        ``max_hands`` override the detector's own for this call (e.g. to propose candidates)."""
        x, (sx, sy) = to_input(image_rgb, self.long_side)
        dev = next(self.net.parameters()).device
        k = self.max_hands if max_hands is None else max_hands
        t = self.score_thresh if score_thresh is None else score_thresh
        with torch.autocast(dev.type, torch.bfloat16, enabled=self.bf16):
            raw = self.net(self._batch(x, dev))
        d = decode(raw.float(), k=k, score_thresh=t)[0]
        h, w = image_rgb.shape[:2]
        out = []
        for box, s, pl in zip(
            d["boxes"].cpu().tolist(), d["scores"].cpu().tolist(), d["p_left"].cpu().tolist(), strict=True
        ):
            x0, y0, x1, y1 = box
            b = (max(0.0, x0 * sx), max(0.0, y0 * sy), min(float(w), x1 * sx), min(float(h), y1 * sy))
            out.append(Detection(b, "left" if pl >= 0.5 else "right", float(s), float(pl)))
        return out

    @torch.no_grad()
    def presence(self, crop: Tensor) -> float:
        """The highest centre score on a (3, S, S) crop in [0, 1] (S a multiple of 4), e.g. a
        tracked hand's crop: is there still a hand in it?"""
        dev = next(self.net.parameters()).device
        with torch.autocast(dev.type, torch.bfloat16, enabled=self.bf16):
            raw = self.net(self._batch(crop, dev))
        return float(torch.sigmoid(raw[0, 0].float()).max())

    def _batch(self, x: Tensor, dev) -> Tensor:
        """(3, H, W) -> (1, 3, H, W) on ``dev`` (NHWC with ``channels_last``)."""
        x = x[None].to(dev)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def load_detector(path, device: str = "cpu", **kw) -> HandDetector:
    """A :class:`HandDetector` from a checkpoint folder written by ``detector_train`` (weights
    in safetensors, config and score threshold in the JSON sidecar; no pickle). ``kw`` go to
    :class:`HandDetector`."""
    from .checkpoint import CheckpointError, load_checkpoint, load_weights

    c = load_checkpoint(path)
    cfg = c.meta.get("detector_config") or (c.meta.get("train_config") or {}).get("detector")  # model / run
    if not isinstance(cfg, dict):
        raise CheckpointError(
            f"{c.path}: not a hand detector checkpoint (its sidecar has no detector_config)"
        )
    net = HandDetectorNet(DetectorConfig.from_dict(cfg))
    load_weights(net, c)
    if "score_thresh" in c.meta:  # the threshold chosen on validation frames
        kw.setdefault("score_thresh", float(c.meta["score_thresh"]))
    det = HandDetector(net.to(device), **kw)
    det.folder, det.weights_sha256 = Path(c.path), c.weights_sha256
    return det
