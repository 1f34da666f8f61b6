"""Extract a head and shoulders (a bust) of the MakeHuman base mesh into ``handpose_lib/assets/mesh_bust``.

Reproduces ``handpose_lib/assets/mesh_bust/mesh_bust.npz`` from the MakeHuman files described in
that folder's ``PROVENANCE.md`` (CC0 assets: ``base.obj``, ``default.mhskel``,
``default_weights.mhw``)::

    python tools/extract_mesh_bust.py PATH/TO/makehuman-hand [--out handpose_lib/assets/mesh_bust]

What it keeps: the skin (group ``body``) quads whose four vertices lie above the waist
(``y > CHEST_DM``), within the shoulders (``|x| < SHOULDER_DM``) and take (almost) no skin weight
from the forearms, hands and lower upper arms, split into triangles, with their UVs; the two
eyeballs (groups ``helper-l-eye``, ``helper-r-eye``). Per vertex: whether it is skin (at least
half of its weight from the head, jaw, neck, eye and face bones) or the cloth of the body below
the neckline, its redness (the lips: the weight of the ``oris*`` bones; the cheeks, a little:
``risorius*`` and ``levator*``), and its depth below the neckline in mm (the cloth's stripes run
round the body by it). Everything is moved into the engine's head frame: millimetres, origin at
the centre of the head's box (the skin vertices from the chin to the crown), ``x`` to the
image's right when the face looks at the camera, ``y`` down, ``z`` away from the camera
(MakeHuman's character faces ``+z`` with ``y`` up: ``(x, y, z) -> (x, -y, -z)``, a rotation, so
triangles keep their winding).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from extract_mesh_hand import DM_TO_MM, read_obj

CHEST_DM = 1.6  # keep the body above this height (decimetres: the waist; the shoulders are at 5.5)
SHOULDER_DM = 2.3  # and within this distance of the middle (the shoulders' caps)
ARM_WEIGHT = 0.05  # a vertex with more weight than this from the arms below the shoulder is dropped
HEAD_PREFIXES = (
    "head", "jaw", "neck", "eye", "levator", "oculi", "orbicularis", "oris", "risorius",
    "temporalis", "special", "tongue",
)  # fmt: skip
ARM_PREFIXES = ("upperarm02", "lowerarm", "wrist", "metacarpal", "finger")


def bone_weights(weights: dict, n: int, prefixes) -> np.ndarray:
    """(n,) each vertex's total weight from the bones whose names start with one of ``prefixes``."""
    out = np.zeros(n)
    for bone, pairs in weights.items():
        if bone.startswith(tuple(prefixes)):
            for i, x in pairs:
                out[i] += x
    return out


def extract(src: Path) -> dict[str, np.ndarray]:
    v, vt, quads_all, quads_uv, groups = read_obj(src / "base.obj")
    weights = json.loads((src / "default_weights.mhw").read_text())["weights"]
    n = len(v)
    head = bone_weights(weights, n, HEAD_PREFIXES)
    arm = bone_weights(weights, n, ARM_PREFIXES)
    lips = bone_weights(weights, n, ("oris",))
    cheeks = bone_weights(weights, n, ("risorius", "levator"))
    ok = (v[:, 1] > CHEST_DM) & (np.abs(v[:, 0]) < SHOULDER_DM) & (arm < ARM_WEIGHT)
    keep = (groups == "body") & ok[quads_all].all(1)
    quads, quads_uv = quads_all[keep], quads_uv[keep]
    used = np.unique(quads)
    remap = -np.ones(n, dtype=np.int64)
    remap[used] = np.arange(len(used))
    tri = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    tri_uv = np.concatenate([quads_uv[:, [0, 1, 2]], quads_uv[:, [0, 2, 3]]])
    skin = head[used] >= 0.5
    # the head: skin above the jaw's lowest point (chin to crown)
    jaw_y = v[used][skin & (bone_weights(weights, n, ("jaw",))[used] > 0.5), 1].min()
    head_box = v[used][skin & (v[used][:, 1] > jaw_y)]
    centre = (head_box.min(0) + head_box.max(0)) / 2
    flip = np.array([1.0, -1.0, -1.0])

    def to_head(p):
        return (p - centre) * flip * DM_TO_MM

    neckline = v[used][skin, 1].min()
    return {
        "vertices": to_head(v[used]).astype(np.float32),
        "faces": remap[tri].astype(np.int32),
        "face_uv": vt[tri_uv].astype(np.float32),
        "skin": skin,
        "red": np.clip(lips[used] + 0.5 * cheeks[used], 0, 1).astype(np.float32),
        "below_neckline_mm": ((neckline - v[used][:, 1]) * DM_TO_MM).clip(0).astype(np.float32),
        "head_half_axes": ((head_box.max(0) - head_box.min(0)) / 2 * DM_TO_MM).astype(np.float32),
        "source_vertex": used.astype(np.int32),
        **_eyes(v, quads_all, groups, to_head),
    }


def _eyes(v, quads, groups, to_head) -> dict[str, np.ndarray]:
    """The eyeballs' vertices (E, 3) in the head frame and triangles (T, 3)."""
    keep = np.isin(groups, ["helper-l-eye", "helper-r-eye"])
    q = quads[keep]
    used = np.unique(q)
    remap = -np.ones(len(v), dtype=np.int64)
    remap[used] = np.arange(len(used))
    tri = np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]])
    return {"eye_vertices": to_head(v[used]).astype(np.float32), "eye_faces": remap[tri].astype(np.int32)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path, help="folder with base.obj, default.mhskel, default_weights.mhw")
    ap.add_argument("--out", type=Path, default=Path("handpose_lib/assets/mesh_bust"))
    args = ap.parse_args(argv)
    out = extract(args.src)
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out / "mesh_bust.npz", **out)
    print(
        f"{args.out / 'mesh_bust.npz'}: {len(out['vertices'])} vertices, {len(out['faces'])} triangles "
        f"({int(out['skin'].sum())} skin vertices), eyes {len(out['eye_vertices'])} vertices"
    )


if __name__ == "__main__":
    main()
