"""Hand detectors side by side on the same held-out frames of both engines and the 16 photos.

    python benchmarks/detectors.py models/detector runs/detector-v2/model [--n 300] [--out FILE]

For each detector folder: AP at IoU 0.5, recall/precision at the detector's own threshold and
handedness of the matched hands on ``--n`` held-out frames (``HandFrames`` seed 2) made with the
engine's capsule hand, with its mesh hand, and of the engine's own full frames (scene frames:
``FrameConfig(scene_prob=1)``, the mesh hand on its arm with heads, torsos and held things),
and of those with the person's other hand (labelled) in half of them and a share zoomed out
(``people``: the frames detector v7 added), and those with every head the MakeHuman bust (a real
face, neck and shoulders) near the hand's depth, about its size, as in a photograph of a person
(``faces``: ``scene_head_near_prob=1, scene_mesh_head_prob=1``), then hands found on the 16
shipped photos
(``detector_train.evaluate_real_photos``). One thread. Prints one JSON line per detector.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from handpose_lib.checkpoint import CheckpointError  # noqa: E402
from handpose_lib.data.synthetic.frames import FrameConfig  # noqa: E402
from handpose_lib.detect import load_detector  # noqa: E402
from handpose_lib.detector_train import (  # noqa: E402
    TEST_SEED,
    DetectorTrainConfig,
    _frames,
    evaluate_frames,
    evaluate_real_photos,
    hand_renderer,
    summary,
)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("detectors", nargs="+", help="detector folders")
    ap.add_argument("--n", type=int, default=300, help="held-out frames per engine")
    ap.add_argument("--out", type=Path, help="also write the results as JSON here")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    missing = [d for d in a.detectors if not Path(d).is_dir()]
    if missing:
        ap.error(f"no such detector folder: {', '.join(missing)}")
    cfg = DetectorTrainConfig()
    sets = {m: _frames(TEST_SEED, a.n, cfg, hand_renderer(m)) for m in ("capsule", "mesh")}
    scenes = DetectorTrainConfig(frames=FrameConfig(scene_prob=1.0))
    sets["scene"] = _frames(TEST_SEED, a.n, scenes, hand_renderer("mesh"))
    people = FrameConfig(scene_prob=1.0, scene_other_hand_prob=0.5, scene_min_zoom=0.5)
    sets["people"] = _frames(TEST_SEED, a.n, DetectorTrainConfig(frames=people), hand_renderer("mesh"))
    faces = FrameConfig(
        scene_prob=1.0,
        scene_other_hand_prob=0.5,
        scene_min_zoom=0.5,
        scene_head_near_prob=1.0,
        scene_mesh_head_prob=1.0,
    )
    sets["faces"] = _frames(TEST_SEED, a.n, DetectorTrainConfig(frames=faces), hand_renderer("mesh"))
    res = {}
    for d in a.detectors:
        try:
            det = load_detector(d, max_hands=20)
        except (CheckpointError, OSError) as e:
            ap.error(f"{d}: not a detector folder ({e})")
        thresh, det.score_thresh = det.score_thresh, 0.05  # AP over every detection
        r = {f"test_frames_{m}": evaluate_frames(det, f, thresh) for m, f in sets.items()}
        det.score_thresh, det.max_hands = thresh, 8
        r["real_photos"] = evaluate_real_photos(det)
        res[d] = summary(r)
        print(d, json.dumps(res[d]), flush=True)
    if a.out:
        a.out.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
