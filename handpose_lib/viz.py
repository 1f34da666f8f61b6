"""Reusable figures for the book: 3D hand viewers, 2D overlays, heatmap grids, PCK curves.

Layer 3 of the library: pure drawing functions of arrays and evaluation reports. Nothing here
trains a model or loads a data set; it imports :mod:`handpose_lib.skeleton`,
:mod:`handpose_lib.metrics` (the published STB curves) and, where a figure projects 3D joints,
the pinhole projection of :mod:`handpose_lib.data.sample`.

Interactive figures are plotly (they work on the static site with no kernel: sliders move
between precomputed frames); image overlays are drawn with opencv into ``uint8`` arrays.

Conventions (the library's): joints are ``(21, D)`` in the canonical order; 3D joints are in
millimetres in the camera frame (x right, y down, z forward); 2D joints are continuous pixel
coordinates with the image spanning ``[0, W] x [0, H]`` and pixel ``i``'s centre at ``i + 0.5``;
image sizes are an ``int`` or ``(height, width)``, as in :mod:`handpose_lib.lhr`.

At import, plotly's default renderer becomes ``plotly_mimetype+notebook`` (unless the
environment variable ``PLOTLY_RENDERER`` is set) so that figures embed inline, with plotly.js,
in the pages Jupyter Book builds.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from . import metrics
from . import skeleton as sk

if not os.environ.get("PLOTLY_RENDERER"):
    pio.renderers.default = "plotly_mimetype+notebook"

PRED_COLOR = "#222222"
ERROR_COLOR = "#999999"


# ----------------------------------------------------------------------------------------
# helpers


def _np(x, dtype=np.float64) -> np.ndarray:
    if type(x).__module__.startswith("torch"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _joints(x, d: int, what: str) -> np.ndarray:
    """(21, d) float64; NaN marks an unlabelled joint (not drawn), infinity is an error."""
    j = _np(x)
    if j.shape != (sk.NUM_JOINTS, d):
        raise ValueError(f"{what}: expected shape ({sk.NUM_JOINTS}, {d}), got {j.shape}")
    if np.isinf(j).any():
        raise ValueError(f"{what}: contains infinite values")
    return j


def _mask(visible, what: str = "visible") -> np.ndarray:
    if visible is None:
        return np.ones(sk.NUM_JOINTS, dtype=bool)
    m = _np(visible, dtype=bool).reshape(-1)
    if m.shape != (sk.NUM_JOINTS,):
        raise ValueError(f"{what}: expected shape ({sk.NUM_JOINTS},), got {m.shape}")
    return m


def _hw(size) -> tuple[int, int]:
    """``int`` or ``(height, width)`` -> ``(height, width)`` (the convention of :mod:`lhr`)."""
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


def _scale(image_size, h: int, w: int) -> tuple[float, float]:
    """(x, y) size of one cell of an (h, w) map in pixels of an image of ``image_size``."""
    if image_size is None:
        return 1.0, 1.0
    ih, iw = _hw(image_size)
    return iw / w, ih / h


def _hex_to_rgb(color: str) -> tuple[int, int, int]:
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def finger_chains() -> dict[str, list[int]]:
    """Joint indices drawn as one polyline per finger, each starting at the wrist."""
    return {name: [0, *idx] for name, idx in sk.FINGERS.items()}


def to_uint8_image(image) -> np.ndarray:
    """Any image the library uses -> (H, W, 3) uint8 RGB.

    Accepts a (3, H, W) float tensor/array in [0, 1] (the sample convention), an (H, W, 3)
    float array in [0, 1], an (H, W, 3) uint8 array, or an (H, W) grey image.
    """
    a = _np(image, dtype=None) if type(image).__module__.startswith("torch") else np.asarray(image)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[2] not in (1, 3):
        a = np.transpose(a, (1, 2, 0))
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3):
        raise ValueError(f"image: expected (3, H, W), (H, W, 3) or (H, W), got {np.asarray(image).shape}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    if a.dtype != np.uint8:
        a = np.clip(np.nan_to_num(a.astype(np.float64)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(a)


def image_data_uri(image, quality: int = 90) -> str:
    """An image as a ``data:`` URI: JPEG (``quality``) or PNG, whichever is smaller.

    Plotly figures store a ``go.Image(z=...)`` as a JSON list of every pixel's three numbers
    (about 12 bytes a pixel); a compressed image is 20-100 times smaller, so a chapter of image
    grids stays a page a browser opens quickly (the data chapter went from 37 MB)."""
    png = png_bytes(image)
    bgr = cv2.cvtColor(to_uint8_image(image), cv2.COLOR_RGB2BGR)
    ok, jpg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("image_data_uri: opencv could not encode the image as JPEG")
    mime, buf = ("image/png", png) if len(png) <= len(jpg) else ("image/jpeg", jpg.tobytes())
    return f"data:{mime};base64," + base64.b64encode(buf).decode("ascii")


def image_trace(image, **kw) -> go.Image:
    """A plotly image trace holding ``image`` compressed (:func:`image_data_uri`) instead of as
    pixel numbers; ``kw`` go to ``go.Image`` (e.g. ``x0=0.5, dx=1`` to put pixel ``i`` on
    ``[i, i + 1]``). Pixel values are not in the hover (it is skipped by default)."""
    kw.setdefault("hoverinfo", "skip")
    return go.Image(source=image_data_uri(image), **kw)


# ----------------------------------------------------------------------------------------
# a simple articulated hand (forward kinematics) for the book's slider viewers

# wrist -> joint offsets of an adult right hand at rest, in mm, in a hand frame with x towards
# the thumb, y along the fingers and z out of the palm. Finger lengths follow anthropometric
# tables (e.g. Buryanov & Kotiuk 2010); the middle MCP -> PIP bone is MEAN_REFERENCE_BONE_MM.
_MCP = {
    "index": (24.0, 66.0, 0.0),
    "middle": (4.0, 68.0, 0.0),
    "ring": (-15.0, 62.0, 0.0),
    "pinky": (-32.0, 53.0, 0.0),
}
_PHALANGES = {  # proximal, middle, distal (thumb: metacarpal, proximal, distal)
    "thumb": (40.0, 32.0, 27.0),
    "index": (40.0, 24.0, 21.0),
    "middle": (sk.MEAN_REFERENCE_BONE_MM, 28.0, 22.0),
    "ring": (40.0, 27.0, 22.0),
    "pinky": (32.0, 19.0, 20.0),
}
_THUMB_CMC = (19.0, 22.0, 8.0)
_SPREAD = {"index": 8.0, "middle": 0.0, "ring": -7.0, "pinky": -15.0}  # degrees towards the thumb
# full flexion (bend = 1) per joint of the chain, in degrees
_MAX_FLEX = {
    "thumb": (35.0, 50.0, 70.0),
    "index": (80.0, 100.0, 70.0),
    "middle": (85.0, 100.0, 70.0),
    "ring": (85.0, 100.0, 70.0),
    "pinky": (90.0, 100.0, 70.0),
}

SIMPLE_IMAGE_SIZE = (256, 256)
SIMPLE_K = np.array([[320.0, 0.0, 128.0], [0.0, 320.0, 128.0], [0.0, 0.0, 1.0]])
"""Camera matrix of the simple hand's camera: a 256 x 256 image, focal length 320 px."""


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _rot(axis: str, deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def simple_hand(
    bend: Sequence[float] | Mapping[str, float] = (0.0, 0.0, 0.0, 0.0, 0.0),
    yaw: float = 0.0,
    pitch: float = 0.0,
    distance: float = 420.0,
) -> np.ndarray:
    """A right hand in the camera frame from five finger bends (forward kinematics).

    Each finger is a chain of three joints that flex in one plane (spanned by the finger's
    rest direction and the palm normal); ``bend`` in [0, 1] scales the three flexion angles
    from straight (0) to a fist (1). The hand faces the camera, fingers up, wrist below the
    image centre; ``yaw`` (about the image's vertical axis) and ``pitch`` (about the
    horizontal axis), in degrees, turn it. This is a teaching model, not the procedural
    engine's hand: fixed bone lengths, no abduction, no joint limits beyond the bend scale.

    Args:
        bend: five values (thumb, index, middle, ring, pinky) or a dict by finger name
            (missing fingers stay straight).
        yaw, pitch: rotation of the whole hand, degrees.
        distance: depth of the wrist in mm.
    Returns:
        (21, 3) joints in mm, camera frame (x right, y down, z forward), canonical order.
    """
    if isinstance(bend, Mapping):
        unknown = set(bend) - set(sk.FINGER_NAMES)
        if unknown:
            raise KeyError(f"simple_hand: unknown finger(s) {sorted(unknown)}; use {sk.FINGER_NAMES}")
        b = [float(bend.get(f, 0.0)) for f in sk.FINGER_NAMES]
    else:
        b = [float(v) for v in bend]
        if len(b) != 5:
            raise ValueError(f"simple_hand: bend needs 5 values (thumb..pinky), got {len(b)}")
    local = np.zeros((sk.NUM_JOINTS, 3))
    palm_normal = np.array([0.0, 0.0, 1.0])
    for f, (name, idx) in enumerate(sk.FINGERS.items()):
        if name == "thumb":
            local[idx[0]] = _THUMB_CMC
            start, chain = idx[0], idx[1:]
            direction = _unit([0.75, 0.55, 0.35])
            flex_dir = _unit([-0.6, 0.1, 0.8])
            flex_dir = _unit(flex_dir - direction * (flex_dir @ direction))
        else:
            local[idx[0]] = _MCP[name]
            start, chain = idx[0], idx[1:]
            spread = np.radians(_SPREAD[name])
            direction = np.array([np.sin(spread), np.cos(spread), 0.0])
            flex_dir = palm_normal
        angle = 0.0
        pos = local[start]
        for k, j in enumerate(chain):
            angle += np.radians(_MAX_FLEX[name][k]) * b[f]
            step = np.cos(angle) * direction + np.sin(angle) * flex_dir
            pos = pos + _PHALANGES[name][k] * step
            local[j] = pos
    # hand frame -> camera frame: x stays, y (fingers) points up (-y), the palm faces the camera
    to_cam = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])
    r = _rot("y", yaw) @ _rot("x", pitch) @ to_cam
    centre = np.array([0.0, 0.0, 60.0])  # turn about the palm centre
    cam = (local - centre) @ r.T + r @ centre
    return cam + np.array([0.0, 75.0, distance])


# ----------------------------------------------------------------------------------------
# 3D figures


def _scene(fig: go.Figure, scene: str = "scene", ranges=None) -> None:
    """Camera-frame axes: y points down, the viewer looks along +z from behind the camera."""
    axes = {}
    for i, ax in enumerate("xyz"):
        axes[f"{ax}axis"] = dict(title=f"{ax} (mm)")
        if ranges is not None:
            axes[f"{ax}axis"]["range"] = list(ranges[i])
    aspect = dict(aspectmode="data")
    if ranges is not None:
        span = np.array([r[1] - r[0] for r in ranges], dtype=float)
        span = span / span.max()
        aspect = dict(aspectmode="manual", aspectratio=dict(x=span[0], y=span[1], z=span[2]))
    fig.update_layout(
        **{
            scene: dict(
                **axes,
                **aspect,
                camera=dict(up=dict(x=0, y=-1, z=0), eye=dict(x=0.9, y=-0.7, z=-1.9)),
            )
        }
    )


def skeleton_traces_3d(
    joints3d,
    name: str = "hand",
    color: str | None = None,
    visible=None,
    dash: str = "solid",
    width: float = 6.0,
    size: float = 4.0,
    showlegend: bool = True,
) -> list[go.Scatter3d]:
    """Five ``Scatter3d`` traces (one per finger, wrist to tip) of one hand.

    ``color=None`` colours each finger with :data:`skeleton.FINGER_COLORS`; hidden joints
    (``visible`` False) are drawn as open markers.
    """
    j = _joints(joints3d, 3, "joints3d")
    vis = _mask(visible)
    traces = []
    for k, (finger, chain) in enumerate(finger_chains().items()):
        c = color or sk.FINGER_COLORS[finger]
        traces.append(
            go.Scatter3d(
                x=j[chain, 0],
                y=j[chain, 1],
                z=j[chain, 2],
                mode="lines+markers",
                name=name,
                legendgroup=name,
                showlegend=showlegend and k == 0,
                line=dict(color=c, width=width, dash=dash),
                marker=dict(
                    size=size,
                    color=c,
                    symbol=["circle" if vis[i] else "circle-open" for i in chain],
                ),
                text=[sk.JOINT_NAMES[i] + ("" if vis[i] else " (hidden)") for i in chain],
                hovertemplate="%{text}<br>x=%{x:.1f} y=%{y:.1f} z=%{z:.1f} mm<extra>" + name + "</extra>",
            )
        )
    return traces


def hand_figure_3d(
    joints3d,
    name: str = "hand",
    visible=None,
    color: str | None = None,
    title: str | None = None,
    height: int = 500,
) -> go.Figure:
    """A rotatable 3D view of one hand: (21, 3) mm joints -> figure with 5 finger traces."""
    fig = go.Figure(skeleton_traces_3d(joints3d, name=name, color=color, visible=visible))
    _scene(fig)
    fig.update_layout(title=title, height=height, margin=dict(l=0, r=0, t=40 if title else 10, b=0))
    return fig


def compare_3d(
    gt,
    pred,
    hidden=None,
    title: str | None = None,
    labels: tuple[str, str] = ("ground truth", "prediction"),
    height: int = 500,
) -> go.Figure:
    """Ground truth (finger colours, solid) against a prediction (dark, dashed) in 3D.

    Grey segments join each predicted joint to its ground truth (the per-joint error);
    ``hidden`` (21,) bool marks occluded joints, drawn as open markers.
    11 traces: 5 ground truth, 5 prediction, 1 error segments.
    """
    g = _joints(gt, 3, "gt")
    p = _joints(pred, 3, "pred")
    vis = ~_mask(hidden, "hidden") if hidden is not None else None
    traces = skeleton_traces_3d(g, name=labels[0], visible=vis)
    traces += skeleton_traces_3d(p, name=labels[1], color=PRED_COLOR, dash="dash", width=4, visible=vis)
    seg = np.full((3 * sk.NUM_JOINTS, 3), np.nan)
    seg[0::3], seg[1::3] = g, p
    err = np.linalg.norm(g - p, axis=1)  # NaN where a joint is unlabelled
    traces.append(
        go.Scatter3d(
            x=seg[:, 0],
            y=seg[:, 1],
            z=seg[:, 2],
            mode="lines",
            name="error",
            line=dict(color=ERROR_COLOR, width=2),
            hoverinfo="skip",
        )
    )
    fig = go.Figure(traces)
    _scene(fig)
    sub = f"mean error {np.nanmean(err):.1f} mm" if np.isfinite(err).any() else "no labelled joints"
    fig.update_layout(
        title=f"{title} ({sub})" if title else sub, height=height, margin=dict(l=0, r=0, t=40, b=0)
    )
    return fig


def camera_frustum(
    K,
    image_size,
    depth: float = 100.0,
    fig: go.Figure | None = None,
    name: str = "camera",
    color: str = "#555555",
    row: int | None = None,
    col: int | None = None,
) -> go.Figure:
    """Add a pinhole camera's viewing pyramid (centre at the origin) to a 3D figure.

    The four image corners ``(0, 0), (W, 0), (W, H), (0, H)`` are back-projected to depth
    ``depth`` mm with ``X = depth * K^-1 [u, v, 1]``. Adds one ``Scatter3d`` trace.
    """
    h, w = _hw(image_size)
    kinv = np.linalg.inv(_np(K))
    corners = np.array([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]], dtype=np.float64)
    pts = depth * corners @ kinv.T
    o = np.zeros(3)
    nan = np.full(3, np.nan)
    path = [pts[0], pts[1], pts[2], pts[3], pts[0], nan]
    for c in pts:
        path += [o, c, nan]
    path = np.array(path)
    fig = fig if fig is not None else go.Figure()
    trace = go.Scatter3d(
        x=path[:, 0],
        y=path[:, 1],
        z=path[:, 2],
        mode="lines",
        name=name,
        line=dict(color=color, width=3),
        hoverinfo="skip",
    )
    if row is not None:
        fig.add_trace(trace, row=row, col=col)
    else:
        fig.add_trace(trace)
        _scene(fig)
    return fig


# ----------------------------------------------------------------------------------------
# 2D figures


def skeleton_traces_2d(
    joints2d,
    name: str = "hand",
    color: str | None = None,
    visible=None,
    dash: str = "solid",
    showlegend: bool = True,
) -> list[go.Scatter]:
    """Five ``Scatter`` traces (one per finger) of a 2D skeleton, in pixel coordinates."""
    j = _joints(joints2d, 2, "joints2d")
    vis = _mask(visible)
    traces = []
    for k, (finger, chain) in enumerate(finger_chains().items()):
        c = color or sk.FINGER_COLORS[finger]
        traces.append(
            go.Scatter(
                x=j[chain, 0],
                y=j[chain, 1],
                mode="lines+markers",
                name=name,
                legendgroup=name,
                showlegend=showlegend and k == 0,
                line=dict(color=c, width=3, dash=dash),
                marker=dict(size=7, color=c, symbol=["circle" if vis[i] else "circle-open" for i in chain]),
                text=[sk.JOINT_NAMES[i] for i in chain],
                hovertemplate="%{text}<br>u=%{x:.1f} v=%{y:.1f} px<extra>" + name + "</extra>",
            )
        )
    return traces


def _image_axes(fig: go.Figure, size, row=None, col=None) -> None:
    h, w = _hw(size)
    kw = {} if row is None else dict(row=row, col=col)
    fig.update_xaxes(range=[0, w], constrain="domain", **kw)
    fig.update_yaxes(range=[h, 0], scaleanchor="x" if row is None else None, constrain="domain", **kw)


def image_figure(
    image=None,
    joints2d=None,
    pred2d=None,
    visible=None,
    image_size=None,
    title: str | None = None,
    height: int = 450,
) -> go.Figure:
    """An image (optional) with a ground-truth skeleton and an optional predicted one.

    The image is placed so that pixel ``i`` covers ``[i, i + 1]`` (the library's pixel
    convention). Without an image, ``image_size`` (H, W) sets the axes.
    """
    fig = go.Figure()
    if image is not None:
        img = to_uint8_image(image)
        fig.add_trace(image_trace(img, x0=0.5, y0=0.5, dx=1, dy=1))
        image_size = img.shape[:2]
    if joints2d is not None:
        for t in skeleton_traces_2d(joints2d, name="ground truth", visible=visible):
            fig.add_trace(t)
    if pred2d is not None:
        for t in skeleton_traces_2d(pred2d, name="prediction", color=PRED_COLOR, dash="dash"):
            fig.add_trace(t)
    if image_size is not None:
        _image_axes(fig, image_size)
        fig.update_yaxes(scaleanchor="x")
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=40 if title else 10, b=10))
    return fig


def overlay_2d(
    image,
    joints2d,
    visible=None,
    pred2d=None,
    scale: int = 1,
    radius: int = 2,
    thickness: int = 1,
) -> np.ndarray:
    """Draw a 2D skeleton on a copy of an image with opencv: -> (H*scale, W*scale, 3) uint8.

    Ground truth in finger colours (filled dots; hidden joints as rings); an optional
    prediction in dark grey with white-rimmed dots. Coordinates follow the pixel convention
    (pixel centre at ``i + 0.5``) and are drawn with sub-pixel precision. ``scale`` enlarges
    the image first (nearest neighbour) so small crops stay legible. NaN joints (unlabelled)
    and the bones that touch them are not drawn.
    """
    img = to_uint8_image(image).copy()  # never draw into the caller's array
    if scale != 1:
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    img = np.ascontiguousarray(img)
    shift = 4
    one = 1 << shift

    def pts(j2):
        j = _joints(j2, 2, "joints2d")
        ok = np.isfinite(j).all(axis=1)  # unlabelled (NaN) joints are not drawn
        return np.round((np.nan_to_num(j) * scale - 0.5) * one).astype(np.int64), ok

    def draw(j2, vis, colors, dot_fill):
        p, ok = pts(j2)
        for b, (a, c) in enumerate(sk.BONES):
            if ok[a] and ok[c]:
                cv2.line(
                    img,
                    tuple(map(int, p[a])),
                    tuple(map(int, p[c])),
                    colors[b],
                    thickness,
                    cv2.LINE_AA,
                    shift,
                )
        for i in range(sk.NUM_JOINTS):
            if not ok[i]:
                continue
            col = colors[max(i - 1, 0)] if i else colors[0]
            centre = tuple(map(int, p[i]))
            if dot_fill is not None:
                cv2.circle(img, centre, (radius + 1) * one, dot_fill, -1, cv2.LINE_AA, shift)
            cv2.circle(img, centre, radius * one, col, -1 if vis[i] else 1, cv2.LINE_AA, shift)

    gt_colors = [_hex_to_rgb(c) for c in sk.BONE_COLORS]
    if pred2d is not None:
        draw(pred2d, np.ones(sk.NUM_JOINTS, bool), [_hex_to_rgb(PRED_COLOR)] * sk.NUM_BONES, (255, 255, 255))
    wrist = _hex_to_rgb(sk.FINGER_COLORS["wrist"])
    draw(joints2d, _mask(visible), gt_colors, None)
    # the wrist in its own colour
    p, ok = pts(joints2d)
    if ok[0]:
        cv2.circle(img, tuple(map(int, p[0])), radius * one, wrist, -1, cv2.LINE_AA, shift)
    return img


def image_grid(images: Sequence[np.ndarray], cols: int = 4, pad: int = 2, fill: int = 255) -> np.ndarray:
    """Tile equally sized (H, W, 3) uint8 images into one mosaic, row by row."""
    if len(images) == 0:
        raise ValueError("image_grid: no images")
    ims = [to_uint8_image(im) for im in images]
    h, w = ims[0].shape[:2]
    if any(im.shape[:2] != (h, w) for im in ims):
        raise ValueError("image_grid: all images must have the same size")
    cols = min(cols, len(ims))
    rows = -(-len(ims) // cols)
    out = np.full((rows * h + (rows + 1) * pad, cols * w + (cols + 1) * pad, 3), fill, np.uint8)
    for k, im in enumerate(ims):
        r, c = divmod(k, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        out[y : y + h, x : x + w] = im
    return out


def png_bytes(image) -> bytes:
    """Encode an image as PNG bytes (for ``ipywidgets.Image`` in live JupyterLab cells)."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(to_uint8_image(image), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("png_bytes: opencv could not encode the image")
    return buf.tobytes()


def show_image(image, title: str | None = None, height: int | None = None) -> go.Figure:
    """A plain image as a plotly figure (axes hidden); works offline on the site."""
    img = to_uint8_image(image)
    fig = go.Figure(image_trace(img))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x")
    h = height or int(min(900, max(250, img.shape[0] * 700 / max(img.shape[1], 1))))
    fig.update_layout(title=title, height=h, margin=dict(l=0, r=0, t=40 if title else 0, b=0))
    return fig


def heatmap_grid(
    maps,
    joints2d=None,
    image_size=None,
    cols: int = 7,
    titles: Sequence[str] | None = None,
    colorscale: str = "Viridis",
    height: int | None = None,
) -> go.Figure:
    """One small heatmap per joint: (J, h, w) maps -> a grid of ``go.Heatmap`` subplots.

    With ``image_size`` (H, W) the heatmaps are drawn in image pixels (cell ``i``'s centre at
    ``(i + 0.5) * W / w``), and ``joints2d`` (J, 2) in pixels marks each joint with a cross.
    Each map keeps its own colour range (no colour bar).
    """
    m = _np(maps)
    if m.ndim != 3:
        raise ValueError(f"heatmap_grid: expected (J, h, w) maps, got {m.shape}")
    nj, hh, ww = m.shape
    titles = list(titles) if titles is not None else list(sk.JOINT_NAMES[:nj])
    rows = -(-nj // cols)
    fig = make_subplots(
        rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.01, vertical_spacing=0.06
    )
    sx, sy = _scale(image_size, hh, ww)
    xs, ys = (np.arange(ww) + 0.5) * sx, (np.arange(hh) + 0.5) * sy
    pts = _np(joints2d) if joints2d is not None else None
    for k in range(nj):
        r, c = k // cols + 1, k % cols + 1
        fig.add_trace(
            go.Heatmap(z=m[k], x=xs, y=ys, colorscale=colorscale, showscale=False, hoverinfo="skip"),
            row=r,
            col=c,
        )
        if pts is not None:
            fig.add_trace(
                go.Scatter(
                    x=[pts[k, 0]],
                    y=[pts[k, 1]],
                    mode="markers",
                    marker=dict(symbol="x-thin", size=9, line=dict(color="white", width=2)),
                    showlegend=False,
                    hoverinfo="skip",
                ),
                row=r,
                col=c,
            )
    fig.update_xaxes(visible=False, range=[0, ww * sx])
    fig.update_yaxes(visible=False, range=[hh * sy, 0])
    fig.update_annotations(font_size=10)
    fig.update_layout(height=height or 150 * rows + 40, margin=dict(l=5, r=5, t=30, b=5))
    return fig


# ----------------------------------------------------------------------------------------
# PCK curves


def _report_curves(label: str, report: Mapping, kind: str) -> list[tuple]:
    """``(name, thresholds, PCK, dash)`` of an evaluation report's curves: all joints, then visible
    (dotted) and hidden (dashed) joints where the report splits them."""
    key, tkey, akey = {
        "3d": ("pck3d", "pck3d_thresholds_mm", "auc3d_20_50"),
        "2d": ("pck2d", "pck2d_thresholds_px", "auc2d_0_30"),
    }[kind]
    x = report["protocol"][tkey]
    groups = [("all", report["overall"], None)]
    for g, dash in (("visible", "dot"), ("hidden", "dash")):
        if g in report.get("by_visibility", {}):
            groups.append((g, report["by_visibility"][g], dash))
    out = []
    for g, st, dash in groups:
        auc = st[akey]
        name = f"{label} ({g}), AUC {auc:.3f}" if auc is not None else f"{label} ({g})"
        out.append((name, _np(x).reshape(-1), _np(st[key]).reshape(-1), dash))
    return out


def _stb_comparison(fig: go.Figure, reports: Mapping[str, Mapping]) -> None:
    """The published STB curves (grey) in panel 1 and a bar panel 2 (below it) of the published STB
    AUC(20-50 mm) values (:data:`handpose_lib.metrics.PUBLISHED_STB_AUC`) next to the reports'."""
    greys = ("#bdbdbd", "#9e9e9e", "#616161")
    for (name, (x, y)), grey in zip(metrics.PUBLISHED_STB_CURVES.items(), greys):
        auc = metrics.PUBLISHED_STB_AUC[name]
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines+markers",
                name=f"{name} on STB (Zhang et al. 2016), AUC {auc:.3f}",
                line={"color": grey, "width": 1.5},
                marker={"size": 5},
            ),
            row=1,
            col=1,
        )
    names = list(metrics.PUBLISHED_STB_AUC)
    vals = list(metrics.PUBLISHED_STB_AUC.values())
    colors = ["#9e9e9e"] * len(names)
    for label, rep in reports.items():
        names.append(f"ours: {label}" + ("" if "stb" in str(label).lower() else " (not STB)"))
        vals.append(rep["overall"]["auc3d_20_50"] or 0.0)
        colors.append("#d62728")
    bars = go.Bar(
        x=vals,
        y=names,
        orientation="h",
        marker_color=colors,
        text=[f"{v:.3f}" for v in vals],
        textposition="auto",
        showlegend=False,
    )
    fig.add_trace(bars, row=2, col=1)
    fig.update_xaxes(title_text="AUC(20-50 mm)", range=[0.0, 1.0], row=2, col=1)


def pck_figure(
    curves: Mapping,
    kind: str = "3d",
    compare_stb: bool = False,
    title: str | None = None,
    styles: Mapping[str, Mapping] | None = None,
    height: int = 460,
) -> go.Figure:
    """PCK curves in the style of the paper's figs. 3-5.

    Args:
        curves: ``{label: entry}``; an entry is ``(thresholds, pck)`` with ``pck`` in [0, 1], a
            :class:`handpose_lib.metrics.PCK`, or an evaluation report of
            :mod:`handpose_lib.evaluate` (its curve over all joints, and the visible (dotted)
            and hidden (dashed) joints' where it splits them). One report alone is accepted too.
        kind: ``"3d"`` (0-50 mm, the AUC band 20-50 mm shaded) or ``"2d"`` (0-30 px).
        compare_stb: for 3D, draw the published STB curves
            (:data:`handpose_lib.metrics.PUBLISHED_STB_CURVES`, grey) among these and add a
            panel with the published STB AUC(20-50 mm) values next to the reports' (most papers
            publish only the value).
        title: the figure's title (default ``"3D PCK"`` or ``"2D PCK"``).
        styles: ``styles[label]`` overrides an entry's line, e.g. ``{"dash": "dot", "color":
            "#888"}`` for curves from other work.
    """
    if kind not in ("3d", "2d"):
        raise ValueError(f"pck_figure: kind must be '3d' or '2d', got {kind!r}")
    if "overall" in curves:  # one report
        curves = {curves.get("dataset") or "ours": curves}
    reports = {k: v for k, v in curves.items() if isinstance(v, Mapping) and "overall" in v}
    with_bars = compare_stb and kind == "3d"
    if with_bars:
        titles = ("3D PCK (root-relative, scale-aligned)", "AUC(20-50 mm): published on STB vs ours")
        # the bar panel below the curves: its long names need the page's whole width
        fig = make_subplots(
            rows=2, cols=1, row_heights=[0.55, 0.45], vertical_spacing=0.14, subplot_titles=titles
        )
    else:
        fig = go.Figure()
    kw = {"row": 1, "col": 1} if with_bars else {}
    for label, c in curves.items():
        if label in reports:
            for name, t, p, dash in _report_curves(label, c, kind):
                line = {"dash": dash, "width": 2}
                fig.add_trace(go.Scatter(x=t, y=p, mode="lines", name=name, line=line), **kw)
            continue
        t, p = (c.thresholds, c.pck) if hasattr(c, "thresholds") and hasattr(c, "pck") else c
        t, p = _np(t).reshape(-1), _np(p).reshape(-1)
        if t.shape != p.shape:
            raise ValueError(f"pck_figure: {label!r} has {t.size} thresholds but {p.size} PCK values")
        line = dict(width=2.5)
        line.update((styles or {}).get(label, {}))
        trace = go.Scatter(x=t, y=p, mode="lines+markers", name=label, line=line, marker=dict(size=4))
        fig.add_trace(trace, **kw)
    if with_bars:
        _stb_comparison(fig, reports)
    if kind == "3d":
        fig.add_vrect(x0=20, x1=50, fillcolor="grey", opacity=0.08, line_width=0, **kw)
        fig.update_xaxes(title_text="error threshold (mm)", range=[0, 50], **kw)
    else:
        fig.update_xaxes(title_text="error threshold (px)", range=[0, 30], **kw)
    fig.update_yaxes(title_text="PCK", range=[0, 1.02], **kw)
    fig.update_layout(
        title=title or f"{kind.upper()} PCK",
        template="plotly_white",
        # the legend below the axes, where it hides no curve
        legend={"orientation": "h", "x": 0, "y": -0.08 if with_bars else -0.2, "yanchor": "top"},
        height=(2 * height if with_bars else height) + 20 * len(fig.data) // 2,
        margin={"t": 90 if with_bars else 60, "r": 10, "b": 30 + 20 * len(fig.data) // 2},
    )
    return fig


def per_joint_figure(report: Mapping, metric: str = "epe3d_mm") -> go.Figure:
    """Bar chart of a per-joint metric of an evaluation report, coloured by finger."""
    names = list(report["per_joint"])
    vals = [report["per_joint"][n][metric] for n in names]
    fig = go.Figure(go.Bar(x=names, y=vals, marker_color=list(sk.JOINT_COLORS)))
    fig.update_layout(title=f"{metric} per joint", template="plotly_white", height=380)
    return fig


def write_figures(report: Mapping, out_dir: str | Path) -> list[Path]:
    """Write an evaluation report's 3D PCK (with the published STB curves), 2D PCK and per-joint
    3D EPE figures as HTML into ``out_dir`` (plotly.js once, beside them); returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in (
        ("pck3d.html", pck_figure(report, "3d", compare_stb=True)),
        ("pck2d.html", pck_figure(report, "2d")),
        ("epe3d_per_joint.html", per_joint_figure(report, "epe3d_mm")),
    ):
        p = out / name
        fig.write_html(p, include_plotlyjs="directory")
        paths.append(p)
    return paths


# ----------------------------------------------------------------------------------------
# slider viewers (precomputed frames: they work on the static site)


def spatial_softmax(latent, beta: float) -> np.ndarray:
    """``exp(beta F) / sum exp(beta F)`` over the last two axes (the paper's eq. 1), numpy."""
    f = _np(latent) * float(beta)
    f = f - f.max(axis=(-2, -1), keepdims=True)
    e = np.exp(f)
    return e / e.sum(axis=(-2, -1), keepdims=True)


def expected_xy(prob, image_size=None) -> np.ndarray:
    """Expected pixel coordinate of a (..., h, w) probability map (eq. 2): -> (..., 2).

    Cell ``i`` has centre ``(i + 0.5) * W / w``, so the result is in image pixels of an image
    of size ``image_size`` (H, W) (the map's own cells when ``None``).
    """
    p = _np(prob)
    h, w = p.shape[-2:]
    sx, sy = _scale(image_size, h, w)
    xs, ys = (np.arange(w) + 0.5) * sx, (np.arange(h) + 0.5) * sy
    return np.stack([(p.sum(-2) * xs).sum(-1), (p.sum(-1) * ys).sum(-1)], axis=-1)


def beta_slider_figure(
    latent,
    betas: Sequence[float],
    image_size=None,
    true_xy=None,
    title: str = "spatial softmax of one latent heatmap",
    height: int = 480,
) -> go.Figure:
    """A slider over the LHR temperature ``beta`` for one (h, w) latent map.

    Each frame shows the probability map ``softmax(beta F)`` with its expected coordinate
    (white dot) and the argmax cell (red cross); ``true_xy`` (2,) adds the true location.
    Traces: heatmap, expected point, argmax (+ truth); one frame and slider step per beta.
    """
    f = _np(latent)
    if f.ndim != 2:
        raise ValueError(f"beta_slider_figure: expected an (h, w) map, got {f.shape}")
    h, w = f.shape
    sx, sy = _scale(image_size, h, w)
    xs, ys = (np.arange(w) + 0.5) * sx, (np.arange(h) + 0.5) * sy
    am = np.unravel_index(np.argmax(f), f.shape)
    argmax_xy = (xs[am[1]], ys[am[0]])

    def frame_data(beta):
        p = spatial_softmax(f, beta)
        e = expected_xy(p, image_size)
        return [
            go.Heatmap(z=p, x=xs, y=ys, colorscale="Viridis", colorbar=dict(title="P")),
            go.Scatter(
                x=[e[0]],
                y=[e[1]],
                mode="markers",
                name=f"expected ({e[0]:.2f}, {e[1]:.2f})",
                marker=dict(size=12, color="white", line=dict(color="black", width=1)),
            ),
            go.Scatter(
                x=[argmax_xy[0]],
                y=[argmax_xy[1]],
                mode="markers",
                name="argmax",
                marker=dict(size=12, symbol="x", color="red"),
            ),
        ]

    data = frame_data(betas[0])
    if true_xy is not None:
        t = _np(true_xy).reshape(2)
        data.append(
            go.Scatter(
                x=[t[0]],
                y=[t[1]],
                mode="markers",
                name="true",
                marker=dict(size=12, symbol="star", color="orange"),
            )
        )
    frames = [go.Frame(data=frame_data(b), name=f"{b:g}", traces=[0, 1, 2]) for b in betas]
    steps = [
        dict(
            method="animate",
            label=f"{b:g}",
            args=[
                [f"{b:g}"],
                dict(mode="immediate", frame=dict(duration=0, redraw=True), transition=dict(duration=0)),
            ],
        )
        for b in betas
    ]
    fig = go.Figure(data=data, frames=frames)
    fig.update_layout(
        title=title,
        height=height,
        sliders=[dict(active=0, currentvalue=dict(prefix="beta = "), steps=steps, pad=dict(t=40))],
        legend=dict(orientation="h", y=1.0, yanchor="bottom", x=0),
        margin=dict(l=10, r=10, t=60, b=10),
    )
    fig.update_xaxes(range=[0, w * sx], constrain="domain")
    fig.update_yaxes(range=[h * sy, 0], scaleanchor="x", constrain="domain")
    return fig


def finger_bend_viewer(
    steps: int = 11,
    K=SIMPLE_K,
    image_size: tuple[int, int] = SIMPLE_IMAGE_SIZE,
    yaw: float = -25.0,
    pitch: float = 15.0,
    show_camera: bool = False,
    height: int = 720,
) -> go.Figure:
    """The simple hand in 3D beside its pinhole projection, one slider per finger.

    Built from :func:`simple_hand` and ``K``. Each slider step animates to a precomputed frame
    that replaces only that finger's two traces (3D and 2D), so the five sliders act
    independently on the static site. Traces: 5 fingers in 3D (+ 1 camera frustum when
    ``show_camera``), 5 fingers in 2D; frames: ``5 * steps``; sliders: 5.
    """
    from .data.sample import project  # here: importing viz needs neither torch nor the data sets

    values = np.linspace(0.0, 1.0, steps)
    rest = simple_hand(yaw=yaw, pitch=pitch)
    fig = make_subplots(
        rows=1,
        cols=2,
        specs=[[{"type": "scene"}, {"type": "xy"}]],
        column_widths=[0.55, 0.45],
        subplot_titles=("3D joints (camera frame, mm)", "pinhole projection (pixels)"),
    )
    for t in skeleton_traces_3d(rest, name="3D", showlegend=False):
        fig.add_trace(t, row=1, col=1)
    if show_camera:
        camera_frustum(K, image_size, depth=120.0, fig=fig, row=1, col=1)
    n3 = len(fig.data)
    for t in skeleton_traces_2d(project(rest, K), name="2D", showlegend=False):
        fig.add_trace(t, row=1, col=2)

    frames, sliders = [], []
    bottom = 20 + 52 * len(sk.FINGER_NAMES)
    plot_h = height - 40 - bottom
    for f, finger in enumerate(sk.FINGER_NAMES):
        chain = finger_chains()[finger]
        steps_f = []
        for v in values:
            j3 = simple_hand({finger: v}, yaw=yaw, pitch=pitch)
            j2 = project(j3, K)
            name = f"{finger}-{v:.2f}"
            frames.append(
                go.Frame(
                    name=name,
                    traces=[f, n3 + f],
                    data=[
                        go.Scatter3d(x=j3[chain, 0], y=j3[chain, 1], z=j3[chain, 2]),
                        go.Scatter(x=j2[chain, 0], y=j2[chain, 1]),
                    ],
                )
            )
            steps_f.append(
                dict(
                    method="animate",
                    label=f"{v:.1f}",
                    args=[
                        [name],
                        dict(
                            mode="immediate", frame=dict(duration=0, redraw=True), transition=dict(duration=0)
                        ),
                    ],
                )
            )
        sliders.append(
            dict(
                active=0,
                steps=steps_f,
                currentvalue=dict(prefix=f"{finger} bend: ", font=dict(size=12, color="#333")),
                font=dict(color="rgba(0,0,0,0)"),  # no tick labels: the current value says it
                ticklen=0,
                minorticklen=0,
                x=0.05,
                len=0.9,
                y=-(20 + 52 * f) / plot_h,
                yanchor="top",
                pad=dict(t=0, b=0),
            )
        )
    fig.frames = frames
    # fixed axes: every bend stays in view, nothing rescales while sliding
    allj = np.concatenate(
        [simple_hand({fn: 1.0}, yaw=yaw, pitch=pitch) for fn in sk.FINGER_NAMES]
        + [rest]
        + ([np.zeros((1, 3))] if show_camera else [])
    )
    lo, hi = allj.min(0) - 15, allj.max(0) + 15
    _scene(fig, "scene", ranges=list(zip(lo, hi)))
    _image_axes(fig, image_size, row=1, col=2)
    fig.update_yaxes(scaleanchor=fig.data[n3].xaxis, row=1, col=2)
    fig.update_layout(
        height=height, sliders=sliders, margin=dict(l=10, r=10, t=40, b=bottom), showlegend=False
    )
    return fig


def hand_video_3d(
    joints3d,
    fps: float = 30.0,
    title: str | None = None,
    height: int = 520,
    margin_mm: float = 15.0,
) -> go.Figure:
    """A hand over time in 3D: a frames slider and a play button (plotly frames: it plays on the
    static site with no kernel).

    Args:
        joints3d: (T, 21, 3) mm, camera frame (e.g. a tracked hand's ``joints3d_cam_mm``); a frame
            without a hand is all NaN (drawn empty).
        fps: the video's frames per second (the play speed and the slider's time labels).

    Returns a figure with 5 finger traces, ``T`` frames (one per video frame, each replacing
    the 5 traces) and one slider of ``T`` steps. The axes are fixed to the whole clip's extent,
    so the view does not rescale while it plays.
    """
    J = _np(joints3d)
    if J.ndim != 3 or J.shape[1:] != (sk.NUM_JOINTS, 3) or len(J) == 0:
        raise ValueError(f"hand_video_3d: expected joints of shape (T, {sk.NUM_JOINTS}, 3), got {J.shape}")
    if np.isinf(J).any():
        raise ValueError("hand_video_3d: joints contain infinite values")
    if not fps > 0:
        raise ValueError(f"hand_video_3d: fps must be positive, got {fps}")
    if not np.isfinite(J).any():
        raise ValueError("hand_video_3d: no frame has a hand (all joints are NaN)")
    T = len(J)
    names = [f"{t}" for t in range(T)]
    first = int(np.flatnonzero(np.isfinite(J).all((1, 2)))[0]) if np.isfinite(J).all((1, 2)).any() else 0
    fig = go.Figure(skeleton_traces_3d(J[first], name="hand", showlegend=False))
    n = len(fig.data)
    fig.frames = [
        go.Frame(
            name=names[t],
            traces=list(range(n)),
            data=[go.Scatter3d(x=tr.x, y=tr.y, z=tr.z) for tr in skeleton_traces_3d(J[t], showlegend=False)],
        )
        for t in range(T)
    ]
    ms = 1000.0 / fps
    play = dict(frame=dict(duration=ms, redraw=True), transition=dict(duration=0), fromcurrent=True)
    still = dict(mode="immediate", frame=dict(duration=0, redraw=True), transition=dict(duration=0))
    steps = [dict(method="animate", label=f"{t / fps:.2f}", args=[[names[t]], still]) for t in range(T)]
    lo, hi = np.nanmin(J.reshape(-1, 3), 0) - margin_mm, np.nanmax(J.reshape(-1, 3), 0) + margin_mm
    _scene(fig, "scene", ranges=list(zip(lo, hi)))
    fig.update_layout(
        title=title,
        height=height,
        margin=dict(l=10, r=10, t=40 if title else 10, b=10),
        updatemenus=[
            dict(
                type="buttons",
                showactive=False,
                x=0.0,
                y=0.0,
                xanchor="left",
                yanchor="top",
                pad=dict(t=45, r=10),
                buttons=[
                    dict(label="play", method="animate", args=[None, play]),
                    dict(label="pause", method="animate", args=[[None], still]),
                ],
            )
        ],
        sliders=[
            dict(
                active=first,
                steps=steps,
                x=0.12,
                len=0.88,
                y=0.0,
                yanchor="top",
                currentvalue=dict(prefix="t = ", suffix=" s"),
                pad=dict(t=30),
            )
        ],
    )
    return fig
