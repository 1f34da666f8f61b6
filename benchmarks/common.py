"""Shared pieces of the benchmark scripts: machine description, the matmul roofline, timing."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import time

import torch


def machine_info() -> dict:
    """Date, CPU model, core count, torch version and threads, GPU name if any."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "date": _dt.date.today().isoformat(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def timeit(fn, repeats: int = 20, warmup: int = 3, sync=None) -> float:
    """Median wall time of ``fn()`` in seconds (``sync`` is called after each run, e.g. cuda sync)."""
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def matmul_peak_gflops(n: int = 2048, repeats: int = 10, device: str = "cpu", dtype=torch.float32) -> float:
    """Measured roofline: GFLOP/s of an ``n x n @ n x n`` matmul (2 n^3 flops), median of runs."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    t = timeit(lambda: a @ b, repeats=repeats, warmup=2, sync=sync)
    return 2 * n**3 / t / 1e9


def print_table(rows: list[dict], columns: list[str]) -> str:
    """Markdown table of ``rows`` (dicts) restricted to ``columns``; returns and prints it."""

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(fmt(r.get(c)) for c in columns) + " |")
    text = "\n".join(lines)
    print(text)
    return text
