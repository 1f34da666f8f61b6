"""The camera model of training crops (``data/camera_effects.py``), Fourier domain adaptation
(``data/fda.py``) and the detector-like re-crop of :class:`~handpose_lib.data.augment.Augment`."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

from handpose_lib.data import Augment, HandCrop, make_sample, project, uncrop_points
from handpose_lib.data import camera_effects as C
from handpose_lib.data.augment import recrop
from handpose_lib.data.crop import crop_box_from_joints
from handpose_lib.data.examples import dot_image, known_hand
from handpose_lib.data.fda import FDA, amplitude, amplitude_pool, band_halfwidth, fda

REPO = Path(__file__).resolve().parents[1]
MODEL = str(REPO / "models" / "book-tiny")
K = np.array([[600.0, 0, 320.0], [0, 598.0, 240.0], [0, 0, 1]])


def image(seed=0, h=48, w=64):
    """A smooth random (h, w, 3) float32 image in [0.1, 0.9]."""
    import cv2

    g = np.random.default_rng(seed).uniform(0.1, 0.9, (h // 8, w // 8, 3)).astype(np.float32)
    return cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC).clip(0.1, 0.9)


def hand_sample(seed=0):
    X = known_hand(seed)
    uv = project(X, K)
    return make_sample(dot_image(uv, 640, 480), uv, X, K, dataset="t", sample_id=str(seed), hand_side="right")


# ----------------------------------------------------------------------------------------
# camera effects


def test_exposure_white_balance_and_vignette_scale_linear_light():
    x = image()
    np.testing.assert_allclose(C.exposure(x, 1.0), 2 * x, rtol=1e-6)
    np.testing.assert_allclose(C.exposure(x, -1.0), x / 2, rtol=1e-6)
    np.testing.assert_array_equal(C.exposure(x, 0.0), x)
    y = C.white_balance(x, (1.5, 1.0, 0.5))
    np.testing.assert_allclose(y / x, np.broadcast_to([1.5, 1.0, 0.5], x.shape), rtol=1e-6)
    ones = np.ones((49, 65, 3), np.float32)
    v = C.vignette(ones, 0.4)
    assert (
        v[24, 32] == pytest.approx(1.0) and v[0, 0] == pytest.approx(0.6) and v[-1, -1] == pytest.approx(0.6)
    )
    assert np.all(np.diff(v[24, 32:, 0]) < 0)  # darker towards the edge
    assert C.vignette(x, 0.0) is x


def test_gamma_is_monotone_and_fixes_black_and_white():
    ramp = np.linspace(0, 1, 256, dtype=np.float32).reshape(1, -1, 1).repeat(3, axis=2)
    for g in (1.8, 2.2, 2.6):
        y = C.gamma_encode(ramp, g)
        assert np.all(np.diff(y[0, :, 0]) > 0)
        assert y[0, 0, 0] == 0.0 and y[0, -1, 0] == pytest.approx(1.0)
    x = image()
    np.testing.assert_allclose(C.gamma_encode(x**2.2, 2.2), x, atol=1e-5)


def test_blurs_keep_flat_images_and_spread_along_their_direction():
    flat = np.full((32, 32, 3), 0.3, np.float32)
    np.testing.assert_allclose(C.defocus(flat, 2.0), flat, atol=1e-6)
    np.testing.assert_allclose(C.motion_blur(flat, 6.0, 30.0), flat, atol=1e-6)
    x = image()
    assert C.defocus(x, 0.3) is x and C.motion_blur(x, 0.5, 10.0) is x
    dot = np.zeros((33, 33, 3), np.float32)
    dot[16, 16] = 1.0
    h = C.motion_blur(dot, 9.0, 0.0)  # horizontal: spreads along the row only
    assert h[16, 12, 0] > 0.05 and h[16, 20, 0] > 0.05 and h[12, 16, 0] == 0 and h[20, 16, 0] == 0
    v = C.motion_blur(dot, 9.0, 90.0)
    assert v[12, 16, 0] > 0.05 and v[16, 12, 0] == 0
    d = C.defocus(dot, 3.0)
    assert d.sum() == pytest.approx(3.0, rel=1e-5)  # energy kept (3 channels)
    assert d[16, 19, 0] > 0 and d[16, 21, 0] == 0  # a disk of radius 3


def test_sensor_noise_off_statistics_and_determinism():
    x = np.full((64, 64, 3), 0.25, np.float32)
    assert C.sensor_noise(x, np.random.default_rng(0), 0.0, 0.0) is x
    y = C.sensor_noise(x, np.random.default_rng(0), 0.1, 0.02)
    expected = np.sqrt(0.1**2 * 0.25 + 0.02**2)
    assert abs(float((y - x).mean())) < 0.003
    assert float((y - x).std()) == pytest.approx(expected, rel=0.05)
    np.testing.assert_array_equal(y, C.sensor_noise(x, np.random.default_rng(0), 0.1, 0.02))
    assert not np.array_equal(y, C.sensor_noise(x, np.random.default_rng(1), 0.1, 0.02))


def test_jpeg_keeps_shape_dtype_range_and_loses_more_at_low_quality():
    x = image(1, 64, 96)
    hi, lo = C.jpeg(x, 95), C.jpeg(x, 5)
    for y in (hi, lo):
        assert y.shape == x.shape and y.dtype == np.float32 and y.min() >= 0 and y.max() <= 1
    assert np.abs(hi - x).mean() < 0.01 < np.abs(lo - x).mean()


def test_camera_off_is_identity_and_on_is_reproducible():
    x = image(2)
    np.testing.assert_allclose(C.CameraEffects.off().apply(x, np.random.default_rng(0)), x, atol=1e-5)
    cam = C.CameraEffects(defocus_prob=0.5, motion_prob=0.5, jpeg_prob=1.0)
    a = cam.apply(x, np.random.default_rng(3))
    assert a.shape == x.shape and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    np.testing.assert_array_equal(a, cam.apply(x, np.random.default_rng(3)))
    assert np.abs(a - cam.apply(x, np.random.default_rng(4))).mean() > 1e-3
    s = hand_sample()
    out = cam(s, np.random.default_rng(0))
    assert out["image"].shape == s["image"].shape and out["image"].dtype == torch.float32
    for k in ("joints2d", "joints3d", "K", "visibility"):
        assert torch.equal(out[k], s[k])


def test_low_resolution_keeps_the_size_and_removes_fine_detail():
    import dataclasses

    import cv2

    x = np.random.default_rng(0).uniform(0, 1, (64, 64, 3)).astype(np.float32)
    cam = dataclasses.replace(C.CameraEffects.off(), downscale=3.0, downscale_prob=1.0)
    y = cam.apply(x, np.random.default_rng(1))
    assert y.shape == x.shape and y.dtype == np.float32 and 0 <= y.min() and y.max() <= 1
    detail = lambda im: float(np.abs(cv2.Laplacian(im, cv2.CV_32F)).mean())  # noqa: E731
    assert detail(y) < 0.5 * detail(x)
    # an average of linear light (as a sensor's larger pixels collect it), not a darkening
    assert float((y**2.2).mean()) == pytest.approx(float((x**2.2).mean()), rel=0.02)


# ----------------------------------------------------------------------------------------
# FDA


def _spectrum(img):
    return np.fft.fftshift(np.fft.fft2(img.astype(np.float64), axes=(0, 1)), axes=(0, 1))


@pytest.mark.parametrize(
    "shape, beta, mix", [((48, 64), 0.05, 1.0), ((64, 64), 0.1, 0.6), ((48, 64), 0.0, 1.0)]
)
def test_fda_changes_only_the_low_frequency_amplitude_and_keeps_the_phase(shape, beta, mix):
    src, photo = image(3, *shape), image(4, *shape) ** 3
    out = fda(src, amplitude(photo), beta, mix)
    S, O, T = _spectrum(src), _spectrum(out), _spectrum(photo)
    h, w = shape
    b = band_halfwidth(h, w, beta)
    band = np.zeros((h, w), bool)
    band[h // 2 - b : h // 2 + b + 1, w // 2 - b : w // 2 + b + 1] = True
    scale = np.abs(S).max()
    np.testing.assert_allclose(np.abs(O[~band]), np.abs(S[~band]), atol=1e-4 * scale)
    want = (1 - mix) * np.abs(S[band]) + mix * np.abs(T[band])
    np.testing.assert_allclose(np.abs(O[band]), want, atol=1e-4 * scale)
    big = np.abs(S) > 1e-3 * scale
    dphi = np.angle(O[big] * np.conj(S[big]))
    assert np.abs(dphi).max() < 1e-3
    assert np.abs(out - src).max() > 1e-3  # something did change


def test_fda_mix_zero_is_identity_and_means_follow_the_photo():
    src, photo = image(5), image(6) * 0.3
    np.testing.assert_allclose(fda(src, amplitude(photo), 0.05, 0.0), src, atol=1e-5)
    np.testing.assert_allclose(
        fda(src, amplitude(photo), 0.0, 1.0).mean((0, 1)), photo.mean((0, 1)), atol=1e-5
    )


def test_fda_transform_uses_the_photo_pool_and_is_reproducible():
    pool = amplitude_pool(32, 32)
    assert pool.ndim == 4 and pool.shape[1:] == (32, 32, 3) and len(pool) >= 10 and np.isfinite(pool).all()
    s = make_sample(
        image(7, 32, 32), np.zeros((21, 2)), np.ones((21, 3)), np.eye(3), dataset="t", sample_id="0"
    )
    assert FDA(prob=0.0)(s, np.random.default_rng(0)) is s
    a = FDA(prob=1.0, beta_range=(0.1, 0.1))(s, np.random.default_rng(0))
    b = FDA(prob=1.0, beta_range=(0.1, 0.1))(s, np.random.default_rng(0))
    assert torch.equal(a["image"], b["image"]) and not torch.equal(a["image"], s["image"])
    assert a["image"].shape == s["image"].shape and 0 <= a["image"].min() and a["image"].max() <= 1
    assert torch.equal(a["joints2d"], s["joints2d"])


# ----------------------------------------------------------------------------------------
# re-crop the way the evaluation crops, jittered like a detector's box


def test_recrop_without_jitter_is_the_evaluations_crop():
    s = HandCrop(size=128, margin=0.4)(hand_sample())  # a wide rendered crop
    out = recrop(s, HandCrop(size=128, margin=0.2), np.random.default_rng(0))
    x0, y0, side = crop_box_from_joints(out["joints2d"].numpy(), margin=0.2)
    assert (x0, y0, side) == pytest.approx((0.0, 0.0, 128.0), abs=1e-3)
    # meta["crop"] is the composition: back to the original photo's pixels
    back = uncrop_points(out["joints2d"].numpy(), out["meta"]["crop"])
    np.testing.assert_allclose(back, hand_sample()["joints2d"].numpy(), atol=1e-3)


def test_recrop_jitter_statistics():
    s = HandCrop(size=128, margin=0.3)(hand_sample(1))
    crop = HandCrop(size=128, margin=0.2, jitter=0.1, scale_range=(0.8, 1.2))
    x0, y0, side0 = crop_box_from_joints(s["joints2d"].numpy(), margin=0.2)
    centre0 = np.array([x0, y0]) + side0 / 2
    shifts, scales = [], []
    for i in range(400):
        c = recrop(s, crop, np.random.default_rng(i))["meta"]["crop"]
        f = s["meta"]["crop"]["side"] / 128.0
        box = np.array([c["x0"] - s["meta"]["crop"]["x0"], c["y0"] - s["meta"]["crop"]["y0"]]) / f
        side = c["side"] / f
        scales.append(side / side0)
        shifts.append((box + side / 2 - centre0) / side0)
    shifts, scales = np.array(shifts), np.array(scales)
    assert np.abs(shifts).max() <= 0.1 + 1e-9 and np.abs(shifts.mean(0)).max() < 0.01
    np.testing.assert_allclose(shifts.std(0), 0.1 / np.sqrt(3), rtol=0.12)  # uniform in +-0.1
    assert scales.min() >= 0.8 - 1e-9 and scales.max() <= 1.2 + 1e-9 and abs(scales.mean() - 1) < 0.02


def test_augment_options_run_after_the_old_draws():
    """With recrop off, FDA and the camera only add photometric steps after the old ones: the
    geometry of a seeded sample is the same with and without them."""
    s = HandCrop(size=64)(hand_sample(2))
    plain = Augment(rotation_deg=25, scale_range=(0.9, 1.1))(s, np.random.default_rng(5))
    more = Augment(rotation_deg=25, scale_range=(0.9, 1.1), fda=FDA(prob=1.0), camera=C.CameraEffects())(
        s, np.random.default_rng(5)
    )
    for k in ("joints2d", "joints3d", "K", "visibility"):
        assert torch.equal(plain[k], more[k])
    assert not torch.equal(plain["image"], more["image"])
    re = Augment(recrop=HandCrop(size=64, margin=0.2, jitter=0.05))(s, np.random.default_rng(5))
    assert re["image"].shape == (3, 64, 64) and "crop" in re["meta"]


# ----------------------------------------------------------------------------------------
# the recipe options and the real-photo validation

NEW_FIELDS = ("recrop", "crop_jitter", "crop_scale_range", "fda", "fda_beta", "camera", "val_real")


def test_recipe_options_default_off_and_old_recipes_still_compare_equal():
    from handpose_lib.config import TrainConfig, make_augment, recipe_diff, same_recipe

    now = TrainConfig()
    old = {k: v for k, v in now.to_dict().items() if k not in NEW_FIELDS}  # a config.json of before
    assert TrainConfig.from_dict(old) == now
    assert same_recipe(old, now.to_dict()) and same_recipe(now.to_dict(), old)
    assert recipe_diff(old, TrainConfig(camera=True).to_dict()) == ["camera"]
    assert same_recipe(old, TrainConfig(val_real=True).to_dict())  # logging only: same weights
    aug = make_augment(now)
    assert aug.recrop is None and aug.fda is None and aug.camera is None
    aug = make_augment(TrainConfig(recrop=True, crop_jitter=0.1, fda=0.5, camera=True))
    assert aug.recrop.margin == 0.2 and aug.recrop.jitter == 0.1 and aug.recrop.size == 128
    assert aug.fda.prob == 0.5 and isinstance(aug.camera, C.CameraEffects)
    with pytest.raises(ValueError, match="fda"):
        TrainConfig(fda=2.0)


def test_the_committed_models_recipe_loads_and_matches_its_book_recipe():
    from handpose_lib import checkpoint as ck
    from handpose_lib.book_model import book_v4_stage2_recipe
    from handpose_lib.config import TrainConfig, same_recipe

    meta = ck.load_checkpoint(MODEL).meta
    saved = meta["train_config"]  # book model v4's last stage: trained with the options
    assert all(k in saved for k in NEW_FIELDS)
    cfg, want = TrainConfig.from_dict(saved), book_v4_stage2_recipe()
    assert (cfg.camera, cfg.fda, cfg.recrop, cfg.val_real) == (
        want.camera,
        want.fda,
        want.recrop,
        want.val_real,
    )
    assert cfg.camera and not (cfg.recrop or cfg.fda)
    assert same_recipe(saved, cfg.to_dict())


def test_real_photo_validation_matches_handpose_eval(tmp_path):
    import json

    from handpose_lib import cli
    from handpose_lib.evaluate import real_photos_metrics
    from handpose_lib.inference import load_trained

    model, _ = load_trained(MODEL, device="cpu")
    got = real_photos_metrics(model)
    assert cli.main(["eval", "--checkpoint", MODEL, "--data", "real-hands", "--device", "cpu",
                     "--json", str(tmp_path / "r.json")]) == 0  # fmt: skip
    report = json.loads((tmp_path / "r.json").read_text())
    assert got["val_real_epe2d_px"] == pytest.approx(report["overall"]["epe2d_px"], rel=1e-6)
    # the same definitions as benchmarks/inference.py's accuracy table (its committed results were
    # measured on this model, through the fused inference path: equal to float rounding)
    bench = json.loads((REPO / "benchmarks" / "results" / "inference.json").read_text())
    row = next(r for r in bench["accuracy"] if r["weights"].startswith("book model"))
    assert got["val_real_epe2d_image_px"] == pytest.approx(row["epe_px"], rel=1e-3)
    assert got["val_real_pck_0.2"] == pytest.approx(row["pck_0.2"], abs=1e-9)
    assert {k for k in got if k.startswith("val_real_pck_0.2_")} == {
        "val_real_pck_0.2_freihand",
        "val_real_pck_0.2_onehand10k",
        "val_real_pck_0.2_panoptic",
    }


def test_recipe_ab_ingredients_change_one_thing_and_table_shows_differences():
    import importlib.util

    spec = importlib.util.spec_from_file_location("recipe_ab", REPO / "tools" / "recipe_ab.py")
    ab = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ab)
    from handpose_lib.config import TrainConfig, recipe_diff

    base = TrainConfig().to_dict()
    for name, ing in ab.INGREDIENTS.items():
        changed = TrainConfig(**{**base, **ing.get("set", {})}).to_dict()
        assert len(recipe_diff(base, changed)) + len(ing.get("engine", {})) == (name != "baseline"), name
    rows = {
        "baseline": {"val_real_pck_0.2": 0.40, "val_epe2d_px": 12.0, "wall_s": 5},
        "camera": {"val_real_pck_0.2": 0.45, "val_epe2d_px": 12.5, "wall_s": 6},
    }
    text = ab.table(rows)
    assert "| camera | 0.450 (+0.050)" in text and "12.50 (+0.50)" in text and "| baseline | 0.400 |" in text


def test_recipe_ab_record_adds_and_replaces_runs_by_name(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("recipe_ab", REPO / "tools" / "recipe_ab.py")
    ab = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ab)
    rec = tmp_path / "sub" / "ab.json"
    ab.record(rec, "s_mesh", {"steps": 10, "val_real_pck_0.2": 0.3}, "python tools/recipe_ab.py s_mesh")
    ab.record(rec, "s_capsule", {"steps": 10, "val_real_pck_0.2": 0.2}, "cmd")
    ab.record(rec, "s_mesh", {"steps": 20, "val_real_pck_0.2": 0.4}, "cmd2")
    runs = json.loads(rec.read_text())["runs"]
    assert [r["name"] for r in runs] == ["s_capsule", "s_mesh"]
    assert runs[1]["steps"] == 20 and runs[1]["command"] == "cmd2" and "CPU cores" in runs[1]["machine"]
    # the recorded command is quoted for a shell and leaves out where the record is kept
    argv = ["s_x", "--steps", "5", "--engine", '{"hand_model": "mesh"}']
    argv_recorded = [*argv, "--record", "r.json", "--record=r2.json"]
    cmd = ab.command_line(argv_recorded)
    assert cmd == 'python tools/recipe_ab.py s_x --steps 5 --engine \'{"hand_model": "mesh"}\''
    assert shlex.split(cmd)[2:] == argv


def test_recipe_ab_a_stopped_run_says_so_and_records_nothing(tmp_path, monkeypatch, capsys):
    import importlib.util

    from handpose_lib.train import FitResult

    spec = importlib.util.spec_from_file_location("recipe_ab", REPO / "tools" / "recipe_ab.py")
    ab = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ab)
    monkeypatch.setattr(ab, "cached_synthetic", lambda *a, **k: [])
    monkeypatch.setattr(ab, "build_for_config", lambda cfg: None)
    monkeypatch.setattr(
        ab.T,
        "fit",
        lambda model, data, val, cfg, run_dir, **k: FitResult(run_dir, None, [], 0, False, "SIGTERM"),
    )
    rec = tmp_path / "ab.json"
    rc = ab.main(["s_x", "--steps", "20", "--out", str(tmp_path / "runs"), "--record", str(rec)])
    err = capsys.readouterr().err
    assert rc == 1 and not rec.exists()
    assert "s_x: stopped by SIGTERM at step 0 of 20; nothing recorded" in err and "Traceback" not in err
