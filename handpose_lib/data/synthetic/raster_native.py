"""The C++ kernel of engine v2's rasterizer (``raster_engine.cpp``), built and loaded like
``native.py``'s: compiled once with the system's C++ compiler (same compiler, flags and cache
folder), called through ``ctypes``. It repeats ``raster.render_pixels`` operation by operation and
gives the same bits (``tests/test_mesh_hand.py``); without a compiler the torch code runs instead.
The switch is ``native.py``'s (``set_native``, ``HANDPOSE_SYNTH_NATIVE``).
"""

from __future__ import annotations

import ctypes
import functools
import warnings
from pathlib import Path

import torch

from . import native

SOURCE = Path(__file__).with_name("raster_engine.cpp")


@functools.lru_cache(maxsize=1)
def _library() -> ctypes.CDLL | None:
    try:
        lib = ctypes.CDLL(str(native.build_library(SOURCE, "raster_engine")))
        P, I = ctypes.c_void_p, ctypes.c_int
        lib.hp_mesh_render.argtypes = [I, I, I, I, I, I, I, P, I] + [P] * 9 + [I, P, P, I] + [P] * 7 + [I]
        lib.hp_mesh_render.restype = None
        lib.hp_mesh_pose.argtypes = [I, I, I, I] + [P] * 9 + [I]
        lib.hp_mesh_pose.restype = None
        return lib
    except Exception as e:  # no compiler or a failed build: the torch code runs
        warnings.warn(
            f"engine v2's C++ rasterizer is not available ({type(e).__name__}: {e}); using the torch code "
            "(same outputs, slower)",
            stacklevel=3,
        )
        return None


def available() -> bool:
    return _library() is not None


def use_native(device) -> bool:
    """Whether a mesh render on ``device`` uses the kernel (``native.py``'s switch)."""
    if native._mode() is False or torch.device(device).type != "cpu":
        return False
    return available()


def _p(x: torch.Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(x.data_ptr())


def render_pixels(P, N_obj, faces, mat, CA, inc, K, app, objapp, tex, bgp, pool, H: int, W: int):
    """``raster.render_pixels`` by the C++ kernel (CPU tensors), the same outputs bit for bit; the
    background is drawn in the kernel from ``bgp`` (B, 12) (bg_u (5), prob, gain (3), plain (3):
    ``render._background``'s arguments) and the pool (Np, 3, H + 16, W + 16) uint8."""
    B, Nv, _ = P.shape
    Nt = faces.shape[0]
    P, N_obj = P.float().contiguous(), N_obj.float().contiguous()
    inc32 = inc.to(torch.int32).contiguous()
    nth = int((mat == 0).sum())
    faces32 = faces.to(torch.int32).contiguous()
    mat32 = mat.to(torch.int32).contiguous()
    CA, app, objapp, tex, bgp = (x.float().contiguous() for x in (CA, app, objapp, tex, bgp))
    pool = pool.contiguous()
    if tex.shape[-1] & (tex.shape[-1] - 1):
        raise ValueError(f"the detail texture side must be a power of two, got {tex.shape[-1]}")
    K4 = torch.stack([K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2]], -1).float().contiguous()
    image = torch.empty(B, 3, H, W)
    mask = torch.empty(B, H, W, dtype=torch.bool)
    depth = torch.empty(B, H, W)
    zh = torch.empty(B, H, W)
    zo = torch.empty(B, H, W)
    tri = torch.empty(B, H, W, dtype=torch.int32)
    frac = torch.empty(B)
    _library().hp_mesh_render(
        B, H, W, Nv, Nt, inc.shape[0], nth, _p(inc32), inc.shape[1], _p(P), _p(N_obj), _p(faces32),
        _p(mat32), _p(CA), _p(K4), _p(app), _p(objapp), _p(tex), tex.shape[-1], _p(bgp), _p(pool),
        pool.shape[0], _p(image), _p(mask), _p(depth), _p(zh), _p(zo), _p(tri), _p(frac),
        torch.get_num_threads(),
    )  # fmt: skip
    return image, mask, depth, zh, zo, tri, frac


def pose(X: torch.Tensor, target_w: torch.Tensor, R: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """The skinned mesh in the camera frame (B, V, 3): rest vertices with the targets' weights
    target_w (B, 2S) (``mesh.target_weights``), bone maps X (B, 22, 3, 4), then ``R x + T`` with
    R (B, 3, 3), T (B, 3); the operations of ``mesh.rest_skeleton``, ``mesh.skin`` and
    ``mesh_render._rigid``, the same bits."""
    from . import mesh

    m = mesh.load_mesh_hand()
    V0 = m["vertices"].contiguous()
    basis = mesh._target_basis()[0].contiguous()
    idx, w = mesh._sparse_weights()
    idx32, w = idx.to(torch.int32).contiguous(), w.contiguous()
    B, nV, K = X.shape[0], V0.shape[0], idx.shape[1]
    X, tw = X.float().contiguous(), target_w.float().contiguous()
    R, T = R.float().contiguous(), T.float().contiguous()
    out = torch.empty(B, nV, 3)
    _library().hp_mesh_pose(
        B, nV, K, tw.shape[1], _p(V0), _p(basis), _p(tw), _p(idx32), _p(w), _p(X), _p(R), _p(T), _p(out),
        torch.get_num_threads(),
    )  # fmt: skip
    return out
