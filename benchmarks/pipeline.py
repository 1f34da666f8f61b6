"""The photo pipeline on the 16 shipped photos: hands found by our detector, its latency, and
the whole pipeline's latency per photo (detect + crop + model + un-crop + camera solve).

    python benchmarks/pipeline.py [--detector models/detector] [--model models/book-tiny]
                                  [--threads 2] [--long-side 320] [--repeats 5]

Hands found: a detection above the score threshold with IoU >= 0.5 with the box of the photo's
annotated keypoints. Latencies are medians over ``--repeats`` runs per photo (the machine may be
shared: compare runs of the same day). The detector alone is also timed on a 640 x 480 frame.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, timeit  # noqa: E402

from handpose_lib.detect import load_detector  # noqa: E402
from handpose_lib.detector_train import evaluate_real_photos, real_photos  # noqa: E402
from handpose_lib.pipeline import load_pipeline  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--detector", default="models/detector")
    ap.add_argument("--model", default="models/book-tiny")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--long-side", type=int, default=320)
    ap.add_argument("--score-thresh", type=float, default=None, help="default: the detector's (sidecar)")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    kw = {} if a.score_thresh is None else {"score_thresh": a.score_thresh}
    det = load_detector(a.detector, long_side=a.long_side, **kw)
    pipe = load_pipeline(a.model, det)
    photos = real_photos()
    found = evaluate_real_photos(det, photos)
    frame = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    det_ms = timeit(lambda: det(frame), repeats=a.repeats * 4) * 1e3
    per_photo = [timeit(lambda p=p: pipe(p["image"]), repeats=a.repeats, warmup=1) * 1e3 for p in photos]
    report = {
        "machine": machine_info(),
        "detector": a.detector,
        "model": a.model,
        "long_side": a.long_side,
        "score_thresh": det.score_thresh,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "hands_found": f"{found['found']} of {found['photos']}",
        "side_correct": f"{found['side_correct']} of {found['side_known_and_found']} found with a known side",
        "detector_ms_640x480": round(det_ms, 2),
        "pipeline_ms_per_photo_median": round(statistics.median(per_photo), 2),
        "per_photo": [
            dict(r, pipeline_ms=round(ms, 2)) for r, ms in zip(found["per_photo"], per_photo, strict=True)
        ],
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
