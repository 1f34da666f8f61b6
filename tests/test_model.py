"""ResUnet: shapes, units, bones -> joints, training signal, parameter counts, weights."""

import json
import urllib.error

import numpy as np
import pytest
import torch
import torchvision

from handpose_lib import skeleton
from handpose_lib.losses import compute_loss
from handpose_lib.model import (
    HandPoseOutput,
    ModelConfig,
    PretrainedWeightsUnavailable,
    ResUnet,
    build_model,
    count_parameters,
    paper_config,
    tiny_config,
)

RESNET34_ENCODER_PARAMS = 21_284_672  # torchvision resnet34 without fc (21.8M with it)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model(tiny_config()).eval()


@pytest.fixture(scope="module")
def paper():
    torch.manual_seed(0)
    return build_model(paper_config()).eval()


def _check_output(out: HandPoseOutput, b: int, hm: int = 64):
    assert out.heatmaps.shape == (b, 21, hm, hm)
    assert out.probs.shape == (b, 21, hm, hm)
    assert out.coords2d.shape == (b, 21, 2)
    assert out.bones.shape == (b, 20, 3)
    assert out.joints3d.shape == (b, 21, 3)
    assert [tuple(h.shape) for h in out.intermediate] == [(b, 21, s, s) for s in (8, 16, 32, 64)]
    torch.testing.assert_close(out.probs.sum(dim=(-2, -1)), torch.ones(b, 21))
    assert out.coords2d.min() >= 0 and out.coords2d.max() <= 128
    assert torch.all(out.joints3d[:, 0] == 0)  # root-relative


@pytest.mark.parametrize("b", [1, 3])
def test_tiny_shapes(tiny, b):
    with torch.no_grad():
        _check_output(tiny(torch.rand(b, 3, 128, 128)), b)


def test_paper_shapes_and_parameter_count(paper):
    with torch.no_grad():
        _check_output(paper(torch.rand(1, 3, 128, 128)), 1)
    n_enc = count_parameters(paper.encoder)
    tv = torchvision.models.resnet34(weights=None)
    n_tv = count_parameters(tv) - count_parameters(tv.fc)
    print(
        f"\nresnet34 encoder {n_enc:,} (torchvision without fc {n_tv:,}), ResUnet {count_parameters(paper):,}"
    )
    assert n_enc == n_tv == RESNET34_ENCODER_PARAMS
    assert count_parameters(tv) == 21_797_672  # the "21.8M" of ResNet-34
    assert paper.encoder.channels == [64, 64, 128, 256, 512]


@pytest.mark.parametrize("encoder,channels", [("resnet18", [64, 64, 128, 256, 512]), ("resnet50", None)])
def test_other_torchvision_encoders(encoder, channels):
    model = build_model(ModelConfig(encoder=encoder, decoder_widths=(32, 16, 16, 16), branch3d_width=8))
    if channels is None:  # Bottleneck stages: 4x expansion
        channels = [64, 256, 512, 1024, 2048]
    assert model.encoder.channels == channels
    with torch.no_grad():
        _check_output(model.eval()(torch.rand(1, 3, 128, 128)), 1)


def test_tiny_parameter_count_and_heatmap_size_option():
    n = count_parameters(build_model(tiny_config()))
    print(f"\ntiny ResUnet {n:,} parameters")
    assert 1_000_000 < n < 5_000_000
    model = build_model(tiny_config(heatmap_size=128)).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 128, 128))
    assert out.heatmaps.shape == (2, 21, 128, 128) and out.probs.shape == (2, 21, 128, 128)


def test_joints_are_the_chain_sum_of_bones(tiny):
    with torch.no_grad():
        out = tiny(torch.rand(2, 3, 128, 128))
    manual = torch.zeros(2, 21, 3)
    for j in range(1, 21):
        k = j
        while k > 0:  # walk up to the wrist, adding bone k-1 (which ends at joint k)
            manual[:, j] += out.bones[:, k - 1]
            k = skeleton.PARENTS[k]
    torch.testing.assert_close(out.joints3d, manual)


def test_uint8_input_and_normalisation(tiny):
    img = torch.randint(0, 256, (1, 3, 128, 128), dtype=torch.uint8)
    with torch.no_grad():
        a, b = tiny(img), tiny(img.float() / 255)
    torch.testing.assert_close(a.coords2d, b.coords2d)
    assert "mean" not in tiny.state_dict()  # ImageNet statistics are constants, not weights


def test_bad_input_shape_is_reported(tiny):
    with pytest.raises(ValueError, match=r"\(B, 3, 128, 128\)"):
        tiny(torch.rand(1, 3, 96, 96))
    with pytest.raises(ValueError, match="unknown encoder"):
        ModelConfig(encoder="vgg16")
    with pytest.raises(ValueError, match="no ImageNet weights"):
        build_model(tiny_config(pretrained=True))


def test_config_json_round_trip():
    cfg = tiny_config(heatmap_size=32)
    again = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    with pytest.raises(ValueError, match="unknown keys"):
        ModelConfig.from_dict({"encoder": "tiny", "depth": 3})


def test_a_few_steps_reduce_the_loss():
    torch.manual_seed(0)
    model = build_model(tiny_config()).train()
    g = torch.Generator().manual_seed(1)
    batch = {
        "image": torch.rand(4, 3, 128, 128, generator=g),
        "joints2d": 20 + 88 * torch.rand(4, 21, 2, generator=g),
        "joints3d": 30 * torch.randn(4, 21, 3, generator=g) + torch.tensor([0, 0, 500.0]),
        "visible": torch.ones(4, 21, dtype=torch.bool),
    }
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        total, parts = compute_loss(model(batch["image"]), batch)
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(total.item())
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0], losses
    assert model.lhr.log_beta.grad is not None and model.lhr.log_beta.grad.abs().sum() > 0


def test_bfloat16_autocast_forward(tiny):
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = tiny(torch.rand(2, 3, 128, 128))
    assert out.coords2d.dtype == torch.float32 and out.bones.dtype == torch.float32
    assert torch.isfinite(out.coords2d).all() and torch.isfinite(out.joints3d).all()


@pytest.mark.filterwarnings(
    "ignore:To copy construct from a tensor"
)  # skeleton's torch.tensor(ndarray) under dynamo
def test_torch_compile_traces_the_whole_model(tiny):
    # fullgraph: no graph breaks. backend "aot_eager" checks dynamo + AOTAutograd without the
    # C++ compilation that inductor needs (about 30 s cold on 2 cores; see benchmarks/model_bench.py)
    compiled = torch.compile(tiny, backend="aot_eager", fullgraph=True)
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        a, b = compiled(x), tiny(x)
    assert isinstance(a, HandPoseOutput)
    torch.testing.assert_close(a.coords2d, b.coords2d, atol=1e-3, rtol=0)
    torch.testing.assert_close(a.joints3d, b.joints3d, atol=1e-5, rtol=1e-4)


# ----------------------------------------------------------------------------------------
# ImageNet weights: local files, torchvision's cache, and the offline error


@pytest.fixture(scope="module")
def resnet34_state(tmp_path_factory):
    torch.manual_seed(3)
    state = torchvision.models.resnet34(weights=None).state_dict()
    path = tmp_path_factory.mktemp("weights") / "resnet34-random.pth"
    torch.save(state, path)
    return state, path


def _assert_encoder_has(model: ResUnet, state):
    own = model.encoder.state_dict()
    for key in ("conv1.weight", "layer3.2.conv2.weight", "layer4.1.bn2.running_var"):
        assert torch.equal(own[key], state[key])
    assert len(own) == len(state) - 2  # everything but fc.weight, fc.bias


def test_pretrained_path_loads_a_torchvision_state_dict(resnet34_state, tmp_path):
    state, path = resnet34_state
    _assert_encoder_has(build_model(paper_config(pretrained_path=str(path))), state)
    from safetensors.torch import save_file

    st = tmp_path / "resnet34.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(st))
    _assert_encoder_has(build_model(paper_config(pretrained_path=str(st))), state)


def test_pretrained_path_errors_are_clear(resnet34_state, tmp_path):
    state, _ = resnet34_state
    with pytest.raises(PretrainedWeightsUnavailable, match="does not exist"):
        build_model(paper_config(pretrained_path=str(tmp_path / "missing.pth")))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedWeightsUnavailable, match="could not read"):
        build_model(paper_config(pretrained_path=str(bad)))
    r18 = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), r18)
    with pytest.raises(PretrainedWeightsUnavailable, match="does not match the encoder"):
        build_model(paper_config(pretrained_path=str(r18)))


def test_pretrained_from_torch_home_cache(resnet34_state, tmp_path, monkeypatch):
    state, _ = resnet34_state
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(state, tmp_path / "hub" / "checkpoints" / "resnet34-b627a593.pth")

    def no_download(*args, **kwargs):
        raise AssertionError("must not download when the file is cached")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    _assert_encoder_has(build_model(paper_config(pretrained=True)), state)


def test_pretrained_offline_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    calls = []

    def offline(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(PretrainedWeightsUnavailable) as info:
        build_model(paper_config(pretrained=True))
    msg = str(info.value)
    assert calls and calls[0].endswith("resnet34-b627a593.pth")
    assert "resnet34-b627a593.pth" in msg and str(tmp_path / "hub" / "checkpoints") in msg
    assert "pretrained_path" in msg and "Traceback" not in msg
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_corrupt_cached_weights_give_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    ckpt = tmp_path / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "resnet18-f37072fd.pth").write_bytes(b"truncated download")
    with pytest.raises(PretrainedWeightsUnavailable, match="(?s)could not be read.*delete the file"):
        build_model(ModelConfig(encoder="resnet18", pretrained=True))


@pytest.mark.parametrize(
    "make,error,match",
    [
        (lambda x: x * 255, ValueError, "divide 0-255 images by 255"),
        (lambda x: (x - 0.45) / 0.225, ValueError, "ImageNet mean"),
        (lambda x: (x * 255).long(), TypeError, r"images.to\(torch.uint8\)"),
        (lambda x: x.masked_fill(x > 0.99, float("nan")), ValueError, "NaN or inf"),
        (lambda x: x.masked_fill(x > 0.99, float("inf")), ValueError, "NaN or inf"),
        (lambda x: x.double(), TypeError, r"images.float\(\)"),
        (lambda x: x.numpy(), TypeError, r"torch.from_numpy"),
        (lambda x: x[:0], ValueError, "batch is empty"),
    ],
    ids=["float-0-255", "normalised", "int64", "nan", "inf", "float64", "numpy", "empty"],
)
def test_bad_images_are_refused_with_the_fix(tiny, make, error, match):
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), pytest.raises(error, match=match):
        tiny(make(x))


def test_images_at_the_range_ends_pass(tiny):
    x = torch.zeros(2, 3, 128, 128)
    x[1] = 1.0
    with torch.no_grad():
        assert torch.isfinite(tiny(x).coords2d).all()
        assert torch.isfinite(tiny(x.half().float()).coords2d).all()


@pytest.mark.parametrize(
    "field,value",
    [
        ("heatmap_size", "64"),
        ("input_size", 128.0),
        ("pretrained", "no"),
        ("tiny_widths", [16, 32, "64", 128]),
    ],
)
def test_config_values_of_the_wrong_type_are_named(field, value):
    with pytest.raises(ValueError, match=f"ModelConfig.{field} must be"):
        ModelConfig.from_dict({"encoder": "tiny", field: value})
