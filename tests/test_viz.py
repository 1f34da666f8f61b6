import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from handpose_lib import metrics, viz
from handpose_lib import skeleton as sk
from handpose_lib.data.sample import project


def hand(seed=0):
    return viz.simple_hand(np.random.default_rng(seed).uniform(0, 1, 5), yaw=10.0)


# ----------------------------------------------------------------------------------------
# the simple hand (forward kinematics)


def test_simple_hand_keeps_bone_lengths_when_bending():
    rest = viz.simple_hand()
    bent = viz.simple_hand((1, 1, 1, 1, 1), yaw=30, pitch=-20)
    assert rest.shape == (21, 3)
    np.testing.assert_allclose(sk.bone_lengths(rest), sk.bone_lengths(bent), atol=1e-9)
    # the reference bone is the library's mean hand size
    assert sk.reference_bone_length(rest) == pytest.approx(sk.MEAN_REFERENCE_BONE_MM)
    # a fist brings the index tip much closer to the wrist
    assert np.linalg.norm(bent[8] - bent[0]) < 0.7 * np.linalg.norm(rest[8] - rest[0])


def test_simple_hand_bends_only_the_named_finger():
    rest = viz.simple_hand()
    j = viz.simple_hand({"index": 0.8})
    moved = np.linalg.norm(j - rest, axis=1) > 1e-9
    assert moved.nonzero()[0].tolist() == [6, 7, 8]  # index PIP, DIP, tip (MCP stays)


def test_simple_hand_faces_the_camera_and_projects_inside_the_image():
    j = viz.simple_hand()
    assert (j[:, 2] > 300).all()
    assert j[12, 1] < j[0, 1]  # fingers up: the middle tip is above the wrist (y down)
    assert j[4, 0] > j[20, 0]  # right hand, palm to the camera: thumb on the image's right
    uv = project(j, viz.SIMPLE_K)
    assert ((uv > 0) & (uv < 256)).all()


def test_simple_hand_rejects_bad_bends():
    with pytest.raises(ValueError, match="5 values"):
        viz.simple_hand((0.1, 0.2))
    with pytest.raises(KeyError, match="unknown finger"):
        viz.simple_hand({"thumbb": 1.0})


def test_project_matches_the_pinhole_formula():
    x = np.array([[10.0, -20.0, 400.0]])
    uv = project(x, viz.SIMPLE_K)
    np.testing.assert_allclose(uv, [[128 + 320 * 10 / 400, 128 - 320 * 20 / 400]])


# ----------------------------------------------------------------------------------------
# 3D figures


def test_hand_figure_3d_has_one_trace_per_finger_and_marks_hidden_joints():
    j = hand()
    hidden = np.zeros(21, bool)
    hidden[8] = True
    fig = viz.hand_figure_3d(j, visible=~hidden)
    assert len(fig.data) == 5 and all(isinstance(t, go.Scatter3d) for t in fig.data)
    index = fig.data[1]
    np.testing.assert_allclose(index.x, j[[0, 5, 6, 7, 8], 0])
    assert list(index.marker.symbol) == ["circle"] * 4 + ["circle-open"]
    # accepts torch tensors too
    assert len(viz.hand_figure_3d(torch.as_tensor(j)).data) == 5


def test_compare_3d_traces_and_error_segments():
    g = hand(0)
    p = g + 5.0
    fig = viz.compare_3d(g, p, hidden=np.arange(21) == 4)
    assert len(fig.data) == 11
    err = fig.data[-1]
    seg = np.array([err.x, err.y, err.z], dtype=float).T
    np.testing.assert_allclose(seg[0::3], g)
    np.testing.assert_allclose(seg[1::3], p)
    assert np.isnan(seg[2::3]).all()
    assert "8.7 mm" in fig.layout.title.text  # |(5, 5, 5)| = 8.66
    assert fig.data[0].marker.symbol[-1] == "circle-open"  # thumb tip hidden


def test_bad_joint_shapes_and_infinities_are_refused():
    with pytest.raises(ValueError, match=r"\(21, 3\)"):
        viz.hand_figure_3d(np.zeros((20, 3)))
    bad = hand()
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        viz.compare_3d(hand(), bad)


def test_unlabelled_nan_joints_are_skipped():
    g, p = hand(0), hand(0) + 3.0
    g[20] = np.nan  # pinky tip without a label
    fig = viz.compare_3d(g, p)
    assert "5.2 mm" in fig.layout.title.text  # |(3, 3, 3)| over the 20 labelled joints
    img = np.zeros((64, 64, 3), np.uint8)
    j2 = np.full((21, 2), 40.5)
    j2[0] = (10.5, 20.5)
    j2[5:] = np.nan
    out = viz.overlay_2d(img, j2)
    assert out[20, 10].sum() > 0 and out[40, 40].sum() > 0
    assert img.sum() == 0  # a uint8 input is not drawn into
    j2[:] = np.nan
    assert viz.overlay_2d(img, j2).sum() == 0


def test_camera_frustum_corners_project_to_the_image_corners():
    fig = viz.camera_frustum(viz.SIMPLE_K, (256, 256), depth=50.0)
    t = fig.data[0]
    pts = np.array([t.x, t.y, t.z], dtype=float).T
    corners = pts[:4]
    np.testing.assert_allclose(corners[:, 2], 50.0)
    np.testing.assert_allclose(project(corners, viz.SIMPLE_K), [[0, 0], [256, 0], [256, 256], [0, 256]])
    # rays start at the camera centre
    assert np.allclose(pts[6], 0.0)


def test_finger_bend_viewer_frames_and_sliders():
    fig = viz.finger_bend_viewer(steps=6)
    assert len(fig.data) == 10  # 5 fingers in 3D, 5 in 2D
    assert len(fig.frames) == 5 * 6
    assert len(fig.layout.sliders) == 5
    # each frame replaces exactly the 3D and 2D traces of its finger
    fr = {f.name: f for f in fig.frames}
    f = fr["middle-1.00"]
    assert list(f.traces) == [2, 7]
    j3 = viz.simple_hand({"middle": 1.0}, yaw=-25.0, pitch=15.0)
    np.testing.assert_allclose(f.data[0].z, j3[[0, 9, 10, 11, 12], 2])
    np.testing.assert_allclose(f.data[1].x, project(j3, viz.SIMPLE_K)[[0, 9, 10, 11, 12], 0])
    step = fig.layout.sliders[2].steps[-1]
    assert step.method == "animate" and list(step.args[0]) == ["middle-1.00"]
    assert len(viz.finger_bend_viewer(steps=3, show_camera=True).data) == 11


# ----------------------------------------------------------------------------------------
# 2D drawing


def test_overlay_2d_draws_at_the_joints_in_the_pixel_convention():
    img = np.zeros((3, 64, 64), np.float32)  # sample convention: (3, H, W) in [0, 1]
    j2 = np.full((21, 2), 40.5)
    j2[0] = (10.5, 20.5)  # the centre of pixel (10, 20)
    out = viz.overlay_2d(img, j2, radius=2)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[20, 10], viz._hex_to_rgb(sk.FINGER_COLORS["wrist"]))
    assert out[40, 40].sum() > 0  # the other joints
    assert out[0, 63].sum() == 0 and out[63, 0].sum() == 0  # far from the skeleton: untouched
    assert img.sum() == 0  # the input is not modified


def test_overlay_2d_scale_and_prediction():
    img = np.full((32, 32, 3), 255, np.uint8)
    gt = np.full((21, 2), 8.5)
    pred = np.full((21, 2), 24.5)
    out = viz.overlay_2d(img, gt, pred2d=pred, scale=2)
    assert out.shape == (64, 64, 3)
    # prediction drawn in dark grey at (24.5 * 2 - 0.5) = pixel 48
    np.testing.assert_array_equal(out[48, 48], viz._hex_to_rgb(viz.PRED_COLOR))
    assert (img == 255).all()


def test_to_uint8_image_layouts():
    chw = torch.rand(3, 5, 7)
    hwc = viz.to_uint8_image(chw)
    assert hwc.shape == (5, 7, 3) and hwc.dtype == np.uint8
    np.testing.assert_array_equal(hwc[..., 0], np.round(chw[0].numpy() * 255).astype(np.uint8))
    assert viz.to_uint8_image(np.zeros((5, 7))).shape == (5, 7, 3)
    with pytest.raises(ValueError, match="image"):
        viz.to_uint8_image(np.zeros((2, 5, 7, 3)))


def test_png_bytes_round_trip():
    import cv2

    img = np.random.default_rng(0).integers(0, 255, (9, 11, 3), dtype=np.uint8)
    data = viz.png_bytes(img)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    back = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(back, img)


def test_image_grid_tiles_in_rows():
    ims = [np.full((4, 6, 3), k * 40, np.uint8) for k in range(5)]
    g = viz.image_grid(ims, cols=3, pad=1)
    assert g.shape == (2 * 4 + 3, 3 * 6 + 4, 3)
    assert g[1, 1, 0] == 0 and g[1 + 5, 1 + 7, 0] == 160  # images 0 and 4
    with pytest.raises(ValueError, match="same size"):
        viz.image_grid([np.zeros((4, 6, 3)), np.zeros((5, 6, 3))])


def test_image_figure_places_pixels_by_the_convention():
    fig = viz.image_figure(np.zeros((3, 32, 48)), joints2d=hand()[:, :2] / 10, pred2d=hand()[:, :2] / 10)
    assert isinstance(fig.data[0], go.Image) and fig.data[0].x0 == 0.5
    assert len(fig.data) == 1 + 5 + 5
    assert list(fig.layout.xaxis.range) == [0, 48] and list(fig.layout.yaxis.range) == [32, 0]


def test_heatmap_grid_has_a_map_and_a_marker_per_joint():
    maps = np.random.default_rng(0).random((21, 16, 16))
    fig = viz.heatmap_grid(maps, joints2d=np.full((21, 2), 64.0), image_size=(128, 128))
    assert sum(isinstance(t, go.Heatmap) for t in fig.data) == 21
    assert sum(isinstance(t, go.Scatter) for t in fig.data) == 21
    np.testing.assert_allclose(fig.data[0].x[:2], [4.0, 12.0])  # cell centres in image pixels
    assert len(viz.heatmap_grid(maps[:4], cols=2).data) == 4


# ----------------------------------------------------------------------------------------
# LHR helpers and PCK


def test_spatial_softmax_and_expected_xy():
    f = np.zeros((8, 8))
    f[2, 5] = 10.0
    p = viz.spatial_softmax(f, beta=100.0)
    assert p.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(viz.expected_xy(p), [5.5, 2.5], atol=1e-6)  # cell centre
    np.testing.assert_allclose(viz.expected_xy(p, (64, 64)), [44.0, 20.0], atol=1e-5)
    # beta -> 0: uniform, the expected coordinate is the image centre
    np.testing.assert_allclose(viz.expected_xy(viz.spatial_softmax(f, 0.0), (64, 64)), [32.0, 32.0])


def test_spatial_softmax_agrees_with_the_library_lhr():
    lhr = pytest.importorskip("handpose_lib.lhr")
    f = torch.randn(1, 21, 16, 16, dtype=torch.float64)
    beta = 3.0
    out = lhr.soft_argmax_2d(f, torch.full((21,), beta, dtype=torch.float64), (128, 128))
    xy = out[0] if isinstance(out, tuple) else out
    ours = viz.expected_xy(viz.spatial_softmax(f[0].numpy(), beta), (128, 128))
    np.testing.assert_allclose(xy[0].numpy(), ours, atol=1e-6)


def test_beta_slider_figure_frames():
    f = np.random.default_rng(0).normal(size=(16, 16))
    betas = [0.5, 1, 2, 5]
    fig = viz.beta_slider_figure(f, betas, image_size=(128, 128), true_xy=(30.0, 40.0))
    assert len(fig.data) == 4 and len(fig.frames) == 4
    assert [s.label for s in fig.layout.sliders[0].steps] == ["0.5", "1", "2", "5"]
    last = fig.frames[-1]
    np.testing.assert_allclose(np.asarray(last.data[0].z).sum(), 1.0)
    e = viz.expected_xy(viz.spatial_softmax(f, 5), (128, 128))
    np.testing.assert_allclose([last.data[1].x[0], last.data[1].y[0]], e)


def test_pck_figure_accepts_tuples_and_pck_results():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(10, 21, 3)) * 40
    p = g + rng.normal(size=g.shape) * 10
    curve = metrics.pck(p, g, metrics.DEFAULT_3D_THRESHOLDS)
    fig = viz.pck_figure(
        {"model": curve, "other work": ([20, 50], [0.5, 0.9])}, styles={"other work": {"dash": "dot"}}
    )
    assert len(fig.data) == 2
    np.testing.assert_allclose(fig.data[0].y, curve.pck)
    assert fig.data[1].line.dash == "dot"
    with pytest.raises(ValueError, match="thresholds"):
        viz.pck_figure({"bad": ([1, 2, 3], [0.1, 0.2])})


def test_hand_video_3d_frames_slider_and_play():
    rest = viz.simple_hand()
    T = 7
    J = np.stack([rest + [3.0 * t, 0.0, 0.0] for t in range(T)])
    J[2] = np.nan  # a frame without a hand
    fig = viz.hand_video_3d(J, fps=10.0)
    assert len(fig.data) == 5 and len(fig.frames) == T
    assert [f.name for f in fig.frames] == [str(t) for t in range(T)]
    (slider,) = fig.layout.sliders
    assert len(slider.steps) == T and list(slider.steps[4].args[0]) == ["4"]
    assert slider.steps[4].label == "0.40"
    for t, fr in enumerate(fig.frames):
        assert list(fr.traces) == list(range(5)) and len(fr.data) == 5
        if t != 2:  # the frame's wrist (first point of the thumb chain) is the hand's wrist at time t
            assert fr.data[0].x[0] == pytest.approx(J[t, 0, 0])
    assert np.isnan(np.asarray(fig.frames[2].data[0].x, float)).all()
    labels = [b.label for b in fig.layout.updatemenus[0].buttons]
    assert labels == ["play", "pause"]
    assert fig.layout.updatemenus[0].buttons[0].args[1]["frame"]["duration"] == 100
    xr = fig.layout.scene.xaxis.range  # fixed to the whole clip, so nothing rescales while playing
    assert xr[0] <= np.nanmin(J[..., 0]) and xr[1] >= np.nanmax(J[..., 0])
    with pytest.raises(ValueError, match="T, 21, 3"):
        viz.hand_video_3d(rest)
    with pytest.raises(ValueError, match="no frame has a hand"):
        viz.hand_video_3d(np.full((3, 21, 3), np.nan))


def test_image_trace_holds_the_compressed_image_and_decodes_back():
    import base64

    import cv2

    flat = np.zeros((40, 60, 3), np.uint8)
    flat[:, 30:] = (200, 30, 10)  # two flat colours: PNG is smaller and lossless
    tr = viz.image_trace(flat, x0=0.5, dx=1)
    assert isinstance(tr, go.Image) and tr.z is None and tr.x0 == 0.5 and tr.hoverinfo == "skip"
    head, data = tr.source.split(",", 1)
    assert head == "data:image/png;base64"
    back = cv2.cvtColor(cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), 1), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(back, flat)
    rng = np.random.default_rng(0)  # a photo-like image: smooth plus grain -> JPEG, close to it
    y, x = np.mgrid[0:120, 0:160]
    photo = np.clip(np.stack([x, y, x + y], -1) * 0.8 + rng.normal(0, 6, (120, 160, 3)), 0, 255).astype(
        np.uint8
    )
    src = viz.image_trace(photo).source
    assert src.startswith("data:image/jpeg;base64,")
    dec = cv2.imdecode(np.frombuffer(base64.b64decode(src.split(",", 1)[1]), np.uint8), 1)[..., ::-1]
    assert np.abs(dec.astype(float) - photo).mean() < 6
    as_numbers = len(go.Figure(go.Image(z=photo)).to_json())
    assert len(go.Figure(viz.image_trace(photo)).to_json()) * 4 < as_numbers
