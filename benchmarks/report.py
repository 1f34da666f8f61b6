"""Write ``benchmarks/README.md`` from the committed results (``benchmarks/results/*.json``).

    python benchmarks/report.py        # after python benchmarks/inference.py and train.py

The prose is here; every number comes from the JSON files, so a re-run on another machine
followed by this script gives a consistent README.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

INTRO = """\
# Benchmarks

Speed and accuracy of the ResUnet (`paper`: ResNet-34, `tiny`: the book's CPU model), side by side
with MediaPipe Hands 0.10.21. No timed unit tests: these scripts print the numbers, and the book's
performance appendix (`book/appendix_performance.md`) shows the committed results.

- `python benchmarks/inference.py` (`--quick`: tiny only; `--no-compile`, `--no-mediapipe`):
  batch-1 latency and batched throughput of eager, fast eager (BN folded, channels_last,
  inference mode), bf16, `torch.compile`, ONNX Runtime (default / tuned / 1 thread); GFLOP/s
  next to the matmul roofline of the same run; MediaPipe Hands (its own venv in
  `.cache/mediapipe-venv`, created on first use) full pipeline and landmark model alone; 2D
  accuracy on the 16 real photos.
- `python benchmarks/train.py` (`--quick`): training images/s, peak memory and roofline per
  config and variant (fp32, channels_last, bf16; AMP on CUDA), each in its own process; the
  procedural engine's crops/s by batch size and with DataLoader workers; `fit`'s input pipeline
  and the share of training time spent waiting for data; on a GPU, the on-GPU engine feeding
  `paper` training.
- `python benchmarks/report.py`: this README from `results/*.json`.
- `model_bench.py`, `synthetic_bench.py`: the model's and the engine's own micro-benchmarks.

The fast paths live in `handpose_lib/inference.py` (`prepare_for_inference`, `fuse_conv_bn`, `predict`,
`compile_model`, `export_onnx`, `ort_session`, `ort_predict`); `tests/test_inference.py` checks that each
gives the eager model's outputs.

**Reading the numbers.** `b1_ms` is the median latency at batch 1, `b1_best_ms` the fastest run
(on a shared machine the median is pulled up by other work). `roofline` = achieved GFLOP/s / the
CPU's theoretical float32 FMA peak (cores x clock x SIMD lanes x 2 FLOPs per FMA x 2 FMA units,
`common.fma_peak_gflops`; results from before it was recorded use the best measured peak);
`of_measured` divides by the best of the run's four peak measurements (a 2048^3 float32 matmul and
a large 3x3 oneDNN convolution, at the start and at the end). A ratio above 1 does not mean the
cores beat their peak: oneDNN computes many 3x3 convolutions with Winograd's algorithm, which does
fewer multiplications than the direct formula the FLOP counter counts (or the clock boosted above
the one Linux reports).
"""

NOTES = """\
## What limits the numbers below goal

- **The machine.** The 2026-12-01 tables come from a 2-core AMD EPYC with AVX2 only (no native
  bf16, so no bf16 rows) whose fp32 matmul peak measured 119-171 GFLOP/s on 2 threads across
  that day's runs (a shared host; each table gives its own run's peaks); the 2026-11-25 runs
  had AVX512-BF16 and 222 GFLOP/s. Everything, MediaPipe included, was 2-3x slower on the
  newer runs: compare rows of one run, not across dates or runs.
- **Threads on a shared 2-core machine.** With two intra-op threads, PyTorch and ONNX Runtime
  stall whenever the other core is busy: each parallel region waits for a descheduled thread.
  While other jobs ran (2026-11-25) we measured the same tiny batch-1 forward at about 4 ms with
  one thread and up to 770 ms (median) with two. The tables were taken with no other job of
  ours running (load averages at their heads); the `-1thread` rows show the robust choice for
  a busy machine.
- **Batch-1 latency is overhead.** The tiny model needs 0.27 GFLOP per crop; at batch 1 the time
  goes to dispatching about a hundred small operators. ONNX Runtime's fused graph is the
  fastest backend; `torch.compile` removes most of the overhead too, but needs `no_grad`
  (not `inference_mode`: Dynamo's guard on the skeleton's numpy path matrix fails there).
- **The procedural engine** renders on CPUs in a C++ kernel
  (`handpose_lib/data/synthetic/native_engine.cpp`) that repeats the torch code operation by
  operation, so its output is the same bits (tested); before it (torch code, 2026-11-25) two
  one-thread DataLoader workers gave about 370 crops/s and one compiled thread 254. Batch 1 is
  slow (about 80 crops/s) because of the scene sampler's small torch operations, not the
  renderer. Training never waits for the engine because `fit` renders a pool once
  (`data.rendered.cached_synthetic`) and then reads it: the input pipeline row shows the tiny CPU run
  waiting 2 % of its time for data.
- **MediaPipe is not doing the same job** in the inference tables. Its full pipeline finds the
  hand (palm detector) and then the landmarks; ours is given a crop around the ground-truth box.
  The pipeline tables (`pipeline.json`) compare whole pipelines, photo in, hands out: ours with
  our detector (`models/detector`) and without it, MediaPipe with up to 2 hands; each system's
  hand that best overlaps the annotated one is its answer (MediaPipe's handedness label swapped:
  it assumes mirrored selfie images). The fair latency
  comparison is with its landmark model alone; the crop + model + uncrop row adds our crop.
  Our 2D accuracy on real photos comes from a model trained on procedural hands only.
- **No GPU was lent** for these runs: the CUDA rows (AMP training, the on-GPU engine, the
  5,000 img/s goal) are written and run when `torch.cuda.is_available()`, but were not measured.
"""


def section(name: str, title: str, keys: list[tuple[str, str]]) -> str:
    path = HERE / "results" / name
    if not path.is_file():
        return f"## {title}\n\n*No results yet: run the script.*\n"
    r = json.loads(path.read_text())
    m = r["machine"]
    load0 = ", ".join(f"{x:.2f}" for x in m.get("load_avg_start", []))
    load1 = ", ".join(f"{x:.2f}" for x in m.get("load_avg_end", []))
    lines = [
        f"## {title}",
        "",
        f"`{r['command']}` on {m['date']}: {m['cpu']}, {m['cores']} cores"
        + (f", GPU {m['gpu']}" if "gpu" in m else ", no GPU")
        + f"; torch {m['torch']}"
        + (f", onnxruntime {m['onnxruntime']}" if "onnxruntime" in m else "")
        + f", Python {m['python']}; load average (1, 5, 15 min) {load0} at the start, {load1} at the end"
        + " (the machine was shared with other jobs).",
        "",
    ]
    pk = r.get("peak_gflops", {})
    lines.append(
        f"Measured peaks ({m.get('threads', 2)} thread(s); fp32/bf16: 2048^3 matmul, "
        "conv: 3x3 oneDNN convolution): "
        + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in pk.items() if isinstance(v, (int, float)))
        + ".\n"
    )
    for sub, key in keys:
        t = r["tables"].get(key)
        if t:
            lines += [f"### {sub}", "", t, ""]
    return "\n".join(lines)


def main() -> int:
    text = "\n".join(
        [
            INTRO,
            section(
                "inference.json",
                "Inference",
                [
                    ("Our model", "model"),
                    ("Ours / MediaPipe", "compare"),
                    (
                        "2D accuracy, 16 real photos (PCK@0.2 of the box's max side, misses count wrong)",
                        "accuracy",
                    ),
                    (
                        "The whole pipeline, 16 real photos (found: IoU >= 0.5 with the annotated box)",
                        "pipeline",
                    ),
                    ("Goals", "goals"),
                ],
            ),
            section(
                "pipeline.json",
                "The whole pipeline next to MediaPipe (one thread each; shared machine: rough latencies)",
                [
                    (
                        "Photo in, hands out: 16 real photos (found: IoU >= 0.5 with the annotated box)",
                        "pipeline",
                    ),
                    ("2D accuracy with the annotated box given (ours) and MediaPipe's hand", "accuracy"),
                    ("Goals", "goals"),
                ],
            ),
            section(
                "train.json",
                "Training and data",
                [
                    ("Training step", "train"),
                    ("Procedural engine", "engine"),
                    ("Training input pipeline (tiny on CPU)", "pipeline"),
                    ("On-GPU engine", "gpu"),
                    ("Goals", "goals"),
                ],
            ),
            NOTES,
        ]
    )
    (HERE / "README.md").write_text(text)
    print(f"wrote {HERE / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
