"""The hand detector: shapes, targets, decoding on a frame with known boxes, metrics, frames."""

import json

import numpy as np
import pytest
import torch

from handpose_lib import detect
from handpose_lib.detector_train import (
    DetectorTrainConfig,
    average_precision,
    make_batch,
    match,
    train_detector,
)


def _logit(p):
    p = torch.as_tensor(p, dtype=torch.float32).clamp(1e-6, 1 - 1e-6)
    return torch.log(p / (1 - p))


def _perfect_output(boxes, sides, H, W):
    """The raw output (1, 6, H/4, W/4) a perfect network would give for these boxes."""
    t = detect.encode_targets([np.array(boxes)], [np.array(sides)], H, W)
    out = torch.zeros(1, 6, H // 4, W // 4)
    out[0, 0] = _logit(t["heat"][0, 0] * 0.98)
    out[0, 1:3] = _logit(t["reg"][0, :2])
    out[0, 3:5] = t["reg"][0, 2:4]
    out[0, 5] = _logit(t["reg"][0, 4] * 0.98 + 0.01)
    return out


def test_network_shapes_any_multiple_of_4():
    net = detect.HandDetectorNet().eval()
    with torch.no_grad():
        for H, W in [(240, 320), (192, 256), (100, 52)]:
            assert net(torch.rand(2, 3, H, W)).shape == (2, detect.HEAD_CHANNELS, H // 4, W // 4)
    assert sum(p.numel() for p in net.parameters()) < 2_500_000  # < 5 MB in fp16


def test_decode_recovers_known_boxes():
    boxes = [[20.0, 30.0, 100.0, 130.0], [180.0, 60.0, 230.0, 95.0], [250.0, 150.0, 300.0, 230.0]]
    sides = [1, 0, 1]
    out = _perfect_output(boxes, sides, 240, 320)
    d = detect.decode(out, k=10, score_thresh=0.5)[0]
    assert len(d["boxes"]) == 3
    got = d["boxes"].numpy()
    iou = detect.box_iou(got, boxes)
    best = iou.argmax(1)
    assert sorted(best.tolist()) == [0, 1, 2]
    np.testing.assert_allclose(got, np.array(boxes)[best], atol=1e-3)
    np.testing.assert_array_equal(d["p_left"].numpy() > 0.5, np.array(sides)[best] == 1)
    assert (d["scores"] > 0.9).all()
    # the threshold and top-k cut
    assert len(detect.decode(out, k=2, score_thresh=0.5)[0]["boxes"]) == 2
    assert len(detect.decode(out, k=10, score_thresh=0.99)[0]["boxes"]) == 0


def test_targets_peak_at_centres_and_loss_is_lower_for_the_right_answer():
    boxes, sides = [[40.0, 40.0, 120.0, 100.0]], [0]
    t = detect.encode_targets([np.array(boxes)], [np.array(sides)], 160, 160)
    iy, ix = np.unravel_index(t["heat"][0, 0].argmax().item(), (40, 40))
    assert (ix, iy) == (20, 17) and t["mask"][0, iy, ix] and t["mask"].sum() == 1
    good = detect.detection_loss(_perfect_output(boxes, sides, 160, 160), t)["loss"]
    bad = detect.detection_loss(_perfect_output([[0.0, 100.0, 30.0, 150.0]], [1], 160, 160), t)["loss"]
    assert good < 0.5 < bad


def test_hand_detector_maps_boxes_back_to_photo_pixels():
    class Fixed(detect.HandDetectorNet):
        def forward(self, x):
            H, W = x.shape[-2:]
            # one hand at input box (40, 40, 120, 120) in input pixels
            return _perfect_output([[40.0, 40.0, 120.0, 120.0]], [0], H, W)

    det = detect.HandDetector(Fixed(), long_side=320)
    img = np.zeros((480, 640, 3), np.uint8)  # input 240 x 320: photo px = 2 x input px
    (d,) = det(img)
    np.testing.assert_allclose(d.box, (80, 80, 240, 240), atol=0.01)
    assert d.side == "right" and d.score > 0.9
    assert detect.input_size(720, 1280, 320) == (180, 320)
    assert detect.input_size(358, 238, 320) == (320, 212)


def test_average_precision_and_matching():
    assert average_precision([0.9, 0.8], [True, True], 2) == pytest.approx(1.0)
    assert average_precision([0.9, 0.8], [False, True], 2) == pytest.approx(0.25)
    assert average_precision([0.9], [True], 2) == pytest.approx(0.5)
    dets = [
        detect.Detection((0, 0, 10, 10), "left", 0.9, 0.9),
        detect.Detection((1, 1, 10, 10), "left", 0.8, 0.9),
    ]
    d_of, g_of = match(dets, np.array([[0.0, 0, 10, 10]]))
    assert d_of.tolist() == [0, -1] and g_of.tolist() == [0]


def test_frames_boxes_sides_and_mirroring():
    from handpose_lib.data.synthetic.frames import FrameConfig, HandFrames

    cfg = FrameConfig(hand_probs=(0, 0, 0, 1), left_prob=0.5)
    frames = HandFrames(7, cfg)
    a, b = frames.batch([0, 1])
    again = frames[1]
    np.testing.assert_array_equal(b["image"], again["image"])  # frame i is a pure function of (seed, i)
    for f in (a, b):
        assert f["image"].shape == (480, 640, 3) and f["image"].dtype == np.uint8
        n = len(f["boxes"])
        assert 1 <= n <= 3 and len(f["sides"]) == n and f["joints2d"].shape == (n, 21, 2)
        uv = f["joints2d"]
        box = np.concatenate([uv.min(1), uv.max(1)], 1).clip(0, [640, 480, 640, 480])
        np.testing.assert_allclose(f["boxes"], box)
        assert set(f["sides"]) <= {"left", "right"}
    x, t = make_batch([a, b], (192, 256), np.random.default_rng(0))
    assert x.shape == (2, 3, 192, 256) and t["heat"].shape == (2, 1, 48, 64)
    assert 1 <= int(t["mask"].sum()) <= 6


def _square_hands(seed, indices):
    """A cheap hand renderer: a square "hand", red on its left half and green on its right, its
    "wrist" on the red side (so a mirrored, left, one is green-red)."""
    n = len(indices)
    img = torch.zeros(n, 3, 64, 64)
    img[:, 0, :, :32] = 1.0
    img[:, 1, :, 32:] = 1.0
    mask = torch.zeros(n, 64, 64, dtype=torch.bool)
    mask[:, 16:48, 16:48] = True
    uv = torch.stack(torch.meshgrid(torch.linspace(16, 48, 7), torch.linspace(16, 48, 3), indexing="ij"), -1)
    uv = uv.reshape(1, 21, 2).expand(n, 21, 2).clone()
    uv[:, 0] = torch.tensor([20.0, 40.0])
    return {"image": img, "mask": mask, "joints2d": uv}


def test_side_targets_of_left_hands_say_left_and_a_mirrored_window_swaps_them():
    boxes, sides = np.array([[40.0, 40.0, 120.0, 100.0], [130.0, 20.0, 150.0, 44.0]]), np.array([1.0, 0.0])
    t = detect.encode_targets([boxes], [sides], 160, 160)
    w, side = t["side_weight"][0], t["side"][0]
    assert (w > 0).sum() > 2  # the side is taught over the hand's bump, not at one cell
    for (x0, y0, x1, y1), s in zip(boxes, sides, strict=True):
        iy, ix = int((y0 + y1) / 8), int((x0 + x1) / 8)
        assert side[iy, ix] == s and w[iy, ix] > 0 and t["reg"][0, 4, iy, ix] == s
    assert float(w.sum()) == pytest.approx(2.0)  # each hand weighs 1
    assert set(side[w > 0].tolist()) == {0.0, 1.0}

    from handpose_lib.data.synthetic.frames import FrameConfig, HandFrames

    cfg = FrameConfig(hand_probs=(0, 0, 1), max_distractors=0, arm_prob=0, blur_prob=0, jpeg_prob=0)
    frames = HandFrames(5, cfg, _square_hands).batch(range(6))
    for f in frames:  # the frame's labels: a left hand is the mirrored (green-red) square
        for (x0, y0, x1, y1), s in zip(f["boxes"].round().astype(int), f["sides"], strict=True):
            xm = (x0 + x1) // 2
            red_first = f["image"][y0 + 2 : y1 - 2, x0 + 2 : xm - 2, 0].mean() > 128
            assert red_first == (s == "right")
    x0_, t0 = make_batch(frames, (192, 256), np.random.default_rng(3), flip_prob=0.0)
    x1_, t1 = make_batch(frames, (192, 256), np.random.default_rng(3), flip_prob=1.0)
    torch.testing.assert_close(x1_, x0_.flip(-1))
    torch.testing.assert_close(t1["heat"], t0["heat"].flip(-1), atol=0.02, rtol=0)  # centres to the cell
    assert torch.equal(t1["side"][t1["mask"]].sort().values, (1 - t0["side"][t0["mask"]]).sort().values)


def test_the_side_head_learns_left_from_right_on_new_frames():
    """Trained a few dozen steps on frames of mirrored and unmirrored squares, the side head
    tells them apart on frames it has not seen (labels, mirroring, flips and loss agree)."""
    from handpose_lib.data.synthetic.frames import FrameConfig, HandFrames

    torch.manual_seed(0)
    cfg = FrameConfig(hand_probs=(0, 1, 1), hand_size=(40, 120), max_distractors=0, arm_prob=0, jpeg_prob=0)
    hf = HandFrames(11, cfg, _square_hands)
    train, test = hf.batch(range(24)), hf.batch(range(100, 108))
    net = detect.HandDetectorNet(
        detect.DetectorConfig(widths=(8, 16, 16, 32, 32), blocks=(1, 1, 1, 1), fpn_width=16)
    )
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    for step in range(60):
        x, t = make_batch([train[(step * 8 + i) % 24] for i in range(8)], (96, 128), rng, flip_prob=0.5)
        loss = detect.detection_loss(net(x), t)
        opt.zero_grad()
        loss["loss"].backward()
        opt.step()
    net.eval()
    x, t = make_batch(test, (96, 128), rng, flip_prob=0.5)
    with torch.no_grad():
        p_left = torch.sigmoid(net(x)[:, 5])[t["mask"]]
    want = t["side"][t["mask"]]
    assert len(want) >= 8 and 0 < want.sum() < len(want)
    assert ((p_left > 0.5).float() == want).float().mean() >= 0.9


@pytest.mark.parametrize("left_prob", [0.0, 1.0])
def test_frames_take_any_hand_renderer_and_mirror_left_hands(left_prob):
    from handpose_lib.data.synthetic.frames import FrameConfig, HandFrames

    calls = []

    def renderer(seed, indices):
        calls.append((seed, list(indices)))
        n = len(indices)
        img = torch.zeros(n, 3, 64, 64)
        img[:, 0, :, :32] = 1.0  # a square "hand": red on its left half, green on its right
        img[:, 1, :, 32:] = 1.0
        mask = torch.zeros(n, 64, 64, dtype=torch.bool)
        mask[:, 16:48, 16:48] = True
        uv = torch.stack(
            torch.meshgrid(torch.linspace(16, 48, 7), torch.linspace(16, 48, 3), indexing="ij"), -1
        )
        uv = uv.reshape(1, 21, 2).expand(n, 21, 2).clone()
        uv[:, 0] = torch.tensor([20.0, 40.0])  # the "wrist" on the red side
        return {"image": img, "mask": mask, "joints2d": uv}

    cfg = FrameConfig(
        hand_probs=(0, 1), max_distractors=0, arm_prob=0, blur_prob=0, jpeg_prob=0, left_prob=left_prob
    )
    f = HandFrames(3, cfg, renderer)[5]
    assert calls == [(3, [5 * 8])]
    assert f["sides"] == ["left" if left_prob else "right"]
    (x0, y0, x1, y1) = f["boxes"][0].round().astype(int)
    xm = (x0 + x1) // 2
    first = f["image"][y0 + 2 : y1 - 2, x0 + 2 : xm - 2].astype(float).mean((0, 1))
    second = f["image"][y0 + 2 : y1 - 2, xm + 2 : x1 - 2].astype(float).mean((0, 1))
    red, green = (first, second) if not left_prob else (second, first)  # a left hand is mirrored
    assert red[0] > 180 > red[1] and green[1] > 180 > green[0]
    wrist_on_left = f["joints2d"][0, 0, 0] < xm
    assert wrist_on_left == (not left_prob)


def _square_scenes(seed, indices, other=False):
    """A cheap scene renderer: a 640 x 480 grey frame with one red 60 x 40 "hand" at a place of
    its index, labelled by its joints (the square's corners and centre) and a side by parity;
    ``other``: a green 50 x 50 "other hand" beside it, of the other side, in ``others``."""
    out = []
    for i in indices:
        img = np.full((480, 640, 3), 90, np.uint8)
        x0, y0 = 100 + 7 * (i % 50), 80 + 5 * (i % 60)
        img[y0 : y0 + 40, x0 : x0 + 60] = (255, 0, 0)
        uv = np.array([[x0, y0], [x0 + 60, y0 + 40]] + [[x0 + 30, y0 + 20]] * 19, np.float64)
        box = np.concatenate([uv.min(0), uv.max(0)])
        side = "left" if i % 2 else "right"
        out.append({"image": img, "box": box, "side": side, "joints2d": uv, "others": []})
        if other:
            img[y0 + 60 : y0 + 110, x0 + 20 : x0 + 70] = (0, 255, 0)
            uv2 = np.array([[x0 + 20, y0 + 60], [x0 + 70, y0 + 110]] + [[x0 + 45, y0 + 85]] * 19, np.float64)
            box2 = np.concatenate([uv2.min(0), uv2.max(0)])
            out[-1]["others"] = [{"box": box2, "side": "right" if i % 2 else "left", "joints2d": uv2}]
    return out


def test_scene_frames_zoom_onto_the_hand_and_leave_the_other_frames_alone():
    from handpose_lib.data.synthetic.frames import FrameConfig, HandFrames

    base = FrameConfig(hand_probs=(0, 1), max_distractors=0, blur_prob=0, jpeg_prob=0)
    plain = HandFrames(4, base, _square_hands)
    mixed = HandFrames(4, FrameConfig(**{**base.__dict__, "scene_prob": 0.5}), _square_hands, _square_scenes)
    flags = [mixed.is_scene(i) for i in range(200)]
    assert 70 < sum(flags) < 130 and not any(plain.is_scene(i) for i in range(200))
    idx = list(range(12))
    got, want = mixed.batch(idx), plain.batch(idx)
    assert any(flags[:12]) and not all(flags[:12])
    for i, g, w in zip(idx, got, want, strict=True):
        if not flags[i]:  # a composed frame is what it was without scene frames
            np.testing.assert_array_equal(g["image"], w["image"])
            continue
        assert g["image"].shape == (480, 640, 3) and g["sides"] == ["left" if i % 2 else "right"]
        (x0, y0, x1, y1) = g["boxes"][0]
        assert 60 - 1e-6 <= x1 - x0 <= 60 * 4 + 1e-6  # never zoomed out, at most scene_max_zoom in
        np.testing.assert_allclose(g["boxes"][0], np.r_[g["joints2d"][0].min(0), g["joints2d"][0].max(0)])
        inner = g["image"][int(y0) + 2 : int(y1) - 2, int(x0) + 2 : int(x1) - 2].astype(float)
        assert inner[..., 0].mean() > 200 and inner[..., 1].mean() < 60  # the red hand is under its box
        ring = g["image"][max(0, int(y0) - 6) : int(y0) - 3, int(x0) : int(x1)]
        assert ring.size == 0 or ring[..., 0].mean() < 150  # and not beyond it


@pytest.mark.parametrize("zoom_out", [False, True])
def test_scene_frames_label_the_other_hand_and_zoom_out_onto_a_background(zoom_out):
    """The other hand's box follows the zoom like the first's (in, or out onto a pool background
    with ``scene_min_zoom``), with its own side; zoomed out, the frame keeps its aspect."""
    from handpose_lib.data.synthetic.frames import FrameConfig, HandFrames

    kw = dict(scene_min_zoom=0.5, scene_zoom_out_prob=1.0, hand_size=(20.0, 30.0)) if zoom_out else {}
    kw = kw or dict(hand_size=(120.0, 120.0))  # zoomed in twice: the other hand may leave the window
    cfg = FrameConfig(hand_probs=(0, 1), max_distractors=0, blur_prob=0, jpeg_prob=0, scene_prob=1.0, **kw)
    frames = HandFrames(4, cfg, _square_hands, lambda s, i: _square_scenes(s, i, other=True)).batch(range(10))
    assert sum(len(g["boxes"]) == 2 for g in frames) >= (10 if zoom_out else 3)
    for i, g in enumerate(frames):
        assert g["joints2d"].shape == (len(g["boxes"]), 21, 2)
        assert g["sides"][0] == ("left" if i % 2 else "right")
        (a0, b0, a1, b1) = g["boxes"][0]
        w1 = a1 - a0
        assert (b1 - b0) / w1 == pytest.approx(40 / 60)
        assert 30 - 1e-6 <= w1 < 60 if zoom_out else w1 == pytest.approx(120)  # shrunk by 0.5 .. 1
        if len(g["boxes"]) == 2:
            assert g["sides"][1] != g["sides"][0]
            assert g["boxes"][1][3] - g["boxes"][1][1] == pytest.approx(w1 * 5 / 6)  # 50 px beside 60
        for (x0, y0, x1, y1), ch in zip(g["boxes"], (0, 1)):
            inner = g["image"][int(y0) + 2 : int(y1) - 1, int(x0) + 2 : int(x1) - 1].astype(float)
            assert inner[..., ch].mean() > 200 and inner[..., 1 - ch].mean() < 60  # its square


def test_engine_scene_frames_label_the_other_hand_where_it_is_drawn():
    """With the other hand in the engine's full frames, a labelled other hand is of the other
    side and its joints lie where the frame differs from the same frame without it (it is drawn
    there, mirrored with the first hand when that is a left hand); frames without it stay as they
    were."""
    from handpose_lib.data.synthetic.frames import OTHER_HAND_MIN_JOINTS, engine_scenes, scene_config

    idx = list(range(10))
    without, with_ = engine_scenes()(5, idx), engine_scenes(scene_config(other_hand_prob=1.0))(5, idx)
    labelled = 0
    for a, b in zip(without, with_, strict=True):
        assert a["others"] == [] and a["side"] == b["side"]
        np.testing.assert_array_equal(a["joints2d"], b["joints2d"])
        drawn = np.abs(a["image"].astype(int) - b["image"].astype(int)).max(-1) > 8
        if not b["others"]:
            continue
        labelled += 1
        (o,) = b["others"]
        assert o["side"] != b["side"]
        np.testing.assert_allclose(o["box"], np.r_[o["joints2d"].min(0), o["joints2d"].max(0)])
        u, v = np.floor(o["joints2d"]).astype(int).T
        inside = (u >= 0) & (u < 640) & (v >= 0) & (v < 480)
        on = drawn[v[inside], u[inside]]
        assert on.sum() >= OTHER_HAND_MIN_JOINTS - 2
    assert labelled >= 3
    assert any(b["side"] == "left" and b["others"] for b in with_)


def test_engine_scene_frames_label_the_mesh_hand():
    from handpose_lib.data.synthetic.frames import engine_scenes, scene_config

    cfg = scene_config()
    assert cfg.full_frame and cfg.extras.other_hand_prob == 0 and cfg.extras.body_prob > 0
    (f,) = engine_scenes()(0, [3])
    assert f["image"].shape == (480, 640, 3) and f["image"].dtype == np.uint8
    assert f["side"] in ("left", "right") and f["joints2d"].shape == (21, 2)
    np.testing.assert_allclose(f["box"], np.r_[f["joints2d"].min(0), f["joints2d"].max(0)])
    x0, y0, x1, y1 = np.clip(f["box"], 0, [640, 480, 640, 480]).astype(int)
    with pytest.raises(ValueError, match="full_frame"):
        engine_scenes(type(cfg)(hand_model="mesh"))
    assert x1 > x0 and y1 > y0


def test_frame_options_reach_the_engine_scenes():
    """FrameConfig's head options become the engine's scene extras (off by default: the scenes of
    detectors v1-v7)."""
    from handpose_lib.data.synthetic.frames import FrameConfig, scene_config

    assert FrameConfig().scenes() == scene_config()
    ex = scene_config().extras
    assert ex.head_near_prob == 0 and ex.mesh_head_prob == 0
    fc = FrameConfig(
        scene_prob=1.0, scene_other_hand_prob=0.5, scene_head_near_prob=0.4, scene_mesh_head_prob=0.8
    )
    ex = fc.scenes().extras
    assert (ex.other_hand_prob, ex.head_near_prob, ex.mesh_head_prob, ex.body_prob) == (0.5, 0.4, 0.8, 0.6)


def test_train_detector_smoke(tmp_path):
    cfg = DetectorTrainConfig(steps=2, batch_size=2, n_val=4, n_test=4, checkpoint_every=1, warmup_steps=1)
    m = train_detector(cfg, tmp_path / "model", tmp_path / "run", log=lambda *_: None)
    assert m["test_frames"]["frames"] == 4 and m["real_photos"]["photos"] == 16
    det = detect.load_detector(tmp_path / "model")
    assert isinstance(det(np.zeros((100, 80, 3), np.uint8)), list)
    assert 0.05 <= det.score_thresh <= 0.6  # chosen on the validation frames, kept in the sidecar
    assert detect.load_detector(tmp_path / "model", score_thresh=0.9).score_thresh == 0.9
    # resume: a finished run trains no further step and gives the same weights
    train_detector(cfg, tmp_path / "model2", tmp_path / "run", log=lambda *_: None)
    w1 = detect.load_detector(tmp_path / "model").net.state_dict()
    w2 = detect.load_detector(tmp_path / "model2").net.state_dict()
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    # a wall-clock budget stops the run early (after at least one step, however small the budget:
    # here one step) and the sidecar says so
    timed = DetectorTrainConfig(steps=50, batch_size=2, n_val=2, n_test=2, warmup_steps=1, minutes=1e-9)
    train_detector(timed, tmp_path / "model3", tmp_path / "run3", log=lambda *_: None)
    meta = json.loads((tmp_path / "model3" / "checkpoint.json").read_text())
    assert meta["step"] == 1 and meta["stopped_by"] == "minutes"
    assert meta["provenance"]["train_frames"].endswith(f"{2 * meta['step']} frames")
    # a run recorded before the frames had their scene options resumes (they were off then)
    from handpose_lib import checkpoint as ckpt

    run = tmp_path / "run"
    side = run / json.loads((run / ckpt.LAST_FILE).read_text())["path"] / ckpt.SIDECAR_FILE
    rec = json.loads(side.read_text())
    for k in (
        "scene_prob",
        "scene_max_zoom",
        "scene_other_hand_prob",
        "scene_min_zoom",
        "scene_zoom_out_prob",
        "scene_head_near_prob",
        "scene_mesh_head_prob",
    ):
        del rec["train_config"]["frames"][k]
    del rec["train_config"]["frame_seed"]  # nor their seed (it was 0)
    del rec["train_config"]["detector"]["backbone"]  # nor the choice of backbone (its own)
    del rec["train_config"]["backbone_init"], rec["train_config"]["freeze_backbone"]
    side.write_text(json.dumps(rec))
    train_detector(cfg, tmp_path / "model4", tmp_path / "run", log=lambda *_: None)
    # the validation and test seeds are refused as training frames
    from handpose_lib.detector_train import main

    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "x"), "--frame-seed", "2"])
    bads = (["--other-hand-prob", "1.5"], ["--scene-min-zoom", "0"], ["--scene-min-zoom", "2"])
    for bad in bads + (["--head-near-prob", "-0.1"], ["--mesh-head-prob", "2"]):
        with pytest.raises(SystemExit):
            main(["--out", str(tmp_path / "x"), *bad])
    assert not (tmp_path / "x").exists()


def test_pose_backbone_starts_from_the_pose_model_and_stays_frozen(tmp_path):
    """``backbone="pose"``: the tiny pose model's encoder under the detector's top-down path and
    heads; ``backbone_init`` copies a trained pose model's encoder into it, and
    ``freeze_backbone`` keeps its weights and BatchNorm statistics while the heads train."""
    from handpose_lib.book_model import BOOK_MODEL_DIR
    from handpose_lib.detector_train import load_pose_backbone, main
    from handpose_lib.inference import load_trained

    with pytest.raises(ValueError, match="backbone"):
        detect.DetectorConfig(backbone="resnet50")
    net = detect.HandDetectorNet(detect.DetectorConfig(backbone="pose")).eval()
    with torch.no_grad():
        for H, W in [(240, 320), (100, 52)]:
            assert net(torch.rand(1, 3, H, W)).shape == (1, detect.HEAD_CHANNELS, H // 4, W // 4)
    with pytest.raises(ValueError, match="backbone 'pose'"):
        load_pose_backbone(detect.HandDetectorNet(), BOOK_MODEL_DIR)
    pose, pose_ckpt = load_trained(BOOK_MODEL_DIR)
    cfg = DetectorTrainConfig(
        steps=2,
        batch_size=2,
        n_val=2,
        n_test=2,
        warmup_steps=1,
        backbone_init=str(BOOK_MODEL_DIR),
        freeze_backbone=True,
        detector=detect.DetectorConfig(backbone="pose"),
    )
    train_detector(cfg, tmp_path / "m", tmp_path / "run", log=lambda *_: None)
    det = detect.load_detector(tmp_path / "m")
    assert det.net.config.backbone == "pose"
    want = pose.encoder.state_dict()
    got = det.net.encoder.state_dict()  # weights and BatchNorm statistics, stored in float16
    for k, v in want.items():
        stored = v.half().float() if v.is_floating_point() else v.float()
        assert torch.equal(got[k].float(), stored), k
    fresh = detect.HandDetectorNet(detect.DetectorConfig(backbone="pose")).state_dict()
    assert not torch.allclose(det.net.state_dict()["head.2.weight"].float(), fresh["head.2.weight"])
    meta = json.loads((tmp_path / "m" / "checkpoint.json").read_text())
    assert meta["provenance"]["backbone_init_weights_sha256"] == pose_ckpt.weights_sha256
    for bad in (
        ["--backbone-init", str(BOOK_MODEL_DIR)],
        ["--backbone", "pose", "--backbone-init", "nowhere"],
    ):
        with pytest.raises(SystemExit):
            main(["--out", str(tmp_path / "x"), *bad])
    assert not (tmp_path / "x").exists()


def test_step_batches_are_the_same_from_workers_and_bf16_recipe(tmp_path):
    """Frames made by a DataLoader worker equal the training process's own (step s's batch is a
    pure function of s), so the weights do not depend on ``workers``; a bf16 run trains, records
    its ``amp``, and a run folder of another ``amp`` is refused on resume."""
    from handpose_lib import checkpoint as ckpt
    from handpose_lib.detector_train import StepBatches, hand_renderer, resolve_amp, step_batches

    cfg = DetectorTrainConfig(steps=3, batch_size=2)
    renderer = hand_renderer("capsule")
    inline = list(step_batches(cfg, renderer, 1))
    pooled = list(step_batches(DetectorTrainConfig(steps=3, batch_size=2, workers=1), renderer, 1))
    assert len(inline) == len(pooled) == 2
    for (x0, t0), (x1, t1) in zip(inline, pooled, strict=True):
        assert torch.equal(x0, x1) and all(torch.equal(t0[k], t1[k]) for k in t0)
    x, _ = StepBatches(cfg, renderer)[2]
    assert torch.equal(x, inline[1][0])
    # another frame seed: other frames for a further stage (the default is the recorded seed 0)
    other = StepBatches(DetectorTrainConfig(steps=3, batch_size=2, frame_seed=3), renderer)[2][0]
    assert other.shape != x.shape or not torch.equal(other, x)
    assert StepBatches(cfg, renderer).frames.seed == 0
    assert resolve_amp("off") == "off" and resolve_amp("auto") in ("off", "bf16")
    bf = DetectorTrainConfig(steps=1, batch_size=2, n_val=2, n_test=2, warmup_steps=1, amp="bf16")
    train_detector(bf, tmp_path / "m", tmp_path / "run", renderer=renderer, log=lambda *_: None)
    meta = json.loads((tmp_path / "m" / "checkpoint.json").read_text())
    assert meta["train_config"]["amp"] == "bf16" and meta["step"] == 1
    w = detect.load_detector(tmp_path / "m").net.state_dict()
    assert all(torch.isfinite(v.float()).all() for v in w.values())
    off = DetectorTrainConfig(steps=2, batch_size=2, n_val=2, n_test=2, warmup_steps=1, amp="off")
    with pytest.raises(ckpt.CheckpointError, match="another detector recipe"):
        train_detector(off, tmp_path / "m2", tmp_path / "run", renderer=renderer, log=lambda *_: None)


def test_committed_detector_loads_and_reproduces_its_photo_numbers():
    from pathlib import Path

    from handpose_lib.detector_train import evaluate_real_photos

    folder = Path(__file__).resolve().parents[1] / "models" / "detector"
    assert (folder / "model.safetensors").stat().st_size < 10_000_000
    meta = json.loads((folder / "checkpoint.json").read_text())
    assert meta["provenance"]["git_commit"]
    assert meta["step"] == meta["train_config"]["steps"] or meta["stopped_by"] == "minutes"
    det = detect.load_detector(folder)
    assert det.score_thresh == meta["score_thresh"]
    got = evaluate_real_photos(det)  # fp16 weights: the sidecar's numbers were measured in fp32
    want = meta["metrics"]["real_photos"]
    assert got["found"] == want["found"]
    for g, w in zip(got["per_photo"], want["per_photo"], strict=True):
        assert g["photo"] == w["photo"] and g["found"] == w["found"]
        assert abs(g["iou"] - w["iou"]) < 0.02


def test_detector_candidates_tool_rank_auc_and_run(capsys):
    """tools/detector_candidates.py: its AUC against hand-computed values, and a run on the
    committed detector and book model that finds the photos' hits among the candidates."""
    import importlib.util
    from pathlib import Path

    import numpy as np

    path = Path(__file__).resolve().parents[1] / "tools" / "detector_candidates.py"
    spec = importlib.util.spec_from_file_location("detector_candidates", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    hit = np.array([True, True, False, False])
    # pairs (hit, non-hit): 0.9>0.1, 0.9>0.5, 0.5=0.5 (half), 0.5>0.1 -> 3.5 / 4
    assert tool.rank_auc(hit, np.array([0.9, 0.5, 0.5, 0.1])) == 0.875
    assert tool.rank_auc(hit, np.array([0.0, 0.0, 1.0, 1.0])) == 0.0
    assert np.isnan(tool.rank_auc(np.array([True, True]), np.array([1.0, 2.0])))
    assert tool.main(["--k", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("hit ranks") == 16 and "AUC of hits against the others" in out
