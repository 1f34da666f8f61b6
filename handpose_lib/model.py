"""ResUnet: ResNet encoder + U-Net decoder, LHR 2D head and bone-based 3D branch.

Layer 2 of the library: imports ``skeleton`` and ``lhr`` only (never ``data/``).

Overview for a 128x128 crop (the paper's setting, ``paper_config()``; channel numbers are for
ResNet-34)::

    image (B,3,128,128) in [0,1] --ImageNet mean/std--> encoder (torchvision ResNet-34)
      stem  conv7x7/2+BN+ReLU   F0 (B, 64,64,64) -------------------------------------.
      maxpool + layer1          F1 (B, 64,32,32) ----------------------------.         |
      layer2                    F2 (B,128,16,16) -------------------.        |         |
      layer3                    F3 (B,256, 8, 8) ----------.        |        |         |
      layer4                    F4 (B,512, 4, 4)           |        |        |         |
    decoder                                                v        v        v         v
      Unet-Block 1 (F4 + F3) -> (B,256, 8, 8)  + heatmap H1 (B,21, 8, 8)
      Unet-Block 2 (.. + F2) -> (B,128,16,16)  + heatmap H2 (B,21,16,16)
      Unet-Block 3 (.. + F1) -> (B, 64,32,32)  + heatmap H3 (B,21,32,32)
      Unet-Block 4 (.. + F0) -> (B, 64,64,64)  + heatmap H4 (B,21,64,64)
      head: bilinear resize to heatmap_size, conv3x3, ReLU, conv3x3 -> latent (B,21,64,64)
    LHR (lhr.py): per-joint softmax with learnable beta, expected coordinate -> coords2d (B,21,2)
    3D branch: [maxpool2, conv3x3+ReLU, conv3x3+ReLU] x 3 on the Block-4 output -> (B,128,8,8),
      concatenated with H1..H4 max-pooled to 8x8 (84 channels) -> flatten (13,568)
      -> FC 512 + ReLU -> FC 60 -> bones (B,20,3) -> skeleton.bones_to_joints -> joints3d (B,21,3)

Units. ``coords2d`` are input-image pixels in ``[0, W]`` (pixel-edge convention: pixel ``i``
covers ``[i, i+1]``). The 3D outputs are in **normalised units**: root-relative (wrist at the
origin) and divided by the length of the reference bone (middle MCP -> PIP), i.e. the units of
:func:`handpose_lib.skeleton.normalise_3d`. :func:`handpose_lib.skeleton.denormalise_3d` is the
only conversion to millimetres (with the ground truth's reference length for the usual
scale-aligned evaluation, or an assumed hand size). The network never sees millimetres, so a
small and a large hand with the same pose have the same target.

Reading of the paper (Bekiri & Babahenini), what it says, what we chose and why:

1. *Encoder.* "The contracting path used a pre-trained ResNet-34." We use torchvision's
   ``resnet34`` unchanged except that ``avgpool`` and ``fc`` are not used. The features
   ``F1..F4`` are the outputs of the four residual stages ``layer1..layer4``: 32, 16, 8 and
   4 pixels for a 128 input (strides 4, 8, 16, 32). ``F0`` is the stem's output after
   conv7x7/2, BN and ReLU (before the max pooling), 64x64. ``resnet18``/``resnet50`` go
   through the same code (ResNet-50's stages have 256..2048 channels); ``tiny`` is the same
   ResNet structure built from torchvision's ``BasicBlock`` with narrower stages.
   Pretrained ImageNet weights are optional (``pretrained=True``) and loaded through
   torchvision's weights API or from a local file; the default is a random initialisation.
2. *Four Unet-Blocks, the first fusing F4 and F3.* The paper names the blocks "Unet-Block"
   (as fastai's ``DynamicUnet`` on a ResNet-34 does) and says the first block fuses
   ``{F4, F3}``, that every block upsamples bilinearly and concatenates the upsampled input
   with its skip feature ``F_skip`` before its convolutions, and that "the output of the last
   block has a size of 64". We therefore map the blocks to the skips ``F3, F2, F1, F0``
   (8, 16, 32, 64 pixels): block ``k`` bilinearly resizes its input to the skip's size
   (``align_corners=False``), concatenates the skip, and applies two conv3x3+BN+ReLU. Using
   the stem ``F0`` as the fourth skip is what makes the last block 64x64, as stated.
3. *Intermediate heatmaps.* "Estimate 2D heatmaps before passing it to the upcoming
   Unet-Block." Each block emits 21 heatmaps by a 1x1 convolution of its output (a side
   output, as in deep supervision); the next block receives the block's features, not the
   heatmaps. They are trained towards Gaussian targets (``losses.heatmap_loss``) and feed the
   3D branch (item 6).
4. *Where the 64x64 heatmaps come from.* After the last block the paper adds "an upsample
   layer with bilinear mode followed by two convolution layers separated by ReLU", and says
   the output is "(21, 64)". Taken together with "the last block has a size of 64" a 2x
   upsampling would give 128x128, contradicting the stated output. We keep the output size
   the paper states and read the upsample as a bilinear **resize to** ``heatmap_size``: for
   the paper's 128 input and 64x64 heatmaps it is the identity (and is skipped); with
   ``heatmap_size=128`` it is a real 2x upsampling. Then conv3x3 (C->C), ReLU, conv3x3
   (C->21), with biases and no normalisation, give the latent heatmaps. The alternative, a
   real 2x upsampling to 128x128 with the second convolution strided back to 64, adds 17% to
   the FLOPs of the whole paper model (21% of the tiny one) and full-resolution activations,
   for detail that LHR's sub-pixel expectation does not need.
5. *LHR.* Eq. 1-2 exactly, see :mod:`handpose_lib.lhr`: ``beta_i = exp(log_beta_i)``,
   softmax in float32, coordinates in input pixels. The paper gives no initial beta; we start
   at ``init_beta = 5``.
6. *3D branch.* The paper: "two convolutional layers, each followed by ReLU ... every two
   convolutional layers are preceded by a max-pooling layer. Then we concatenate the
   processed 3D features with intermediate features ... two fully connected layers ... a
   tensor of size (20, 3)"; the abstract says it "concatenates the intermediate features with
   the upsampling block". We read it as: the input is the output of the last upsampling
   block (Block 4, 64x64); the unit ``[maxpool 2x2, conv3x3+ReLU, conv3x3+ReLU]`` (no
   normalisation, as described) is repeated three times (64 -> 32 -> 16 -> 8), giving
   ``branch3d_width`` channels at 8x8 (``input_size / 16``); the "intermediate features" are
   the four intermediate heatmaps H1..H4 of the decoder, max-pooled to 8x8 (kernels 1, 2, 4,
   8) and concatenated (4 x 21 = 84 channels). They carry the 2D pose, which the 3D pose must
   agree with. Flatten, FC to ``fc_hidden`` (512) with ReLU, FC to 60 = 20 bones x 3.
   The number of repetitions and the widths are our choice (the paper gives none).
7. *Bones to joints.* Eq. 3 inverted: ``joints3d = skeleton.bones_to_joints(bones)`` sums the
   bones along the kinematic tree from the wrist (at the origin).
8. *Normalisation.* Images enter as float in [0, 1] (or uint8, divided by 255) and the model
   subtracts the ImageNet mean and divides by the ImageNet std itself (buffers, not saved in
   the state dict), so data code never has to know.
9. *Initialisation (ours).* Encoder as torchvision; the 1x1 side-output convolutions of the
   intermediate heatmaps start at zero. On an overfitting check (tiny model, 8 fixed images,
   Adam 1e-3, 80 steps) the 2D error fell from 24 px to 21 px with the default
   initialisation and beta 1, to 9 px with zero side outputs, and to 4 px with zero side
   outputs and beta 5 (beta 10: 4 px as well; a zero last head convolution did not help).

Size (``benchmarks/model_bench.py``): the paper model has 32.3M parameters (21.3M in the
encoder, 6.9M in the first FC layer of the 3D branch) and needs 5.3 GFLOPs per 128x128 image;
``tiny_config()`` has 2.9M parameters and needs 0.27 GFLOPs.

Export to ONNX: :func:`handpose_lib.inference.export_onnx`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import resnet
from torchvision.models.resnet import BasicBlock, ResNet

from . import skeleton
from .lhr import LatentHeatmap2D

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ENCODERS = ("resnet18", "resnet34", "resnet50", "tiny")


class PretrainedWeightsUnavailable(RuntimeError):
    """ImageNet weights were requested but can be neither found on disk nor downloaded."""


# ----------------------------------------------------------------------------------------
# configuration


@dataclass
class ModelConfig:
    """Everything that defines a ResUnet's architecture (JSON-serialisable via :meth:`to_dict`).

    Attributes:
        encoder: ``"resnet18"``, ``"resnet34"`` (the paper), ``"resnet50"`` (torchvision
            models) or ``"tiny"`` (a narrow ResNet of ``BasicBlock``s, see ``tiny_*``).
        input_size: side of the square input crop in pixels (a multiple of 32).
        heatmap_size: side of the latent heatmaps (the paper: 64 for a 128 input).
        num_joints: 21.
        tiny_widths: channels of the stem and the four stages of the ``"tiny"`` encoder.
        tiny_layers: ``BasicBlock``s per stage of the ``"tiny"`` encoder.
        decoder_widths: output channels of Unet-Blocks 1..4 (8, 16, 32, 64 px for a 128 input).
        branch3d_width: channels of the 3D branch's convolutions.
        fc_hidden: width of the 3D branch's first fully connected layer.
        init_beta: initial LHR inverse temperature of every joint.
        pretrained: load ImageNet weights into a torchvision encoder (see :func:`build_model`).
        pretrained_path: a local torchvision state dict (``.pth``/``.safetensors``) to load
            instead of torchvision's cache/download; implies ``pretrained``.
    """

    encoder: str = "resnet34"
    input_size: int = 128
    heatmap_size: int = 64
    num_joints: int = 21
    tiny_widths: tuple[int, int, int, int] = (16, 32, 64, 128)
    tiny_layers: tuple[int, int, int, int] = (1, 1, 2, 2)
    decoder_widths: tuple[int, int, int, int] = (256, 128, 64, 64)
    branch3d_width: int = 128
    fc_hidden: int = 512
    init_beta: float = 5.0
    pretrained: bool = False
    pretrained_path: str | None = None

    def __post_init__(self):
        self._check_types()
        if self.encoder not in ENCODERS:
            raise ValueError(
                f"ModelConfig.encoder: unknown encoder {self.encoder!r}; choose one of {ENCODERS}"
            )
        if self.input_size % 32 or self.input_size < 64:
            raise ValueError(
                f"ModelConfig.input_size must be a multiple of 32 and >= 64, got {self.input_size}"
            )
        if self.heatmap_size < 4:
            raise ValueError(f"ModelConfig.heatmap_size must be >= 4, got {self.heatmap_size}")
        if self.num_joints != 21:
            raise ValueError(
                f"ModelConfig.num_joints must be 21 (the skeleton's joints), got {self.num_joints}"
            )
        for name in ("tiny_widths", "tiny_layers", "decoder_widths"):
            v = getattr(self, name)
            if len(v) != 4 or min(v) < 1:
                raise ValueError(f"ModelConfig.{name} needs 4 positive integers, got {list(v)}")
            setattr(self, name, tuple(v))
        for name in ("branch3d_width", "fc_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"ModelConfig.{name} must be >= 1, got {getattr(self, name)}")

    def _check_types(self) -> None:
        """A JSON/YAML value of the wrong type (``"64"``, ``64.5``, ``null``) is refused by name."""

        def bad(name: str, want: str):
            v = getattr(self, name)
            return ValueError(f"ModelConfig.{name} must be {want}, got {v!r} ({type(v).__name__})")

        def is_int(v) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        if not isinstance(self.encoder, str):
            raise bad("encoder", "a string")
        for name in ("input_size", "heatmap_size", "num_joints", "branch3d_width", "fc_hidden"):
            if not is_int(getattr(self, name)):
                raise bad(name, "an integer")
        for name in ("tiny_widths", "tiny_layers", "decoder_widths"):
            v = getattr(self, name)
            if not isinstance(v, (list, tuple)) or not all(is_int(x) for x in v):
                raise bad(name, "a list of 4 integers")
        if not (is_int(self.init_beta) or isinstance(self.init_beta, float)) or not math.isfinite(
            self.init_beta
        ):
            raise bad("init_beta", "a finite number")
        if not isinstance(self.pretrained, bool):
            raise bad("pretrained", "true or false")
        if self.pretrained_path is not None and not isinstance(self.pretrained_path, (str, os.PathLike)):
            raise bad("pretrained_path", "a file path or null")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"ModelConfig.from_dict: unknown keys {unknown}")
        return cls(**d)


def paper_config(**overrides) -> ModelConfig:
    """The paper's model: ResNet-34 encoder, 128x128 input, 64x64 heatmaps (32.3M parameters)."""
    return ModelConfig(**overrides)


def tiny_config(**overrides) -> ModelConfig:
    """The same architecture with narrow widths (2.9M parameters), for training on a few CPU cores.

    A ResNet of ``BasicBlock``s with 16/32/64/128 channels (a quarter of ResNet-18/34's) and
    1, 1, 2, 2 blocks per stage (depth where it is cheap: the 8x8 and 4x4 stages), decoder
    widths 64/32/16/16, a 32-channel 3D branch and a 256-wide FC layer. Measured 200-230
    images/s forward+backward(+SGD step) at batch 32 on 2 lightly loaded CPU cores (240 with
    channels_last); ``benchmarks/model_bench.py`` times the full training step.
    """
    cfg = dict(
        encoder="tiny",
        tiny_widths=(16, 32, 64, 128),
        tiny_layers=(1, 1, 2, 2),
        decoder_widths=(64, 32, 16, 16),
        branch3d_width=32,
        fc_hidden=256,
    )
    cfg.update(overrides)
    return ModelConfig(**cfg)


# ----------------------------------------------------------------------------------------
# output


@dataclass
class HandPoseOutput:
    """What :class:`ResUnet` returns (shapes for a 128 input, B images, 21 joints).

    Attributes:
        heatmaps: (B, 21, 64, 64) latent heatmaps ``F_i`` (before the softmax).
        probs: (B, 21, 64, 64) LHR probability maps, each sums to 1 (float32).
        coords2d: (B, 21, 2) ``(x, y)`` in input-image pixels, in ``[0, W]`` (float32).
        bones: (B, 20, 3) bone vectors in normalised units (reference bone = 1).
        joints3d: (B, 21, 3) ``skeleton.bones_to_joints(bones)``: wrist at the origin, normalised.
        intermediate: the decoder blocks' heatmaps, coarse to fine: (B, 21, 8, 8), (.., 16, 16),
            (.., 32, 32), (.., 64, 64).
    """

    heatmaps: Tensor
    probs: Tensor
    coords2d: Tensor
    bones: Tensor
    joints3d: Tensor
    intermediate: list[Tensor] = field(default_factory=list)


# ----------------------------------------------------------------------------------------
# helpers


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of a module."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


def _conv_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True))


def _torchvision_init(module: nn.Module) -> None:
    """The initialisation torchvision's ResNet applies (Kaiming-normal convs, unit BN)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _tiny_resnet(widths: tuple[int, ...], layers: tuple[int, ...]) -> ResNet:
    """A torchvision ``ResNet`` of ``BasicBlock``s whose stem and stages have ``widths`` channels.

    torchvision's ``ResNet`` hard-codes 64..512 channels, so we build the smallest one and
    replace the stem and the four stages with narrower ones made by its own ``_make_layer``.
    """
    net = ResNet(BasicBlock, [1, 1, 1, 1])
    net.conv1 = nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
    net.bn1 = nn.BatchNorm2d(widths[0])
    net.inplanes = widths[0]
    net.layer1 = net._make_layer(BasicBlock, widths[0], layers[0])
    net.layer2 = net._make_layer(BasicBlock, widths[1], layers[1], stride=2)
    net.layer3 = net._make_layer(BasicBlock, widths[2], layers[2], stride=2)
    net.layer4 = net._make_layer(BasicBlock, widths[3], layers[3], stride=2)
    _torchvision_init(net)
    return net


_TORCHVISION = {
    "resnet18": (resnet.resnet18, resnet.ResNet18_Weights.IMAGENET1K_V1),
    "resnet34": (resnet.resnet34, resnet.ResNet34_Weights.IMAGENET1K_V1),
    "resnet50": (resnet.resnet50, resnet.ResNet50_Weights.IMAGENET1K_V1),
}


def _read_state_dict(path: str) -> dict[str, Tensor]:
    if not os.path.isfile(path):
        raise PretrainedWeightsUnavailable(f"pretrained_path {path!r} does not exist or is not a file.")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt file, or a pickle with arbitrary objects
        raise PretrainedWeightsUnavailable(
            f"could not read {path!r} as a torch state dict ({type(e).__name__}); it must be a "
            "torchvision ResNet state dict saved with torch.save(model.state_dict(), path)."
        ) from None
    if not isinstance(state, dict):
        raise PretrainedWeightsUnavailable(f"{path!r} holds a {type(state).__name__}, not a state dict.")
    return state


def _download_state_dict(encoder: str) -> dict[str, Tensor]:
    weights = _TORCHVISION[encoder][1]
    fname = os.path.basename(weights.url)
    target = os.path.join(torch.hub.get_dir(), "checkpoints", fname)
    cached = os.path.isfile(target)
    try:  # reads the cached file if present (no hash check), else downloads (hash checked)
        return torch.hub.load_state_dict_from_url(
            weights.url, progress=False, check_hash=True, weights_only=True
        )
    except Exception as e:  # no network, DNS failure, bad hash, unreadable cache file, ...
        reason = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
        if cached:
            raise PretrainedWeightsUnavailable(
                f"the cached ImageNet weights {target} could not be read ({reason}).\n"
                f"Fix: delete the file and copy a good {fname} (from {weights.url}) there, or set "
                "ModelConfig.pretrained_path to a local copy, or use pretrained=False."
            ) from None
        raise PretrainedWeightsUnavailable(
            f"ImageNet weights for {encoder} ({weights}) are not on disk and could not be "
            f"downloaded ({reason}).\n"
            f"Fix: copy {fname} (from {weights.url}) to {target}\n"
            "  (torchvision's cache: $TORCH_HOME/hub/checkpoints; TORCH_HOME defaults to ~/.cache/torch),\n"
            "or set ModelConfig.pretrained_path to a local copy, or use pretrained=False."
        ) from None


# ----------------------------------------------------------------------------------------
# blocks


class Encoder(nn.Module):
    """A torchvision ResNet without ``avgpool``/``fc``, returning the skip features.

    Submodule names match torchvision's (``conv1``, ``bn1``, ``layer1``..``layer4``), so a
    torchvision state dict (minus ``fc.*``) loads directly.

    ``forward(x (B, 3, S, S))`` -> ``[F0 (S/2), F1 (S/4), F2 (S/8), F3 (S/16), F4 (S/32)]``.
    """

    def __init__(self, net: ResNet):
        super().__init__()
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        # output channels of the stem and of each stage (the last block's last BatchNorm)
        self.channels = [self.bn1.num_features] + [
            getattr(stage[-1], "bn3", stage[-1].bn2).num_features
            for stage in (self.layer1, self.layer2, self.layer3, self.layer4)
        ]

    def load_torchvision_state_dict(self, state: dict[str, Tensor], source: str) -> None:
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        bad = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
        if missing or unexpected or bad:
            raise PretrainedWeightsUnavailable(
                f"{source} does not match the encoder: {len(missing)} missing keys {missing[:3]}, "
                f"{len(unexpected)} unexpected keys {unexpected[:3]}, shape mismatches {bad[:3]}. "
                "Is it a state dict of the same torchvision ResNet?"
            )
        self.load_state_dict(state)

    def forward(self, x: Tensor) -> list[Tensor]:
        f0 = self.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(self.maxpool(f0))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return [f0, f1, f2, f3, f4]


def tiny_encoder(
    widths: tuple[int, ...] = (16, 32, 64, 128), layers: tuple[int, ...] = (1, 1, 2, 2)
) -> Encoder:
    """The ``"tiny"`` encoder on its own (the defaults are :func:`tiny_config`'s): the hand
    detector's ``backbone="pose"`` builds it, so that a trained pose model's encoder weights
    (its state dict's ``encoder.*``) load into the detector."""
    return Encoder(_tiny_resnet(widths, layers))


class UnetBlock(nn.Module):
    """Bilinear upsampling to the skip's size, concatenation, two conv3x3+BN+ReLU, side heatmap.

    ``forward(x (B, C_in, h, w), skip (B, C_skip, H, W))`` ->
    ``(features (B, C_out, H, W), heatmap (B, J, H, W))``.
    """

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int, num_joints: int):
        super().__init__()
        self.conv1 = _conv_bn_relu(in_ch + skip_ch, out_ch)
        self.conv2 = _conv_bn_relu(out_ch, out_ch)
        self.to_heatmap = nn.Conv2d(out_ch, num_joints, kernel_size=1)
        # start from all-zero heatmaps: the heatmap loss then begins at the targets' energy
        # instead of hundreds, which would swamp the shared features early on
        nn.init.zeros_(self.to_heatmap.weight)
        nn.init.zeros_(self.to_heatmap.bias)

    def forward(self, x: Tensor, skip: Tensor) -> tuple[Tensor, Tensor]:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        x = self.conv2(self.conv1(torch.cat([x, skip], dim=1)))
        return x, self.to_heatmap(x)


class HeatmapHead(nn.Module):
    """Bilinear resize to ``size`` (skipped when equal), conv3x3, ReLU, conv3x3 -> J latent heatmaps."""

    def __init__(self, in_ch: int, num_joints: int, size: int):
        super().__init__()
        self.size = size
        self.conv1 = nn.Conv2d(in_ch, in_ch, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(in_ch, num_joints, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.conv2(self.relu(self.conv1(x)))


class Bone3DBranch(nn.Module):
    """3D branch: 3 x [maxpool2, conv3x3+ReLU, conv3x3+ReLU], concat pooled intermediate
    heatmaps, flatten, FC + ReLU, FC -> 20 bones.

    ``forward(x (B, C, S/2, S/2), intermediate [(B, J, s, s), ...])`` -> bones (B, 20, 3).
    """

    def __init__(
        self, in_ch: int, width: int, num_joints: int, n_intermediate: int, out_size: int, hidden: int
    ):
        super().__init__()
        self.out_size = out_size
        layers: list[nn.Module] = []
        for i in range(3):
            layers += [
                nn.MaxPool2d(2),
                _conv_relu(in_ch if i == 0 else width, width),
                _conv_relu(width, width),
            ]
        self.convs = nn.Sequential(*layers)
        flat = (width + n_intermediate * num_joints) * out_size * out_size
        self.fc1 = nn.Linear(flat, hidden)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden, skeleton.NUM_BONES * 3)

    def forward(self, x: Tensor, intermediate: list[Tensor]) -> Tensor:
        x = self.convs(x)
        pooled = [
            h if h.shape[-1] == self.out_size else F.max_pool2d(h, h.shape[-1] // self.out_size)
            for h in intermediate
        ]
        x = torch.cat([x, *pooled], dim=1).flatten(1)
        return self.fc2(self.relu(self.fc1(x))).reshape(-1, skeleton.NUM_BONES, 3)


# ----------------------------------------------------------------------------------------
# the model


_FLOAT_INPUTS = (torch.float32, torch.float16, torch.bfloat16)
_RANGE_TOLERANCE = 0.01  # 2.5 grey levels: room for rounding, none for 0-255 or normalised images


def _tracing() -> bool:
    compiling = getattr(torch.compiler, "is_compiling", lambda: False)
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or compiling()


def check_images(images, size: int, values: bool = True) -> None:
    """Refuse what the model would silently turn into wrong joints; each error names the fix.

    ``images`` must be a torch tensor (B >= 1, 3, size, size), either uint8 (0-255, scaled by the
    model) or float32/16/bfloat16 in [0, 1]. ``values`` also checks the pixel values (NaN/inf,
    0-255 floats, ImageNet-normalised images): one small reduction and a device-to-host copy,
    skipped while tracing or compiling (ONNX export, ``torch.compile``).
    """
    if not isinstance(images, Tensor):
        raise TypeError(
            f"ResUnet: expected a torch.Tensor of shape (B, 3, {size}, {size}), got {type(images).__name__}; "
            "convert an (H, W, 3) uint8 photo with torch.from_numpy(a).permute(2, 0, 1)[None]"
        )
    shape = tuple(images.shape)
    if images.ndim != 4 or shape[1] != 3 or shape[2] != size or shape[3] != size:
        raise ValueError(
            f"ResUnet: expected images of shape (B, 3, {size}, {size}), got {shape}; "
            f"crop/resize the hand to {size}x{size} first (config.input_size)."
        )
    if shape[0] == 0:
        raise ValueError(f"ResUnet: the batch is empty (shape {shape}); pass at least one image")
    if images.dtype != torch.uint8 and images.dtype not in _FLOAT_INPUTS:
        fix = (
            "images.float()"
            if images.is_floating_point()
            else "images.to(torch.uint8) for 0-255 values, or images.float() / 255"
        )
        raise TypeError(
            f"ResUnet: expected uint8 (0-255) or float32 images in [0, 1], got {images.dtype}; use {fix}"
        )
    if not values or images.dtype == torch.uint8 or _tracing():
        return
    lo, hi = (float(v) for v in torch.stack(torch.aminmax(images.detach())).float().cpu())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("ResUnet: the images contain NaN or inf pixels; check how they were loaded")
    if lo < -_RANGE_TOLERANCE or hi > 1.0 + _RANGE_TOLERANCE:
        hint = (
            "divide 0-255 images by 255 (or pass them as uint8)"
            if hi > 1.0 + _RANGE_TOLERANCE and lo >= -_RANGE_TOLERANCE
            else "pass unnormalised images: the model subtracts the ImageNet mean itself"
        )
        raise ValueError(
            f"ResUnet: float images must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}]; {hint}"
        )


class ResUnet(nn.Module):
    """The paper's ResUnet (see the module docstring).

    ``forward(images (B, 3, S, S) float in [0, 1] or uint8)`` -> :class:`HandPoseOutput`,
    ``S = config.input_size``. :func:`check_images` refuses anything else (numpy arrays, float64,
    other integer types, 0-255 floats, NaN/inf, an empty batch) with a message naming the fix;
    in training mode on a GPU only the shape and dtype are checked, so that a training step never
    waits for the device.
    """

    def __init__(self, config: ModelConfig, encoder_net: ResNet):
        super().__init__()
        self.config = config
        j = config.num_joints
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1), persistent=False)
        self.encoder = Encoder(encoder_net)
        c0, c1, c2, c3, c4 = self.encoder.channels
        d1, d2, d3, d4 = config.decoder_widths
        self.block1 = UnetBlock(c4, c3, d1, j)
        self.block2 = UnetBlock(d1, c2, d2, j)
        self.block3 = UnetBlock(d2, c1, d3, j)
        self.block4 = UnetBlock(d3, c0, d4, j)
        self.head = HeatmapHead(d4, j, config.heatmap_size)
        self.lhr = LatentHeatmap2D(j, config.init_beta)
        self.branch3d = Bone3DBranch(
            d4, config.branch3d_width, j, 4, config.input_size // 16, config.fc_hidden
        )

    def forward(self, images: Tensor) -> HandPoseOutput:
        s = self.config.input_size
        on_gpu = images.device.type != "cpu" if isinstance(images, Tensor) else False
        check_images(images, s, values=not (self.training and on_gpu))
        if images.dtype == torch.uint8:
            images = images.float() / 255.0
        x = (images - self.mean) / self.std
        f0, f1, f2, f3, f4 = self.encoder(x)
        x, h1 = self.block1(f4, f3)
        x, h2 = self.block2(x, f2)
        x, h3 = self.block3(x, f1)
        x, h4 = self.block4(x, f0)
        intermediate = [h1, h2, h3, h4]
        latent = self.head(x)
        coords2d, probs = self.lhr(latent, s)
        bones = self.branch3d(x, intermediate)
        if bones.dtype in (torch.float16, torch.bfloat16):
            bones = bones.float()
        joints3d = skeleton.bones_to_joints(bones)
        return HandPoseOutput(latent, probs, coords2d, bones, joints3d, intermediate)


def build_model(config: ModelConfig) -> ResUnet:
    """Build a :class:`ResUnet`; load ImageNet encoder weights when the config asks for them.

    ``config.pretrained_path`` (a local torchvision state dict, loaded with
    ``weights_only=True``) wins; otherwise ``config.pretrained=True`` uses torchvision's weights
    API, which reads ``$TORCH_HOME/hub/checkpoints/<file>`` or downloads it. When neither works,
    :class:`PretrainedWeightsUnavailable` says where to put the file.

    To rebuild a trained model from its saved config, set ``pretrained=False`` (the checkpoint
    overwrites the encoder anyway).
    """
    want_weights = config.pretrained or config.pretrained_path is not None
    if want_weights and config.encoder == "tiny":
        raise ValueError(
            "ModelConfig: there are no ImageNet weights for the 'tiny' encoder; "
            "use pretrained=False or a resnet18/34/50 encoder."
        )
    state = source = None
    if want_weights:  # fetch first: a missing file fails before building a large model
        if config.pretrained_path is not None:
            state, source = _read_state_dict(os.fspath(config.pretrained_path)), repr(config.pretrained_path)
        else:
            state, source = _download_state_dict(config.encoder), str(_TORCHVISION[config.encoder][1])
    if config.encoder == "tiny":
        net = _tiny_resnet(config.tiny_widths, config.tiny_layers)
    else:
        net = _TORCHVISION[config.encoder][0](weights=None)
    model = ResUnet(config, net)
    if state is not None:
        model.encoder.load_torchvision_state_dict(state, source)
    return model
