"""The procedural hand data engine (SynthHands-like): posable sphere-mesh hands with objects,
rendered by batched ray casting in torch, with exact labels.

Modules, in the order they import each other (each imports only modules before it):
``rng`` (counter-based random streams), ``hand`` (skeleton, proportions, limits, pose sampler,
kinematics), ``geometry`` (round cones and intersections), ``mesh`` (engine v2's rigged mesh
hand), ``shapes``, ``accessories`` and ``held`` (triangle shapes; rings and watches on the mesh;
held objects), ``camera``, ``occluders``, ``backgrounds``, ``extras`` (``SceneExtras``, the
optional scene extras of engine v2, and their draws), ``compiled`` (the ``torch.compile``
switch), ``scene`` (``SyntheticConfig``, the scene parameters of a sample), ``tiles`` (pixel rays
and culling), ``native`` (the ray caster's C++ kernel), ``raster`` and ``raster_native`` (engine
v2's triangle rasterizer, torch and C++), ``context`` (the other hand, a head and shoulders),
``extras_render`` (the extras' second pass), ``render`` (the torch ray caster, which hands CPU
work to ``native``), ``mesh_render`` (a scene drawn with the mesh hand), ``dataset`` (labels,
``SyntheticHands``), ``frames`` (full frames with several hands, for the detector) and ``io``
(writer and reader of rendered folders, what ``handpose render`` writes).
"""

# the fast-path switches: compiled.set_compile, native.set_native (the C++ kernel)
from . import compiled, native  # noqa: F401
from .dataset import GENERATOR_VERSION, SyntheticHands
from .extras import SceneExtras
from .io import DiskHands, render_to_disk
from .scene import OCCLUSION_LEVELS, SyntheticConfig

__all__ = [
    "GENERATOR_VERSION",
    "OCCLUSION_LEVELS",
    "DiskHands",
    "SceneExtras",
    "SyntheticConfig",
    "SyntheticHands",
    "render_to_disk",
]
