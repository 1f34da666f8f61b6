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


def _cpu_flags_and_ghz() -> tuple[set[str], float | None]:
    """The CPU's feature flags and its clock in GHz (the highest of: cpufreq's maximum, the
    'cpu MHz' lines, the model name's '@ x.xxGHz'); empty / None where Linux does not say."""
    flags: set[str] = set()
    ghz: list[float] = []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "flags" and not flags:
                    flags = set(value.split())
                elif key == "cpu MHz":
                    ghz.append(float(value) / 1000)
                elif key == "model name" and "GHz" in value:
                    ghz.append(float(value.split("@")[-1].replace("GHz", "").strip() or 0))
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq") as f:
            ghz.append(int(f.read()) / 1e6)
    except (OSError, ValueError):
        pass
    return flags, (max(ghz) if ghz else None)


def fma_peak_gflops(cores: int | None = None, fma_units: int = 2) -> dict:
    """The CPU's theoretical float32 peak: cores x clock x SIMD lanes x 2 FLOPs per FMA x FMA units.

    Lanes from the widest vector extension (AVX-512: 16 floats, AVX2: 8, else SSE: 4); two FMA
    units per core, as on current x86 server cores (pass ``fma_units=1`` for CPUs with one).
    ``cores`` defaults to the logical CPUs the process may use; with SMT two of them share one
    core's FMA units, so the peak is then an upper bound twice too high. A measurement can still
    pass this peak when the clock boosts above the one Linux reports, or when a convolution is
    computed by a fast algorithm (Winograd, FFT) that does fewer multiplications than the direct
    formula ``torch.utils.flop_counter`` counts. Returns the peak and its factors (``gflops`` is
    None where the clock is unknown).
    """
    flags, ghz = _cpu_flags_and_ghz()
    lanes = 16 if "avx512f" in flags else 8 if ("avx2" in flags or "avx" in flags) else 4
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gflops = cores * ghz * lanes * 2 * fma_units if ghz else None
    return {"gflops": gflops, "cores": cores, "ghz": ghz, "lanes": lanes, "fma_units": fma_units}


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
