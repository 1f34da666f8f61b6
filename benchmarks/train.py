"""Training benchmark: images/s, peak memory and roofline of a training step, next to the
throughput of the data that feeds it.

    python benchmarks/train.py               # full run (tiny and paper, several minutes on 2 cores)
    python benchmarks/train.py --quick       # tiny only, fewer steps (< 2 minutes)

1. The roofline: the CPU's theoretical float32 FMA peak (``common.fma_peak_gflops``; on a GPU
   the matmul below), and GFLOP/s of a 2048^3 matmul (float32, and bfloat16 where native),
   which ``of_measured`` divides by.
2. Training steps (forward, ``losses.compute_loss``, backward, AdamW: the step of
   ``handpose_lib.train.fit``) per config and variant, each in its own process so its peak
   memory is its own: ``fp32`` (NCHW, the baseline), ``fp32-cl`` (channels_last),
   ``bf16-cl`` (bf16 autocast + channels_last, CPUs with native bf16); on CUDA ``fp32`` and
   ``amp-cl`` (bf16 autocast, fp16 + GradScaler where bf16 is missing). FLOPs per image are
   counted with ``torch.utils.flop_counter`` over forward + loss + backward.
3. The procedural engine (``SyntheticHands.render_batch``): crops/s against the batch size
   (renderer batching), and with DataLoader workers as ``data.rendered.cached_synthetic`` renders;
   on the GPU where there is one.
4. The training input pipeline of ``fit`` (cached procedural set, ``TrainView`` augmentation,
   ``data.sample.collate``) with 0, 1, 2 workers: samples/s alone, and the share of a training
   run's wall time spent waiting for the next batch (data must never be the bottleneck).

Results: ``benchmarks/results/train.json`` (``--quick``: ``.cache/benchmarks/train-quick.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import fma_peak_gflops, machine_info, matmul_peak_gflops, print_table  # noqa: E402

from handpose_lib import model as hm  # noqa: E402
from handpose_lib.config import default_loss_fn, make_augment, make_optimizer, tiny_recipe  # noqa: E402
from handpose_lib.data.augment import TrainView  # noqa: E402
from handpose_lib.data.rendered import TEST_ENGINE, cached_synthetic  # noqa: E402
from handpose_lib.data.sample import collate  # noqa: E402
from handpose_lib.device import autocast_dtype, cpu_bf16_supported  # noqa: E402

CONFIGS = {"paper": hm.paper_config, "tiny": hm.tiny_config}


def _sync(device: str):
    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


# ----------------------------------------------------------------------------------------
# one training measurement (runs in a child process: --worker)


def labelled_batch(b: int, size: int, device: str) -> dict:
    """A batch of ``b`` procedural samples (real labels, so the loss is the real loss)."""
    from handpose_lib.data.synthetic import SyntheticConfig, SyntheticHands

    ds = SyntheticHands(b, seed=5, config=SyntheticConfig(crop_size=size))
    batch = ds.render_batch(range(b))
    return {k: batch[k].to(device) for k in ("image", "joints2d", "joints3d")}


def train_worker(spec: dict) -> dict:
    """Time ``spec["steps"]`` training steps; returns img/s, FLOPs, peak memory."""

    torch.set_num_threads(spec["threads"])
    device, variant, b = spec["device"], spec["variant"], spec["batch"]
    torch.manual_seed(0)
    cfg = tiny_recipe(model=spec["config"])
    model = hm.build_model(CONFIGS[spec["config"]]()).to(device).train()
    size = model.config.input_size
    channels_last = variant.endswith("-cl")
    amp_dtype = None
    if variant.startswith("bf16"):
        amp_dtype = torch.bfloat16
    elif variant.startswith("amp"):
        amp_dtype = autocast_dtype("auto", torch.device(device))
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, cfg)
    loss_fn = default_loss_fn(cfg)
    scaler = torch.amp.GradScaler(device, enabled=amp_dtype == torch.float16)
    batch = labelled_batch(b, size, device)
    if channels_last:
        batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)

    def step():
        with torch.autocast(device, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            out = model(batch["image"])
            loss, _ = loss_fn(out, batch)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    gflop_img = counter.get_total_flops() / 1e9 / b
    sync = _sync(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(spec["warmup"]):
        step()
    sync()
    ts = []
    for _ in range(spec["steps"]):
        t = time.perf_counter()
        step()
        sync()
        ts.append(time.perf_counter() - t)
    med = statistics.median(ts)
    res = {
        "gflop_per_img": gflop_img,
        "img_s": b / med,
        "img_s_best": b / min(ts),
        "gflop_s": gflop_img * b / med,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if device == "cuda":
        res["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return res


def run_train(spec: dict, timeout: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", json.dumps(spec)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if r.returncode != 0 or not lines:
        return {"error": (r.stderr.strip().splitlines() or ["?"])[-1][:200]}
    return json.loads(lines[-1])


# ----------------------------------------------------------------------------------------
# the data engine and the input pipeline


def engine_rates(
    device: str, batches: list[int], threads: int, repeats: int, engine: dict | None = None
) -> list[dict]:
    """Crops/s of ``render_batch`` in this process for each batch size (renderer batching);
    ``engine``: ``SyntheticConfig`` fields (default: the capsule hand of engine v1)."""
    from handpose_lib.data.synthetic import SyntheticConfig, SyntheticHands

    torch.set_num_threads(threads)
    engine = engine or {}
    ds = SyntheticHands(10**9, seed=0, config=SyntheticConfig(**engine), device=device)
    sync = _sync(device)
    rows = []
    start = 0
    for b in batches:
        ds.render_batch(range(start, start + b))  # warm-up (also first-use caches)
        start += b
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            ds.render_batch(range(start, start + b))
            sync()
            ts.append(time.perf_counter() - t)
            start += b
        rows.append(
            {
                "engine": f"render_batch, {_hand(engine)}, {device}, {threads} threads",
                "batch": b,
                "crops_s": b / statistics.median(ts),
                "crops_s_best": b / min(ts),
            }
        )
        print(f"  engine {_hand(engine)} {device} batch {b}: {rows[-1]['crops_s']:.0f} crops/s", flush=True)
    return rows


def _hand(engine: dict | None) -> str:
    return f"{(engine or {}).get('hand_model', 'capsule')} hand"


class _Chunks(torch.utils.data.Dataset):
    """Chunk k = samples [k*chunk, (k+1)*chunk) rendered in one ``render_batch`` call."""

    def __init__(self, ds, chunk: int, n_chunks: int):
        self.ds, self.chunk, self.n = ds, chunk, n_chunks

    def __len__(self):
        return self.n

    def __getitem__(self, k):
        return self.ds.render_batch(range(k * self.chunk, (k + 1) * self.chunk))["image"].shape[0]


def _one_thread(_):
    torch.set_num_threads(1)


def engine_workers(workers: int, chunk: int, n_chunks: int, engine: dict | None = None) -> dict:
    """Crops/s with ``workers`` DataLoader processes of one thread each rendering chunks."""
    from torch.utils.data import DataLoader

    from handpose_lib.data.synthetic import SyntheticConfig, SyntheticHands

    hands = SyntheticHands(10**9, seed=0, config=SyntheticConfig(**(engine or {})))
    ds = _Chunks(hands, chunk, n_chunks + workers)
    loader = DataLoader(
        ds, batch_size=None, num_workers=workers, worker_init_fn=_one_thread, prefetch_factor=2
    )
    it = iter(loader)
    for _ in range(workers):  # worker start-up and first chunk excluded
        next(it)
    t = time.perf_counter()
    n = sum(next(it) for _ in range(n_chunks))
    dt = time.perf_counter() - t
    return {
        "engine": f"DataLoader, {_hand(engine)}, {workers} workers x 1 thread, chunks of {chunk}",
        "batch": chunk,
        "crops_s": n / dt,
    }


def input_pipeline(n: int, batch: int, workers_list: list[int], steps: int, threads: int) -> list[dict]:
    """``fit``'s input pipeline alone and in a tiny training run: samples/s and data wait."""
    from torch.utils.data import DataLoader

    torch.set_num_threads(threads)
    cfg = tiny_recipe()
    data = cached_synthetic(n, seed=7, progress=False)
    view = TrainView(data, make_augment(cfg), seed=0)
    rows = []
    for w in workers_list:
        kw = dict(batch_size=batch, shuffle=True, collate_fn=collate, drop_last=True, num_workers=w)
        if w:
            kw.update(persistent_workers=True, prefetch_factor=4)
        loader = DataLoader(view, **kw)
        # loader alone
        it = iter(loader)
        next(it)
        t = time.perf_counter()
        k = 0
        for _ in range(min(steps, len(loader) - 1)):
            next(it)
            k += 1
        alone = k * batch / (time.perf_counter() - t)
        del it
        # in a training run of the tiny model (fit's step, channels_last, fp32 on CPU)
        torch.manual_seed(0)
        model = hm.build_model(hm.tiny_config()).train().to(memory_format=torch.channels_last)
        opt = make_optimizer(model, cfg)
        loss_fn = default_loss_fn(cfg)
        wait = compute = 0.0
        done = 0
        it = iter(loader)
        next(it)
        while done < steps:
            t0 = time.perf_counter()
            try:
                b = next(it)
            except StopIteration:
                it = iter(loader)
                b = next(it)
            t1 = time.perf_counter()
            x = b["image"].contiguous(memory_format=torch.channels_last)
            loss, _ = loss_fn(model(x), b)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            t2 = time.perf_counter()
            wait += t1 - t0
            compute += t2 - t1
            done += 1
        rows.append(
            {
                "pipeline": f"cached set + TrainView augment + collate, {w} workers",
                "samples_s_alone": alone,
                "train_img_s": done * batch / (wait + compute),
                "data_wait_pct": 100 * wait / (wait + compute),
            }
        )
        print(
            f"  input pipeline {w} workers: {alone:.0f} samples/s alone, "
            f"{rows[-1]['data_wait_pct']:.0f}% of training time waiting",
            flush=True,
        )
    return rows


def gpu_engine_vs_training(batch: int, steps: int) -> dict:
    """On CUDA: render each batch on the GPU, then train the paper model on it (AMP,
    channels_last); the share of time spent rendering is the data cost of on-GPU generation."""
    from handpose_lib.data.synthetic import SyntheticHands

    dev = "cuda"
    ds = SyntheticHands(10**9, seed=0, device=dev)
    cfg = tiny_recipe(model="paper")
    model = hm.build_model(hm.paper_config()).to(dev).train().to(memory_format=torch.channels_last)
    opt = make_optimizer(model, cfg)
    loss_fn = default_loss_fn(cfg)
    amp = autocast_dtype("auto", torch.device(dev))
    scaler = torch.amp.GradScaler(dev, enabled=amp == torch.float16)
    render_t = train_t = 0.0
    for s in range(steps + 2):
        t0 = time.perf_counter()
        b = ds.render_batch(range(s * batch, (s + 1) * batch))
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        with torch.autocast(dev, dtype=amp):
            out = model(b["image"].contiguous(memory_format=torch.channels_last))
            loss, _ = loss_fn(out, b)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        if s >= 2:
            render_t += t1 - t0
            train_t += t2 - t1
    return {
        "batch": batch,
        "render_crops_s": steps * batch / render_t,
        "train_img_s": steps * batch / train_t,
        "render_share_pct": 100 * render_t / (render_t + train_t),
        "util_note": "render and train alternate on one stream; render_share is the GPU time not training",
    }


# ----------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny only, fewer steps (< 2 minutes)")
    ap.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32, help="CPU training batch (default 32)")
    ap.add_argument("--gpu-batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=None, help="timed steps per measurement")
    ap.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when present")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(train_worker(json.loads(args.worker))))
        return 0

    torch.set_num_threads(args.threads)
    configs = args.configs or (["tiny"] if args.quick else ["tiny", "paper"])
    steps = args.steps or (4 if args.quick else 10)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    out = args.out or (
        REPO / ".cache" / "benchmarks" / "train-quick.json"
        if args.quick
        else REPO / "benchmarks" / "results" / "train.json"
    )
    info = machine_info()
    info.update(load_avg_start=os.getloadavg(), cpu_bf16=cpu_bf16_supported())
    print(f"# training benchmark {info}", flush=True)
    peak = {"fp32": matmul_peak_gflops(), "fma_fp32": fma_peak_gflops(args.threads)}
    if info["cpu_bf16"]:
        peak["bf16"] = matmul_peak_gflops(dtype=torch.bfloat16)
    print(f"matmul peak: {peak}", flush=True)

    # --- training steps
    rows = []
    for device in devices:
        if device == "cuda" and not torch.cuda.is_available():
            print("cuda: no GPU here, CUDA rows skipped", flush=True)
            continue
        dpeak = peak
        if device == "cuda":
            dpeak = {
                "fp32": matmul_peak_gflops(4096, device="cuda"),
                "bf16": matmul_peak_gflops(4096, device="cuda", dtype=torch.bfloat16),
            }
            peak["cuda"] = dict(dpeak)
        variants = ["fp32", "fp32-cl"] + (["bf16-cl"] if device == "cpu" and info["cpu_bf16"] else [])
        if device == "cuda":
            variants = ["fp32", "amp-cl"]
        for name in configs:
            b = args.batch if device == "cpu" else args.gpu_batch
            if device == "cpu" and name == "paper" and args.quick:
                b = min(b, 8)
            for v in variants:
                spec = {
                    "config": name,
                    "device": device,
                    "variant": v,
                    "batch": b,
                    "steps": steps,
                    "warmup": 2,
                    "threads": args.threads,
                }
                r = {"config": name, "device": device, "variant": v, "batch": b, **run_train(spec, 900)}
                if "gflop_s" in r:
                    pk = (
                        dpeak["bf16"]
                        if v.startswith(("bf16", "amp")) and dpeak.get("bf16")
                        else dpeak["fp32"]
                    )
                    # CPU: the theoretical FMA peak (stable; common.fma_peak_gflops); GPU: the matmul
                    theory = (peak.get("fma_fp32") or {}).get("gflops") if device == "cpu" else None
                    r["roofline"] = r["gflop_s"] / (theory or dpeak["fp32"])
                    r["of_measured"] = r["gflop_s"] / pk
                    print(
                        f"  train {name} {device} {v}: {r['img_s']:.1f} img/s, {r['gflop_s']:.1f} GFLOP/s, "
                        f"peak RSS {r['peak_rss_mb']:.0f} MB",
                        flush=True,
                    )
                else:
                    print(f"  train {name} {device} {v}: {r.get('error')}", flush=True)
                rows.append(r)

    # --- the engine
    # one thread per renderer: a descheduled second intra-op thread stalls the many small ops
    eng = engine_rates("cpu", [16, 64] if args.quick else [1, 16, 64, 256], 1, 2 if args.quick else 3)
    if not args.quick and args.threads > 1:
        eng += engine_rates("cpu", [64], args.threads, 2)
    eng.append(engine_workers(args.threads, 32 if args.quick else 64, 4 if args.quick else 8))
    print(f"  engine with workers: {eng[-1]['crops_s']:.0f} crops/s", flush=True)
    # engine v2 as the test set and book model v4 draw it: the mesh hand, both sides
    eng += engine_rates("cpu", [64], 1, 2 if args.quick else 3, TEST_ENGINE)
    eng.append(engine_workers(args.threads, 32 if args.quick else 64, 4 if args.quick else 8, TEST_ENGINE))
    print(f"  engine v2 (mesh hand) with workers: {eng[-1]['crops_s']:.0f} crops/s", flush=True)
    gpu = None
    if torch.cuda.is_available() and "cuda" in devices:
        eng += engine_rates("cuda", [256, 1024, 4096], args.threads, 3)
        try:
            gpu = gpu_engine_vs_training(args.gpu_batch, 10)
        except Exception as e:  # reported, not fatal
            gpu = {"error": f"{type(e).__name__}: {e}"}
    pipe = input_pipeline(
        512 if args.quick else 1024,
        args.batch,
        [0, 1, 2] if not args.quick else [0, 2],
        8 if args.quick else 20,
        args.threads,
    )

    print(
        f"\n## Training step (threads={args.threads}; fp32 matmul peak {peak['fp32']:.0f} GFLOP/s"
        + (f", bf16 {peak['bf16']:.0f}" if peak.get("bf16") else "")
        + ")\n"
    )
    cols = [
        "config",
        "device",
        "variant",
        "batch",
        "img_s",
        "img_s_best",
        "gflop_per_img",
        "gflop_s",
        "roofline",
        "of_measured",
        "peak_rss_mb",
    ]
    if any("peak_gpu_mb" in r for r in rows):
        cols.append("peak_gpu_mb")
    if any("error" in r for r in rows):
        cols.append("error")
    t_train = print_table(rows, cols)
    print("\n## Procedural engine (128x128 crops, default occluders)\n")
    t_engine = print_table(eng, ["engine", "batch", "crops_s", "crops_s_best"])
    print("\n## Training input pipeline (fit's DataLoader) and the time a tiny CPU run waits for data\n")
    t_pipe = print_table(pipe, ["pipeline", "samples_s_alone", "train_img_s", "data_wait_pct"])
    t_gpu = ""
    if gpu:
        print("\n## On-GPU engine feeding paper training\n")
        t_gpu = print_table([gpu], list(gpu))

    goals = []
    for hand in ("capsule hand", "mesh hand"):
        cpu_eng = max(
            (
                r["crops_s"]
                for r in eng
                if hand in r["engine"] and ("cpu" in r["engine"] or "DataLoader" in r["engine"])
            ),
            default=0,
        )
        goals.append(
            {
                "goal": f"procedural engine ({hand}) >= 1000 crops/s on 2 CPU cores",
                "measured": f"{cpu_eng:.0f} crops/s",
                "met": cpu_eng >= 1000,
            }
        )
    paper_gpu = [r for r in rows if r["config"] == "paper" and r["device"] == "cuda" and "img_s" in r]
    goals.append(
        {
            "goal": "paper training on one H100-class GPU with AMP >= 5000 img/s, engine keeping up",
            "measured": (
                f"{max(r['img_s'] for r in paper_gpu):.0f} img/s" if paper_gpu else "not measured (no GPU)"
            ),
            "met": (max(r["img_s"] for r in paper_gpu) >= 5000) if paper_gpu else None,
        }
    )
    best_wait = min((r["data_wait_pct"] for r in pipe), default=None)
    if best_wait is not None:
        goals.append(
            {
                "goal": "data never the bottleneck (CPU tiny run, best worker count)",
                "measured": f"{best_wait:.0f}% of step time waiting for data",
                "met": best_wait < 5,
            }
        )
    print("\n## Goals\n")
    t_goals = print_table(goals, ["goal", "measured", "met"])

    info["load_avg_end"] = os.getloadavg()
    result = {
        "machine": info,
        "command": "python benchmarks/train.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "peak_gflops": peak,
        "train": rows,
        "engine": eng,
        "input_pipeline": pipe,
        "gpu_engine_vs_training": gpu,
        "goals": goals,
        "tables": {"train": t_train, "engine": t_engine, "pipeline": t_pipe, "gpu": t_gpu, "goals": t_goals},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
