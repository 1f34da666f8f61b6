"""Hand pose metrics: EPE, PCK, AUC, alignment. Pure functions of arrays.

Conventions (stated once, used everywhere):

- Inputs are ``(N, 21, D)`` arrays (numpy or torch; torch is converted to numpy float64),
  ``D = 2`` (pixels) or ``D = 3`` (millimetres). ``visible`` is an optional ``(N, 21)``
  boolean mask; masked joints are left out of every statistic.
- **hand3d convention** (lmb-freiburg/hand3d ``utils/general.py``, ``EvalUtil``):
  per-joint statistics over that joint's visible samples, then the mean over joints.
  ``PCK_j(t) = mean(d_j <= t)``; ``AUC_j = trapz(PCK_j, t) / (t_max - t_min)``;
  reported AUC and PCK are means over joints (joints with no visible sample are skipped).
- **mmpose convention** (``mmpose/evaluation/functional/keypoint_eval.py``), 2D only:
  distances normalised by a per-sample size (bounding box), strict ``d < thr``,
  AUC as the rectangle sum over ``num_thrs`` thresholds. See :func:`mmpose_pck`,
  :func:`mmpose_auc`, :func:`mmpose_epe`.
- 3D evaluation is root-relative (:func:`align_root`) and, on real data, usually
  scale-aligned by the ground truth's reference bone (:func:`align_scale`). Tables must
  say which; :func:`auc` returns the grid it used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .skeleton import REFERENCE_BONE

DEFAULT_3D_THRESHOLDS = np.linspace(20.0, 50.0, 31)  # mm, the paper's AUC(20-50 mm)
DEFAULT_2D_THRESHOLDS = np.linspace(0.0, 30.0, 20)  # px, hand3d's 2D grid
HAND3D_STB_THRESHOLDS = np.linspace(0.0, 50.0, 20)[8:]  # 21.05 .. 50 mm, 12 values

# published STB AUC(20-50 mm) values (/work/shared/reference/datasets.md; LearnableGroups-Hand
# plot_AUC_tools.py legends and the papers). Most papers publish only the value; the curves of
# the three classic trackers are in PUBLISHED_STB_CURVES.
PUBLISHED_STB_AUC: dict[str, float] = {
    "PSO": 0.709,
    "ICPPSO": 0.748,
    "CHPR": 0.839,
    "Panteleris et al. 2018": 0.941,
    "Zimmermann & Brox 2017": 0.948,
    "Mueller et al. 2018 (GANerated)": 0.965,
    "Spurr et al. 2018": 0.983,
    "Iqbal et al. 2018": 0.994,
    "Yang et al. 2019": 0.996,
    "Bekiri & Babahenini (paper, claimed)": 0.999,
}

# published STB 3D PCK curves (thresholds in mm, PCK) of the three baselines of Zhang et al.,
# "3D Hand Pose Tracking and Estimation Using Stereo Matching", 2016, as transcribed in
# lmb-freiburg/hand3d, utils/general.py, get_stb_ref_curves (data, 7 thresholds 20-50 mm);
# their AUC(20-50 mm) is the PUBLISHED_STB_AUC value (tests/test_metrics.py checks it)
_STB_CURVE_MM = (20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0)
PUBLISHED_STB_CURVES: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "PSO": (
        _STB_CURVE_MM,
        (0.32236842, 0.53947368, 0.67434211, 0.75657895, 0.80921053, 0.86513158, 0.89473684),
    ),
    "ICPPSO": (
        _STB_CURVE_MM,
        (0.51973684, 0.64473684, 0.71710526, 0.77302632, 0.80921053, 0.84868421, 0.86842105),
    ),
    "CHPR": (_STB_CURVE_MM, (0.56578947, 0.71710526, 0.82236842, 0.88157895, 0.91447368, 0.9375, 0.96052632)),
}


# ----------------------------------------------------------------------------------------
# helpers


def _np(x) -> np.ndarray:
    if type(x).__module__.startswith("torch"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _mask(visible, shape) -> np.ndarray:
    if visible is None:
        return np.ones(shape, dtype=bool)
    if type(visible).__module__.startswith("torch"):
        visible = visible.detach().cpu().numpy()
    m = np.asarray(visible).astype(bool)
    if m.shape != shape:
        raise ValueError(f"visible mask: expected shape {shape}, got {m.shape}")
    return m


def _batch(x, name: str, dims: tuple[int, ...] = (2, 3)) -> np.ndarray:
    """``x`` as an (N, J, D) float64 array with D in ``dims``, or a ValueError naming the fix."""
    a = _np(x)
    if a.ndim != 3:
        fix = f"add the batch axis ({name}[None])" if a.ndim == 2 else "pass one row per sample"
        raise ValueError(f"{name}: expected an (N, J, D) array, got shape {a.shape}; {fix}")
    if a.shape[2] not in dims:
        want = " or ".join(str(d) for d in dims)
        raise ValueError(f"{name}: expected D = {want} coordinates per joint, got shape {a.shape}")
    return a


def _check(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    p, g = _np(pred), _np(gt)
    if p.shape != g.shape or p.ndim != 3:
        raise ValueError(
            f"pred and gt must both be (N, J, D) of the same shape; got {p.shape} and {g.shape} "
            "(same samples, joints and 2D/3D in both)"
        )
    return p, g


def distances(pred, gt) -> np.ndarray:
    """Euclidean distance per sample and joint: (N, J, D) x 2 -> (N, J)."""
    p, g = _check(pred, gt)
    return np.linalg.norm(p - g, axis=-1)


# ----------------------------------------------------------------------------------------
# EPE, PCK, AUC (hand3d convention)


@dataclass
class EPE:
    """End-point error: ``mean`` and ``median`` are means over joints of per-joint values
    (hand3d); ``per_joint_mean``/``per_joint_median`` are ``(J,)`` with NaN for joints that
    were never visible; ``count`` is the number of (sample, joint) pairs used."""

    mean: float
    median: float
    per_joint_mean: np.ndarray
    per_joint_median: np.ndarray
    count: int


def epe(pred, gt, visible=None) -> EPE:
    """Mean end-point error (px for 2D, mm for 3D), overall and per joint.

    Args:
        pred, gt: (N, J, D).
        visible: optional (N, J) bool mask.
    """
    d = distances(pred, gt)
    m = _mask(visible, d.shape)
    j = d.shape[1]
    means = np.full(j, np.nan)
    medians = np.full(j, np.nan)
    for k in range(j):
        dk = d[m[:, k], k]
        if dk.size:
            means[k], medians[k] = dk.mean(), np.median(dk)
    ok = ~np.isnan(means)
    mean = float(means[ok].mean()) if ok.any() else float("nan")
    median = float(medians[ok].mean()) if ok.any() else float("nan")
    return EPE(mean, median, means, medians, int(m.sum()))


@dataclass
class PCK:
    """PCK curve: ``pck`` (T,) mean over joints; ``per_joint`` (J, T) with NaN rows for
    joints never visible; ``thresholds`` (T,)."""

    thresholds: np.ndarray
    pck: np.ndarray
    per_joint: np.ndarray = field(repr=False)


def pck(pred, gt, thresholds, visible=None) -> PCK:
    """Percentage of correct keypoints, hand3d convention (``d <= t``).

    Per joint: the fraction of its visible samples within ``t``; then the mean over joints
    that have at least one visible sample.
    """
    t = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    d = distances(pred, gt)
    m = _mask(visible, d.shape)
    per_joint = np.full((d.shape[1], t.size), np.nan)
    for k in range(d.shape[1]):
        dk = d[m[:, k], k]
        if dk.size:
            per_joint[k] = (dk[:, None] <= t[None, :]).mean(axis=0)
    ok = ~np.isnan(per_joint[:, 0])
    curve = per_joint[ok].mean(axis=0) if ok.any() else np.full(t.size, np.nan)
    return PCK(t, curve, per_joint)


@dataclass
class AUC:
    """Area under the PCK curve, normalised to [0, 1]: ``auc`` (mean over joints of the
    per-joint AUC, hand3d), ``per_joint`` (J,), and the ``thresholds`` grid used."""

    auc: float
    per_joint: np.ndarray
    thresholds: np.ndarray
    curve: PCK = field(repr=False)


def _trapz(y, x):
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # noqa: NPY201 (numpy < 2)
    return trapezoid(y, x)


def auc(pred, gt, thresholds=None, visible=None, verbose: bool = False) -> AUC:
    """AUC of the PCK curve, hand3d convention: ``trapz(PCK_j, t) / (t_max - t_min)``,
    averaged over joints.

    ``thresholds`` defaults to ``linspace(20, 50, 31)`` mm (the paper's AUC 20-50 mm);
    the grid is returned in the result, and printed when ``verbose``.
    """
    t = DEFAULT_3D_THRESHOLDS if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    t = np.sort(t.reshape(-1))  # trapz over an unsorted grid integrates backwards
    if t.size < 2 or not np.isfinite(t).all() or t.max() <= t.min():
        raise ValueError(f"auc needs at least two distinct finite thresholds, got {t.tolist()}")
    curve = pck(pred, gt, t, visible)
    norm = t.max() - t.min()
    per_joint = np.array(
        [_trapz(row, t) / norm if not np.isnan(row[0]) else np.nan for row in curve.per_joint]
    )
    ok = ~np.isnan(per_joint)
    value = float(per_joint[ok].mean()) if ok.any() else float("nan")
    if verbose:
        print(f"AUC over {t.size} thresholds {t.min():g}..{t.max():g}: {value:.4f}")
    return AUC(value, per_joint, t, curve)


# ----------------------------------------------------------------------------------------
# alignment


def align_root(joints, root: int = 0):
    """Root-relative coordinates: subtract joint ``root``. (N, J, D) -> (N, J, D)."""
    j = _batch(joints, "joints")
    if not 0 <= root < j.shape[1]:
        raise ValueError(f"align_root: root joint {root} does not exist in {j.shape[1]} joints")
    return j - j[:, root : root + 1, :]


def align_scale(pred, gt, bone: tuple[int, int] = REFERENCE_BONE, root: int = 0):
    """Root-align both and scale the prediction so its reference bone has the ground truth's
    length (hand3d ``eval_full.py``: middle MCP -> PIP). Returns the aligned prediction.

    A prediction whose reference bone has zero length is only root-aligned.
    """
    p, g = _check(pred, gt)
    a, b = bone
    if max(a, b, root) >= p.shape[1]:
        raise ValueError(
            f"align_scale: bone {bone} / root {root} need joints the {p.shape[1]}-joint arrays do not have"
        )
    p, g = align_root(p, root), align_root(g, root)
    lp = np.linalg.norm(p[:, b] - p[:, a], axis=-1)
    lg = np.linalg.norm(g[:, b] - g[:, a], axis=-1)
    s = np.where(lp > 1e-12, lg / np.where(lp > 1e-12, lp, 1.0), 1.0)
    return p * s[:, None, None]


def procrustes(pred, gt, visible=None, scale: bool = True):
    """Per-sample similarity (Procrustes) alignment of ``pred`` onto ``gt``, for analysis.

    Finds rotation R, scale s and translation t minimising ``||s R p + t - g||`` over the
    visible joints (Umeyama 1991, reflections excluded). Returns the aligned (N, J, D).
    """
    p, g = _check(pred, gt)
    m = _mask(visible, p.shape[:2])
    out = np.empty_like(p)
    for i in range(p.shape[0]):
        pi, gi = p[i][m[i]], g[i][m[i]]
        if len(pi) == 0:
            out[i] = p[i]
            continue
        mp, mg = pi.mean(0), gi.mean(0)
        x, y = pi - mp, gi - mg
        u, s, vt = np.linalg.svd(x.T @ y)
        d = np.ones(p.shape[2])
        d[-1] = np.sign(np.linalg.det(u @ vt)) or 1.0
        r = (u * d) @ vt  # rotation applied as x @ r
        var = (x**2).sum()
        k = (s * d).sum() / var if (scale and var > 0) else 1.0
        out[i] = k * (p[i] - mp) @ r + mg
    return out


# ----------------------------------------------------------------------------------------
# mmpose-style 2D metrics (normalised by box size, strict <)


def _mmpose_norm_dist(pred, gt, mask, norm) -> np.ndarray:
    p, g = _check(pred, gt)
    n = np.asarray(norm, dtype=np.float64)
    if n.ndim == 0:
        n = np.full((p.shape[0], p.shape[2]), float(n))
    elif n.ndim == 1:
        n = np.repeat(n[:, None], p.shape[2], axis=1)
    m = _mask(mask, p.shape[:2]).copy()
    m[np.where((n == 0).sum(1))[0], :] = False
    d = np.full(p.shape[:2], -1.0)
    safe = np.where(n == 0, 1.0, n)
    d[m] = np.linalg.norm((p - g) / safe[:, None, :], axis=-1)[m]
    return d


def mmpose_pck(pred, gt, mask, thr: float, norm) -> tuple[np.ndarray, float, int]:
    """mmpose ``keypoint_pck_accuracy``: per-joint accuracy (-1 where no valid sample),
    its mean over valid joints, and the number of valid joints. ``norm``: scalar, (N,) or
    (N, 2) normalisation size (e.g. the box's max side); correct when ``d / norm < thr``."""
    d = _mmpose_norm_dist(pred, gt, mask, norm)
    acc = np.full(d.shape[1], -1.0)
    for k in range(d.shape[1]):
        v = d[:, k][d[:, k] != -1]
        if v.size:
            acc[k] = (v < thr).mean()
    valid = acc[acc >= 0]
    cnt = int(valid.size)
    return acc, float(valid.mean()) if cnt else 0.0, cnt


def mmpose_auc(pred, gt, mask, norm_factor: float = 30.0, num_thrs: int = 20) -> float:
    """mmpose ``keypoint_auc``: mean PCK over thresholds ``i / num_thrs`` (i < num_thrs)
    of distances divided by ``norm_factor`` pixels (default 30 px)."""
    thrs = [i / num_thrs for i in range(num_thrs)]
    return float(np.mean([mmpose_pck(pred, gt, mask, t, norm_factor)[1] for t in thrs]))


def mmpose_epe(pred, gt, mask=None) -> float:
    """mmpose ``keypoint_epe``: mean pixel distance over all valid (sample, joint) pairs."""
    d = _mmpose_norm_dist(pred, gt, mask, 1.0)
    v = d[d != -1]
    return float(v.sum() / max(1, v.size))


def bbox_size(joints2d, visible=None) -> np.ndarray:
    """Max side of each sample's tight box around its (visible) 2D joints: (N, J, 2) -> (N,)."""
    j = _batch(joints2d, "joints2d", dims=(2,))
    m = _mask(visible, j.shape[:2])
    out = np.zeros(j.shape[0])
    for i in range(j.shape[0]):
        pts = j[i][m[i]]
        if len(pts):
            out[i] = (pts.max(0) - pts.min(0)).max()
    return out


# ----------------------------------------------------------------------------------------
# how sure a number on few samples is


def grouped_bootstrap(statistic, groups, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple:
    """Percentile interval of ``statistic`` by resampling *groups*, not samples.

    Samples of one group (the same hand photographed several times) are not independent, so the
    bootstrap draws whole groups with replacement (a cluster bootstrap) and the interval reflects
    how many different groups there are.

    Args:
        statistic: ``f(indices) -> float`` for an int array of sample indices (with repeats).
        groups: (N,) group label of each sample.
        n_boot: resamples; level: coverage of the interval (default 0.95); seed: the draws.
    Returns:
        ``(low, high)``.
    """
    groups = np.asarray(groups)
    labels = list(dict.fromkeys(groups.tolist()))
    members = [np.flatnonzero(groups == g) for g in labels]
    if not members:
        raise ValueError("grouped_bootstrap: no samples")
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    for b in range(n_boot):
        pick = rng.integers(0, len(members), len(members))
        stats[b] = statistic(np.concatenate([members[k] for k in pick]))
    a = (1.0 - level) / 2
    return float(np.quantile(stats, a)), float(np.quantile(stats, 1.0 - a))
