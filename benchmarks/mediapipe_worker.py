"""Runs INSIDE the separate MediaPipe environment (created by benchmarks/inference.py).

Times MediaPipe Hands 0.10.21 (full pipeline: palm detector + landmark model, static image
mode, so the detector runs on every image, up to ``--max-hands`` hands) and its landmark model
alone (`hand_landmark_full.tflite`, 224x224, through the LiteRT interpreter), and returns every
hand it finds on the given photos: 2D landmarks in pixels, its handedness label and score.
MediaPipe's handedness assumes a mirrored (selfie) image, so on an ordinary photo its "Left" is
a right hand (its documentation: swap the label otherwise); the caller swaps it. Prints one
JSON object on stdout.

Usage: python mediapipe_worker.py --threads 2 --repeats 20 IMAGE...
"""

import argparse
import json
import os
import statistics
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("images", nargs="+")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--max-hands", type=int, default=2)
    args = ap.parse_args()

    import cv2
    import mediapipe as mp
    import numpy as np

    cv2.setNumThreads(args.threads)
    images = []
    for path in args.images:
        bgr = cv2.imread(path)
        if bgr is None:
            print(json.dumps({"error": f"cannot read {path}"}))
            return 1
        images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))

    # --- full pipeline
    found = {}
    times = []
    with mp.solutions.hands.Hands(
        static_image_mode=True, max_num_hands=args.max_hands, model_complexity=1
    ) as hands:
        for path, img in zip(args.images, images):
            res = hands.process(img)
            h, w = img.shape[:2]
            found[path] = [
                {
                    "joints2d": [[p.x * w, p.y * h] for p in lm.landmark],
                    "label": hd.classification[0].label,
                    "label_score": hd.classification[0].score,
                }
                for lm, hd in zip(res.multi_hand_landmarks or [], res.multi_handedness or [])
            ]
        for _ in range(args.repeats):
            for img in images:
                t = time.perf_counter()
                hands.process(img)
                times.append(time.perf_counter() - t)

    # --- landmark model alone
    from ai_edge_litert.interpreter import Interpreter

    model = os.path.join(os.path.dirname(mp.__file__), "modules/hand_landmark/hand_landmark_full.tflite")
    it = Interpreter(model_path=model, num_threads=args.threads)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    x = np.random.default_rng(0).random(tuple(inp["shape"]), dtype=np.float32)
    for _ in range(10):
        it.set_tensor(inp["index"], x)
        it.invoke()
    lt = []
    for _ in range(max(50, args.repeats * 5)):
        t = time.perf_counter()
        it.set_tensor(inp["index"], x)
        it.invoke()
        lt.append(time.perf_counter() - t)

    print(
        json.dumps(
            {
                "mediapipe_version": mp.__version__,
                "threads": args.threads,
                "full_pipeline_ms_median": 1000 * statistics.median(times),
                "full_pipeline_n": len(times),
                "landmark_ms_median": 1000 * statistics.median(lt),
                "landmark_input": [int(v) for v in inp["shape"]],
                "max_hands": args.max_hands,
                "hands": found,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
