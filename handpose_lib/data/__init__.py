"""Data: the common sample structure, the procedural engine and the real data set loaders."""

from .sample import (
    REQUIRED_KEYS,
    VIS_NAMES,
    VIS_OBJECT,
    VIS_OUTSIDE,
    VIS_SELF,
    VIS_UNKNOWN,
    VIS_VISIBLE,
    make_sample,
    project,
)

__all__ = [
    "REQUIRED_KEYS",
    "VIS_NAMES",
    "VIS_OBJECT",
    "VIS_OUTSIDE",
    "VIS_SELF",
    "VIS_UNKNOWN",
    "VIS_VISIBLE",
    "make_sample",
    "project",
]

# real data set loaders, the hand crop and augmentation (data/{stb,ganerated,...}.py)
from .augment import Augment  # noqa: E402
from .check import check_dataset  # noqa: E402
from .coco import COCOHands, real_hands_sample  # noqa: E402
from .common import CorruptImageError, DatasetNotFoundError, HandDataset  # noqa: E402
from .crop import HandCrop, crop_box_from_joints, crop_image, uncrop_points  # noqa: E402
from .freihand import FreiHAND  # noqa: E402
from .ganerated import GANerated  # noqa: E402
from .rhd import RHD  # noqa: E402
from .stb import STB  # noqa: E402
from .synthhands import SynthHands  # noqa: E402

__all__ += [
    "Augment",
    "COCOHands",
    "CorruptImageError",
    "DatasetNotFoundError",
    "FreiHAND",
    "GANerated",
    "HandCrop",
    "HandDataset",
    "RHD",
    "STB",
    "SynthHands",
    "check_dataset",
    "crop_box_from_joints",
    "crop_image",
    "real_hands_sample",
    "uncrop_points",
]

# the procedural engine (data/synthetic/)
from .synthetic import (  # noqa: E402
    GENERATOR_VERSION,
    DiskHands,
    SyntheticConfig,
    SyntheticHands,
    render_to_disk,
)

__all__ += [
    "GENERATOR_VERSION",
    "DiskHands",
    "SyntheticConfig",
    "SyntheticHands",
    "render_to_disk",
]
