"""The fast inference paths (handpose_lib/fast.py) give the eager model's outputs."""

import numpy as np
import pytest
import torch
from torch import nn

from handpose_lib import fast
from handpose_lib import model as hm


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
    assert fast.fuse_conv_bn(m) == n_bn > 0
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
        fast.fuse_conv_bn(m)


def test_prepare_for_inference_copies_and_matches_eager(tiny, images):
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    p = fast.prepare_for_inference(tiny)
    assert p is not tiny
    assert all(torch.equal(before[k], v) for k, v in tiny.state_dict().items())
    assert p.encoder.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert not any(q.requires_grad for q in p.parameters())
    out = fast.predict(p, images)
    assert out.coords2d.shape == (3, 21, 2) and out.joints3d.shape == (3, 21, 3)
    _close(out, _eager(tiny, images))
    # NCHW input to the NHWC model and batch 1 give the same numbers
    _close(fast.predict(p, images[:1], channels_last=False), _eager(tiny, images[:1]))


@pytest.mark.skipif(not fast.cpu_bf16_supported(), reason="this CPU has no native bf16 kernels")
def test_bf16_predict_is_close(tiny, images):
    p = fast.prepare_for_inference(tiny)
    out = fast.predict(p, images, bf16=True)
    assert out.coords2d.dtype == torch.float32
    ref = _eager(tiny, images)
    # bf16 keeps ~3 significant digits: coordinates within a pixel of a 64-px crop
    assert (out.coords2d - ref.coords2d).abs().max() < 1.0
    assert (out.joints3d - ref.joints3d).abs().max() < 0.05 * ref.joints3d.abs().max() + 1e-3


@pytest.mark.filterwarnings("ignore:To copy construct from a tensor")  # skeleton's torch.tensor(numpy) traced
def test_compiled_model_matches_eager(tiny, images):
    p = fast.prepare_for_inference(tiny)
    c = fast.compile_model(p, backend="aot_eager")
    _close(fast.predict(c, images, inference_mode=False), _eager(tiny, images))


def test_ort_session_matches_eager(tiny, images, tmp_path):
    path = hm.export_onnx(tiny, tmp_path / "tiny.onnx")
    s = fast.ort_session(path, threads=1, spin=False)
    opts = s.get_session_options()
    assert opts.intra_op_num_threads == 1 and opts.inter_op_num_threads == 1
    got = fast.ort_predict(s, images)
    assert sorted(got) == ["coords2d", "joints3d"]
    ref = _eager(tiny, images)
    np.testing.assert_allclose(got["coords2d"], ref.coords2d.numpy(), atol=1e-3, rtol=0)
    np.testing.assert_allclose(got["joints3d"], ref.joints3d.numpy(), atol=1e-4, rtol=1e-4)
    one = fast.ort_predict(s, images[:1].numpy(), outputs=("coords2d",))
    np.testing.assert_allclose(one["coords2d"], ref.coords2d[:1].numpy(), atol=1e-3, rtol=0)


def test_ort_errors_are_clear(tmp_path, tiny):
    with pytest.raises(FileNotFoundError, match="export"):
        fast.ort_session(tmp_path / "missing.onnx")
    path = hm.export_onnx(tiny, tmp_path / "t.onnx")
    s = fast.ort_session(path, threads=1)
    with pytest.raises(ValueError, match=r"\(B, 3, S, S\)"):
        fast.ort_predict(s, np.zeros((64, 64, 3), np.float32))
