"""Crops per second of the procedural hand engine (128 x 128, default config: backgrounds,
objects, noise, blur).

    python benchmarks/synthetic_bench.py [--threads 2] [--batch 256] [--batches 8] [--repeats 3]
                                         [--device cpu|cuda] [--occlusion default] [--profile]
                                         [--compile auto|on|off] [--native auto|on|off] [--check]
                                         [--hand-model capsule|mesh] [--extras off|rich|NAME=P,...]

Prints the best of ``--repeats`` runs (the machine may be shared) and the median, and the best
rate per second of the process's CPU time (on a loaded machine, what a crop costs); each run
renders ``--batches`` batches of ``--batch`` consecutive samples with ``render_batch``.
``--native``: the renderer's C++ kernel for CPU tensors (``handpose_lib.data.synthetic.native``;
built once, 1.5-3 s, cached on disk; ``auto`` uses it when it builds). ``--compile``: the torch
code's ``torch.compile``-d kernels (``handpose_lib.data.synthetic.compiled``; used where the C++
kernel is not; the first batch pays the compile, cached on disk). ``--check`` also renders the
first batch with the eager torch reference code and asserts the outputs are identical bit for bit.
``--hand-model mesh``: engine v2 (the rigged mesh hand, ``mesh_render.py``; its C++ kernel is
``raster_engine.cpp``, switched by ``--native`` too). ``--extras``: engine v2's scene extras
(``SceneExtras``): ``rich`` (``SceneExtras.rich()``) or probabilities such as
``held_prob=0.7,ring_prob=0.25``; ``off`` (the default) is the engine without them.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from handpose_lib.data.synthetic import SceneExtras, SyntheticConfig, SyntheticHands, compiled, native


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--occlusion", default="default")
    ap.add_argument("--full-frame", action="store_true", help="render 640x480 frames instead of crops")
    ap.add_argument("--profile", action="store_true", help="print torch profiler table of one batch")
    ap.add_argument("--compile", default="auto", choices=["auto", "on", "off"], help="compiled kernels")
    ap.add_argument("--native", default="auto", choices=["auto", "on", "off"], help="C++ kernel (CPU)")
    ap.add_argument("--check", action="store_true", help="assert fast path == eager torch on the first batch")
    ap.add_argument("--hand-model", default="capsule", choices=["capsule", "mesh"], help="engine v1 or v2")
    ap.add_argument("--extras", default="off", help="scene extras: off, rich or NAME=P,... (mesh hand)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    compiled.set_compile({"auto": "auto", "on": True, "off": False}[a.compile])
    native.set_native({"auto": "auto", "on": True, "off": False}[a.native])
    t0 = time.perf_counter()
    use_native = native.use_native(torch.device(a.device))  # builds the kernel if needed
    if use_native:
        built = f"built in {native.BUILD_SECONDS:.1f} s" if native.BUILD_SECONDS else "cached build"
        print(f"C++ kernel: loaded and checked in {time.perf_counter() - t0:.1f} s ({built})")
    occ = a.occlusion if a.occlusion in ("none", "light", "default", "heavy") else float(a.occlusion)
    cfg = SyntheticConfig(
        occlusion=occ, full_frame=a.full_frame, hand_model=a.hand_model, extras=SceneExtras.parse(a.extras)
    )
    cfg.check()
    ds = SyntheticHands(10**9, seed=0, config=cfg, device=a.device)

    def sync():
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    first = ds.render_batch(range(a.batch))  # warm-up: background pool, caches, compilation
    sync()
    print(f"first batch (warm-up, compilation): {time.perf_counter() - t0:.1f} s")
    if a.check:
        compiled.set_compile(False)
        native.set_native(False)
        ref = ds.render_batch(range(a.batch))
        compiled.set_compile({"auto": "auto", "on": True, "off": False}[a.compile])
        native.set_native({"auto": "auto", "on": True, "off": False}[a.native])
        bad = [k for k, v in ref.items() if isinstance(v, torch.Tensor) and not torch.equal(v, first[k])]
        assert not bad, f"fast path and eager torch renders differ in {bad}"
        print("check: fast path and eager torch outputs identical")
    if a.profile:
        from torch.profiler import profile

        with profile() as prof:
            ds.render_batch(range(a.batch, 2 * a.batch))
            sync()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    rates, cpu_rates = [], []
    start = a.batch
    for _ in range(a.repeats):
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(a.batches):
            ds.render_batch(range(start, start + a.batch))
            start += a.batch
        sync()
        rates.append(a.batch * a.batches / (time.perf_counter() - t0))
        cpu_rates.append(a.batch * a.batches / (time.process_time() - c0))
    what = "640x480 frames" if a.full_frame else f"{cfg.crop_size}x{cfg.crop_size} crops"
    dev = torch.cuda.get_device_name() if a.device.startswith("cuda") else f"cpu, {a.threads} threads"
    if use_native:
        dev += ", C++ kernel"
    else:
        dev += ", compiled kernels" if compiled.use_compiled(torch.device(a.device), a.batch) else ", eager"
    runs = ", ".join(f"{r:.0f}" for r in rates)
    print(
        f"synthetic hands ({a.hand_model}, extras {a.extras}): {what}/s on {dev}, occlusion={a.occlusion}, "
        f"batch {a.batch}: "
        f"best {max(rates):.0f}, median {statistics.median(rates):.0f} (runs: {runs}); per CPU second "
        f"(this process's CPU time: the cost on a shared machine) best {max(cpu_rates):.0f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
