import numpy as np
import pytest
import torch

from handpose_lib import metrics as M


def mmpose_epe_case():
    out = np.zeros((1, 5, 2))
    tgt = np.zeros((1, 5, 2))
    mask = np.array([[True, True, False, True, True]])
    out[0, 0], tgt[0, 0] = [10, 4], [10, 0]
    out[0, 1], tgt[0, 1] = [10, 18], [10, 10]
    out[0, 2], tgt[0, 2] = [0, 0], [-1, -1]
    out[0, 3], tgt[0, 3] = [40, 40], [30, 30]
    out[0, 4], tgt[0, 4] = [20, 10], [0, 10]
    return out, tgt, mask


def test_mmpose_worked_examples():
    out, tgt, mask = mmpose_epe_case()
    assert M.mmpose_epe(out, tgt, mask) == pytest.approx(11.5355339, abs=1e-6)
    # (4 + 8 + sqrt(200) + 20) / 4
    assert M.mmpose_epe(out, tgt, mask) == pytest.approx((4 + 8 + 200**0.5 + 20) / 4)
    out[0, 2], tgt[0, 2] = [0, 0], [0, -1]
    assert M.mmpose_auc(out, tgt, mask, 20, 4) == pytest.approx(0.375, abs=1e-6)

    o = np.zeros((2, 5, 2))
    t = np.zeros((2, 5, 2))
    m = np.array([[True, True, False, True, True]] * 2)
    o[0, 0], t[0, 0] = [10, 0], [10, 0]
    o[0, 1], t[0, 1] = [20, 20], [10, 10]
    o[0, 2], t[0, 2] = [0, 0], [-1, 0]
    o[0, 3], t[0, 3] = [30, 30], [30, 30]
    o[0, 4], t[0, 4] = [0, 10], [0, 10]
    acc, avg, cnt = M.mmpose_pck(o, t, m, 0.5, np.full((2, 2), 10.0))
    np.testing.assert_allclose(acc, [1, 0.5, -1, 1, 1])
    assert avg == pytest.approx(0.875) and cnt == 4
    acc, avg, cnt = M.mmpose_pck(o, t, m, 0.5, np.zeros((2, 2)))
    np.testing.assert_allclose(acc, [-1] * 5)
    assert avg == 0 and cnt == 0
    acc, avg, cnt = M.mmpose_pck(o, t, m, 0.5, np.array([[0, 0], [10, 10]]))
    np.testing.assert_allclose(acc, [1, 1, -1, 1, 1])


def test_epe_hand_computed_with_mask():
    gt = np.zeros((2, 21, 3))
    pred = np.zeros((2, 21, 3))
    pred[0, :, 0] = 3.0  # every joint 3 mm off in sample 0
    pred[1, :, 1] = 5.0  # 5 mm off in sample 1
    vis = np.ones((2, 21), bool)
    vis[1, 0] = False  # joint 0 only counted in sample 0
    r = M.epe(pred, gt, vis)
    assert r.per_joint_mean[0] == pytest.approx(3.0)
    assert r.per_joint_mean[1] == pytest.approx(4.0)
    assert r.mean == pytest.approx((3.0 + 20 * 4.0) / 21)
    assert r.count == 41
    # torch input agrees with numpy
    r2 = M.epe(torch.tensor(pred), torch.tensor(gt), torch.tensor(vis))
    assert r2.mean == pytest.approx(r.mean)


def test_pck_is_inclusive_and_auc_trapz():
    gt = np.zeros((4, 21, 3))
    pred = np.zeros((4, 21, 3))
    pred[:, :, 0] = np.array([10.0, 20.0, 30.0, 40.0])[:, None]
    p = M.pck(pred, gt, [10, 20, 25, 40])
    np.testing.assert_allclose(p.pck, [0.25, 0.5, 0.5, 1.0])  # d <= t
    a = M.auc(pred, gt, [20, 30, 40, 50])
    # PCK at 20,30,40,50 = .5,.75,1,1 -> trapz = 10*(.625 + .875 + 1) = 25 ; / 30
    assert a.auc == pytest.approx(25 / 30)
    np.testing.assert_allclose(a.thresholds, [20, 30, 40, 50])


def test_auc_default_grid_and_perfect():
    gt = np.random.default_rng(0).normal(size=(5, 21, 3))
    a = M.auc(gt, gt)
    assert a.auc == 1.0
    np.testing.assert_allclose(a.thresholds, np.linspace(20, 50, 31))
    far = gt + 100.0
    assert M.auc(far, gt).auc == 0.0


def test_auc_skips_never_visible_joints():
    gt = np.zeros((3, 21, 2))
    pred = gt.copy()
    pred[:, 5] = 1000.0
    vis = np.ones((3, 21), bool)
    vis[:, 5] = False
    assert M.auc(pred, gt, M.DEFAULT_2D_THRESHOLDS, vis).auc == pytest.approx(1.0)
    assert np.isnan(M.epe(pred, gt, vis).per_joint_mean[5])


def test_alignments():
    rng = np.random.default_rng(1)
    gt = rng.normal(scale=30, size=(3, 21, 3))
    pred = 2.0 * (gt - gt[:, :1]) + 7.0
    np.testing.assert_allclose(M.align_root(gt)[:, 0], 0)
    aligned = M.align_scale(pred, gt)
    np.testing.assert_allclose(aligned, gt - gt[:, :1], atol=1e-9)
    # procrustes recovers a rotated, scaled, shifted copy
    th = 0.7
    r = np.array([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1]])
    moved = 1.5 * gt @ r.T + 3.0
    np.testing.assert_allclose(M.procrustes(moved, gt), gt, atol=1e-8)


def test_procrustes_matches_mmpose_mpjpe():
    o = np.zeros((2, 5, 3))
    t = np.zeros((2, 5, 3))
    m = np.array([[True, True, False, True, True]] * 2)
    o[0, 0], t[0, 0], o[1, 0], t[1, 0] = [1, 0, 0], [1, 0, 0], [1, 0, 0], [1, 1, 0]
    o[0, 1], t[0, 1], o[1, 1], t[1, 1] = [2, 2, 0], [1, 1, 1], [2, 2, 1], [1, 0, 1]
    o[0, 2], t[0, 2], o[1, 2], t[1, 2] = [0, 0, -1], [-1, 0, 0], [-1, 0, 0], [-1, 0, 0]
    o[0, 3], t[0, 3], o[1, 3], t[1, 3] = [3, 3, 1], [3, 3, 1], [0, 0, 3], [0, 0, 3]
    o[0, 4], t[0, 4], o[1, 4], t[1, 4] = [0, 1, 1], [0, 1, 0], [0, 0, 1], [1, 1, 0]
    d = np.linalg.norm(o - t, axis=-1)[m].mean()
    assert d == pytest.approx(0.9625211990796929)
    # mmpose aligns on all joints, then averages the error over the masked ones
    aligned = M.procrustes(o, t)
    assert np.linalg.norm(aligned - t, axis=-1)[m].mean() == pytest.approx(1.0047897634604497, abs=1e-6)


def test_shape_errors():
    with pytest.raises(ValueError, match=r"\(N, J, D\)"):
        M.epe(np.zeros((2, 21, 3)), np.zeros((2, 21, 2)))
    with pytest.raises(ValueError, match="visible mask"):
        M.epe(np.zeros((2, 21, 3)), np.zeros((2, 21, 3)), np.ones((2, 20), bool))


def test_bbox_size():
    j = np.zeros((1, 21, 2))
    j[0, 1] = [30, 10]
    assert M.bbox_size(j)[0] == 30


def test_auc_unsorted_thresholds_equal_sorted():
    rng = np.random.default_rng(3)
    gt = rng.normal(scale=30, size=(5, 21, 3))
    pred = gt + rng.normal(scale=20, size=gt.shape)
    a = M.auc(pred, gt, [50, 20])
    assert a.auc == pytest.approx(M.auc(pred, gt, [20, 50]).auc)
    assert 0 <= a.auc <= 1
    np.testing.assert_array_equal(a.thresholds, [20, 50])
    with pytest.raises(ValueError, match="finite"):
        M.auc(pred, gt, [20, np.inf])


@pytest.mark.parametrize(
    "pred_shape,gt_shape",
    [((1, 21, 3), (5, 21, 3)), ((5, 21, 3), (5, 20, 3)), ((5, 21, 2), (5, 21, 3)), ((21, 3), (21, 3))],
)
def test_align_scale_refuses_mismatched_shapes(pred_shape, gt_shape):
    with pytest.raises(ValueError, match=r"\(N, J, D\)"):
        M.align_scale(np.ones(pred_shape), np.ones(gt_shape))


def test_align_root_and_bbox_size_need_a_batch():
    with pytest.raises(ValueError, match=r"joints\[None\]"):
        M.align_root(np.ones((21, 3)))
    with pytest.raises(ValueError, match="root joint 30"):
        M.align_root(np.ones((2, 21, 3)), root=30)
    with pytest.raises(ValueError, match=r"joints2d\[None\]"):
        M.bbox_size(np.ones((21, 2)))
    with pytest.raises(ValueError, match="D = 2"):
        M.bbox_size(np.ones((2, 21, 3)))
    with pytest.raises(ValueError, match="visible mask"):
        M.bbox_size(np.ones((2, 21, 2)), np.ones((2, 20), bool))


def test_published_stb_curves_integrate_to_the_published_auc():
    """The transcribed curves (Zhang et al. 2016) give the AUC(20-50 mm) the papers print."""
    for name, (t, pck) in M.PUBLISHED_STB_CURVES.items():
        t, pck = np.asarray(t), np.asarray(pck)
        assert t[0] == 20 and t[-1] == 50 and np.all(np.diff(pck) >= 0)
        auc = np.sum((pck[1:] + pck[:-1]) / 2 * np.diff(t)) / 30.0  # the trapezoid rule
        assert auc == pytest.approx(M.PUBLISHED_STB_AUC[name], abs=6e-4), name


def test_grouped_bootstrap_resamples_groups_not_samples():
    """Ten groups of four identical samples: the interval is that of ten samples (the copies
    move together), about twice as wide as if the forty were independent; a constant statistic
    gives a point; the draws are fixed by the seed."""
    from handpose_lib.metrics import grouped_bootstrap

    values = np.repeat(np.array([0.0, 1.0] * 5), 4)
    groups = np.repeat(np.arange(10), 4)
    mean = lambda idx: values[idx].mean()  # noqa: E731
    lo, hi = grouped_bootstrap(mean, groups)
    lo1, hi1 = grouped_bootstrap(lambda idx: values[::4][idx].mean(), np.arange(10))
    lo_i, hi_i = grouped_bootstrap(mean, np.arange(40))
    assert lo < 0.5 < hi and (lo, hi) == (lo1, hi1)
    assert (hi - lo) > 1.6 * (hi_i - lo_i)
    assert grouped_bootstrap(mean, groups) == (lo, hi)
    assert grouped_bootstrap(lambda idx: 0.3, groups) == (0.3, 0.3)
    with pytest.raises(ValueError, match="no samples"):
        grouped_bootstrap(mean, [])


def test_real_hand_ids_make_16_photos_10_hands():
    from handpose_lib.data.coco import real_hand_id, real_hands_sample

    ids = [real_hand_id(p) for p in real_hands_sample().index["path"]]
    assert len(ids) == 16 and len(set(ids)) == 10
    assert real_hand_id("x/freihand/00017620.jpg") == real_hand_id("x/freihand/00050180.jpg")
    assert real_hand_id("p/panoptic/a_l.jpg") != real_hand_id("p/panoptic/a_r.jpg")
