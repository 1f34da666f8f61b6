"""Extract the right hand and forearm of the MakeHuman base mesh into ``handpose_lib/assets/mesh_hand``.

Reproduces ``handpose_lib/assets/mesh_hand/mesh_hand.npz`` from the MakeHuman files described in
that folder's ``PROVENANCE.md`` (CC0 assets: ``base.obj``, ``default.mhskel``,
``default_weights.mhw``, ``targets/r-hand-*.target``, ``targets/r-lowerarm-*.target``)::

    python tools/extract_mesh_hand.py PATH/TO/makehuman-hand [--out handpose_lib/assets/mesh_hand]

What it keeps: the skin (group ``body``) quads whose four vertices get at least half of their
skin weight from the 22 bones of the right forearm and hand (``lowerarm01/02.R``, ``wrist.R``,
``metacarpal1-4.R``, ``finger1-1.R`` .. ``finger5-3.R``), split into triangles; the weights of
those bones, renormalised to sum to 1 per vertex; the bones' heads and tails (mean of the
skeleton's helper vertices); the shape targets restricted to the kept vertices, and their effect
on the bones' heads and tails. Everything is moved into the engine's hand frame (millimetres,
origin at the ``wrist.R`` head, ``y`` towards the ``finger3-1.R`` head (middle MCP), ``x`` radial
(from the little finger's MCP towards the index finger's), ``z = x cross y`` palmar), the frame of
``handpose_lib/data/synthetic/hand.py``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

BONES = (
    ["lowerarm01.R", "lowerarm02.R", "wrist.R"]
    + [f"metacarpal{i}.R" for i in range(1, 5)]
    + [f"finger{i}-{k}.R" for i in range(1, 6) for k in range(1, 4)]
)
TARGETS = (
    "r-hand-fingers-diameter",
    "r-hand-fingers-distance",
    "r-hand-fingers-length",
    "r-hand-scale",
    "r-hand-trans",
    "r-lowerarm-fat",
    "r-lowerarm-muscle",
    "r-lowerarm-scale-depth",
    "r-lowerarm-scale-horiz",
    "r-lowerarm-scale-vert",
)
DM_TO_MM = 100.0


def read_obj(path: Path):
    """Vertices (N, 3), uvs (M, 2), quads (F, 4) vertex and uv indices, group name per face."""
    v, vt, f, ft, groups = [], [], [], [], []
    group = None
    for line in path.read_text().splitlines():
        if line.startswith("v "):
            v.append([float(x) for x in line.split()[1:4]])
        elif line.startswith("vt "):
            vt.append([float(x) for x in line.split()[1:3]])
        elif line.startswith("g "):
            group = line.split()[1]
        elif line.startswith("f "):
            corners = [c.split("/") for c in line.split()[1:]]
            if len(corners) != 4:
                raise ValueError(f"expected quads in {path}, got a face with {len(corners)} corners")
            f.append([int(c[0]) - 1 for c in corners])
            ft.append([int(c[1]) - 1 for c in corners])
            groups.append(group)
    return np.array(v), np.array(vt), np.array(f), np.array(ft), np.array(groups)


def read_target(path: Path, n: int) -> np.ndarray:
    """(n, 3) vertex offsets of a MakeHuman ``.target`` file (lines ``vertex dx dy dz``)."""
    d = np.zeros((n, 3))
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            i, dx, dy, dz = line.split()
            d[int(i)] = (float(dx), float(dy), float(dz))
    return d


def extract(src: Path) -> dict[str, np.ndarray]:
    v, vt, quads, quads_uv, groups = read_obj(src / "base.obj")
    skel = json.loads((src / "default.mhskel").read_text())
    weights = json.loads((src / "default_weights.mhw").read_text())["weights"]
    helpers = {k: np.array(ix) for k, ix in skel["joints"].items()}

    def joint(name, verts):
        return verts[helpers[name]].mean(0)

    # weights of our bones and each vertex's total weight
    n = len(v)
    w = np.zeros((n, len(BONES)))
    total = np.zeros(n)
    for pairs in weights.values():
        for i, x in pairs:
            total[i] += x
    for b, bone in enumerate(BONES):
        for i, x in weights[bone]:
            w[i, b] = x
    keep_v = (w.sum(1) >= 0.5 * total) & (total > 0)
    keep_f = (groups == "body") & keep_v[quads].all(1)
    quads, quads_uv = quads[keep_f], quads_uv[keep_f]
    used = np.unique(quads)
    remap = -np.ones(n, dtype=np.int64)
    remap[used] = np.arange(len(used))
    # quads (a, b, c, d) -> triangles (a, b, c), (a, c, d), with their corners' uvs
    tri = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    tri_uv = np.concatenate([quads_uv[:, [0, 1, 2]], quads_uv[:, [0, 2, 3]]])

    # the hand frame
    def bone_end(bone, end, verts):
        return joint(skel["bones"][bone][end], verts)

    origin = bone_end("wrist.R", "head", v)
    y = bone_end("finger3-1.R", "head", v) - origin
    y /= np.linalg.norm(y)
    x = bone_end("finger2-1.R", "head", v) - bone_end("finger5-1.R", "head", v)
    x -= (x @ y) * y
    x /= np.linalg.norm(x)
    rot = np.stack([x, y, np.cross(x, y)], 1)  # columns: hand axes in MakeHuman coordinates

    def to_hand(p):
        return (p - origin) @ rot * DM_TO_MM

    def ends(verts):
        return np.stack([[bone_end(b, e, verts) for e in ("head", "tail")] for b in BONES])  # (22, 2, 3)

    # plane of the thumb's flexion (MakeHuman's rotation plane of finger1-*: three joints)
    plane = skel["planes"]["finger1-2.R____plane"]
    thumb_plane = np.stack([joint(j, v) for j in plane])

    out = {
        "vertices": to_hand(v[used]).astype(np.float32),
        "faces": remap[tri].astype(np.int32),
        "face_uv": vt[tri_uv].astype(np.float32),
        "weights": (w[used] / w[used].sum(1, keepdims=True)).astype(np.float32),
        "bone_ends": to_hand(ends(v)).astype(np.float32),
        "thumb_plane": to_hand(thumb_plane).astype(np.float32),
        "bone_names": np.array(BONES),
        "target_names": np.array([f"{t}-{s}" for t in TARGETS for s in _sides(t)]),
        "source_vertex": used.astype(np.int32),
    }
    deltas, bone_deltas = [], []
    for name in out["target_names"]:
        d = read_target(src / "targets" / f"{name}.target", n)
        deltas.append((d[used] @ rot * DM_TO_MM).astype(np.float32))
        bone_deltas.append(((ends(v + d) - ends(v)) @ rot * DM_TO_MM).astype(np.float32))
    out["target_vertices"] = np.stack(deltas)
    out["target_bone_ends"] = np.stack(bone_deltas)
    return out


def _sides(t: str) -> tuple[str, str]:
    return ("in", "out") if t.endswith("trans") else ("decr", "incr")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "src", type=Path, help="folder with base.obj, default.mhskel, default_weights.mhw, targets/"
    )
    ap.add_argument("--out", type=Path, default=Path("handpose_lib/assets/mesh_hand"))
    args = ap.parse_args(argv)
    out = extract(args.src)
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out / "mesh_hand.npz", **out)
    print(
        f"{args.out / 'mesh_hand.npz'}: {len(out['vertices'])} vertices, {len(out['faces'])} triangles, "
        f"{len(out['bone_names'])} bones, {len(out['target_names'])} targets"
    )


if __name__ == "__main__":
    main()
