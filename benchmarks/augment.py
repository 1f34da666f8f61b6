"""Milliseconds per 128x128 training crop of the augmentation and each of its optional stages
(the camera effects, FDA, the detector-like re-crop), on cached procedural crops.

    python benchmarks/augment.py [--n 200] [--repeats 3] [--threads 1]

Each row runs the stage over the same ``--n`` crops (seed 0 of the engine, 128x128, rendered
once into the cache) with one numpy ``Generator`` per crop, ``--repeats`` times, and prints the
best and the median mean ms per crop (the machine may be shared: the best is the cost, the
median says how loaded it was). One thread, as in a DataLoader worker.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="crops per run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    import cv2

    cv2.setNumThreads(a.threads)
    from handpose_lib.data.augment import Augment
    from handpose_lib.data.camera_effects import CameraEffects
    from handpose_lib.data.crop import HandCrop
    from handpose_lib.data.fda import FDA, amplitude_pool
    from handpose_lib.data.rendered import cached_synthetic
    from handpose_lib.data.synthetic import SyntheticConfig

    data = cached_synthetic(a.n, 0, SyntheticConfig(crop_size=128), progress=False)
    samples = [data[i] for i in range(a.n)]
    amplitude_pool(128, 128)  # built once per process (about a second), not per crop
    recrop = HandCrop(size=128, margin=0.2, jitter=0.08, scale_range=(0.9, 1.1))
    stages = {
        "augment (rotation, scale, colour)": Augment(rotation_deg=20, scale_range=(0.95, 1.05)),
        "camera effects (CameraEffects())": CameraEffects(),
        "FDA (prob 1)": FDA(prob=1.0),
        "re-crop (HandCrop margin 0.2, jitter 0.08, scale 0.9-1.1)": lambda s, r: Augment(
            rotation_deg=0, brightness=0, contrast=0, saturation=0, hue=0, recrop=recrop
        )(s, r),
        "augment + re-crop + FDA (0.5) + camera": Augment(
            rotation_deg=20, scale_range=(0.95, 1.05), recrop=recrop, fda=FDA(), camera=CameraEffects()
        ),
    }
    print(f"ms per 128x128 crop, {a.n} crops, {a.threads} thread(s), best / median of {a.repeats}")
    for name, stage in stages.items():
        runs = []
        for _ in range(a.repeats):
            t = time.perf_counter()
            for i, s in enumerate(samples):
                stage(s, np.random.default_rng(i))
            runs.append(1000.0 * (time.perf_counter() - t) / a.n)
        print(f"  {name:60s} {min(runs):7.3f} {statistics.median(runs):7.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
