"""The MakeHuman bust of the scene extras' heads (``context.py``): the base mesh's head, neck
and shoulders.

The asset (``assets/mesh_bust/mesh_bust.npz``, made by ``tools/extract_mesh_bust.py``, CC0,
provenance in that folder) holds 5,533 vertices and 10,920 triangles of the MakeHuman base
mesh's skin above the waist and within the shoulders (the arms cut off below them), with its
UVs, per vertex whether it is skin (the head and neck) or cloth (below the neckline), its
redness (lips, a little on the cheeks) and its depth below the neckline, and the two eyeballs;
in the head frame: millimetres, origin at the centre of the head's box (chin to crown), ``x`` to
the image's right when the face looks at the camera, ``y`` down, ``z`` away from the camera.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

BUST_ASSET = Path(__file__).resolve().parents[2] / "assets" / "mesh_bust" / "mesh_bust.npz"


@functools.lru_cache(maxsize=1)
def load_bust() -> dict[str, torch.Tensor]:
    """The MakeHuman bust in the head frame (see the module's docstring): ``vertices`` (V, 3),
    ``faces`` (T, 3), ``face_uv`` (T, 3, 2), per vertex ``skin`` (bool), ``red`` and
    ``below_neckline_mm``; ``head_half_axes`` (3,) of the head's box (chin to crown);
    ``eye_vertices`` (E, 3), ``eye_faces``, ``eye_normals`` (E, 3) and ``eye_centres`` (2, 3)
    (left of the image first)."""
    with np.load(BUST_ASSET) as d:
        b = {k: torch.from_numpy(d[k]) for k in d.files if k != "source_vertex"}
    b["faces"], b["eye_faces"] = b["faces"].long(), b["eye_faces"].long()
    ev = b["eye_vertices"]
    right = ev[:, 0] > 0
    b["eye_centres"] = torch.stack([ev[~right].mean(0), ev[right].mean(0)])
    c = torch.where(right[:, None], b["eye_centres"][1], b["eye_centres"][0])
    b["eye_normals"] = (ev - c) / (ev - c).norm(dim=-1, keepdim=True).clamp_min(1e-9)
    return b
