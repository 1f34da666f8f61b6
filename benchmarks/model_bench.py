"""Model benchmark: parameters, GFLOPs per image, CPU latency and throughput of ResUnet.

For each configuration (``paper``: ResNet-34, ``tiny``: the book's CPU model) prints

- parameters (all, encoder);
- GFLOPs of one forward pass per 128x128 image, counted by ``torch.utils.flop_counter.FlopCounterMode``
  (a multiply-add counts 2 FLOPs; convolutions, matmuls and their backward only);
- batch-1 latency of an eval-mode forward (median);
- batch-32 throughput in images/s of an eval-mode forward, and of a training step
  (forward, ``losses.compute_loss``, backward and an Adam step), best of ``--repeats`` runs
  (the machine may be shared: the best run is the least disturbed one).

Usage::

    python benchmarks/model_bench.py                    # 2 threads, paper and tiny
    python benchmarks/model_bench.py --configs tiny --channels-last --compile
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from handpose_lib import model as hm
from handpose_lib.losses import compute_loss

CONFIGS = {"paper": hm.paper_config, "tiny": hm.tiny_config}


def synthetic_batch(b: int, size: int = 128) -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        "image": torch.rand(b, 3, size, size, generator=g),
        "joints2d": 16 + (size - 32) * torch.rand(b, 21, 2, generator=g),
        "joints3d": 30 * torch.randn(b, 21, 3, generator=g) + torch.tensor([0.0, 0.0, 500.0]),
        "visible": torch.ones(b, 21, dtype=torch.bool),
    }


def gflops_per_image(model: torch.nn.Module, size: int) -> float:
    x = torch.rand(1, 3, size, size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() / 1e9


def timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def bench(name: str, args) -> dict:
    cfg = CONFIGS[name]()
    torch.manual_seed(0)
    model = hm.build_model(cfg)
    size = cfg.input_size
    row = {
        "config": name,
        "params_M": hm.count_parameters(model) / 1e6,
        "encoder_params_M": hm.count_parameters(model.encoder) / 1e6,
        "gflops": gflops_per_image(model.eval(), size),
    }
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    run = model
    if args.compile:
        t = time.perf_counter()
        run = torch.compile(model)
        with torch.no_grad():
            run.eval()(torch.rand(1, 3, size, size).contiguous(memory_format=fmt))
        row["compile_s"] = time.perf_counter() - t

    # batch-1 latency (eval, no grad)
    x1 = torch.rand(1, 3, size, size).contiguous(memory_format=fmt)
    model.eval()
    with torch.no_grad():
        timed(lambda: run(x1), 3)
        row["latency_ms_b1"] = 1e3 * statistics.median(timed(lambda: run(x1), args.latency_runs))

    # batch-32 forward throughput (eval, no grad)
    batch = synthetic_batch(args.batch, size)
    xb = batch["image"].contiguous(memory_format=fmt)
    with torch.no_grad():
        run(xb)
        row["fwd_img_s"] = args.batch / min(timed(lambda: run(xb), args.repeats))

    # batch-32 training step: forward + loss + backward + Adam
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step():
        total, _ = compute_loss(run(xb), batch)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()

    step()  # warm-up (allocations, Adam state)
    row["train_img_s"] = args.batch / min(timed(step, args.repeats))
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=4, help="timed runs of the batch measurements (best)")
    p.add_argument("--latency-runs", type=int, default=20)
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    p.add_argument("--compile", action="store_true", help="torch.compile (inductor) the model first")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
        f"channels_last={args.channels_last}, compile={args.compile}"
    )
    head = (
        f"{'config':8s} {'params':>8s} {'encoder':>8s} {'GFLOPs':>7s} {'b1 ms':>7s} "
        f"{'fwd img/s':>10s} {'train img/s':>12s}"
    )
    print(head)
    for name in args.configs:
        r = bench(name, args)
        line = (
            f"{r['config']:8s} {r['params_M']:7.2f}M {r['encoder_params_M']:7.2f}M {r['gflops']:7.3f} "
            f"{r['latency_ms_b1']:7.1f} {r['fwd_img_s']:10.1f} {r['train_img_s']:12.1f}"
        )
        if "compile_s" in r:
            line += f"   (compile {r['compile_s']:.0f} s)"
        print(line, flush=True)
    print("GFLOPs: FlopCounterMode, one 128x128 forward, multiply-add = 2 FLOPs.")
    print("train = forward + compute_loss + backward + Adam step; img/s: best of --repeats runs.")


if __name__ == "__main__":
    main()
