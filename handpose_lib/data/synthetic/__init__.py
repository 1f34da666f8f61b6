"""The procedural hand data engine (SynthHands-like): posable sphere-mesh hands with objects,
rendered by batched ray casting in torch, with exact labels.

Modules: ``hand`` (skeleton, proportions, limits, pose sampler, kinematics), ``geometry``
(round cones and intersections), ``camera``, ``occluders``, ``backgrounds``, ``render``,
``dataset`` (``SyntheticConfig``, ``SyntheticHands``) and ``io`` (writer and reader of
rendered folders; ``handpose render`` is in ``cli.py``).
"""

# the fast-path switches: compiled.set_compile, native.set_native (the C++ kernel)
from . import compiled, native  # noqa: F401
from .dataset import GENERATOR_VERSION, OCCLUSION_LEVELS, SyntheticConfig, SyntheticHands
from .io import DiskHands, render_to_disk

__all__ = [
    "GENERATOR_VERSION",
    "OCCLUSION_LEVELS",
    "DiskHands",
    "SyntheticConfig",
    "SyntheticHands",
    "render_to_disk",
]
