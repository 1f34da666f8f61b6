"""Optional C++ kernel for CPU rendering: the fastest path (``native_engine.cpp``).

For CPU tensors, :func:`render.render` hands the per-pixel work (rays, the per-tile culling
test, depth pass, shading, background, composition, blur and noise) to a small C++ library that
renders one image at a time with its buffers in the CPU cache (about 7 times the speed of the
``torch.compile``-d torch code on one core; a batch is shared among ``torch.get_num_threads()``
threads). Scene sampling, the culling bounds, joint visibility and JPEG stay in torch/OpenCV.
The library is plain C++ (no torch headers), compiled once with the system's C++ compiler into
a cache folder and called through ``ctypes``; the torch code in ``render.py`` stays the reference
(and the CUDA path). The C++ code repeats the reference operation by operation in float32 and in
the same order, so it gives the same bits (``tests/test_synthetic.py`` compares the two).

Control, in this order:

- :func:`set_native` (``True``, ``False`` or ``"auto"``) from code;
- the environment variable ``HANDPOSE_SYNTH_NATIVE`` = ``1`` / ``0`` / ``auto`` (the default).

``auto`` uses the kernel for CPU tensors when it builds and passes its load-time check (its rays
and culling equal ``tiles.pixel_rays`` and ``tiles.cull``). Build: 1.5-3 s with g++ 12 here,
once per source version, compiler and flags, cached in ``data.cached.cache_dir("native")``
(``$HANDPOSE_CACHE/native``, default ``~/.cache/handpose/native``). Without a compiler, or when
the build or the check fails, it warns once and the torch code runs instead (same outputs, slower).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import torch

from ..cached import cache_dir
from . import camera
from .backgrounds import background_pool, noise_texture
from .compiled import env_switch
from .scene import SyntheticConfig, sample_scene, scene_of
from .tiles import cull, cull_bounds, pixel_rays

SOURCE = Path(__file__).with_name("native_engine.cpp")
# -ffp-contract=off: no fused multiply-adds the reference does not have; -fno-math-errno and
# -fno-trapping-math let the compiler vectorise branches and square roots (they change no value:
# no errno, no floating-point exception flags, which nothing here reads)
FLAGS = ["-O3", "-std=c++17", "-shared", "-fPIC", "-pthread", "-ffp-contract=off", "-fno-fast-math"]
FLAGS += ["-fno-math-errno", "-fno-trapping-math"]


def _flags() -> list[str]:
    """Compiler flags: FLAGS plus 8-wide vector instructions where torch found them (AVX2)."""
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    cap = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else "DEFAULT"
    return FLAGS + (["-mavx2", "-mfma"] if x86 and cap in ("AVX2", "AVX512") else [])


_MODE: bool | str | None = None  # None: read HANDPOSE_SYNTH_NATIVE
BUILD_SECONDS: float | None = None  # time the last build took in this process (None: cached)


def set_native(mode: bool | str) -> None:
    """Use the C++ kernel for CPU renders: ``True``, ``False`` (torch code) or ``"auto"``."""
    global _MODE
    if mode not in (True, False, "auto"):
        raise ValueError(f"set_native: use True, False or 'auto', got {mode!r}")
    _MODE = mode


def _mode() -> bool | str:
    return _MODE if _MODE is not None else env_switch("HANDPOSE_SYNTH_NATIVE")


def _compiler() -> str | None:
    cxx = os.environ.get("CXX")
    for c in ([cxx] if cxx else []) + ["g++", "c++", "clang++"]:
        if c and shutil.which(c):
            return c
    return None


def build_library(source: Path, stem: str) -> Path:
    """Compile the C++ file ``source`` (or find it compiled) into ``$HANDPOSE_CACHE/native``: the
    path of the shared library ``{stem}_{hash}.so``, the hash over the source, the flags, the
    compiler's version and the machine (engine v2's rasterizer is built by the same function)."""
    global BUILD_SECONDS
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler (g++, c++, clang++ or $CXX) on the PATH")
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True).stdout
    h = hashlib.sha256()
    flags = _flags()
    for part in (source.read_bytes(), " ".join(flags), version, platform.machine()):
        h.update(part if isinstance(part, bytes) else part.encode())
    lib = cache_dir("native") / f"{stem}_{h.hexdigest()[:16]}.so"
    if lib.exists():
        return lib
    lib.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    # build next to the target and rename: concurrent processes (DataLoader workers) never see
    # a half-written library
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=lib.parent)
    os.close(fd)
    try:
        res = subprocess.run([cxx, *flags, str(source), "-o", tmp], capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"{cxx} failed: {res.stderr.strip()[-2000:]}")
        os.replace(tmp, lib)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    BUILD_SECONDS = time.perf_counter() - t0
    return lib


def _ptr(x: torch.Tensor | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(0 if x is None else x.data_ptr())


@functools.lru_cache(maxsize=1)
def _library() -> ctypes.CDLL | None:
    """The loaded and checked library, or None (with a warning) when it cannot be used."""
    try:
        lib = ctypes.CDLL(str(build_library(SOURCE, "native_engine")))
        P, I = ctypes.c_void_p, ctypes.c_int
        signatures = {
            "hp_rays": [I, I, I, P, P],
            "hp_cull": [I, I, I, I, P, P],
            "hp_render": [I, I, I, I, P, P, P, P, P, P, P, P, I, P, I, P, P, P, P, I],
            "hp_blur": [I, I, I, P, P, P, I],
            "hp_noise": [I, I, I, P, P, I, P, P, I],
        }
        for name, args in signatures.items():
            getattr(lib, name).argtypes = args
            getattr(lib, name).restype = None
        _check(lib)
        return lib
    except Exception as e:  # no compiler, failed build, different rounding: use the torch code
        warnings.warn(
            f"the renderer's C++ kernel is not available ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); using the torch code (same outputs, "
            "slower). Set HANDPOSE_SYNTH_NATIVE=0 to skip the attempt.",
            stacklevel=3,
        )
        return None


def _check(lib: ctypes.CDLL) -> None:
    """The kernel computes the pixel rays and the culling itself; both must equal the torch
    code's bits (``tiles.pixel_rays``, ``tiles.cull``: torch's ``norm`` rounds with fused
    multiply-adds where the CPU has them)."""
    cfg = SyntheticConfig(occlusion="heavy")
    for n, full in ((16, False), (2, True)):
        p = sample_scene(0, torch.arange(n), cfg)
        scene, _ = scene_of(p)
        if full:
            K, H, W = p["K_full"], camera.FRAME_H, camera.FRAME_W
        else:
            K, H, W = camera.crop_intrinsics(p["K_full"], p["box"], 64), 64, 64
        ref = pixel_rays(K, H, W)
        out = torch.empty_like(ref)
        Kinv = torch.linalg.inv(K).contiguous()
        lib.hp_rays(K.shape[0], H, W, _ptr(Kinv), _ptr(out))
        if not torch.equal(out, ref):
            raise RuntimeError("the kernel's pixel rays differ from tiles.pixel_rays in rounding")
        bounds = pack_bounds(scene, K)
        B, P = bounds.shape[:2]
        keep = torch.empty(B, P, (H // 8) * (W // 8), dtype=torch.bool)
        lib.hp_cull(B, P, H, W, _ptr(bounds), _ptr(keep))
        if not torch.equal(keep.nonzero(), cull(scene, K, H, W)):
            raise RuntimeError("the kernel's culling differs from tiles.cull in rounding")


def use_native(device: torch.device) -> bool:
    """Whether a render call on ``device`` uses the C++ kernel."""
    if _mode() is False or torch.device(device).type != "cpu":
        return False
    return _library() is not None


def available() -> bool:
    """Whether the C++ kernel builds, loads and passes its check here."""
    return _library() is not None


# ---------------------------------------------------------------------------------------------
# packing the scene for the kernel (layouts documented at the top of native_engine.cpp)


def _rows(parts: list[torch.Tensor], width: int) -> torch.Tensor:
    """Concatenate (B, S, k_i) parts along the last dim and zero-pad to (B, S, width)."""
    x = torch.cat([p.float() for p in parts], -1)
    return torch.nn.functional.pad(x, (0, width - x.shape[-1]))


def pack_scene(scene: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(prim (B, P, 16), objapp (B, 6, 8), app (B, 32))`` float32 tables of a scene dict."""
    ob, ap = scene["objects"], scene["appearance"]
    B = scene["cone_a"].shape[0]

    def col(x):  # (B, S) -> (B, S, 1)
        return x[..., None]

    cones = _rows([scene["cone_a"], scene["cone_b"], col(scene["cone_ra"]), col(scene["cone_rb"])], 16)
    spheres = _rows([ob["sph_c"], col(ob["sph_r"])], 16)
    boxes = _rows([ob["box_c"], ob["box_rot"].flatten(-2), ob["box_half"]], 16)
    cyls = _rows([ob["cyl_a"], ob["cyl_b"], col(ob["cyl_r"])], 16)
    prim = torch.cat([cones, spheres, boxes, cyls], 1).contiguous()
    objapp = _rows([ob["color"], col(ob["tex"]), col(ob["tex_scale"]), ob["tex_axis"]], 8).contiguous()
    app = _rows(
        [
            ap["skin"],
            col(ap["skin_texture"]),
            ap["light_dir"],
            ap["light_color"],
            col(ap["ambient"]),
            col(ap["light_power"]),
            col(ap["wrap"]),
            col(ap["specular"]),
            ap["bg_u"],
            col(ap["bg_prob"]),
            ap["bg_gain"],
            ap["bg_plain"],
        ],
        32,
    ).contiguous()
    assert app.shape == (B, 32)
    return prim, objapp, app


def pack_bounds(scene: dict, K: torch.Tensor) -> torch.Tensor:
    """(B, P, 8) float32 culling table from :func:`tiles.cull_bounds`: ua(2) e(2) ee reach mode
    (0: inactive slot, 1: test the tiles, 2: the bound does not hold, keep every tile)."""
    ua, e, ee, reach, ok, active = cull_bounds(scene, K)
    mode = torch.where(active, torch.where(ok, 1.0, 2.0), 0.0)
    return _rows([ua, e, ee[..., None], reach[..., None], mode[..., None]], 8).contiguous()


def render_images(
    scene: dict, K: torch.Tensor, H: int, W: int, rays: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The kernel's ``render.render`` before postprocessing: ``(image (B, 3, H, W), mask (B, H, W)
    bool, depth (B, H, W), occlusion_fraction (B,))``. ``rays`` (B, HW, 3): torch's pixel rays,
    if the kernel should not compute them (cameras with skew)."""
    lib = _library()
    B, C = scene["cone_ra"].shape
    prim, objapp, app = pack_scene(scene)
    tex_off = scene["appearance"]["tex_offset"].to(torch.int64).contiguous()
    Kinv = torch.linalg.inv(K).float().contiguous()
    skin = noise_texture()[1].contiguous()
    pool = background_pool(H, W)
    bounds = pack_bounds(scene, K)
    image = torch.empty(B, 3, H, W)
    mask = torch.empty(B, H, W, dtype=torch.bool)
    depth = torch.empty(B, H, W)
    frac = torch.empty(B)
    rays = None if rays is None else rays.contiguous()
    lib.hp_render(
        B, H, W, C, _ptr(Kinv), _ptr(rays), _ptr(prim), _ptr(bounds), _ptr(objapp), _ptr(app),
        _ptr(tex_off), _ptr(skin), skin.shape[-1], _ptr(pool), pool.shape[0],
        _ptr(image), _ptr(mask), _ptr(depth), _ptr(frac), torch.get_num_threads(),
    )  # fmt: skip
    return image, mask, depth, frac


def blur_(img: torch.Tensor, gk: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``render._blur`` in place on contiguous (B, 3, H, W) float32 images."""
    B, _, H, W = img.shape
    gk, sigma = gk.float().contiguous(), sigma.float().contiguous()
    _library().hp_blur(B, H, W, _ptr(img), _ptr(gk), _ptr(sigma), torch.get_num_threads())
    return img


def add_noise_(img: torch.Tensor, tex: torch.Tensor, off: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """``render._add_noise`` in place on contiguous (B, 3, H, W) float32 images."""
    B, _, H, W = img.shape
    tex, off, noise = tex.contiguous(), off.to(torch.int64).contiguous(), noise.float().contiguous()
    _library().hp_noise(
        B, H, W, _ptr(img), _ptr(tex), tex.shape[-1], _ptr(off), _ptr(noise), torch.get_num_threads()
    )
    return img
