"""The hand verifier: pose confidence, the logistic fit, thresholds, and the pipeline using it."""

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from handpose_lib import verify
from handpose_lib.data.synthetic import SyntheticConfig, SyntheticHands
from handpose_lib.detect import load_detector
from handpose_lib.pipeline import HandPipeline, joints_box, load_pipeline
from handpose_lib.verify import HandVerifier, best_f1_threshold, fit_logistic, load_verifier, pose_confidence

ROOT = Path(__file__).resolve().parents[1]
BOOK_MODEL, DETECTOR = ROOT / "models" / "book-tiny", ROOT / "models" / "detector"


@pytest.fixture(scope="module")
def model():
    from handpose_lib.inference import load_trained

    return load_trained(BOOK_MODEL)[0]


@pytest.fixture(scope="module")
def frame():
    """A 640 x 480 procedural mesh hand (one, right) and its joints."""
    cfg = SyntheticConfig(full_frame=True, occlusion="none", hand_model="mesh")
    b = SyntheticHands(4, seed=3, config=cfg).render_batch([1])
    return (b["image"][0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), b["joints2d"][0].numpy()


def test_pose_confidence_is_the_mean_peak():
    flat = torch.full((2, 21, 8, 8), 1 / 64)
    sharp = torch.zeros(1, 21, 8, 8)
    sharp[0, :, 3, 4] = 1.0
    sharp[0, :11] = 1 / 64  # 11 flat maps, 10 one-hot ones
    c = pose_confidence(torch.cat([flat, sharp]))
    assert c.shape == (3,)
    torch.testing.assert_close(c, torch.tensor([1 / 64, 1 / 64, (11 / 64 + 10) / 21]))


def test_fit_logistic_recovers_known_weights():
    rng = np.random.default_rng(0)
    X = np.c_[rng.normal(0, 1, (20000, 2)), np.ones(20000)]
    w = np.array([1.5, -2.0, 0.5])
    y = (rng.uniform(size=20000) < 1 / (1 + np.exp(-X @ w))).astype(float)
    np.testing.assert_allclose(fit_logistic(X, y), w, atol=0.1)


def test_best_f1_threshold_by_hand():
    # 3 labelled hands; candidates 0.9 (hand), 0.8 (not), 0.6 (hand), 0.3 (not), a hand never proposed
    v, y = np.array([0.9, 0.8, 0.6, 0.3]), np.array([1.0, 0, 1, 0])
    # t in (0.6, 0.8]: r 1/3, p 1/2, F1 0.4; t in (0.3, 0.6]: r 2/3, p 2/3, F1 0.667; t <= 0.3: 0.571
    assert best_f1_threshold(v, y, 3) == pytest.approx(0.325)


def test_verifier_probability_round_trip_and_refuses_other_weights(tmp_path):
    v = HandVerifier(1.0, 2.0, 3.0, 0.5, model_sha256="a" * 64, detector_sha256="b" * 64)
    p = v.prob([0.5, 0.5], [np.exp(-1.5), 1.0])
    np.testing.assert_allclose(p, [0.5, 1 / (1 + np.exp(-3.0))])
    (tmp_path / verify.VERIFIER_FILE).write_text(json.dumps(v.to_dict()))
    assert load_verifier(tmp_path, "a" * 64, "b" * 64) == v
    with pytest.raises(ValueError, match="another pose model"):
        load_verifier(tmp_path, "c" * 64, "b" * 64)
    with pytest.raises(ValueError, match="another detector"):
        load_verifier(tmp_path / verify.VERIFIER_FILE, "a" * 64, "c" * 64)


def test_pipeline_keeps_what_the_verifier_calls_hands(model, frame):
    img, uv = frame
    det = load_detector(DETECTOR)
    everyone = HandVerifier(0.0, 0.0, 10.0, 0.5, candidates=3, candidate_thresh=0.0)  # p ~ 1
    nobody = HandVerifier(0.0, 0.0, -10.0, 0.5, candidates=3, candidate_thresh=0.0)  # p ~ 0
    hands = HandPipeline(model, det, verifier=everyone)(img)
    assert len(hands) == 3 and all(h.score > 0.99 for h in hands)  # the 3 best boxes, each estimated
    assert all(0 < h.confidence <= 1 for h in hands) and "pose_confidence" in hands[0].to_dict()
    assert HandPipeline(model, det, verifier=nobody)(img) == []
    # by the pose confidence only: the hand's own box is more confident than the detector's others
    (given,) = HandPipeline(model)(img, boxes=[joints_box(uv)], sides=["right"])
    by_conf = HandVerifier(
        0.0, 1.0, -float(np.log(given.confidence)) + 1e-6, 0.5, candidates=4, candidate_thresh=0.0
    )
    kept = HandPipeline(model, det, verifier=by_conf)(img)
    assert all(h.confidence >= given.confidence * (1 - 1e-5) for h in kept)


def test_load_pipeline_finds_the_detectors_verifier_when_it_fits(tmp_path):
    folder = tmp_path / "detector"
    shutil.copytree(DETECTOR, folder)
    (folder / verify.VERIFIER_FILE).unlink(missing_ok=True)
    assert load_pipeline(BOOK_MODEL, folder).verifier is None
    model_sha = json.loads((BOOK_MODEL / "checkpoint.json").read_text())["files"]["model.safetensors"][
        "sha256"
    ]
    det_sha = load_detector(folder).weights_sha256
    good = HandVerifier(1.0, 2.0, 3.0, 0.4, model_sha256=model_sha, detector_sha256=det_sha)
    (folder / verify.VERIFIER_FILE).write_text(json.dumps(good.to_dict()))
    assert load_pipeline(BOOK_MODEL, folder).verifier == good
    assert load_pipeline(BOOK_MODEL, folder, verifier=None).verifier is None
    stale = HandVerifier(1.0, 2.0, 3.0, 0.4, model_sha256="0" * 64, detector_sha256=det_sha)
    (folder / verify.VERIFIER_FILE).write_text(json.dumps(stale.to_dict()))
    with pytest.warns(UserWarning, match="another pose model"):
        assert load_pipeline(BOOK_MODEL, folder).verifier is None
    with pytest.raises(ValueError, match="another pose model"):
        load_pipeline(BOOK_MODEL, folder, verifier=folder / verify.VERIFIER_FILE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_pipeline(BOOK_MODEL, None).verifier is None  # no detector, no verifier


def test_fit_verifier_on_a_few_procedural_frames(model):
    det = load_detector(DETECTOR)
    v = verify.fit_verifier(model, det, verify.procedural_frames(1, 24), k=4)
    assert 0.05 <= v.threshold <= 0.95 and v.candidates == 4
    assert v.w_pose > 0  # a sharper pose answer means a hand more likely
    m = v.metrics["val"]
    assert m["candidates"] >= m["hands"] > 0 and 0 <= m["verified"]["ap50"] <= 1


def test_tracker_starts_from_the_verified_hands(model, frame):
    from handpose_lib.pipeline import HandTracker

    img, _ = frame
    everyone = HandVerifier(0.0, 0.0, 10.0, 0.5, candidates=3, candidate_thresh=0.0)
    tracker = HandTracker(HandPipeline(model, load_detector(DETECTOR), verifier=everyone), max_hands=2)
    hands = tracker.step(img, 0.0)
    assert len(hands) == 2 and tracker.detector_runs == 1 and all(h.score > 0.99 for h in hands)
