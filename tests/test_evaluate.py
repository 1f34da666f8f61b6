"""evaluate.py: metrics of a model with known outputs, splits, report and figures."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from handpose_lib import evaluate as ev
from handpose_lib import skeleton, viz
from handpose_lib.data.sample import VIS_OBJECT, VIS_SELF, VIS_VISIBLE, make_sample


def _random_hands(n, seed=0):
    rng = np.random.default_rng(seed)
    j3 = rng.normal(0, 30, (n, 21, 3)) + np.array([0, 0, 400.0])
    j2 = rng.uniform(10, 118, (n, 21, 2))
    vis = rng.choice([VIS_VISIBLE, VIS_OBJECT, VIS_SELF], size=(n, 21), p=[0.6, 0.25, 0.15])
    return j2, j3, vis


class _Indexed(torch.utils.data.Dataset):
    """Samples whose image encodes their index, so a fake model can look up its answer."""

    def __init__(self, j2, j3, vis):
        self.j2, self.j3, self.vis = j2, j3, vis

    def __len__(self):
        return len(self.j2)

    def __getitem__(self, i):
        img = torch.zeros(3, 16, 16)
        img[0, 0, 0] = float(i)
        return make_sample(
            img, self.j2[i], self.j3[i], np.eye(3), dataset="t", sample_id=i, visibility=self.vis[i]
        )


class _Oracle(torch.nn.Module):
    """Returns the ground truth (2D px, 3D in reference-bone units), optionally perturbed."""

    def __init__(self, j2, j3, noise2d=0.0, noise3d_mm=0.0):
        super().__init__()
        norm, ref = skeleton.normalise_3d(j3)
        rng = np.random.default_rng(1)
        self.p2 = torch.tensor(j2 + rng.normal(0, 1, j2.shape) * noise2d, dtype=torch.float32)
        self.p3 = torch.tensor(norm + rng.normal(0, 1, j3.shape) * noise3d_mm / ref[:, None, None])
        self.p3 = self.p3.float()

    def forward(self, x):
        idx = x[:, 0, 0, 0].round().long()
        return SimpleNamespace(coords2d=self.p2[idx], joints3d=self.p3[idx])


def test_oracle_model_scores_perfectly():
    j2, j3, vis = _random_hands(40)
    j2 = j2.astype(np.float32).astype(np.float64)  # what a float32 model can return exactly
    rep = ev.evaluate(_Oracle(j2, j3), _Indexed(j2, j3, vis), batch_size=16, device="cpu", dataset="t")
    o = rep["overall"]
    assert o["epe2d_px"] == 0.0
    assert o["epe3d_mm"] == pytest.approx(0, abs=1e-3)
    assert o["auc3d_20_50"] == pytest.approx(1.0)
    assert o["auc2d_0_30"] == 1.0  # the 2D grid starts at 0 px: PCK(0) = 1 needs exact answers
    assert rep["n_samples"] == 40
    assert set(rep["by_visibility"]) >= {"visible", "hidden", "hidden_by_object", "hidden_by_hand"}
    assert rep["by_visibility"]["visible"]["auc3d_20_50"] == pytest.approx(1.0)
    assert len(rep["per_joint"]) == 21 and len(rep["per_finger"]) == 5


def test_known_error_is_measured():
    # every 2D joint off by exactly (3, 4) -> 5 px; every 3D joint (except the root) off by 60 mm
    j2, j3, vis = _random_hands(30)
    off3 = np.zeros_like(j3)
    off3[:, 1:, 0] = 60.0
    pred3d = (j3 + off3 - j3[:, :1]) / skeleton.reference_bone_length(j3)[:, None, None]
    rep = ev.evaluate_predictions(j2 + np.array([3.0, 4.0]), j2, pred3d, j3, vis)
    o = rep["overall"]
    assert o["epe2d_px"] == pytest.approx(5.0)
    # 20 of 21 joints at 60 mm (beyond 50 mm), the root at 0 -> EPE 60*20/21, AUC 1/21
    assert o["epe3d_mm"] == pytest.approx(60.0 * 20 / 21)
    assert o["auc3d_20_50"] == pytest.approx(1 / 21)
    assert rep["per_joint"]["wrist"]["epe3d_mm"] == pytest.approx(0.0)
    assert rep["per_finger"]["thumb"]["epe3d_mm"] == pytest.approx(60.0)
    # 2D PCK curve: 0 below 5 px, 1 from 5 px on
    t = np.array(rep["protocol"]["pck2d_thresholds_px"])
    assert np.allclose(np.array(rep["overall"]["pck2d"]), (t >= 5.0 - 1e-9).astype(float))


def test_alignments_differ_only_by_predicted_scale():
    j2, j3, _ = _random_hands(10)
    norm, _ = skeleton.normalise_3d(j3)
    rep_gt = ev.evaluate_predictions(j2, j2, norm * 1.1, j3, alignment="gt_ref")
    rep_h3 = ev.evaluate_predictions(j2, j2, norm * 1.1, j3, alignment="hand3d")
    assert rep_gt["overall"]["epe3d_mm"] > 1.0  # 10 % too big
    assert rep_h3["overall"]["epe3d_mm"] == pytest.approx(0.0, abs=1e-6)  # rescaled away
    assert rep_gt["epe3d_mm_hand3d"] == pytest.approx(0.0, abs=1e-6)
    assert "hand3d" in rep_h3["protocol"]["3d"]
    with pytest.raises(ValueError, match="alignment"):
        ev.evaluate_predictions(j2, j2, norm, j3, alignment="bogus")


def test_bad_inputs_are_named():
    j2, j3, _ = _random_hands(4)
    with pytest.raises(ValueError, match="expected"):
        ev.evaluate_predictions(j2[:, :20], j2[:, :20], j3, j3)
    pred = skeleton.normalise_3d(j3)[0]
    pred[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ev.evaluate_predictions(j2, j2, pred, j3)


def test_report_json_and_figures(tmp_path):
    j2, j3, vis = _random_hands(12)
    rep = ev.evaluate(_Oracle(j2, j3, 2.0, 25.0), _Indexed(j2, j3, vis), device="cpu", dataset="synthetic")
    p = ev.write_report(rep, tmp_path / "r.json")
    again = json.loads(p.read_text())
    assert again["overall"]["epe2d_px"] == pytest.approx(rep["overall"]["epe2d_px"])
    assert 0 < again["overall"]["auc3d_20_50"] < 1
    paths = viz.write_figures(rep, tmp_path / "fig")
    assert all(p.stat().st_size > 1000 for p in paths)
    fig = viz.pck_figure({"a": rep, "b": rep}, "3d", compare_stb=True)
    names = [t.name for t in fig.data if t.type == "scatter"]
    assert any("hidden" in n for n in names) and len(names) == 6 + 3
    assert "PSO on STB (Zhang et al. 2016), AUC 0.709" in names
    assert len(viz.pck_figure(rep, "3d", compare_stb=False).data) == 3
    bars = [t for t in fig.data if t.type == "bar"][0]
    assert "Zimmermann & Brox 2017" in list(bars.y) and "ours: a (not STB)" in list(bars.y)
    assert "3D EPE" in ev.summary(rep)


class _Constant(torch.nn.Module):
    """The same prediction for every image."""

    def forward(self, x):
        b = x.shape[0]
        j3 = torch.tensor(np.random.default_rng(0).normal(0, 1, (21, 3)), dtype=torch.float32)
        j3 = j3 - j3[:1]
        return SimpleNamespace(coords2d=torch.full((b, 21, 2), 60.0), joints3d=j3.expand(b, 21, 3))


def test_an_unreadable_sample_is_skipped_and_counted_never_replaced(tmp_path, caplog):
    from handpose_lib.data import STB
    from handpose_lib.data.examples import corrupt, write_stb

    write_stb(tmp_path)
    ds = STB(tmp_path, split="test")
    assert len(ds) == 4
    corrupt(tmp_path / ds.index["path"][1])
    rep = ev.evaluate(_Constant(), ds, batch_size=2, device="cpu", dataset="stb")
    good = ev.evaluate(_Constant(), torch.utils.data.Subset(ds, [0, 2, 3]), device="cpu", dataset="stb")
    assert rep["n_samples"] == 3 and rep["samples"]["read"] == 3 and rep["samples"]["skipped"] == 1
    (skipped,) = rep["samples"]["skipped_samples"]
    assert skipped["index"] == 1 and str(ds.index["path"][1]) in skipped["reason"]
    assert rep["overall"] == good["overall"]  # sample 2 was not counted twice
    assert "3 samples read, 1 skipped (unreadable" in ev.summary(rep)
    assert ds.substitute_bad  # training still gets the next sample
    assert ds[1]["meta"]["id"] == ds[2]["meta"]["id"]
