"""The procedural hand data engine (SynthHands-like): posable hands with objects and exact labels;
engine v1 ray casts sphere-mesh hands, engine v2 (``hand_model="mesh"``) rasterizes a rigged mesh
hand.

Modules, in the order they import each other (each imports only modules before it):
``rng`` (counter-based random streams), ``hand`` (skeleton, proportions, limits, pose sampler,
kinematics), ``geometry`` (round cones and intersections), ``camera``, ``occluders``,
``backgrounds``, ``compiled`` (the ``torch.compile`` switch), ``scene`` (``SyntheticConfig``,
the scene parameters of a sample), ``tiles`` (pixel rays and culling), ``native`` (the C++
kernel), ``render`` (the torch renderer, which hands CPU work to ``native``); engine v2:
``mesh`` (the MakeHuman hand, joint mapping, skinning), ``raster`` (triangle rasterizer and
shader, torch reference), ``raster_native`` (its C++ kernel), ``mesh_render`` (the scene drawn
with the mesh hand, visibility from the depth buffers); ``dataset``
(labels, ``SyntheticHands``) and ``io`` (writer and reader of rendered folders, what
``handpose render`` writes).
"""

# the fast-path switches: compiled.set_compile, native.set_native (the C++ kernel)
from . import compiled, native  # noqa: F401
from .dataset import GENERATOR_VERSION, SyntheticHands
from .io import DiskHands, render_to_disk
from .scene import OCCLUSION_LEVELS, SyntheticConfig

__all__ = [
    "GENERATOR_VERSION",
    "OCCLUSION_LEVELS",
    "DiskHands",
    "SyntheticConfig",
    "SyntheticHands",
    "render_to_disk",
]
