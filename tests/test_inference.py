"""Inference (handpose_lib/inference.py): one image end to end, the fast paths and ONNX give the
eager model's outputs."""

import numpy as np
import pytest
import torch
from torch import nn

from handpose_lib import inference as inf
from handpose_lib import model as hm
from handpose_lib.device import cpu_bf16_supported


@pytest.fixture(scope="module")
def tiny():
    """A small tiny-config model (64 px input) with non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    m = hm.build_model(hm.tiny_config(input_size=64, heatmap_size=32))
    g = torch.Generator().manual_seed(1)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            c = mod.num_features
            mod.running_mean.copy_(0.1 * torch.randn(c, generator=g))
            mod.running_var.copy_(0.5 + torch.rand(c, generator=g))
            mod.weight.data.copy_(1 + 0.2 * torch.randn(c, generator=g))
            mod.bias.data.copy_(0.1 * torch.randn(c, generator=g))
    return m.eval()


@pytest.fixture(scope="module")
def images():
    return torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))


def _eager(model, x):
    with torch.no_grad():
        return model.eval()(x)


def _close(a, b, atol_px=1e-3, atol3d=1e-4):
    torch.testing.assert_close(a.coords2d.float(), b.coords2d.float(), atol=atol_px, rtol=0)
    torch.testing.assert_close(a.joints3d.float(), b.joints3d.float(), atol=atol3d, rtol=1e-4)


def test_fuse_conv_bn_folds_every_batchnorm_and_keeps_outputs(tiny, images):
    m = hm.build_model(tiny.config)
    m.load_state_dict(tiny.state_dict())
    m.eval()
    n_bn = sum(isinstance(x, nn.BatchNorm2d) for x in m.modules())
    ref = _eager(m, images)
    assert inf.fuse_conv_bn(m) == n_bn > 0
    assert not any(isinstance(x, nn.BatchNorm2d) for x in m.modules())
    _close(_eager(m, images), ref)
    # the folded weights are the BN-scaled ones: conv1 of the stem, by hand
    bn = tiny.encoder.bn1
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    torch.testing.assert_close(m.encoder.conv1.weight, tiny.encoder.conv1.weight * scale[:, None, None, None])
    torch.testing.assert_close(m.encoder.conv1.bias, bn.bias - bn.running_mean * scale)


def test_fuse_conv_bn_refuses_training_mode(tiny):
    m = hm.build_model(tiny.config).train()
    with pytest.raises(ValueError, match="eval"):
        inf.fuse_conv_bn(m)


def test_prepare_for_inference_copies_and_matches_eager(tiny, images):
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    p = inf.prepare_for_inference(tiny)
    assert p is not tiny
    assert all(torch.equal(before[k], v) for k, v in tiny.state_dict().items())
    assert p.encoder.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert not any(q.requires_grad for q in p.parameters())
    out = inf.predict(p, images)
    assert out.coords2d.shape == (3, 21, 2) and out.joints3d.shape == (3, 21, 3)
    _close(out, _eager(tiny, images))
    # NCHW input to the NHWC model and batch 1 give the same numbers
    _close(inf.predict(p, images[:1], channels_last=False), _eager(tiny, images[:1]))


@pytest.mark.skipif(not cpu_bf16_supported(), reason="this CPU has no native bf16 kernels")
def test_bf16_predict_is_close(tiny, images):
    p = inf.prepare_for_inference(tiny)
    out = inf.predict(p, images, bf16=True)
    assert out.coords2d.dtype == torch.float32
    ref = _eager(tiny, images)
    # bf16 keeps ~3 significant digits: coordinates within a pixel of a 64-px crop
    assert (out.coords2d - ref.coords2d).abs().max() < 1.0
    assert (out.joints3d - ref.joints3d).abs().max() < 0.05 * ref.joints3d.abs().max() + 1e-3


@pytest.mark.filterwarnings("ignore:To copy construct from a tensor")  # skeleton's torch.tensor(numpy) traced
def test_compiled_model_matches_eager(tiny, images):
    p = inf.prepare_for_inference(tiny)
    c = inf.compile_model(p, backend="aot_eager")
    _close(inf.predict(c, images, inference_mode=False), _eager(tiny, images))


def test_ort_session_matches_eager(tiny, images, tmp_path):
    path = inf.export_onnx(tiny, tmp_path / "tiny.onnx")
    s = inf.ort_session(path, threads=1, spin=False)
    opts = s.get_session_options()
    assert opts.intra_op_num_threads == 1 and opts.inter_op_num_threads == 1
    got = inf.ort_predict(s, images)
    assert sorted(got) == ["coords2d", "joints3d"]
    ref = _eager(tiny, images)
    np.testing.assert_allclose(got["coords2d"], ref.coords2d.numpy(), atol=1e-3, rtol=0)
    np.testing.assert_allclose(got["joints3d"], ref.joints3d.numpy(), atol=1e-4, rtol=1e-4)
    one = inf.ort_predict(s, images[:1].numpy(), outputs=("coords2d",))
    np.testing.assert_allclose(one["coords2d"], ref.coords2d[:1].numpy(), atol=1e-3, rtol=0)


def test_ort_errors_are_clear(tmp_path, tiny):
    with pytest.raises(FileNotFoundError, match="export"):
        inf.ort_session(tmp_path / "missing.onnx")
    path = inf.export_onnx(tiny, tmp_path / "t.onnx")
    s = inf.ort_session(path, threads=1)
    with pytest.raises(ValueError, match=r"\(B, 3, S, S\)"):
        inf.ort_predict(s, np.zeros((64, 64, 3), np.float32))


# ----------------------------------------------------------------------------------------
# ONNX export (the 128 px tiny model of the book)


@pytest.fixture(scope="module")
def tiny128():
    torch.manual_seed(0)
    return hm.build_model(hm.tiny_config()).eval()


def test_onnx_round_trip(tiny128, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    path = inf.export_onnx(tiny128, tmp_path / "tiny128.onnx", batch_size=1)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == list(inf.ONNX_OUTPUTS)
    x = torch.rand(3, 3, 128, 128)  # another batch size than exported: the batch axis is dynamic
    results = dict(zip(inf.ONNX_OUTPUTS, sess.run(None, {"images": x.numpy()})))
    with torch.no_grad():
        ref = tiny128(x)
    # tolerance: 1e-3 px for coordinates, 1e-4 (normalised units) for 3D, 1e-4 for heatmaps
    np.testing.assert_allclose(results["coords2d"], ref.coords2d.numpy(), atol=1e-3, rtol=0)
    np.testing.assert_allclose(results["joints3d"], ref.joints3d.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(results["bones"], ref.bones.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(results["heatmaps"], ref.heatmaps.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(results["probs"], ref.probs.numpy(), atol=1e-6, rtol=0)
    assert not tiny128.training


def test_onnx_max_diff_is_small_for_an_exact_export(tiny128, tmp_path):
    pytest.importorskip("onnxruntime")
    path = inf.export_onnx(tiny128, tmp_path / "t.onnx")
    d = inf.onnx_max_diff(tiny128, path)
    assert set(d) == {"coords2d", "joints3d"} and d["coords2d"] < 1e-2 and d["joints3d"] < 1e-3


# ----------------------------------------------------------------------------------------
# one image end to end


def test_predict_image_maps_the_crop_back_to_the_photo(tiny, images):
    """A photo made of a crop placed into a larger canvas: predicting it with the crop's box
    gives the crop's own prediction, shifted and scaled back into the canvas."""
    crop = (images[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)  # (64, 64, 3)
    direct = inf.predict_image(tiny, crop)
    assert direct.crop == {"x0": 0.0, "y0": 0.0, "side": 64.0, "size": 64.0}
    assert direct.joints2d.shape == (21, 2) and direct.joints3d.shape == (21, 3)
    with torch.no_grad():
        ref = tiny(torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255)
    np.testing.assert_allclose(direct.joints2d, ref.coords2d[0].numpy(), atol=1e-4)
    np.testing.assert_allclose(direct.joints3d, ref.joints3d[0].numpy(), atol=1e-5)
    # the same pixels at (30, 10) of a 100 x 160 photo, scaled by 2 (nearest: exact pixels)
    photo = np.zeros((100 + 128, 160 + 128, 3), np.uint8)
    photo[10 : 10 + 128, 30 : 30 + 128] = crop.repeat(2, 0).repeat(2, 1)
    big = inf.predict_image(tiny, photo, box=(30, 10, 30 + 128, 10 + 128), margin=0.0)
    assert big.crop["side"] == 128.0 and (big.crop["x0"], big.crop["y0"]) == (30.0, 10.0)
    np.testing.assert_allclose(big.joints2d, direct.joints2d * 2 + [30, 10], atol=0.5)


def test_predict_image_of_a_sample_tensor_is_the_model_on_it(tiny, images):
    out = inf.predict_image(tiny, images[1])
    with torch.no_grad():
        ref = tiny(images[1:2])
    assert out.joints2d.dtype == np.float32
    np.testing.assert_array_equal(out.joints2d, ref.coords2d[0].numpy())
    np.testing.assert_array_equal(out.joints3d, ref.joints3d[0].numpy())
    with pytest.raises(ValueError, match="X1 > X0"):
        inf.predict_image(tiny, images[1], box=(10, 10, 5, 5))


def test_onnx_pose_model_answers_like_the_model_and_is_exported_once(tiny, images, tmp_path, monkeypatch):
    """``OnnxPoseModel``: the model's coords2d, joints3d and probs through ONNX Runtime; exported
    into the cache once per weights' sha256 (a second one reuses the file), into a temporary
    folder without a sha."""
    monkeypatch.setenv("HANDPOSE_CACHE", str(tmp_path / "cache"))
    runner = inf.OnnxPoseModel(tiny, "ab" * 32, threads=1)
    assert runner.path.parent == tmp_path / "cache" / "onnx" and runner.path.is_file()
    got, ref = runner(images), _eager(tiny, images)
    _close(got, ref)
    torch.testing.assert_close(got.probs, ref.probs.float(), atol=1e-5, rtol=1e-4)
    stamp = runner.path.stat().st_mtime_ns
    again = inf.OnnxPoseModel(tiny, "ab" * 32, threads=1)
    assert again.path == runner.path and runner.path.stat().st_mtime_ns == stamp
    anonymous = inf.OnnxPoseModel(tiny, None, threads=1, spin=True)
    assert not anonymous.path.is_relative_to(tmp_path / "cache")
    spins = lambda r: r.session.get_session_options().get_session_config_entry(  # noqa: E731
        "session.intra_op.allow_spinning"
    )
    assert spins(runner) == "0" and spins(anonymous) == "1"  # the pipeline's default: no spinning
    _close(anonymous(images[:1]), _eager(tiny, images[:1]))


def test_onnx_pose_model_without_a_writable_cache_exports_for_the_session(
    tiny, images, tmp_path, monkeypatch
):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("HANDPOSE_CACHE", str(blocker))
    runner = inf.OnnxPoseModel(tiny, "cd" * 32, threads=1)
    assert runner.path.is_file() and not runner.path.is_relative_to(blocker)
    _close(runner(images[:1]), _eager(tiny, images[:1]))
