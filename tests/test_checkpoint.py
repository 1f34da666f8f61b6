"""checkpoint.py: safetensors + JSON sidecar round trip, atomic writes, RNG/optimiser state."""

import json
import os
import random

import numpy as np
import pytest
import torch

from handpose_lib import checkpoint as ck


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.LazyLinear(2)
    )


def _trained():
    net = _net()
    net(torch.rand(2, 3, 8, 8))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2, betas=(0.8, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    for _ in range(3):
        opt.zero_grad()
        net(torch.rand(2, 3, 8, 8)).sum().backward()
        opt.step()
        sched.step()
    return net, opt, sched


def test_round_trip_weights_optimiser_scheduler_rng(tmp_path):
    net, opt, sched = _trained()
    torch.manual_seed(123)
    np.random.seed(5)  # noqa: NPY002
    random.seed(7)
    path = ck.save_checkpoint(
        tmp_path / "c",
        net,
        {"epoch": 2, "step": 3, "config": {"a": 1}, "metrics": {"x": float("nan")}},
        optimizer=opt,
        scheduler=sched,
    )
    expect = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002
    assert sorted(os.listdir(path)) == ["checkpoint.json", "model.safetensors", "train_state.safetensors"]

    c = ck.load_checkpoint(path)
    assert c.step == 3 and c.epoch == 2 and c.resumable and c.meta["metrics"]["x"] is None
    net2, opt2, sched2 = _trained()[0], None, None
    with torch.no_grad():
        for p in net2.parameters():
            p.zero_()
    ck.load_weights(net2, c)
    for (k, a), b in zip(net.state_dict().items(), net2.state_dict().values()):
        assert torch.equal(a, b), k
    opt2 = torch.optim.AdamW(net2.parameters(), lr=1.0)
    sched2 = torch.optim.lr_scheduler.LambdaLR(opt2, lambda s: 1.0 / (1 + s))
    c.restore(opt2, sched2)
    assert opt2.param_groups[0]["betas"][0] == 0.8
    assert sched2.last_epoch == sched.last_epoch and opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert all(torch.equal(s1[k]["exp_avg_sq"], s2[k]["exp_avg_sq"]) for k in s1)
    # the RNG streams continue where they were at save time
    assert torch.equal(torch.rand(3), expect[0])
    assert np.array_equal(np.random.rand(3), expect[1]) and random.random() == expect[2]  # noqa: NPY002


def test_run_folder_pointer_pruning_and_best(tmp_path):
    net = _net()
    net(torch.rand(1, 3, 8, 8))
    for step in (10, 20, 30, 40):
        p = ck.save_run_checkpoint(tmp_path, step, net, {"step": step, "epoch": 0}, keep_last=2)
        if step == 20:
            ck.mark_best(tmp_path, p, {"auc": 0.5})
    kept = sorted(d.name for d in (tmp_path / "checkpoints").iterdir())
    assert kept == ["step-00000020", "step-00000030", "step-00000040"]  # 20 is the best one
    assert ck.load_checkpoint(tmp_path).step == 40
    assert ck.load_checkpoint(tmp_path, which="best").step == 20
    assert ck.load_checkpoint(tmp_path / "checkpoints" / "step-00000030" / "model.safetensors").step == 30


def test_fp16_weights_only(tmp_path):
    net = _net()
    net(torch.rand(1, 3, 8, 8))
    p = ck.save_checkpoint(tmp_path / "m", net, {"step": 1}, save_rng=False, weights_dtype=torch.float16)
    c = ck.load_checkpoint(p)
    assert not c.resumable and c.state == {}
    assert c.weights["0.weight"].dtype == torch.float16
    assert c.weights["1.num_batches_tracked"].dtype == torch.int64
    ck.load_weights(net, c)  # converted back to the model's float32
    assert net[0].weight.dtype == torch.float32
    with pytest.raises(ck.CheckpointError, match="no optimiser state"):
        c.restore(torch.optim.SGD(net.parameters(), lr=1))


def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    net = _net()
    net(torch.rand(1, 3, 8, 8))
    ck.save_run_checkpoint(tmp_path, 1, net, {"step": 1})
    calls = {"n": 0}
    real = os.replace

    def flaky(src, dst):  # the second rename of the save (of model.safetensors... then the sidecar) fails
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full (simulated)")
        return real(src, dst)

    monkeypatch.setattr(ck.os, "replace", flaky)
    with pytest.raises(OSError, match="simulated"):
        ck.save_run_checkpoint(tmp_path, 2, net, {"step": 2})
    monkeypatch.setattr(ck.os, "replace", real)
    # nothing half-written is visible: last.json still names step 1, no step-2 folder, no temp files
    assert ck.load_checkpoint(tmp_path).step == 1
    names = [p.name for p in (tmp_path / "checkpoints").iterdir()]
    assert names == ["step-00000001"], names
    assert json.loads((tmp_path / "last.json").read_text())["step"] == 1


def test_atomic_write_never_leaves_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "f.bin"
    ck.atomic_write_bytes(target, b"old")

    def boom(fd):
        raise OSError("power cut (simulated)")

    monkeypatch.setattr(ck.os, "fsync", boom)
    with pytest.raises(OSError):
        ck.atomic_write_bytes(target, b"new" * 1000)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.bin"]


def test_corrupt_and_missing_checkpoints_have_clear_errors(tmp_path):
    with pytest.raises(ck.CheckpointError, match="does not exist"):
        ck.load_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ck.CheckpointError, match="no checkpoint in"):
        ck.load_checkpoint(tmp_path / "empty")
    net = _net()
    net(torch.rand(1, 3, 8, 8))
    p = ck.save_checkpoint(tmp_path / "c", net, {"step": 1})
    data = bytearray((p / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (p / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ck.CheckpointError, match="sha256"):
        ck.load_checkpoint(p)
    other = torch.nn.Linear(2, 2)
    ok = ck.save_checkpoint(tmp_path / "d", other, {"step": 1})
    with pytest.raises(ck.CheckpointError, match="do not fit"):
        ck.load_weights(net, ck.load_checkpoint(ok))


def _edit_sidecar(path, **changes):
    f = path / ck.SIDECAR_FILE
    meta = json.loads(f.read_text())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(meta.get(key), dict):
            meta[key].update(value)
        else:
            meta[key] = value
    f.write_text(json.dumps(meta))


def test_sidecar_model_config_must_match_the_weights(tmp_path):
    cfg = {"encoder": "tiny", "heatmap_size": 64}
    path = ck.save_checkpoint(tmp_path / "c", torch.nn.Linear(2, 2), {"model_config": cfg, "step": 3})
    assert ck.load_checkpoint(path).meta["model_config"] == cfg
    _edit_sidecar(path, model_config={"heatmap_size": 32})  # loads into the same tensors
    with pytest.raises(ck.CheckpointError, match=r"heatmap_size: 32 \(weights: 64\)"):
        ck.load_checkpoint(path)
    _edit_sidecar(path, model_config={"heatmap_size": "64"})
    with pytest.raises(ck.CheckpointError, match="heatmap_size: '64'"):
        ck.load_checkpoint(path)


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"format": "handpose-checkpoint/2"}, "upgrade handpose"),
        ({"format": "other/1"}, "not a handpose checkpoint"),
        ({"step": "12"}, "'step' must be an integer"),
        ({"epoch": 1.5}, "'epoch' must be an integer"),
        ({"step": -1}, "'step' must be >= 0"),
        ({"train_config": [1, 2]}, "'train_config' must be a JSON object"),
        ({"files": {ck.MODEL_FILE: "abc"}}, "files"),
    ],
)
def test_sidecar_types_and_format_are_checked(tmp_path, changes, match):
    path = ck.save_checkpoint(tmp_path / "c", torch.nn.Linear(2, 2), {"step": 3, "epoch": 1})
    _edit_sidecar(path, **changes)
    with pytest.raises(ck.CheckpointError, match=match):
        ck.load_checkpoint(path)


def test_a_damaged_config_in_an_old_sidecar_is_a_checkpoint_error(tmp_path):
    from handpose_lib.inference import model_from_checkpoint
    from handpose_lib.model import build_model, tiny_config

    cfg = tiny_config()
    path = ck.save_checkpoint(tmp_path / "c", build_model(cfg), {"step": 1})  # no config in the weights
    _edit_sidecar(path, model_config={**cfg.to_dict(), "heatmap_size": "64"})
    with pytest.raises(ck.CheckpointError, match="heatmap_size must be an integer"):
        model_from_checkpoint(ck.load_checkpoint(path))
    _edit_sidecar(path, model_config={**cfg.to_dict(), "depth": 3})
    with pytest.raises(ck.CheckpointError, match="unknown keys"):
        model_from_checkpoint(ck.load_checkpoint(path))


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_outputs_honour_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        f = ck.atomic_write_json(tmp_path / "a.json", {"x": 1})
        path = ck.save_checkpoint(tmp_path / "c", torch.nn.Linear(2, 2), {"step": 1})
    finally:
        os.umask(old)
    assert f.stat().st_mode & 0o777 == 0o666 & ~mask
    assert path.stat().st_mode & 0o777 == 0o777 & ~mask
    assert (path / ck.MODEL_FILE).stat().st_mode & 0o777 == 0o666 & ~mask


def test_the_committed_model_refuses_an_edited_heatmap_size(tmp_path):
    import shutil
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "models" / "book-tiny"
    shutil.copytree(src, tmp_path / "m")
    assert ck.load_checkpoint(tmp_path / "m").meta["model_config"]["heatmap_size"] == 64
    _edit_sidecar(tmp_path / "m", model_config={"heatmap_size": 32})
    with pytest.raises(ck.CheckpointError, match="heatmap_size: 32"):
        ck.load_checkpoint(tmp_path / "m")
