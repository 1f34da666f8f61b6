"""Optional ``torch.compile`` of the renderer's per-ray kernels: the fast torch path.

For CPU tensors the C++ kernel of ``native.py`` is faster still and is used first when it builds
(``HANDPOSE_SYNTH_NATIVE``); these compiled kernels serve CUDA tensors, and CPU ones when the C++
kernel is switched off or unavailable.

The renderer's inner loops (ray-primitive tests, depth keys, shading of the hit pixels) are
chains of 40-100 elementwise torch operations over millions of (ray, primitive) pairs. Run
eagerly, every operation reads and writes its whole tensor; Inductor (``torch.compile``) fuses
each chain into one loop (C++/OpenMP on CPU, Triton on CUDA), about 25 times faster per ray test
on CPU. The eager functions stay the reference: :func:`fast` wraps a function, and the wrapper's
``.reference`` attribute is the plain function, which ``tests/test_synthetic.py`` compares with
the compiled one (same labels bit for bit; images within float tolerance).

Control, in this order:

- :func:`set_compile` (``True``, ``False`` or ``"auto"``) from code;
- the environment variable ``HANDPOSE_SYNTH_COMPILE`` = ``1`` / ``0`` / ``auto`` (the default).

``auto`` compiles when it can work: torch >= 2.4 and a C++ compiler on the PATH for CPU tensors,
Triton for CUDA tensors. Compiling costs some seconds per kernel on the first large batch of a
process (Inductor caches the generated code on disk, so later processes start faster); small
batches (fewer than :data:`MIN_COMPILE_BATCH` images, e.g. ``dataset[i]`` or a notebook showing
a few samples) use the eager code, which gives the same outputs. If compilation fails the wrapper
warns once and uses the eager code from then on.
"""

from __future__ import annotations

import functools
import os
import shutil
import warnings

import torch

MIN_COMPILE_BATCH = 128  # images per render call below which compiling is not worth its start-up

_MODE: bool | str | None = None  # None: read HANDPOSE_SYNTH_COMPILE


def set_compile(mode: bool | str) -> None:
    """Compile the renderer's kernels: ``True`` (always), ``False`` (never, eager reference
    code) or ``"auto"`` (when torch and a compiler allow it, for batches of at least
    ``MIN_COMPILE_BATCH`` images)."""
    global _MODE
    if mode not in (True, False, "auto"):
        raise ValueError(f"set_compile: use True, False or 'auto', got {mode!r}")
    _MODE = mode


def env_switch(name: str) -> bool | str:
    """An on/off/auto environment switch: ``1``/``true``/``yes``/``on`` -> ``True``,
    ``0``/``false``/``no``/``off`` -> ``False``, anything else (or unset) -> ``"auto"``."""
    env = os.environ.get(name, "auto").strip().lower()
    if env in ("1", "true", "yes", "on"):
        return True
    if env in ("0", "false", "no", "off"):
        return False
    return "auto"


def _mode() -> bool | str:
    return _MODE if _MODE is not None else env_switch("HANDPOSE_SYNTH_COMPILE")


@functools.lru_cache(maxsize=4)
def can_compile(device_type: str) -> bool:
    """Whether ``torch.compile`` can generate kernels for this device type here."""
    major, minor = (int(x) for x in torch.__version__.split(".")[:2])
    if (major, minor) < (2, 4) or not hasattr(torch, "compile"):
        return False
    if device_type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return False
        return True
    if device_type == "cpu":
        cxx = os.environ.get("CXX")
        return any(shutil.which(c) for c in ([cxx] if cxx else []) + ["g++", "c++", "clang++"])
    return False


def use_compiled(device: torch.device, batch: int) -> bool:
    """Whether a render call of ``batch`` images on ``device`` uses the compiled kernels."""
    mode = _mode()
    if mode is False:
        return False
    if mode == "auto" and batch < MIN_COMPILE_BATCH:
        return False
    return can_compile(torch.device(device).type)


def fast(fn):
    """Wrap ``fn`` (tensor function without data-dependent Python control flow) so that
    ``wrapper(*args, compiled=True)`` runs ``torch.compile(fn, dynamic=True)`` and
    ``compiled=False`` runs ``fn`` itself (also available as ``wrapper.reference``)."""
    state = {"fn": None, "failed": False}

    @functools.wraps(fn)
    def wrapper(*args, compiled: bool = False):
        if compiled and not state["failed"]:
            if state["fn"] is None:
                state["fn"] = torch.compile(fn, dynamic=True)
            try:
                return state["fn"](*args)
            except Exception as e:  # no working compiler, unsupported torch...: run eagerly
                state["failed"] = True
                warnings.warn(
                    f"torch.compile of the renderer kernel {fn.__name__} failed "
                    f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); using the "
                    "eager code (same outputs, slower). Set HANDPOSE_SYNTH_COMPILE=0 to skip the attempt.",
                    stacklevel=2,
                )
        return fn(*args)

    wrapper.reference = fn
    return wrapper
