"""The photo/video pipeline: camera-frame solve, left/right mirroring, One-Euro, video, tracking."""

from pathlib import Path

import numpy as np
import pytest
import torch

from handpose_lib import skeleton
from handpose_lib.data.sample import project
from handpose_lib.data.synthetic import SyntheticConfig, SyntheticHands
from handpose_lib.data.synthetic.scene import sample_scene, scene_of
from handpose_lib.detect import Detection
from handpose_lib.pipeline import (
    DEFAULT_FOV_DEG,
    HandPipeline,
    HandTracker,
    OneEuroFilter,
    intrinsics_from_fov,
    joints_box,
    live_camera,
    read_video,
    run_video,
    solve_root,
    write_video,
)

BOOK_MODEL = Path(__file__).resolve().parents[1] / "models" / "book-tiny"


@pytest.fixture(scope="module")
def model():
    from handpose_lib.inference import load_trained

    return load_trained(BOOK_MODEL)[0]


@pytest.fixture(scope="module")
def procedural_frame():
    """A 640 x 480 procedural right hand with its K and labels."""
    b = SyntheticHands(4, seed=7, config=SyntheticConfig(full_frame=True, occlusion="none")).render_batch([2])
    img = (b["image"][0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return (
        img,
        b["joints2d"][0].numpy().astype(np.float64),
        b["joints3d"][0].numpy().astype(np.float64),
        b["K"][0].numpy(),
    )


def test_intrinsics_from_fov():
    K = intrinsics_from_fov(640, 480, 90.0)
    np.testing.assert_allclose(K, [[320, 0, 320], [0, 320, 240], [0, 0, 1]], atol=1e-9)
    f = intrinsics_from_fov(1280, 720)[0, 0]
    assert f == pytest.approx(640 / np.tan(np.radians(DEFAULT_FOV_DEG) / 2))
    with pytest.raises(ValueError, match="fov"):
        intrinsics_from_fov(640, 480, 0.0)


def test_camera_frame_solve_recovers_procedural_hands():
    """Tolerances: exact labels -> root within 0.05 mm; the 43 mm size prior -> depth scaled by
    prior / true bone within 0.5 %; 2D with 2 px noise on top -> depth within 5 % of that."""
    cfg = SyntheticConfig()
    p = sample_scene(7, list(range(16)), cfg)
    _, joints = scene_of(p)
    joints, K = joints.double().numpy(), p["K_full"].double().numpy()
    uv = project(torch.from_numpy(joints), torch.from_numpy(K)).numpy()
    rng = np.random.default_rng(0)
    for j3, k, u in zip(joints, K, uv, strict=True):
        rel = j3 - j3[:1]
        np.testing.assert_allclose(solve_root(u, rel, k), j3[0], atol=0.05)
        bone = skeleton.reference_bone_length(j3)
        rel_prior, _ = skeleton.normalise_3d(j3)
        t = solve_root(u, rel_prior * 43.0, k)
        expected_z = j3[0, 2] * 43.0 / bone  # a hand assumed smaller than it is is nearer
        assert t[2] == pytest.approx(expected_z, rel=0.005)
        t_noisy = solve_root(u + rng.normal(0, 2.0, u.shape), rel_prior * 43.0, k)
        assert t_noisy[2] == pytest.approx(expected_z, rel=0.05)
    with pytest.raises(ValueError, match="at least 2 joints"):
        solve_root(np.full((21, 2), np.nan), np.zeros((21, 3)), K[0])


def test_left_hand_mirroring_round_trip(model, procedural_frame):
    """A left hand (the mirror image of a right hand) gives exactly the mirrored answer."""
    img, uv, j3, K = procedural_frame
    pipe = HandPipeline(model)
    W = img.shape[1]
    box = joints_box(uv)
    (right,) = pipe(img, boxes=[box], sides="right")
    (left,) = pipe(
        np.ascontiguousarray(img[:, ::-1]), boxes=[(W - box[2], box[1], W - box[0], box[3])], sides="left"
    )
    mirrored = np.stack([W - left.joints2d[:, 0], left.joints2d[:, 1]], -1)
    np.testing.assert_allclose(mirrored, right.joints2d, atol=0.01)
    np.testing.assert_allclose(left.joints3d_rel_mm * [-1, 1, 1], right.joints3d_rel_mm, atol=0.01)
    assert left.side == "left" and right.side == "right"
    # without mirroring the model reads the left hand as a right one: a different answer
    (wrong,) = pipe(
        np.ascontiguousarray(img[:, ::-1]), boxes=[(W - box[2], box[1], W - box[0], box[3])], sides="right"
    )
    assert np.abs(np.stack([W - wrong.joints2d[:, 0], wrong.joints2d[:, 1]], -1) - right.joints2d).max() > 1.0


def test_hands_of_a_frame_go_through_the_model_as_one_batch(model, procedural_frame):
    """estimate() batches the crops: the same answers as predict_image hand by hand."""
    from handpose_lib.inference import predict_image

    img, uv, _, _ = procedural_frame
    W, box = img.shape[1], joints_box(uv)
    boxes = [box, (10.0, 20.0, 150.0, 170.0), (W - box[2], box[1], W - box[0], box[3])]
    sides = ["right", "left", None]
    hands = HandPipeline(model).estimate(img, boxes, sides, [0.9, 0.5, 0.7])
    assert [h.score for h in hands] == [0.9, 0.5, 0.7] and hands[1].side == "left"
    flipped = np.ascontiguousarray(img[:, ::-1])
    one = predict_image(model, flipped, (W - 150.0, 20.0, W - 10.0, 170.0))
    np.testing.assert_allclose(hands[1].joints2d[:, 0], W - one.joints2d[:, 0], atol=1e-3)
    for h, b in ((hands[0], boxes[0]), (hands[2], boxes[2])):
        one = predict_image(model, img, b)
        np.testing.assert_allclose(h.joints2d, one.joints2d, atol=1e-3)
        assert h.side == skeleton.side_from_3d(one.joints3d.astype(np.float64))[0] or b is boxes[0]
    assert HandPipeline(model).estimate(img, [], []) == []


def test_side_read_off_the_pose_for_a_model_trained_on_both_hands(model, procedural_frame):
    """side_source="pose": the crop as it is (no mirroring), the side the chirality of the
    predicted 3D; a side given by the caller still wins; load_pipeline picks "pose" for book
    model v4 (trained on both hands) and "detector" for a right-hands-only recipe."""
    from handpose_lib.pipeline import load_pipeline, trained_on_both_hands

    img, uv, _, _ = procedural_frame
    W, box = img.shape[1], joints_box(uv)
    pose = HandPipeline(model, side_source="pose")
    (as_right,) = HandPipeline(model)(img, boxes=[box], sides="right")
    flipped, fbox = np.ascontiguousarray(img[:, ::-1]), (W - box[2], box[1], W - box[0], box[3])
    for image, b in ((img, box), (flipped, fbox)):
        (h,) = pose(image, boxes=[b])
        assert h.crop["mirrored"] is False
        assert h.side == skeleton.side_from_3d(h.joints3d_rel_mm)[0]
    (h,) = pose(img, boxes=[box])
    np.testing.assert_allclose(h.joints2d, as_right.joints2d)  # the same unmirrored crop
    (given,) = pose(flipped, boxes=[fbox], sides="left")
    assert given.side == "left" and given.crop["mirrored"] is True
    assert h.side == "right"  # this procedural right hand is read as one
    det = _FakeDetector(box, side="left")  # detected: the side is read off the pose, not the detector's
    (dd,) = HandPipeline(model, det, side_source="pose")(img)
    assert dd.side == "right" and dd.crop["mirrored"] is False
    (dl,) = HandPipeline(model, det, side_source="detector")(img)
    assert dl.side == "left" and dl.crop["mirrored"] is True
    assert load_pipeline(BOOK_MODEL, detector=None).side_source == "pose"
    assert HandPipeline(model).side_source == "detector"
    assert trained_on_both_hands({"train_config": {"engine": {"left_hand_prob": 0.5}}})
    assert not trained_on_both_hands({"train_config": {"engine": {}}})
    assert not trained_on_both_hands(
        {"train_config": {"data": "freihand", "engine": {"left_hand_prob": 0.5}}}
    )
    with pytest.raises(ValueError, match="side_source"):
        HandPipeline(model, side_source="guess")


def test_tracker_reports_the_majority_of_the_sides_read_off_the_pose(model, procedural_frame):
    img, uv, _, _ = procedural_frame
    pipe = HandPipeline(model, _FakeDetector(joints_box(uv)), side_source="pose")
    real_estimate, reads = pipe.estimate, iter(["left", "right", "right", "left", "left", "left"])

    def estimate(image, boxes, sides, scores=None):
        assert sides == [None]  # every frame is read afresh
        hands = real_estimate(image, boxes, sides, scores)
        hands[0].side = next(reads)
        return hands

    pipe.estimate = estimate
    tracker = HandTracker(pipe)
    got = [tracker.step(img, t / 10)[0].side for t in range(6)]
    assert got == ["left", "right", "right", "right", "left", "left"]  # ties go to right


def test_pipeline_hand_fields_and_camera(model, procedural_frame):
    img, uv, j3, K = procedural_frame
    (h,) = HandPipeline(model, K=K)(img, boxes=[joints_box(uv)], sides=["right"])
    assert h.joints2d.shape == (21, 2) and h.joints3d_cam_mm.shape == (21, 3)
    np.testing.assert_allclose(h.joints3d_rel_mm[0], 0.0, atol=1e-9)
    np.testing.assert_allclose(h.joints3d_cam_mm - h.joints3d_cam_mm[:1], h.joints3d_rel_mm, atol=1e-9)
    # the root is the least-squares one: moving it 5 mm along any axis reprojects worse
    Kd = torch.from_numpy(np.asarray(K, np.float64))

    def err(P):
        return float(((project(torch.from_numpy(P), Kd).numpy() - h.joints2d) ** 2).sum())

    best = err(h.joints3d_cam_mm)
    for axis in range(3):
        for sign in (-5.0, 5.0):
            assert err(h.joints3d_cam_mm + np.eye(3)[axis] * sign) > best
    d = h.to_dict()
    assert set(d) >= {
        "box",
        "side",
        "score",
        "joints2d_px",
        "joints3d_rel_mm",
        "joints3d_cam_mm",
        "root_depth_mm",
    }
    # without a detector: one right hand in the largest centred square
    (c,) = HandPipeline(model)(img)
    assert c.side == "right" and c.crop["side"] == pytest.approx(480) and c.crop["x0"] == pytest.approx(80)


def test_one_euro_filter():
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    assert np.array_equal(f(np.array([3.0]), 0.0), [3.0])  # first value unchanged
    for i in range(1, 10):
        assert f(np.array([3.0]), i / 30)[0] == pytest.approx(3.0)  # constant stays constant
    # noise on a still point is smoothed
    rng = np.random.default_rng(0)
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    raw = rng.normal(0, 1, (300, 2))
    out = np.array([f(x, i / 30) for i, x in enumerate(raw)])
    assert out[50:].std() < 0.4 * raw[50:].std()
    # a ramp: beta (speed-dependent cut-off) reduces the lag
    lags = []
    for beta in (0.0, 1.0):
        f = OneEuroFilter(min_cutoff=1.0, beta=beta)
        ys = [f(np.array([10.0 * i]), i / 30)[0] for i in range(60)]
        lags.append(10.0 * 59 - ys[-1])
    assert lags[1] < 0.5 * lags[0] and lags[0] > 0


def _clip(img, uv, n=10, step=(6, 3)):
    """n frames: the image shifted by i * step pixels, and the shifted joints."""
    frames, joints = [], []
    H, W = img.shape[:2]
    for i in range(n):
        dx, dy = step[0] * i, step[1] * i
        M = np.float32([[1, 0, dx], [0, 1, dy]])
        import cv2

        frames.append(cv2.warpAffine(img, M, (W, H), borderMode=cv2.BORDER_REPLICATE))
        joints.append(uv + [dx, dy])
    return frames, joints


class _FakeDetector:
    """Knows where the hand is in the first frame; counts its full-frame runs."""

    def __init__(self, box, presence=1.0, side="right"):
        self.box, self.p, self.calls, self.side = box, presence, 0, side

    def __call__(self, image):
        self.calls += 1
        return [Detection(self.box, self.side, 0.9, 0.1 if self.side == "right" else 0.9)]

    def presence(self, crop):
        assert crop.shape[0] == 3
        return self.p


def test_video_write_read_and_tracking(model, procedural_frame, tmp_path):
    from handpose_lib.detect import box_iou

    img, uv, _, _ = procedural_frame
    frames, joints = _clip(img, uv)
    path = write_video(tmp_path / "clip.mp4", frames, 15.0)
    back, fps = read_video(path)
    assert len(back) == len(frames) and back[0].shape == frames[0].shape and fps == pytest.approx(15.0)
    assert np.abs(back[3].astype(float) - frames[3]).mean() < 12  # lossy, but the same picture

    det = _FakeDetector(joints_box(joints[0]))
    res = run_video(HandTracker(HandPipeline(model, det)), path, tmp_path / "overlay.mp4")
    assert det.calls == 1 and res["detector_runs"] == 1  # the previous frame's hand gives the box
    assert len(res["frames"]) == len(frames) and res["fps_pipeline"] > 0
    for hands, uv_t in zip(res["frames"], joints, strict=True):
        (h,) = hands
        assert box_iou(h["box"], joints_box(uv_t))[0, 0] > 0.5  # the box follows the moving hand
    assert len(read_video(tmp_path / "overlay.mp4")[0]) == len(frames)

    lost = _FakeDetector(joints_box(joints[0]), presence=0.0)
    run_video(HandTracker(HandPipeline(model, lost)), path)
    assert lost.calls == len(frames)  # lost every frame: the detector runs every frame


def test_live_camera_replays_a_recording_through_the_video_path(model, procedural_frame, tmp_path):
    import cv2
    import ipywidgets

    img, uv, _, _ = procedural_frame
    frames, joints = _clip(img, uv, n=5)
    path = write_video(tmp_path / "rec.mp4", frames, 10.0)
    box = joints_box(joints[0])
    ref = run_video(HandTracker(HandPipeline(model, _FakeDetector(box))), path)
    widget, logs = ipywidgets.Image(format="jpeg"), []
    det = _FakeDetector(box)
    res = live_camera(HandTracker(HandPipeline(model, det)), path, widget=widget, log=logs.append)
    assert res["frames"] == 5 and det.calls == 1 and res["fps_pipeline"] > 0
    assert res["hands"] == ref["frames"][-1]  # the same frame step, the same smoothing clock
    shown = cv2.imdecode(np.frombuffer(widget.value, np.uint8), cv2.IMREAD_COLOR)
    assert shown.shape == img.shape  # the widget holds the last frame's overlay
    assert logs == [res["message"]] and "5 frames" in logs[0]
    assert (
        live_camera(HandTracker(HandPipeline(model, det)), path, max_frames=2, widget=widget)["frames"] == 2
    )


def test_live_camera_without_a_camera_says_so(model, tmp_path):
    logs = []
    tracker = HandTracker(HandPipeline(model, None))
    for source in (tmp_path / "none.mp4", 97):  # no such file, no such camera
        res = live_camera(tracker, source, log=logs.append)
        assert res["frames"] == 0 and res["message"].startswith("No camera") and logs[-1] == res["message"]
    assert "camera 97" in logs[-1] and "none.mp4" in logs[0]


def test_read_video_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        read_video(tmp_path / "nope.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.raises(ValueError, match="corrupt or not a video"):
        read_video(bad)


class _BoxDetector(_FakeDetector):
    """Finds the hand only in images of the procedural frame's size."""

    def __call__(self, image):
        self.calls += 1
        return [Detection(self.box, "left", 0.8, 0.9)] if image.shape[:2] == (480, 640) else []


def test_predict_files_images_folders_videos_and_bad_inputs(model, procedural_frame, tmp_path):
    import json

    import cv2

    from handpose_lib.pipeline import predict_files

    img, uv, _, _ = procedural_frame
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "hand.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(src / "tiny.png"), np.zeros((1, 1, 3), np.uint8))  # 1x1: no hand, no error
    rgba = np.concatenate([img[..., ::-1], np.full((480, 640, 1), 255, np.uint8)], -1)
    cv2.imwrite(str(src / "rgba.png"), rgba)
    cv2.imwrite(str(src / "deep.png"), (img[..., ::-1].astype(np.uint16) * 257))  # 16-bit
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    frames, _ = _clip(img, uv, n=4)
    write_video(src / "clip.mp4", frames, 10.0)
    det = _BoxDetector(joints_box(uv))
    pipe = HandPipeline(model, det)
    out = tmp_path / "out"
    logs = []
    res = predict_files(pipe, [src, tmp_path / "missing.jpg"], out, log=logs.append)
    names = sorted(Path(d["input"]).name for d in res["inputs"])
    assert names == ["clip.mp4", "deep.png", "hand.png", "rgba.png", "tiny.png"]
    assert sorted(Path(e["input"]).name for e in res["errors"]) == ["broken.jpg", "missing.jpg"]
    assert any("missing.jpg" in e["error"] for e in res["errors"])
    hand = json.loads((out / "hand_hands.json").read_text())
    (h,) = hand["hands"]
    assert h["side"] == "left" and len(h["joints2d_px"]) == 21 and h["root_depth_mm"] > 0
    assert json.loads((out / "tiny_hands.json").read_text())["hands"] == []
    assert any("no hand found" in m for m in logs)
    for name in ("rgba", "deep"):
        assert len(json.loads((out / f"{name}_hands.json").read_text())["hands"]) == 1
    assert (out / "hand_pred.png").is_file() and (out / "clip_pred.mp4").is_file()
    clip = json.loads((out / "clip_hands.json").read_text())
    assert len(clip["frames"]) == 4 and clip["fps_pipeline"] > 0
    # nothing is overwritten: a second run writes nothing
    before = (out / "hand_hands.json").stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="hand_pred.png, hand_hands.json"):
        predict_files(pipe, [src / "hand.png", src / "tiny.png"], out, log=logs.append)
    assert (out / "hand_hands.json").stat().st_mtime_ns == before
    res2 = predict_files(pipe, [src / "hand.png"], out, overwrite=True, log=logs.append)
    assert len(res2["inputs"]) == 1
    # the same stem twice: names kept apart
    res4 = predict_files(pipe, [src / "hand.png", src / "hand.png"], tmp_path / "o4", log=logs.append)
    assert [Path(d["json"]).name for d in res4["inputs"]] == ["hand_hands.json", "hand-2_hands.json"]
    # --box and --side override the detector
    res3 = predict_files(
        pipe, [src / "tiny.png"], tmp_path / "o3", box=(0, 0, 1, 1), side="right", log=logs.append
    )
    (h,) = json.loads(Path(res3["inputs"][0]["json"]).read_text())["hands"]
    assert h["side"] == "right" and h["score"] == 1.0


def test_cli_predict_through_the_pipeline(procedural_frame, tmp_path, capsys):
    import json

    import cv2

    from handpose_lib import cli

    img, uv, _, _ = procedural_frame
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "hand.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(src / "blank.png"), np.full((60, 80, 3), 127, np.uint8))
    write_video(src / "clip.mp4", _clip(img, uv, n=3)[0], 10.0)
    (tmp_path / "bad.mp4").write_bytes(b"no video here")
    detector = BOOK_MODEL.parent / "detector"
    out = tmp_path / "out"
    head = ["predict", "--checkpoint", str(BOOK_MODEL), "--detector", str(detector), str(src)]
    argv = [*head, "--out", str(out)]
    code = cli.main([*head, str(tmp_path / "bad.mp4"), str(tmp_path / "missing.jpg"), "--out", str(out)])
    stdout, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in err
    assert "2 of 5 inputs failed" in err and "missing.jpg" in err and "bad.mp4" in err
    for name in ("hand", "blank", "clip"):
        assert (out / f"{name}_hands.json").is_file()
    assert (out / "clip_pred.mp4").is_file() and (out / "hand_pred.png").is_file()
    clip = json.loads((out / "clip_hands.json").read_text())
    assert len(clip["frames"]) == 3 and "frames/s" in stdout
    # outputs are never replaced without --overwrite
    code = cli.main(argv)
    assert code == cli.EXIT_USAGE and "--overwrite" in capsys.readouterr()[1]
    # --box, --side and --K override the detector and the field of view
    box = [f"{v:.1f}" for v in joints_box(uv)]
    code = cli.main(
        ["predict", "--checkpoint", str(BOOK_MODEL), str(src / "hand.png"), "--box", *box, "--side", "left"]
        + ["--K", "600", "600", "320", "240", "--out", str(tmp_path / "o2")]
    )
    assert code == 0, capsys.readouterr()[1]
    info = json.loads((tmp_path / "o2" / "hand_hands.json").read_text())
    (h,) = info["hands"]
    assert h["side"] == "left" and h["score"] == 1.0 and info["K"][0] == [600.0, 0.0, 320.0]
    assert np.asarray(h["joints3d_cam_mm"]).shape == (21, 3) and h["root_depth_mm"] > 0


def test_predict_uses_the_shipped_detector_by_default(tmp_path, capsys, monkeypatch):
    """``handpose predict`` without --box or --no-detector finds the hand with models/detector
    (a FreiHAND photo: the detector finds all eight); a missing shipped detector falls back to
    the centred square with a note, never a traceback."""
    import json

    from handpose_lib import cli, detect

    photo = Path(detect.__file__).resolve().parent / "assets" / "real_hands" / "freihand" / "00017620.jpg"
    code = cli.main(["predict", "--checkpoint", str(BOOK_MODEL), str(photo), "--out", str(tmp_path / "a")])
    assert code == 0, capsys.readouterr()[1]
    info = json.loads((tmp_path / "a" / "00017620_hands.json").read_text())
    assert len(info["hands"]) >= 1 and info["hands"][0]["score"] < 1.0  # a detector's box, not a given one
    assert not (tmp_path / "a" / "predictions.json").exists()
    monkeypatch.setattr(detect, "SHIPPED_DETECTOR_DIR", tmp_path / "no-detector-here")
    code = cli.main(["predict", "--checkpoint", str(BOOK_MODEL), str(photo), "--out", str(tmp_path / "b")])
    err = capsys.readouterr()[1]
    assert code == 0 and "no hand detector at" in err and "centred square" in err and "Traceback" not in err
    pred = json.loads((tmp_path / "b" / "predictions.json").read_text())["predictions"]
    assert pred[0]["crop"]["side"] == 224  # the centred square of the 224 x 224 photo


def test_fast_pipeline_gives_the_same_hands(procedural_frame):
    """``load_pipeline(fast=True)`` (BN folded, NHWC) answers as the plain networks do, and the
    detector object it was given keeps its own (unfolded) network."""
    from handpose_lib.detect import load_detector
    from handpose_lib.pipeline import load_pipeline

    img = procedural_frame[0]
    det = load_detector(BOOK_MODEL.parent / "detector")
    plain = load_pipeline(BOOK_MODEL, det, fast=False, bf16=False, backend="torch", verifier=None)
    fast = load_pipeline(BOOK_MODEL, det, fast=True, bf16=False, backend="torch", verifier=None)
    assert fast.detector is not det and fast.detector.net is not det.net
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in det.net.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.model.modules())
    a, b = plain(img), fast(img)
    assert len(a) == len(b) >= 1
    for ha, hb in zip(a, b, strict=True):
        np.testing.assert_allclose(ha.box, hb.box, atol=0.05)
        np.testing.assert_allclose(ha.joints2d, hb.joints2d, atol=0.05)
        np.testing.assert_allclose(ha.joints3d_cam_mm, hb.joints3d_cam_mm, atol=0.5)


def test_bf16_pipeline_finds_the_same_hands(procedural_frame):
    """``bf16=True`` (autocast in both networks) finds the procedural frame's hand in the same
    place; ``"auto"`` turns it on for the detector exactly where the CPU has native bf16."""
    from handpose_lib.device import cpu_bf16_supported
    from handpose_lib.pipeline import load_pipeline

    img = procedural_frame[0]
    detector = BOOK_MODEL.parent / "detector"
    auto = load_pipeline(BOOK_MODEL, detector, verifier=None)
    assert auto.detector.bf16 == cpu_bf16_supported() and auto.bf16 is False  # the pose model: float32
    if not cpu_bf16_supported():
        pytest.skip("no native bf16 on this CPU (emulated bf16 is slow and not used)")
    a = load_pipeline(BOOK_MODEL, detector, bf16=False, verifier=None)(img)
    b = load_pipeline(BOOK_MODEL, detector, bf16=True, verifier=None)(img)
    assert len(a) == len(b) >= 1
    box = max(a[0].box[2] - a[0].box[0], a[0].box[3] - a[0].box[1])
    np.testing.assert_allclose(a[0].box, b[0].box, atol=0.05 * box)
    assert np.linalg.norm(a[0].joints2d - b[0].joints2d, axis=-1).mean() < 0.05 * box


def test_onnx_backend_gives_the_same_hands(procedural_frame):
    """``backend="onnx"`` (ONNX Runtime runs the pose model) answers as PyTorch does; an unknown
    backend is refused by name."""
    from handpose_lib.pipeline import load_pipeline

    img = procedural_frame[0]
    detector = BOOK_MODEL.parent / "detector"
    a = load_pipeline(BOOK_MODEL, detector, bf16=False, backend="torch", verifier=None)
    b = load_pipeline(BOOK_MODEL, detector, bf16=False, backend="onnx", verifier=None)
    assert a.onnx is None and b.onnx is not None
    ha, hb = a(img), b(img)
    assert len(ha) == len(hb) >= 1
    for x, y in zip(ha, hb, strict=True):
        np.testing.assert_allclose(x.joints2d, y.joints2d, atol=0.01)
        np.testing.assert_allclose(x.joints3d_cam_mm, y.joints3d_cam_mm, atol=0.5)
        assert x.side == y.side and abs(x.confidence - y.confidence) < 1e-4
    with pytest.raises(ValueError, match="backend"):
        load_pipeline(BOOK_MODEL, None, backend="tensorrt")


def test_auto_backend_falls_back_to_pytorch_with_a_warning(monkeypatch):
    from handpose_lib import inference
    from handpose_lib.pipeline import load_pipeline

    def broken(*a, **k):
        raise RuntimeError("no ONNX here")

    monkeypatch.setattr(inference, "OnnxPoseModel", broken)
    with pytest.warns(UserWarning, match="runs in PyTorch.*no ONNX here"):
        pipe = load_pipeline(BOOK_MODEL, None, backend="auto", bf16=False)
    assert pipe.onnx is None
    with pytest.raises(RuntimeError, match="no ONNX here"):
        load_pipeline(BOOK_MODEL, None, backend="onnx", bf16=False)
